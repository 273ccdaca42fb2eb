// Copyright 2026 the @corothread/evthread authors. MIT license.
/**
 * For `tests/ev_cluster_test.ts`: an {@linkcode EvCluster} of `WORKERS`
 * workers (`cluster_worker.ts`, `serve()` with `reusePort: true`) all on one
 * port of 127.0.0.1; then `CONNECTIONS` clients at once, each one HTTP
 * request with `Connection: close` on its own connection; then the cluster's
 * counters, a shutdown, and one JSON line on stdout:
 *
 * ```json
 * { "port": 41234, "workers": 2, "connections": 64, "responses": 64,
 *   "servedBy": [30, 34], "accepted": 64, "acceptedBy": [30, 34],
 *   "finalAccepted": 64, "states": ["closed", "closed"], "shutdownMs": 3 }
 * ```
 *
 * `servedBy[i]`: responses whose body named worker `i`; `acceptedBy[i]`:
 * that worker's `accepted` counter before the shutdown; `finalAccepted`:
 * the summed counter after it. Exits 0 once the cluster has finished, 1 on
 * a failure, 3 if the whole run takes over 30 s.
 *
 * Usage: `deno run --unstable-net --allow-net --allow-read
 * tests/testdata/cluster_main.ts [PORT=0] [WORKERS=2] [CONNECTIONS=64]`
 * (port 0: a port that was free a moment ago).
 *
 * @module
 */

import { EvCluster } from "../../mod.ts";
import type { ClusterTestData } from "./cluster_worker.ts";

const [portArg = "0", workersArg = "2", connectionsArg = "64"] = Deno.args;
const workers = Number(workersArg);
const connections = Number(connectionsArg);

const safety = setTimeout(() => {
  console.error("cluster_main: no result within 30 s");
  Deno.exit(3);
}, 30_000);

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  return port;
}

/** One request on its own connection; the response body. */
async function request(port: number): Promise<string> {
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(
    new TextEncoder().encode(
      "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    ),
  );
  const text = await new Response(conn.readable).text();
  const body = text.slice(text.indexOf("\r\n\r\n") + 4);
  if (!text.startsWith("HTTP/1.1 200 ")) {
    throw new Error(`unexpected response: ${JSON.stringify(text)}`);
  }
  return body;
}

const port = Number(portArg) || freePort();
const data: ClusterTestData = { serve: "http", ports: [port], reusePort: true };
const cluster = await EvCluster.start(
  new URL("./cluster_worker.ts", import.meta.url),
  { workers, data },
);
try {
  const bodies = await Promise.all(
    Array.from({ length: connections }, () => request(port)),
  );
  const servedBy = Array.from({ length: workers }, () => 0);
  for (const body of bodies) {
    const match = /^worker (\d+)$/.exec(body);
    if (match === null) throw new Error(`unexpected body: ${body}`);
    servedBy[Number(match[1])]!++;
  }
  const before = await cluster.stats();
  const started = performance.now();
  await cluster.shutdown({ grace: 1000 });
  const shutdownMs = Math.round(performance.now() - started);
  const after = await cluster.stats();
  console.log(JSON.stringify({
    port,
    workers: cluster.size,
    connections,
    responses: bodies.length,
    servedBy,
    accepted: before.accepted,
    acceptedBy: before.workers.map((w) => w.accepted),
    finalAccepted: after.accepted,
    states: after.workers.map((w) => w.state),
    shutdownMs,
  }));
} catch (error) {
  console.error("cluster_main:", error);
  Deno.exitCode = 1;
  await cluster.shutdown({ grace: 0 });
} finally {
  clearTimeout(safety);
}
