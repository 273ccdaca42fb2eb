/**
 * The keep-alive loop of the HTTP reference servers (`_raw_server.ts`,
 * `_floor_server.ts`): read into a 64 KiB buffer, find the end of each
 * request head (CRLFCRLF; the search resumes where the last one stopped, so
 * nothing is scanned twice), and have `answer` respond to the heads that one
 * read brought (pipelined requests), in order. No parsing, no body, no
 * timeouts: a head over 64 KiB closes the connection.
 *
 * @module
 */

const BUFFER_SIZE = 64 * 1024;
const CR = 0x0d;
const LF = 0x0a;

/**
 * The index just past the first CRLFCRLF of `buf` that ends at or before
 * `end`, searching from `from`; -1 when there is none.
 */
export function headEnd(buf: Uint8Array, from: number, end: number): number {
  for (let i = from; i + 3 < end; i++) {
    if (
      buf[i + 3] === LF && buf[i + 2] === CR && buf[i + 1] === LF &&
      buf[i] === CR
    ) return i + 4;
  }
  return -1;
}

/**
 * Serves `conn` until it ends: `answer(heads)` writes the responses to the
 * `heads` complete request heads that the last read brought.
 */
export async function keepAliveLoop(
  conn: Deno.Conn,
  answer: (heads: number) => Promise<void>,
): Promise<void> {
  const buf = new Uint8Array(BUFFER_SIZE);
  // buf[start, end) is unanswered input; the search resumes at `scan`.
  let start = 0;
  let end = 0;
  let scan = 0;
  while (true) {
    const n = await conn.read(buf.subarray(end));
    if (n === null) return;
    end += n;
    let heads = 0;
    let at: number;
    while ((at = headEnd(buf, scan, end)) >= 0) {
      heads++;
      start = scan = at;
    }
    if (heads > 0) await answer(heads);
    if (start === end) {
      start = end = scan = 0;
      continue;
    }
    // A partial head: resume the search 3 bytes back (a CRLFCRLF may
    // straddle two reads), and make room if the buffer is full.
    scan = Math.max(start, end - 3);
    if (end === buf.byteLength) {
      if (start === 0) return; // a head over 64 KiB
      buf.copyWithin(0, start, end);
      end -= start;
      scan -= start;
      start = 0;
    }
  }
}
