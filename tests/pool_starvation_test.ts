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
import type { HttpServer, ServeHandler, ServeOptions } from "../http.ts";
import { eventually, Gate, HOST, readToEnd, withTimeout } from "./_helpers.ts";
import {
  busyAndHeld,
  head,
  RawClient,
  startServer,
  within,
} from "./_http_helpers.ts";

const IDLE = 60_000;
/** The bound within which a waiting client must be served. */
const SHORT = 5_000;

const GET = head("GET / HTTP/1.1", "Host: x");

/** A loop of `capacity` slots whose task errors are ignored. */
function poolLoop(capacity: number): EvLoop {
  return new EvLoop({ capacity, onError: () => {} });
}

/**
 * Serves `handler` on `loop` at a free loopback port with the 60 s idle
 * timeout; `options` adds to (or overrides) that setup.
 */
function startPoolServer(
  loop: EvLoop,
  handler: ServeHandler,
  options: ServeOptions = {},
): HttpServer {
  return startServer({ loop, idleTimeout: IDLE, ...options }, handler);
}

/** Makes a keep-alive request and checks its response. */
async function request(client: RawClient, expect = "ok"): Promise<void> {
  await client.write(GET);
  const response = await client.readResponse({ timeout: SHORT });
  assertEquals(response.status, 200);
  assertEquals(response.text, expect);
  assert(response.headers.get("connection") !== "close");
}

Deno.test("serve() with a pool of 4 held by idle keep-alive clients serves a fifth client at once", async () => {
  await using loop = poolLoop(4);
  await using server = startPoolServer(loop, () => new Response("ok"));
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
  await using loop = poolLoop(2);
  const gate = new Gate();
  let slowStarted = 0;
  await using server = startPoolServer(loop, async (request) => {
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
  await using loop = poolLoop(2);
  await using server = startPoolServer(loop, () => new Response("ok"), {
    headerTimeout: IDLE,
  });
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
  await using loop = poolLoop(1);
  await using server = startPoolServer(loop, () => new Response("ok"), {
    policy: "refuse",
  });
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
  await using loop = poolLoop(1);
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

Deno.test("serve() does not close a connection whose next (pipelined) request is already buffered to free a slot", async () => {
  await using loop = poolLoop(1);
  const gate = new Gate();
  let started = 0;
  await using server = startPoolServer(loop, async (req) => {
    started++;
    if (started === 1) await gate.opened;
    return new Response(new URL(req.url).pathname);
  });
  const port = server.addr.port;
  // Two pipelined requests in one write: the second is in the server's
  // buffer when the first response is done.
  await using a = await RawClient.connect(port);
  await a.write(
    head("GET /one HTTP/1.1", "Host: x") + head("GET /two HTTP/1.1", "Host: x"),
  );
  await eventually(() => started === 1, "the first request to start");
  await using waiting = await RawClient.connect(port);
  await waiting.write(GET);
  await eventually(() => loop.stats.held === 1, "the second client held");
  gate.open();
  const first = await a.readResponse({ timeout: SHORT });
  assertEquals(first.text, "/one");
  // The pipelined request had been received: it must be answered, not
  // dropped with the connection.
  const second = await a.readResponse({ timeout: SHORT });
  assertEquals(second.text, "/two");
  await a.close();
  await waiting.close();
});

Deno.test("serve() never reclaims a keep-alive connection whose next request has already been read (its handler ran, its response is lost)", async () => {
  await using loop = poolLoop(1);
  const seen: string[] = [];
  await using server = startPoolServer(loop, (req) => {
    seen.push(new URL(req.url).pathname);
    return new Response("ok");
  });
  const port = server.addr.port;
  await using a = await RawClient.connect(port);
  await a.write(head("GET /a1 HTTP/1.1", "Host: x"));
  await a.readResponse({ timeout: SHORT });
  // A's next request is in the kernel (its write has completed) before C
  // connects; the server reads it and accepts C in the same turn of the
  // event loop. The reclaimer runs when C is held: a few microtasks after
  // A's head has left the socket's buffer, before A's exchange is under
  // way. A must already count as busy then.
  await a.write(head("GET /a2 HTTP/1.1", "Host: x"));
  await using c = await RawClient.connect(port);
  await c.write(head("GET /c HTTP/1.1", "Host: x"));
  const second = await a.readResponse({ timeout: SHORT }).catch((e) =>
    `no response (handler saw ${JSON.stringify(seen)}): ${e.message}`
  );
  assertEquals(typeof second === "string" ? second : second.text, "ok");
  await c.readResponse({ timeout: SHORT });
});

Deno.test("serve() marks the response 'Connection: close' when it will close the connection for a waiting client", async () => {
  await using scene = await busyAndHeld();
  const { gate, busy, waiting } = scene;
  gate.open();
  const first = await busy.readResponse({ timeout: SHORT });
  // The server closes right after this response: a keep-alive response
  // invites the client to send its next request into a closing socket.
  assertEquals((await busy.readToEnd(SHORT)).rest, "");
  assertEquals(first.headers.get("connection"), "close");
  await waiting.readResponse({ timeout: SHORT });
});

Deno.test("serve(): two servers on one loop give back the connection idle longest across both, not the first server's", async () => {
  await using loop = poolLoop(2);
  await using s1 = startPoolServer(loop, () => new Response("ok"));
  await using s2 = startPoolServer(loop, () => new Response("ok"));
  // s2's connection goes idle first (oldest), then s1's.
  await using older = await RawClient.connect(s2.addr.port);
  await request(older);
  await using newer = await RawClient.connect(s1.addr.port);
  await request(newer);
  await using third = await RawClient.connect(s1.addr.port);
  await within(request(third), "the third client's response", SHORT);
  assertEquals(loop.stats.reclaimed, 1);
  // The newer idle connection still works (fails at once if it was the one
  // closed)...
  await request(newer);
  // ...and the oldest idle one was closed.
  assertEquals((await older.readToEnd(SHORT)).rest, "");
});

Deno.test("serve() shutdown while a client is held closes the held connection and ends cleanly", async () => {
  await using loop = poolLoop(1);
  const server = startPoolServer(
    loop,
    (req) =>
      new Promise<Response>((_, reject) => {
        req.signal.addEventListener("abort", () => reject(req.signal.reason));
      }),
  );
  const port = server.addr.port;
  await using busy = await RawClient.connect(port);
  await busy.write(GET);
  await eventually(() => loop.stats.active === 1, "the first request");
  await using held = await RawClient.connect(port);
  await held.write(GET);
  await eventually(() => loop.stats.held === 1, "the second client held");
  await withTimeout(server.shutdown({ grace: 0 }), SHORT, "shutdown");
  assertEquals((await held.readToEnd(SHORT)).rest, "");
  await busy.readToEnd(SHORT);
  const stats = loop.stats;
  assertEquals(stats.active, 0);
  assertEquals(stats.held, 1);
  assertEquals(stats.refused, 1);
  assertEquals(stats.reclaimed, 0);
});

Deno.test("serve(): a stream of new clients against idle keep-alive ones never exceeds the pool, and counters add up", async () => {
  await using loop = poolLoop(3);
  await using server = startPoolServer(loop, () => new Response("ok"));
  const port = server.addr.port;
  const clients: RawClient[] = [];
  try {
    for (let i = 0; i < 8; i++) {
      const c = await RawClient.connect(port);
      clients.push(c);
      await within(request(c), `client ${i}`, SHORT);
    }
    const stats = loop.stats;
    assertEquals(stats.peakActive, 3);
    assertEquals(stats.held, 5);
    assertEquals(stats.reclaimed, 5);
    // Exactly the five oldest were closed; the three newest still work.
    for (const c of clients.slice(0, 5)) {
      assertEquals((await c.readToEnd(SHORT)).rest, "");
    }
    for (const c of clients.slice(5)) await request(c);
  } finally {
    for (const c of clients) await c.close();
  }
});

Deno.test("EvLoop: a raw acceptor's held client is served by reclaiming an idle HTTP connection on the same loop", async () => {
  await using loop = poolLoop(1);
  await using server = startPoolServer(loop, () => new Response("ok"));
  const raw = loop.listen({ hostname: HOST, port: 0 }, () => async (s) => {
    await s.send(new TextEncoder().encode("hi"));
  });
  await using idle = await RawClient.connect(server.addr.port);
  await request(idle);
  const conn = await Deno.connect({ hostname: HOST, port: raw.port });
  const text = new TextDecoder().decode(
    await within(readToEnd(conn), "the raw client's greeting", SHORT),
  );
  conn.close();
  assertEquals(text, "hi");
  assertEquals((await idle.readToEnd(SHORT)).rest, "");
  assertEquals(loop.stats.held, 1);
  assertEquals(loop.stats.reclaimed, 1);
  await raw.close();
});
