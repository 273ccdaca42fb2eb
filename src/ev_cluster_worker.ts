// Copyright 2026 the @corothread/evthread authors. MIT license.

import {
  type FromWorker,
  NAME_PREFIX,
  ours,
  type Report,
  TAG,
  toWire,
  type ToWorker,
} from "./_cluster_protocol.ts";
import { checkFunction } from "./_validate.ts";
import { EvLoop } from "./ev_loop.ts";

/**
 * What a worker learns from the cluster, in its setup (see
 * {@linkcode evClusterWorker}).
 */
export interface EvClusterWorkerContext {
  /** The worker's index, from 0 to `count - 1`. */
  index: number;
  /** How many workers the cluster has. */
  count: number;
  /** A copy of {@linkcode EvClusterOptions.data}. */
  data: unknown;
}

/**
 * A server that owns a loop, which a worker's setup may return instead of
 * the loop itself: the `HttpServer` that `serve()` returns is one. The
 * cluster shuts it down with `shutdown({ grace })`, waits for `finished`,
 * and reads the counters of `loop`.
 */
export interface EvClusterServer {
  /** The loop the server runs on. */
  readonly loop: EvLoop;
  /** Resolves when the server has shut down. */
  readonly finished: Promise<void>;
  /** Shuts the server down. */
  shutdown(options?: { grace?: number }): Promise<void>;
}

/** A worker's setup: starts its loop and listeners, in the worker. */
export type EvClusterWorkerSetup = (
  context: EvClusterWorkerContext,
) => EvLoop | EvClusterServer | Promise<EvLoop | EvClusterServer>;

/** The part of a worker's global scope the cluster uses. */
interface WorkerScope {
  readonly name: string;
  postMessage(message: FromWorker): void;
  close(): void;
  addEventListener(type: "message", listener: (e: MessageEvent) => void): void;
  removeEventListener(
    type: "message",
    listener: (e: MessageEvent) => void,
  ): void;
}

let joined = false;

/**
 * Runs this worker's part of an {@linkcode EvCluster}: call it once, at the
 * top of the worker module. It waits for the cluster's context (index,
 * count, data), runs `setup` with it, which starts a loop and its listeners
 * and returns the loop (or a server that owns one, such as `serve()`'s
 * `HttpServer`), and tells the cluster the worker is ready. From then on
 * it answers the cluster's stats requests and runs the loop's shutdown
 * when asked; when the loop has finished, it reports the final counters
 * and closes the worker.
 *
 * If `setup` throws or rejects, {@linkcode EvCluster.start} rejects with the
 * error and this worker closes. With `serve()`, pass it the loop you
 * return (`serve({ loop, ... })`), or return the server itself: a server
 * that made its own loop drains only through its own `shutdown`.
 *
 * Do not call `self.close()` in the worker: the cluster would not know it
 * has ended. To end a worker early, shut its loop down.
 *
 * @example A worker module that serves HTTP on the cluster's port
 * ```ts ignore
 * // worker.ts; run the main with --unstable-net for reusePort
 * import { EvLoop, evClusterWorker } from "@corothread/evthread";
 * import { serve } from "@corothread/evthread/http";
 *
 * evClusterWorker(({ index, data }) => {
 *   const { port } = data as { port: number };
 *   const loop = new EvLoop();
 *   serve(
 *     { loop, hostname: "127.0.0.1", port, reusePort: true, onListen() {} },
 *     () => new Response(`Hello from worker ${index}`),
 *   );
 *   return loop;
 * });
 * ```
 *
 * @example Outside a worker started by EvCluster, it throws
 * ```ts
 * import { EvLoop, evClusterWorker } from "@corothread/evthread";
 * import { assertThrows } from "@std/assert";
 *
 * assertThrows(() => evClusterWorker(() => new EvLoop()), TypeError);
 * ```
 *
 * @param setup Starts the worker's loop and listeners, given the worker's
 * index, the worker count and the cluster's data.
 * @throws {TypeError} if not called in a worker started by
 * {@linkcode EvCluster.start}, or `setup` is not a function.
 * @throws {Error} if called a second time in the worker.
 */
export function evClusterWorker(setup: EvClusterWorkerSetup): void {
  checkFunction(setup, "setup");
  const scopeClass =
    (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope;
  if (typeof scopeClass !== "function" || !(globalThis instanceof scopeClass)) {
    throw new TypeError(
      "evClusterWorker() must be called in a worker started by EvCluster.start(): this is not a worker",
    );
  }
  const scope = globalThis as unknown as WorkerScope;
  if (!scope.name.startsWith(NAME_PREFIX)) {
    throw new TypeError(
      `evClusterWorker() must be called in a worker started by EvCluster.start(): this worker's name is ${
        JSON.stringify(scope.name)
      }`,
    );
  }
  if (joined) {
    throw new Error("evClusterWorker() was called already in this worker");
  }
  joined = true;

  let target: EvLoop | EvClusterServer | undefined;
  let loop: EvLoop | undefined;
  let initialized = false;
  let shutdownGrace: number | undefined;
  const report = (): Report => ({ stats: loop!.stats, state: loop!.state });
  const shutdown = (grace: number): void => {
    target!.shutdown({ grace }).catch((error: unknown) => {
      console.error("evthread: cluster worker shutdown failed:", error);
    });
  };
  const onMessage = (event: MessageEvent): void => {
    const message = ours<ToWorker>(event.data);
    if (message === undefined) return;
    switch (message.type) {
      case "init":
        if (initialized) return;
        initialized = true;
        run({
          index: message.index,
          count: message.count,
          data: message.data,
        }).catch((error: unknown) => {
          console.error("evthread: cluster worker failed:", error);
        });
        break;
      case "stats":
        if (loop !== undefined) {
          scope.postMessage({
            tag: TAG,
            type: "stats",
            id: message.id,
            report: report(),
          });
        }
        break;
      case "shutdown":
        if (target !== undefined) shutdown(message.grace);
        else shutdownGrace = Math.min(shutdownGrace ?? Infinity, message.grace);
        break;
    }
  };
  const run = async (context: EvClusterWorkerContext): Promise<void> => {
    try {
      const result = await setup(context);
      if (result instanceof EvLoop) {
        loop = result;
      } else if (
        typeof result === "object" && result !== null &&
        result.loop instanceof EvLoop &&
        typeof result.shutdown === "function" &&
        result.finished instanceof Promise
      ) {
        loop = result.loop;
      } else {
        throw new TypeError(
          `'setup' must return an EvLoop, or a server with 'loop', 'shutdown' and 'finished': received ${
            result === null ? "null" : typeof result
          }`,
        );
      }
      target = result;
    } catch (error) {
      scope.postMessage({ tag: TAG, type: "failed", error: toWire(error) });
      scope.removeEventListener("message", onMessage);
      scope.close();
      return;
    }
    scope.postMessage({ tag: TAG, type: "ready", report: report() });
    if (shutdownGrace !== undefined) shutdown(shutdownGrace);
    await target.finished;
    scope.postMessage({ tag: TAG, type: "ended", report: report() });
    scope.removeEventListener("message", onMessage);
    scope.close();
  };
  scope.addEventListener("message", onMessage);
  scope.postMessage({ tag: TAG, type: "hello" });
}
