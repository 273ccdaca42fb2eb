/**
 * Hello-world HTTP server for `bench/http/http.ts` on this library's socket
 * layer with no HTTP code: the keep-alive loop of `_raw_server.ts` on an
 * `EvSocket`, a task per connection of an `EvLoop` acceptor, with the
 * timeouts `serve()` uses by default (`src/http_server.ts`):
 *
 * - `readUntil(CRLFCRLF)` for each request head, at most 65,536 bytes
 *   (`maxHeaderBytes`), within 10 s for the first head of a connection
 *   (`headerTimeout`) and 5 s for each next one (`idleTimeout`; a head that
 *   has begun when it fires gets the header timeout to finish, as in
 *   `serve()`);
 * - `send` of the fixed response (`_hello.ts`: the bytes `serve()` sends)
 *   with a 30 s timeout (`sendTimeout`).
 *
 * No parsing, no `Request`/`Response`. Pipelined heads are answered in
 * order (`readUntil` leaves what follows a head buffered). Set against
 * `_raw_server.ts` it prices the socket layer; against
 * `_evthread_server.ts`, the HTTP layer.
 *
 * Usage: `deno run --allow-net bench/http/_evsocket_server.ts [--port N]` (0: any free port).
 * Prints `listening <port>` as its first stdout line. On SIGTERM it shuts
 * the loop down and lets the process end by itself, so `--cpu-prof` writes
 * a profile.
 *
 * @module
 */

import { parseArgs, PORT } from "../_common/args.ts";
import { onSigterm } from "../_common/server.ts";
import { EvLoop } from "../../mod.ts";
import { helloResponse } from "./_hello.ts";

/** `serve()`'s defaults (`limitsOf` in src/http_server.ts). */
const MAX_HEADER_BYTES = 65_536;
const HEADER_TIMEOUT_MS = 10_000;
const IDLE_TIMEOUT_MS = 5000;
const SEND_TIMEOUT_MS = 30_000;
const MAX_CONNECTIONS = 1024;
const CRLFCRLF = new Uint8Array([0x0d, 0x0a, 0x0d, 0x0a]);

function isTimeout(error: unknown): boolean {
  return error instanceof DOMException && error.name === "TimeoutError";
}

const { port } = parseArgs(Deno.args, { port: PORT }, { port: 0 });
const loop = new EvLoop({ capacity: MAX_CONNECTIONS });
const acceptor = loop.listen(
  { hostname: "127.0.0.1", port },
  (_info) => async (socket, _thread) => {
    socket.setNoDelay(true);
    const first = { maxLength: MAX_HEADER_BYTES, timeout: HEADER_TIMEOUT_MS };
    const next = { maxLength: MAX_HEADER_BYTES, timeout: IDLE_TIMEOUT_MS };
    const send = { timeout: SEND_TIMEOUT_MS };
    let options = first;
    try {
      while (true) {
        let head: Uint8Array | null;
        try {
          head = await socket.readUntil(CRLFCRLF, options);
        } catch (error) {
          // Idle timeout with a head begun: the header timeout to finish.
          if (!isTimeout(error) || options === first || socket.buffered === 0) {
            throw error;
          }
          head = await socket.readUntil(CRLFCRLF, first);
        }
        if (head === null) return;
        await socket.send(helloResponse(), send);
        options = next;
      }
    } catch {
      // Timeouts, resets, over-long heads: the connection ends.
    }
  },
);
console.log(`listening ${acceptor.addr.port}`);

onSigterm(() => loop.shutdown({ grace: 1000 }));
await loop.finished;
