// Copyright 2026 the @corothread/evthread authors. MIT license.
// Regression tests from a review of TLS, Unix sockets and STARTTLS: both
// failed on the reviewed code.
import { assertEquals, assertInstanceOf, assertRejects } from "@std/assert";
import { EvSocket } from "../mod.ts";
import { serve } from "../http.ts";

const dir = new URL("./testdata/tls/", import.meta.url);
const CA = Deno.readTextFileSync(new URL("ca.pem", dir));
const CERT = Deno.readTextFileSync(new URL("cert.pem", dir));
const KEY = Deno.readTextFileSync(new URL("key.pem", dir));

Deno.test("serve() on a Unix socket refuses cert/key instead of silently serving plaintext", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "evthread-r4-" });
  const path = `${tmp}/s.sock`;
  let server;
  let thrown: unknown;
  try {
    server = serve(
      // deno-lint-ignore no-explicit-any
      { transport: "unix", path, cert: CERT, key: KEY, onListen() {} } as any,
      () => new Response("secret"),
    );
  } catch (error) {
    thrown = error;
  }
  try {
    if (server !== undefined) {
      // It listens in plaintext although TLS was asked for.
      using client = Deno.createHttpClient({
        proxy: { transport: "unix", path },
      });
      const response = await fetch("http://localhost/", { client });
      await response.body?.cancel();
      await server.shutdown({ grace: 0 });
    }
    assertInstanceOf(thrown, TypeError);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("close() while startTls() is in flight closes the new TLS connection at once", async () => {
  // A plain TCP peer that never answers the ClientHello.
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepting = listener.accept();
  const socket = new EvSocket(
    await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
  );
  const peer = await accepting;
  const upgrade = socket.startTls({
    hostname: "localhost",
    caCerts: [CA],
    timeout: 3000,
  });
  socket.close(); // Deno.startTls has already taken the TCP resource
  const started = performance.now();
  const error = await assertRejects(() => upgrade);
  const waited = performance.now() - started;
  // The call ends at once, as for any call on a closed socket, and the new
  // TLS connection is closed (the resource sanitizer checks). The peer sees
  // the end only once it gives up on the handshake itself: Deno 2.9.6
  // finishes (or fails) a TLS handshake before it shuts the connection.
  peer.close();
  assertEquals(
    { error: (error as Error).name, upgradeSettledQuickly: waited < 1000 },
    { error: "BadResource", upgradeSettledQuickly: true },
  );
});
