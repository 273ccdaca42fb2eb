/**
 * Echo server for `bench/echo/echo.ts` built on this library: `EvLoop.listen` with
 * one proc per connection doing `recv` / `send` with a 30 s timeout each.
 *
 * Usage: `deno run --allow-net bench/echo/_evthread_server.ts [--port N]` (0: any free port).
 * Prints `listening <port>` as its first stdout line. Shuts down on SIGTERM.
 *
 * @module
 */

import { parseArgs, PORT } from "../_common/args.ts";
import { EvLoop } from "../../mod.ts";

const BUFFER_SIZE = 64 * 1024;
const IO_TIMEOUT_MS = 30_000;

const { port } = parseArgs(Deno.args, { port: PORT }, { port: 0 });
const loop = new EvLoop({ capacity: 1024 });
const acceptor = loop.listen(
  { hostname: "127.0.0.1", port },
  (_info) => async (socket, _thread) => {
    socket.setNoDelay(true);
    const buf = new Uint8Array(BUFFER_SIZE);
    while (true) {
      const n = await socket.recv(buf, { timeout: IO_TIMEOUT_MS });
      if (n === null) break;
      await socket.send(buf.subarray(0, n), { timeout: IO_TIMEOUT_MS });
    }
  },
);
console.log(`listening ${acceptor.addr.port}`);
Deno.addSignalListener("SIGTERM", () => loop.shutdown({ grace: 1000 }));
await loop.finished;
