// Copyright 2026 the @corothread/evthread authors. MIT license.

/**
 * Hello, World over HTTP/1.1 with `@corothread/evthread/http`: every method
 * and every path gets `200 Hello, World!` (text/plain).
 *
 * ```sh
 * deno run --allow-net examples/http_hello.ts [PORT]
 * ```
 *
 * - `PORT`: the port to listen on, default 8080; `0` picks a free one.
 *
 * Listens on 127.0.0.1 and prints `listening on http://127.0.0.1:PORT/`
 * (with the real port) once it accepts connections. On SIGINT (Ctrl-C) or
 * SIGTERM it shuts down gracefully (`server.shutdown()`: idle keep-alive
 * connections close at once, requests in flight get up to 5 seconds) and
 * exits 0. Try it with `curl http://127.0.0.1:8080/`.
 *
 * Switching from `Deno.serve` is a change of import: `serve(options,
 * handler)` has the same form.
 *
 * @module
 */

import { type HttpServer, serve } from "../http.ts";

const USAGE = "usage: deno run --allow-net examples/http_hello.ts [PORT]";
const HOSTNAME = "127.0.0.1";

function usage(message: string): never {
  console.error(`http_hello: ${message}`);
  console.error(USAGE);
  Deno.exit(2);
}

function parsePort(args: string[], fallback: number): number {
  if (args.length > 1) usage(`unexpected argument: ${JSON.stringify(args[1])}`);
  const arg = args[0];
  if (arg === undefined) return fallback;
  if (arg === "-h" || arg === "--help") {
    console.log(USAGE);
    Deno.exit(0);
  }
  if (!/^\d{1,5}$/.test(arg) || Number(arg) > 65_535) {
    usage(`PORT must be 0 to 65535: received ${JSON.stringify(arg)}`);
  }
  return Number(arg);
}

const port = parsePort(Deno.args, 8080);

let server: HttpServer;
try {
  server = serve(
    { hostname: HOSTNAME, port, onListen() {} },
    () => new Response("Hello, World!"),
  );
} catch (error) {
  console.error(
    `http_hello: cannot listen on ${HOSTNAME}:${port}: ${
      error instanceof Error ? error.message : error
    }`,
  );
  Deno.exit(1);
}

const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
function onSignal(): void {
  // Removed at once, so that a second signal kills the process.
  for (const signal of signals) Deno.removeSignalListener(signal, onSignal);
  server.shutdown();
}
for (const signal of signals) Deno.addSignalListener(signal, onSignal);
// Printed once the signals are handled: whoever waits for this line may
// send one.
console.log(`listening on http://${HOSTNAME}:${server.addr.port}/`);

await server.finished;
