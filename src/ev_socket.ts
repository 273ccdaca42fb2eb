// Copyright 2026 the @corothread/evthread authors. MIT license.

import { deadlines } from "./_deadline_queue.ts";
import { type SocketHost, socketInternals } from "./_internal.ts";
import {
  type AnyRead,
  CHUNK,
  ReadBuffer,
  readHooks,
  ReadRequest,
} from "./_read_buffer.ts";
import {
  armCall,
  callTimeoutError,
  closedError,
  IDLE,
  limitCall,
  limitHooks,
  type LimitMode,
  READ,
  SocketLimits,
  WRITE,
} from "./_socket_limits.ts";
import {
  socketReadable,
  socketWritable,
  streamHooks,
} from "./_socket_streams.ts";
import { tlsHooks, upgrade } from "./_socket_tls.ts";
import {
  checkBytes,
  checkDeadline,
  checkInteger,
  checkSignal,
  checkTimeout,
  timeoutError,
} from "./_validate.ts";
import {
  lessUnsent,
  writeHooks,
  WriteQueue,
  WriteRequest,
} from "./_write_queue.ts";
// Only in JSDoc links (`{@linkcode UnsentDataError}`).
// deno-lint-ignore no-unused-vars
import type { UnsentDataError } from "./errors.ts";
import type { EvProxyInfo } from "./proxy_protocol.ts";
import type {
  EvCallOptions,
  EvReadUntilOptions,
  EvStartTlsOptions,
} from "./_socket_options.ts";

export type {
  EvCallOptions,
  EvReadUntilOptions,
  EvSendTimeoutError,
  EvStartTlsOptions,
  EvTlsClientOptions,
} from "./_socket_options.ts";

/** Default limit of {@linkcode EvSocket.readLine} / `readUntil`. */
const DEFAULT_MAX_LENGTH = 65_536;

/**
 * A connection: the seed's `EVSOCKET`. It wraps a `Deno.Conn` with calls that
 * take a per-call timeout, deadline and signal, buffered reads (`readFull`, `readLine`,
 * `readUntil`), ordered writes, half-close, and Web streams.
 *
 * A task gets sockets from {@linkcode EvThread.connect},
 * {@linkcode EvThread.adopt}, or an acceptor; the task owns them and closes
 * them when it ends. A socket can also be made from a connection directly
 * with `new EvSocket(conn)`; then the caller closes it.
 *
 * **Timeouts lose nothing.** A timeout means the caller stops waiting, never
 * that bytes are lost or reordered: a timed-out read leaves its read of the
 * connection armed, and what it brings goes to the next read call; a
 * timed-out send leaves its unwritten bytes queued ahead of any later send
 * (the error's `bytesWritten` says how far it got). The socket stays usable
 * after either. The same holds when a call's `signal` aborts. Read calls
 * consume bytes only when they succeed: a `readFull` or `readLine` that times
 * out leaves every byte it had seen in the buffer.
 *
 * **Deadlines bound whole exchanges.** A timeout is per call: a peer that
 * sends one byte just before each timeout keeps a long read alive. A
 * deadline is an absolute time: the `deadline` option of a call, or
 * {@linkcode EvSocket.setDeadline} / `setReadDeadline` / `setWriteDeadline`
 * for every pending and future call (as Go's `net.Conn`). Expiry rejects with
 * the same `"TimeoutError"` and loses nothing, like a timeout.
 *
 * **Full duplex.** Calls in the same direction queue in order; a read and a
 * write can be pending at the same time.
 *
 * **A call not awaited cannot crash the process.** When a pending call
 * rejects (its timeout, deadline or signal, the socket closing, its task
 * aborting, the peer resetting the connection), or a call rejects at once
 * because the socket is closed or its task aborted, the socket has marked
 * the promise handled first: a `send` nobody awaits does not end the
 * process with an unhandled rejection, and a caller that awaits still gets
 * the error. (Bad arguments are the exception: their rejection shows the
 * mistake.) Bytes of sends that a task's abort or a `close()` cut short
 * are reported to the owning task as an {@linkcode UnsentDataError}.
 *
 * | case | result |
 * |---|---|
 * | timeout (per call or idle) or deadline | `DOMException` named `"TimeoutError"` |
 * | `signal` aborted / task aborted | the signal's `reason` |
 * | `readFull` hits EOF early | `Deno.errors.UnexpectedEof` with `bytesRead` |
 * | `readLine` / `readUntil` over `maxLength` | {@linkcode LimitExceededError}; bytes stay buffered |
 * | use after `close()` | `Deno.errors.BadResource` |
 * | bad option | `TypeError` / `RangeError` |
 *
 * @example Echo one message
 * ```ts
 * import { EvSocket } from "@corothread/evthread";
 * import { assertEquals } from "@std/assert";
 *
 * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * await using server = new EvSocket(await listener.accept());
 * await using peer = new EvSocket(client);
 *
 * await peer.send(new TextEncoder().encode("hello\n"));
 * const line = await server.readLine({ timeout: 1000 });
 * assertEquals(line, "hello");
 * ```
 */
export class EvSocket implements AsyncDisposable {
  #conn: Deno.Conn;
  #host: SocketHost | undefined;
  /** Cut-short sends are not reported (see `socketInternals.setQuiet`). */
  #quiet = false;
  #closed = false;

  // Read side: the buffer and the read calls waiting on it, and the read
  // of the connection in flight (at most one).
  #rb: ReadBuffer = new ReadBuffer();
  #reading: Promise<void> | undefined;

  // Write side: the queue, and the write of the connection in flight.
  #writes: WriteQueue = new WriteQueue();
  #writing: Promise<void> | undefined;

  /** Idle timeout and socket-wide deadlines, once either is set. */
  #limits: SocketLimits | undefined;

  #readable: ReadableStream<Uint8Array> | undefined;
  #writable: WritableStream<Uint8Array> | undefined;
  #proxy: EvProxyInfo | undefined;
  /** Set while `startTls` swaps the connection: no read or write starts. */
  #upgrading = false;
  /** Aborted by `close()` during `startTls`. */
  #upgradeStop: AbortController | undefined;
  #tls: Deno.TlsHandshakeInfo | undefined;

  static {
    readHooks.expire = (socket, req) => {
      // Its time limit passed: it rejects, and the bytes stay.
      socket.#countTimeout();
      socket.#dropReader(req, callTimeoutError(req, "read"));
    };
    readHooks.drop = (socket, req, reason) => socket.#dropReader(req, reason);
    writeHooks.expire = (socket, req) => {
      // Its time limit passed: it rejects, and its bytes stay queued.
      socket.#countTimeout();
      socket.#writes.detach(req, callTimeoutError(req, "send"));
    };
    writeHooks.detach = (socket, req, reason) =>
      socket.#writes.detach(req, reason);
    limitHooks.waiting = (socket, mode) =>
      (mode !== WRITE && socket.#rb.readers.length > 0) ||
      (mode !== READ && socket.#writes.waiting);
    limitHooks.expire = (socket, mode, error) => {
      // Reads get `error`, sends a copy each (with its own bytesWritten).
      if (mode !== WRITE) socket.#rb.clear(error);
      if (mode !== READ) socket.#writes.expire(error);
    };
    limitHooks.countTimeout = (socket) => socket.#countTimeout();
    socketInternals.attach = (socket, host) => {
      socket.#host = host;
    };
    socketInternals.abort = (socket, reason) => socket.#rejectAll(reason);
    socketInternals.setQuiet = (socket, quiet) => {
      socket.#quiet = quiet;
    };
    socketInternals.settled = (socket) => socket.#settled();
    socketInternals.sendOwned = (socket, bytes, options) =>
      socket.#write(new WriteRequest(socket, bytes, true, "send"), options);
    socketInternals.watchEnd = (socket, signal) => socket.#watchEnd(signal);
    socketInternals.setProxy = (socket, proxy) => {
      socket.#proxy = proxy;
    };
    socketInternals.setTls = (socket, info) => {
      socket.#tls = info;
    };
    socketInternals.readWaiting = (socket) => socket.#rb.readers.length > 0;
    socketInternals.interruptReads = (socket, reason) =>
      socket.#rb.clear(reason);
    socketInternals.takeBuffered = (socket, buf) => {
      const rb = socket.#rb;
      if (
        rb.length < buf.byteLength || rb.readers.length > 0 ||
        socket.#readable !== undefined || socket.#closed ||
        socket.#host?.signal.aborted === true
      ) {
        return false;
      }
      rb.take(buf);
      // As after a read: all taken and none in flight, the pooled buffer
      // goes back (an idle WebSocket then holds only the small one).
      if (socket.#reading === undefined) rb.release();
      return true;
    };
    socketInternals.readTextUntil = (socket, a, b, options) =>
      socket.#read(ReadRequest.text(socket, a, b, options.maxLength), options);
    streamHooks.pull = (socket) =>
      socket.#read(ReadRequest.chunk(socket), undefined);
    streamHooks.cancel = (socket, reason) => {
      for (const req of [...socket.#rb.readers]) {
        if (req.kind === CHUNK) socket.#dropReader(req, reason);
      }
    };
    streamHooks.timedOut = (socket, stream) => {
      if (socket.#readable === stream) socket.#readable = undefined;
    };
    streamHooks.write = (socket, chunk) =>
      socket.#write(
        new WriteRequest(socket, chunk, false, "writable"),
        undefined,
      );
    tlsHooks.state = (socket) => ({
      conn: socket.#conn,
      closed: socket.#closed,
      secure: socket.#tls !== undefined || socket.#upgrading,
      busy: socket.#rb.readers.length > 0 || socket.#reading !== undefined ||
        socket.#writes.pending || socket.#writing !== undefined ||
        socket.#readable?.locked === true || socket.#writable?.locked === true,
      buffered: socket.#rb.length,
      ending: socket.#rb.eof || socket.#rb.error !== undefined ||
        socket.#writes.ended,
      hostSignal: socket.#host?.signal,
    });
    tlsHooks.hold = (socket, stop) => {
      socket.#upgrading = stop !== undefined;
      socket.#upgradeStop = stop;
    };
    tlsHooks.swap = (socket, tls) => {
      if (socket.#closed) return false;
      socket.#conn = tls;
      return true;
    };
    tlsHooks.resume = (socket, info) => {
      socket.#tls = info;
      socket.#upgrading = false;
      socket.#upgradeStop = undefined;
      if (socket.#closed) return false;
      if (socket.#rb.readers.length > 0 && socket.#reading === undefined) {
        socket.#fill();
      }
      if (socket.#writes.pending && socket.#writing === undefined) {
        socket.#startWrite();
      }
      return true;
    };
    tlsHooks.countTimeout = (socket) => socket.#countTimeout();
    socketInternals.pendingWrites = (socket) => socket.#writes.pending;
    socketInternals.drained = (socket) => socket.#writes.drained();
  }

  /**
   * Wraps a connection. The socket takes it over: use the connection only
   * through the socket from now on.
   *
   * @param conn The connection to wrap.
   */
  constructor(conn: Deno.Conn) {
    if (
      conn === null || typeof conn !== "object" ||
      typeof (conn as Deno.Conn).read !== "function" ||
      typeof (conn as Deno.Conn).write !== "function"
    ) {
      throw new TypeError(
        `'conn' must be a Deno.Conn: received ${
          Object.prototype.toString.call(conn)
        }`,
      );
    }
    this.#conn = conn;
  }

  /**
   * The local address of the connection; behind a proxy that sent a PROXY
   * protocol header, the address the client connected to.
   */
  get localAddr(): Deno.Addr {
    const proxied = this.#proxy?.localAddr;
    return proxied?.transport === "tcp" ? proxied : this.#conn.localAddr;
  }

  /**
   * The remote address of the connection; behind a proxy that sent a PROXY
   * protocol header, the client's address (the proxy's is in
   * {@linkcode EvSocket.proxy}).
   */
  get remoteAddr(): Deno.Addr {
    const proxied = this.#proxy?.remoteAddr;
    return proxied?.transport === "tcp" ? proxied : this.#conn.remoteAddr;
  }

  /**
   * The PROXY protocol header the connection started with, when its
   * acceptor reads them (the `proxyProtocol` option) and it had one;
   * `proxyAddr` is the proxy's own address.
   */
  get proxy(): EvProxyInfo | undefined {
    return this.#proxy;
  }

  /** Whether {@linkcode EvSocket.close} was called (or the owning task ended). */
  get closed(): boolean {
    return this.#closed;
  }

  /** Bytes received and buffered that no read call has taken yet. */
  get buffered(): number {
    return this.#rb.length;
  }

  // ---------------------------------------------------------------- reads

  /**
   * Reads what is available, at most `buf.byteLength` bytes, waiting for at
   * least one byte (the seed's `EVSOCKET_recv`).
   *
   * @example Reading with a timeout
   * ```ts
   * import { EvSocket } from "@corothread/evthread";
   * import { assertEquals, assertRejects } from "@std/assert";
   *
   * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
   * await using a = new EvSocket(await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }));
   * await using b = new EvSocket(await listener.accept());
   * const buf = new Uint8Array(16);
   * const error = await assertRejects(() => b.recv(buf, { timeout: 10 }));
   * assertEquals((error as DOMException).name, "TimeoutError");
   *
   * await a.send(new Uint8Array([1, 2, 3]));
   * assertEquals(await b.recv(buf), 3); // nothing was lost
   * assertEquals(buf.subarray(0, 3), new Uint8Array([1, 2, 3]));
   * ```
   *
   * @param buf Where to put the bytes.
   * @param options Timeout and signal.
   * @returns The number of bytes read, or `null` at end of stream.
   */
  recv(buf: Uint8Array, options?: EvCallOptions): Promise<number | null> {
    try {
      checkBytes(buf, "buf");
      if (options !== undefined) {
        checkTimeout(options.timeout);
        checkSignal(options.signal);
      }
    } catch (error) {
      return Promise.reject(error);
    }
    // Fast path: bytes already buffered and nobody queued ahead (nor any
    // reason to reject: #admit checks those in the same order).
    const rb = this.#rb;
    const have = rb.end - rb.start;
    if (
      have > 0 && rb.readers.length === 0 && !this.#closed &&
      !this.#readable?.locked &&
      (this.#limits === undefined || this.#limits.clear(READ)) &&
      options?.deadline === undefined &&
      !this.#host?.signal.aborted && !options?.signal?.aborted
    ) {
      const n = have < buf.byteLength ? have : buf.byteLength;
      buf.set(rb.bytes.subarray(rb.start, rb.start + n));
      rb.start += n;
      return Promise.resolve(n);
    }
    return this.#read(ReadRequest.recv(this, buf), options);
  }

  /**
   * Reads exactly `buf.byteLength` bytes (the C library's
   * `EVSOCKET_recv_all`). Bytes are taken only when all have arrived, so a
   * timeout leaves them buffered.
   *
   * @example Reading a fixed-size header
   * ```ts
   * import { EvSocket } from "@corothread/evthread";
   * import { assertEquals } from "@std/assert";
   *
   * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
   * await using a = new EvSocket(await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }));
   * await using b = new EvSocket(await listener.accept());
   * await a.send(new Uint8Array([0, 5]));
   * await a.send(new Uint8Array([9, 9, 9, 9, 9]));
   * const header = await b.readFull(new Uint8Array(2));
   * assertEquals(header, new Uint8Array([0, 5]));
   * ```
   *
   * @param buf The buffer to fill.
   * @param options Timeout and signal.
   * @returns `buf`, filled; or `null` if the stream ended before any byte.
   * @throws {Deno.errors.UnexpectedEof} if the stream ends part way; the
   * partial bytes are in `buf` and the error's `bytesRead` counts them.
   */
  readFull(
    buf: Uint8Array,
    options?: EvCallOptions,
  ): Promise<Uint8Array | null> {
    try {
      checkBytes(buf, "buf");
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#read(ReadRequest.full(this, buf), options);
  }

  /**
   * Reads up to and including `delimiter`.
   *
   * @example Reading a CRLF-terminated record
   * ```ts
   * import { EvSocket } from "@corothread/evthread";
   * import { assertEquals } from "@std/assert";
   *
   * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
   * await using a = new EvSocket(await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }));
   * await using b = new EvSocket(await listener.accept());
   * await a.send(new TextEncoder().encode("GET /\r\nrest"));
   * const crlf = new TextEncoder().encode("\r\n");
   * const record = await b.readUntil(crlf, { maxLength: 1024 });
   * assertEquals(new TextDecoder().decode(record!), "GET /\r\n");
   * assertEquals(b.buffered, 4);
   * ```
   *
   * @param delimiter The bytes that end a record (not empty).
   * @param options Timeout, signal and `maxLength`.
   * @returns The bytes including the delimiter, or `null` at end of stream
   * with nothing buffered.
   * @throws {LimitExceededError} when no delimiter ends within `maxLength`.
   * @throws {Deno.errors.UnexpectedEof} when the stream ends after a partial
   * record; those bytes stay buffered (`recv` gets them).
   */
  readUntil(
    delimiter: Uint8Array,
    options?: EvReadUntilOptions,
  ): Promise<Uint8Array | null> {
    let max: number;
    try {
      checkBytes(delimiter, "delimiter");
      if (delimiter.byteLength === 0) {
        throw new RangeError("'delimiter' must not be empty");
      }
      max = checkInteger(
        options?.maxLength ?? DEFAULT_MAX_LENGTH,
        "maxLength",
        delimiter.byteLength,
      );
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#read(
      ReadRequest.until(this, delimiter, undefined, max),
      options,
    );
  }

  /**
   * Reads a line of UTF-8 text ending in `\n` or `\r\n`, and returns it
   * without the line ending. A last line without an ending is returned at
   * end of stream.
   *
   * @example Line protocol
   * ```ts
   * import { EvSocket } from "@corothread/evthread";
   * import { assertEquals } from "@std/assert";
   *
   * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
   * await using a = new EvSocket(await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }));
   * await using b = new EvSocket(await listener.accept());
   * await a.send(new TextEncoder().encode("one\r\ntwo\nthree"));
   * await a.closeWrite();
   * assertEquals(await b.readLine(), "one");
   * assertEquals(await b.readLine(), "two");
   * assertEquals(await b.readLine(), "three");
   * assertEquals(await b.readLine(), null);
   * ```
   *
   * @param options Timeout, signal and `maxLength` (line ending included).
   * @returns The line, or `null` at end of stream.
   * @throws {LimitExceededError} when a line is longer than `maxLength`;
   * its bytes stay buffered.
   */
  readLine(options?: EvReadUntilOptions): Promise<string | null> {
    let max: number;
    try {
      max = checkInteger(
        options?.maxLength ?? DEFAULT_MAX_LENGTH,
        "maxLength",
        1,
      );
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#read(ReadRequest.line(this, max), options);
  }

  /**
   * Waits until `n` bytes are buffered and returns a copy of them without
   * taking them: the next read call still gets them. Useful to wait for a
   * peer to speak, or to sniff a protocol.
   *
   * @example Waiting for the first byte
   * ```ts
   * import { EvSocket } from "@corothread/evthread";
   * import { assertEquals } from "@std/assert";
   *
   * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
   * await using a = new EvSocket(
   *   await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
   * );
   * await using b = new EvSocket(await listener.accept());
   * await a.send(new TextEncoder().encode("GET"));
   * assertEquals(await b.peek(1, { timeout: 1000 }), new Uint8Array([0x47]));
   * assertEquals(b.buffered, 3);
   * ```
   *
   * @param n How many bytes to wait for (at least 1).
   * @param options Timeout and signal.
   * @returns The first `n` buffered bytes (fewer if the stream ends first),
   * or `null` at end of stream with nothing buffered.
   */
  peek(n: number, options?: EvCallOptions): Promise<Uint8Array | null> {
    let count: number;
    try {
      count = checkInteger(n, "n", 1);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#read(ReadRequest.peek(this, count), options);
  }

  /**
   * Starts a read call: settles it from the buffer if it can, else queues
   * it and reads the connection. Returns the call's promise.
   */
  #read<R extends AnyRead>(
    req: R,
    options: EvCallOptions | undefined,
  ): R["promise"] {
    let timeout: number | undefined;
    let deadline: number | undefined;
    try {
      timeout = checkTimeout(options?.timeout);
      req.signal = checkSignal(options?.signal);
      deadline = checkDeadline(options?.deadline);
      if (req.kind !== CHUNK && this.#readable !== undefined) {
        if (this.#readable.locked) {
          throw new TypeError(
            "Cannot read from the socket: its readable stream is locked by a reader",
          );
        }
        this.#rb.withdrawChunks();
      }
    } catch (error) {
      // Bad arguments: not marked handled, so that a call not awaited
      // still shows the mistake.
      req.reject(error);
      return req.promise;
    }
    if (!this.#admit(req, READ, timeout, deadline)) return req.promise;
    const rb = this.#rb;
    if (rb.readers.length === 0 && rb.complete(req)) return req.promise;
    if (req.ms === 0) {
      // Read what the kernel holds into the buffer for the next call, so
      // that polling with timeout 0 sees bytes once they have arrived.
      if (rb.readers.length === 0 && this.#reading === undefined) {
        this.#readAhead();
      }
      this.#countTimeout();
      req.fail(timeoutError("Nothing buffered to read (timeout 0)"));
      return req.promise;
    }
    // The request is its own deadline entry: see readHooks.expire.
    armCall(req);
    rb.push(req);
    if (this.#reading === undefined) this.#fill();
    return req.promise;
  }

  /**
   * Whether a new call (its `signal` set) may go ahead; if not, rejects it
   * at once and returns false. It may not when the socket is closed, its
   * write side is done (for sends), its task or the call's signal aborted,
   * or a time limit has passed (see `limitCall`, which sets the call's).
   */
  #admit(
    req: AnyRead | WriteRequest,
    mode: typeof READ | typeof WRITE,
    timeout: number | undefined,
    deadline: number | undefined,
  ): boolean {
    let reason: unknown;
    const hostSignal = this.#host?.signal;
    if (this.#closed) {
      reason = closedError();
    } else if (mode === WRITE && this.#writes.error !== undefined) {
      reason = this.#writes.error;
    } else if (mode === WRITE && this.#writes.ended) {
      reason = new Deno.errors.BrokenPipe("The socket's write side is closed");
    } else if (hostSignal?.aborted) {
      reason = hostSignal.reason;
    } else if (req.signal?.aborted) {
      reason = req.signal.reason;
    } else {
      return limitCall(this, this.#limits, req, mode, timeout, deadline);
    }
    req.fail(reason);
    return false;
  }

  /** Settles queued reads in order while the buffer allows; reads more. */
  #serveReads(): void {
    const rb = this.#rb;
    rb.serve();
    if (this.#reading === undefined) {
      if (rb.readers.length > 0) this.#fill();
      else if (rb.watchingEnd) this.#readAhead();
    }
  }

  /**
   * With nobody reading, reads ahead into the buffer (up to 64 KiB) so
   * that the end of the stream is seen: for `socketInternals.watchEnd`.
   */
  #readAhead(): void {
    if (this.#upgrading) return;
    const rb = this.#rb;
    if (rb.eof || rb.error !== undefined || this.#closed) return;
    const view = rb.reserveAhead();
    if (view !== undefined) this.#startRead(view);
  }

  /** Starts one read of the connection into the buffer, for the first call. */
  #fill(): void {
    if (this.#upgrading) return;
    const rb = this.#rb;
    if (rb.eof || rb.error !== undefined || this.#closed) return;
    this.#startRead(rb.reserve(rb.readers[0]!));
  }

  /** Starts a read of the connection into `view` (part of the buffer). */
  #startRead(view: Uint8Array): void {
    this.#reading = this.#conn.read(view).then(this.#onRead, this.#onReadError);
  }

  // The handlers of a read of the connection are made once per socket, not
  // per read: a socket nearly always has a read in flight, so they are
  // needed anyway, and the read path then allocates no closure. The other
  // handlers are methods, wrapped in a closure only when they are used.
  #onRead = (n: number | null): void => {
    this.#reading = undefined;
    if (this.#closed) return;
    if (n === null) {
      this.#rb.eof = true;
    } else {
      this.#rb.filled(n);
      this.#limits?.active();
    }
    this.#serveReads();
    // All taken and no read in flight: the pooled buffer goes back.
    if (this.#reading === undefined) this.#rb.release();
  };

  #onReadError = (error: unknown): void => {
    this.#reading = undefined;
    if (this.#closed) return;
    this.#rb.error = error;
    this.#serveReads();
  };

  /** A caller stopped waiting: remove its read, keep the bytes. */
  #dropReader(req: AnyRead, reason: unknown): void {
    // A read behind it may be satisfied by what the dropped one waited on.
    if (this.#rb.drop(req, reason)) this.#serveReads();
  }

  // --------------------------------------------------------------- writes

  /**
   * Writes all of `bytes` (the seed's `EVSOCKET_send`). Sends queue in call
   * order. Do not change `bytes` until the call settles; a send that can be
   * abandoned (it has a timeout or a signal, or the socket an idle timeout)
   * writes copies, so its buffer is free again as soon as it settles, even
   * by rejecting.
   *
   * On timeout (or abort through `signal`) the call rejects with a
   * `DOMException` named `"TimeoutError"` (or the signal's reason) carrying
   * `bytesWritten`; the bytes not yet written are copied and stay queued
   * ahead of any later send. A timed-out send usually means the peer is not
   * reading: close the socket, or wait on the next send.
   *
   * @example Sending with a timeout
   * ```ts
   * import { EvSocket } from "@corothread/evthread";
   * import { assertEquals } from "@std/assert";
   *
   * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
   * await using a = new EvSocket(await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }));
   * await using b = new EvSocket(await listener.accept());
   * await a.send(new TextEncoder().encode("ping"), { timeout: 1000 });
   * const buf = new Uint8Array(4);
   * assertEquals(await b.readFull(buf), new TextEncoder().encode("ping"));
   * ```
   *
   * @param bytes The bytes to write.
   * @param options Timeout and signal.
   */
  send(bytes: Uint8Array, options?: EvCallOptions): Promise<void> {
    try {
      checkBytes(bytes, "bytes");
      if (this.#writable?.locked) {
        throw new TypeError(
          "Cannot send on the socket: its writable stream is locked by a writer",
        );
      }
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#write(new WriteRequest(this, bytes, false, "send"), options);
  }

  /**
   * Half-closes the connection: sends end of stream once every queued send
   * is written. The peer's reads then return `null`; this side can still
   * read. Later sends reject with `Deno.errors.BrokenPipe`.
   *
   * @example Telling the peer we are done
   * ```ts
   * import { EvSocket } from "@corothread/evthread";
   * import { assertEquals } from "@std/assert";
   *
   * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
   * await using a = new EvSocket(await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }));
   * await using b = new EvSocket(await listener.accept());
   * await a.send(new Uint8Array([1]));
   * await a.closeWrite();
   * assertEquals(await b.readFull(new Uint8Array(1)), new Uint8Array([1]));
   * assertEquals(await b.recv(new Uint8Array(1)), null);
   * ```
   *
   * @param options Timeout and signal for waiting on the queued sends.
   */
  closeWrite(options?: EvCallOptions): Promise<void> {
    return this.#write(
      new WriteRequest(this, undefined, false, "closeWrite"),
      options,
    );
  }

  /** Queues a send or `closeWrite` and starts writing. Returns its promise. */
  #write(req: WriteRequest, options: EvCallOptions | undefined): Promise<void> {
    let timeout: number | undefined;
    let deadline: number | undefined;
    try {
      timeout = checkTimeout(options?.timeout);
      req.signal = checkSignal(options?.signal);
      deadline = checkDeadline(options?.deadline);
    } catch (error) {
      req.reject(error); // not marked handled, as in #read
      return req.promise;
    }
    if (!this.#admit(req, WRITE, timeout, deadline)) return req.promise;
    const writes = this.#writes;
    if (req.bytes === undefined) writes.ended = true;
    else if (req.bytes.byteLength === 0) return Promise.resolve();
    // Where the caller is, for an UnsentDataError: costs microseconds.
    if (this.#host?.debug === true) req.stack = new Error().stack;
    writes.push(req);
    // The request is its own deadline entry: see writeHooks.expire.
    armCall(req);
    if (this.#writing === undefined && !this.#upgrading) this.#startWrite();
    return req.promise;
  }

  /** Starts the write (or half-close) at the head of the queue. */
  #startWrite(): void {
    const writes = this.#writes;
    const req = writes.head!;
    const op = req.bytes === undefined
      ? this.#conn.closeWrite().then(() => 0)
      : this.#conn.write(writes.chunk(req));
    this.#writing = op.then(
      (n) => this.#onWritten(req, n),
      (error) => this.#onWriteError(error),
    );
  }

  #onWritten(req: WriteRequest, n: number): void {
    this.#writing = undefined;
    if (this.#closed) {
      // Dropped while in flight: what the kernel took still counts as
      // written, for the report of what was cut short.
      req.offset += n;
      return;
    }
    const writes = this.#writes;
    // Otherwise it was dropped while in flight (its task was aborted).
    if (writes.head === req) {
      if (req.bytes !== undefined) {
        const more = writes.advance(req, n);
        this.#limits?.active();
        if (more) {
          this.#startWrite();
          return;
        }
      }
      writes.shift();
    }
    if (writes.head !== undefined) this.#startWrite();
    else writes.idle();
  }

  #onWriteError(error: unknown): void {
    this.#writing = undefined;
    if (this.#closed) return;
    // The peer's doing (a reset): the callers get the error, and no
    // UnsentDataError is reported.
    this.#writes.error = error;
    this.#writes.clear(error);
  }

  // ------------------------------------------------------------------ TLS

  /**
   * Whether the connection is TLS (accepted by a TLS acceptor, connected
   * with `tls`, or upgraded by {@linkcode EvSocket.startTls}), with what the
   * handshake agreed: `alpnProtocol` is `null` when none was.
   */
  get tls(): Deno.TlsHandshakeInfo | undefined {
    return this.#tls;
  }

  /**
   * Upgrades a plain TCP client connection to TLS in place (STARTTLS, as in
   * SMTP, IMAP or PostgreSQL): after it resolves, every call reads and
   * writes through TLS, on the same socket object.
   *
   * `Deno.startTls` needs the connection idle, and the protocol needs the
   * plaintext phase to be over, so the call first checks, and rejects at
   * once when they do not hold:
   * - no read or send is waiting, and no read of the connection is in
   *   flight (one that a timed-out or aborted read call left armed counts):
   *   `Deno.errors.Busy`. The socket starts reads only for calls that wait
   *   for bytes, so after the server's "go ahead" reply has been read in
   *   full, none is in flight;
   * - no byte is buffered beyond what was read: `Deno.errors.InvalidData`.
   *   Bytes that came before the handshake were not protected by it
   *   (the STARTTLS command injection of CVE-2011-0411); they are dropped
   *   with the connection.
   *
   * Then it runs the handshake within `timeout` / `deadline` / `signal`. If
   * the handshake fails or runs out of time, the socket is closed (the
   * connection cannot go back to plaintext) and the call rejects.
   *
   * @example Upgrading after a plaintext greeting
   * ```ts ignore
   * const socket = await thread.connect({ hostname: "mail.example.com", port: 587 });
   * await socket.readLine({ timeout: 5000 }); // 220 greeting
   * await socket.send(new TextEncoder().encode("STARTTLS\r\n"));
   * await socket.readLine({ timeout: 5000 }); // 220 go ahead
   * await socket.startTls({ timeout: 5000 });
   * ```
   *
   * @param options Certificate checks, ALPN, and a timeout, deadline and
   * signal for the handshake.
   * @throws {TypeError} if the connection is not plain TCP.
   * @throws {Deno.errors.Busy} if a call or a read is in flight.
   * @throws {Deno.errors.InvalidData} if bytes are buffered.
   * @throws {DOMException} named `"TimeoutError"` when the handshake takes
   * too long.
   */
  startTls(options?: EvStartTlsOptions): Promise<void> {
    const upgrading = upgrade(this, options);
    // Like every call here, one nobody awaits cannot crash the process.
    upgrading.catch(() => {});
    return upgrading;
  }

  // ----------------------------------------------------- idle and closing

  /**
   * Sets an idle timeout (the C library's `EVSOCKET_set_idle_timeout`): when
   * no bytes move in either direction for `ms` milliseconds, the pending
   * calls, or if none the next call, reject with a `"TimeoutError"`. Bytes
   * are never lost. `undefined` or `Infinity` turns it off. It bounds the
   * calls already waiting when it is set, too.
   *
   * @example Dropping silent peers
   * ```ts
   * import { EvSocket } from "@corothread/evthread";
   * import { assertEquals, assertRejects } from "@std/assert";
   *
   * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
   * await using a = new EvSocket(await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }));
   * await using b = new EvSocket(await listener.accept());
   * b.setIdleTimeout(20);
   * const error = await assertRejects(() => b.recv(new Uint8Array(8)));
   * assertEquals((error as DOMException).name, "TimeoutError");
   * ```
   *
   * @param ms Milliseconds of silence allowed.
   */
  setIdleTimeout(ms: number | undefined): void {
    this.#arm(IDLE, checkTimeout(ms, "ms") ?? Infinity);
  }

  /**
   * Sets the socket's read and write deadlines (Go's `SetDeadline`): every
   * read and send, pending or future, must be done by `deadline`, given in
   * epoch milliseconds (as `Date.now()` gives) or as a `Date`. At the
   * deadline the pending calls reject with a `DOMException` named
   * `"TimeoutError"`, and so does every later call (at once, even with bytes
   * buffered) until the deadline is moved: a deadline moved into the future
   * makes the socket usable again, and `undefined` removes it. As with
   * timeouts, no bytes are lost: a read takes nothing, and a send's unwritten
   * bytes stay queued. A call's own `timeout` and `deadline` still apply; the
   * earliest limit wins. A waiting `readable` stream errors with the
   * `TimeoutError`; `readable` then gives a new stream.
   *
   * @example Bounding a whole exchange
   * ```ts
   * import { EvSocket } from "@corothread/evthread";
   * import { assertEquals, assertRejects } from "@std/assert";
   *
   * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
   * await using a = new EvSocket(await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }));
   * await using b = new EvSocket(await listener.accept());
   * b.setDeadline(Date.now() + 20);
   * const error = await assertRejects(() => b.readLine());
   * assertEquals((error as DOMException).name, "TimeoutError");
   *
   * b.setDeadline(undefined); // usable again
   * await a.send(new TextEncoder().encode("hi\n"));
   * assertEquals(await b.readLine(), "hi");
   * ```
   *
   * @param deadline When, or `undefined` for no deadline.
   * @throws {TypeError} if it is neither a number, a `Date` nor `undefined`.
   * @throws {RangeError} if it is NaN or an invalid `Date`.
   */
  setDeadline(deadline: number | Date | undefined): void {
    const at = checkDeadline(deadline) ?? Infinity;
    this.#arm(READ, at);
    this.#arm(WRITE, at);
  }

  /**
   * Sets the read deadline alone: {@linkcode EvSocket.setDeadline} for
   * `recv`, `readFull`, `readLine`, `readUntil`, `peek` and the `readable`
   * stream.
   *
   * @example A reply must arrive within 50 ms of the request
   * ```ts
   * import { EvSocket } from "@corothread/evthread";
   * import { assertEquals, assertRejects } from "@std/assert";
   *
   * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
   * await using a = new EvSocket(await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }));
   * await using _b = new EvSocket(await listener.accept());
   * await a.send(new TextEncoder().encode("request\n"));
   * a.setReadDeadline(new Date(Date.now() + 50));
   * const error = await assertRejects(() => a.readLine());
   * assertEquals((error as DOMException).name, "TimeoutError");
   * ```
   *
   * @param deadline When, or `undefined` for no deadline.
   * @throws {TypeError} if it is neither a number, a `Date` nor `undefined`.
   * @throws {RangeError} if it is NaN or an invalid `Date`.
   */
  setReadDeadline(deadline: number | Date | undefined): void {
    this.#arm(READ, checkDeadline(deadline) ?? Infinity);
  }

  /**
   * Sets the write deadline alone: {@linkcode EvSocket.setDeadline} for
   * `send`, `closeWrite` and the `writable` stream. A send that times out
   * this way says in `bytesWritten` how much of it was written; the rest
   * stays queued.
   *
   * @example Giving up on a peer that does not read
   * ```ts
   * import { EvSocket } from "@corothread/evthread";
   * import { assertEquals, assertRejects } from "@std/assert";
   *
   * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
   * await using a = new EvSocket(await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }));
   * await using _b = new EvSocket(await listener.accept()); // never reads
   * a.setWriteDeadline(Date.now() + 50);
   * const error = await assertRejects(() => a.send(new Uint8Array(64 << 20)));
   * assertEquals((error as DOMException).name, "TimeoutError");
   * ```
   *
   * @param deadline When, or `undefined` for no deadline.
   * @throws {TypeError} if it is neither a number, a `Date` nor `undefined`.
   * @throws {RangeError} if it is NaN or an invalid `Date`.
   */
  setWriteDeadline(deadline: number | Date | undefined): void {
    this.#arm(WRITE, checkDeadline(deadline) ?? Infinity);
  }

  /** Sets a socket-wide limit (see SocketLimits.arm); Infinity removes it. */
  #arm(mode: LimitMode, value: number): void {
    if (value === Infinity && this.#limits === undefined) return; // none set
    (this.#limits ??= new SocketLimits(this)).arm(mode, value);
  }

  #countTimeout(): void {
    this.#host?.countTimeout();
  }

  /**
   * Rejects every pending call with `reason` and drops the queued writes:
   * the task that owns the socket was aborted, or the socket was closed.
   * Reports what that cut short to the host, if it has one: once a write
   * in flight has settled, since the kernel may still take (some of) it.
   */
  #rejectAll(reason: unknown): void {
    this.#rb.clear(reason);
    const writes = this.#writes;
    const host = this.#host;
    if (host === undefined || this.#quiet || !writes.pending) {
      writes.clear(reason);
      return;
    }
    const unsent = writes.unsent(reason, this.localAddr, this.remoteAddr);
    const inFlight = this.#writing === undefined ? undefined : writes.head;
    const offset = inFlight?.offset ?? 0;
    writes.clear(reason);
    if (unsent === undefined) return;
    if (inFlight === undefined) {
      host.unsent(unsent);
      return;
    }
    this.#writing!.then(() => {
      const length = inFlight.bytes?.byteLength ?? 0;
      const left = lessUnsent(
        unsent,
        inFlight.offset - offset,
        inFlight.offset >= length,
      );
      if (left !== undefined) host.unsent(left);
    });
  }

  #watchEnd(signal: AbortSignal): Promise<void> {
    const rb = this.#rb;
    const ended = rb.watchEnd(signal, this.#closed);
    if (
      rb.watchingEnd && this.#reading === undefined && rb.readers.length === 0
    ) {
      this.#readAhead();
    }
    return ended;
  }

  #settled(): Promise<void> {
    const reading = this.#reading;
    const writing = this.#writing;
    if (reading === undefined && writing === undefined) {
      return Promise.resolve();
    }
    return Promise.all([reading, writing]).then(() => {});
  }

  /**
   * Closes the connection at once. Pending calls reject with
   * `Deno.errors.BadResource`; queued bytes not yet written are dropped (use
   * {@linkcode EvSocket.closeWrite} first to flush them), and a socket that
   * a task owns reports them to it as an {@linkcode UnsentDataError}.
   * Closing twice is a no-op.
   *
   * @example Closing
   * ```ts
   * import { EvSocket } from "@corothread/evthread";
   * import { assert, assertRejects } from "@std/assert";
   *
   * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
   * const a = new EvSocket(await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }));
   * await using _b = new EvSocket(await listener.accept());
   * a.close();
   * assert(a.closed);
   * await assertRejects(() => a.send(new Uint8Array(1)), Deno.errors.BadResource);
   * ```
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#limits?.cancel();
    this.#rejectAll(closedError());
    this.#upgradeStop?.abort(closedError());
    deadlines.settle();
    try {
      this.#conn.close();
    } catch {
      // Already closed underneath us: nothing left to release.
    }
    this.#host?.release(this);
  }

  /**
   * Closes the socket and waits until its in-flight reads and writes have
   * settled, so that no operation outlives it.
   */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    await this.#settled();
  }

  // -------------------------------------------------------------- options

  /**
   * Turns Nagle's algorithm off (`true`) or on. TCP only.
   *
   * @example Low latency
   * ```ts
   * import { EvSocket } from "@corothread/evthread";
   *
   * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
   * await using a = new EvSocket(await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }));
   * await using _b = new EvSocket(await listener.accept());
   * a.setNoDelay(true);
   * ```
   *
   * @param noDelay Whether to send small writes at once.
   * @throws {TypeError} if the connection is not TCP.
   */
  setNoDelay(noDelay = true): void {
    this.#tcp("setNoDelay").setNoDelay(noDelay);
  }

  /**
   * Turns TCP keep-alive probes on or off. TCP only.
   *
   * @example Keep-alive
   * ```ts
   * import { EvSocket } from "@corothread/evthread";
   *
   * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
   * await using a = new EvSocket(await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }));
   * await using _b = new EvSocket(await listener.accept());
   * a.setKeepAlive(true);
   * ```
   *
   * @param keepAlive Whether to send keep-alive probes.
   * @throws {TypeError} if the connection is not TCP.
   */
  setKeepAlive(keepAlive = true): void {
    this.#tcp("setKeepAlive").setKeepAlive(keepAlive);
  }

  #tcp(method: "setNoDelay" | "setKeepAlive"): Deno.TcpConn {
    if (this.#closed) throw closedError();
    const conn = this.#conn as Partial<Deno.TcpConn>;
    if (typeof conn[method] !== "function") {
      throw new TypeError(`${method}() needs a TCP connection`);
    }
    return conn as Deno.TcpConn;
  }

  /**
   * Makes the connection keep the process alive (the default).
   *
   * @example Ref
   * ```ts
   * import { EvSocket } from "@corothread/evthread";
   *
   * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
   * await using a = new EvSocket(await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }));
   * await using _b = new EvSocket(await listener.accept());
   * a.unref();
   * a.ref();
   * ```
   */
  ref(): void {
    if (!this.#closed) this.#conn.ref();
  }

  /**
   * Lets the process exit while the connection is open.
   *
   * @example Unref
   * ```ts
   * import { EvSocket } from "@corothread/evthread";
   *
   * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
   * await using a = new EvSocket(await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }));
   * await using _b = new EvSocket(await listener.accept());
   * a.unref();
   * ```
   */
  unref(): void {
    if (!this.#closed) this.#conn.unref();
  }

  // -------------------------------------------------------------- streams

  /**
   * The received bytes as a stream. It hands out bytes already buffered
   * first. While a reader holds it, `recv` and the other read calls reject
   * with a `TypeError`. Cancelling it stops reading but leaves the socket
   * open.
   *
   * @example Piping
   * ```ts
   * import { EvSocket } from "@corothread/evthread";
   * import { assertEquals } from "@std/assert";
   *
   * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
   * await using a = new EvSocket(await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }));
   * await using b = new EvSocket(await listener.accept());
   * await a.send(new TextEncoder().encode("streamed"));
   * await a.closeWrite();
   * const text = await new Response(b.readable).text();
   * assertEquals(text, "streamed");
   * ```
   */
  get readable(): ReadableStream<Uint8Array> {
    return this.#readable ??= socketReadable(this);
  }

  /**
   * A stream that sends what is written to it; closing it half-closes the
   * connection ({@linkcode EvSocket.closeWrite}); aborting it closes the
   * socket. While a writer holds it, `send` rejects with a `TypeError`.
   *
   * @example Writing through a stream
   * ```ts
   * import { EvSocket } from "@corothread/evthread";
   * import { assertEquals } from "@std/assert";
   *
   * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
   * await using a = new EvSocket(await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }));
   * await using b = new EvSocket(await listener.accept());
   * await ReadableStream.from([new Uint8Array([1, 2]), new Uint8Array([3])])
   *   .pipeTo(a.writable);
   * assertEquals(await b.readFull(new Uint8Array(3)), new Uint8Array([1, 2, 3]));
   * assertEquals(await b.recv(new Uint8Array(1)), null);
   * ```
   */
  get writable(): WritableStream<Uint8Array> {
    return this.#writable ??= socketWritable(this);
  }
}
