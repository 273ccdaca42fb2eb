/**
 * Hello-world HTTP server for `bench/scale_out/scale_out.ts`: the app of
 * `../http/_evthread_server.ts` (`serve()`, every request gets 200
 * `Hello, World!`) behind HAProxy, reading the PROXY protocol header that
 * HAProxy's `send-proxy-v2` sends (`proxyProtocol: { trusted:
 * ["127.0.0.1"] }`: required, so only HAProxy on this host can reach it).
 *
 * Usage: `deno run --allow-net bench/scale_out/_proxied_server.ts [--port N]` (0:
 * any free port). Prints `listening <port>` as its first stdout line. On SIGTERM
 * it shuts down and lets the process end by itself.
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
    proxyProtocol: { trusted: ["127.0.0.1"] },
    onListen(addr) {
      console.log(`listening ${addr.port}`);
    },
  },
  () => new Response("Hello, World!"),
);

onSigterm(() => server.shutdown({ grace: 1000 }));
await server.finished;
