/**
 * What the hand-rolled reference servers of the benchmarks share (the echo
 * and HTTP `_raw_server.ts`, the HTTP `_floor_server.ts`): a `Deno.listen`
 * accept loop on 127.0.0.1 that runs one function per connection, closes
 * the connection when it returns or throws, prints `listening <port>`, and on
 * SIGTERM closes the listener and every connection so that the process ends
 * by itself (and `--cpu-prof` writes its profile); and `writeAll`.
 *
 * @module
 */

import { parseArgs, PORT } from "./args.ts";
import { onSigterm } from "./server.ts";

/** Writes all of `data` with `conn.write`, as many calls as it takes. */
export async function writeAll(
  conn: Deno.Conn,
  data: Uint8Array,
): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
}

/**
 * Listens on 127.0.0.1 at `--port` (0: any free port) and runs
 * `serveConn` for each connection (with TCP_NODELAY set); resolves when
 * SIGTERM has closed the listener.
 */
export async function runRawServer(
  args: string[],
  serveConn: (conn: Deno.TcpConn) => Promise<void>,
): Promise<void> {
  const { port } = parseArgs(args, { port: PORT }, { port: 0 });
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  const conns = new Set<Deno.Conn>();
  const close = (conn: Deno.Conn) => {
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  };
  onSigterm(() => {
    listener.close();
    for (const conn of conns) close(conn);
    conns.clear();
  });
  console.log(`listening ${listener.addr.port}`);
  try {
    for await (const conn of listener) {
      conns.add(conn);
      (async () => {
        try {
          conn.setNoDelay(true);
          await serveConn(conn);
        } catch {
          // Peer reset or shutdown: nothing to do for a benchmark server.
        } finally {
          conns.delete(conn);
          close(conn);
        }
      })();
    }
  } catch {
    // The listener was closed by SIGTERM.
  }
}
