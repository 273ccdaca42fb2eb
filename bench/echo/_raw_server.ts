/**
 * Baseline echo server for `bench/echo/echo.ts`: a hand-rolled `Deno.listen` accept
 * loop with raw `conn.read()` / `conn.write()` per connection.
 *
 * Usage: `deno run --allow-net bench/echo/_raw_server.ts [--port N]` (0: any free port).
 * Prints `listening <port>` as its first stdout line. Exits on SIGTERM.
 *
 * @module
 */

import { parseArgs, PORT } from "../_common/args.ts";
const BUFFER_SIZE = 64 * 1024;

const { port } = parseArgs(Deno.args, { port: PORT }, { port: 0 });
const listener = Deno.listen({ hostname: "127.0.0.1", port });
const conns = new Set<Deno.Conn>();

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) {
    off += await conn.write(data.subarray(off));
  }
}

async function echo(conn: Deno.TcpConn): Promise<void> {
  conns.add(conn);
  const buf = new Uint8Array(BUFFER_SIZE);
  try {
    conn.setNoDelay(true);
    while (true) {
      const n = await conn.read(buf);
      if (n === null) break;
      await writeAll(conn, buf.subarray(0, n));
    }
  } catch {
    // Peer reset or shutdown: nothing to do for a benchmark server.
  } finally {
    conns.delete(conn);
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }
}

Deno.addSignalListener("SIGTERM", () => {
  listener.close();
  for (const conn of conns) {
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }
  conns.clear();
});

console.log(`listening ${(listener.addr as Deno.NetAddr).port}`);

for await (const conn of listener) {
  echo(conn);
}
// The listener was closed by SIGTERM; wait for handlers to settle, then exit.
Deno.exit(0);
