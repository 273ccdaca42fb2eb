// Copyright 2026 the @corothread/evthread authors. MIT license.

/**
 * Hello, World over HTTP/1.1 from one `EvLoop` per core: an `EvCluster` of
 * workers (`examples/_http_cluster_worker.ts`), each running `serve()` on
 * its own loop, all listening on one port with `reusePort: true`; the Linux
 * kernel spreads the connections across them.
 *
 * ```sh
 * deno run --unstable-net --allow-net --allow-read examples/http_cluster.ts [PORT] [WORKERS]
 * ```
 *
 * - `PORT`: the port to listen on, default 8083; `0` picks a free one.
 * - `WORKERS`: how many workers (loops), default one per core
 *   (`navigator.hardwareConcurrency`).
 *
 * `--unstable-net` is what Deno 2.9.6 requires for `reusePort`;
 * `--allow-read` lets the workers load their module. Listens on 127.0.0.1
 * and prints `listening on http://127.0.0.1:PORT/ (N workers)` once every
 * worker accepts connections; then, every 5 seconds while clients are
 * connected, the counters summed over the workers and each worker's
 * `accepted`. On SIGINT (Ctrl-C) or SIGTERM every worker shuts down
 * gracefully (requests in flight get up to 5 seconds; a second signal cuts
 * that to 0), and the final counters are printed. Exits 0 (1 if a worker
 * crashed or had to be terminated). Try it with
 * `wrk -c100 -d5s http://127.0.0.1:8083/`.
 *
 * @module
 */

import { EvCluster, type EvClusterStats } from "../mod.ts";
import type { HttpClusterData } from "./_http_cluster_worker.ts";

const USAGE =
  "usage: deno run --unstable-net --allow-net --allow-read examples/http_cluster.ts [PORT] [WORKERS]";
const HOSTNAME = "127.0.0.1";
const STATS_EVERY_MS = 5000;

function usage(message: string): never {
  console.error(`http_cluster: ${message}`);
  console.error(USAGE);
  Deno.exit(2);
}

function parseArgs(args: string[]): { port: number; workers: number } {
  if (args.length > 2) usage(`unexpected argument: ${JSON.stringify(args[2])}`);
  const [portArg, workersArg] = args;
  if (portArg === "-h" || portArg === "--help") {
    console.log(USAGE);
    Deno.exit(0);
  }
  let port = 8083;
  if (portArg !== undefined) {
    if (!/^\d{1,5}$/.test(portArg) || Number(portArg) > 65_535) {
      usage(`PORT must be 0 to 65535: received ${JSON.stringify(portArg)}`);
    }
    port = Number(portArg);
  }
  let workers = navigator.hardwareConcurrency;
  if (workersArg !== undefined) {
    if (!/^\d{1,3}$/.test(workersArg) || Number(workersArg) < 1) {
      usage(
        `WORKERS must be a positive integer: received ${
          JSON.stringify(workersArg)
        }`,
      );
    }
    workers = Number(workersArg);
  }
  return { port, workers };
}

/** `accepted 1234 (601 + 633), active 12, errors 0`. */
function summary(stats: EvClusterStats): string {
  const split = stats.workers.map((w) =>
    w.state === "running" || w.state === "closed"
      ? String(w.accepted)
      : `${w.accepted} ${w.state}`
  ).join(" + ");
  return `accepted ${stats.accepted} (${split}), active ${stats.active}, ` +
    `peak ${stats.peakActive}, refused ${stats.refused}, ` +
    `timeouts ${stats.timeouts}, errors ${stats.errors}`;
}

const { port: requested, workers } = parseArgs(Deno.args);
if (
  typeof (Deno as { listenDatagram?: unknown }).listenDatagram !== "function"
) {
  usage("reusePort needs Deno's --unstable-net flag");
}
// Port 0: pick one here, since each worker listening on port 0 would get a
// port of its own.
let port = requested;
if (port === 0) {
  const probe = Deno.listen({ hostname: HOSTNAME, port: 0 });
  port = probe.addr.port;
  probe.close();
}

let cluster: EvCluster;
try {
  cluster = await EvCluster.start(
    new URL("./_http_cluster_worker.ts", import.meta.url),
    {
      workers,
      data: { hostname: HOSTNAME, port } satisfies HttpClusterData,
    },
  );
} catch (error) {
  console.error(
    `http_cluster: cannot listen on ${HOSTNAME}:${port}: ${
      error instanceof Error ? error.message : error
    }`,
  );
  Deno.exit(1);
}

const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
let signalled = 0;
function onSignal(): void {
  // The first signal drains for up to 5 s; a second one aborts at once.
  cluster.shutdown({ grace: signalled++ === 0 ? 5000 : 0 });
}
for (const signal of signals) Deno.addSignalListener(signal, onSignal);

let lastAccepted = 0;
let polling = false;
const ticker = setInterval(async () => {
  if (polling) return;
  polling = true;
  try {
    const stats = await cluster.stats({ signal: AbortSignal.timeout(1000) });
    if (stats.accepted !== lastAccepted || stats.active > 0) {
      lastAccepted = stats.accepted;
      console.log(`stats: ${summary(stats)}`);
    }
  } catch {
    // A worker too busy to answer within a second: skip this round.
  } finally {
    polling = false;
  }
}, STATS_EVERY_MS);

// Printed once the signals are handled: whoever waits for this line may
// send one.
console.log(
  `listening on http://${HOSTNAME}:${port}/ (${cluster.size} workers)`,
);

await cluster.finished;
clearInterval(ticker);
for (const signal of signals) Deno.removeSignalListener(signal, onSignal);
const final = await cluster.stats();
console.log(`final: ${summary(final)}`);
if (final.workers.some((w) => w.state !== "closed")) {
  // A crashed worker was reported on stderr. A terminated one may still
  // run (Deno cannot stop a thread stuck in a loop): exit explicitly.
  Deno.exit(1);
}
