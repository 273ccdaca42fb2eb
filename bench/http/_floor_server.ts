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
 * Usage: `deno run --allow-net bench/http/_floor_server.ts [--port N]` (0: any free port).
 * Prints `listening <port>` as its first stdout line. On SIGTERM it closes
 * the listener and its connections and lets the process end by itself.
 *
 * @module
 */

import { parseArgs, PORT } from "../_common/args.ts";

const BUFFER_SIZE = 64 * 1024;
const CR = 0x0d;
const LF = 0x0a;
const encoder = new TextEncoder();

const { port } = parseArgs(Deno.args, { port: PORT }, { port: 0 });
const listener = Deno.listen({ hostname: "127.0.0.1", port });
const conns = new Set<Deno.Conn>();

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

/** The index just past the first CRLFCRLF in `buf[from, end)`, or -1. */
function headEnd(buf: Uint8Array, from: number, end: number): number {
  for (let i = from; i + 3 < end; i++) {
    if (
      buf[i + 3] === LF && buf[i + 2] === CR && buf[i + 1] === LF &&
      buf[i] === CR
    ) return i + 4;
  }
  return -1;
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

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
}

async function serveConn(conn: Deno.TcpConn): Promise<void> {
  conns.add(conn);
  const buf = new Uint8Array(BUFFER_SIZE);
  const out = new Uint8Array(BUFFER_SIZE);
  // buf[start, end) is unanswered input; the search resumes at `scan`.
  let start = 0;
  let end = 0;
  let scan = 0;
  try {
    conn.setNoDelay(true);
    while (true) {
      const n = await conn.read(buf.subarray(end));
      if (n === null) break;
      end += n;
      let at: number;
      while ((at = headEnd(buf, scan, end)) >= 0) {
        start = scan = at;
        const size = await serialize(handler(), out);
        await writeAll(conn, out.subarray(0, size));
      }
      if (start === end) {
        start = end = scan = 0;
        continue;
      }
      // A partial head: resume the search 3 bytes back, and make room.
      scan = Math.max(start, end - 3);
      if (end === buf.byteLength) {
        if (start === 0) break; // a head over 64 KiB
        buf.copyWithin(0, start, end);
        end -= start;
        scan -= start;
        start = 0;
      }
    }
  } catch {
    // Peer reset or shutdown: nothing to do for a benchmark server.
  } finally {
    conns.delete(conn);
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }
}

function onTerm(): void {
  Deno.removeSignalListener("SIGTERM", onTerm);
  listener.close();
  for (const conn of conns) {
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }
  conns.clear();
}
Deno.addSignalListener("SIGTERM", onTerm);

console.log(`listening ${listener.addr.port}`);
try {
  for await (const conn of listener) serveConn(conn);
} catch {
  // The listener was closed by SIGTERM.
}
