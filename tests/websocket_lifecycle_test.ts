// Copyright 2026 the @corothread/evthread authors. MIT license.
// A WebSocket is the task of the server's pool that served its request: it
// holds its slot until it closes, the HTTP timeouts and the keep-alive
// reclaimer leave it alone, a drain closes it with 1001 within the grace
// period, and an abort closes its TCP connection.
//
// deno test --allow-net --sanitize-ops --sanitize-resources \
//   tests/websocket_lifecycle_test.ts

import { assertEquals, assertLess } from "@std/assert";
import { EvLoop } from "../mod.ts";
import { serve, upgradeWebSocket } from "../http.ts";
import {
  close,
  HOST,
  type Mode,
  OP,
  openClient,
  RawClient,
  startWsServer,
  text,
  within,
} from "./_websocket_client.ts";

/** Waits until `condition()` holds, checking every few ms (bounded). */
async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if (condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error(`Timed out waiting for ${what}`);
}

/** Reads frames until end of stream; returns the close codes seen. */
async function closeCodes(client: RawClient): Promise<number[]> {
  const codes: number[] = [];
  let f;
  while ((f = await client.readFrame()) !== null) {
    if (f.opcode === OP.CLOSE) codes.push((f.payload[0]! << 8) | f.payload[1]!);
  }
  client.close();
  return codes;
}

for (const mode of ["event", "pull"] as Mode[]) {
  Deno.test(`[${mode}] EvLoop.shutdown() closes open WebSockets with 1001 "going away", well within the grace`, async () => {
    const loop = new EvLoop({ onError: () => {} });
    await using server = startWsServer(mode, { serve: { loop } });
    await using a = await openClient(server.port);
    await using b = await openClient(server.port);
    await a.send(text("hi"));
    await a.expectText("hi");
    const start = performance.now();
    const stopping = loop.shutdown({ grace: 10_000 });
    for (const client of [a, b]) {
      await client.readClose(1001, "going away");
      await client.send(close(1001));
      await client.expectEnd();
    }
    await within(stopping, "the shutdown");
    assertLess(performance.now() - start, 5000);
    for (const closed of server.closed) {
      const event = await closed;
      assertEquals([event.code, event.wasClean], [1001, true]);
    }
  });
}

Deno.test("EvLoop.shutdown(): a client that never answers the 1001 is cut off when the grace ends", async () => {
  const loop = new EvLoop({ onError: () => {} });
  await using server = startWsServer("event", {
    serve: { loop },
    ws: { closeTimeout: 60_000 },
  });
  await using client = await openClient(server.port);
  const start = performance.now();
  const stopping = loop.shutdown({ grace: 300 });
  assertEquals(await closeCodes(client), [1001]);
  await within(stopping, "the shutdown");
  const elapsed = performance.now() - start;
  assertLess(elapsed, 5000);
  const event = await server.closed[0]!;
  assertEquals([event.code, event.wasClean], [1006, false]);
});

Deno.test("EvLoop.shutdown() with no grace closes the TCP connection at once", async () => {
  const loop = new EvLoop({ onError: () => {} });
  await using server = startWsServer("pull", { serve: { loop } });
  await using client = await openClient(server.port);
  await client.send(text("x"));
  await client.expectText("x");
  await loop.shutdown({ grace: 0 });
  // At most the 1001 made it out before the abort; then end of stream.
  const codes = await closeCodes(client);
  assertEquals(codes.every((code) => code === 1001), true);
  const event = await server.closed[0]!;
  assertEquals([event.code, event.wasClean], [1006, false]);
});

Deno.test("HttpServer.shutdown() ends an open WebSocket by the end of its grace", async () => {
  await using server = startWsServer("event", { ws: { closeTimeout: 60_000 } });
  await using client = await openClient(server.port);
  const stopping = server.server.shutdown({ grace: 300 });
  const codes = await closeCodes(client);
  assertEquals(codes.every((code) => code === 1001), true);
  await within(stopping, "the shutdown");
});

Deno.test("HttpServer.shutdown() closes an open WebSocket with 1001 within the grace", async () => {
  await using server = startWsServer("event");
  await using client = await openClient(server.port);
  const stopping = server.server.shutdown({ grace: 10_000 });
  await client.readClose(1001, "going away");
  await client.send(close(1001));
  await client.expectEnd();
  await within(stopping, "the shutdown");
});

Deno.test("serve() answers a WebSocketHandshakeError that escapes the handler with its status, not 500, and does not report it", async () => {
  const reported: unknown[] = [];
  await using server = serve({
    hostname: HOST,
    port: 0,
    onListen() {},
    onError(error) {
      reported.push(error);
      return new Response("handler failed", { status: 500 });
    },
    maxWebSockets: 1,
  }, (request) => {
    const { socket, response } = upgradeWebSocket(request);
    socket.onmessage = (event) => socket.send(event.data);
    return response;
  });
  const port = server.addr.port;
  const bad = await RawClient.open(port, {
    headers: { "sec-websocket-key": "too short" },
  });
  bad.client.close();
  assertEquals(bad.response.status, 400);
  const old = await RawClient.open(port, {
    headers: { "sec-websocket-version": "8" },
  });
  old.client.close();
  assertEquals(old.response.status, 426);
  assertEquals(old.response.headers["sec-websocket-version"], "13");
  const good = await openClient(port);
  const full = await RawClient.open(port);
  full.client.close();
  assertEquals(full.response.status, 503);
  assertEquals(full.response.headers["retry-after"], "5");
  await good.closeNormally();
  assertEquals(reported, []);
});

Deno.test("serve({ maxWebSockets }) answers 503 beyond the cap, and takes a WebSocket again once one closes", async () => {
  await using server = startWsServer("event", { serve: { maxWebSockets: 1 } });
  await using first = await openClient(server.port);
  const refused = await RawClient.open(server.port);
  refused.client.close();
  assertEquals(refused.response.status, 503);
  // Plain requests still get served meanwhile.
  const plain = await fetch(`http://${HOST}:${server.port}/`);
  await plain.body?.cancel();
  assertEquals(plain.status, 400); // the test server answers a non-handshake 400
  await first.closeNormally();
  await within(server.closed[0]!, "the first socket to close");
  await using second = await openClient(server.port);
  await second.send(text("again"));
  await second.expectText("again");
  await second.closeNormally();
});

Deno.test("upgradeWebSocket()'s 101 names the protocol chosen in its Upgrade field", async () => {
  await using server = startWsServer("event");
  const { client, response } = await RawClient.open(server.port);
  assertEquals(response.status, 101);
  assertEquals(response.headers["upgrade"], "websocket");
  await client.closeNormally();
  client.close();
});

Deno.test("a WebSocket holds its pool slot until it closes; the reclaimer leaves it alone", async () => {
  await using server = startWsServer("event", {
    serve: { maxConnections: 1, idleTimeout: 60_000 },
  });
  const loop = server.server.loop;
  await using client = await openClient(server.port);
  await client.send(text("hello"));
  await client.expectText("hello");
  // A second client waits for the slot: held, not served.
  const order: string[] = [];
  const fetched = fetch(`http://${HOST}:${server.port}/`, {
    headers: { connection: "close" },
  }).then(async (response) => {
    order.push(`fetch ${response.status}`);
    await response.body?.cancel();
  });
  await until(() => loop.stats.held === 1, "the second client to be held");
  // The WebSocket is not reclaimed for it: it still echoes.
  await client.send(text("still mine"));
  await client.expectText("still mine");
  assertEquals(loop.stats.reclaimed, 0);
  order.push("ws closing");
  await client.closeNormally();
  await within(fetched, "the held request");
  // (The plain GET is no handshake: the test server answers 400.)
  assertEquals(order, ["ws closing", "fetch 400"]);
});

Deno.test("the HTTP header and idle timeouts do not apply after the 101", async () => {
  await using server = startWsServer("event", {
    serve: { headerTimeout: 100, idleTimeout: 100 },
    ws: { idleTimeout: 0.6 },
  });
  await using client = await openClient(server.port);
  // The first idle ping comes after 300 ms of silence, longer than both
  // HTTP timeouts: the connection outlived them.
  const f = await client.nextFrame("the idle ping");
  assertEquals(f.opcode, OP.PING);
  await client.send(text("alive"));
  await client.expectText("alive");
  await client.closeNormally();
});
