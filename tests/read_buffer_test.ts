// Copyright 2026 the @corothread/evthread authors. MIT license.
// Unit tests of a socket's read buffer (src/_read_buffer.ts) without
// sockets: bytes are "received" by writing into the view `reserve` gives and
// calling `filled`, as the socket does after a read of the connection; read
// calls are plain objects that record how they settled.

import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertStrictEquals,
} from "@std/assert";
import { buffers } from "../src/_buffer_pool.ts";
import {
  type AnyRead,
  CHUNK,
  FULL,
  LINE,
  MAX_RECV_BUFFER,
  PEEK,
  READ_AHEAD_MAX,
  READ_BUFFER_SIZE,
  ReadBuffer,
  type ReadCall,
  type ReadKind,
  ReadRequest,
  type ReadResults,
  RECV,
  SMALL_READ,
  TEXT,
  UNTIL,
} from "../src/_read_buffer.ts";
import { LimitExceededError } from "../src/errors.ts";
import type { EvSocket } from "../src/ev_socket.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const CRLF = encoder.encode("\r\n");
const LF = encoder.encode("\n");

/** A read call that records how it settled. */
class Probe<K extends ReadKind> implements ReadCall<K> {
  readonly kind: K;
  readonly buf: Uint8Array | undefined;
  readonly delim: Uint8Array | undefined;
  readonly delim2: Uint8Array | undefined;
  readonly max: number;
  scanned = 0;
  settled = false;
  value: ReadResults[K] | undefined;
  error: unknown;

  constructor(
    kind: K,
    fields: {
      buf?: Uint8Array;
      delim?: Uint8Array;
      delim2?: Uint8Array;
      max?: number;
    } = {},
  ) {
    this.kind = kind;
    this.buf = fields.buf;
    this.delim = fields.delim ?? (kind === LINE ? LF : undefined);
    this.delim2 = fields.delim2;
    this.max = fields.max ?? 0;
  }

  resolve(value: ReadResults[K]): void {
    assert(!this.settled, "settled twice");
    this.settled = true;
    this.value = value;
  }

  fail(reason: unknown): void {
    assert(!this.settled, "settled twice");
    this.settled = true;
    this.error = reason;
  }
}

const recv = (size: number) => new Probe(RECV, { buf: new Uint8Array(size) });
const full = (size: number) => new Probe(FULL, { buf: new Uint8Array(size) });
const until = (delim: Uint8Array, max: number, delim2?: Uint8Array) =>
  new Probe(
    UNTIL,
    delim2 === undefined ? { delim, max } : { delim, max, delim2 },
  );
const line = (max: number) => new Probe(LINE, { max });
const peek = (n: number) => new Probe(PEEK, { max: n });

/**
 * Receives `bytes` as reads of the connection on behalf of `head` would:
 * as many reads as the reserved views need. Returns the views' sizes.
 */
function receive(
  rb: ReadBuffer,
  head: Probe<ReadKind>,
  bytes: Uint8Array | string,
): number[] {
  const data = typeof bytes === "string" ? encoder.encode(bytes) : bytes;
  const sizes: number[] = [];
  let off = 0;
  while (off < data.byteLength) {
    const view = rb.reserve(head as unknown as ReadCall<typeof RECV>);
    sizes.push(view.byteLength);
    const n = Math.min(view.byteLength, data.byteLength - off);
    view.set(data.subarray(off, off + n));
    rb.filled(n);
    off += n;
  }
  return sizes;
}

function text(rb: ReadBuffer): string {
  return decoder.decode(rb.bytes.subarray(rb.start, rb.end));
}

// ----------------------------------------------------------------- growth

Deno.test("ReadBuffer.reserve() reads into the small buffer while the peer sends little, and a pooled one while it streams", () => {
  const rb = new ReadBuffer();
  const probe = recv(4096);
  const first = rb.reserve(probe);
  assertEquals(first.byteLength, SMALL_READ);
  first.fill(1);
  rb.filled(SMALL_READ); // filled what it asked for: the peer streams
  assert(rb.complete(probe));
  assertEquals(probe.value, SMALL_READ);
  const second = rb.reserve(recv(4096));
  assertEquals(rb.bytes.byteLength, READ_BUFFER_SIZE);
  assertEquals(second.byteLength, READ_BUFFER_SIZE);
  rb.filled(10); // a short read: the peer had sent all it had
  assert(rb.complete(recv(4096)));
  // Nothing buffered and not streaming: back to the small buffer, and the
  // pooled one goes back to the pool.
  assertEquals(rb.reserve(recv(4096)).byteLength, SMALL_READ);
  assertEquals(rb.bytes.byteLength, SMALL_READ);
});

Deno.test("ReadBuffer.reserve() keeps the pooled buffer after a short read of at least READ_BUFFER_SIZE bytes", () => {
  const rb = new ReadBuffer();
  receive(rb, recv(1), "x".repeat(SMALL_READ)); // now streaming
  assert(rb.complete(recv(SMALL_READ)));
  assertEquals(rb.reserve(recv(65_536)).byteLength, 65_536);
  rb.filled(READ_BUFFER_SIZE); // short of the 64 KiB asked, but a stream
  assert(rb.complete(recv(65_536)));
  assertEquals(rb.reserve(recv(65_536)).byteLength, 65_536);
  rb.filled(READ_BUFFER_SIZE - 1); // less: the peer had sent all it had
  assert(rb.complete(recv(65_536)));
  assertEquals(rb.reserve(recv(65_536)).byteLength, SMALL_READ);
});

Deno.test("ReadBuffer.release() gives an emptied pooled buffer back, and keeps one with bytes in it", () => {
  const rb = new ReadBuffer();
  receive(rb, recv(1), "x".repeat(SMALL_READ)); // now streaming
  assert(rb.complete(recv(SMALL_READ)));
  rb.reserve(recv(65_536));
  rb.filled(100);
  const pooled = rb.bytes;
  rb.release(); // 100 bytes wait in it
  assert(rb.bytes === pooled);
  assert(rb.complete(recv(65_536)));
  rb.release();
  assertEquals(rb.bytes.byteLength, 0);
  const again = buffers.get(65_536);
  assert(again === pooled, "the pool has it again");
  buffers.put(again);
});

Deno.test("ReadBuffer.reserve() grows to a recv's buffer, up to MAX_RECV_BUFFER", () => {
  const rb = new ReadBuffer();
  receive(rb, recv(1), "x".repeat(SMALL_READ)); // now streaming
  assertEquals(rb.reserve(recv(100_000)).byteLength, 131_072 - SMALL_READ);
  const huge = new ReadBuffer();
  receive(huge, recv(1), "x".repeat(SMALL_READ));
  huge.reserve(recv(8 * MAX_RECV_BUFFER));
  assertEquals(huge.bytes.byteLength, MAX_RECV_BUFFER);
});

Deno.test("ReadBuffer.reserve() grows to a readFull's or a peek's size, beyond the pool", () => {
  const rb = new ReadBuffer();
  receive(rb, recv(1), "x".repeat(SMALL_READ));
  const size = 3 * buffers.max;
  rb.reserve(full(size));
  assertEquals(rb.bytes.byteLength, size);
  assertEquals(text(rb), "x".repeat(SMALL_READ), "the bytes moved along");
  const other = new ReadBuffer();
  receive(other, recv(1), "y".repeat(SMALL_READ));
  other.reserve(peek(100_000));
  assertEquals(other.bytes.byteLength, 131_072);
});

Deno.test("ReadBuffer.reserve() doubles a full buffer for a delimiter search, up to its limit", () => {
  const rb = new ReadBuffer();
  const probe = until(CRLF, 40_000);
  receive(rb, probe, "z".repeat(SMALL_READ + READ_BUFFER_SIZE - SMALL_READ));
  assertEquals(rb.length, READ_BUFFER_SIZE);
  assert(!rb.complete(probe));
  rb.reserve(probe);
  assertEquals(rb.bytes.byteLength, 2 * READ_BUFFER_SIZE);
  rb.filled(2 * READ_BUFFER_SIZE - rb.end);
  assert(!rb.complete(probe));
  rb.reserve(probe); // 40,000 rounds up to the pool's 64 KiB class
  assertEquals(rb.bytes.byteLength, 65_536);
});

Deno.test("ReadBuffer.reserve() moves the bytes to the start when little room is left", () => {
  const rb = new ReadBuffer();
  receive(rb, recv(1), "a".repeat(SMALL_READ)); // now streaming
  // Into the pooled buffer after the 512 bytes: all but 100 bytes of it.
  receive(rb, recv(1), "b".repeat(READ_BUFFER_SIZE - SMALL_READ - 100));
  assert(rb.complete(recv(READ_BUFFER_SIZE - 300)));
  assertEquals(rb.length, 200);
  assertEquals(rb.start, READ_BUFFER_SIZE - 300);
  const view = rb.reserve(recv(1)); // 100 bytes of room left: compact
  assertEquals(rb.start, 0);
  assertEquals(text(rb), "b".repeat(200));
  assertEquals(view.byteLength, READ_BUFFER_SIZE - 200);
});

Deno.test("ReadBuffer.reserveAhead() reads ahead up to READ_AHEAD_MAX bytes, then stops", () => {
  const rb = new ReadBuffer();
  assertEquals(rb.reserveAhead()!.byteLength, SMALL_READ);
  rb.filled(SMALL_READ);
  let total = SMALL_READ;
  for (let view = rb.reserveAhead(); view !== undefined;) {
    rb.filled(view.byteLength);
    total += view.byteLength;
    view = rb.reserveAhead();
  }
  assertEquals(total, READ_AHEAD_MAX);
  assertEquals(rb.length, READ_AHEAD_MAX);
});

// --------------------------------------------------------------- settling

Deno.test("ReadBuffer.complete() gives a recv what is buffered, at most its buffer's length", () => {
  const rb = new ReadBuffer();
  const waiting = recv(4);
  assert(!rb.complete(waiting));
  receive(rb, waiting, "abcdef");
  assert(rb.complete(waiting));
  assertEquals(waiting.value, 4);
  assertEquals(decoder.decode(waiting.buf), "abcd");
  const rest = recv(64);
  assert(rb.complete(rest));
  assertEquals(rest.value, 2);
  assertEquals(rb.length, 0);
  const empty = recv(0);
  assert(rb.complete(empty));
  assertEquals(empty.value, 0);
});

Deno.test("ReadBuffer.complete() settles a readFull only when all its bytes are there", () => {
  const rb = new ReadBuffer();
  const probe = full(5);
  receive(rb, probe, "abc");
  assert(!rb.complete(probe));
  assertEquals(rb.length, 3, "nothing taken yet");
  receive(rb, probe, "def");
  assert(rb.complete(probe));
  assertEquals(decoder.decode(probe.value!), "abcde");
  assertEquals(text(rb), "f");
});

Deno.test("ReadBuffer.complete() ends a readFull at end of stream: UnexpectedEof with bytesRead, or null", () => {
  const rb = new ReadBuffer();
  receive(rb, recv(1), "ab");
  rb.eof = true;
  const partial = full(5);
  assert(rb.complete(partial));
  assertInstanceOf(partial.error, Deno.errors.UnexpectedEof);
  assertEquals((partial.error as Error & { bytesRead?: number }).bytesRead, 2);
  assertEquals(decoder.decode(partial.buf!.subarray(0, 2)), "ab");
  const none = full(5);
  assert(rb.complete(none));
  assertStrictEquals(none.value, null);
});

Deno.test("ReadBuffer.complete() returns a readUntil's record with its delimiter and keeps the rest", () => {
  const rb = new ReadBuffer();
  const probe = until(CRLF, 100);
  receive(rb, probe, "GET /\r\nHost: x\r\n");
  assert(rb.complete(probe));
  assertEquals(decoder.decode(probe.value!), "GET /\r\n");
  assertEquals(text(rb), "Host: x\r\n");
});

Deno.test("ReadBuffer.complete() rejects a record over maxLength with LimitExceededError and keeps the bytes", () => {
  const rb = new ReadBuffer();
  const found = until(CRLF, 4);
  receive(rb, found, "abcd\r\n");
  assert(rb.complete(found));
  assertInstanceOf(found.error, LimitExceededError);
  assertEquals(
    (found.error as Error).message,
    "No delimiter found within the limit of 4 bytes",
  );
  assertEquals(rb.length, 6);
  const lineProbe = line(4);
  assert(rb.complete(lineProbe));
  assertEquals(
    (lineProbe.error as Error).message,
    "Line too long: no end of line within 4 bytes",
  );
  // Without any delimiter yet, but already max bytes: the same.
  const rb2 = new ReadBuffer();
  const notFound = line(3);
  receive(rb2, notFound, "abc");
  assert(rb2.complete(notFound));
  assertInstanceOf(notFound.error, LimitExceededError);
  assertEquals(rb2.length, 3);
});

Deno.test("ReadBuffer.find() finds a delimiter split across reads, scanning each byte about once", () => {
  const rb = new ReadBuffer();
  const probe = until(encoder.encode("\r\n\r\n"), 1000);
  receive(rb, probe, "Host: x\r\n\r"); // 10 bytes
  assertEquals(rb.find(probe), -1);
  // Only the last 3 bytes could start the delimiter: the next search
  // starts at them.
  assertEquals(probe.scanned, 10 - 4 + 1);
  receive(rb, probe, "\nbody");
  assertEquals(rb.find(probe), 11);
  assert(rb.complete(probe));
  assertEquals(decoder.decode(probe.value!), "Host: x\r\n\r\n");
});

Deno.test("ReadBuffer.find() with two delimiters takes the one that ends first", () => {
  const rb = new ReadBuffer();
  const probe = until(CRLF, 100, LF);
  receive(rb, probe, "a\nb\r\n");
  assertEquals(rb.find(probe), 2); // "a\n"
  assert(rb.complete(probe));
  const crlf = until(CRLF, 100, LF);
  assertEquals(rb.find(crlf), 3); // "b\r\n": both end at the same byte
});

Deno.test("ReadBuffer.complete() gives a text read its record as latin1, one char per byte, and keeps the rest", () => {
  const rb = new ReadBuffer();
  const head = new Probe(TEXT, {
    delim: encoder.encode("\r\n\r\n"),
    delim2: encoder.encode("\n\n"),
    max: 100,
  });
  // A field value with obs-text (0xe9, 0xff) and UTF-8's bytes for "é":
  // each byte is one char, nothing is decoded as UTF-8.
  const bytes = new Uint8Array([
    ...encoder.encode("GET / HTTP/1.1\r\nX: "),
    0xe9,
    0xff,
    0xc3,
    0xa9,
    ...encoder.encode("\r\n\r\nnext"),
  ]);
  receive(rb, head, bytes.subarray(0, 20));
  assert(!rb.complete(head), "no blank line yet");
  receive(rb, head, bytes.subarray(20));
  assert(rb.complete(head));
  const value = head.value!;
  assertEquals(value.length, bytes.byteLength - 4);
  for (let i = 0; i < value.length; i++) {
    assertEquals(value.charCodeAt(i), bytes[i], `char ${i}`);
  }
  assertEquals(text(rb), "next");
  // The second delimiter, over the limit, and end of stream, as readUntil.
  const rb2 = new ReadBuffer();
  const bare = new Probe(TEXT, { delim: CRLF, delim2: LF, max: 10 });
  receive(rb2, bare, "a\nb");
  assert(rb2.complete(bare));
  assertEquals(bare.value, "a\n");
  const long = new Probe(TEXT, { delim: CRLF, max: 2 });
  receive(rb2, long, "cd\r\n");
  assert(rb2.complete(long));
  assertInstanceOf(long.error, LimitExceededError);
  const rb3 = new ReadBuffer();
  const cut = new Probe(TEXT, { delim: CRLF, max: 10 });
  receive(rb3, cut, "partial");
  rb3.eof = true;
  assert(rb3.complete(cut));
  assertInstanceOf(cut.error, Deno.errors.UnexpectedEof);
  assertEquals(rb3.length, 7);
});

Deno.test("ReadBuffer.complete() gives a readUntil UnexpectedEof for a partial record at end of stream", () => {
  const rb = new ReadBuffer();
  const probe = until(CRLF, 100);
  receive(rb, probe, "partial");
  rb.eof = true;
  assert(rb.complete(probe));
  assertInstanceOf(probe.error, Deno.errors.UnexpectedEof);
  assertEquals(rb.length, 7, "the bytes stay for recv");
});

Deno.test("ReadBuffer.complete() decodes a line without LF or CRLF, and a last line at end of stream", () => {
  const rb = new ReadBuffer();
  const first = line(100);
  receive(rb, first, "one\r\ntwo\nhéllo\r");
  assert(rb.complete(first));
  assertEquals(first.value, "one");
  const second = line(100);
  assert(rb.complete(second));
  assertEquals(second.value, "two");
  const last = line(100);
  assert(!rb.complete(last));
  rb.eof = true;
  assert(rb.complete(last));
  assertEquals(last.value, "héllo\r", "only a final LF is a line ending");
  const after = line(100);
  assert(rb.complete(after));
  assertStrictEquals(after.value, null);
});

Deno.test("ReadBuffer.complete() lets a peek copy the first bytes without taking them", () => {
  const rb = new ReadBuffer();
  const probe = peek(3);
  receive(rb, probe, "GE");
  assert(!rb.complete(probe));
  receive(rb, probe, "T /");
  assert(rb.complete(probe));
  assertEquals(decoder.decode(probe.value!), "GET");
  assertEquals(rb.length, 5);
  rb.eof = true;
  const more = peek(10);
  assert(rb.complete(more));
  assertEquals(decoder.decode(more.value!), "GET /", "fewer at end of stream");
});

Deno.test("ReadBuffer.complete() gives a stream chunk everything buffered", () => {
  const rb = new ReadBuffer();
  const probe = new Probe(CHUNK);
  assert(!rb.complete(probe));
  receive(rb, probe, "chunk");
  assert(rb.complete(probe));
  assertEquals(decoder.decode(probe.value!), "chunk");
  assertEquals(rb.length, 0);
});

Deno.test("ReadBuffer.complete() serves buffered bytes before a read error, then fails with it", () => {
  const rb = new ReadBuffer();
  receive(rb, recv(1), "ab");
  const error = new Deno.errors.ConnectionReset("reset");
  rb.error = error;
  const first = recv(10);
  assert(rb.complete(first));
  assertEquals(first.value, 2);
  const second = recv(10);
  assert(rb.complete(second));
  assertStrictEquals(second.error, error);
});

// ------------------------------------------------------------------ queue

/** A socket stand-in: the queue only hands it to hooks, never used here. */
const NO_SOCKET = {} as EvSocket;

Deno.test("ReadBuffer.serve() settles waiting calls in order and stops at the first that must wait", async () => {
  const rb = new ReadBuffer();
  const a = ReadRequest.line(NO_SOCKET, 100);
  const b = ReadRequest.full(NO_SOCKET, new Uint8Array(10));
  const c = ReadRequest.recv(NO_SOCKET, new Uint8Array(10));
  for (const req of [a, b, c] as AnyRead[]) rb.push(req);
  receive(rb, new Probe(RECV, { buf: new Uint8Array(1) }), "line\n12345");
  rb.serve();
  assertEquals(await a.promise, "line");
  assertEquals(rb.readers.length, 2, "readFull waits for 5 more bytes");
  receive(rb, new Probe(RECV, { buf: new Uint8Array(1) }), "67890xy");
  rb.serve();
  assertEquals(decoder.decode((await b.promise)!), "1234567890");
  assertEquals(await c.promise, 2);
  assertEquals(rb.readers.length, 0);
});

Deno.test("ReadBuffer.drop() rejects one call, keeps the bytes, and says whether calls behind it may settle", async () => {
  const rb = new ReadBuffer();
  const a = ReadRequest.full(NO_SOCKET, new Uint8Array(100));
  const b = ReadRequest.recv(NO_SOCKET, new Uint8Array(100));
  rb.push(a);
  rb.push(b);
  receive(rb, new Probe(RECV, { buf: new Uint8Array(1) }), "abc");
  const reason = new Error("timed out");
  assert(rb.drop(a, reason), "b may now take the bytes");
  let caught: unknown;
  await a.promise.catch((e) => caught = e);
  assertStrictEquals(caught, reason);
  assertEquals(rb.length, 3);
  rb.serve();
  assertEquals(await b.promise, 3);
  assert(!rb.drop(b, reason), "no longer waiting");
});

Deno.test("ReadBuffer.clear() rejects every waiting call; their promises are already handled", async () => {
  const rb = new ReadBuffer();
  const calls: AnyRead[] = [
    ReadRequest.recv(NO_SOCKET, new Uint8Array(1)),
    ReadRequest.line(NO_SOCKET, 10),
    ReadRequest.peek(NO_SOCKET, 1),
  ];
  for (const req of calls) rb.push(req);
  const reason = new Error("closed");
  const seen: unknown[] = [];
  const listener = (event: PromiseRejectionEvent) => {
    event.preventDefault();
    seen.push(event.reason);
  };
  globalThis.addEventListener("unhandledrejection", listener);
  try {
    rb.clear(reason); // nobody awaits these
    // A rejection of our own, reported only after any earlier ones.
    const marker = new Error("marker");
    const { promise, resolve } = Promise.withResolvers<void>();
    const onMarker = (event: PromiseRejectionEvent) => {
      if (event.reason === marker) resolve();
    };
    globalThis.addEventListener("unhandledrejection", onMarker);
    Promise.reject(marker);
    await promise;
    globalThis.removeEventListener("unhandledrejection", onMarker);
  } finally {
    globalThis.removeEventListener("unhandledrejection", listener);
  }
  assertEquals(seen.filter((r) => r === reason), []);
  assertEquals(rb.readers.length, 0);
  for (const req of calls) {
    let caught: unknown;
    await req.promise.catch((e) => caught = e);
    assertStrictEquals(caught, reason, "an awaiting caller still gets it");
  }
});

Deno.test("ReadBuffer.withdrawChunks() resolves the stream's pending reads with undefined", async () => {
  const rb = new ReadBuffer();
  const chunk = ReadRequest.chunk(NO_SOCKET);
  const other = ReadRequest.recv(NO_SOCKET, new Uint8Array(1));
  rb.push(chunk);
  rb.push(other);
  rb.withdrawChunks();
  assertStrictEquals(await chunk.promise, undefined);
  assertEquals(rb.readers, [other]);
});

Deno.test("ReadBuffer.watchEnd() resolves once serve() sees the end of the stream, unless its signal aborted", async () => {
  const rb = new ReadBuffer();
  const stop = new AbortController();
  const watched = rb.watchEnd(new AbortController().signal, false);
  const abandoned = rb.watchEnd(stop.signal, false);
  let abandonedEnded = false;
  abandoned.then(() => abandonedEnded = true);
  assert(rb.watchingEnd);
  stop.abort();
  rb.eof = true;
  rb.serve();
  await watched;
  assert(!rb.watchingEnd);
  await Promise.resolve();
  assert(!abandonedEnded);
  await rb.watchEnd(stop.signal, false); // already ended: at once
});

Deno.test("ReadBuffer.find() with two delimiters agrees with a plain search, fed in random pieces", () => {
  // Seeded, bounded: 2,000 inputs over { CR, LF, "a" } (the bytes that
  // matter), each received in random pieces, searched after every piece.
  let seed = 12345;
  const random = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const pairs: [string, string][] = [["\r\n\r\n", "\n\n"], ["\r\n", "\n"]];
  const alphabet = [0x0d, 0x0a, 0x61];
  for (let round = 0; round < 2000; round++) {
    const [a, b] = pairs[round % 2]!;
    const input = Array.from(
      { length: 1 + random(24) },
      () => alphabet[random(3)]!,
    );
    // The earliest end of either delimiter; `a` wins a tie.
    const text = String.fromCharCode(...input);
    let expected = -1;
    for (let end = 1; end <= text.length && expected < 0; end++) {
      const seen = text.slice(0, end);
      if (seen.endsWith(a) || seen.endsWith(b)) expected = end;
    }
    const rb = new ReadBuffer();
    const probe = new Probe(TEXT, {
      delim: encoder.encode(a),
      delim2: encoder.encode(b),
      max: 1000,
    });
    let fed = 0;
    let found = -1;
    while (fed < input.length && found < 0) {
      const n = 1 + random(input.length - fed);
      receive(rb, probe, new Uint8Array(input.slice(fed, fed + n)));
      fed += n;
      found = rb.find(probe);
      if (found < 0) {
        assert(expected < 0 || expected > fed, JSON.stringify(text));
      }
    }
    assertEquals(found, expected, JSON.stringify(text));
  }
});
