// Copyright 2026 the @corothread/evthread authors. MIT license.
/**
 * A back end for tests/haproxy_test.ts: `serve()` on 127.0.0.1 behind a
 * proxy that sends a PROXY protocol header (`proxyProtocol: { trusted:
 * ["127.0.0.1"] }`, so the header is required). Every request gets 200 with
 * the body `<id> <hostname>:<port>`, the client's address as the handler
 * sees it (`info.remoteAddr`: the header's, not the proxy's).
 *
 * Usage: `deno run --allow-net tests/testdata/proxied_http_server.ts <port> <id>`
 * (port 0 picks a free one). Prints `listening <port>` on stdout once it
 * listens. Shuts down on SIGTERM or when its stdin ends (so a test that holds
 * the pipe ends it even if the signal is lost), prints `stopped` and exits
 * with code 0. Connections refused for a missing or bad header are reported
 * on stderr by the loop.
 *
 * @module
 */

import { serve } from "../../http.ts";

const [portArg, id] = Deno.args;
const port = Number(portArg);
if (
  portArg === undefined || id === undefined || !Number.isInteger(port) ||
  port < 0 || port > 65_535
) {
  console.error(
    `usage: proxied_http_server.ts <port> <id>: received ${
      JSON.stringify(Deno.args)
    }`,
  );
  Deno.exit(2);
}

const server = serve(
  {
    hostname: "127.0.0.1",
    port,
    proxyProtocol: { trusted: ["127.0.0.1"] },
    onListen(addr) {
      console.log(`listening ${addr.port}`);
    },
  },
  (_request, info) =>
    new Response(`${id} ${info.remoteAddr.hostname}:${info.remoteAddr.port}`),
);

let stopping = false;
function stop(): void {
  if (stopping) return;
  stopping = true;
  Deno.removeSignalListener("SIGTERM", stop);
  server.shutdown({ grace: 1000 });
}
Deno.addSignalListener("SIGTERM", stop);

// Stdin ending (the parent closed the pipe or died) also stops the server.
(async () => {
  try {
    for await (const _ of Deno.stdin.readable) {
      // Whatever the parent writes is ignored.
    }
  } catch {
    // A broken pipe ends stdin as well.
  }
  stop();
})();

await server.finished;
console.log("stopped");
// A pending read of stdin would keep the process alive after SIGTERM.
Deno.exit(0);
