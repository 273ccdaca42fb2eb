// Copyright 2026 the @corothread/evthread authors. MIT license.
// The HTTP server's header, idle, body and send timeouts, which are coarse
// (a 50 ms sweep, src/_coarse_timeouts.ts): each must fire, never before its
// limit, and not much after it. Real sockets on loopback. Each elapsed time
// is measured from a moment before the server can have armed the limit, so
// that it is never less than the server's own; the upper bounds are only
// safety margins for a loaded machine (the sweep itself is ~100 ms late at
// most).

import {
  assert,
  assertEquals,
  assertGreaterOrEqual,
  assertInstanceOf,
  assertLess,
  assertRejects,
} from "@std/assert";
import { upgrade } from "../http.ts";
import { EvSocket } from "../mod.ts";
import { CoarseTimeouts, sweeping } from "../src/_coarse_timeouts.ts";
import {
  head,
  HOST,
  RawClient,
  startServer,
  WAIT_MS,
  within,
} from "./_http_helpers.ts";
import {
  openClient,
  startWsServer,
  text as wsText,
} from "./_websocket_client.ts";

const H = "Host: example.com";

/** The most a timeout may fire after its limit here (load, the sweep). */
const LATE_MS = 2000;

/** Asserts `elapsed` is at least `limit` ms, and not absurdly more. */
function assertOnTime(elapsed: number, limit: number, what: string): void {
  assertGreaterOrEqual(
    elapsed,
    limit,
    `${what} fired early: after ${elapsed.toFixed(1)} ms, limit ${limit} ms`,
  );
  assertLess(
    elapsed,
    limit + LATE_MS,
    `${what} fired late: after ${elapsed.toFixed(1)} ms, limit ${limit} ms`,
  );
}

function timeoutNamed(error: unknown): boolean {
  return error instanceof DOMException && error.name === "TimeoutError";
}

/**
 * Reads and drops what `conn` receives until the peer ends the connection;
 * how it ended. Bounded by `WAIT_MS`: the connection is closed then.
 */
async function drainToEnd(conn: Deno.Conn): Promise<"eof" | "reset"> {
  const buf = new Uint8Array(256 * 1024);
  const reading = (async () => {
    while (true) {
      try {
        if (await conn.read(buf) === null) return "eof" as const;
      } catch (error) {
        if (error instanceof Deno.errors.ConnectionReset) return "reset";
        throw error;
      }
    }
  })();
  try {
    return await within(reading, "the server to cut the connection");
  } catch (error) {
    conn.close();
    await reading.catch(() => {});
    throw error;
  }
}

Deno.test("serve() answers 408 and closes at the header timeout, never before it", async () => {
  const limit = 300;
  await using server = startServer({ headerTimeout: limit }, () => {
    throw new Error("no request should reach the handler");
  });
  const start = performance.now();
  await using client = await RawClient.connect(server.addr.port);
  // Part of a head, then nothing.
  await client.write("GET /slow HTTP/1.1\r\nHost: example.com\r\n");
  const response = await client.readResponse();
  const elapsed = performance.now() - start;
  assertEquals(response.status, 408);
  assertEquals(response.headers.get("connection"), "close");
  assertEquals(await client.readToEnd(), { rest: "", end: "eof" });
  assertOnTime(elapsed, limit, "The header timeout");
  // Counted once, as a per-call timeout was.
  assertEquals(server.loop.stats.timeouts, 1);
});

Deno.test("serve() closes a silent keep-alive connection at the idle timeout, never before it", async () => {
  const limit = 300;
  let requests = 0;
  await using server = startServer(
    { idleTimeout: limit, headerTimeout: WAIT_MS },
    () => {
      requests++;
      return new Response("ok");
    },
  );
  await using client = await RawClient.connect(server.addr.port);
  // Before the request: the idle wait begins after its response.
  const start = performance.now();
  await client.write(head("GET / HTTP/1.1", H));
  const response = await client.readResponse();
  assertEquals([response.status, response.text], [200, "ok"]);
  assertEquals(response.headers.get("connection"), undefined);
  // No response, just the close.
  assertEquals(await client.readToEnd(), { rest: "", end: "eof" });
  const elapsed = performance.now() - start;
  assertEquals(requests, 1);
  assertOnTime(elapsed, limit, "The idle timeout");
});

/**
 * A keep-alive connection's next head begins within the idle wait and
 * stalls: it must get the whole header timeout after the idle one, then a
 * 408, counted as two timeouts (the idle wait's and the head's).
 */
async function idleThenStalledHead(idle: number, header: number) {
  await using server = startServer(
    { idleTimeout: idle, headerTimeout: header },
    () => new Response("ok"),
  );
  await using client = await RawClient.connect(server.addr.port);
  const start = performance.now();
  await client.write(head("GET / HTTP/1.1", H));
  assertEquals((await client.readResponse()).status, 200);
  // The next head begins at once (within the idle wait) and stalls.
  await client.write("GET /two HTTP/1.1\r\nHost: exa");
  const response = await client.readResponse();
  const elapsed = performance.now() - start;
  assertEquals(response.status, 408);
  assertEquals(await client.readToEnd(), { rest: "", end: "eof" });
  // A 408 at the idle timeout alone would be early.
  assertOnTime(elapsed, idle + header, "The idle then header timeout");
  assertEquals(server.loop.stats.timeouts, 2);
}

Deno.test("serve() gives a head begun in the idle wait the header timeout, then answers 408", async () => {
  await idleThenStalledHead(400, 250);
});

Deno.test("serve() gives a head begun in the idle wait the header timeout when the two timeouts are equal", async () => {
  // The idle wait is told from the head's by what it is, not by its limit
  // (it once was, and answered 408 at the idle timeout alone).
  await idleThenStalledHead(300, 300);
});

Deno.test("serve() fails the handler's body read and answers 408 at the body timeout, never before it", async () => {
  const limit = 300;
  let failure: unknown;
  await using server = startServer(
    { bodyTimeout: limit },
    async (request) => {
      try {
        await request.arrayBuffer();
      } catch (error) {
        failure = error;
        throw error;
      }
      return new Response("the whole body came");
    },
  );
  await using client = await RawClient.connect(server.addr.port);
  const start = performance.now();
  await client.write(head("POST / HTTP/1.1", H, "Content-Length: 10") + "abc");
  const response = await client.readResponse();
  const elapsed = performance.now() - start;
  assertEquals(response.status, 408);
  assertEquals(response.headers.get("connection"), "close");
  assertEquals(await client.readToEnd(), { rest: "", end: "eof" });
  assert(timeoutNamed(failure), `the body read failed with ${failure}`);
  assertOnTime(elapsed, limit, "The body timeout");
});

Deno.test("serve() cuts a client that stops reading a streamed response at the send timeout, never before it", async () => {
  const limit = 300;
  const piece = new Uint8Array(64 * 1024);
  // Far more than loopback's socket buffers take: a send must block.
  const maxPieces = 16_384;
  let pieces = 0;
  let lastPull = 0;
  let cancelled!: (outcome: { at: number; reason: unknown }) => void;
  const cut = new Promise<{ at: number; reason: unknown }>((resolve) => {
    cancelled = resolve;
  });
  await using server = startServer({ sendTimeout: limit }, () =>
    new Response(
      new ReadableStream<Uint8Array>({
        pull(controller) {
          // The writer pulls a piece, then sends it: the send that blocks
          // began after the last pull.
          lastPull = performance.now();
          if (++pieces > maxPieces) controller.close();
          else controller.enqueue(piece);
        },
        cancel(reason) {
          cancelled({ at: performance.now(), reason });
        },
      }, { highWaterMark: 0 }),
    ));
  const conn = await Deno.connect({ hostname: HOST, port: server.addr.port });
  try {
    const request = new TextEncoder().encode(head("GET /stream HTTP/1.1", H));
    for (let off = 0; off < request.byteLength;) {
      off += await conn.write(request.subarray(off));
    }
    // Read nothing until the server gives up.
    const { at, reason } = await within(cut, "the body stream to be cancelled");
    assert(timeoutNamed(reason), `the stream was cancelled with ${reason}`);
    assertLess(pieces, maxPieces, "no send ever blocked");
    assertOnTime(at - lastPull, limit, "The send timeout");
    // The connection is cut, not finished: it ends, whatever was sent.
    await drainToEnd(conn);
  } finally {
    conn.close();
  }
});

Deno.test("serve() arms the body timeout per read: a body trickling a byte every half timeout completes", async () => {
  const limit = 600;
  const body = "012345";
  await using server = startServer(
    { bodyTimeout: limit },
    async (request) => new Response(await request.text()),
  );
  await using client = await RawClient.connect(server.addr.port);
  await client.write(
    head("POST / HTTP/1.1", H, `Content-Length: ${body.length}`),
  );
  const start = performance.now();
  // Each byte limit / 2 after the last: the whole takes 3x the limit.
  const sent = await client.trickle(
    body,
    limit / 2,
    new AbortController().signal,
  );
  assertEquals(sent, body.length);
  const response = await client.readResponse();
  assertEquals([response.status, response.text], [200, body]);
  assertGreaterOrEqual(performance.now() - start, limit * 2);
});

Deno.test("serve() stops the HTTP timeouts for a connection after upgrade()", async () => {
  const limit = 200;
  let procError: unknown;
  await using server = startServer({
    headerTimeout: limit,
    idleTimeout: limit,
    bodyTimeout: limit,
    sendTimeout: limit,
  }, (request) =>
    upgrade(request, async (socket) => {
      try {
        // No timeout of its own: only the HTTP ones could cut this read.
        const line = await socket.readLine();
        if (line !== null) {
          await socket.send(new TextEncoder().encode(`got ${line}\n`));
        }
      } catch (error) {
        procError = error;
      }
    }));
  await using client = await RawClient.connect(server.addr.port);
  await client.write(
    head("GET / HTTP/1.1", H, "Connection: Upgrade", "Upgrade: line/1"),
  );
  assertEquals((await client.readResponse()).status, 101);
  // Silent for several times every HTTP timeout (and the sweep's period):
  // this wait is the behaviour under test, not a synchronisation.
  await new Promise((resolve) => setTimeout(resolve, limit * 4));
  await client.write("ping\n");
  assertEquals(await client.readLineLF(), "got ping");
  assertEquals(procError, undefined);
});

Deno.test("serve() stops the HTTP timeouts for a WebSocket", async () => {
  const limit = 200;
  await using ws = startWsServer("event", {
    serve: {
      headerTimeout: limit,
      idleTimeout: limit,
      bodyTimeout: limit,
      sendTimeout: limit,
    },
  });
  await using client = await openClient(ws.port);
  // Silent for several times every HTTP timeout: the behaviour under test.
  await new Promise((resolve) => setTimeout(resolve, limit * 4));
  await client.send(wsText("still there?"));
  await client.expectText("still there?");
  await client.closeNormally();
  assertEquals(ws.errors, []);
});

Deno.test("serve() sets the sweep timer while it has connections and clears it at shutdown", async () => {
  assert(!sweeping(), "a sweep timer was left by an earlier test");
  const server = startServer(
    { idleTimeout: WAIT_MS },
    () => new Response("ok"),
  );
  try {
    await using client = await RawClient.connect(server.addr.port);
    await client.write(head("GET / HTTP/1.1", H));
    assertEquals((await client.readResponse()).status, 200);
    // The connection waits, idle, for its next request.
    assert(sweeping(), "no sweep timer with a connection open");
  } finally {
    await server.shutdown();
  }
  assert(!sweeping(), "the sweep timer outlived the server's connections");
});

Deno.test("CoarseTimeouts.armWrite(Infinity) keeps an earlier send's limit from expiring a later send", async () => {
  // What the server does before a send with a per-call timeout of its own
  // (an error, 100, 101): without the disarm, the limit armed for the last
  // response's send would cut this one at ~100 ms.
  using listener = Deno.listen({ hostname: HOST, port: 0 });
  const [conn, peer] = await Promise.all([
    Deno.connect({ hostname: HOST, port: listener.addr.port }),
    listener.accept(),
  ]);
  const socket = new EvSocket(conn);
  const timeouts = new CoarseTimeouts(socket);
  timeouts.watch();
  try {
    timeouts.armWrite(100);
    await socket.send(new Uint8Array(16));
    timeouts.armWrite(Infinity);
    // The peer reads nothing: far more than its buffers take, so it waits.
    const big = new Uint8Array(64 * 1024 * 1024);
    const own = 600;
    const start = performance.now();
    const error = await assertRejects(() =>
      within(socket.send(big, { timeout: own }), "the send to time out")
    );
    assertInstanceOf(error, DOMException);
    assertEquals(error.message, `Send timed out after ${own} ms`);
    assertOnTime(performance.now() - start, own, "The send's own timeout");
  } finally {
    timeouts.unwatch();
    peer.close();
    await socket.close();
  }
});
