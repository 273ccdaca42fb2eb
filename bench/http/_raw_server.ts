/**
 * Hello-world HTTP server for `bench/http/http.ts` with no HTTP library: a
 * bare keep-alive loop on `Deno.Conn`, the transport's cost and nothing
 * else. Per connection: read into a 64 KiB buffer, find the end of each
 * request head (CRLFCRLF; the search resumes where the last one stopped,
 * nothing is scanned twice), and write one fixed response per head
 * (`_hello.ts`: the bytes `serve()` sends, `date` refreshed once a second).
 * The heads that one read brings (pipelined requests) are answered in
 * order, in one write. No parsing, no body, no timeouts: a head over 64 KiB
 * closes the connection.
 *
 * Usage: `deno run --allow-net bench/http/_raw_server.ts [--port N]` (0: any free port).
 * Prints `listening <port>` as its first stdout line. On SIGTERM it closes
 * the listener and its connections and lets the process end by itself, so
 * `--cpu-prof` writes a profile.
 *
 * @module
 */

import { parseArgs, PORT } from "../_common/args.ts";
import { helloResponses } from "./_hello.ts";

const BUFFER_SIZE = 64 * 1024;
const CR = 0x0d;
const LF = 0x0a;

const { port } = parseArgs(Deno.args, { port: PORT }, { port: 0 });
const listener = Deno.listen({ hostname: "127.0.0.1", port });
const conns = new Set<Deno.Conn>();

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
}

/**
 * The index just past the first CRLFCRLF of `buf` that ends at or before
 * `end`, searching from `from`; -1 when there is none.
 */
function headEnd(buf: Uint8Array, from: number, end: number): number {
  for (let i = from; i + 3 < end; i++) {
    if (
      buf[i + 3] === LF && buf[i + 2] === CR && buf[i + 1] === LF &&
      buf[i] === CR
    ) return i + 4;
  }
  return -1;
}

async function serveConn(conn: Deno.TcpConn): Promise<void> {
  conns.add(conn);
  const buf = new Uint8Array(BUFFER_SIZE);
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
      let heads = 0;
      let at: number;
      while ((at = headEnd(buf, scan, end)) >= 0) {
        heads++;
        start = scan = at;
      }
      if (heads > 0) await writeAll(conn, helloResponses(heads));
      if (start === end) {
        start = end = scan = 0;
        continue;
      }
      // A partial head: resume the search 3 bytes back (a CRLFCRLF may
      // straddle two reads), and make room if the buffer is full.
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
