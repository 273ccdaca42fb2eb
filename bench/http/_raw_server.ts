/**
 * Hello-world HTTP server for `bench/http/http.ts` with no HTTP library: a
 * bare keep-alive loop on `Deno.Conn` (`_keep_alive.ts`), the transport's
 * cost and nothing else: one fixed response per request head (`_hello.ts`:
 * the bytes `serve()` sends, `date` refreshed once a second), the heads that
 * one read brings (pipelined requests) answered in order, in one write.
 *
 * Usage: `deno run --allow-net bench/http/_raw_server.ts [--port N]` (0: any free port).
 * Prints `listening <port>` as its first stdout line. On SIGTERM it closes
 * the listener and its connections and lets the process end by itself, so
 * `--cpu-prof` writes a profile.
 *
 * @module
 */

import { runRawServer, writeAll } from "../_common/raw_server.ts";
import { helloResponses } from "./_hello.ts";
import { keepAliveLoop } from "./_keep_alive.ts";

await runRawServer(
  Deno.args,
  (conn) =>
    keepAliveLoop(conn, (heads) => writeAll(conn, helloResponses(heads))),
);
