// Copyright 2026 the @corothread/evthread authors. MIT license.
// Writing responses (RFC 9112 sections 4, 6 and 7; RFC 9110 section 6.4.1).

import type { CoarseTimeouts } from "./_coarse_timeouts.ts";
import { socketInternals } from "./_internal.ts";
import type { EvSocket } from "./ev_socket.ts";

const encoder = new TextEncoder();

const REASONS: Record<number, string> = {
  100: "Continue",
  101: "Switching Protocols",
  200: "OK",
  201: "Created",
  202: "Accepted",
  203: "Non-Authoritative Information",
  204: "No Content",
  205: "Reset Content",
  206: "Partial Content",
  300: "Multiple Choices",
  301: "Moved Permanently",
  302: "Found",
  303: "See Other",
  304: "Not Modified",
  307: "Temporary Redirect",
  308: "Permanent Redirect",
  400: "Bad Request",
  401: "Unauthorized",
  402: "Payment Required",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  406: "Not Acceptable",
  408: "Request Timeout",
  409: "Conflict",
  410: "Gone",
  411: "Length Required",
  412: "Precondition Failed",
  413: "Content Too Large",
  414: "URI Too Long",
  415: "Unsupported Media Type",
  416: "Range Not Satisfiable",
  417: "Expectation Failed",
  418: "I'm a teapot",
  421: "Misdirected Request",
  422: "Unprocessable Content",
  425: "Too Early",
  426: "Upgrade Required",
  428: "Precondition Required",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  451: "Unavailable For Legal Reasons",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
};

/** Status lines with their standard reason, made once. */
const STATUS_LINES = new Map<number, string>(
  Object.entries(REASONS).map((
    [status, reason],
  ) => [Number(status), `HTTP/1.1 ${status} ${reason}\r\n`]),
);

/** The status line for `status`. */
export function statusLine(status: number, statusText = ""): string {
  if (statusText === "" || statusText === REASONS[status]) {
    const line = STATUS_LINES.get(status);
    if (line !== undefined) return line;
  }
  return `HTTP/1.1 ${status} ${statusText || REASONS[status] || ""}\r\n`;
}

let dateSecond = -1;
let dateValue = "";

/** The `Date` field value, computed at most once a second. */
export function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateValue = new Date(now).toUTCString();
  }
  return dateValue;
}

/**
 * Where the server's own messages go: a connection's socket, and the
 * coarse timeouts on which each send arms its send timeout.
 */
export interface Sender {
  socket: EvSocket;
  /** Where the send timeout is armed before each send. */
  timeouts: CoarseTimeouts;
}

/** What the exchange needs from the response writer. */
export interface WriteContext extends Sender {
  /** HEAD: send the fields of the response, not its body. */
  isHead: boolean;
  /** Whether to keep the connection open; `connection: close` when not. */
  keepAlive: boolean;
  /** HTTP/1.0 client: no chunked coding; an unknown length closes. */
  http10: boolean;
  /** Per-send timeout in milliseconds. */
  timeout: number;
  /** Aborted when the exchange must stop (shutdown or disconnect). */
  signal: AbortSignal;
  /**
   * Where to put the abort action for a wait in progress: the connection
   * calls it when `signal` aborts (one listener per connection, not one per
   * read).
   */
  state: {
    onAbort: ((reason: unknown) => void) | undefined;
    /** A buffer for heads with small bodies, reused across responses. */
    scratch?: Uint8Array | undefined;
  };
  /** Set once the first byte of the response is handed to the socket. */
  started: boolean;
  /**
   * Why the client is gone, once a streamed body's watch (`watchClient`)
   * has seen it go; `undefined` until then.
   */
  gone: unknown;
  /**
   * Starts watching for the client going away (end of stream or reset)
   * while a streamed body goes out: when it does, `gone` is set and
   * `state.onAbort` is called with it, which cancels the body stream.
   */
  watchClient(): void;
}

/** A response's status line and fields, before the framing fields. */
export interface ResponseHead {
  /** Status line and fields, each ending in CRLF, `date` included. */
  head: string;
  /** `keepAlive`, or false when the handler set `connection: close`. */
  keepAlive: boolean;
  /** The handler's `content-length`, if it set one. */
  userLength: string | null;
}

/**
 * Serializes a response's status line and fields. The framing fields
 * (`connection`, `content-length`, `transfer-encoding`, `keep-alive`) are
 * the server's to write; a `date` is added unless the handler set one.
 */
export function responseHead(
  response: Response,
  keepAlive: boolean,
): ResponseHead {
  const fields = building;
  fields.head = statusLine(response.status, response.statusText);
  fields.keepAlive = keepAlive;
  fields.userLength = null;
  fields.date = false;
  // forEach: about 5x cheaper than the iterator protocol here; and with a
  // callback made once (its state in `building`), no closure per response.
  response.headers.forEach(addField);
  const result: ResponseHead = {
    head: fields.date ? fields.head : `${fields.head}date: ${httpDate()}\r\n`,
    keepAlive: fields.keepAlive,
    userLength: fields.userLength,
  };
  fields.head = "";
  return result;
}

/** The head `responseHead` is building: forEach is synchronous. */
const building = {
  head: "",
  keepAlive: false,
  userLength: null as string | null,
  date: false,
};

/**
 * Adds a field to `building`; the framing fields (`connection`,
 * `content-length`, `transfer-encoding`, `keep-alive`) are the server's to
 * write, and a handler's `date` replaces the server's.
 */
function addField(value: string, name: string): void {
  switch (name.length) {
    case 4:
      if (name === "date") {
        building.head += `date: ${value}\r\n`;
        building.date = true;
        return;
      }
      break;
    case 10:
      if (name === "connection") {
        // The handler asks to close: honour it (its other tokens are
        // hop-by-hop details the server manages itself).
        if (/(^|,)\s*close\s*(,|$)/i.test(value)) building.keepAlive = false;
        return;
      }
      if (name === "keep-alive") return;
      break;
    case 14:
      if (name === "content-length") {
        building.userLength = value;
        return;
      }
      break;
    case 17:
      if (name === "transfer-encoding") return;
      break;
  }
  building.head += `${name}: ${value}\r\n`;
}

/** Whether a status has no body (RFC 9110 6.4.1). */
function bodyless(status: number): boolean {
  return status < 200 || status === 204 || status === 304;
}

/**
 * Reads the next piece of a response body; rejects when the exchange is
 * aborted or the client has gone (either cancels the reader, which ends a
 * pending read as if the stream were done).
 */
async function next(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  ctx: WriteContext,
): Promise<ReadableStreamReadResult<Uint8Array>> {
  const result = await reader.read();
  throwIfStopped(ctx);
  return result;
}

/** Throws if the exchange was aborted or the client has gone. */
function throwIfStopped(ctx: WriteContext): void {
  if (ctx.signal.aborted) throw ctx.signal.reason;
  if (ctx.gone !== undefined) throw ctx.gone;
}

/**
 * Microtasks a body has to hand out its first piece before its head goes
 * out alone. A body made from a string, bytes or JSON hands it out within
 * one or two (a `Blob`'s within four); a stream whose source has to wait
 * for I/O or a timer cannot within any number, so the count only needs to
 * cover the synchronous cases. Only microtasks: no timer, no I/O wait.
 */
const FIRST_TICKS = 12;
/** Microtasks more for a stream to report its close after that piece. */
const CLOSE_TICKS = 4;

/**
 * The first read of a response body, followed without awaiting it, and
 * whether the stream has closed.
 */
class FirstRead {
  readonly promise: Promise<ReadableStreamReadResult<Uint8Array>>;
  result: ReadableStreamReadResult<Uint8Array> | undefined = undefined;
  failed = false;
  error: unknown = undefined;
  closed = false;

  constructor(reader: ReadableStreamDefaultReader<Uint8Array>) {
    this.promise = reader.read();
    this.promise.then((result) => {
      this.result = result;
    }, (error) => {
      this.failed = true;
      this.error = error;
    });
    reader.closed.then(() => {
      this.closed = true;
    }, () => {});
  }

  /** Whether the read has not settled yet. */
  get pending(): boolean {
    return this.result === undefined && !this.failed;
  }

  /** Whether a first piece came and the stream was open after it. */
  get open(): boolean {
    return this.result !== undefined && !this.result.done && !this.closed;
  }

  /** Whether the body is complete with its first read (one piece or none). */
  get whole(): boolean {
    return this.result !== undefined && (this.result.done || this.closed);
  }
}

/**
 * Writes a response. Fixed bodies go out with `content-length` in one write
 * with the head. A body that is still streaming after its first piece goes
 * out chunked (HTTP/1.1) or until close (HTTP/1.0), each piece awaited, so
 * a slow client slows the stream down; its head goes out with the first
 * piece if the stream hands it out within a few microtasks, else at once
 * on its own (an event stream's head is not held back by a silent source).
 * While a body streams, the client going away cancels it at once.
 *
 * @returns whether the connection can be reused.
 * @throws {TypeError} when the body was already read or is locked.
 * @throws what the body stream or the socket threw; the response is then
 * incomplete and the caller must close the connection without finishing it.
 */
export async function writeResponse(
  response: Response,
  ctx: WriteContext,
): Promise<boolean> {
  const status = response.status;
  const fields = responseHead(response, ctx.keepAlive);
  let { head, keepAlive } = fields;
  const userLength = fields.userLength;

  const body = response.body;
  if (bodyless(status)) {
    if (body !== null) body.cancel().catch(() => {});
    if (status === 304 && userLength !== null) {
      head += `content-length: ${userLength}\r\n`;
    }
    await send(ctx, head, keepAlive, undefined);
    return keepAlive;
  }
  if (body === null) {
    head += `content-length: ${
      ctx.isHead && userLength !== null ? userLength : "0"
    }\r\n`;
    await send(ctx, head, keepAlive, undefined);
    return keepAlive;
  }
  if (response.bodyUsed) {
    throw new TypeError("The response body was already read (bodyUsed)");
  }
  if (body.locked) {
    throw new TypeError(
      "The response body is locked: a reader was taken from it",
    );
  }

  const reader = body.getReader();
  ctx.state.onAbort = (reason) => reader.cancel(reason).catch(() => {});
  try {
    const first = new FirstRead(reader);
    // Yield (microtasks only) until the first piece is there and, if the
    // stream is still open then, a little longer for it to close. Inline
    // rather than in an async method: one promise less per response.
    for (let i = 0; i < FIRST_TICKS && first.pending; i++) await null;
    for (let i = 0; i < CLOSE_TICKS && first.open; i++) await null;
    if (first.failed) throw first.error;
    throwIfStopped(ctx);
    if (ctx.isHead) {
      // HEAD: the fields of the response, never a wait on its body.
      if (first.whole) {
        const done = first.result!.done;
        head += `content-length: ${
          done ? 0 : checkChunk(first.result!.value).byteLength
        }\r\n`;
      } else if (userLength !== null) {
        head += `content-length: ${userLength}\r\n`;
      } else if (!ctx.http10) head += "transfer-encoding: chunked\r\n";
      reader.cancel().catch(() => {});
      await send(ctx, head, keepAlive, undefined);
      return keepAlive;
    }
    if (first.whole) {
      // A body made from a string or bytes: one piece, then closed.
      const result = first.result!;
      const bytes = result.done ? undefined : checkChunk(result.value);
      head += `content-length: ${bytes?.byteLength ?? 0}\r\n`;
      await send(ctx, head, keepAlive, bytes);
      return keepAlive;
    }
    return await stream(reader, first, ctx, head, keepAlive, userLength);
  } catch (error) {
    reader.cancel(error).catch(() => {});
    throw error;
  } finally {
    ctx.state.onAbort = undefined;
  }
}

/**
 * Sends a body whose length is unknown when its head goes out: with the
 * handler's `content-length` if it gave one (the connection is cut if the
 * stream does not match it), else chunked, or until close for HTTP/1.0.
 * The head goes out with the first piece if it is there, else alone.
 */
async function stream(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  first: FirstRead,
  ctx: WriteContext,
  head: string,
  keepAlive: boolean,
  userLength: string | null,
): Promise<boolean> {
  const declared = userLength !== null && /^\d{1,15}$/.test(userLength)
    ? Number(userLength)
    : -1;
  let chunked = false;
  if (declared >= 0) head += `content-length: ${declared}\r\n`;
  else if (ctx.http10) keepAlive = false; // the end of the body is the close
  else {
    head += "transfer-encoding: chunked\r\n";
    chunked = true;
  }
  // From here on the client may go away at any time: that cancels the
  // stream at once rather than at the next failed write.
  ctx.watchClient();
  let total = 0;
  let result = first.result;
  let piece: Uint8Array | undefined;
  if (result !== undefined && !result.done) {
    piece = checkChunk(result.value);
    total = piece.byteLength;
    if (declared >= 0 && total > declared) {
      throw new RangeError(lengthMismatch(declared));
    }
  }
  await send(
    ctx,
    head,
    keepAlive,
    piece === undefined || piece.byteLength === 0
      ? undefined
      : chunked
      ? chunk(piece)
      : piece,
  );
  if (result === undefined) {
    // The head went out alone: now wait for the first piece.
    result = await first.promise;
    throwIfStopped(ctx);
  } else result = await next(reader, ctx);
  while (!result.done) {
    piece = checkChunk(result.value);
    total += piece.byteLength;
    if (declared >= 0 && total > declared) {
      throw new RangeError(lengthMismatch(declared));
    }
    if (piece.byteLength > 0) await write(ctx, chunked ? chunk(piece) : piece);
    result = await next(reader, ctx);
  }
  if (declared >= 0 && total !== declared) {
    throw new RangeError(lengthMismatch(declared));
  }
  if (chunked) await write(ctx, LAST_CHUNK);
  return keepAlive;
}

const LAST_CHUNK = encoder.encode("0\r\n\r\n");
/** Largest response (head and fixed body) kept as a connection's scratch. */
const SCRATCH_MAX = 16_384;

/** Sends a piece of the response, with the exchange's send timeout. */
function write(ctx: WriteContext, bytes: Uint8Array): Promise<void> {
  return sendOwn(ctx, bytes, ctx.timeout);
}

/**
 * Sends bytes that are the server's own (or a chunk a body stream handed
 * over), with the connection's coarse send timeout armed for `timeout` ms:
 * the socket need not copy them even though the send has a timeout.
 */
function sendOwn(
  to: Sender,
  bytes: Uint8Array,
  timeout: number,
): Promise<void> {
  to.timeouts.armWrite(timeout);
  return socketInternals.sendOwned(to.socket, bytes);
}

function lengthMismatch(declared: number): string {
  return `The response body does not match its content-length (${declared})`;
}

function checkChunk(value: unknown): Uint8Array {
  if (value instanceof Uint8Array) return value;
  throw new TypeError("Response body chunks must be Uint8Arrays");
}

/** One chunk of the chunked coding, with its size line and CRLF. */
export function chunk(piece: Uint8Array): Uint8Array {
  const size = `${piece.byteLength.toString(16)}\r\n`;
  const out = new Uint8Array(size.length + piece.byteLength + 2);
  encoder.encodeInto(size, out);
  out.set(piece, size.length);
  out[out.length - 2] = 0x0d;
  out[out.length - 1] = 0x0a;
  return out;
}

/**
 * Sends the head (plus the connection field) and a body: in one write when
 * the body is small, else the body in a write of its own (the server's:
 * the Response handed it over), rather than copied behind the head.
 */
function send(
  ctx: WriteContext,
  head: string,
  keepAlive: boolean,
  body: Uint8Array | undefined,
): Promise<void> {
  ctx.started = true;
  if (!keepAlive) head += "connection: close\r\n";
  else if (ctx.http10) head += "connection: keep-alive\r\n";
  head += "\r\n";
  if (body !== undefined && body.byteLength > SCRATCH_MAX) {
    return write(ctx, assemble(ctx, head, undefined)).then(() =>
      write(ctx, body)
    );
  }
  return write(ctx, assemble(ctx, head, body));
}

/** Head and body in the connection's scratch buffer (or a new one). */
function assemble(
  ctx: WriteContext,
  head: string,
  body: Uint8Array | undefined,
): Uint8Array {
  const bodyLength = body?.byteLength ?? 0;
  const need = head.length + bodyLength;
  // The connection's scratch buffer is free again: each send is awaited
  // before the next, and a failed one ends the connection.
  let out = ctx.state.scratch;
  if (out === undefined || out.byteLength < need) {
    out = new Uint8Array(need);
    if (need <= SCRATCH_MAX) ctx.state.scratch = out;
  }
  // Latin1 heads: a field value may carry obs-text; encode one char a byte.
  const { read, written } = encoder.encodeInto(head, out);
  let length = written;
  if (read !== head.length || written !== head.length) {
    for (let i = 0; i < head.length; i++) out[i] = head.charCodeAt(i) & 0xff;
    length = head.length;
  }
  if (body !== undefined) out.set(body, length);
  return out.subarray(0, length + bodyLength);
}

/** Writes a minimal response for a request the server rejects. */
export function sendError(
  to: Sender,
  status: number,
  timeout: number,
): Promise<void> {
  const body = `${REASONS[status] ?? "Error"}\n`;
  const text =
    `${statusLine(status)}content-type: text/plain;charset=UTF-8\r\n` +
    `content-length: ${body.length}\r\ndate: ${httpDate()}\r\n` +
    `connection: close\r\n\r\n${body}`;
  return sendOwn(to, encoder.encode(text), timeout);
}

/** Writes `100 Continue`. */
export function sendContinue(to: Sender, timeout: number): Promise<void> {
  return sendOwn(to, CONTINUE, timeout);
}

const CONTINUE = encoder.encode("HTTP/1.1 100 Continue\r\n\r\n");

/** Writes `101 Switching Protocols` with the handler's fields. */
export function sendSwitching(
  to: Sender,
  protocol: string,
  headers: Headers,
  timeout: number,
): Promise<void> {
  let head = statusLine(101);
  // The protocol chosen (such as `websocket`), or else what was asked for.
  head += `connection: upgrade\r\nupgrade: ${
    headers.get("upgrade") ?? protocol
  }\r\n`;
  headers.forEach((value, name) => {
    if (name !== "connection" && name !== "upgrade") {
      head += `${name}: ${value}\r\n`;
    }
  });
  head += "\r\n";
  return sendOwn(to, encoder.encode(head), timeout);
}
