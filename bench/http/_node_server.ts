/**
 * Hello-world HTTP server for `bench/http/http.ts` on `node:http` `createServer`,
 * as Deno runs it (Deno's Node compatibility layer).
 *
 * Usage: `deno run --allow-net bench/http/_node_server.ts [--port N]` (0: any free port).
 * Prints `listening <port>` as its first stdout line. On SIGTERM it closes
 * its connections and lets the process end by itself, so `--cpu-prof`
 * writes a profile.
 *
 * @module
 */

import { parseArgs, PORT } from "../_common/args.ts";
import { listenNode, onSigterm } from "../_common/server.ts";
import { createServer } from "node:http";

const { port } = parseArgs(Deno.args, { port: PORT }, { port: 0 });
const server = createServer((_req, res) => {
  // The same fields the other servers send: content-type from the Response
  // constructor, then date and content-length.
  res.setHeader("content-type", "text/plain;charset=UTF-8");
  res.end("Hello, World!");
});

listenNode(server, port);

onSigterm(() => {
  server.close();
  server.closeAllConnections();
});
