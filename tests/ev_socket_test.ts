// Copyright 2026 the @corothread/evthread authors. MIT license.
// Tests of EvSocket over real loopback TCP connections. Handshakes, never
// sleeps, order the steps: a `WatchedConn` under the socket under test says
// when the socket has started a read and how many bytes it has taken from
// the kernel. Timeouts appear only as the thing under test (20-100 ms) or as
// generous safety nets (`SAFETY`); the one `pause()` paces writes in the
// idle-timeout traffic test and synchronises nothing.

import {
  assert,
  assertEquals,
  assertExists,
  assertGreater,
  assertGreaterOrEqual,
  assertInstanceOf,
  assertLess,
  assertRejects,
  assertStrictEquals,
  assertStringIncludes,
  assertThrows,
  fail,
} from "@std/assert";
import {
  EvLoop,
  type EvSendTimeoutError,
  EvSocket,
  LimitExceededError,
} from "../mod.ts";
import { assertBytes, concat, within } from "./_helpers.ts";

const HOST = "127.0.0.1";
/** A safety net: far longer than any step should take, even on a busy box. */
const SAFETY = 30_000;
const MiB = 1 << 20;
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const CRLF = encoder.encode("\r\n");

// ------------------------------------------------------------------ helpers

/** `n` random bytes (getRandomValues takes at most 64 KiB a call). */
function randomBytes(n: number): Uint8Array {
  const bytes = new Uint8Array(n);
  for (let i = 0; i < n; i += 65_536) {
    crypto.getRandomValues(bytes.subarray(i, Math.min(n, i + 65_536)));
  }
  return bytes;
}

/** Pacing between writes, never used to wait for something to happen. */
function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Reads a raw connection until end of stream, into one buffer that starts at
 * `expected + 1` bytes (so that one byte too many shows) and grows if need be.
 */
function readToEnd(conn: Deno.Conn, expected = 0): Promise<Uint8Array> {
  const run = async () => {
    let buf = new Uint8Array(Math.max(expected + 1, 64 * 1024));
    let total = 0;
    while (true) {
      if (total === buf.byteLength) {
        const bigger = new Uint8Array(2 * buf.byteLength);
        bigger.set(buf);
        buf = bigger;
      }
      const n = await conn.read(buf.subarray(total));
      if (n === null) return buf.subarray(0, total);
      total += n;
    }
  };
  return within(run(), "reading the raw peer to its end", SAFETY);
}

/** Reads a socket with `recv` until end of stream. */
async function recvToEnd(socket: EvSocket): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(64 * 1024);
  while (true) {
    const n = await socket.recv(buf, { timeout: SAFETY });
    if (n === null) return concat(chunks);
    chunks.push(buf.slice(0, n));
  }
}

/**
 * A real TCP connection that reports how many bytes have been read from it,
 * so that a test can wait until the socket on top has taken bytes from the
 * kernel (for example, to split a delimiter across two reads for sure).
 */
class WatchedConn {
  #conn: Deno.TcpConn;
  #total = 0;
  #waiters: { n: number; resolve: () => void }[] = [];
  #started = 0;
  #startWaiters: (() => void)[] = [];

  constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
  }

  get localAddr(): Deno.Addr {
    return this.#conn.localAddr;
  }

  get remoteAddr(): Deno.Addr {
    return this.#conn.remoteAddr;
  }

  /** Bytes read from the connection so far. */
  get total(): number {
    return this.#total;
  }

  async read(p: Uint8Array): Promise<number | null> {
    this.#started++;
    for (const resolve of this.#startWaiters.splice(0)) resolve();
    const n = await this.#conn.read(p);
    if (n !== null) {
      this.#total += n;
      this.#waiters = this.#waiters.filter((w) => {
        if (this.#total < w.n) return true;
        w.resolve();
        return false;
      });
    }
    return n;
  }

  write(p: Uint8Array): Promise<number> {
    return this.#conn.write(p);
  }

  closeWrite(): Promise<void> {
    return this.#conn.closeWrite();
  }

  close(): void {
    this.#conn.close();
  }

  /** Resolves once a read of the connection has been started. */
  readStarted(): Promise<void> {
    if (this.#started > 0) return Promise.resolve();
    return within(
      new Promise<void>((resolve) => this.#startWaiters.push(resolve)),
      "waiting for the socket to start reading",
      SAFETY,
    );
  }

  /** Resolves once `n` bytes in all have been read from the connection. */
  received(n: number): Promise<void> {
    if (this.#total >= n) return Promise.resolve();
    return within(
      new Promise<void>((resolve) => this.#waiters.push({ n, resolve })),
      `waiting for the socket to read ${n} bytes`,
      SAFETY,
    );
  }
}

/** Two connected sockets; `b` sits on a {@linkcode WatchedConn}. */
interface SocketPair extends AsyncDisposable {
  /** The connecting side, on a plain `Deno.TcpConn`. */
  a: EvSocket;
  /** The accepting side. */
  b: EvSocket;
  /** What `b` reads from. */
  watchB: WatchedConn;
}

async function socketPair(): Promise<SocketPair> {
  using listener = Deno.listen({ hostname: HOST, port: 0 });
  const [client, server] = await Promise.all([
    Deno.connect({ hostname: HOST, port: listener.addr.port }),
    listener.accept(),
  ]);
  const watchB = new WatchedConn(server);
  const a = new EvSocket(client);
  const b = new EvSocket(watchB as unknown as Deno.Conn);
  return {
    a,
    b,
    watchB,
    async [Symbol.asyncDispose]() {
      await Promise.all([a[Symbol.asyncDispose](), b[Symbol.asyncDispose]()]);
    },
  };
}

/** A socket and the raw connection at the other end. */
interface RawPair extends AsyncDisposable {
  socket: EvSocket;
  peer: Deno.TcpConn;
}

async function rawPair(): Promise<RawPair> {
  using listener = Deno.listen({ hostname: HOST, port: 0 });
  const [client, peer] = await Promise.all([
    Deno.connect({ hostname: HOST, port: listener.addr.port }),
    listener.accept(),
  ]);
  const socket = new EvSocket(client);
  return {
    socket,
    peer,
    async [Symbol.asyncDispose]() {
      try {
        peer.close();
      } catch {
        // The test closed it already.
      }
      await socket[Symbol.asyncDispose]();
    },
  };
}

/**
 * Puts `bytes` into `pair.b`'s read buffer without any read call taking
 * them: a `readFull` that needs one byte more waits until the socket has
 * read them all, then is aborted (aborts keep the bytes).
 */
async function preload(pair: SocketPair, bytes: Uint8Array): Promise<void> {
  const before = pair.b.buffered;
  const target = pair.watchB.total + bytes.byteLength;
  const stop = new AbortController();
  const waiting = pair.b.readFull(
    new Uint8Array(before + bytes.byteLength + 1),
    { signal: stop.signal },
  );
  await pair.a.send(bytes);
  await pair.watchB.received(target);
  const reason = new Error("preloaded");
  stop.abort(reason);
  assertStrictEquals(await assertRejects(() => waiting), reason);
  assertEquals(pair.b.buffered, before + bytes.byteLength);
}

/** Sends a line each way and checks it arrives: the pair still works. */
async function assertUsable(pair: SocketPair): Promise<void> {
  await pair.a.send(encoder.encode("ping\n"));
  assertEquals(await pair.b.readLine({ timeout: SAFETY }), "ping");
  await pair.b.send(encoder.encode("pong\n"));
  assertEquals(await pair.a.readLine({ timeout: SAFETY }), "pong");
}

/** Asserts that `call` returns a promise that rejects (it must not throw). */
async function assertRejectsLater(
  call: () => Promise<unknown>,
  // deno-lint-ignore no-explicit-any
  ErrorClass: abstract new (...args: any[]) => unknown,
): Promise<unknown> {
  let promise: Promise<unknown>;
  try {
    promise = call();
  } catch (error) {
    fail(`Expected a rejected promise, but the call threw: ${error}`);
  }
  return await assertRejects(() => promise, ErrorClass);
}

function assertTimeoutError(error: unknown): asserts error is DOMException {
  assertInstanceOf(error, DOMException);
  assertEquals(error.name, "TimeoutError");
}

// --------------------------------------------------------------------- recv

Deno.test("EvSocket.recv() returns the bytes the peer sent", async () => {
  await using pair = await socketPair();
  await pair.a.send(encoder.encode("hello"));
  const buf = new Uint8Array(64);
  const n = await pair.b.recv(buf, { timeout: SAFETY });
  assertExists(n);
  assertGreater(n, 0);
  // A small send may arrive in more than one read: read the rest, if any.
  let got = n;
  while (got < 5) {
    const more = await pair.b.recv(buf.subarray(got), { timeout: SAFETY });
    assertExists(more);
    got += more;
  }
  assertEquals(decoder.decode(buf.subarray(0, got)), "hello");
});

Deno.test("EvSocket.recv() returns at most the buffer's length", async () => {
  await using pair = await socketPair();
  await preload(pair, encoder.encode("abcdef"));
  const buf = new Uint8Array(4);
  assertEquals(await pair.b.recv(buf), 4);
  assertEquals(decoder.decode(buf), "abcd");
  assertEquals(await pair.b.recv(buf), 2);
  assertEquals(decoder.decode(buf.subarray(0, 2)), "ef");
});

Deno.test("EvSocket.recv() returns null at end of stream", async () => {
  await using pair = await socketPair();
  await pair.a.send(encoder.encode("x"));
  await pair.a.closeWrite();
  assertEquals(await recvToEnd(pair.b), encoder.encode("x"));
  assertStrictEquals(
    await pair.b.recv(new Uint8Array(8), { timeout: SAFETY }),
    null,
  );
});

Deno.test("EvSocket.recv() rejects with a TimeoutError when nothing arrives in time", async () => {
  await using pair = await socketPair();
  const error = await assertRejects(() =>
    pair.b.recv(new Uint8Array(8), { timeout: 20 })
  );
  assertTimeoutError(error);
  assertEquals(pair.b.closed, false);
});

Deno.test("EvSocket.recv() keeps late bytes after a timeout", async () => {
  await using pair = await socketPair();
  const buf = new Uint8Array(64 * 1024);
  // Several timeouts in a row: each leaves the one read of the connection
  // armed, and nothing it takes may be lost or reordered.
  for (let i = 0; i < 3; i++) {
    assertTimeoutError(
      await assertRejects(() => pair.b.recv(buf, { timeout: 20 })),
    );
  }
  const chunks = [randomBytes(1), randomBytes(1000), randomBytes(300_000)];
  for (const chunk of chunks) await pair.a.send(chunk, { timeout: SAFETY });
  await pair.a.closeWrite();
  assertBytes(await recvToEnd(pair.b), concat(chunks));
});

Deno.test("EvSocket.recv() with timeout 0 returns bytes already buffered", async () => {
  await using pair = await socketPair();
  await preload(pair, encoder.encode("ready"));
  const buf = new Uint8Array(16);
  assertEquals(await pair.b.recv(buf, { timeout: 0 }), 5);
  assertEquals(decoder.decode(buf.subarray(0, 5)), "ready");
});

Deno.test("EvSocket.recv() with timeout 0 rejects with a TimeoutError when nothing is buffered", async () => {
  await using pair = await socketPair();
  assertTimeoutError(
    await assertRejects(() => pair.b.recv(new Uint8Array(8), { timeout: 0 })),
  );
  // It lost nothing either.
  await pair.a.send(encoder.encode("later"));
  await pair.a.closeWrite();
  assertEquals(decoder.decode(await recvToEnd(pair.b)), "later");
});

Deno.test("EvSocket.recv() rejects with the signal's reason on abort and keeps the data", async () => {
  await using pair = await socketPair();
  const controller = new AbortController();
  const pending = pair.b.recv(new Uint8Array(8), {
    signal: controller.signal,
  });
  const reason = new Error("stop waiting");
  controller.abort(reason);
  assertStrictEquals(await assertRejects(() => pending), reason);
  const data = randomBytes(10_000);
  await pair.a.send(data);
  await pair.a.closeWrite();
  assertBytes(await recvToEnd(pair.b), data);
});

Deno.test("EvSocket.recv() rejects with the reason of an already aborted signal", async () => {
  await using pair = await socketPair();
  const reason = new Error("too late");
  const error = await assertRejects(() =>
    pair.b.recv(new Uint8Array(8), { signal: AbortSignal.abort(reason) })
  );
  assertStrictEquals(error, reason);
  await assertUsable(pair);
});

Deno.test("EvSocket.recv() into an empty buffer resolves 0", async () => {
  await using pair = await socketPair();
  assertEquals(await pair.b.recv(new Uint8Array(0), { timeout: SAFETY }), 0);
  await preload(pair, encoder.encode("kept"));
  assertEquals(await pair.b.recv(new Uint8Array(0)), 0);
  assertEquals(pair.b.buffered, 4);
});

Deno.test("EvSocket read calls queue in call order", async () => {
  await using pair = await socketPair();
  const head = pair.b.readFull(new Uint8Array(2), { timeout: SAFETY });
  const line = pair.b.readLine({ timeout: SAFETY });
  const record = pair.b.readUntil(encoder.encode(";"), { timeout: SAFETY });
  const tail = pair.b.readFull(new Uint8Array(3), { timeout: SAFETY });
  await pair.a.send(encoder.encode("ABline\nrec;xyz"));
  assertEquals(decoder.decode((await head)!), "AB");
  assertEquals(await line, "line");
  assertEquals(decoder.decode((await record)!), "rec;");
  assertEquals(decoder.decode((await tail)!), "xyz");
});

Deno.test("EvSocket.recv() timing out lets the read queued behind it take the bytes", async () => {
  await using pair = await socketPair();
  const first = pair.b.recv(new Uint8Array(8), { timeout: 20 });
  const second = pair.b.readLine({ timeout: SAFETY });
  assertTimeoutError(await assertRejects(() => first));
  await pair.a.send(encoder.encode("for the second\n"));
  assertEquals(await second, "for the second");
});

// --------------------------------------------------------------------- peek

Deno.test("EvSocket.peek() returns the first bytes without taking them", async () => {
  await using pair = await socketPair();
  await pair.a.send(encoder.encode("GET /"));
  assertEquals(
    decoder.decode((await pair.b.peek(3, { timeout: SAFETY }))!),
    "GET",
  );
  assertGreaterOrEqual(pair.b.buffered, 3);
  // The next read call still gets them.
  const buf = new Uint8Array(5);
  assertStrictEquals(await pair.b.readFull(buf, { timeout: SAFETY }), buf);
  assertEquals(decoder.decode(buf), "GET /");
});

Deno.test("EvSocket.peek() waits until n bytes are buffered", async () => {
  await using pair = await socketPair();
  let settled = false;
  const peeked = pair.b.peek(6, { timeout: SAFETY }).finally(() => {
    settled = true;
  });
  await pair.a.send(encoder.encode("abc"));
  // The socket has read the first part, and the peek still waits.
  await pair.watchB.received(3);
  assertEquals(settled, false);
  await pair.a.send(encoder.encode("defgh"));
  assertEquals(decoder.decode((await peeked)!), "abcdef");
  const buf = new Uint8Array(8);
  assertStrictEquals(await pair.b.readFull(buf, { timeout: SAFETY }), buf);
  assertEquals(decoder.decode(buf), "abcdefgh");
});

Deno.test("EvSocket.peek() returns fewer bytes at end of stream, then null", async () => {
  await using pair = await socketPair();
  await pair.a.send(encoder.encode("ab"));
  await pair.a.closeWrite();
  assertEquals(
    decoder.decode((await pair.b.peek(8, { timeout: SAFETY }))!),
    "ab",
  );
  assertEquals(decoder.decode(await recvToEnd(pair.b)), "ab");
  assertStrictEquals(await pair.b.peek(1, { timeout: SAFETY }), null);
});

Deno.test("EvSocket.peek() keeps the bytes after a timeout", async () => {
  await using pair = await socketPair();
  await preload(pair, encoder.encode("xy"));
  assertTimeoutError(
    await assertRejects(() => pair.b.peek(3, { timeout: 20 })),
  );
  assertEquals(pair.b.buffered, 2);
  await pair.a.send(encoder.encode("z"));
  assertEquals(
    decoder.decode((await pair.b.peek(3, { timeout: SAFETY }))!),
    "xyz",
  );
  assertEquals(pair.b.buffered, 3);
});

Deno.test("EvSocket.peek() rejects n below 1 with a RangeError", async () => {
  await using pair = await socketPair();
  await assertRejectsLater(() => pair.b.peek(0), RangeError);
  await assertRejectsLater(() => pair.b.peek(-1), RangeError);
  await assertRejectsLater(() => pair.b.peek(1.5), RangeError);
  await assertRejectsLater(
    () => pair.b.peek("2" as unknown as number),
    TypeError,
  );
  await assertUsable(pair);
});

// --------------------------------------------------------------------- send

Deno.test("EvSocket.send() writes all of an 8 MiB buffer", async () => {
  await using pair = await rawPair();
  const data = randomBytes(8 * MiB);
  const received = readToEnd(pair.peer, data.byteLength);
  await pair.socket.send(data, { timeout: SAFETY });
  await pair.socket.closeWrite({ timeout: SAFETY });
  assertBytes(await received, data);
});

Deno.test("EvSocket.send() rejects with a TimeoutError carrying bytesWritten when the peer does not read", async () => {
  await using pair = await rawPair();
  const total = 64 * MiB;
  const error = await assertRejects(() =>
    pair.socket.send(new Uint8Array(total), { timeout: 100 })
  );
  assertTimeoutError(error);
  const { bytesWritten } = error as EvSendTimeoutError;
  assertStrictEquals(typeof bytesWritten, "number");
  assertGreater(bytesWritten, 0);
  assertLess(bytesWritten, total);
});

Deno.test("EvSocket.send() still writes all of a timed-out send, ahead of a later send", async () => {
  await using pair = await rawPair();
  const first = randomBytes(64 * MiB);
  const error = await assertRejects(() =>
    pair.socket.send(first, { timeout: 100 })
  );
  assertTimeoutError(error);
  assertLess((error as EvSendTimeoutError).bytesWritten, first.byteLength);
  const second = randomBytes(100_000);
  const later = pair.socket.send(second, { timeout: SAFETY });
  const closing = pair.socket.closeWrite({ timeout: SAFETY });
  // Only now does the peer start reading.
  const received = await readToEnd(
    pair.peer,
    first.byteLength + second.byteLength,
  );
  await later;
  await closing;
  assertEquals(received.byteLength, first.byteLength + second.byteLength);
  assertBytes(received.subarray(0, first.byteLength), first, "timed-out send");
  assertBytes(received.subarray(first.byteLength), second, "later send");
});

// Exposes a bug: the rest of a timed-out send is copied, but the write that
// is in flight at the timeout still points into the caller's buffer.
Deno.test("EvSocket.send() writes the original bytes of a timed-out send even if the caller reuses its buffer", async () => {
  await using pair = await rawPair();
  const data = randomBytes(64 * MiB);
  const expected = data.slice();
  const error = await assertRejects(() =>
    pair.socket.send(data, { timeout: 100 })
  );
  assertTimeoutError(error);
  // The call has settled: the caller may reuse its buffer.
  data.fill(0);
  const closing = pair.socket.closeWrite({ timeout: SAFETY });
  const received = await readToEnd(pair.peer, expected.byteLength);
  await closing;
  assertBytes(received, expected);
});

Deno.test("EvSocket.send() keeps concurrent sends in call order", async () => {
  await using pair = await socketPair();
  const chunks = [1, 3 * MiB, 7, 2 * MiB + 3, 100, MiB, 1].map(randomBytes);
  const order: number[] = [];
  // All called at once, none awaited before the next.
  const sends = chunks.map((chunk, i) =>
    pair.a.send(chunk, { timeout: SAFETY }).then(() => order.push(i))
  );
  const closing = pair.a.closeWrite({ timeout: SAFETY });
  const received = await recvToEnd(pair.b);
  await Promise.all(sends);
  await closing;
  assertBytes(received, concat(chunks));
  assertEquals(order, [0, 1, 2, 3, 4, 5, 6]);
});

Deno.test("EvSocket.send() of an empty buffer resolves", async () => {
  await using pair = await socketPair();
  await pair.a.send(new Uint8Array(0), { timeout: SAFETY });
  await assertUsable(pair);
});

// -------------------------------------------------------------- full duplex

Deno.test("EvSocket moves 8 MiB each way at once on one connection", async () => {
  await using pair = await socketPair();
  const size = 8 * MiB;
  const aToB = randomBytes(size);
  const bToA = randomBytes(size);
  // Each socket has a recv and a send pending at the same time; neither
  // send can finish unless the other side reads meanwhile.
  const [atB, atA] = await Promise.all([
    recvToEnd(pair.b),
    recvToEnd(pair.a),
    pair.a.send(aToB, { timeout: SAFETY }).then(() =>
      pair.a.closeWrite({ timeout: SAFETY })
    ),
    pair.b.send(bToA, { timeout: SAFETY }).then(() =>
      pair.b.closeWrite({ timeout: SAFETY })
    ),
  ]);
  assertBytes(atB, aToB, "a to b");
  assertBytes(atA, bToA, "b to a");
});

// ----------------------------------------------------------------- readFull

Deno.test("EvSocket.readFull() fills the buffer with exactly the bytes sent", async () => {
  await using pair = await socketPair();
  const data = randomBytes(100_000);
  // Three sends, read back as two records that cut across them.
  await pair.a.send(data.subarray(0, 10));
  await pair.a.send(data.subarray(10, 60_000));
  await pair.a.send(data.subarray(60_000));
  const head = new Uint8Array(30_000);
  assertStrictEquals(await pair.b.readFull(head, { timeout: SAFETY }), head);
  assertBytes(head, data.subarray(0, 30_000));
  const rest = new Uint8Array(70_000);
  assertStrictEquals(await pair.b.readFull(rest, { timeout: SAFETY }), rest);
  assertBytes(rest, data.subarray(30_000));
});

Deno.test("EvSocket.readFull() returns null at a clean end of stream", async () => {
  await using pair = await socketPair();
  await pair.a.send(encoder.encode("four"));
  await pair.a.closeWrite();
  const buf = new Uint8Array(4);
  assertStrictEquals(await pair.b.readFull(buf, { timeout: SAFETY }), buf);
  assertStrictEquals(
    await pair.b.readFull(new Uint8Array(4), { timeout: SAFETY }),
    null,
  );
});

Deno.test("EvSocket.readFull() rejects with UnexpectedEof and bytesRead when the stream ends early", async () => {
  await using pair = await socketPair();
  await pair.a.send(encoder.encode("abc"));
  await pair.a.closeWrite();
  const buf = new Uint8Array(8);
  const error = await assertRejects(
    () => pair.b.readFull(buf, { timeout: SAFETY }),
    Deno.errors.UnexpectedEof,
  );
  assertEquals((error as { bytesRead?: unknown }).bytesRead, 3);
  assertEquals(decoder.decode(buf.subarray(0, 3)), "abc");
  assertStrictEquals(
    await pair.b.recv(new Uint8Array(8), { timeout: SAFETY }),
    null,
  );
});

Deno.test("EvSocket.readFull() keeps the bytes buffered after a timeout", async () => {
  await using pair = await socketPair();
  await preload(pair, encoder.encode("abc"));
  const buf = new Uint8Array(8);
  assertTimeoutError(
    await assertRejects(() => pair.b.readFull(buf, { timeout: 20 })),
  );
  assertEquals(pair.b.buffered, 3);
  await pair.a.send(encoder.encode("defgh"));
  assertStrictEquals(await pair.b.readFull(buf, { timeout: SAFETY }), buf);
  assertEquals(decoder.decode(buf), "abcdefgh");
});

// ------------------------------------------------------ readLine, readUntil

Deno.test("EvSocket.readLine() ends lines at LF and at CRLF", async () => {
  await using pair = await socketPair();
  await pair.a.send(encoder.encode("one\ntwo\r\n\nthree\r\n"));
  assertEquals(await pair.b.readLine({ timeout: SAFETY }), "one");
  assertEquals(await pair.b.readLine({ timeout: SAFETY }), "two");
  assertEquals(await pair.b.readLine({ timeout: SAFETY }), "");
  assertEquals(await pair.b.readLine({ timeout: SAFETY }), "three");
  assertEquals(pair.b.buffered, 0);
});

Deno.test("EvSocket.readLine() returns a last line without a line ending at end of stream", async () => {
  await using pair = await socketPair();
  await pair.a.send(encoder.encode("first\nlast"));
  await pair.a.closeWrite();
  assertEquals(await pair.b.readLine({ timeout: SAFETY }), "first");
  assertEquals(await pair.b.readLine({ timeout: SAFETY }), "last");
  assertStrictEquals(await pair.b.readLine({ timeout: SAFETY }), null);
});

Deno.test("EvSocket.readLine() rejects with LimitExceededError over maxLength and keeps the bytes", async () => {
  await using pair = await socketPair();
  await pair.a.send(encoder.encode("abcdefghij\nnext\n"));
  const error = await assertRejects(
    () => pair.b.readLine({ maxLength: 5, timeout: SAFETY }),
    LimitExceededError,
  );
  assertEquals((error as LimitExceededError).limit, 5);
  assertEquals((error as LimitExceededError).name, "LimitExceededError");
  assertEquals(
    (error as LimitExceededError).message,
    "Line too long: no end of line within 5 bytes",
  );
  // The line ending counts: 11 bytes do not fit in 10.
  await assertRejects(
    () => pair.b.readLine({ maxLength: 10, timeout: SAFETY }),
    LimitExceededError,
  );
  assertEquals(
    await pair.b.readLine({ maxLength: 11, timeout: SAFETY }),
    "abcdefghij",
  );
  assertEquals(await pair.b.readLine({ timeout: SAFETY }), "next");
});

Deno.test("EvSocket.readUntil() over maxLength leaves the bytes for recv", async () => {
  await using pair = await socketPair();
  await preload(pair, encoder.encode("0123456789abcdef"));
  await assertRejects(
    () => pair.b.readUntil(CRLF, { maxLength: 8, timeout: SAFETY }),
    LimitExceededError,
    "No delimiter found within the limit of 8 bytes",
  );
  assertEquals(pair.b.buffered, 16);
  const buf = new Uint8Array(64);
  assertEquals(await pair.b.recv(buf), 16);
  assertEquals(decoder.decode(buf.subarray(0, 16)), "0123456789abcdef");
});

Deno.test("EvSocket.readLine() reads a line longer than the read buffer", async () => {
  await using pair = await socketPair();
  const line = "x".repeat(100_000);
  const sending = pair.a.send(encoder.encode(`${line}\r\nshort\n`));
  assertEquals(
    await pair.b.readLine({ maxLength: 200_000, timeout: SAFETY }),
    line,
  );
  assertEquals(await pair.b.readLine({ timeout: SAFETY }), "short");
  await sending;
});

Deno.test("EvSocket.readLine() over a maxLength larger than the read buffer keeps the bytes", async () => {
  await using pair = await socketPair();
  const line = "y".repeat(50_000);
  const sending = pair.a.send(encoder.encode(`${line}\n`));
  await assertRejects(
    () => pair.b.readLine({ maxLength: 40_000, timeout: SAFETY }),
    LimitExceededError,
  );
  assertEquals(
    await pair.b.readLine({ maxLength: 60_000, timeout: SAFETY }),
    line,
  );
  await sending;
});

Deno.test("EvSocket.readLine() reads a line sent in many small writes", async () => {
  await using pair = await socketPair();
  pair.a.setNoDelay(true);
  const text = "a line sent one byte at a time\r\n";
  const line = pair.b.readLine({ timeout: SAFETY });
  const base = pair.watchB.total;
  for (let i = 0; i < text.length; i++) {
    await pair.a.send(encoder.encode(text[i]));
    // The socket has read this byte on its own before the next is sent.
    await pair.watchB.received(base + i + 1);
  }
  assertEquals(await line, "a line sent one byte at a time");
});

Deno.test("EvSocket.readLine() decodes a UTF-8 character split across writes", async () => {
  await using pair = await socketPair();
  const bytes = encoder.encode("héllo €\n");
  const line = pair.b.readLine({ timeout: SAFETY });
  // Cut inside the 3-byte euro sign.
  await pair.a.send(bytes.subarray(0, 9));
  await pair.watchB.received(9);
  await pair.a.send(bytes.subarray(9));
  assertEquals(await line, "héllo €");
});

Deno.test("EvSocket.readUntil() finds a multi-byte delimiter split across two writes", async () => {
  await using pair = await socketPair();
  const end = encoder.encode("\r\n\r\n");
  const record = pair.b.readUntil(end, { timeout: SAFETY });
  // The first part holds a CRLF that is only half the delimiter.
  await pair.a.send(encoder.encode("GET / HTTP/1.1\r\nHost: x\r\n\r"));
  await pair.watchB.received(26);
  await pair.a.send(encoder.encode("\nbody"));
  assertEquals(
    decoder.decode((await record)!),
    "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
  );
  const buf = new Uint8Array(16);
  assertEquals(await pair.b.readFull(buf.subarray(0, 4)), buf.subarray(0, 4));
  assertEquals(decoder.decode(buf.subarray(0, 4)), "body");
});

Deno.test("EvSocket.readUntil() rejects with UnexpectedEof on a partial record at end of stream", async () => {
  await using pair = await socketPair();
  await pair.a.send(encoder.encode("partial"));
  await pair.a.closeWrite();
  const error = await assertRejects(
    () => pair.b.readUntil(CRLF, { timeout: SAFETY }),
    Deno.errors.UnexpectedEof,
  );
  assertEquals((error as { bytesRead?: unknown }).bytesRead, 7);
  // The partial record stays buffered for recv.
  assertEquals(decoder.decode(await recvToEnd(pair.b)), "partial");
});

// --------------------------------------------------------------- closeWrite

Deno.test("EvSocket.closeWrite() makes the peer read null while this side still receives", async () => {
  await using pair = await socketPair();
  await pair.a.closeWrite({ timeout: SAFETY });
  assertStrictEquals(
    await pair.b.recv(new Uint8Array(8), { timeout: SAFETY }),
    null,
  );
  await pair.b.send(encoder.encode("still open\n"));
  assertEquals(await pair.a.readLine({ timeout: SAFETY }), "still open");
});

Deno.test("EvSocket.closeWrite() first flushes the sends queued before it", async () => {
  await using pair = await socketPair();
  const data = randomBytes(4 * MiB);
  const sending = pair.a.send(data, { timeout: SAFETY });
  const closing = pair.a.closeWrite({ timeout: SAFETY });
  assertBytes(await recvToEnd(pair.b), data);
  await sending;
  await closing;
});

Deno.test("EvSocket.send() after closeWrite() rejects with BrokenPipe", async () => {
  await using pair = await socketPair();
  await pair.a.closeWrite();
  await assertRejects(
    () => pair.a.send(encoder.encode("x")),
    Deno.errors.BrokenPipe,
  );
});

// -------------------------------------------------------------------- close

Deno.test("EvSocket.close() rejects a pending recv with BadResource", async () => {
  await using pair = await socketPair();
  const pending = pair.b.recv(new Uint8Array(8));
  pair.b.close();
  await assertRejects(() => pending, Deno.errors.BadResource);
});

Deno.test("EvSocket.close() rejects a pending send with BadResource", async () => {
  await using pair = await rawPair();
  // The peer never reads, so this cannot finish.
  const pending = pair.socket.send(new Uint8Array(32 * MiB));
  pair.socket.close();
  await assertRejects(() => pending, Deno.errors.BadResource);
});

Deno.test("EvSocket rejects every call after close() with BadResource", async () => {
  await using pair = await socketPair();
  const b = pair.b;
  b.close();
  const buf = new Uint8Array(4);
  await assertRejects(() => b.recv(buf), Deno.errors.BadResource);
  await assertRejects(() => b.readFull(buf), Deno.errors.BadResource);
  await assertRejects(() => b.readLine(), Deno.errors.BadResource);
  await assertRejects(() => b.readUntil(CRLF), Deno.errors.BadResource);
  await assertRejects(() => b.send(buf), Deno.errors.BadResource);
  await assertRejects(() => b.closeWrite(), Deno.errors.BadResource);
  assertThrows(() => b.setNoDelay(true), Deno.errors.BadResource);
  assertThrows(() => b.setKeepAlive(true), Deno.errors.BadResource);
  // The peer sees the connection end.
  assertStrictEquals(
    await pair.a.recv(new Uint8Array(8), { timeout: SAFETY }),
    null,
  );
});

Deno.test("EvSocket.close() twice is a no-op", async () => {
  await using pair = await socketPair();
  pair.b.close();
  pair.b.close();
  assert(pair.b.closed);
  await pair.b[Symbol.asyncDispose]();
  assert(pair.b.closed);
});

Deno.test("EvSocket.closed is false until close()", async () => {
  await using pair = await socketPair();
  assertStrictEquals(pair.a.closed, false);
  await assertUsable(pair);
  // Neither the peer's close nor end of stream closes this socket.
  pair.b.close();
  assertStrictEquals(
    await pair.a.recv(new Uint8Array(8), { timeout: SAFETY }),
    null,
  );
  assertStrictEquals(pair.a.closed, false);
  pair.a.close();
  assertStrictEquals(pair.a.closed, true);
});

// ------------------------------------------------------------- idle timeout

Deno.test("EvSocket.setIdleTimeout() rejects a pending recv with a TimeoutError after silence", async () => {
  await using pair = await socketPair();
  pair.b.setIdleTimeout(30);
  assertTimeoutError(
    await assertRejects(() => pair.b.recv(new Uint8Array(8))),
  );
  assertEquals(pair.b.closed, false);
});

Deno.test("EvSocket.setIdleTimeout() fails the next call when it expired with none pending", async () => {
  await using pair = await socketPair();
  pair.b.setIdleTimeout(20);
  // Serves as the clock: this timeout is due after b's idle deadline.
  assertTimeoutError(
    await assertRejects(() => pair.a.recv(new Uint8Array(1), { timeout: 100 })),
  );
  assertTimeoutError(
    await assertRejects(() => pair.b.recv(new Uint8Array(8))),
  );
  pair.b.setIdleTimeout(undefined);
  await assertUsable(pair);
});

Deno.test("EvSocket.setIdleTimeout() does not fire while bytes keep moving", async () => {
  await using pair = await socketPair();
  const idle = 400;
  pair.b.setIdleTimeout(idle);
  const start = performance.now();
  let sent = 0;
  const sender = (async () => {
    // Runs for three idle periods, with gaps far shorter than one.
    while (performance.now() - start < 3 * idle && sent < 1000) {
      await pair.a.send(new Uint8Array([sent & 0xff]));
      sent++;
      await pause(10);
    }
    await pair.a.closeWrite();
  })();
  const received = await recvToEnd(pair.b);
  await sender;
  assertGreaterOrEqual(performance.now() - start, 3 * idle);
  assertEquals(received.byteLength, sent);
  for (let i = 0; i < sent; i++) assertEquals(received[i], i & 0xff);
});

Deno.test("EvSocket.setIdleTimeout() loses no bytes", async () => {
  await using pair = await socketPair();
  await preload(pair, encoder.encode("before\n"));
  pair.b.setIdleTimeout(30);
  assertEquals(await pair.b.readLine(), "before");
  // Silence: the pending readLine times out, with its read still armed.
  assertTimeoutError(await assertRejects(() => pair.b.readLine()));
  pair.b.setIdleTimeout(undefined);
  const data = randomBytes(200_000);
  await pair.a.send(data);
  await pair.a.closeWrite();
  assertBytes(await recvToEnd(pair.b), data);
});

// A recv made with no timeout once read straight into the caller's buffer,
// so an idle timeout set afterwards could not bound it. Reads now always go
// through the socket's buffer: the later idle timeout rejects the pending
// recv, leaves the caller's buffer alone, and keeps the bytes for the next.
Deno.test("EvSocket.setIdleTimeout() bounds a recv that was already waiting", async () => {
  await using pair = await socketPair();
  const buf = new Uint8Array(16);
  const pending = pair.b.recv(buf); // no timeout
  await pair.watchB.readStarted();
  pair.b.setIdleTimeout(30);
  const error = await assertRejects(() => pending);
  assertTimeoutError(error);
  assertStringIncludes((error as Error).message, "idle");
  pair.b.setIdleTimeout(undefined);
  await pair.a.send(encoder.encode("data"));
  const next = new Uint8Array(16);
  assertEquals(await pair.b.recv(next, { timeout: SAFETY }), 4);
  assertEquals(decoder.decode(next.subarray(0, 4)), "data");
  assertEquals(buf, new Uint8Array(16)); // never written after rejecting
});

// ------------------------------------------------------------------ streams

Deno.test("EvSocket.readable hands out already buffered bytes first", async () => {
  await using pair = await socketPair();
  await preload(pair, encoder.encode("head\r\nbody"));
  const head = await pair.b.readUntil(CRLF);
  assertEquals(decoder.decode(head!), "head\r\n");
  assertEquals(pair.b.buffered, 4);
  await pair.a.send(encoder.encode(" and more"));
  await pair.a.closeWrite();
  const text = await within(
    new Response(pair.b.readable).text(),
    "reading the stream",
    SAFETY,
  );
  assertEquals(text, "body and more");
});

Deno.test("EvSocket.recv() rejects with a TypeError while the readable is locked", async () => {
  await using pair = await socketPair();
  const reader = pair.b.readable.getReader();
  const buf = new Uint8Array(8);
  await assertRejects(() => pair.b.recv(buf), TypeError);
  await assertRejects(() => pair.b.readFull(buf), TypeError);
  await assertRejects(() => pair.b.readLine(), TypeError);
  await assertRejects(() => pair.b.readUntil(CRLF), TypeError);
  reader.releaseLock();
  await assertUsable(pair);
});

Deno.test("EvSocket.readable cancelled leaves the socket open for recv", async () => {
  await using pair = await socketPair();
  const reader = pair.b.readable.getReader();
  const read = reader.read();
  await reader.cancel(new Error("enough"));
  const result = await read;
  assertEquals(result.done, true);
  assertStrictEquals(result.value, undefined);
  reader.releaseLock();
  assertEquals(pair.b.closed, false);
  await pair.a.send(encoder.encode("after\n"));
  assertEquals(await pair.b.readLine({ timeout: SAFETY }), "after");
});

// Exposes a bug: the pull that the released read had started stays queued
// in the socket and takes the next bytes into the stream's queue.
Deno.test("EvSocket.recv() gets the next bytes after the readable's reader is released with a read pending", async () => {
  await using pair = await socketPair();
  const reader = pair.b.readable.getReader();
  const read = reader.read();
  // The stream's pull has started a read of the connection.
  await pair.watchB.readStarted();
  reader.releaseLock();
  await assertRejects(() => read, TypeError);
  await pair.a.send(encoder.encode("after release"));
  await pair.a.closeWrite();
  assertEquals(decoder.decode(await recvToEnd(pair.b)), "after release");
});

Deno.test("EvSocket.writable half-closes the connection when it closes", async () => {
  await using pair = await socketPair();
  const chunks = [randomBytes(10), randomBytes(MiB), randomBytes(3)];
  const received = recvToEnd(pair.b);
  await ReadableStream.from(chunks).pipeTo(pair.a.writable);
  assertBytes(await received, concat(chunks));
  // Half-closed only: a can still receive.
  await pair.b.send(encoder.encode("ack\n"));
  assertEquals(await pair.a.readLine({ timeout: SAFETY }), "ack");
  assertEquals(pair.a.closed, false);
});

Deno.test("EvSocket.send() rejects with a TypeError while the writable is locked", async () => {
  await using pair = await socketPair();
  const writer = pair.a.writable.getWriter();
  await assertRejects(() => pair.a.send(encoder.encode("x")), TypeError);
  await writer.write(encoder.encode("via writer\n"));
  writer.releaseLock();
  await pair.a.send(encoder.encode("via send\n"));
  assertEquals(await pair.b.readLine({ timeout: SAFETY }), "via writer");
  assertEquals(await pair.b.readLine({ timeout: SAFETY }), "via send");
});

Deno.test("EvSocket.readable piped into another socket's writable proxies the stream", async () => {
  await using front = await socketPair();
  await using back = await socketPair();
  // front.a -> front.b ==pipe==> back.a -> back.b
  const piping = front.b.readable.pipeTo(back.a.writable);
  const data = randomBytes(4 * MiB);
  const received = recvToEnd(back.b);
  await front.a.send(data, { timeout: SAFETY });
  await front.a.closeWrite({ timeout: SAFETY });
  assertBytes(await received, data);
  await within(piping, "the pipe", SAFETY);
});

// -------------------------------------------------------------- bad options

Deno.test("EvSocket calls reject a negative or NaN timeout with a RangeError", async () => {
  await using pair = await socketPair();
  const { a, b } = pair;
  const buf = new Uint8Array(4);
  for (const timeout of [-1, NaN, -Infinity]) {
    await assertRejectsLater(() => b.recv(buf, { timeout }), RangeError);
    await assertRejectsLater(() => b.readFull(buf, { timeout }), RangeError);
    await assertRejectsLater(() => b.readLine({ timeout }), RangeError);
    await assertRejectsLater(() => b.readUntil(CRLF, { timeout }), RangeError);
    await assertRejectsLater(() => a.send(buf, { timeout }), RangeError);
    await assertRejectsLater(() => a.closeWrite({ timeout }), RangeError);
    assertThrows(() => b.setIdleTimeout(timeout), RangeError);
  }
  // Not even the rejected closeWrite half-closed the socket.
  await assertUsable(pair);
});

Deno.test("EvSocket calls reject a timeout that is not a number with a TypeError", async () => {
  await using pair = await socketPair();
  const { a, b } = pair;
  const buf = new Uint8Array(4);
  const timeout = "10" as unknown as number;
  await assertRejectsLater(() => b.recv(buf, { timeout }), TypeError);
  await assertRejectsLater(() => b.readFull(buf, { timeout }), TypeError);
  await assertRejectsLater(() => b.readLine({ timeout }), TypeError);
  await assertRejectsLater(() => b.readUntil(CRLF, { timeout }), TypeError);
  await assertRejectsLater(() => a.send(buf, { timeout }), TypeError);
  await assertRejectsLater(() => a.closeWrite({ timeout }), TypeError);
  assertThrows(() => b.setIdleTimeout(timeout), TypeError);
  await assertUsable(pair);
});

Deno.test("EvSocket calls reject a signal that is not an AbortSignal with a TypeError", async () => {
  await using pair = await socketPair();
  const { a, b } = pair;
  const buf = new Uint8Array(4);
  for (
    const signal of [
      {} as AbortSignal,
      "abort" as unknown as AbortSignal,
      new AbortController() as unknown as AbortSignal,
    ]
  ) {
    await assertRejectsLater(() => b.recv(buf, { signal }), TypeError);
    await assertRejectsLater(() => b.readFull(buf, { signal }), TypeError);
    await assertRejectsLater(() => b.readLine({ signal }), TypeError);
    await assertRejectsLater(() => b.readUntil(CRLF, { signal }), TypeError);
    await assertRejectsLater(() => a.send(buf, { signal }), TypeError);
    await assertRejectsLater(() => a.closeWrite({ signal }), TypeError);
  }
  await assertUsable(pair);
});

Deno.test("EvSocket calls reject a buffer that is not a Uint8Array with a TypeError", async () => {
  await using pair = await socketPair();
  const { a, b } = pair;
  for (
    const bad of [
      null,
      undefined,
      "text",
      [1, 2, 3],
      new ArrayBuffer(4),
      new Uint16Array(4),
      new DataView(new ArrayBuffer(4)),
    ]
  ) {
    const buf = bad as unknown as Uint8Array;
    await assertRejectsLater(() => b.recv(buf), TypeError);
    await assertRejectsLater(() => b.readFull(buf), TypeError);
    await assertRejectsLater(() => b.readUntil(buf), TypeError);
    await assertRejectsLater(() => a.send(buf), TypeError);
  }
  await assertUsable(pair);
});

Deno.test("EvSocket.readLine() and readUntil() reject maxLength 0 with a RangeError", async () => {
  await using pair = await socketPair();
  const { b } = pair;
  await assertRejectsLater(() => b.readLine({ maxLength: 0 }), RangeError);
  await assertRejectsLater(
    () => b.readUntil(CRLF, { maxLength: 0 }),
    RangeError,
  );
  // Shorter than the delimiter, not an integer, or empty delimiter.
  await assertRejectsLater(
    () => b.readUntil(CRLF, { maxLength: 1 }),
    RangeError,
  );
  await assertRejectsLater(() => b.readLine({ maxLength: 2.5 }), RangeError);
  await assertRejectsLater(() => b.readUntil(new Uint8Array(0)), RangeError);
  await assertRejectsLater(
    () => b.readLine({ maxLength: "9" as unknown as number }),
    TypeError,
  );
  await assertUsable(pair);
});

Deno.test("EvSocket constructor rejects a value that is not a connection with a TypeError", () => {
  for (const bad of [null, undefined, 42, {}, { read() {} }]) {
    assertThrows(
      () => new EvSocket(bad as unknown as Deno.Conn),
      TypeError,
    );
  }
});

// ------------------------------------------------------ addresses, options

Deno.test("EvSocket.setNoDelay() and setKeepAlive() work on a TCP connection", async () => {
  await using pair = await socketPair();
  pair.a.setNoDelay(true);
  pair.a.setNoDelay(false);
  pair.a.setNoDelay();
  pair.a.setKeepAlive(true);
  pair.a.setKeepAlive(false);
  pair.a.setKeepAlive();
  await assertUsable(pair);
});

Deno.test("EvSocket.localAddr and remoteAddr match the connection", async () => {
  using listener = Deno.listen({ hostname: HOST, port: 0 });
  const [client, server] = await Promise.all([
    Deno.connect({ hostname: HOST, port: listener.addr.port }),
    listener.accept(),
  ]);
  const clientLocal = client.localAddr;
  const clientRemote = client.remoteAddr;
  await using a = new EvSocket(client);
  await using b = new EvSocket(server);
  assertEquals(a.localAddr, clientLocal);
  assertEquals(a.remoteAddr, clientRemote);
  assertEquals({ ...a.remoteAddr }, {
    transport: "tcp",
    hostname: HOST,
    port: listener.addr.port,
  });
  assertEquals(b.localAddr, a.remoteAddr);
  assertEquals(b.remoteAddr, a.localAddr);
});

// -------------------------------------------------------------------- stats

Deno.test("EvLoop.stats.timeouts counts the timed-out calls of a task's sockets", async () => {
  const loop = new EvLoop();
  try {
    using listener = Deno.listen({ hostname: HOST, port: 0 });
    const accepting = listener.accept();
    const task = loop.spawn(async (thread) => {
      const socket = await thread.connect({ port: listener.addr.port }, {
        timeout: SAFETY,
      });
      const buf = new Uint8Array(8);
      assertTimeoutError(
        await assertRejects(() => socket.recv(buf, { timeout: 20 })),
      );
      assertTimeoutError(
        await assertRejects(() => socket.recv(buf, { timeout: 0 })),
      );
      assertTimeoutError(
        await assertRejects(() => socket.readLine({ timeout: 20 })),
      );
      // An abort is not a timeout.
      const reason = new Error("aborted");
      const controller = new AbortController();
      const pending = socket.readFull(buf, { signal: controller.signal });
      controller.abort(reason);
      assertStrictEquals(await assertRejects(() => pending), reason);
      return socket;
    });
    using _peer = await accepting;
    const socket = await task.result;
    // The task closed its socket when it ended.
    assert(socket.closed);
    assertEquals(loop.stats.timeouts, 3);
  } finally {
    await loop.shutdown({ grace: 0 });
  }
});
