// Copyright 2026 the @corothread/evthread authors. MIT license.

// EvCluster and evClusterWorker. The test command runs without
// --unstable-net, so the in-process tests use workers on separate ports
// (or check the TypeError that reusePort gives without the flag); one test
// runs tests/testdata/cluster_main.ts in a child process with the flag, for
// two workers sharing one port. Every wait has a safety timeout; workers
// are always shut down or terminated before a test ends.
//
// deno test --allow-net --allow-read --allow-run --allow-env --allow-write \
//   --sanitize-ops --sanitize-resources tests/ev_cluster_test.ts

import {
  assert,
  assertEquals,
  assertGreater,
  assertInstanceOf,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import {
  EvCluster,
  type EvClusterOptions,
  evClusterWorker,
  EvLoop,
} from "../mod.ts";
import { serve } from "../http.ts";
import {
  closedPort,
  connect,
  encoder,
  HOST,
  readLine,
  within,
} from "./_helpers.ts";
import { DenoProcess } from "./_process.ts";
import type { ClusterTestData } from "./testdata/cluster_worker.ts";

/** The most any single wait in these tests may take. */
const SAFETY = 30_000;
const WORKER = new URL("./testdata/cluster_worker.ts", import.meta.url);
/** Whether this process runs with --unstable-net. */
const UNSTABLE_NET =
  typeof (Deno as { listenDatagram?: unknown }).listenDatagram === "function";

/** Starts a cluster of the test worker; errors are collected. */
async function startCluster(
  data: ClusterTestData,
  options: Omit<EvClusterOptions, "data"> = {},
): Promise<{ cluster: EvCluster; errors: [unknown, number][] }> {
  const errors: [unknown, number][] = [];
  const cluster = await within(
    EvCluster.start(WORKER, {
      workers: 2,
      onError: (error, worker) => errors.push([error, worker]),
      ...options,
      data,
    }),
    "the cluster to start",
    SAFETY,
  );
  return { cluster, errors };
}

/** Sends a line on a new connection and returns the answer. */
async function echo(port: number, text: string): Promise<string | null> {
  using conn = await connect(port);
  await conn.write(encoder.encode(`${text}\n`));
  return await readLine(conn);
}

/** Connects to `port` until it is refused (a worker was terminated). */
async function refusedEventually(port: number): Promise<void> {
  const deadline = performance.now() + SAFETY;
  while (true) {
    try {
      const conn = await connect(port);
      conn.close();
    } catch (error) {
      if (error instanceof Deno.errors.ConnectionRefused) return;
      throw error;
    }
    if (performance.now() > deadline) {
      throw new Error(`port ${port} still accepts after ${SAFETY} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function dataUrl(source: string): string {
  return `data:application/typescript,${encodeURIComponent(source)}`;
}

Deno.test({
  name:
    "EvLoop.listen() and serve() throw a TypeError naming --unstable-net for reusePort without the flag",
  ignore: UNSTABLE_NET,
  async fn() {
    await using loop = new EvLoop();
    assertThrows(
      () =>
        loop.listen(
          { hostname: HOST, port: 0, reusePort: true },
          () => null,
        ),
      TypeError,
      "--unstable-net",
    );
    assertThrows(
      () =>
        serve(
          { hostname: HOST, port: 0, reusePort: true, onListen() {} },
          () => new Response("never"),
        ),
      TypeError,
      "--unstable-net",
    );
    // The process and the loop go on.
    const acceptor = loop.listen({ hostname: HOST, port: 0 }, () => null);
    assertGreater(acceptor.port, 0);
  },
});

Deno.test({
  name:
    "EvCluster.start() rejects with the setup's TypeError when a worker uses reusePort without --unstable-net",
  ignore: UNSTABLE_NET,
  async fn() {
    const error = await assertRejects(
      () =>
        within(
          EvCluster.start(WORKER, {
            workers: 2,
            data: {
              serve: "echo",
              ports: [closedPort()],
              reusePort: true,
            } satisfies ClusterTestData,
          }),
          "start() to reject",
          SAFETY,
        ),
      TypeError,
      "--unstable-net",
    ) as TypeError;
    // The worker's stack, not the main's.
    assertStringIncludes(error.stack ?? "", "ev_tcp_acceptor.ts");
  },
});

Deno.test("EvCluster.stats() sums the counters of workers on separate ports, and shutdown() ends them", async () => {
  const ports = [closedPort(), closedPort()];
  const { cluster, errors } = await startCluster({
    serve: "echo",
    ports,
    reusePort: false,
  });
  assertEquals(cluster.size, 2);
  for (let i = 0; i < 3; i++) assertEquals(await echo(ports[0]!, "a"), "0 a");
  assertEquals(await echo(ports[1]!, "b"), "1 b");

  const stats = await within(cluster.stats(), "stats", SAFETY);
  assertEquals(stats.workers.map((w) => [w.index, w.state, w.accepted]), [
    [0, "running", 3],
    [1, "running", 1],
  ]);
  assertEquals(stats.accepted, 4);
  assertEquals(stats.capacity, 200);
  assertEquals(stats.spawned, 4);

  await within(cluster.shutdown({ grace: 1000 }), "shutdown", SAFETY);
  await cluster.finished;
  const final = await cluster.stats();
  assertEquals(final.workers.map((w) => w.state), ["closed", "closed"]);
  assertEquals([final.accepted, final.ended, final.active], [4, 4, 0]);
  assertEquals(errors, []);
  await refusedEventually(ports[0]!);
  await refusedEventually(ports[1]!);
});

Deno.test("EvCluster.start() rejects with the error of a worker module that throws at startup", async () => {
  const error = await assertRejects(
    () =>
      within(
        EvCluster.start(dataUrl(`throw new Error("no such config");`), {
          workers: 2,
        }),
        "start() to reject",
        SAFETY,
      ),
    Error,
    "failed to start",
  ) as Error;
  assertStringIncludes(error.message, "no such config");
});

Deno.test("EvCluster.start() terminates the other workers when one fails in its setup", async () => {
  const ports = [closedPort()];
  const error = await assertRejects(
    () =>
      startCluster({
        serve: "echo",
        ports,
        reusePort: false,
        failAt: 1, // after worker 0 has accepted a connection
      }),
    RangeError,
    "worker 1 was told to fail",
  );
  assertInstanceOf(error, RangeError);
  await refusedEventually(ports[0]!);
});

Deno.test("evClusterWorker() throws a TypeError outside a worker started by EvCluster", async () => {
  assertThrows(
    () => evClusterWorker(() => new EvLoop()),
    TypeError,
    "this is not a worker",
  );
  // In a worker that EvCluster did not start.
  const worker = new Worker(
    dataUrl(`
      import { EvLoop, evClusterWorker } from "${new URL(
      "../mod.ts",
      import.meta.url,
    )}";
      try {
        evClusterWorker(() => new EvLoop());
        postMessage("no error");
      } catch (error) {
        postMessage(String(error));
      }
    `),
    { type: "module", name: "plain" },
  );
  try {
    const message = await within(
      new Promise<unknown>((resolve, reject) => {
        worker.onmessage = (event) => resolve(event.data);
        worker.onerror = (event) => {
          event.preventDefault();
          reject(new Error(event.message));
        };
      }),
      "the worker's answer",
      SAFETY,
    );
    assertEquals(
      message,
      `TypeError: evClusterWorker() must be called in a worker started by EvCluster.start(): this worker's name is "plain"`,
    );
  } finally {
    worker.terminate();
  }
});

Deno.test("EvCluster reports a worker that crashes to onError and marks it crashed; the others go on", async () => {
  const ports = [closedPort(), closedPort()];
  const crashed = Promise.withResolvers<[unknown, number]>();
  const { cluster, errors } = await startCluster(
    { serve: "echo", ports, reusePort: false, crashOnConnect: true },
    { onError: (error, worker) => crashed.resolve([error, worker]) },
  );
  try {
    using conn = await connect(ports[0]!);
    const [error, worker] = await within(crashed.promise, "a crash", SAFETY);
    assertEquals(worker, 0);
    assertInstanceOf(error, Error);
    assertStringIncludes(error.message, "worker 0 crashed on purpose");
    conn.close();
    const stats = await within(cluster.stats(), "stats", SAFETY);
    assertEquals(stats.workers.map((w) => w.state), ["crashed", "running"]);
    assertEquals(stats.workers[0]!.active, 0);
    assertEquals(errors, []);
  } finally {
    await within(cluster.shutdown({ grace: 0 }), "shutdown", SAFETY);
  }
  assertEquals((await cluster.stats()).workers.map((w) => w.state), [
    "crashed",
    "closed",
  ]);
});

Deno.test("EvCluster.shutdown() terminates a worker that has not ended 2 s after its grace", async () => {
  const { cluster, errors } = await startCluster({
    serve: "echo",
    ports: [closedPort(), closedPort()],
    reusePort: false,
    hang: true,
  }, { workers: 1 });
  const started = performance.now();
  await within(cluster.shutdown({ grace: 0 }), "shutdown", SAFETY);
  const elapsed = performance.now() - started;
  assert(elapsed >= 1900, `terminated after ${elapsed} ms`);
  const stats = await cluster.stats();
  assertEquals(stats.workers.map((w) => w.state), ["terminated"]);
  assertEquals(errors.length, 1);
  const [error, worker] = errors[0]!;
  assertEquals(worker, 0);
  assertInstanceOf(error, DOMException);
  assertEquals(error.name, "TimeoutError");
});

Deno.test("EvCluster.stats() rejects with the signal's reason when a worker does not answer", async () => {
  const pause = new Int32Array(new SharedArrayBuffer(4));
  const { cluster, errors } = await startCluster({
    serve: "echo",
    ports: [closedPort()],
    reusePort: false,
    pause,
  }, { workers: 1 });
  try {
    // Until the worker's thread is blocked.
    const { async, value } = Atomics.waitAsync(pause, 0, 0, SAFETY);
    if (async) await value;
    assertEquals(Atomics.load(pause, 0), 1);
    const error = await assertRejects(() =>
      cluster.stats({ signal: AbortSignal.timeout(100) })
    );
    assertInstanceOf(error, DOMException);
    assertEquals(error.name, "TimeoutError");
  } finally {
    Atomics.store(pause, 0, 2);
    Atomics.notify(pause, 0);
    await within(cluster.shutdown({ grace: 1000 }), "shutdown", SAFETY);
  }
  assertEquals((await cluster.stats()).workers[0]!.state, "closed");
  assertEquals(errors, []);
});

Deno.test("EvCluster shuts down when its signal aborts", async () => {
  const controller = new AbortController();
  const { cluster } = await startCluster(
    { serve: "echo", ports: [closedPort(), closedPort()], reusePort: false },
    { signal: controller.signal },
  );
  controller.abort();
  await within(cluster.finished, "the cluster to finish", SAFETY);
  assertEquals((await cluster.stats()).workers.map((w) => w.state), [
    "closed",
    "closed",
  ]);
});

Deno.test("EvCluster.start() rejects bad arguments before starting a worker", async () => {
  await assertRejects(
    () => EvCluster.start("./testdata/cluster_worker.ts"),
    TypeError,
    "absolute URL",
  );
  await assertRejects(
    () => EvCluster.start(WORKER, { workers: 0 }),
    RangeError,
    "'workers' must be an integer >= 1: received 0",
  );
  const error = await assertRejects(() =>
    EvCluster.start(WORKER, { data: { f() {} } })
  );
  assertInstanceOf(error, DOMException);
  assertEquals(error.name, "DataCloneError");
  const reason = new Error("stop");
  assertEquals(
    await assertRejects(() =>
      EvCluster.start(WORKER, { signal: AbortSignal.abort(reason) })
    ),
    reason,
  );
});

Deno.test({
  name:
    "EvCluster with reusePort spreads 64 connections over 2 workers on one port (child process with --unstable-net)",
  async fn() {
    await using child = new DenoProcess("cluster_main.ts", [
      "run",
      "--no-prompt",
      "--unstable-net",
      "--allow-net",
      "--allow-read",
      "tests/testdata/cluster_main.ts",
      "0",
      "2",
      "64",
    ]);
    const { code, stdout } = await child.exit(SAFETY);
    assertEquals(code, 0, `stderr:\n${child.stderr}`);
    const report = JSON.parse(stdout.trim().split("\n").at(-1)!) as {
      workers: number;
      connections: number;
      responses: number;
      servedBy: number[];
      accepted: number;
      acceptedBy: number[];
      finalAccepted: number;
      states: string[];
      shutdownMs: number;
    };
    console.log(
      `64 connections split ${report.servedBy.join(" / ")} over 2 workers ` +
        `(accepted ${report.acceptedBy.join(" / ")}); shutdown took ` +
        `${report.shutdownMs} ms`,
    );
    assertEquals(report.workers, 2);
    assertEquals(report.responses, 64);
    assertEquals(report.servedBy.reduce((a, b) => a + b, 0), 64);
    assert(
      report.servedBy.every((n) => n > 0),
      `both workers serve: ${report.servedBy}`,
    );
    assertEquals(report.acceptedBy, report.servedBy);
    assertEquals(report.accepted, 64);
    assertEquals(report.finalAccepted, 64);
    assertEquals(report.states, ["closed", "closed"]);
    assertEquals(child.stderr, "");
  },
});
