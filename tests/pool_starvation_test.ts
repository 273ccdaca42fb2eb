// Copyright 2026 the @corothread/evthread authors. MIT license.
// A bounded pool that idle keep-alive connections cannot starve. With the
// pool full, the acceptor holds one new connection (factory not yet run)
// until a slot frees, and the HTTP server gives slots back: it closes its
// idle keep-alive connections, the one idle longest first, and a connection
// that finishes a response while a client waits closes instead of idling.
// Connections in the middle of a request are never touched.
//
// The servers use a 60 s keep-alive idle timeout, so a client served within
// the tests' bounds was served because of the reclaiming, not the timeout.

import { assert, assertEquals, assertGreaterOrEqual } from "@std/assert";
import { EvLoop } from "../mod.ts";
import { serve } from "../http.ts";
import { eventually, Gate, HOST } from "./_helpers.ts";
import { busyAndHeld, head, RawClient, within } from "./_http_helpers.ts";

const IDLE = 60_000;
/** The bound within which a waiting client must be served. */
const SHORT = 5_000;

const GET = head("GET / HTTP/1.1", "Host: x");

/** Makes a keep-alive request and checks its response. */
async function request(client: RawClient, expect = "ok"): Promise<void> {
  await client.write(GET);
  const response = await client.readResponse({ timeout: SHORT });
  assertEquals(response.status, 200);
  assertEquals(response.text, expect);
  assert(response.headers.get("connection") !== "close");
}

Deno.test("serve() with a pool of 4 held by idle keep-alive clients serves a fifth client at once", async () => {
  await using loop = new EvLoop({ capacity: 4, onError: () => {} });
  await using server = serve({
    hostname: HOST,
    port: 0,
    loop,
    idleTimeout: IDLE,
    onListen() {},
  }, () => new Response("ok"));
  const port = server.addr.port;
  const idle: RawClient[] = [];
  for (let i = 0; i < 4; i++) {
    const client = await RawClient.connect(port);
    await request(client);
    idle.push(client);
  }
  assertEquals(loop.stats.active, 4);

  await using fifth = await RawClient.connect(port);
  await within(request(fifth), "the fifth client's response", SHORT);
  assertEquals(loop.stats.held, 1);
  assertEquals(loop.stats.reclaimed, 1);

  // The one idle longest (the first) was closed; the others still work.
  const ending = await idle[0]!.readToEnd(SHORT);
  assertEquals(ending.rest, "");
  for (const client of idle.slice(1)) await request(client);
  for (const client of idle) await client.close();
});

Deno.test("serve() never closes a connection in the middle of a request to free a slot", async () => {
  await using loop = new EvLoop({ capacity: 2, onError: () => {} });
  const gate = new Gate();
  let slowStarted = 0;
  await using server = serve({
    hostname: HOST,
    port: 0,
    loop,
    idleTimeout: IDLE,
    onListen() {},
  }, async (request) => {
    if (new URL(request.url).pathname === "/slow") {
      slowStarted++;
      await gate.opened;
      return new Response("slow");
    }
    return new Response("ok");
  });
  const port = server.addr.port;
  // A: keep-alive, idle. B: in the middle of a request.
  await using a = await RawClient.connect(port);
  await request(a);
  await using b = await RawClient.connect(port);
  await b.write(head("GET /slow HTTP/1.1", "Host: x"));
  await eventually(() => slowStarted === 1, "the slow request to start");

  // C takes A's slot: A was idle, B is busy.
  await using c = await RawClient.connect(port);
  await within(request(c), "C's response", SHORT);
  assertEquals((await a.readToEnd(SHORT)).rest, "");
  assertEquals(loop.stats.reclaimed, 1);

  // B is still served in full.
  gate.open();
  const slow = await b.readResponse({ timeout: SHORT });
  assertEquals(slow.text, "slow");
});

Deno.test("serve() closes a connection after its response, rather than idle, while a client waits for a slot", async () => {
  await using scene = await busyAndHeld();
  const { loop, gate, busy, waiting } = scene;
  assertEquals(scene.started(), 1); // the held client's factory has not run

  gate.open();
  const first = await busy.readResponse({ timeout: SHORT });
  assertEquals(first.text, "ok");
  // The busy connection gave its slot to the waiting client.
  assertEquals((await busy.readToEnd(SHORT)).rest, "");
  const second = await within(
    waiting.readResponse({ timeout: SHORT }),
    "the held client's response",
    SHORT,
  );
  assertEquals(second.text, "ok");
  assertEquals(loop.stats.reclaimed, 1);
});

Deno.test("serve() does not reclaim a keep-alive connection that has begun its next request", async () => {
  await using loop = new EvLoop({ capacity: 2, onError: () => {} });
  await using server = serve({
    hostname: HOST,
    port: 0,
    loop,
    idleTimeout: IDLE,
    headerTimeout: IDLE,
    onListen() {},
  }, () => new Response("ok"));
  const port = server.addr.port;
  // A went idle first but has sent part of its next request head.
  await using a = await RawClient.connect(port);
  await request(a);
  await using b = await RawClient.connect(port);
  await request(b);
  await a.write("GET / HTTP/1.1\r\nHo");
  // A round trip on B after A's bytes were written lets the server take
  // them in first (they reach its socket earlier, in the same process).
  await request(b);
  await using c = await RawClient.connect(port);
  await within(request(c), "C's response", SHORT);
  // B (idle, nothing buffered) went, though A went idle earlier.
  assertEquals((await b.readToEnd(SHORT)).rest, "");
  await a.write("st: x\r\n\r\n");
  const rest = await a.readResponse({ timeout: SHORT });
  assertEquals(rest.text, "ok");
});

Deno.test('serve() with policy "refuse" frees an idle keep-alive slot when it refuses a client', async () => {
  await using loop = new EvLoop({ capacity: 1, onError: () => {} });
  await using server = serve({
    hostname: HOST,
    port: 0,
    loop,
    policy: "refuse",
    idleTimeout: IDLE,
    onListen() {},
  }, () => new Response("ok"));
  const port = server.addr.port;
  await using a = await RawClient.connect(port);
  await request(a);
  // B is refused (closed at once), and A's idle slot is reclaimed for the
  // next client.
  await using b = await RawClient.connect(port);
  const refused = await b.readToEnd(SHORT);
  assertEquals(refused.rest, "");
  assertEquals((await a.readToEnd(SHORT)).rest, "");
  await eventually(() => loop.stats.active === 0, "A's task to end");
  await using c = await RawClient.connect(port);
  await within(request(c), "C's response", SHORT);
  assertEquals(loop.stats.refused, 1);
  assertEquals(loop.stats.reclaimed, 1);
  assertEquals(loop.stats.held, 0);
});

Deno.test("EvLoop.listen() tasks other than HTTP connections are never reclaimed: a held client waits for a slot", async () => {
  await using loop = new EvLoop({ capacity: 1, onError: () => {} });
  const gate = new Gate();
  const acceptor = loop.listen({ hostname: HOST, port: 0 }, () => async (s) => {
    await gate.opened;
    await s.send(new TextEncoder().encode("hi"));
  });
  await using first = await RawClient.connect(acceptor.port);
  await using second = await RawClient.connect(acceptor.port);
  await eventually(() => loop.stats.held === 1, "the second connection held");
  assertEquals(loop.stats.active, 1);
  assertEquals(loop.stats.reclaimed, 0);
  gate.open();
  for (const client of [first, second]) {
    assertEquals((await client.readToEnd(SHORT)).rest, "hi");
  }
  assertGreaterOrEqual(loop.stats.ended, 2);
});
