/**
 * What the benchmarks' servers share besides the raw accept loop of
 * `raw_server.ts`: stopping on SIGTERM so that the process ends by itself
 * (and `--cpu-prof` writes its profile), and, for the `node:http` and
 * `node:net` servers, listening on 127.0.0.1 with `listening <port>`
 * printed. Neither touches the per-request path.
 *
 * @module
 */

import type { Server } from "node:net";

/**
 * Calls `stop` on the first SIGTERM and stops listening for the signal, so
 * that once `stop` has closed everything the process ends by itself.
 */
export function onSigterm(stop: () => void): void {
  const onTerm = () => {
    Deno.removeSignalListener("SIGTERM", onTerm);
    stop();
  };
  Deno.addSignalListener("SIGTERM", onTerm);
}

/**
 * Starts a `node:http` or `node:net` server on 127.0.0.1 at `port` (0: any
 * free port) and prints `listening <port>` (the bound one) once it listens.
 */
export function listenNode(server: Server, port: number): void {
  server.listen(port, "127.0.0.1", () => {
    const addr = server.address();
    const bound = typeof addr === "object" && addr !== null ? addr.port : port;
    console.log(`listening ${bound}`);
  });
}
