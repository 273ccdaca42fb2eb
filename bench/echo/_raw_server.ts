/**
 * Baseline echo server for `bench/echo/echo.ts`: a hand-rolled `Deno.listen` accept
 * loop with raw `conn.read()` / `conn.write()` per connection.
 *
 * Usage: `deno run --allow-net bench/echo/_raw_server.ts [--port N]` (0: any free port).
 * Prints `listening <port>` as its first stdout line. Exits on SIGTERM.
 *
 * @module
 */

import { runRawServer, writeAll } from "../_common/raw_server.ts";

const BUFFER_SIZE = 64 * 1024;

await runRawServer(Deno.args, async (conn) => {
  const buf = new Uint8Array(BUFFER_SIZE);
  while (true) {
    const n = await conn.read(buf);
    if (n === null) break;
    await writeAll(conn, buf.subarray(0, n));
  }
});
