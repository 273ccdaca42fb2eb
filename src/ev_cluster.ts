// Copyright 2026 the @corothread/evthread authors. MIT license.

/**
 * One {@linkcode EvLoop} per core: {@linkcode EvCluster} starts N Deno
 * workers from one module, and {@linkcode evClusterWorker} runs in each of
 * them. Each worker listens on the same address and port with
 * `reusePort: true` (Linux `SO_REUSEPORT`), and the kernel spreads new
 * connections across them; the cluster sums the workers' counters and
 * passes shutdown on to every loop. See {@linkcode EvCluster} for what
 * `reusePort` needs.
 *
 * @example Two loops on one port (run with `deno run --unstable-net --allow-net --allow-read main.ts`)
 * ```ts ignore
 * // main.ts
 * import { EvCluster } from "@corothread/evthread";
 *
 * const cluster = await EvCluster.start(
 *   new URL("./worker.ts", import.meta.url),
 *   { workers: 2, data: { port: 8080 } },
 * );
 * Deno.addSignalListener("SIGTERM", () => cluster.shutdown({ grace: 5000 }));
 * await cluster.finished;
 * console.log((await cluster.stats()).accepted);
 *
 * // worker.ts
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
 * @module
 */

import {
  fromWire,
  type FromWorker,
  NAME_PREFIX,
  ours,
  type Report,
  TAG,
  type ToWorker,
} from "./_cluster_protocol.ts";
import {
  checkFunction,
  checkGrace,
  checkInteger,
  checkSignal,
  checkTimeout,
  timeoutError,
} from "./_validate.ts";
import type { EvLoopState, EvLoopStats } from "./ev_loop.ts";

/** Default grace period of {@linkcode EvCluster.shutdown}, in milliseconds. */
const DEFAULT_GRACE = 5000;
/**
 * How long after its grace period a worker may take to end before the
 * cluster terminates it, in milliseconds.
 */
const TERMINATE_MARGIN = 2000;
/** Default of {@linkcode EvClusterOptions.startTimeout}, in milliseconds. */
const DEFAULT_START_TIMEOUT = 30_000;

/** The state of one worker of a cluster. */
export type EvClusterWorkerState =
  | EvLoopState
  | "crashed"
  | "terminated";

/** The counters of one worker of a cluster, as it last reported them. */
export interface EvClusterWorkerStats extends EvLoopStats {
  /** The worker's index, from 0. */
  index: number;
  /**
   * `"running"`, `"draining"` or `"closed"`: the state of the worker's
   * loop (`"closed"`: it finished and the worker ended). `"crashed"`: an
   * uncaught error ended the worker (it was reported to
   * {@linkcode EvClusterOptions.onError}). `"terminated"`: it did not end
   * within the grace period of {@linkcode EvCluster.shutdown} plus a
   * margin, and was terminated. A crashed or terminated worker keeps the
   * counters it last reported, with `active` 0.
   */
  state: EvClusterWorkerState;
}

/**
 * The counters of a cluster: the workers' counters summed, and each
 * worker's.
 *
 * Every counter is the sum of the workers' counters. `capacity` is the sum
 * of the workers' pool capacities; `active`, the tasks running now in all
 * workers (0 for workers that have ended); `peakActive` is the sum of the
 * workers' peaks: an upper bound of the cluster's peak, since the workers
 * may have peaked at different times.
 */
export interface EvClusterStats extends EvLoopStats {
  /** Each worker's counters, by index. */
  workers: EvClusterWorkerStats[];
}

/** Options for {@linkcode EvCluster.start}. */
export interface EvClusterOptions {
  /**
   * How many workers to start. @default {navigator.hardwareConcurrency}
   */
  workers?: number;
  /**
   * Passed to every worker's setup as `data` (see
   * {@linkcode evClusterWorker}). It must be structured-clonable; it is
   * copied, once per worker.
   */
  data?: unknown;
  /**
   * Aborting it shuts the cluster down (with the default grace); aborted
   * while the workers start, {@linkcode EvCluster.start} rejects with its
   * reason.
   */
  signal?: AbortSignal;
  /**
   * Called with a worker's uncaught error (the worker has then ended: it
   * is not restarted), or when a worker that outlived its shutdown was
   * terminated. The default writes to stderr. Errors thrown by the hook
   * itself are written to stderr.
   */
  onError?: (error: unknown, worker: number) => void;
  /**
   * Milliseconds for every worker to load its module and finish its setup;
   * `Infinity` for no limit. @default {30000}
   */
  startTimeout?: number;
}

/** Counters of a worker that has not reported yet. */
function zeroStats(): EvLoopStats {
  return {
    capacity: 0,
    active: 0,
    peakActive: 0,
    spawned: 0,
    ended: 0,
    accepted: 0,
    refused: 0,
    held: 0,
    reclaimed: 0,
    evicted: 0,
    addressLimited: 0,
    timeouts: 0,
    errors: 0,
    sendsCutShort: 0,
    bytesUnsent: 0,
  };
}

function defaultOnError(error: unknown, worker: number): void {
  console.error(`evthread: cluster worker ${worker} failed:`, error);
}

/** One worker, as the main thread sees it. */
class Slot {
  readonly index: number;
  readonly worker: Worker;
  state: EvClusterWorkerState | "starting" = "starting";
  stats: EvLoopStats = zeroStats();
  /** Stats requests waiting for this worker's reply, by id. */
  readonly pending = new Map<number, () => void>();
  readonly ended: Promise<void>;
  #resolveEnded!: () => void;
  #ended = false;

  constructor(index: number, worker: Worker) {
    this.index = index;
    this.worker = worker;
    this.ended = new Promise((resolve) => {
      this.#resolveEnded = resolve;
    });
  }

  get done(): boolean {
    return this.#ended;
  }

  update(report: Report): void {
    this.stats = report.stats;
    this.state = report.state;
  }

  post(message: ToWorker): void {
    if (this.#ended) return;
    this.worker.postMessage(message);
  }

  /** The worker has ended (or is made to): settles everything it holds. */
  end(state: EvClusterWorkerState): void {
    if (this.#ended) return;
    this.#ended = true;
    this.state = state;
    if (state !== "closed") this.stats = { ...this.stats, active: 0 };
    this.worker.terminate();
    for (const resolve of this.pending.values()) resolve();
    this.pending.clear();
    this.#resolveEnded();
  }

  snapshot(): EvClusterWorkerStats {
    const state = this.state === "starting" ? "running" : this.state;
    return { ...this.stats, index: this.index, state };
  }
}

let constructing = false;

/**
 * One {@linkcode EvLoop} per core: N Deno workers started from one module,
 * each running its own loop, usually all listening on one address and port
 * with `reusePort: true`. The cluster sums the workers' counters and passes
 * shutdown on to every loop.
 *
 * Deno runs a module's JavaScript on one thread, so one loop uses one core
 * (and the runtime's I/O threads). A worker is another thread with its own
 * event loop; {@linkcode EvCluster.start} starts them (`new Worker(url, {
 * type: "module" })`, with the main's permissions) and resolves once each
 * has run its setup in {@linkcode evClusterWorker}.
 *
 * **`reusePort`.** On Linux, `reusePort: true` (in `EvLoop.listen` and
 * `serve()`) sets `SO_REUSEPORT`: every worker opens its own listening
 * socket on the same address and port, and the kernel hashes each new
 * connection (its addresses and ports) to one of them. There is no accept
 * lock and no hand-off between threads; the spread is by hash, not by load,
 * so a few long connections can land on one worker. The kernel lets only
 * sockets of the same user share a port. When one listener closes, the
 * connections still queued in its backlog (accepted by the kernel, not yet
 * by the worker) are reset rather than moved to another listener (measured
 * here; Linux 5.14+ can move them with the sysctl
 * `net.ipv4.tcp_migrate_req=1`, not tested), so stop the workers together,
 * as {@linkcode EvCluster.shutdown} does, rather than one by one. Deno
 * 2.9.6 accepts the option only with `--unstable-net`; without the flag
 * `listen` and `serve()` throw a `TypeError` saying so. Deno documents the
 * option as supported on Linux only and silently ignored elsewhere, so on
 * macOS or Windows the second worker's `listen` on the port would fail
 * with `AddrInUse` (not verified: this module was tested on Linux only).
 * Workers that listen on different ports, or on Unix domain sockets, need
 * none of this.
 *
 * Permissions: workers inherit the main's; loading the worker module from a
 * file needs `--allow-read` for it.
 *
 * A worker that crashes (an uncaught error or unhandled rejection outside
 * the loop's tasks, which the loop catches itself) is reported to
 * `onError`, and its slot in {@linkcode EvCluster.stats} says
 * `"crashed"`. It is not restarted: the other workers go on serving (with
 * `reusePort`, once the crashed worker's listener has closed, the kernel
 * spreads new connections over the others), and
 * {@linkcode EvCluster.finished} resolves when all have ended.
 *
 * @example Two workers, their counters, and shutdown
 * ```ts
 * import { EvCluster } from "@corothread/evthread";
 * import { assertEquals } from "@std/assert";
 *
 * // The worker module, inline for the example; normally its own file,
 * // started with EvCluster.start(new URL("./worker.ts", import.meta.url)).
 * const worker = `
 *   import { EvLoop, evClusterWorker } from "@corothread/evthread";
 *   evClusterWorker(({ data }) => {
 *     const loop = new EvLoop({ capacity: (data as { capacity: number }).capacity });
 *     loop.spawn((thread) => thread.delay(1));
 *     return loop;
 *   });
 * `;
 * const cluster = await EvCluster.start(
 *   `data:application/typescript,${encodeURIComponent(worker)}`,
 *   { workers: 2, data: { capacity: 10 } },
 * );
 * assertEquals(cluster.size, 2);
 * assertEquals((await cluster.stats()).capacity, 20);
 *
 * await cluster.shutdown({ grace: 1000 });
 * const stats = await cluster.stats();
 * assertEquals(stats.spawned, 2);
 * assertEquals(stats.workers.map((w) => w.state), ["closed", "closed"]);
 * ```
 */
export class EvCluster implements AsyncDisposable {
  #slots: Slot[] = [];
  #onError: (error: unknown, worker: number) => void = defaultOnError;
  #finished!: Promise<void>;
  #nextId = 0;
  #terminateAt = Infinity;
  #terminateTimer: ReturnType<typeof setTimeout> | undefined;
  #signal: AbortSignal | undefined;
  #onAbort = (): void => {
    this.shutdown().catch(() => {});
  };

  /**
   * Not for direct use: call {@linkcode EvCluster.start}.
   *
   * @throws {TypeError} always, when called directly.
   */
  constructor() {
    if (!constructing) {
      throw new TypeError(
        "EvCluster cannot be constructed directly: use EvCluster.start()",
      );
    }
    constructing = false;
  }

  /**
   * Starts `workers` module workers from `moduleUrl`, each of which must
   * call {@linkcode evClusterWorker}, and resolves once every one has
   * finished its setup. If one fails to start (its module throws, its setup
   * throws, or `startTimeout` passes), the others are terminated and the
   * promise rejects with that worker's error: for a setup that threw, the
   * error itself (same class, the worker's stack).
   *
   * @example Starting a cluster
   * ```ts
   * import { EvCluster } from "@corothread/evthread";
   * import { assertEquals } from "@std/assert";
   *
   * const worker = `
   *   import { EvLoop, evClusterWorker } from "@corothread/evthread";
   *   evClusterWorker(() => new EvLoop());
   * `;
   * await using cluster = await EvCluster.start(
   *   `data:application/typescript,${encodeURIComponent(worker)}`,
   *   { workers: 1 },
   * );
   * assertEquals(cluster.size, 1);
   * ```
   *
   * @param moduleUrl The worker module: an absolute URL, such as
   * `new URL("./worker.ts", import.meta.url)`.
   * @param options Worker count, data for the workers, signal, error hook
   * and start timeout.
   * @returns The running cluster.
   * @throws {TypeError} if `moduleUrl` is not an absolute URL, or an option
   * has the wrong type.
   * @throws {RangeError} if `workers` is not a positive integer.
   * @throws {DOMException} `DataCloneError` if `data` cannot be cloned;
   * `TimeoutError` if a worker is not ready within `startTimeout`.
   */
  static async start(
    moduleUrl: string | URL,
    options: EvClusterOptions = {},
  ): Promise<EvCluster> {
    if (typeof moduleUrl !== "string" && !(moduleUrl instanceof URL)) {
      throw new TypeError(
        `'moduleUrl' must be a string or a URL: received ${typeof moduleUrl}`,
      );
    }
    let url: URL;
    try {
      url = new URL(moduleUrl);
    } catch {
      throw new TypeError(
        `'moduleUrl' must be an absolute URL, such as new URL("./worker.ts", import.meta.url): received ${
          JSON.stringify(String(moduleUrl))
        }`,
      );
    }
    const count = checkInteger(
      options.workers ?? navigator.hardwareConcurrency,
      "workers",
      1,
    );
    if (options.onError !== undefined) {
      checkFunction(options.onError, "onError");
    }
    const signal = checkSignal(options.signal);
    const startTimeout = checkTimeout(
      options.startTimeout ?? DEFAULT_START_TIMEOUT,
      "startTimeout",
    );
    const data = options.data;
    structuredClone(data); // throws DataCloneError now rather than later
    signal?.throwIfAborted();

    constructing = true;
    const cluster = new EvCluster();
    if (options.onError !== undefined) cluster.#onError = options.onError;
    await cluster.#start(url, count, data, signal, startTimeout);
    return cluster;
  }

  async #start(
    url: URL,
    count: number,
    data: unknown,
    signal: AbortSignal | undefined,
    startTimeout: number | undefined,
  ): Promise<void> {
    const startup = Promise.withResolvers<void>();
    let ready = 0;
    let starting = true;
    const fail = (error: unknown): void => {
      if (!starting) return;
      starting = false;
      startup.reject(error);
    };
    const hooks = {
      ready: (): void => {
        if (starting && ++ready === count) {
          starting = false;
          startup.resolve();
        }
      },
      failed: (error: Error): boolean => {
        if (!starting) return false;
        fail(error);
        return true;
      },
    };
    try {
      for (let index = 0; index < count; index++) {
        const worker = new Worker(url, {
          type: "module",
          name: `${NAME_PREFIX}${index}/${count}`,
        });
        const slot = new Slot(index, worker);
        this.#slots.push(slot);
        this.#wire(slot, count, data, hooks);
      }
    } catch (error) {
      fail(error);
    }
    this.#finished = Promise.all(this.#slots.map((s) => s.ended)).then(() => {
      clearTimeout(this.#terminateTimer);
      this.#signal?.removeEventListener("abort", this.#onAbort);
    });

    let timer: ReturnType<typeof setTimeout> | undefined;
    const onAbort = () => fail(signal!.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    if (startTimeout !== undefined) {
      timer = setTimeout(() => {
        const late = this.#slots.find((s) => s.state === "starting");
        fail(timeoutError(
          `Worker ${
            late?.index ?? 0
          } of ${count} was not ready within ${startTimeout} ms: does its module call evClusterWorker()?`,
        ));
      }, startTimeout);
    }
    try {
      await startup.promise;
    } catch (error) {
      for (const slot of this.#slots) slot.end("terminated");
      await this.#finished;
      throw error;
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    }
    if (signal !== undefined) {
      this.#signal = signal;
      signal.addEventListener("abort", this.#onAbort, { once: true });
    }
  }

  /** Listens to a worker: the protocol, crashes, and lost messages. */
  #wire(
    slot: Slot,
    count: number,
    data: unknown,
    startup: { ready(): void; failed(error: Error): boolean },
  ): void {
    const { worker, index } = slot;
    worker.addEventListener("message", (event: MessageEvent) => {
      const message = ours<FromWorker>(event.data);
      if (message === undefined || slot.done) return;
      switch (message.type) {
        case "hello":
          slot.post({ tag: TAG, type: "init", index, count, data });
          break;
        case "ready":
          slot.update(message.report);
          startup.ready();
          break;
        case "failed":
          startup.failed(fromWire(message.error));
          slot.end("crashed");
          break;
        case "stats": {
          slot.update(message.report);
          const resolve = slot.pending.get(message.id);
          slot.pending.delete(message.id);
          resolve?.();
          break;
        }
        case "ended":
          slot.update(message.report);
          slot.end("closed");
          break;
      }
    });
    worker.addEventListener("error", (event: ErrorEvent) => {
      // Without this, Deno ends the main process with the worker's error.
      event.preventDefault();
      if (slot.done) return;
      const where = event.filename
        ? ` (${event.filename}:${event.lineno}:${event.colno})`
        : "";
      const starting = slot.state === "starting";
      const error = new Error(
        `Worker ${index} ${
          starting ? "failed to start" : "crashed"
        }: ${event.message}${where}`,
      );
      slot.end("crashed");
      if (!startup.failed(error)) this.#report(error, index);
    });
    worker.addEventListener("messageerror", () => {
      const error = new Error(
        `A message from worker ${index} could not be deserialized`,
      );
      if (!startup.failed(error)) this.#report(error, index);
    });
  }

  #report(error: unknown, worker: number): void {
    try {
      this.#onError(error, worker);
    } catch (hookError) {
      console.error("evthread: onError threw:", hookError);
    }
  }

  /** How many workers the cluster started. */
  get size(): number {
    return this.#slots.length;
  }

  /**
   * Resolves when every worker has ended: its loop finished (after
   * {@linkcode EvCluster.shutdown}, or by itself), it crashed, or it was
   * terminated. Never rejects.
   */
  get finished(): Promise<void> {
    return this.#finished;
  }

  /**
   * Asks every worker for its loop's counters and sums them (see
   * {@linkcode EvClusterStats} for how). Workers that have ended give the
   * counters they last reported: after {@linkcode EvCluster.finished},
   * the final ones.
   *
   * @example Counters of a cluster
   * ```ts
   * import { EvCluster } from "@corothread/evthread";
   * import { assertEquals } from "@std/assert";
   *
   * const worker = `
   *   import { EvLoop, evClusterWorker } from "@corothread/evthread";
   *   evClusterWorker(() => new EvLoop({ capacity: 5 }));
   * `;
   * await using cluster = await EvCluster.start(
   *   `data:application/typescript,${encodeURIComponent(worker)}`,
   *   { workers: 2 },
   * );
   * const stats = await cluster.stats({ signal: AbortSignal.timeout(5000) });
   * assertEquals(stats.capacity, 10);
   * assertEquals(stats.workers[1]!.state, "running");
   * ```
   *
   * @param options `signal`: aborting it rejects with its reason (a worker
   * whose thread is blocked does not answer).
   * @returns The summed counters, and each worker's.
   * @throws {TypeError} if `signal` is not an `AbortSignal`.
   */
  async stats(options: { signal?: AbortSignal } = {}): Promise<EvClusterStats> {
    const signal = checkSignal(options.signal);
    signal?.throwIfAborted();
    const replies: Promise<void>[] = [];
    const asked: [Slot, number][] = [];
    for (const slot of this.#slots) {
      if (slot.done) continue;
      const id = this.#nextId++;
      const { promise, resolve } = Promise.withResolvers<void>();
      slot.pending.set(id, resolve);
      asked.push([slot, id]);
      replies.push(promise);
      slot.post({ tag: TAG, type: "stats", id });
    }
    if (signal !== undefined) {
      const aborted = Promise.withResolvers<never>();
      const onAbort = () => aborted.reject(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
      try {
        await Promise.race([Promise.all(replies), aborted.promise]);
      } finally {
        signal.removeEventListener("abort", onAbort);
        for (const [slot, id] of asked) slot.pending.delete(id);
      }
    } else {
      await Promise.all(replies);
    }
    return this.#sum();
  }

  #sum(): EvClusterStats {
    const workers = this.#slots.map((s) => s.snapshot());
    const total = zeroStats();
    for (const w of workers) {
      for (const key of Object.keys(total) as (keyof EvLoopStats)[]) {
        total[key] += w[key];
      }
    }
    return { ...total, workers };
  }

  /**
   * Shuts every worker down: each runs its loop's (or server's)
   * `shutdown({ grace })` (stop accepting, let tasks finish for up to
   * `grace` ms, abort the rest), then ends. Resolves, with
   * {@linkcode EvCluster.finished}, when all have ended; a worker that has
   * not ended 2 seconds after the grace period is terminated (reported to
   * `onError`, its state `"terminated"`).
   *
   * Calling it again returns the same promise; a shorter `grace` in a later
   * call cuts the wait short (a second Ctrl-C). `grace` defaults to 5000 ms;
   * `0` aborts at once; `Infinity` waits as long as the tasks take.
   *
   * Deno 2.9.6 cannot stop a worker whose thread is stuck in synchronous
   * code (an endless loop): `terminate()` leaves the thread running, and
   * the process then does not exit by itself. If a worker's state is
   * `"terminated"` after shutdown, end the process with `Deno.exit()`.
   *
   * @example Graceful shutdown
   * ```ts
   * import { EvCluster } from "@corothread/evthread";
   * import { assertEquals } from "@std/assert";
   *
   * const worker = `
   *   import { EvLoop, evClusterWorker } from "@corothread/evthread";
   *   evClusterWorker(() => {
   *     const loop = new EvLoop();
   *     loop.spawn((thread) => thread.delay(20)); // finishes within the grace
   *     return loop;
   *   });
   * `;
   * const cluster = await EvCluster.start(
   *   `data:application/typescript,${encodeURIComponent(worker)}`,
   *   { workers: 1 },
   * );
   * await cluster.shutdown({ grace: 5000 });
   * const stats = await cluster.stats();
   * assertEquals([stats.ended, stats.workers[0]!.state], [1, "closed"]);
   * ```
   *
   * @param options `grace` in milliseconds.
   * @returns A promise that resolves when every worker has ended.
   * @throws {TypeError} if `grace` is not a number.
   * @throws {RangeError} if `grace` is negative or NaN.
   */
  shutdown(options?: { grace?: number }): Promise<void> {
    let grace: number;
    try {
      grace = checkGrace(options, DEFAULT_GRACE);
    } catch (error) {
      return Promise.reject(error);
    }
    for (const slot of this.#slots) {
      slot.post({ tag: TAG, type: "shutdown", grace });
    }
    const at = performance.now() + grace + TERMINATE_MARGIN;
    if (at < this.#terminateAt && this.#slots.some((s) => !s.done)) {
      this.#terminateAt = at;
      clearTimeout(this.#terminateTimer);
      this.#terminateTimer = setTimeout(
        () => this.#terminateLate(grace),
        grace + TERMINATE_MARGIN,
      );
    }
    return this.#finished;
  }

  #terminateLate(grace: number): void {
    this.#terminateTimer = undefined;
    for (const slot of this.#slots) {
      if (slot.done) continue;
      slot.end("terminated");
      this.#report(
        timeoutError(
          `Worker ${slot.index} did not end within ${
            grace + TERMINATE_MARGIN
          } ms of shutdown: terminated`,
        ),
        slot.index,
      );
    }
  }

  /** Shuts down with the default grace period. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }
}
