// Copyright 2026 the @corothread/evthread authors. MIT license.
// Regressions found in review, one test each.

import {
  assert,
  assertEquals,
  assertLess,
  assertStringIncludes,
} from "@std/assert";
import {
  head,
  RawClient,
  startServer,
  textOf,
  within,
} from "./_http_helpers.ts";
import { EvSocket } from "../mod.ts";
import { upgrade } from "../http.ts";

const H = "Host: example.com";

Deno.test("serve() sends no 100 Continue once the response has begun", async () => {
  await using server = startServer({}, (request) => {
    const encoder = new TextEncoder();
    let sentHello = false;
    const reader = request.body!.getReader();
    // highWaterMark 0: the body is read only after the head has gone out.
    return new Response(
      new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (!sentHello) {
            sentHello = true;
            controller.enqueue(encoder.encode("hello "));
            return;
          }
          const { value, done } = await reader.read();
          if (done) controller.close();
          else controller.enqueue(value);
        },
      }, { highWaterMark: 0 }),
    );
  });
  await using client = await RawClient.connect(server.addr.port);
  await client.write(
    head(
      "POST / HTTP/1.1",
      H,
      "Expect: 100-continue",
      "Content-Length: 5",
      "Connection: close",
    ) + "world",
  );
  const { rest } = await client.readToEnd();
  const final = rest.indexOf("HTTP/1.1 200");
  assert(final >= 0, rest);
  // A 100 may come before the final response, never inside it.
  assert(!rest.slice(final).includes("100 Continue"), rest);
  assertStringIncludes(rest.slice(final), "6\r\nhello \r\n5\r\nworld\r\n0\r\n");
});

Deno.test("serve() answers 400, not 500, when a streamed-through request body is malformed", async () => {
  let onErrorCalls = 0;
  await using server = startServer({
    onError() {
      onErrorCalls++;
      return new Response("handler failed", { status: 500 });
    },
  }, (request) => new Response(request.body));
  await using client = await RawClient.connect(server.addr.port);
  await client.write(
    head("POST / HTTP/1.1", H, "Transfer-Encoding: chunked") + "zz\r\n",
  );
  const response = await client.readResponse();
  assertEquals(response.status, 400);
  assertEquals(onErrorCalls, 0);
});

Deno.test("serve() shutdown ends a connection whose onError never settles", async () => {
  const entered = Promise.withResolvers<void>();
  const server = startServer({
    onError: () => {
      entered.resolve();
      return new Promise<Response>(() => {});
    },
  }, () => {
    throw new Error("boom");
  });
  await using client = await RawClient.connect(server.addr.port);
  await client.write(head("GET / HTTP/1.1", H));
  await within(entered.promise, "onError to be called");
  await within(server.shutdown({ grace: 50 }), "shutdown to finish");
  const { end } = await client.readToEnd();
  assert(end === "eof" || end === "reset");
});

Deno.test("serve() answers 500 when onError returns Response.error()", async () => {
  const original = console.error;
  console.error = () => {};
  try {
    await using server = startServer(
      { onError: () => Response.error() },
      () => {
        throw new Error("boom");
      },
    );
    await using client = await RawClient.connect(server.addr.port);
    await client.write(head("GET / HTTP/1.1", H));
    const response = await client.readResponse();
    assertEquals(response.status, 500);
    assertEquals(response.headers.get("content-length"), "21");
  } finally {
    console.error = original;
  }
});

for (const size of [20_000, 60_000]) {
  Deno.test(`serve() aborts request.signal when a client leaves ${size} unread body bytes behind`, async () => {
    const entered = Promise.withResolvers<void>();
    const aborted = Promise.withResolvers<string>();
    await using server = startServer({}, async (request) => {
      request.signal.addEventListener(
        "abort",
        () => aborted.resolve(String(request.signal.reason)),
        { once: true },
      );
      entered.resolve();
      await aborted.promise;
      return new Response("late");
    });
    const client = await RawClient.connect(server.addr.port);
    await client.write(
      head("POST / HTTP/1.1", H, `Content-Length: ${size + 1000}`) +
        "x".repeat(size),
    );
    await within(entered.promise, "the handler");
    await client.close();
    assertStringIncludes(
      await within(aborted.promise, "request.signal to abort"),
      "disconnected",
    );
  });
}

Deno.test("serve() answers 400 to a Host or target that is not a valid URL", async () => {
  let calls = 0;
  await using server = startServer({}, (request) => {
    calls++;
    return new Response(new URL(request.url).pathname);
  });
  for (
    const [line, host] of <[string, string][]> [
      ["GET / HTTP/1.1", "Host: a:99999"],
      ["GET / HTTP/1.1", "Host: %zz"],
      ["GET / HTTP/1.1", "Host: [1:2]"],
      ["GET http://%zz/ HTTP/1.1", "Host: x"],
    ]
  ) {
    await using client = await RawClient.connect(server.addr.port);
    await client.write(head(line, host));
    const response = await client.readResponse();
    assertEquals(response.status, 400, `${line} / ${host}`);
  }
  assertEquals(calls, 0);
});

Deno.test("EvSocket idle timeout counts the bytes of a read into the caller's buffer", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: listener.addr.port,
  });
  await using a = new EvSocket(conn);
  await using b = new EvSocket(await listener.accept());
  const encoder = new TextEncoder();
  const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const buf = new Uint8Array(8);
  const pending = b.recv(buf); // no timeout: reads in place
  b.setIdleTimeout(1000);
  // Time passing is what is tested here: 800 ms of silence, then bytes.
  await pause(800);
  await a.send(encoder.encode("ping"));
  assertEquals(await pending, 4);
  // Those bytes were activity: the idle timer restarts from them, so a
  // call made now survives past the original 1000 ms mark.
  const next = b.recv(buf);
  await pause(500);
  await a.send(encoder.encode("pong"));
  assertEquals(await next, 4);
  assertEquals(textOf(buf.subarray(0, 4)), "pong");
  b.setIdleTimeout(undefined);
});

Deno.test("serve() hands out body pieces sized to what arrived", async () => {
  const sizes: [number, number][] = [];
  const got = Promise.withResolvers<void>();
  let next = Promise.withResolvers<void>();
  await using server = startServer({}, async (request) => {
    const reader = request.body!.getReader();
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      sizes.push([value.byteLength, value.buffer.byteLength]);
      next.resolve();
    }
    got.resolve();
    return new Response("ok");
  });
  await using client = await RawClient.connect(server.addr.port);
  await client.write(head("POST / HTTP/1.1", H, "Content-Length: 30"));
  for (let i = 0; i < 10; i++) {
    next = Promise.withResolvers<void>();
    await client.write("abc");
    await within(next.promise, "the handler to read a piece");
  }
  await within(got.promise, "the body to end");
  assertEquals((await client.readResponse()).status, 200);
  for (const [length, backing] of sizes) {
    // A trickled byte must not hold a 64 KiB buffer.
    assert(backing <= Math.max(2 * length, 4096), `${length} in ${backing}`);
  }
});

Deno.test("serve() answers 400 at once to a chunk line ended by a bare LF", async () => {
  await using server = startServer(
    { bodyTimeout: 30_000 },
    async (request) => new Response(await request.text()),
  );
  await using client = await RawClient.connect(server.addr.port);
  await client.write(
    head("POST / HTTP/1.1", H, "Transfer-Encoding: chunked") + "5\nhello\n",
  );
  const response = await client.readResponse({ timeout: 10_000 });
  assertEquals(response.status, 400);
});

Deno.test("serve() answers 500 to a handler's 1xx status outside upgrade()", async () => {
  const original = console.error;
  console.error = () => {};
  try {
    await using server = startServer(
      {},
      () => new Response(null, { status: 101 }),
    );
    await using client = await RawClient.connect(server.addr.port);
    await client.write(head("GET / HTTP/1.1", H));
    assertEquals((await client.readResponse()).status, 500);
  } finally {
    console.error = original;
  }
});

Deno.test("serve() does not upgrade HTTP/1.0 requests nor requests with a body", async () => {
  const original = console.error;
  console.error = () => {};
  try {
    await using server = startServer(
      {},
      (request) => upgrade(request, () => {}),
    );
    for (
      const request of [
        head("GET / HTTP/1.0", "Connection: upgrade", "Upgrade: x"),
        head(
          "POST / HTTP/1.1",
          H,
          "Connection: upgrade",
          "Upgrade: x",
          "Content-Length: 5",
        ) + "hello",
      ]
    ) {
      await using client = await RawClient.connect(server.addr.port);
      await client.write(request);
      assertEquals((await client.readResponse()).status, 500, request);
    }
  } finally {
    console.error = original;
  }
});

Deno.test("serve() answers HEAD on a stream that has produced nothing", async () => {
  await using server = startServer(
    {},
    () => new Response(new ReadableStream<Uint8Array>({ pull() {} })),
  );
  await using client = await RawClient.connect(server.addr.port);
  await client.write(head("HEAD / HTTP/1.1", H));
  const response = await client.readResponse({ head: true, timeout: 5000 });
  assertEquals(response.status, 200);
});

Deno.test("serve() fails a body read made after the response was sent", async () => {
  const late = Promise.withResolvers<unknown>();
  await using server = startServer({}, (request) => {
    setTimeout(() => {
      request.text().then(late.resolve, late.resolve);
    }, 50);
    return new Response("early");
  });
  await using client = await RawClient.connect(server.addr.port);
  await client.write(
    head("POST / HTTP/1.1", H, "Content-Length: 10") + "0123456789",
  );
  assertEquals((await client.readResponse()).text, "early");
  const outcome = await within(late.promise, "the late read");
  assert(outcome instanceof TypeError, String(outcome));
});

// serve() without `loop` makes its own; shutting that loop down directly (as
// EvCluster's workers do) used to leave idle keep-alive connections open for
// the whole grace and never resolve `server.finished`.
Deno.test("serve(): shutting down the server's own loop directly drains it and resolves finished", async () => {
  const server = startServer({ idleTimeout: 60_000 }, () => new Response("ok"));
  await using client = await RawClient.connect(server.addr.port);
  await client.write(head("GET / HTTP/1.1", "Host: x"));
  assertEquals((await client.readResponse()).text, "ok");
  const start = performance.now();
  await server.loop.shutdown({ grace: 30_000 });
  await within(server.finished, "server.finished", 10_000);
  // The idle connection was closed at once, not after the grace.
  assertLess(performance.now() - start, 10_000);
  assertEquals((await client.readToEnd()).rest, "");
});
