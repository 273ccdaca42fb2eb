/**
 * WebSocket echo server for `bench/ws/ws.ts` on npm:ws (`WebSocketServer`
 * attached to a `node:http` server), as Deno runs it: each message is sent
 * back as it came, text or binary. ws declines permessage-deflate by
 * default on the server side, as the other servers do.
 *
 * Usage: `deno run --allow-net --allow-read --allow-env bench/ws/_ws_server.ts
 * [--port N]` (0: any free port). Prints `listening <port>` as its first
 * stdout line. Exits on SIGTERM.
 *
 * @module
 */

import { createServer } from "node:http";
import { WebSocketServer } from "ws";
import { parseArgs, PORT } from "../_common/args.ts";
import { listenNode } from "../_common/server.ts";

/** ws's socket, as far as this server uses it (npm:ws ships no types). */
interface NodeWs {
  on(
    event: "message",
    listener: (data: Uint8Array, isBinary: boolean) => void,
  ): void;
  on(event: "error", listener: (error: Error) => void): void;
  on(event: "close", listener: () => void): void;
  send(data: Uint8Array, options: { binary: boolean }): void;
  terminate(): void;
}

const { port } = parseArgs(Deno.args, { port: PORT }, { port: 0 });
const http = createServer();
const wss = new WebSocketServer({ server: http });
const sockets = new Set<NodeWs>();
wss.on("connection", (ws: NodeWs) => {
  sockets.add(ws);
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on("error", () => {
    // The client went away: "close" follows.
  });
  ws.on("close", () => sockets.delete(ws));
});
listenNode(http, port);

Deno.addSignalListener("SIGTERM", () => {
  for (const ws of sockets) ws.terminate();
  wss.close();
  http.close(() => Deno.exit(0));
});
