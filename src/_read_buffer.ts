// Copyright 2026 the @corothread/evthread authors. MIT license.
// A socket's read side without its I/O: the buffer where the bytes of the
// connection land, how it grows and compacts, the read calls waiting on it,
// and how buffered bytes settle them (the delimiter search included). The
// socket reads the connection into the view `reserve` gives and reports the
// count with `filled`, so tests/read_buffer_test.ts drives it without
// sockets.

import { buffers } from "./_buffer_pool.ts";
import { indexOf, latin1 } from "./_bytes.ts";
import { forget, type PendingCall } from "./_socket_limits.ts";
import { LimitExceededError } from "./errors.ts";
import type { EvSocket } from "./ev_socket.ts";

/**
 * A read that starts with nothing buffered, after a read that did not fill
 * its buffer and brought less than {@linkcode READ_BUFFER_SIZE} bytes (the
 * peer had sent all it had), reads into a buffer this small:
 * it may wait long (an idle keep-alive connection), and Deno holds its
 * buffer meanwhile. A read that fills it switches the socket to a 16 KiB
 * buffer from the shared pool, given back once everything is consumed.
 */
export const SMALL_READ = 512;
/** Size of a socket's read buffer while bytes stream in (pooled). */
export const READ_BUFFER_SIZE: number = buffers.min;
/** The read buffer grows to a recv's buffer size, up to this. */
export const MAX_RECV_BUFFER = 1 << 20;
/** Most bytes read ahead while only the end of the stream is awaited. */
export const READ_AHEAD_MAX = 65_536;
/** Free room below which the buffered bytes move to the buffer's start. */
export const COMPACT_BELOW = 4096;
const EMPTY = new Uint8Array(0);
const LF = new Uint8Array([0x0a]);
const decoder = new TextDecoder();

/** `recv`: what is available, into the caller's buffer. */
export const RECV = 0;
/** `readFull`: exactly the caller's buffer's length. */
export const FULL = 1;
/** `readUntil`: up to and including a delimiter (or either of two). */
export const UNTIL = 2;
/** `readLine`: a line, decoded, without its line ending. */
export const LINE = 3;
/** `peek`: a copy of the first bytes, which stay buffered. */
export const PEEK = 4;
/** A pull of the `readable` stream: whatever is buffered. */
export const CHUNK = 5;
/**
 * `readUntil`, the record decoded as latin1 (one char per byte), for the
 * HTTP server's heads and chunk lines: no copy of the bytes is made.
 */
export const TEXT = 6;

/** What each kind of read call resolves with. */
export interface ReadResults {
  /** Bytes read; null at end of stream. */
  [RECV]: number | null;
  /** The caller's buffer, filled; null at end of stream. */
  [FULL]: Uint8Array | null;
  /** The record, delimiter included; null at end of stream. */
  [UNTIL]: Uint8Array | null;
  /** The line; null at end of stream. */
  [LINE]: string | null;
  /** The first bytes (fewer at end of stream); null at end of stream. */
  [PEEK]: Uint8Array | null;
  /** A chunk; null at end of stream; undefined if withdrawn. */
  [CHUNK]: Uint8Array | null | undefined;
  /** The record as latin1, delimiter included; null at end of stream. */
  [TEXT]: string | null;
}

/** A kind of read call. */
export type ReadKind = keyof ReadResults;

/**
 * What a read call asks of the buffer. {@linkcode ReadRequest} is one;
 * tests use plain objects.
 */
export interface ReadCall<K extends ReadKind = ReadKind> {
  readonly kind: K;
  /** RECV, FULL: where the bytes go. */
  readonly buf: Uint8Array | undefined;
  /** UNTIL: the delimiter; LINE: `\n`. */
  readonly delim: Uint8Array | undefined;
  /** UNTIL: a second delimiter; the one that ends first wins. */
  readonly delim2: Uint8Array | undefined;
  /** UNTIL, LINE: the most bytes of a result; PEEK: how many to wait for. */
  readonly max: number;
  /** UNTIL, LINE: bytes already searched without finding the delimiter. */
  scanned: number;
  resolve(value: ReadResults[K]): void;
  /** Rejects the call (its promise already marked handled). */
  fail(reason: unknown): void;
}

/** A read call of any kind; `kind` tells which. */
export type AnyReadCall = { [K in ReadKind]: ReadCall<K> }[ReadKind];

function noop(): void {}

/**
 * A pending read call of a socket, and its promise. With a timeout or a
 * deadline it is its own entry in the shared deadline queue.
 */
export class ReadRequest<K extends ReadKind = ReadKind>
  implements ReadCall<K>, PendingCall {
  readonly socket: EvSocket;
  readonly kind: K;
  readonly buf: Uint8Array | undefined;
  readonly delim: Uint8Array | undefined;
  readonly delim2: Uint8Array | undefined;
  readonly max: number;
  scanned = 0;
  resolve: (value: ReadResults[K]) => void = noop;
  reject: (reason: unknown) => void = noop;
  /** What the caller got. */
  readonly promise: Promise<ReadResults[K]>;
  ms: number | undefined = undefined;
  at = 0;
  index = -1;
  signal: AbortSignal | undefined = undefined;
  onAbort: (() => void) | undefined = undefined;

  constructor(
    socket: EvSocket,
    kind: K,
    buf: Uint8Array | undefined,
    delim: Uint8Array | undefined,
    delim2: Uint8Array | undefined,
    max: number,
  ) {
    this.socket = socket;
    this.kind = kind;
    this.buf = buf;
    this.delim = delim;
    this.delim2 = delim2;
    this.max = max;
    this.promise = new Promise<ReadResults[K]>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  /** `recv` into `buf`. */
  static recv(socket: EvSocket, buf: Uint8Array): ReadRequest<typeof RECV> {
    return new ReadRequest(socket, RECV, buf, undefined, undefined, 0);
  }

  /** `readFull` of `buf`. */
  static full(socket: EvSocket, buf: Uint8Array): ReadRequest<typeof FULL> {
    return new ReadRequest(socket, FULL, buf, undefined, undefined, 0);
  }

  /** `readUntil` `delim` (or `delim2`, whichever ends first) within `max`. */
  static until(
    socket: EvSocket,
    delim: Uint8Array,
    delim2: Uint8Array | undefined,
    max: number,
  ): ReadRequest<typeof UNTIL> {
    return new ReadRequest(socket, UNTIL, undefined, delim, delim2, max);
  }

  /** `until`, resolving with the record decoded as latin1. */
  static text(
    socket: EvSocket,
    delim: Uint8Array,
    delim2: Uint8Array | undefined,
    max: number,
  ): ReadRequest<typeof TEXT> {
    return new ReadRequest(socket, TEXT, undefined, delim, delim2, max);
  }

  /** `readLine` within `max`. */
  static line(socket: EvSocket, max: number): ReadRequest<typeof LINE> {
    return new ReadRequest(socket, LINE, undefined, LF, undefined, max);
  }

  /** `peek` of `n` bytes. */
  static peek(socket: EvSocket, n: number): ReadRequest<typeof PEEK> {
    return new ReadRequest(socket, PEEK, undefined, undefined, undefined, n);
  }

  /** A pull of the `readable` stream. */
  static chunk(socket: EvSocket): ReadRequest<typeof CHUNK> {
    return new ReadRequest(socket, CHUNK, undefined, undefined, undefined, 0);
  }

  /**
   * Rejects the call. Its promise is marked handled first, so that a caller
   * who stopped listening (a send or read not awaited) cannot end the
   * process with an unhandled rejection; one who awaits still gets it.
   */
  fail(reason: unknown): void {
    this.promise.catch(noop);
    this.reject(reason);
  }

  /** Its time limit passed. */
  fire(): void {
    readHooks.expire(this.socket, this as AnyRead);
  }

  /** Its signal aborted. */
  aborted(): void {
    readHooks.drop(this.socket, this as AnyRead, this.signal!.reason);
  }
}

/** A pending read call of any kind. */
export type AnyRead = { [K in ReadKind]: ReadRequest<K> }[ReadKind];

/** The `readers` of every socket that has none waiting; never added to. */
const NO_READERS: AnyRead[] = [];

function unreachable(): never {
  throw new Error("evthread: internal hook used before its class loaded");
}

/** What ends a waiting read call; set by EvSocket. */
export const readHooks: {
  /** Its time limit passed. */
  expire: (socket: EvSocket, req: AnyRead) => void;
  /** Its caller stopped waiting (its signal aborted). */
  drop: (socket: EvSocket, req: AnyRead, reason: unknown) => void;
} = { expire: unreachable, drop: unreachable };

/**
 * A socket's read buffer, and the read calls waiting on it. Bytes
 * `[start, end)` of `bytes` are buffered. Only `reserve`, `reserveAhead` and
 * `filled` move `end` or the buffer itself, and never while a read of the
 * connection is in flight; read calls only advance `start`.
 */
export class ReadBuffer {
  bytes: Uint8Array = EMPTY;
  start = 0;
  end = 0;
  /** The connection ended: no byte will follow those buffered. */
  eof = false;
  /** Why reading the connection failed, if it did. */
  error: unknown = undefined;
  /**
   * The read calls waiting, in call order. While none waits it is the one
   * shared empty array, which nothing adds to: `push` makes a new array.
   */
  readers: AnyRead[] = NO_READERS;
  /** For `watchEnd`; made when first needed. */
  #endWatchers: (() => void)[] | undefined = undefined;
  /** The small buffer for reads that may wait long; made when first used. */
  #small: Uint8Array | undefined = undefined;
  /** Whether `bytes` came from the shared pool. */
  #pooled = false;
  /** Whether the last read of the connection filled what it asked for. */
  #streaming = false;
  /** Bytes the read in flight asked for. */
  #asked = 0;

  /** Bytes buffered. */
  get length(): number {
    return this.end - this.start;
  }

  /**
   * Moves `buf.byteLength` buffered bytes (there must be as many) into
   * `buf`, as a `readFull` that settles at once would.
   */
  take(buf: Uint8Array): void {
    const rs = this.start;
    const need = buf.byteLength;
    buf.set(this.bytes.subarray(rs, rs + need));
    this.start = rs + need;
  }

  /** Queues a read call that must wait for bytes. */
  push(req: AnyRead): void {
    // A queue of one is made anew rather than pushed to: an empty array
    // that grows makes room for 17, most sockets never queue two reads, and
    // an idle socket then holds no array of its own.
    if (this.readers.length === 0) this.readers = [req];
    else this.readers.push(req);
  }

  /**
   * Settles the waiting calls, in order, while the buffer allows; at the
   * end of the stream, tells those who watch for it.
   */
  serve(): void {
    const readers = this.readers;
    while (readers.length > 0) {
      if (!this.complete(readers[0]!)) break;
      forget(readers.shift()!);
      if (readers.length === 0) this.readers = NO_READERS;
    }
    if (this.watchingEnd && (this.eof || this.error !== undefined)) {
      const watchers = this.#endWatchers!;
      this.#endWatchers = undefined;
      for (const notify of watchers) notify();
    }
  }

  /** Whether someone waits, through `watchEnd`, for the stream to end. */
  get watchingEnd(): boolean {
    return this.#endWatchers !== undefined && this.#endWatchers.length > 0;
  }

  /**
   * Resolves when `serve` finds the stream ended (or failed); never, if
   * `signal` aborts first or the socket is `closed`. The socket reads ahead
   * meanwhile, while nobody reads.
   */
  watchEnd(signal: AbortSignal, closed: boolean): Promise<void> {
    if (this.eof || this.error !== undefined) return Promise.resolve();
    return new Promise<void>((resolve) => {
      if (closed || signal.aborted) return;
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
      (this.#endWatchers ??= []).push(notify);
    });
  }

  /**
   * A caller stopped waiting: its call rejects with `reason`, and the bytes
   * stay. Returns whether calls behind it may now settle (it was first).
   */
  drop(req: AnyRead, reason: unknown): boolean {
    const i = this.readers.indexOf(req);
    if (i < 0) return false;
    this.readers.splice(i, 1);
    if (this.readers.length === 0) this.readers = NO_READERS;
    forget(req);
    req.fail(reason);
    return i === 0 && this.readers.length > 0;
  }

  /**
   * A read call came while the readable stream is not locked: a read the
   * stream left pending (its reader was released) must not take the bytes.
   */
  withdrawChunks(): void {
    const readers = this.readers;
    for (let i = readers.length - 1; i >= 0; i--) {
      const req = readers[i]!;
      if (req.kind !== CHUNK) continue;
      readers.splice(i, 1);
      forget(req);
      req.resolve(undefined);
    }
    if (readers.length === 0) this.readers = NO_READERS;
  }

  /** Rejects every waiting call with `reason`; the bytes stay. */
  clear(reason: unknown): void {
    const readers = this.readers;
    this.readers = NO_READERS;
    for (const req of readers) {
      forget(req);
      req.fail(reason);
    }
  }

  /**
   * Makes room for a read of the connection on behalf of `head`, the read
   * call first in line, and returns the view to read into.
   */
  reserve(head: AnyReadCall): Uint8Array {
    const have = this.end - this.start;
    if (have === 0 && !this.#streaming) return this.useSmall();
    if (have === 0) this.start = this.end = 0;
    // At least a pooled buffer; grown once, to what the call needs.
    const size = this.bytes.byteLength;
    const cap = size < READ_BUFFER_SIZE ? READ_BUFFER_SIZE : size;
    let want = cap;
    switch (head.kind) {
      case RECV: {
        // Let one read of the connection fill the caller's whole buffer.
        const size = head.buf!.byteLength;
        if (size > cap) want = size < MAX_RECV_BUFFER ? size : MAX_RECV_BUFFER;
        break;
      }
      case FULL:
        if (head.buf!.byteLength > cap) want = head.buf!.byteLength;
        break;
      case PEEK:
        if (head.max > cap) want = head.max;
        break;
      case UNTIL:
      case TEXT:
      case LINE:
        // A full buffer and no delimiter yet (else it had settled): grow
        // towards the limit, which is above `have`.
        if (have >= cap) want = Math.min(2 * cap, head.max);
        break;
    }
    if (want > size) this.grow(want);
    else this.compact();
    // The whole buffer needs no view of its own (one object less a read).
    const view = this.end === 0 ? this.bytes : this.bytes.subarray(this.end);
    this.#asked = view.byteLength;
    return view;
  }

  /**
   * Makes room to read ahead while nobody reads (to see the end of the
   * stream), up to {@linkcode READ_AHEAD_MAX} bytes buffered in all, and
   * returns the view to read into; undefined when that much is buffered.
   */
  reserveAhead(): Uint8Array | undefined {
    const have = this.end - this.start;
    if (have >= READ_AHEAD_MAX) return undefined;
    if (have === 0 && !this.#streaming) return this.useSmall();
    if (have === 0) this.start = this.end = 0;
    if (this.bytes.byteLength < READ_BUFFER_SIZE) this.grow(READ_BUFFER_SIZE);
    else this.compact();
    if (this.end === this.bytes.byteLength) {
      // Full, and still under the read-ahead limit: grow towards it.
      this.grow(Math.min(2 * this.bytes.byteLength, READ_AHEAD_MAX));
    }
    const end = Math.min(this.bytes.byteLength, this.start + READ_AHEAD_MAX);
    const view = this.bytes.subarray(this.end, end);
    this.#asked = view.byteLength;
    return view;
  }

  /**
   * The read of the connection into the reserved view brought `n` bytes.
   * The peer streams when it filled the view, or brought at least a pooled
   * buffer's worth: a stream read into a bigger buffer seldom fills it, and
   * the small buffer would then halve the size of every other read.
   */
  filled(n: number): void {
    this.end += n;
    this.#streaming = n === this.#asked || n >= READ_BUFFER_SIZE;
  }

  /**
   * Nothing is buffered and no read of the connection is in flight: gives
   * a pooled buffer back, so that a socket holds one only while a read
   * fills it or bytes wait in it (a streaming echo then stages its send in
   * the buffer its recv just emptied). The next `reserve` takes one again.
   */
  release(): void {
    if (this.#pooled && this.end === this.start) {
      buffers.put(this.bytes);
      this.#pooled = false;
      this.bytes = EMPTY;
      this.start = this.end = 0;
    }
  }

  /**
   * Settles `req` from the buffered bytes if it can: true when it settled
   * (resolved, or rejected with the read error, end of stream, or its
   * limit). Takes the bytes a resolved call consumes.
   */
  complete(req: AnyReadCall): boolean {
    const bytes = this.bytes;
    const rs = this.start;
    const have = this.end - rs;
    switch (req.kind) {
      case RECV: {
        const buf = req.buf!;
        if (have > 0 || buf.byteLength === 0) {
          const n = have < buf.byteLength ? have : buf.byteLength;
          buf.set(bytes.subarray(rs, rs + n));
          this.start = rs + n;
          req.resolve(n);
          return true;
        }
        break;
      }
      case FULL: {
        const buf = req.buf!;
        const need = buf.byteLength;
        if (have >= need) {
          this.take(buf);
          req.resolve(buf);
          return true;
        }
        if (this.eof) {
          if (have === 0) {
            req.resolve(null);
          } else {
            buf.set(bytes.subarray(rs, rs + have));
            this.start = rs + have;
            req.fail(
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
      case UNTIL:
      case TEXT:
      case LINE: {
        const end = this.find(req);
        if (end >= 0) {
          if (end > req.max) req.fail(tooLong(req));
          else {
            this.start = rs + end;
            if (req.kind === LINE) req.resolve(decodeLine(bytes, rs, rs + end));
            else if (req.kind === TEXT) {
              req.resolve(latin1(bytes.subarray(rs, rs + end)));
            } else req.resolve(bytes.slice(rs, rs + end));
          }
          return true;
        }
        if (have >= req.max) {
          req.fail(tooLong(req));
          return true;
        }
        if (this.eof) {
          if (have === 0) {
            req.resolve(null);
          } else if (req.kind === LINE) {
            // A last line without a line ending.
            this.start = rs + have;
            req.resolve(decodeLine(bytes, rs, rs + have));
          } else {
            req.fail(
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
      case PEEK: {
        const need = req.max;
        if (have >= need || (this.eof && have > 0)) {
          req.resolve(bytes.slice(rs, rs + (have < need ? have : need)));
          return true;
        }
        break;
      }
      case CHUNK: {
        if (have > 0) {
          req.resolve(bytes.slice(rs, this.end));
          this.start = this.end;
          return true;
        }
        break;
      }
    }
    if (this.eof) {
      req.resolve(null);
      return true;
    }
    if (this.error !== undefined) {
      req.fail(this.error);
      return true;
    }
    return false;
  }

  /**
   * Searches the buffered bytes for the delimiter of a `readUntil` or
   * `readLine` call (or the first to end of its two delimiters): returns
   * the length of the record, delimiter included, or -1. Bytes searched in
   * vain are remembered in `scanned`, so that each byte is looked at about
   * once however many reads a record takes.
   */
  find(req: ReadCall<typeof UNTIL | typeof TEXT | typeof LINE>): number {
    const delim = req.delim!;
    const from = this.start + req.scanned;
    const other = req.delim2;
    if (other !== undefined) return this.findEither(req, delim, other, from);
    const found = indexOf(this.bytes, from, this.end, delim);
    const dlen = delim.byteLength;
    if (found >= 0) return found - this.start + dlen;
    const have = this.end - this.start;
    req.scanned = have >= dlen ? have - dlen + 1 : 0;
    return -1;
  }

  /**
   * `find` for two delimiters (the HTTP server's CRLFCRLF or LFLF, CRLF or
   * LF): one pass over the bytes, checking each delimiter backwards from
   * each byte that ends one, rather than a search for each. The first
   * delimiter wins when both end at the same byte.
   */
  findEither(
    req: ReadCall<typeof UNTIL | typeof TEXT | typeof LINE>,
    a: Uint8Array,
    b: Uint8Array,
    from: number,
  ): number {
    const bytes = this.bytes;
    const end = this.end;
    const alen = a.byteLength;
    const blen = b.byteLength;
    const lastA = a[alen - 1]!;
    const lastB = b[blen - 1]!;
    const shortest = alen < blen ? alen : blen;
    for (let i = from + shortest - 1; i < end; i++) {
      const c = bytes[i];
      if (
        (c === lastA && endsAt(bytes, i, a, from)) ||
        (c === lastB && endsAt(bytes, i, b, from))
      ) {
        return i + 1 - this.start;
      }
    }
    const have = end - this.start;
    const span = alen > blen ? alen : blen;
    req.scanned = have >= span ? have - span + 1 : 0;
    return -1;
  }

  // No #private methods: they would cost every instance a slot (the
  // class brand), and a socket has one of these for life.

  /**
   * With nothing buffered, makes the small buffer the read buffer (giving a
   * pooled one back) and returns it, as the view to read into.
   */
  useSmall(): Uint8Array {
    if (this.#pooled) {
      buffers.put(this.bytes);
      this.#pooled = false;
    }
    this.start = this.end = 0;
    this.bytes = this.#small ??= new Uint8Array(SMALL_READ);
    this.#asked = SMALL_READ;
    return this.bytes;
  }

  /**
   * Moves the buffered bytes to a buffer of at least `size` bytes (a pooled
   * one when it is big enough). No read of the connection may be in flight.
   */
  grow(size: number): void {
    const have = this.end - this.start;
    const pooled = size <= buffers.max;
    const bigger = pooled ? buffers.get(size) : new Uint8Array(size);
    bigger.set(this.bytes.subarray(this.start, this.end));
    if (this.#pooled) buffers.put(this.bytes);
    this.bytes = bigger;
    this.#pooled = pooled;
    this.start = 0;
    this.end = have;
  }

  /**
   * Moves the buffered bytes to the start of the buffer, if they are not
   * there and less than {@linkcode COMPACT_BELOW} bytes of room are left
   * behind them. No read of the connection may be in flight.
   */
  compact(): void {
    if (this.start > 0 && this.bytes.byteLength - this.end < COMPACT_BELOW) {
      this.bytes.copyWithin(0, this.start, this.end);
      this.end -= this.start;
      this.start = 0;
    }
  }
}

/** Whether `delim` ends at `bytes[i]` and starts at `from` or later. */
function endsAt(
  bytes: Uint8Array,
  i: number,
  delim: Uint8Array,
  from: number,
): boolean {
  const start = i - delim.byteLength + 1;
  if (start < from) return false;
  for (let k = delim.byteLength - 2; k >= 0; k--) {
    if (bytes[start + k] !== delim[k]) return false;
  }
  return true;
}

/** The LimitExceededError of a `readUntil` or `readLine` over its limit. */
function tooLong(
  req: ReadCall<typeof UNTIL | typeof TEXT | typeof LINE>,
): LimitExceededError {
  return req.kind === LINE
    ? new LimitExceededError(
      req.max,
      `Line too long: no end of line within ${req.max} bytes`,
    )
    : new LimitExceededError(req.max);
}

/** Decodes a line as UTF-8 without its `\n` or `\r\n`. */
function decodeLine(bytes: Uint8Array, from: number, to: number): string {
  if (to > from && bytes[to - 1] === 0x0a) {
    to--;
    if (to > from && bytes[to - 1] === 0x0d) to--;
  }
  return decoder.decode(bytes.subarray(from, to));
}
