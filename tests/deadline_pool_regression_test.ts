// Copyright 2026 the @corothread/evthread authors. MIT license.
// Regression tests from a review of the deadlines (f771ab6) and of the pool
// that idle keep-alive connections cannot starve (bbdc1cd). The first group
// failed on the reviewed code; the last group covers guarantees the other
// tests left open.

import { assert, assertEquals, assertRejects } from "@std/assert";
import { EvLoop, EvSocket } from "../mod.ts";
import { serve } from "../http.ts";
import {
  assertBytes,
  eventually,
  Gate,
  HOST,
  payload,
  readToEnd,
  withTimeout,
} from "./_helpers.ts";
import { busyAndHeld, head, RawClient, within } from "./_http_helpers.ts";

const IDLE = 60_000;
const SHORT = 5_000;
const GET = head("GET / HTTP/1.1", "Host: x");

async function pair(): Promise<
  { a: EvSocket; b: EvSocket; listener: Deno.TcpListener }
> {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const accepting = listener.accept();
  const a = new EvSocket(
    await Deno.connect({ hostname: HOST, port: listener.addr.port }),
  );
  const b = new EvSocket(await accepting);
  return { a, b, listener };
}

async function request(client: RawClient, expect = "ok"): Promise<void> {
  await client.write(GET);
  const response = await client.readResponse({ timeout: SHORT });
  assertEquals(response.status, 200);
  assertEquals(response.text, expect);
}

// -------------------------------------------------- pool: found defects

Deno.test("serve() does not close a connection whose next (pipelined) request is already buffered to free a slot", async () => {
  await using loop = new EvLoop({ capacity: 1, onError: () => {} });
  const gate = new Gate();
  let started = 0;
  await using server = serve({
    hostname: HOST,
    port: 0,
    loop,
    idleTimeout: IDLE,
    onListen() {},
  }, async (req) => {
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
  await using loop = new EvLoop({ capacity: 1, onError: () => {} });
  const seen: string[] = [];
  await using server = serve({
    hostname: HOST,
    port: 0,
    loop,
    idleTimeout: IDLE,
    onListen() {},
  }, (req) => {
    seen.push(new URL(req.url).pathname);
    return new Response("ok");
  });
  const port = server.addr.port;
  await using a = await RawClient.connect(port);
  await a.write(head("GET /a1 HTTP/1.1", "Host: x"));
  await a.readResponse({ timeout: SHORT });
  // A's next request is in the kernel (its write has completed) before C
  // connects; the server reads it and accepts C in the same turn of the
  // event loop. The head is taken from the buffer (buffered === 0) a few
  // microtasks before exchange() sets connection.idle = false, and hold()
  // runs the reclaimer in that window.
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
  await using loop = new EvLoop({ capacity: 2, onError: () => {} });
  const opts = {
    hostname: HOST,
    port: 0,
    loop,
    idleTimeout: IDLE,
    onListen() {},
  };
  await using s1 = serve(opts, () => new Response("ok"));
  await using s2 = serve(opts, () => new Response("ok"));
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

// ------------------------------------------------ socket: found defects

Deno.test("EvSocket.readable is usable again once a passed read deadline is moved (as the socket is)", async () => {
  const { a, b, listener } = await pair();
  try {
    const reader = b.readable.getReader();
    const pending = reader.read();
    b.setReadDeadline(Date.now() - 1);
    const error = await assertRejects(() => pending);
    assertEquals((error as DOMException).name, "TimeoutError");
    reader.releaseLock();
    b.setReadDeadline(undefined);
    // recv works again...
    await a.send(new TextEncoder().encode("x"));
    assertEquals(await b.recv(new Uint8Array(1), { timeout: SHORT }), 1);
    // ...and so must the stream.
    await a.send(new TextEncoder().encode("y"));
    const again = b.readable.getReader();
    const chunk = await withTimeout(again.read(), SHORT, "stream read");
    assertEquals(new TextDecoder().decode(chunk.value), "y");
    again.releaseLock();
  } finally {
    await a[Symbol.asyncDispose]();
    await b[Symbol.asyncDispose]();
    listener.close();
  }
});

// --------------------------------------------------------------- gaps

Deno.test("EvSocket.send() cut by a write deadline never reads the caller's buffer afterwards: the peer gets the original bytes", async () => {
  const { a, b, listener } = await pair();
  try {
    const size = 8 << 20;
    const original = payload(7, size);
    const mine = original.slice();
    a.setWriteDeadline(Date.now() + 30);
    const error = await assertRejects(() => a.send(mine));
    assertEquals((error as DOMException).name, "TimeoutError");
    const written = (error as unknown as { bytesWritten: number })
      .bytesWritten;
    assert(written < size, `written ${written}`);
    mine.fill(0xee); // the caller reuses its buffer
    a.setWriteDeadline(undefined);
    const flushed = a.closeWrite();
    const got = await withTimeout(
      b.readFull(new Uint8Array(size), { timeout: SHORT }),
      SHORT * 2,
      "reading the whole send",
    );
    await flushed;
    assertBytes(got!, original, "received");
  } finally {
    await a[Symbol.asyncDispose]();
    await b[Symbol.asyncDispose]();
    listener.close();
  }
});

Deno.test("EvSocket.recv() cut by setReadDeadline() never writes into the caller's buffer; the bytes go to the next read", async () => {
  const { a, b, listener } = await pair();
  try {
    const mine = new Uint8Array(16);
    const pending = b.recv(mine);
    b.setReadDeadline(Date.now() - 1);
    await assertRejects(() => pending);
    b.setReadDeadline(undefined);
    await a.send(new Uint8Array([1, 2, 3]));
    const next = new Uint8Array(16);
    assertEquals(await b.recv(next, { timeout: SHORT }), 3);
    assertEquals(next.subarray(0, 3), new Uint8Array([1, 2, 3]));
    assertEquals(mine, new Uint8Array(16));
  } finally {
    await a[Symbol.asyncDispose]();
    await b[Symbol.asyncDispose]();
    listener.close();
  }
});

Deno.test("EvThread.delay(Infinity, { deadline }) does not reject before a deadline more than 2^31-1 ms away", async () => {
  // setTimeout takes at most 2^31-1 ms (about 24.8 days). Time is not faked:
  // a wrapper records what the delay asks of setTimeout and fires a
  // clamped timer at once, standing in for 24.8 days passing.
  const original = globalThis.setTimeout;
  const asked: number[] = [];
  // deno-lint-ignore no-explicit-any
  (globalThis as any).setTimeout = (fn: () => void, ms?: number) => {
    if (ms !== undefined && ms >= 2 ** 31 - 1) {
      asked.push(ms);
      return original(fn, 0);
    }
    return original(fn, ms);
  };
  await using loop = new EvLoop({ onError: () => {} });
  const deadline = Date.now() + 30 * 86_400_000; // 30 days away
  const task = loop.spawn(async (thread) => {
    try {
      await thread.delay(Infinity, { deadline });
      return "resolved";
    } catch (error) {
      return `${(error as Error).name} at ${
        Date.now() < deadline ? "before" : "after"
      } the deadline`;
    } finally {
      globalThis.setTimeout = original;
    }
  });
  // The task must still be waiting once the clamped (24.8-day) timer has
  // fired: the deadline is 5 days later.
  let timer: ReturnType<typeof setTimeout> | undefined;
  const outcome = await Promise.race([
    task.result,
    new Promise<string>((resolve) => {
      timer = original(() => resolve("waiting"), 50);
    }),
  ]);
  clearTimeout(timer);
  globalThis.setTimeout = original;
  task.abort();
  await task.result;
  assertEquals(asked.length > 0, true);
  assertEquals(outcome, "waiting");
});

Deno.test("serve() shutdown while a client is held closes the held connection and ends cleanly", async () => {
  await using loop = new EvLoop({ capacity: 1, onError: () => {} });
  const server = serve({
    hostname: HOST,
    port: 0,
    loop,
    idleTimeout: IDLE,
    onListen() {},
  }, (req) =>
    new Promise<Response>((_, reject) => {
      req.signal.addEventListener("abort", () => reject(req.signal.reason));
    }));
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
  await using loop = new EvLoop({ capacity: 3, onError: () => {} });
  await using server = serve({
    hostname: HOST,
    port: 0,
    loop,
    idleTimeout: IDLE,
    onListen() {},
  }, () => new Response("ok"));
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
  await using loop = new EvLoop({ capacity: 1, onError: () => {} });
  await using server = serve({
    hostname: HOST,
    port: 0,
    loop,
    idleTimeout: IDLE,
    onListen() {},
  }, () => new Response("ok"));
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
