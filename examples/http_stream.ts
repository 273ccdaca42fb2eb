// Copyright 2026 the @corothread/evthread authors. MIT license.

/**
 * A streamed response with `@corothread/evthread/http`: `GET /` answers
 * with a `ReadableStream` that emits one line every 100 ms, sent with the
 * chunked transfer coding as the lines are made.
 *
 * ```sh
 * deno run --allow-net examples/http_stream.ts [PORT]
 * curl -N 'http://127.0.0.1:8081/?lines=20&interval=250'
 * ```
 *
 * - `PORT`: the port to listen on, default 8081; `0` picks a free one.
 * - Query parameters: `lines` (1 to 1000, default 10) and `interval` in
 *   milliseconds (0 to 10000, default 100). Anything else gets 400; paths
 *   other than `/` get 404; methods other than GET and HEAD get 405.
 *
 * Backpressure: the stream has a high-water mark of 0, so its `pull` runs
 * only when the server asks for the next piece, and the server asks only
 * once the previous one is written to the socket. A client that reads
 * slowly slows the stream down; nothing piles up in memory.
 *
 * When the client goes away, the server cancels the stream at once (its
 * `cancel` runs, which ends the wait for the next line) and `request.signal`
 * aborts; a stream that ends badly makes the server close the connection
 * (a client that stayed would see a truncated response, never a
 * complete-looking one). The server prints `stream ended: N of M lines
 * (REASON)` for each stream, so you can watch it happen.
 *
 * Listens on 127.0.0.1 and prints `listening on http://127.0.0.1:PORT/`
 * once it accepts connections. On SIGINT (Ctrl-C) or SIGTERM it shuts down
 * gracefully: idle connections close at once, streams in flight get up to
 * 5 seconds to finish, then are cut; it exits 0.
 *
 * @module
 */

import { type HttpServer, serve } from "../http.ts";

const USAGE = "usage: deno run --allow-net examples/http_stream.ts [PORT]";
const HOSTNAME = "127.0.0.1";
const encoder = new TextEncoder();

function usage(message: string): never {
  console.error(`http_stream: ${message}`);
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

/** Waits `ms`; rejects with `signal.reason` as soon as `signal` aborts. */
function delay(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(id);
      reject(signal.reason);
    };
    const id = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * `count` lines, one every `interval` ms, made only when the consumer asks
 * for the next (pull-based, high-water mark 0). Errors with the signal's
 * reason when `signal` aborts.
 */
function lineStream(
  count: number,
  interval: number,
  signal: AbortSignal,
  onEnd: (sent: number, reason: string) => void,
): ReadableStream<Uint8Array> {
  const started = performance.now();
  // Cancelling the stream (the server does when the client goes away)
  // also ends a wait in progress.
  const cancelled = new AbortController();
  const stop = AbortSignal.any([signal, cancelled.signal]);
  let sent = 0;
  let ended = false;
  const end = (reason: string) => {
    if (!ended) onEnd(sent, reason);
    ended = true;
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        if (sent > 0) await delay(interval, stop);
      } catch (error) {
        end(`aborted: ${error instanceof Error ? error.message : error}`);
        throw error;
      }
      sent++;
      const ms = Math.round(performance.now() - started);
      controller.enqueue(
        encoder.encode(`line ${sent} of ${count} at ${ms} ms\n`),
      );
      if (sent === count) {
        controller.close();
        end("complete");
      }
    },
    cancel() {
      end("cancelled");
      cancelled.abort();
    },
  }, { highWaterMark: 0 });
}

function integerParam(
  params: URLSearchParams,
  name: string,
  min: number,
  max: number,
  fallback: number,
): number | string {
  const raw = params.get(name);
  if (raw === null) return fallback;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || value < min || value > max) {
    return `'${name}' must be an integer from ${min} to ${max}: received ${
      JSON.stringify(raw)
    }\n`;
  }
  return value;
}

function handler(request: Request): Response {
  const url = new URL(request.url);
  if (url.pathname !== "/") {
    return new Response("Not Found\n", { status: 404 });
  }
  if (request.method !== "GET" && request.method !== "HEAD") {
    return new Response("Method Not Allowed\n", {
      status: 405,
      headers: { allow: "GET, HEAD" },
    });
  }
  for (const name of url.searchParams.keys()) {
    if (name !== "lines" && name !== "interval") {
      return new Response(`unknown parameter: ${JSON.stringify(name)}\n`, {
        status: 400,
      });
    }
  }
  const lines = integerParam(url.searchParams, "lines", 1, 1000, 10);
  const interval = integerParam(url.searchParams, "interval", 0, 10_000, 100);
  if (typeof lines === "string") return new Response(lines, { status: 400 });
  if (typeof interval === "string") {
    return new Response(interval, { status: 400 });
  }
  const headers = {
    "content-type": "text/plain; charset=utf-8",
    // Browsers and proxies: show each line as it comes.
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
  };
  if (request.method === "HEAD") return new Response(null, { headers });
  const body = lineStream(
    lines,
    interval,
    request.signal,
    (sent, reason) =>
      console.log(`stream ended: ${sent} of ${lines} lines (${reason})`),
  );
  return new Response(body, { headers });
}

const port = parsePort(Deno.args, 8081);

let server: HttpServer;
try {
  server = serve({ hostname: HOSTNAME, port, onListen() {} }, handler);
} catch (error) {
  console.error(
    `http_stream: cannot listen on ${HOSTNAME}:${port}: ${
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
