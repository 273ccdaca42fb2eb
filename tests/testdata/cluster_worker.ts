// Copyright 2026 the @corothread/evthread authors. MIT license.
/**
 * The worker module of the EvCluster tests (`tests/ev_cluster_test.ts` and
 * `cluster_main.ts`): what it does comes from the cluster's `data`, a
 * {@linkcode ClusterTestData}.
 *
 * - `serve: "echo"`: answers each line with `<index> <line>`, until EOF;
 * - `serve: "http"`: `serve()` with a loop of its own, returned to the
 *   cluster as the worker's server; every response's body is
 *   `worker <index>`.
 *
 * Worker `i` listens on 127.0.0.1, port `ports[i]` (or `ports[0]` when
 * there are fewer ports than workers), with `reusePort` as given.
 *
 * @module
 */

import { evClusterWorker, EvLoop } from "../../mod.ts";
import { serve } from "../../http.ts";

/** What the tests ask of each worker. */
export interface ClusterTestData {
  serve: "echo" | "http";
  /** The port of each worker, by index; the last one serves the rest. */
  ports: number[];
  reusePort: boolean;
  /**
   * This worker's setup throws (after it has waited for worker 0 to
   * accept a connection, when that is another worker).
   */
  failAt?: number;
  /** Workers that throw an uncaught error when they get a connection. */
  crashOnConnect?: boolean;
  /** Workers run a task that ignores shutdown, so they never end. */
  hang?: boolean;
  /**
   * Once ready, each worker sets `pause[0]` to 1 and blocks its thread
   * (`Atomics.wait`) until the test sets it to 2, for 10 s at most.
   */
  pause?: Int32Array;
}

const encoder = new TextEncoder();

/** Connects to `port` until it accepts, for up to 10 s. */
async function waitForListener(port: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (true) {
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.close();
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
}

evClusterWorker(async ({ index, data }) => {
  const options = data as ClusterTestData;
  const port = options.ports[Math.min(index, options.ports.length - 1)]!;
  if (options.failAt === index) {
    if (index !== 0) await waitForListener(options.ports[0]!);
    throw new RangeError(`worker ${index} was told to fail`);
  }
  const address = {
    hostname: "127.0.0.1",
    port,
    ...(options.reusePort ? { reusePort: true } : {}),
  };
  if (options.serve === "http") {
    // The server itself, with a loop of its own, stands for the worker.
    return serve(
      { ...address, maxConnections: 100, onListen() {} },
      () => new Response(`worker ${index}`),
    );
  }
  const loop = new EvLoop({ capacity: 100, onError() {} });
  loop.listen(address, () => async (socket) => {
    if (options.crashOnConnect) {
      setTimeout(() => {
        throw new Error(`worker ${index} crashed on purpose`);
      });
    }
    let line;
    while ((line = await socket.readLine({ timeout: 10_000 })) !== null) {
      await socket.send(encoder.encode(`${index} ${line}\n`));
    }
  });
  if (options.hang) loop.spawn(() => new Promise<never>(() => {}));
  const pause = options.pause;
  if (pause !== undefined) {
    setTimeout(() => {
      Atomics.store(pause, 0, 1);
      Atomics.notify(pause, 0);
      Atomics.wait(pause, 0, 1, 10_000);
    });
  }
  return loop;
});
