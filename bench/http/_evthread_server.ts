/**
 * Hello-world HTTP server for `bench/http/http.ts` on this library: `serve()` from
 * `@corothread/evthread/http`, a task per connection on an `EvLoop`.
 *
 * Usage: `deno run --allow-net bench/http/_evthread_server.ts [--port N]` (0: any free port).
 * Prints `listening <port>` as its first stdout line. On SIGTERM it shuts
 * down and lets the process end by itself, so `--cpu-prof` writes a profile.
 *
 * @module
 */

import { parseArgs, PORT } from "../_common/args.ts";
import { onSigterm } from "../_common/server.ts";
import { serve } from "../../http.ts";

const { port } = parseArgs(Deno.args, { port: PORT }, { port: 0 });
const server = serve(
  {
    hostname: "127.0.0.1",
    port,
    onListen(addr) {
      console.log(`listening ${addr.port}`);
    },
  },
  () => new Response("Hello, World!"),
);

onSigterm(() => server.shutdown({ grace: 1000 }));
await server.finished;
