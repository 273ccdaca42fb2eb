/**
 * Hello-world HTTP server for `bench/http/http.ts`: the floor of any server
 * that runs a Fetch handler (`Request` -> `Response`) on public APIs only.
 * It is `_raw_server.ts`'s keep-alive loop (no parsing, no timeouts, no
 * request object) plus, per request, the work that a `Response` costs
 * whoever serializes it with public APIs: the handler's
 * `new Response("Hello, World!")`, its `status`, `statusText` and
 * `headers.forEach` for the head, and the body read through
 * `response.body.getReader()` to its end (no public API tells a fixed body
 * from a stream, and `text()`/`bytes()` would buffer a stream). Head and
 * body go out in one write, as `serve()` sends them.
 *
 * The gap from `_raw_server.ts` to this is what the Fetch API costs; from
 * this to `_evthread_server.ts`, what `serve()` itself costs (parsing,
 * timeouts, the task and socket layers, keep-alive bookkeeping).
 *
 * It is `_raw_server.ts`'s loop (`_keep_alive.ts`) with this in place of
 * the fixed bytes. Usage: `deno run --allow-net bench/http/_floor_server.ts
 * [--port N]` (0: any free port).
 * Prints `listening <port>` as its first stdout line. On SIGTERM it closes
 * the listener and its connections and lets the process end by itself.
 *
 * @module
 */

import { runRawServer, writeAll } from "../_common/raw_server.ts";
import { keepAliveLoop } from "./_keep_alive.ts";

const encoder = new TextEncoder();

/** The application: what every server in this benchmark runs. */
const handler = (): Response => new Response("Hello, World!");

let second = -1;
let date = "";

function httpDate(): string {
  const now = Date.now();
  const s = Math.floor(now / 1000);
  if (s !== second) {
    second = s;
    date = new Date(now).toUTCString();
  }
  return date;
}

/** The response's bytes, serialized with public APIs only, into `out`. */
async function serialize(response: Response, out: Uint8Array): Promise<number> {
  let head = `HTTP/1.1 ${response.status} ${response.statusText || "OK"}\r\n`;
  response.headers.forEach((value, name) => {
    head += `${name}: ${value}\r\n`;
  });
  const reader = response.body!.getReader();
  const pieces: Uint8Array[] = [];
  let length = 0;
  while (true) {
    const { done, value } = await reader.read();
    if (done) break;
    pieces.push(value);
    length += value.byteLength;
  }
  head += `date: ${httpDate()}\r\ncontent-length: ${length}\r\n\r\n`;
  let at = encoder.encodeInto(head, out).written;
  for (const piece of pieces) {
    out.set(piece, at);
    at += piece.byteLength;
  }
  return at;
}

await runRawServer(Deno.args, (conn) => {
  const out = new Uint8Array(64 * 1024);
  return keepAliveLoop(conn, async (heads) => {
    for (let i = 0; i < heads; i++) {
      const size = await serialize(handler(), out);
      await writeAll(conn, out.subarray(0, size));
    }
  });
});
