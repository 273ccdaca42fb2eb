/**
 * The hello-world response of the reference servers (`_raw_server.ts`,
 * `_evsocket_server.ts`), byte for byte what `serve()` sends for
 * `new Response("Hello, World!")`: the status line, `content-type`,
 * `date` and `content-length`, then the body, in one buffer. The bytes are
 * rebuilt when the second changes (the `date` field), so a response costs
 * one `Date.now()` and no allocation.
 *
 * @module
 */

const BODY = "Hello, World!";
const encoder = new TextEncoder();

let second = -1;
let bytes = new Uint8Array(0);

/** The response bytes for this second (never mutated once returned). */
export function helloResponse(): Uint8Array {
  const now = Date.now();
  const s = Math.floor(now / 1000);
  if (s !== second) {
    second = s;
    bytes = encoder.encode(
      "HTTP/1.1 200 OK\r\n" +
        "content-type: text/plain;charset=UTF-8\r\n" +
        `date: ${new Date(now).toUTCString()}\r\n` +
        `content-length: ${BODY.length}\r\n\r\n${BODY}`,
    );
  }
  return bytes;
}

/** `count` responses back to back (pipelined requests), in one buffer. */
export function helloResponses(count: number): Uint8Array {
  const one = helloResponse();
  if (count === 1) return one;
  const out = new Uint8Array(one.byteLength * count);
  for (let i = 0; i < count; i++) out.set(one, i * one.byteLength);
  return out;
}
