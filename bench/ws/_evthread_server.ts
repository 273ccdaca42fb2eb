/**
 * WebSocket echo server for `bench/ws/ws.ts` on this library: `serve()` and
 * `upgradeWebSocket()`, in either of the socket's two ways:
 *
 * - `--mode event`: `socket.onmessage = (event) => socket.send(event.data)`,
 *   the `Deno.upgradeWebSocket` call shape;
 * - `--mode pull`: `for await (const message of socket) await
 *   socket.write(message)`, straight-line, with backpressure.
 *
 * Usage: `deno run --allow-net bench/ws/_evthread_server.ts [--port N]
 * [--mode event|pull]` (0: any free port). Prints `listening <port>` as its
 * first stdout line. Shuts down on SIGTERM.
 *
 * @module
 */

import { choice, parseArgs, PORT } from "../_common/args.ts";
import { onSigterm } from "../_common/server.ts";
import { serve, upgradeWebSocket } from "../../http.ts";

const { port, mode } = parseArgs(Deno.args, {
  port: PORT,
  mode: choice(["event", "pull"] as const),
}, { port: 0, mode: "event" });

const server = serve({
  hostname: "127.0.0.1",
  port,
  onListen(addr) {
    console.log(`listening ${addr.port}`);
  },
}, (request) => {
  const { socket, response } = upgradeWebSocket(request);
  if (mode === "event") {
    socket.onmessage = (event) => socket.send(event.data);
  } else {
    (async () => {
      for await (const message of socket) await socket.write(message);
    })().catch(() => {
      // The client went away mid-write: the socket is closed.
    });
  }
  return response;
});

onSigterm(() => server.shutdown({ grace: 1000 }));
await server.finished;
