// Copyright 2026 the @corothread/evthread authors. MIT license.
// Misuse cannot crash the process: calls nobody awaits that then time out,
// are aborted, hit close() or a peer reset leave no unhandled rejection, and
// callers that await still get the right error. Also the hooks the owning
// task uses to flush and report queued sends (socketInternals.pendingWrites,
// drained; SocketHost.unsent, debug), through a fake SocketHost.
//
// Real loopback connections throughout. Handshakes order the steps (the
// fake host's timeout counter, a wrapped connection that says when a write
// is held back); timeouts appear only as the thing under test or as safety
// nets. Deno reads a reset connection as end of stream, so the read error
// comes from a wrapped connection whose next read fails on demand.

import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertRejects,
  assertStrictEquals,
  assertStringIncludes,
} from "@std/assert";
import { type EvSendTimeoutError, EvSocket, UnsentDataError } from "../mod.ts";
import { type SocketHost, socketInternals } from "../src/_internal.ts";
import {
  assertBytes,
  encoder,
  HOST,
  payload,
  readToEnd,
  UnhandledRejectionSpy,
  within,
} from "./_helpers.ts";

/** A safety net: far longer than any step should take, even on a busy box. */
const SAFETY = 30_000;
const MiB = 1 << 20;
/** More than loopback's kernel buffers take from a peer that does not read. */
const BIG = 32 * MiB;
const CRLF = encoder.encode("\r\n");

let big: Uint8Array | undefined;
/** The 32 MiB payload, made once. */
function bigPayload(): Uint8Array {
  return big ??= payload(7, BIG);
}

/** The task side of a socket, as the tests see it. */
class FakeHost implements SocketHost {
  readonly controller = new AbortController();
  readonly signal: AbortSignal = this.controller.signal;
  debug: boolean;
  readonly reports: UnsentDataError[] = [];
  readonly released: EvSocket[] = [];
  #timeouts = 0;
  #waiters: { n: number; resolve: () => void }[] = [];

  constructor(debug = false) {
    this.debug = debug;
  }

  get timeouts(): number {
    return this.#timeouts;
  }

  countTimeout(): void {
    this.#timeouts++;
    this.#waiters = this.#waiters.filter((w) => {
      if (this.#timeouts < w.n) return true;
      w.resolve();
      return false;
    });
  }

  release(socket: EvSocket): void {
    this.released.push(socket);
  }

  unsent(error: UnsentDataError): void {
    this.reports.push(error);
  }

  /** Resolves once `n` calls in all have timed out. */
  timedOut(n: number): Promise<void> {
    if (this.#timeouts >= n) return Promise.resolve();
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#waiters.push({ n, resolve });
    return within(promise, `waiting for ${n} timeouts`, SAFETY);
  }

  /** Aborts the socket as its task would. */
  abort(socket: EvSocket, reason: unknown): void {
    this.controller.abort(reason);
    socketInternals.abort(socket, reason);
  }
}

/**
 * A loopback connection under the socket that can hold back writes (and
 * `closeWrite`) once `limit` bytes went through, and fail the next read on
 * demand. A held write waits until the connection is closed, so the socket
 * has accounted for every byte written before it: `written` is exact.
 */
class GatedConn {
  readonly #conn: Deno.TcpConn;
  readonly #limit: number;
  readonly #holdCloseWrite: boolean;
  /** Bytes that writes passed to the kernel. */
  written = 0;
  #held: ((reason: unknown) => void)[] = [];
  #reached = Promise.withResolvers<void>();
  #failRead: ((reason: unknown) => void) | undefined;
  #readStarted = Promise.withResolvers<void>();

  constructor(conn: Deno.TcpConn, limit = Infinity, holdCloseWrite = false) {
    this.#conn = conn;
    this.#limit = limit;
    this.#holdCloseWrite = holdCloseWrite;
  }

  get localAddr(): Deno.Addr {
    return this.#conn.localAddr;
  }

  get remoteAddr(): Deno.Addr {
    return this.#conn.remoteAddr;
  }

  read(p: Uint8Array): Promise<number | null> {
    this.#readStarted.resolve();
    return new Promise<number | null>((resolve, reject) => {
      this.#failRead = reject;
      // After failRead, this read stays armed until close() ends it; its
      // outcome is then ignored.
      this.#conn.read(p).then(resolve, reject).finally(() => {
        this.#failRead = undefined;
      });
    });
  }

  write(p: Uint8Array): Promise<number> {
    if (this.written >= this.#limit) return this.#hold();
    return this.#conn.write(p).then((n) => {
      this.written += n;
      return n;
    });
  }

  closeWrite(): Promise<void> {
    if (this.#holdCloseWrite) return this.#hold();
    return this.#conn.closeWrite();
  }

  close(): void {
    const reason = new Deno.errors.Interrupted("The connection was closed");
    for (const reject of this.#held.splice(0)) reject(reason);
    this.#conn.close();
  }

  /** Resolves once a write (or `closeWrite`) is held back. */
  held(): Promise<void> {
    return within(this.#reached.promise, "waiting for a held write", SAFETY);
  }

  /** Resolves once the socket has started a read of the connection. */
  readStarted(): Promise<void> {
    return within(this.#readStarted.promise, "waiting for a read", SAFETY);
  }

  /** Fails the read in flight with `error`, as a reset would. */
  failRead(error: Error): void {
    assert(this.#failRead !== undefined, "no read in flight");
    this.#failRead(error);
  }

  #hold<T>(): Promise<T> {
    this.#reached.resolve();
    return new Promise<T>((_, reject) => this.#held.push(reject));
  }
}

/** A socket (on a {@linkcode GatedConn}), the raw peer, and a fake host. */
interface Pair extends AsyncDisposable {
  socket: EvSocket;
  gate: GatedConn;
  peer: Deno.TcpConn;
  host: FakeHost;
}

async function pair(
  options: { limit?: number; holdCloseWrite?: boolean; debug?: boolean } = {},
): Promise<Pair> {
  using listener = Deno.listen({ hostname: HOST, port: 0 });
  const [client, peer] = await Promise.all([
    Deno.connect({ hostname: HOST, port: listener.addr.port }),
    listener.accept(),
  ]);
  const gate = new GatedConn(
    client,
    options.limit ?? Infinity,
    options.holdCloseWrite ?? false,
  );
  const socket = new EvSocket(gate as unknown as Deno.Conn);
  const host = new FakeHost(options.debug ?? false);
  socketInternals.attach(socket, host);
  return {
    socket,
    gate,
    peer,
    host,
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
 * Resets the connection from the peer's side: it closes while bytes it
 * received are unread (Deno has no SO_LINGER), so the kernel sends RST.
 */
async function resetFromPeer(p: Pair): Promise<void> {
  await p.socket.send(new Uint8Array([1, 2]), { timeout: SAFETY });
  const one = new Uint8Array(1);
  assertEquals(await within(p.peer.read(one), "peer reads", SAFETY), 1);
  p.peer.close();
}

/** Asserts that no unhandled rejection was reported, then removes the spy. */
async function assertNoUnhandled(spy: UnhandledRejectionSpy): Promise<void> {
  await spy.flush();
  assertEquals(spy.reasons, [], "unhandled rejections");
}

function assertTimeoutError(error: unknown): asserts error is DOMException {
  assertInstanceOf(error, DOMException);
  assertEquals(error.name, "TimeoutError");
}

/** Every read call, not awaited, with the same options. */
function readsNotAwaited(
  socket: EvSocket,
  options: { timeout?: number; signal?: AbortSignal },
): void {
  socket.recv(new Uint8Array(16), options);
  socket.readFull(new Uint8Array(16), options);
  socket.readLine(options);
  socket.readUntil(CRLF, options);
  socket.peek(4, options);
}

// ------------------------------------------------------ not awaited: reads

Deno.test("EvSocket read calls not awaited that time out leave no unhandled rejection", async () => {
  using spy = new UnhandledRejectionSpy();
  await using p = await pair();
  readsNotAwaited(p.socket, { timeout: 20 });
  const awaited = p.socket.recv(new Uint8Array(16), { timeout: 20 });
  assertTimeoutError(await assertRejects(() => awaited));
  await p.host.timedOut(6);
  await assertNoUnhandled(spy);
  // Nothing was lost, and the socket still works.
  await p.peer.write(encoder.encode("still here\n"));
  assertEquals(await p.socket.readLine({ timeout: SAFETY }), "still here");
});

Deno.test("EvSocket read calls not awaited that are aborted through their signal leave no unhandled rejection", async () => {
  using spy = new UnhandledRejectionSpy();
  await using p = await pair();
  const stop = new AbortController();
  readsNotAwaited(p.socket, { signal: stop.signal });
  const awaited = p.socket.readLine({ signal: stop.signal });
  const reason = new Error("stop");
  stop.abort(reason);
  assertStrictEquals(await assertRejects(() => awaited), reason);
  await assertNoUnhandled(spy);
});

Deno.test("EvSocket read calls not awaited that hit close() leave no unhandled rejection", async () => {
  using spy = new UnhandledRejectionSpy();
  await using p = await pair();
  readsNotAwaited(p.socket, {});
  const awaited = p.socket.peek(1);
  p.socket.close();
  await assertRejects(() => awaited, Deno.errors.BadResource);
  // Calls made after close() reject at once; not awaited, they are quiet too.
  readsNotAwaited(p.socket, { timeout: 20 });
  await assertRejects(
    () => p.socket.recv(new Uint8Array(1)),
    Deno.errors.BadResource,
  );
  await assertNoUnhandled(spy);
});

Deno.test("EvSocket read calls not awaited that a read error ends leave no unhandled rejection", async () => {
  using spy = new UnhandledRejectionSpy();
  await using p = await pair();
  readsNotAwaited(p.socket, { timeout: SAFETY });
  const awaited = p.socket.recv(new Uint8Array(16), { timeout: SAFETY });
  await p.gate.readStarted();
  const reset = new Deno.errors.ConnectionReset("Connection reset by peer");
  p.gate.failRead(reset);
  assertStrictEquals(await assertRejects(() => awaited), reset);
  // Later calls get the same error, at once.
  assertStrictEquals(
    await assertRejects(() => p.socket.readLine({ timeout: SAFETY })),
    reset,
  );
  await assertNoUnhandled(spy);
});

Deno.test("EvSocket read calls not awaited that the owning task aborts leave no unhandled rejection", async () => {
  using spy = new UnhandledRejectionSpy();
  await using p = await pair();
  readsNotAwaited(p.socket, { timeout: SAFETY });
  const awaited = p.socket.readFull(new Uint8Array(4));
  const reason = new DOMException("The task ended", "AbortError");
  p.host.abort(p.socket, reason);
  assertStrictEquals(await assertRejects(() => awaited), reason);
  readsNotAwaited(p.socket, {}); // after the abort: rejected at once
  await assertNoUnhandled(spy);
  assertEquals(p.host.reports, [], "no queued sends, nothing to report");
});

// ------------------------------------------------------ not awaited: sends

Deno.test("EvSocket sends not awaited that time out leave no unhandled rejection", async () => {
  using spy = new UnhandledRejectionSpy();
  await using p = await pair();
  p.socket.send(bigPayload(), { timeout: 20 }); // the peer does not read
  const awaited = p.socket.send(new Uint8Array(10), { timeout: 20 });
  p.socket.closeWrite({ timeout: 20 });
  const error = await assertRejects(() => awaited);
  assertTimeoutError(error);
  assertEquals((error as EvSendTimeoutError).bytesWritten, 0);
  await p.host.timedOut(3);
  await assertNoUnhandled(spy);
  assert(socketInternals.pendingWrites(p.socket), "the bytes stay queued");
});

Deno.test("EvSocket sends not awaited that are aborted through their signal leave no unhandled rejection", async () => {
  using spy = new UnhandledRejectionSpy();
  await using p = await pair();
  const stop = new AbortController();
  p.socket.send(bigPayload(), { signal: stop.signal });
  const awaited = p.socket.send(new Uint8Array(10), { signal: stop.signal });
  p.socket.closeWrite({ signal: stop.signal });
  const reason = new Error("stop");
  stop.abort(reason);
  assertStrictEquals(await assertRejects(() => awaited), reason);
  await assertNoUnhandled(spy);
});

Deno.test("EvSocket sends not awaited that hit close() leave no unhandled rejection", async () => {
  using spy = new UnhandledRejectionSpy();
  await using p = await pair();
  p.socket.send(bigPayload());
  const awaited = p.socket.send(new Uint8Array(10));
  p.socket.closeWrite();
  p.socket.close();
  await assertRejects(() => awaited, Deno.errors.BadResource);
  p.socket.send(new Uint8Array(10)); // after close(): rejected at once
  p.socket.closeWrite();
  await assertNoUnhandled(spy);
  assertEquals(p.host.reports.length, 1, "close() reported the queued bytes");
});

Deno.test("EvSocket sends not awaited that a peer reset ends leave no unhandled rejection", async () => {
  using spy = new UnhandledRejectionSpy();
  await using p = await pair();
  await resetFromPeer(p);
  // 32 MiB cannot all fit in the kernel's buffers before the reset is seen.
  p.socket.send(bigPayload());
  const awaited = p.socket.send(new Uint8Array(10), { timeout: SAFETY });
  p.socket.closeWrite();
  const error = await assertRejects(() => awaited);
  assert(
    error instanceof Deno.errors.BrokenPipe ||
      error instanceof Deno.errors.ConnectionReset,
    `expected BrokenPipe or ConnectionReset: ${error}`,
  );
  p.socket.send(new Uint8Array(10)); // after the error: rejected at once
  await assertNoUnhandled(spy);
  assertEquals(p.host.reports, [], "a write error is not reported as unsent");
  assert(!socketInternals.pendingWrites(p.socket));
});

Deno.test("EvSocket sends not awaited that the owning task aborts leave no unhandled rejection", async () => {
  using spy = new UnhandledRejectionSpy();
  await using p = await pair();
  p.socket.send(bigPayload());
  const awaited = p.socket.send(new Uint8Array(10));
  p.socket.closeWrite();
  const reason = new DOMException("The task ended", "AbortError");
  p.host.abort(p.socket, reason);
  assertStrictEquals(await assertRejects(() => awaited), reason);
  p.socket.send(new Uint8Array(10)); // after the abort: rejected at once
  await assertNoUnhandled(spy);
});

Deno.test("EvSocket.writable rejections after an abort leave no unhandled rejection", async () => {
  using spy = new UnhandledRejectionSpy();
  await using p = await pair({ limit: 0 });
  const writer = p.socket.writable.getWriter();
  const written = writer.write(encoder.encode("held back"));
  await p.gate.held(); // the stream has handed the chunk to the socket
  const reason = new DOMException("The task ended", "AbortError");
  p.host.abort(p.socket, reason);
  // The stream's own promise rejects for whoever holds it.
  assertStrictEquals(await assertRejects(() => written), reason);
  // As the task does next: close, and wait for the write in flight (the
  // report counts what the kernel took of it).
  await p.socket[Symbol.asyncDispose]();
  await assertNoUnhandled(spy);
  assertEquals(p.host.reports[0]?.method, "writable");
  assertEquals(p.host.reports[0]?.bytesUnsent, 9);
});

// ------------------------------------------------ pendingWrites / drained

Deno.test("socketInternals.pendingWrites() and drained() follow a 32 MiB send to a peer that reads late", async () => {
  await using p = await pair();
  assert(!socketInternals.pendingWrites(p.socket));
  await socketInternals.drained(p.socket); // nothing queued: at once
  const bytes = bigPayload();
  const sent = p.socket.send(bytes);
  assert(socketInternals.pendingWrites(p.socket));
  let drained = false;
  const whenDrained = socketInternals.drained(p.socket).then(() => {
    drained = true;
  });
  // The peer reads a first MiB: far from all of it, still pending.
  const first = new Uint8Array(MiB);
  let got = 0;
  while (got < first.byteLength) {
    const n = await within(p.peer.read(first.subarray(got)), "read", SAFETY);
    assert(n !== null);
    got += n;
  }
  assert(socketInternals.pendingWrites(p.socket));
  assert(!drained);
  // Then the rest: the send resolves, the queue drains.
  const reading = readToEnd(p.peer);
  await within(sent, "the send", SAFETY);
  await within(whenDrained, "drained()", SAFETY);
  assert(!socketInternals.pendingWrites(p.socket));
  await p.socket.closeWrite();
  const rest = await reading;
  assertBytes(first, bytes.subarray(0, MiB), "first MiB");
  assertBytes(rest, bytes.subarray(MiB), "the rest");
});

Deno.test("socketInternals.pendingWrites() counts a send whose caller timed out; drained() waits for its bytes", async () => {
  await using p = await pair();
  const bytes = bigPayload();
  const error = await assertRejects(() =>
    p.socket.send(bytes, { timeout: 20 })
  );
  assertTimeoutError(error);
  assert(socketInternals.pendingWrites(p.socket), "its bytes stay queued");
  const whenDrained = socketInternals.drained(p.socket);
  const reading = readToEnd(p.peer);
  await within(whenDrained, "drained()", SAFETY);
  assert(!socketInternals.pendingWrites(p.socket));
  await p.socket.closeWrite();
  assertBytes(await reading, bytes, "all 32 MiB");
});

Deno.test("socketInternals.drained() resolves, never rejects, when the socket closes or aborts with bytes queued", async () => {
  for (const end of ["close", "abort"] as const) {
    await using p = await pair();
    p.socket.send(bigPayload()).catch(() => {});
    const whenDrained = socketInternals.drained(p.socket);
    assertStrictEquals(socketInternals.drained(p.socket), whenDrained);
    if (end === "close") p.socket.close();
    else p.host.abort(p.socket, new Error("aborted"));
    await within(whenDrained, `drained() after ${end}`, SAFETY);
    assert(!socketInternals.pendingWrites(p.socket));
    await socketInternals.drained(p.socket);
  }
});

// ---------------------------------------------------------------- unsent

Deno.test("SocketHost.unsent() gets one UnsentDataError when a socket with queued bytes to a non-reading peer is aborted", async () => {
  await using p = await pair({ limit: MiB });
  const bytes = bigPayload();
  const first = p.socket.send(bytes);
  const second = p.socket.send(new Uint8Array(1000));
  await p.gate.held(); // the socket has accounted for every byte written
  const written = p.gate.written;
  assert(written >= MiB && written < BIG, `written: ${written}`);
  const reason = new DOMException("The task ended", "AbortError");
  p.host.abort(p.socket, reason);
  assertStrictEquals(await assertRejects(() => first), reason);
  assertStrictEquals(await assertRejects(() => second), reason);
  // As the task does next: close, and wait for the write in flight (the
  // report counts what the kernel took of it).
  await p.socket[Symbol.asyncDispose]();
  assertEquals(p.host.reports.length, 1);
  const error = p.host.reports[0]!;
  assertInstanceOf(error, UnsentDataError);
  assertEquals(error.name, "UnsentDataError");
  assertEquals(error.method, "send");
  assertEquals(error.sends, 2);
  assertEquals(error.bytesUnsent, BIG + 1000 - written);
  assertEquals(error.localAddr, p.gate.localAddr);
  assertEquals(error.remoteAddr, p.gate.remoteAddr);
  assertStrictEquals(error.cause, reason);
  const local = p.gate.localAddr as Deno.NetAddr;
  const remote = p.gate.remoteAddr as Deno.NetAddr;
  assertEquals(
    error.message,
    `send cut short: ${
      BIG + 1000 - written
    } bytes unsent to ${remote.hostname}:${remote.port} from ${local.hostname}:${local.port} (AbortError: The task ended)`,
  );
  // What the peer got is exactly what was written.
  assertBytes(await readToEnd(p.peer), bytes.subarray(0, written), "received");
});

Deno.test("SocketHost.unsent() reports a cut-short closeWrite on close()", async () => {
  await using p = await pair({ holdCloseWrite: true });
  await p.socket.send(encoder.encode("bye"));
  const closing = p.socket.closeWrite();
  await p.gate.held();
  await p.socket[Symbol.asyncDispose]();
  await assertRejects(() => closing, Deno.errors.BadResource);
  assertEquals(p.host.reports.length, 1);
  const error = p.host.reports[0]!;
  assertEquals(error.method, "closeWrite");
  assertEquals(error.sends, 1);
  assertEquals(error.bytesUnsent, 0);
  assertInstanceOf(error.cause, Deno.errors.BadResource);
  assertStringIncludes(error.message, "(BadResource: The socket is closed)");
});

Deno.test("SocketHost.unsent() is not called when nothing is queued, nor for a socket without a host", async () => {
  await using p = await pair();
  await p.socket.send(encoder.encode("all written"));
  p.host.abort(p.socket, new Error("aborted"));
  p.socket.close();
  assertEquals(p.host.reports, []);

  using listener = Deno.listen({ hostname: HOST, port: 0 });
  const [client, peer] = await Promise.all([
    Deno.connect({ hostname: HOST, port: listener.addr.port }),
    listener.accept(),
  ]);
  const standalone = new EvSocket(client);
  const pending = standalone.send(bigPayload());
  standalone.close(); // nobody to report to: nothing happens
  await assertRejects(() => pending, Deno.errors.BadResource);
  await standalone[Symbol.asyncDispose]();
  peer.close();
});

Deno.test("UnsentDataError's stack shows where the first cut-short send was called only in debug mode", async () => {
  for (const debug of [false, true]) {
    await using p = await pair({ limit: 0, debug });
    p.socket.send(encoder.encode("never written")).catch(() => {});
    await p.gate.held();
    p.host.abort(p.socket, new Error("aborted"));
    await p.socket[Symbol.asyncDispose]();
    const error = p.host.reports[0]!;
    const stack = error.stack ?? "";
    if (debug) {
      assertStringIncludes(stack, "socket_misuse_test.ts");
      assert(stack.startsWith(`UnsentDataError: ${error.message}\n`), stack);
      assert(!stack.includes("/src/ev_socket.ts"), stack);
    } else {
      assertEquals(stack, `UnsentDataError: ${error.message}`);
    }
  }
});
