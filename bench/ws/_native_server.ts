/**
 * WebSocket echo server for `bench/ws/ws.ts` on `Deno.serve` and
 * `Deno.upgradeWebSocket` (in Rust): the native baseline. Binary messages
 * arrive as `ArrayBuffer`s (`binaryType`), as on the other servers.
 *
 * Usage: `deno run --allow-net bench/ws/_native_server.ts [--port N]` (0: any
 * free port). Prints `listening <port>` as its first stdout line. Shuts down
 * on SIGTERM (exits within 1 s).
 *
 * @module
 */

import { parseArgs, PORT } from "../_common/args.ts";
import { onSigterm } from "../_common/server.ts";

const { port } = parseArgs(Deno.args, { port: PORT }, { port: 0 });
const server = Deno.serve({
  hostname: "127.0.0.1",
  port,
  onListen(addr) {
    console.log(`listening ${addr.port}`);
  },
}, (request) => {
  const { socket, response } = Deno.upgradeWebSocket(request);
  socket.binaryType = "arraybuffer";
  socket.onmessage = (event) => socket.send(event.data);
  return response;
});

onSigterm(() => {
  // In Deno 2.9.6 shutdown() does not finish once WebSocket clients have
  // gone away without a closing handshake (as the load client does): the
  // process exits 1 s after SIGTERM whatever happens.
  Deno.unrefTimer(setTimeout(() => Deno.exit(0), 1000));
  server.shutdown();
});
await server.finished;
