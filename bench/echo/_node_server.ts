/**
 * Comparison echo server for `bench/echo/echo.ts`: `node:net` `createServer` with a
 * `data` callback that writes the chunk back (pausing the socket while the
 * write buffer drains, as `pipe()` would).
 *
 * Usage: `deno run --allow-net bench/echo/_node_server.ts [--port N]` (0: any free port).
 * Prints `listening <port>` as its first stdout line. Exits on SIGTERM.
 *
 * @module
 */

import { parseArgs, PORT } from "../_common/args.ts";
import { listenNode } from "../_common/server.ts";
import { createServer, type Socket } from "node:net";

const { port } = parseArgs(Deno.args, { port: PORT }, { port: 0 });
const sockets = new Set<Socket>();

const server = createServer({ noDelay: true }, (socket) => {
  sockets.add(socket);
  socket.setNoDelay(true);
  socket.on("data", (data: Uint8Array) => {
    if (!socket.write(data)) {
      socket.pause();
      socket.once("drain", () => socket.resume());
    }
  });
  socket.on("error", () => {
    // Peer reset: "close" follows.
  });
  socket.on("close", () => sockets.delete(socket));
});

listenNode(server, port);

Deno.addSignalListener("SIGTERM", () => {
  for (const socket of sockets) socket.destroy();
  server.close(() => Deno.exit(0));
});
