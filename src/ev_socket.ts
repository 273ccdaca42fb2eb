// Copyright 2026 the @corothread/evthread authors. MIT license.

import { buffers } from "./_buffer_pool.ts";
import { indexOf } from "./_bytes.ts";
import { type DeadlineEntry, deadlines } from "./_deadline_queue.ts";
import { type SocketHost, socketInternals } from "./_internal.ts";
import { checkTlsClientOptions, handshake } from "./_tls.ts";
import {
  checkBytes,
  checkDeadline,
  checkInteger,
  checkSignal,
  checkTimeout,
  timeoutError,
} from "./_validate.ts";
import { LimitExceededError } from "./errors.ts";
import type { EvProxyInfo } from "./proxy_protocol.ts";

/** Options for a blocking socket call. */
export interface EvCallOptions {
  /**
   * How long the call may wait, in milliseconds. `undefined` or `Infinity`
   * means no limit; `0` means "only what is already buffered". On expiry the
   * call rejects with a `DOMException` named `"TimeoutError"`, and no bytes
   * are lost: see {@linkcode EvSocket}.
   */
  timeout?: number;
  /**
   * When the call must be done by: an absolute time, in epoch milliseconds
   * (as `Date.now()` gives) or a `Date`. Unlike `timeout`, which a peer can
   * keep from expiring by trickling a byte now and then across many calls,
   * a deadline bounds a whole exchange: give every call of it the same one.
   * With both, the earlier wins. A call made after its deadline rejects at
   * once, even if bytes are buffered; expiry, like a timeout, rejects with
   * a `DOMException` named `"TimeoutError"` and loses no bytes. See also
   * {@linkcode EvSocket.setDeadline} for one deadline for every call.
   */
  deadline?: number | Date;
  /** Aborting it makes the call reject with `signal.reason`. */
  signal?: AbortSignal;
}

/**
 * TLS options of a client: {@linkcode EvSocket.startTls}, and the `tls`
 * option of {@linkcode EvThread.connect}.
 */
export interface EvTlsClientOptions {
  /**
   * The server name to verify the certificate against (and to send as SNI).
   * Defaults to the host name connected to.
   */
  hostname?: string;
  /** Root certificates (PEM) to trust besides the system's. */
  caCerts?: string[];
  /** The ALPN protocols to offer, in order of preference. */
  alpnProtocols?: string[];
}

/** Options for {@linkcode EvSocket.startTls}. */
export interface EvStartTlsOptions extends EvTlsClientOptions, EvCallOptions {}

/** Options for {@linkcode EvSocket.readLine} and {@linkcode EvSocket.readUntil}. */
export interface EvReadUntilOptions extends EvCallOptions {
  /**
   * The most bytes a result may have, delimiter included. When no delimiter
   * is found within it the call rejects with
   * {@linkcode LimitExceededError} and the bytes stay buffered.
   *
   * @default {65536}
   */
  maxLength?: number;
}

/**
 * The error a timed-out {@linkcode EvSocket.send} rejects with: a
 * `DOMException` named `"TimeoutError"` that also says how many of the
 * call's bytes had been written. The rest stay queued and are still written,
 * ahead of any later send.
 */
export interface EvSendTimeoutError extends DOMException {
  /** Bytes of the call that the kernel had accepted when it timed out. */
  bytesWritten: number;
}

/** Default limit of {@linkcode EvSocket.readLine} / `readUntil`. */
const DEFAULT_MAX_LENGTH = 65_536;
/**
 * A read that starts with nothing buffered, after a read that did not fill
 * its buffer (the peer had sent all it had), reads into a buffer this small:
 * it may wait long (an idle keep-alive connection), and Deno holds its
 * buffer meanwhile. A read that fills it switches the socket to a 16 KiB
 * buffer from the shared pool, given back once everything is consumed.
 */
const SMALL_READ = 512;
/** Size of a socket's read buffer while bytes stream in (pooled). */
const READ_BUFFER_SIZE = buffers.min;
const EMPTY = new Uint8Array(0);
/** The read buffer grows to a recv's buffer size, up to this. */
const MAX_RECV_BUFFER = 1 << 20;
/** Most bytes read ahead while only the end of the stream is awaited. */
const READ_AHEAD_MAX = 65_536;
/** Most bytes copied per write for a send that may be abandoned. */
const COPY_CHUNK = 262_144;

const KIND_RECV = 0;
const KIND_FULL = 1;
const KIND_UNTIL = 2;
const KIND_CHUNK = 3;
const KIND_PEEK = 4;

/**
 * What a pending call's time limit does when it passes; set from
 * {@linkcode EvSocket}'s static block (it reaches the socket's private
 * state).
 */
let expireRead: (socket: EvSocket, req: ReadRequest) => void;
let expireWrite: (socket: EvSocket, req: WriteRequest) => void;

/**
 * A socket's idle timeout and socket-wide deadlines. Made by the first
 * `setIdleTimeout` or `setDeadline` (or `setReadDeadline`,
 * `setWriteDeadline`): most sockets use neither, and spend no memory on them.
 */
class SocketLimits {
  // Idle timeout.
  idleMs: number | undefined = undefined;
  idleEntry: DeadlineEntry | undefined = undefined;
  lastActivity = 0;
  idleExpired = false;

  // Socket-wide deadlines (epoch ms; Infinity: none). `fired` is set when the
  // deadline's entry fires, which may be up to 1 ms before `Date.now()`
  // reaches it, so that no call slips in after the pending ones expired.
  readDeadline = Infinity;
  readFired = false;
  readEntry: DeadlineEntry | undefined = undefined;
  writeDeadline = Infinity;
  writeFired = false;
  writeEntry: DeadlineEntry | undefined = undefined;
}

/**
 * A pending read call. With a timeout or a deadline it is its own entry in
 * the shared deadline queue (`at`, `index`, `fire`), so that a call that
 * waits costs no closure and no entry besides it.
 */
class ReadRequest implements DeadlineEntry {
  socket: EvSocket;
  kind: number;
  /** recv / readFull target. */
  buf: Uint8Array | undefined;
  /** readUntil delimiter. */
  delim: Uint8Array | undefined;
  /** readUntil: a second delimiter; the one that ends first wins. */
  delim2: Uint8Array | undefined;
  /** readUntil limit. */
  max: number;
  /** readUntil: bytes already searched without finding the delimiter. */
  scanned = 0;
  resolve: (value: Any) => void;
  reject: (reason: unknown) => void;
  /** The time limit, in ms, for the error message. */
  ms = 0;
  /** Whether the time limit is the call's deadline rather than its timeout. */
  byDeadline = false;
  /** Deadline queue: when it expires, and where it is in the heap. */
  at = 0;
  index = -1;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined = undefined;

  constructor(
    socket: EvSocket,
    kind: number,
    buf: Uint8Array | undefined,
    delim: Uint8Array | undefined,
    delim2: Uint8Array | undefined,
    max: number,
    resolve: (value: Any) => void,
    reject: (reason: unknown) => void,
    signal: AbortSignal | undefined,
  ) {
    this.socket = socket;
    this.kind = kind;
    this.buf = buf;
    this.delim = delim;
    this.delim2 = delim2;
    this.max = max;
    this.resolve = resolve;
    this.reject = reject;
    this.signal = signal;
  }

  /** The time limit passed. */
  fire(): void {
    expireRead(this.socket, this);
  }
}

/**
 * A queued write; `resolve` is undefined once its caller stopped waiting.
 * Like {@linkcode ReadRequest}, it is its own deadline entry.
 */
class WriteRequest implements DeadlineEntry {
  socket: EvSocket;
  /** The bytes to write; `undefined` marks a `closeWrite`. */
  bytes: Uint8Array | undefined;
  offset = 0;
  /** Whether `bytes` is the socket's own copy rather than the caller's. */
  owned: boolean;
  resolve: (() => void) | undefined;
  reject: (reason: unknown) => void;
  /** The time limit, in ms, for the error message. */
  ms = 0;
  /** Whether the time limit is the call's deadline rather than its timeout. */
  byDeadline = false;
  /** Deadline queue: when it expires, and where it is in the heap. */
  at = 0;
  index = -1;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined = undefined;

  constructor(
    socket: EvSocket,
    bytes: Uint8Array | undefined,
    owned: boolean,
    resolve: () => void,
    reject: (reason: unknown) => void,
    signal: AbortSignal | undefined,
  ) {
    this.socket = socket;
    this.bytes = bytes;
    this.owned = owned;
    this.resolve = resolve;
    this.reject = reject;
    this.signal = signal;
  }

  /** The time limit passed. */
  fire(): void {
    expireWrite(this.socket, this);
  }
}

// deno-lint-ignore no-explicit-any
type Any = any;

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const LF = encoder.encode("\n");

function closedError(): Error {
  return new Deno.errors.BadResource("The socket is closed");
}

/** The `TimeoutError` of a call whose deadline (its own, or the socket's) passed. */
function deadlineError(
  direction: "read" | "send",
  socketWide: boolean,
): DOMException {
  const what = direction === "read" ? "Read" : "Send";
  return timeoutError(
    socketWide
      ? `The socket's ${direction} deadline has passed`
      : `${what} deadline has passed`,
  );
}

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
  #closed = false;

  // Read side: bytes [#rs, #re) of #rbuf are buffered. Only #fill and
  // #onRead move #re or the buffer itself, and never while a read is in
  // flight; consumers only advance #rs.
  #rbuf: Uint8Array = EMPTY;
  /** This socket's small buffer for reads that may wait long. */
  #small: Uint8Array | undefined;
  /** Whether `#rbuf` came from the shared pool. */
  #pooled = false;
  /** Whether the last read of the connection filled what it asked for. */
  #streaming = false;
  /** Bytes the read in flight asked for. */
  #asked = 0;
  #rs = 0;
  #re = 0;
  #reading: Promise<void> | undefined;
  #eof = false;
  #readError: unknown = undefined;
  #readers: ReadRequest[] = [];
  /** For `socketInternals.watchEnd`; made when first needed. */
  #endWatchers: (() => void)[] | undefined;

  // Write side.
  #writers: WriteRequest[] = [];
  #writing: Promise<void> | undefined;
  /**
   * Where a caller's bytes are copied before being written: a pooled 16 KiB
   * buffer, or a larger one for bulk sends; given back when the write queue
   * empties.
   */
  #stage: Uint8Array | undefined;
  #writeError: unknown = undefined;
  #writeClosed = false;

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
    expireRead = (socket, req) => socket.#expireRead(req);
    expireWrite = (socket, req) => socket.#expireWrite(req);
    socketInternals.attach = (socket, host) => {
      socket.#host = host;
    };
    socketInternals.abort = (socket, reason) => socket.#rejectAll(reason);
    socketInternals.settled = (socket) => socket.#settled();
    socketInternals.pendingWrites = (socket) =>
      socket.#writers.length > 0 && !socket.#closed &&
      socket.#writeError === undefined;
    socketInternals.drained = async (socket) => {
      while (socketInternals.pendingWrites(socket)) {
        if (socket.#writing === undefined) return;
        await socket.#writing;
      }
    };
    socketInternals.sendOwned = (socket, bytes, options) =>
      socket.#write(bytes, options, true);
    socketInternals.watchEnd = (socket, signal) => socket.#watchEnd(signal);
    socketInternals.setProxy = (socket, proxy) => {
      socket.#proxy = proxy;
    };
    socketInternals.setTls = (socket, info) => {
      socket.#tls = info;
    };
    socketInternals.readWaiting = (socket) => socket.#readers.length > 0;
    socketInternals.readUntilEither = (socket, a, b, options) =>
      socket.#read(
        KIND_UNTIL,
        undefined,
        a,
        options.maxLength,
        options,
        true,
        b,
      );
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
    return this.#re - this.#rs;
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
    // reason to reject: #read checks those in the same order).
    const have = this.#re - this.#rs;
    if (
      have > 0 && this.#readers.length === 0 && !this.#closed &&
      !this.#readable?.locked &&
      (this.#limits === undefined ||
        (!this.#limits.idleExpired &&
          this.#limits.readDeadline === Infinity)) &&
      options?.deadline === undefined &&
      !this.#host?.signal.aborted && !options?.signal?.aborted
    ) {
      const n = have < buf.byteLength ? have : buf.byteLength;
      buf.set(this.#rbuf.subarray(this.#rs, this.#rs + n));
      this.#rs += n;
      return Promise.resolve(n);
    }
    return this.#read(KIND_RECV, buf, undefined, 0, options, true);
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
    return this.#read(KIND_FULL, buf, undefined, 0, options, true);
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
    return this.#read(KIND_UNTIL, undefined, delimiter, max, options, true);
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
  async readLine(options?: EvReadUntilOptions): Promise<string | null> {
    const max = checkInteger(
      options?.maxLength ?? DEFAULT_MAX_LENGTH,
      "maxLength",
      1,
    );
    const bytes: Uint8Array | null = await this.#read(
      KIND_UNTIL,
      undefined,
      undefined,
      max,
      options,
      true,
    );
    if (bytes === null) return null;
    let end = bytes.byteLength;
    if (end > 0 && bytes[end - 1] === 0x0a) {
      end--;
      if (end > 0 && bytes[end - 1] === 0x0d) end--;
    }
    return decoder.decode(bytes.subarray(0, end));
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
    return this.#read(KIND_PEEK, undefined, undefined, count, options, true);
  }

  #read(
    kind: number,
    buf: Uint8Array | undefined,
    delim: Uint8Array | undefined,
    max: number,
    options: EvCallOptions | undefined,
    publicCall: boolean,
    delim2?: Uint8Array,
  ): Promise<Any> {
    let timeout: number | undefined;
    let signal: AbortSignal | undefined;
    let deadline: number | undefined;
    try {
      timeout = checkTimeout(options?.timeout);
      signal = checkSignal(options?.signal);
      deadline = checkDeadline(options?.deadline);
      if (publicCall && this.#readable !== undefined) {
        if (this.#readable.locked) {
          throw new TypeError(
            "Cannot read from the socket: its readable stream is locked by a reader",
          );
        }
        this.#withdrawStreamReads();
      }
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.#closed) return Promise.reject(closedError());
    const hostSignal = this.#host?.signal;
    if (hostSignal?.aborted) return Promise.reject(hostSignal.reason);
    if (signal?.aborted) return Promise.reject(signal.reason);
    const limits = this.#limits;
    if (limits !== undefined) {
      if (limits.idleExpired) {
        limits.idleExpired = false;
        return Promise.reject(this.#idleTimeoutError());
      }
      if (
        limits.readDeadline !== Infinity &&
        (limits.readFired || Date.now() >= limits.readDeadline)
      ) {
        this.#countTimeout();
        return Promise.reject(deadlineError("read", true));
      }
    }
    let byDeadline = false;
    if (deadline !== undefined) {
      const left = deadline - Date.now();
      if (left <= 0) {
        this.#countTimeout();
        return Promise.reject(deadlineError("read", false));
      }
      if (timeout === undefined || left < timeout) {
        timeout = left;
        byDeadline = true;
      }
    }
    return new Promise((resolve, reject) => {
      const req = new ReadRequest(
        this,
        kind,
        buf,
        delim,
        delim2,
        max,
        resolve,
        reject,
        signal,
      );
      if (this.#readers.length === 0 && this.#complete(req)) return;
      if (timeout === 0 && !byDeadline) {
        // Read what the kernel holds into the buffer for the next call, so
        // that polling with timeout 0 sees bytes once they have arrived.
        if (this.#readers.length === 0 && this.#reading === undefined) {
          this.#readAhead();
        }
        this.#countTimeout();
        reject(timeoutError("Nothing buffered to read (timeout 0)"));
        return;
      }
      if (timeout !== undefined) {
        // The request is its own deadline entry: see #expireRead.
        req.ms = timeout;
        req.byDeadline = byDeadline;
        deadlines.add(req, timeout);
      }
      if (signal !== undefined) {
        req.onAbort = () => {
          req.onAbort = undefined;
          this.#dropReader(req, signal.reason);
        };
        signal.addEventListener("abort", req.onAbort, { once: true });
      }
      // A queue of one is made anew rather than pushed to: an empty array
      // that grows makes room for 17, and most sockets never queue two reads.
      if (this.#readers.length === 0) this.#readers = [req];
      else this.#readers.push(req);
      if (this.#reading === undefined) this.#fill();
    });
  }

  /**
   * A read call came while the readable stream is not locked: a read the
   * stream left pending (its reader was released) must not take the bytes.
   */
  #withdrawStreamReads(): void {
    const readers = this.#readers;
    for (let i = readers.length - 1; i >= 0; i--) {
      const req = readers[i]!;
      if (req.kind !== KIND_CHUNK) continue;
      readers.splice(i, 1);
      this.#forget(req);
      req.resolve(undefined);
    }
  }

  /** Tries to finish a read from the buffer; true when it settled. */
  #complete(req: ReadRequest): boolean {
    const rbuf = this.#rbuf;
    const rs = this.#rs;
    const have = this.#re - rs;
    switch (req.kind) {
      case KIND_RECV: {
        const buf = req.buf!;
        if (have > 0 || buf.byteLength === 0) {
          const n = have < buf.byteLength ? have : buf.byteLength;
          buf.set(rbuf.subarray(rs, rs + n));
          this.#rs = rs + n;
          req.resolve(n);
          return true;
        }
        break;
      }
      case KIND_FULL: {
        const buf = req.buf!;
        const need = buf.byteLength;
        if (have >= need) {
          buf.set(rbuf.subarray(rs, rs + need));
          this.#rs = rs + need;
          req.resolve(buf);
          return true;
        }
        if (this.#eof) {
          if (have === 0) {
            req.resolve(null);
          } else {
            buf.set(rbuf.subarray(rs, rs + have));
            this.#rs = rs + have;
            req.reject(
              Object.assign(
                new Deno.errors.UnexpectedEof(
                  `The stream ended after ${have} of ${need} bytes`,
                ),
                { bytesRead: have },
              ),
            );
          }
          return true;
        }
        break;
      }
      case KIND_UNTIL: {
        const delim = req.delim ?? LF;
        let dlen = delim.byteLength;
        const from = rs + req.scanned;
        let found = indexOf(rbuf, from, this.#re, delim);
        const other = req.delim2;
        let span = dlen;
        if (other !== undefined) {
          const olen = other.byteLength;
          if (olen > span) span = olen;
          const at = indexOf(
            rbuf,
            from,
            found < 0 ? this.#re : found + dlen,
            other,
          );
          if (at >= 0 && (found < 0 || at + olen < found + dlen)) {
            found = at;
            dlen = olen;
          }
        }
        if (found >= 0) {
          const end = found - rs + dlen;
          if (end > req.max) {
            req.reject(new LimitExceededError(req.max));
          } else {
            req.resolve(rbuf.slice(rs, rs + end));
            this.#rs = rs + end;
          }
          return true;
        }
        req.scanned = have >= span ? have - span + 1 : 0;
        if (have >= req.max) {
          req.reject(new LimitExceededError(req.max));
          return true;
        }
        if (this.#eof) {
          if (have === 0) {
            req.resolve(null);
          } else if (req.delim === undefined) {
            // readLine: a last line without a line ending.
            req.resolve(rbuf.slice(rs, rs + have));
            this.#rs = rs + have;
          } else {
            req.reject(
              Object.assign(
                new Deno.errors.UnexpectedEof(
                  `The stream ended after ${have} bytes without the delimiter`,
                ),
                { bytesRead: have },
              ),
            );
          }
          return true;
        }
        break;
      }
      case KIND_PEEK: {
        const need = req.max;
        if (have >= need || (this.#eof && have > 0)) {
          req.resolve(rbuf.slice(rs, rs + (have < need ? have : need)));
          return true;
        }
        break;
      }
      case KIND_CHUNK: {
        if (have > 0) {
          req.resolve(rbuf.slice(rs, this.#re));
          this.#rs = this.#re;
          return true;
        }
        break;
      }
    }
    if (this.#eof) {
      req.resolve(null);
      return true;
    }
    if (this.#readError !== undefined) {
      req.reject(this.#readError);
      return true;
    }
    return false;
  }

  /** Settles queued reads in order while the buffer allows; reads more. */
  #serveReads(): void {
    const readers = this.#readers;
    while (readers.length > 0) {
      const req = readers[0]!;
      if (!this.#complete(req)) break;
      readers.shift();
      this.#forget(req);
    }
    if (this.#reading === undefined) {
      if (readers.length > 0) this.#fill();
      else if (this.#watchingEnd()) this.#readAhead();
    }
    if (this.#watchingEnd() && (this.#eof || this.#readError !== undefined)) {
      const watchers = this.#endWatchers!;
      this.#endWatchers = undefined;
      for (const notify of watchers) notify();
    }
  }

  /**
   * With nobody reading, reads ahead into the buffer (up to 64 KiB) so
   * that the end of the stream is seen: for `socketInternals.watchEnd`.
   */
  #readAhead(): void {
    if (this.#upgrading) return;
    if (this.#eof || this.#readError !== undefined || this.#closed) return;
    const have = this.#re - this.#rs;
    if (have >= READ_AHEAD_MAX) return;
    if (have === 0 && !this.#streaming) {
      this.#startRead(this.#useSmall());
      return;
    }
    if (have === 0) this.#rs = this.#re = 0;
    if (this.#rbuf.byteLength < READ_BUFFER_SIZE) {
      this.#grow(READ_BUFFER_SIZE);
    } else if (this.#rs > 0 && this.#rbuf.byteLength - this.#re < 4096) {
      this.#rbuf.copyWithin(0, this.#rs, this.#re);
      this.#rs = 0;
      this.#re = have;
    }
    if (this.#re === this.#rbuf.byteLength) {
      // Full, and still under the read-ahead limit: grow towards it.
      this.#grow(Math.min(2 * this.#rbuf.byteLength, READ_AHEAD_MAX));
    }
    const end = Math.min(this.#rbuf.byteLength, this.#rs + READ_AHEAD_MAX);
    this.#startRead(this.#rbuf.subarray(this.#re, end));
  }

  /** Starts a read of the connection into `view` (part of `#rbuf`). */
  #startRead(view: Uint8Array): void {
    this.#asked = view.byteLength;
    this.#reading = this.#conn.read(view).then(this.#onRead, this.#onReadError);
  }

  /**
   * With nothing buffered, makes the small buffer the read buffer (giving a
   * pooled one back) and returns it.
   */
  #useSmall(): Uint8Array {
    if (this.#pooled) {
      buffers.put(this.#rbuf);
      this.#pooled = false;
    }
    this.#rs = this.#re = 0;
    return this.#rbuf = this.#small ??= new Uint8Array(SMALL_READ);
  }

  /**
   * Moves the buffered bytes to a read buffer of at least `size` bytes (a
   * pooled one when it is big enough). No read may be in flight.
   */
  #grow(size: number): void {
    const have = this.#re - this.#rs;
    const pooled = size <= buffers.max;
    const bigger = pooled ? buffers.get(size) : new Uint8Array(size);
    bigger.set(this.#rbuf.subarray(this.#rs, this.#re));
    if (this.#pooled) buffers.put(this.#rbuf);
    this.#rbuf = bigger;
    this.#pooled = pooled;
    this.#rs = 0;
    this.#re = have;
  }

  /** Starts one read of the connection into the buffer. */
  #fill(): void {
    if (this.#upgrading) return;
    if (this.#eof || this.#readError !== undefined || this.#closed) return;
    const head = this.#readers[0]!;
    const have = this.#re - this.#rs;
    if (have === 0 && !this.#streaming) {
      this.#startRead(this.#useSmall());
      return;
    }
    if (have === 0) this.#rs = this.#re = 0;
    if (this.#rbuf.byteLength < READ_BUFFER_SIZE) this.#grow(READ_BUFFER_SIZE);
    const cap = this.#rbuf.byteLength;
    let want = cap;
    if (head.kind === KIND_RECV) {
      // Let one read of the connection fill the caller's whole buffer.
      const size = head.buf!.byteLength;
      if (size > cap) want = size < MAX_RECV_BUFFER ? size : MAX_RECV_BUFFER;
    } else if (head.kind === KIND_FULL) {
      if (head.buf!.byteLength > cap) want = head.buf!.byteLength;
    } else if (head.kind === KIND_PEEK) {
      if (head.max > cap) want = head.max;
    } else if (head.kind === KIND_UNTIL && have >= cap) {
      // A full buffer and no delimiter yet (else it had settled): grow
      // towards the limit, which is above `have`.
      want = Math.min(2 * cap, head.max);
    }
    if (want > cap) {
      this.#grow(want);
    } else if (this.#rs > 0 && cap - this.#re < 4096) {
      this.#rbuf.copyWithin(0, this.#rs, this.#re);
      this.#rs = 0;
      this.#re = have;
    }
    this.#startRead(this.#rbuf.subarray(this.#re));
  }

  // The handlers of a read of the connection are made once per socket, not
  // per read: a socket nearly always has a read in flight, so they are
  // needed anyway, and the read path then allocates no closure. The other
  // handlers are methods, wrapped in a closure only when they are used.
  #onRead = (n: number | null): void => {
    this.#reading = undefined;
    if (this.#closed) return;
    if (n === null) {
      this.#eof = true;
    } else {
      this.#re += n;
      this.#streaming = n === this.#asked;
      this.#active();
    }
    this.#serveReads();
  };

  #onReadError = (error: unknown): void => {
    this.#reading = undefined;
    if (this.#closed) return;
    this.#readError = error;
    this.#serveReads();
  };

  /** A caller stopped waiting: remove its read, keep the bytes. */
  #dropReader(req: ReadRequest, reason: unknown): void {
    const i = this.#readers.indexOf(req);
    if (i < 0) return;
    this.#readers.splice(i, 1);
    this.#forget(req);
    req.reject(reason);
    // A read behind it may be satisfied by what the dropped one waited on.
    if (i === 0 && this.#readers.length > 0) this.#serveReads();
  }

  /** A read's time limit passed: it rejects, and the bytes stay. */
  #expireRead(req: ReadRequest): void {
    this.#countTimeout();
    this.#dropReader(
      req,
      req.byDeadline
        ? deadlineError("read", false)
        : timeoutError(`Read timed out after ${req.ms} ms`),
    );
  }

  #forget(req: ReadRequest | WriteRequest): void {
    // A no-op unless its time limit is pending.
    deadlines.cancel(req);
    if (req.onAbort !== undefined) {
      req.signal!.removeEventListener("abort", req.onAbort);
      req.onAbort = undefined;
    }
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
    return this.#write(bytes, options);
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
    return this.#write(undefined, options);
  }

  #write(
    bytes: Uint8Array | undefined,
    options: EvCallOptions | undefined,
    owned = false,
  ): Promise<void> {
    let timeout: number | undefined;
    let signal: AbortSignal | undefined;
    let deadline: number | undefined;
    try {
      timeout = checkTimeout(options?.timeout);
      signal = checkSignal(options?.signal);
      deadline = checkDeadline(options?.deadline);
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.#closed) return Promise.reject(closedError());
    if (this.#writeError !== undefined) {
      return Promise.reject(this.#writeError);
    }
    if (this.#writeClosed) {
      return Promise.reject(
        new Deno.errors.BrokenPipe("The socket's write side is closed"),
      );
    }
    const hostSignal = this.#host?.signal;
    if (hostSignal?.aborted) return Promise.reject(hostSignal.reason);
    if (signal?.aborted) return Promise.reject(signal.reason);
    const limits = this.#limits;
    if (limits !== undefined) {
      if (limits.idleExpired) {
        limits.idleExpired = false;
        return Promise.reject(this.#idleTimeoutError());
      }
      if (
        limits.writeDeadline !== Infinity &&
        (limits.writeFired || Date.now() >= limits.writeDeadline)
      ) {
        this.#countTimeout();
        return Promise.reject(
          Object.assign(deadlineError("send", true), { bytesWritten: 0 }),
        );
      }
    }
    let byDeadline = false;
    if (deadline !== undefined) {
      const left = deadline - Date.now();
      if (left <= 0) {
        this.#countTimeout();
        return Promise.reject(
          Object.assign(deadlineError("send", false), { bytesWritten: 0 }),
        );
      }
      if (timeout === undefined || left < timeout) {
        timeout = left;
        byDeadline = true;
      }
    }
    if (bytes === undefined) this.#writeClosed = true;
    else if (bytes.byteLength === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const req = new WriteRequest(this, bytes, owned, resolve, reject, signal);
      this.#writers.push(req);
      if (timeout !== undefined) {
        // The request is its own deadline entry: see #expireWrite.
        req.ms = timeout;
        req.byDeadline = byDeadline;
        deadlines.add(req, timeout);
      }
      if (signal !== undefined) {
        req.onAbort = () => {
          req.onAbort = undefined;
          this.#detachWriter(req, signal.reason);
        };
        signal.addEventListener("abort", req.onAbort, { once: true });
      }
      if (this.#writing === undefined && !this.#upgrading) this.#startWrite();
    });
  }

  /** Starts the write (or half-close) at the head of the queue. */
  #startWrite(): void {
    const req = this.#writers[0]!;
    const bytes = req.bytes;
    let op: Promise<number>;
    if (bytes === undefined) {
      op = this.#conn.closeWrite().then(() => 0);
    } else if (!req.owned) {
      // The caller may stop waiting (a timeout, a signal, an idle timeout or
      // a deadline, even one set after the call began) and reuse its buffer
      // while this write is still in flight: Deno's write reads the buffer
      // when the socket becomes writable, not at the call. So a caller's
      // bytes are written from copies, a piece at a time, through one
      // staging buffer (writes go one at a time, so the next copy is made
      // only once the kernel has taken the last). Measured, this is no
      // slower than writing the caller's buffer in place (bench/socket_bench.ts).
      const end = Math.min(bytes.byteLength, req.offset + COPY_CHUNK);
      const length = end - req.offset;
      let stage = this.#stage;
      if (stage === undefined || stage.byteLength < length) {
        if (stage !== undefined) buffers.put(stage);
        stage = this.#stage = buffers.get(length);
      }
      stage.set(bytes.subarray(req.offset, end));
      op = this.#conn.write(stage.subarray(0, length));
    } else {
      op = this.#conn.write(
        req.offset === 0 ? bytes : bytes.subarray(req.offset),
      );
    }
    this.#writing = op.then(
      (n) => this.#onWritten(req, n),
      (error) => this.#onWriteError(error),
    );
  }

  #onWritten(req: WriteRequest, n: number): void {
    this.#writing = undefined;
    if (this.#closed) return;
    // Otherwise it was dropped while in flight (its task was aborted).
    if (this.#writers[0] === req) {
      if (req.bytes !== undefined) {
        // A timeout may have swapped in a copy of the rest (offset 0): the
        // write in flight started at that copy's first byte either way.
        req.offset += n;
        this.#active();
        if (req.offset < req.bytes.byteLength) {
          this.#startWrite();
          return;
        }
      }
      this.#writers.shift();
      this.#forget(req);
      req.resolve?.();
    }
    if (this.#writers.length > 0) this.#startWrite();
    else if (this.#stage !== undefined) {
      // Nothing queued and no write in flight: give the staging buffer back.
      buffers.put(this.#stage);
      this.#stage = undefined;
    }
  }

  #onWriteError(error: unknown): void {
    this.#writing = undefined;
    if (this.#closed) return;
    this.#writeError = error;
    this.#rejectWriters(error);
  }

  /** A send's time limit passed: it rejects, and its bytes stay queued. */
  #expireWrite(req: WriteRequest): void {
    this.#countTimeout();
    this.#detachWriter(
      req,
      req.byDeadline
        ? deadlineError("send", false)
        : timeoutError(`Send timed out after ${req.ms} ms`),
    );
  }

  /** A caller stopped waiting on a send: keep its bytes queued. */
  #detachWriter(req: WriteRequest, reason: unknown): void {
    if (req.resolve === undefined) return;
    this.#forget(req);
    req.resolve = undefined;
    const bytes = req.bytes;
    const written = req.offset;
    if (bytes !== undefined) {
      // The caller may reuse its buffer now: keep a copy of the rest.
      if (!req.owned) {
        req.bytes = bytes.slice(written);
        req.offset = 0;
        req.owned = true;
      }
      if (reason instanceof DOMException && reason.name === "TimeoutError") {
        Object.assign(reason, { bytesWritten: written });
      }
    }
    req.reject(reason);
  }

  #rejectWriters(reason: unknown): void {
    const writers = this.#writers;
    this.#writers = [];
    for (const req of writers) {
      this.#forget(req);
      if (req.resolve !== undefined) {
        req.resolve = undefined;
        req.reject(reason);
      }
    }
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
  async startTls(options?: EvStartTlsOptions): Promise<void> {
    const timeout = checkTimeout(options?.timeout);
    const deadline = checkDeadline(options?.deadline);
    const signal = checkSignal(options?.signal);
    const tlsOptions = checkTlsClientOptions(options);
    if (this.#closed) throw closedError();
    const conn = this.#conn;
    if (
      this.#tls !== undefined || this.#upgrading ||
      conn.localAddr.transport !== "tcp" ||
      typeof (conn as Partial<Deno.TlsConn>).handshake === "function"
    ) {
      throw new TypeError("startTls() needs a plain TCP connection");
    }
    if (
      this.#readers.length > 0 || this.#reading !== undefined ||
      this.#writers.length > 0 || this.#writing !== undefined ||
      this.#readable?.locked || this.#writable?.locked
    ) {
      throw new Deno.errors.Busy(
        "startTls() needs the connection idle: a call, or a read of the connection that a timed-out call left armed, is in flight",
      );
    }
    const have = this.#re - this.#rs;
    if (have > 0) {
      throw new Deno.errors.InvalidData(
        `startTls(): ${have} bytes arrived before the TLS handshake; refusing to upgrade (they were not protected by it)`,
      );
    }
    if (this.#eof || this.#readError !== undefined || this.#writeClosed) {
      throw new Deno.errors.BrokenPipe(
        "startTls(): the connection is already ending",
      );
    }
    const hostSignal = this.#host?.signal;
    if (hostSignal?.aborted) throw hostSignal.reason;
    if (signal?.aborted) throw signal.reason;
    let ms = timeout ?? Infinity;
    if (deadline !== undefined) ms = Math.min(ms, deadline - Date.now());
    if (ms <= 0) {
      this.#countTimeout();
      throw timeoutError("startTls(): the deadline has passed");
    }
    // Closing the socket meanwhile ends the handshake wait at once.
    const closing = new AbortController();
    this.#upgradeStop = closing;
    const stop = AbortSignal.any(
      [closing.signal, hostSignal, signal].filter((s) => s !== undefined),
    );
    this.#upgrading = true;
    try {
      const tls = await Deno.startTls(conn as Deno.TcpConn, {
        hostname: tlsOptions.hostname ??
          (conn.remoteAddr as Deno.NetAddr).hostname,
        ...(tlsOptions.caCerts ? { caCerts: tlsOptions.caCerts } : {}),
        ...(tlsOptions.alpnProtocols
          ? { alpnProtocols: tlsOptions.alpnProtocols }
          : {}),
      });
      // Deno.startTls took the TCP connection over when called: if the
      // socket was closed while it ran, that close missed the new one.
      if (this.#closed) {
        try {
          tls.close();
        } catch {
          // Already closed.
        }
        throw closedError();
      }
      this.#conn = tls;
      this.#tls = await handshake(tls, ms, stop);
    } catch (error) {
      if (error instanceof DOMException && error.name === "TimeoutError") {
        this.#countTimeout();
      }
      this.#upgrading = false;
      this.#upgradeStop = undefined;
      this.close();
      throw error;
    }
    this.#upgrading = false;
    this.#upgradeStop = undefined;
    if (this.#closed) throw closedError();
    if (this.#readers.length > 0 && this.#reading === undefined) this.#fill();
    if (this.#writers.length > 0 && this.#writing === undefined) {
      this.#startWrite();
    }
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
    const value = checkTimeout(ms, "ms");
    if (value === undefined && this.#limits === undefined) return; // none set
    const limits = this.#limits ??= new SocketLimits();
    if (limits.idleEntry !== undefined) {
      deadlines.cancel(limits.idleEntry);
      limits.idleEntry = undefined;
    }
    limits.idleMs = value;
    limits.idleExpired = false;
    if (value === undefined || this.#closed) return;
    limits.lastActivity = performance.now();
    limits.idleEntry = deadlines.schedule(value, () => this.#onIdle());
  }

  /** Bytes moved: the idle timeout, if any, starts over. */
  #active(): void {
    const limits = this.#limits;
    if (limits?.idleMs !== undefined) limits.lastActivity = performance.now();
  }

  #onIdle(): void {
    const limits = this.#limits!;
    limits.idleEntry = undefined;
    const ms = limits.idleMs;
    if (ms === undefined || this.#closed) return;
    const quiet = performance.now() - limits.lastActivity;
    if (quiet + 1 < ms) {
      limits.idleEntry = deadlines.schedule(ms - quiet, () => this.#onIdle());
      return;
    }
    const waiting = this.#readers.length > 0 ||
      this.#writers.some((w) => w.resolve !== undefined);
    if (waiting) {
      const error = this.#idleTimeoutError();
      this.#expireReads(error);
      this.#expireWrites(error);
      this.#countTimeout();
    } else {
      limits.idleExpired = true;
    }
    limits.lastActivity = performance.now();
    limits.idleEntry = deadlines.schedule(ms, () => this.#onIdle());
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
    this.#setReadDeadline(at);
    this.#setWriteDeadline(at);
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
    this.#setReadDeadline(checkDeadline(deadline) ?? Infinity);
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
    this.#setWriteDeadline(checkDeadline(deadline) ?? Infinity);
  }

  #setReadDeadline(at: number): void {
    if (at === Infinity && this.#limits === undefined) return; // none set
    const limits = this.#limits ??= new SocketLimits();
    if (limits.readEntry !== undefined) {
      deadlines.cancel(limits.readEntry);
      limits.readEntry = undefined;
    }
    limits.readDeadline = at;
    limits.readFired = false;
    if (at === Infinity || this.#closed) return;
    const left = at - Date.now();
    if (left <= 0) this.#onReadDeadline();
    else {
      limits.readEntry = deadlines.schedule(left, () => this.#onReadDeadline());
    }
  }

  #setWriteDeadline(at: number): void {
    if (at === Infinity && this.#limits === undefined) return; // none set
    const limits = this.#limits ??= new SocketLimits();
    if (limits.writeEntry !== undefined) {
      deadlines.cancel(limits.writeEntry);
      limits.writeEntry = undefined;
    }
    limits.writeDeadline = at;
    limits.writeFired = false;
    if (at === Infinity || this.#closed) return;
    const left = at - Date.now();
    if (left <= 0) this.#onWriteDeadline();
    else {
      limits.writeEntry = deadlines.schedule(
        left,
        () => this.#onWriteDeadline(),
      );
    }
  }

  #onReadDeadline(): void {
    const limits = this.#limits!;
    limits.readEntry = undefined;
    limits.readFired = true;
    if (this.#closed || this.#readers.length === 0) return;
    this.#countTimeout();
    this.#expireReads(deadlineError("read", true));
  }

  #onWriteDeadline(): void {
    const limits = this.#limits!;
    limits.writeEntry = undefined;
    limits.writeFired = true;
    if (this.#closed || !this.#writers.some((w) => w.resolve !== undefined)) {
      return;
    }
    this.#countTimeout();
    this.#expireWrites(deadlineError("send", true));
  }

  /** Rejects every pending read with `error`; buffered bytes stay. */
  #expireReads(error: DOMException): void {
    const readers = this.#readers;
    this.#readers = [];
    for (const req of readers) {
      this.#forget(req);
      req.reject(error);
    }
  }

  /**
   * Rejects every waiting send with a copy of `error` (each says its own
   * `bytesWritten`); their unwritten bytes stay queued.
   */
  #expireWrites(error: DOMException): void {
    for (const req of [...this.#writers]) {
      if (req.resolve === undefined) continue;
      this.#detachWriter(req, new DOMException(error.message, error.name));
    }
  }

  #idleTimeoutError(): DOMException {
    return timeoutError(`The socket was idle for ${this.#limits?.idleMs} ms`);
  }

  #countTimeout(): void {
    this.#host?.countTimeout();
  }

  /**
   * Rejects every pending call with `reason` and drops the queued writes:
   * the task that owns the socket was aborted, or the socket was closed.
   */
  #rejectAll(reason: unknown): void {
    const readers = this.#readers;
    this.#readers = [];
    for (const req of readers) {
      this.#forget(req);
      req.reject(reason);
    }
    this.#rejectWriters(reason);
  }

  /** Whether someone waits, through `#watchEnd`, for the stream to end. */
  #watchingEnd(): boolean {
    return this.#endWatchers !== undefined && this.#endWatchers.length > 0;
  }

  #watchEnd(signal: AbortSignal): Promise<void> {
    if (this.#eof || this.#readError !== undefined) return Promise.resolve();
    return new Promise<void>((resolve) => {
      if (this.#closed || signal.aborted) return;
      const notify = () => {
        signal.removeEventListener("abort", onAbort);
        resolve();
      };
      const onAbort = () => {
        const watchers = this.#endWatchers ?? [];
        const i = watchers.indexOf(notify);
        if (i >= 0) watchers.splice(i, 1);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.#endWatchers ??= [];
      this.#endWatchers.push(notify);
      if (this.#reading === undefined && this.#readers.length === 0) {
        this.#readAhead();
      }
    });
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
   * {@linkcode EvSocket.closeWrite} first to flush them). Closing twice is a
   * no-op.
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
    const limits = this.#limits;
    if (limits !== undefined) {
      for (
        const entry of [limits.idleEntry, limits.readEntry, limits.writeEntry]
      ) {
        if (entry !== undefined) deadlines.cancel(entry);
      }
      limits.idleEntry = limits.readEntry = limits.writeEntry = undefined;
    }
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
    if (this.#readable !== undefined) return this.#readable;
    const stream: ReadableStream<Uint8Array> = new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        let chunk: Uint8Array | null | undefined;
        try {
          chunk = await this.#read(
            KIND_CHUNK,
            undefined,
            undefined,
            0,
            undefined,
            false,
          );
        } catch (error) {
          // A timeout or deadline errors the stream for good, but not the
          // socket: the next `readable` is a new stream.
          if (
            error instanceof DOMException && error.name === "TimeoutError" &&
            this.#readable === stream
          ) {
            this.#readable = undefined;
          }
          throw error;
        }
        // undefined: a recv took over while no reader held the stream.
        if (chunk === null) controller.close();
        else if (chunk !== undefined) controller.enqueue(chunk);
      },
      cancel: (reason) => {
        for (const req of [...this.#readers]) {
          if (req.kind === KIND_CHUNK) this.#dropReader(req, reason);
        }
      },
    }, { highWaterMark: 0 });
    this.#readable = stream;
    return stream;
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
    this.#writable ??= new WritableStream<Uint8Array>({
      write: (chunk) => {
        checkBytes(chunk, "chunk");
        return this.#write(chunk, undefined);
      },
      close: () => this.closeWrite(),
      abort: () => this.close(),
    });
    return this.#writable;
  }
}
