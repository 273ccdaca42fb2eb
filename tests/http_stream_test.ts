// Copyright 2026 the @corothread/evthread authors. MIT license.
// Streamed responses that start and stop as Deno.serve's do: the head of a
// stream goes out without waiting for a late first piece (and with the
// first piece, in one write, when it is there at once); a client that goes
// away, or half-closes, cancels the body stream at once and resolves
// `info.completed`; a used or locked body gets a clear error. Where Deno.serve
// is the reference, the same test runs on both servers.

import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertStringIncludes,
} from "@std/assert";
import { type HttpServer, serve } from "../http.ts";
import { HOST, startServer, within } from "./_http_helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A server under test, Deno.serve or ours, on a free loopback port. */
interface Served extends AsyncDisposable {
  port: number;
}

type Handler = (
  request: Request,
  info: { completed: Promise<void> },
) => Response | Promise<Response>;

/** The two servers the behaviours are checked on. */
const SERVERS: { name: string; start(handler: Handler): Served }[] = [
  {
    name: "Deno.serve",
    start(handler) {
      const server = Deno.serve(
        { hostname: HOST, port: 0, onListen() {} },
        handler,
      );
      return {
        port: server.addr.port,
        [Symbol.asyncDispose]: () => server.shutdown(),
      };
    },
  },
  {
    name: "serve()",
    start(handler) {
      const server: HttpServer = serve(
        { hostname: HOST, port: 0, onListen() {} },
        handler,
      );
      return {
        port: server.addr.port,
        [Symbol.asyncDispose]: () => server.shutdown(),
      };
    },
  },
];

/** A raw client connection: writes bytes, reads what comes. */
class Client implements AsyncDisposable {
  readonly conn: Deno.TcpConn;
  #text = "";
  #closed = false;

  constructor(conn: Deno.TcpConn) {
    this.conn = conn;
  }

  static async connect(port: number): Promise<Client> {
    return new Client(await Deno.connect({ hostname: HOST, port }));
  }

  async send(text: string): Promise<void> {
    const bytes = encoder.encode(text);
    let off = 0;
    while (off < bytes.byteLength) {
      off += await this.conn.write(bytes.subarray(off));
    }
  }

  /**
   * Reads until the text received so far includes `what` (`times` times);
   * returns it all.
   */
  async until(what: string, times = 1): Promise<string> {
    const buf = new Uint8Array(4096);
    while (this.#text.split(what).length <= times) {
      const n = await this.conn.read(buf);
      if (n === null) {
        throw new Error(`EOF before ${JSON.stringify(what)}: ${this.#text}`);
      }
      this.#text += decoder.decode(buf.subarray(0, n));
    }
    return this.#text;
  }

  /** Reads until the server ends the connection; what came after `until`. */
  async toEnd(): Promise<string> {
    const buf = new Uint8Array(4096);
    const start = this.#text.length;
    try {
      while (true) {
        const n = await this.conn.read(buf);
        if (n === null) break;
        this.#text += decoder.decode(buf.subarray(0, n));
      }
    } catch (error) {
      if (!(error instanceof Deno.errors.ConnectionReset)) throw error;
    }
    return this.#text.slice(start);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.conn.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }
}

const GET = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

/**
 * The server side's writes, counted where EvSocket makes them: each call
 * of `write` on a connection whose local port is the server's (the patched
 * method is the one all TCP connections share; restored on dispose).
 */
class ServerWrites implements Disposable {
  readonly writes: string[] = [];
  readonly #proto: { write(p: Uint8Array): Promise<number> };
  readonly #original: (p: Uint8Array) => Promise<number>;

  private constructor(
    proto: { write(p: Uint8Array): Promise<number> },
    port: number,
  ) {
    this.#proto = proto;
    const original = proto.write;
    this.#original = original;
    const writes = this.writes;
    proto.write = function (this: Deno.Conn, p: Uint8Array) {
      const local = this.localAddr as Deno.NetAddr;
      if (local.port === port) writes.push(decoder.decode(p));
      return original.call(this, p);
    };
  }

  /** Starts counting the writes of the server listening on `port`. */
  static async of(port: number): Promise<ServerWrites> {
    using listener = Deno.listen({ hostname: HOST, port: 0 });
    using conn = await Deno.connect({
      hostname: HOST,
      port: listener.addr.port,
    });
    let proto = Object.getPrototypeOf(conn);
    while (!Object.hasOwn(proto, "write")) proto = Object.getPrototypeOf(proto);
    return new ServerWrites(proto, port);
  }

  [Symbol.dispose](): void {
    this.#proto.write = this.#original;
  }
}

/** A stream whose source stays silent until `release`; `cancel` recorded. */
function gatedStream(events: string[]) {
  const gate = Promise.withResolvers<void>();
  const cancelled = Promise.withResolvers<unknown>();
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      await gate.promise;
      for (const event of events) controller.enqueue(encoder.encode(event));
      controller.close();
    },
    cancel(reason) {
      cancelled.resolve(reason);
    },
  });
  return { body, release: () => gate.resolve(), cancelled: cancelled.promise };
}

// ---------------------------------------------------------------------------
// The head of a stream.

for (const server of SERVERS) {
  Deno.test(`${server.name} sends a stream's head before a late first chunk`, async () => {
    const { body, release } = gatedStream(["late"]);
    await using served = server.start(() =>
      new Response(body, { headers: { "content-type": "text/event-stream" } })
    );
    await using client = await Client.connect(served.port);
    await client.send(GET);
    // The source is silent until the head has been read.
    const head = await within(client.until("\r\n\r\n"), "the head");
    assertStringIncludes(head, "HTTP/1.1 200 OK\r\n");
    assertStringIncludes(head.toLowerCase(), "transfer-encoding: chunked\r\n");
    release();
    await within(client.until("0\r\n\r\n"), "the chunk and the end");
  });
}

Deno.test("serve() writes a fixed body with its head in one write", async () => {
  await using server = startServer({}, () => new Response("Hello, World!"));
  using counted = await ServerWrites.of(server.addr.port);
  await using client = await Client.connect(server.addr.port);
  for (let i = 1; i <= 3; i++) {
    await client.send(GET);
    await within(client.until("Hello, World!", i), "a response");
    await within(waitForWrites(counted, i), "the write");
  }
  assertEquals(counted.writes.length, 3);
  for (const write of counted.writes) {
    assertStringIncludes(write, "content-length: 13\r\n");
    assert(write.endsWith("\r\n\r\nHello, World!"), write);
  }
});

/** Waits, one macrotask at a time (bounded), for `n` counted writes. */
async function waitForWrites(counted: ServerWrites, n: number): Promise<void> {
  for (let i = 0; i < 1000 && counted.writes.length < n; i++) {
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
}

const READY_AT_ONCE: [string, () => ReadableStream<Uint8Array>][] = [
  ["enqueued in start", () =>
    new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(encoder.encode("first"));
      },
      async pull(controller) {
        await Promise.resolve();
        controller.enqueue(encoder.encode("second"));
        controller.close();
      },
    }, { highWaterMark: 0 })],
  ["made in an async pull", () => {
    let n = 0;
    return new ReadableStream<Uint8Array>({
      async pull(controller) {
        await Promise.resolve();
        controller.enqueue(encoder.encode(n++ === 0 ? "first" : "second"));
        if (n === 2) controller.close();
      },
    }, { highWaterMark: 0 });
  }],
  ["from an async generator", () =>
    ReadableStream.from((async function* () {
      yield encoder.encode("first");
      yield encoder.encode("second");
    })())],
];

for (const [how, make] of READY_AT_ONCE) {
  Deno.test(`serve() writes a stream's first chunk ${how} with its head`, async () => {
    await using server = startServer({}, () => new Response(make()));
    using counted = await ServerWrites.of(server.addr.port);
    await using client = await Client.connect(server.addr.port);
    await client.send(GET);
    await within(client.until("0\r\n\r\n"), "the response");
    const first = counted.writes[0]!;
    assertStringIncludes(first, "transfer-encoding: chunked\r\n");
    assert(first.endsWith("\r\n\r\n5\r\nfirst\r\n"), JSON.stringify(first));
    assertEquals(counted.writes.slice(1).join(""), "6\r\nsecond\r\n0\r\n\r\n");
  });
}

Deno.test("serve() writes a stream's head alone when its first chunk is late", async () => {
  const { body, release } = gatedStream(["late"]);
  await using server = startServer({}, () => new Response(body));
  using counted = await ServerWrites.of(server.addr.port);
  await using client = await Client.connect(server.addr.port);
  await client.send(GET);
  await within(client.until("\r\n\r\n"), "the head");
  assertEquals(counted.writes.length, 1);
  assert(counted.writes[0]!.endsWith("\r\n\r\n"), counted.writes[0]);
  release();
  await within(client.until("0\r\n\r\n"), "the rest");
  assertEquals(counted.writes.slice(1).join(""), "4\r\nlate\r\n0\r\n\r\n");
});

Deno.test("serve() sends a late stream with its declared content-length", async () => {
  const { body, release } = gatedStream(["late"]);
  let n = 0;
  await using server = startServer(
    {},
    () =>
      n++ === 0
        ? new Response(body, { headers: { "content-length": "4" } })
        : new Response("again"),
  );
  await using client = await Client.connect(server.addr.port);
  await client.send(GET);
  const head = await within(client.until("\r\n\r\n"), "the head");
  assertStringIncludes(head, "content-length: 4\r\n");
  release();
  assert((await within(client.until("late"), "the body")).endsWith("late"));
  // Kept alive: a second request on the same connection is answered.
  await client.send(GET);
  assert((await within(client.until("again"), "again")).endsWith("again"));
});

Deno.test("serve() sends a late stream to an HTTP/1.0 client until close", async () => {
  const { body, release } = gatedStream(["late"]);
  await using server = startServer({}, () => new Response(body));
  await using client = await Client.connect(server.addr.port);
  await client.send("GET / HTTP/1.0\r\n\r\n");
  const head = await within(client.until("\r\n\r\n"), "the head");
  assertStringIncludes(head, "connection: close\r\n");
  assert(!head.includes("transfer-encoding"), head);
  release();
  assertEquals(await within(client.toEnd(), "the body and the close"), "late");
});

// ---------------------------------------------------------------------------
// A client that goes away.

/** An event stream that sends `first` (if any) and then nothing, ever. */
function silentEvents(first: string | undefined) {
  const cancelled = Promise.withResolvers<unknown>();
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      if (first !== undefined) controller.enqueue(encoder.encode(first));
    },
    cancel(reason) {
      cancelled.resolve(reason);
    },
  });
  return { body, cancelled: cancelled.promise };
}

/** What the handler saw of an exchange whose client went away. */
async function afterLeaving(
  server: (typeof SERVERS)[number],
  first: string | undefined,
  leave: (client: Client) => Promise<void>,
  options: { readSignal: boolean },
): Promise<{ client: Client; served: Served; signal?: AbortSignal }> {
  const { body, cancelled } = silentEvents(first);
  // Held in an object: resolving with the promise itself would adopt it.
  const completed = Promise.withResolvers<{ promise: Promise<void> }>();
  let signal: AbortSignal | undefined;
  const served = server.start((request, info) => {
    if (options.readSignal) signal = request.signal;
    completed.resolve({ promise: info.completed });
    return new Response(body, {
      headers: { "content-type": "text/event-stream" },
    });
  });
  const client = await Client.connect(served.port);
  await client.send(GET);
  await within(client.until(first ?? "\r\n\r\n"), "the head and first event");
  await leave(client);
  // The stream never writes again: only the disconnect itself can tell.
  const reason = await within(cancelled, "the stream's cancel()");
  assert(reason !== undefined, "cancelled without a reason");
  const { promise } = await completed.promise;
  const outcome = await within(
    promise.then(() => "resolved", (error) => `rejected: ${error}`),
    "info.completed",
  );
  assertEquals(outcome, "resolved");
  return signal === undefined ? { client, served } : { client, served, signal };
}

for (const server of SERVERS) {
  Deno.test(`${server.name} cancels an event stream at once when its client disconnects`, async () => {
    const { client, served } = await afterLeaving(
      server,
      "data: first\n\n",
      (client) => Promise.resolve(client.close()),
      { readSignal: false },
    );
    await client[Symbol.asyncDispose]();
    await served[Symbol.asyncDispose]();
  });

  Deno.test(`${server.name} cancels a silent stream at once when its client disconnects`, async () => {
    const { client, served, signal } = await afterLeaving(
      server,
      undefined,
      (client) => Promise.resolve(client.close()),
      { readSignal: true },
    );
    assert(signal?.aborted, "request.signal did not abort");
    await client[Symbol.asyncDispose]();
    await served[Symbol.asyncDispose]();
  });

  Deno.test(`${server.name} takes a client's half-close as a disconnect`, async () => {
    const { client, served, signal } = await afterLeaving(
      server,
      "data: first\n\n",
      (client) => client.conn.closeWrite(),
      { readSignal: true },
    );
    assert(signal?.aborted, "request.signal did not abort");
    // The server closes its side: no more of the response comes.
    assertEquals(await within(client.toEnd(), "the server to close"), "");
    await client[Symbol.asyncDispose]();
    await served[Symbol.asyncDispose]();
  });
}

Deno.test("serve() cancels a stream whose first chunk is late on shutdown", async () => {
  const { body, cancelled } = gatedStream(["never"]);
  const server = startServer({}, () => new Response(body));
  await using client = await Client.connect(server.addr.port);
  await client.send(GET);
  await within(client.until("\r\n\r\n"), "the head");
  await within(server.shutdown({ grace: 0 }), "the shutdown");
  assert(await within(cancelled, "cancel()") !== undefined);
});

// ---------------------------------------------------------------------------
// Bodies that cannot be sent.

for (
  const [what, make, message] of [
    ["already read", async () => {
      const response = new Response("x");
      await response.text();
      return response;
    }, "The response body was already read (bodyUsed)"],
    ["locked", () => {
      const response = new Response("x");
      response.body!.getReader();
      return Promise.resolve(response);
    }, "The response body is locked: a reader was taken from it"],
  ] as const
) {
  Deno.test(`serve() answers 500 and tells onError when the body was ${what}`, async () => {
    const errors: unknown[] = [];
    await using server = startServer({
      onError(error) {
        errors.push(error);
        return new Response("failed", { status: 500 });
      },
    }, make);
    await using client = await Client.connect(server.addr.port);
    await client.send(GET);
    const response = await within(client.until("failed"), "the response");
    assertStringIncludes(response, "HTTP/1.1 500 Internal Server Error\r\n");
    assertEquals(errors.length, 1);
    assertInstanceOf(errors[0], TypeError);
    assertEquals((errors[0] as TypeError).message, message);
  });
}
