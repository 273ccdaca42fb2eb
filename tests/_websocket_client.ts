// Copyright 2026 the @corothread/evthread authors. MIT license.
// A raw WebSocket client for the tests: it writes the opening handshake and
// frames byte by byte (masked or not, any header form, in chops), and reads
// the server's frames as they are on the wire. Every read has a safety net:
// after WAIT_MS the connection is closed and the read fails, naming what it
// waited for. Also: echo servers in event and pull mode.

import { concat as concatAll, xorshiftBytes } from "./_helpers.ts";
import { assert, assertEquals, fail } from "@std/assert";
import {
  type EvWebSocket,
  type HttpServer,
  serve,
  type ServeHandler,
  type ServeOptions,
  upgradeWebSocket,
  type UpgradeWebSocketOptions,
  WebSocketHandshakeError,
} from "../http.ts";

export const HOST = "127.0.0.1";
/** The most any single wait of a test may take (a safety net). */
export const WAIT_MS = 10_000;

export const encoder: TextEncoder = new TextEncoder();
export const decoder: TextDecoder = new TextDecoder("utf-8", {
  ignoreBOM: true,
});

/** Opcodes. */
export const OP = {
  CONTINUATION: 0,
  TEXT: 1,
  BINARY: 2,
  CLOSE: 8,
  PING: 9,
  PONG: 10,
} as const;

/** A sample key, from RFC 6455 4.2.2, and its accept value. */
export const KEY = "dGhlIHNhbXBsZSBub25jZQ==";
export const ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/** Bytes of a string, UTF-8. */
export function utf8(text: string): Uint8Array<ArrayBuffer> {
  return encoder.encode(text);
}

/** Bytes from numbers. */
export function bytes(...values: number[]): Uint8Array<ArrayBuffer> {
  return new Uint8Array(values);
}

/** Joins byte arrays. */
export function concat(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  return concatAll(parts);
}

/** `n` pseudo-random bytes (xorshift32), different for every `seed`. */
export function randomBytes(n: number, seed = 1): Uint8Array<ArrayBuffer> {
  return xorshiftBytes(n, (seed * 2_654_435_761) >>> 0 || 1);
}

/** `n` bytes of printable ASCII, different for every `seed`. */
export function randomText(n: number, seed = 1): string {
  const raw = randomBytes(n, seed);
  let text = "";
  for (let i = 0; i < n; i += 8192) {
    text += String.fromCharCode(
      ...raw.subarray(i, i + 8192).map((b) => 0x20 + (b % 95)),
    );
  }
  return text;
}

/** Races `promise` against a safety timer; the timer is always cleared. */
export async function within<T>(
  promise: Promise<T>,
  what: string,
  ms = WAIT_MS,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`Timed out after ${ms} ms: ${what}`)),
      ms,
    );
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** How a client frame is written. */
export interface FrameSpec {
  opcode: number;
  payload?: Uint8Array | string;
  /** Default true. */
  fin?: boolean;
  /** The three reserved bits, 0-7. */
  rsv?: number;
  /** Default true (client frames must be masked). */
  masked?: boolean;
  /** Force the 16-bit or 64-bit length form (non-minimal lengths). */
  lengthForm?: 16 | 64;
  /** Declare this length instead of the payload's (64-bit form). */
  declaredLength?: bigint;
  /** The masking key; default a fixed non-zero key. */
  key?: [number, number, number, number];
}

/** A client frame's bytes. */
export function frame(spec: FrameSpec): Uint8Array<ArrayBuffer> {
  const payload = typeof spec.payload === "string"
    ? utf8(spec.payload)
    : spec.payload ?? new Uint8Array(0);
  const masked = spec.masked ?? true;
  const key = spec.key ?? [0x37, 0xfa, 0x21, 0x3d];
  const n = payload.byteLength;
  const form = spec.declaredLength !== undefined
    ? 64
    : spec.lengthForm ?? (n < 126 ? 7 : n < 65_536 ? 16 : 64);
  const head: number[] = [
    ((spec.fin ?? true) ? 0x80 : 0) | ((spec.rsv ?? 0) << 4) | spec.opcode,
  ];
  const maskBit = masked ? 0x80 : 0;
  if (form === 7) {
    head.push(maskBit | n);
  } else if (form === 16) {
    head.push(maskBit | 126, n >> 8, n & 0xff);
  } else {
    const length = spec.declaredLength ?? BigInt(n);
    head.push(maskBit | 127);
    for (let shift = 56n; shift >= 0n; shift -= 8n) {
      head.push(Number((length >> shift) & 0xffn));
    }
  }
  if (masked) head.push(...key);
  const out = new Uint8Array(head.length + n);
  out.set(head);
  for (let i = 0; i < n; i++) {
    out[head.length + i] = masked ? payload[i]! ^ key[i & 3]! : payload[i]!;
  }
  return out;
}

/** A text frame. */
export function text(
  payload: string | Uint8Array,
  fin = true,
): Uint8Array<ArrayBuffer> {
  return frame({ opcode: OP.TEXT, payload, fin });
}

/** A binary frame. */
export function binary(
  payload: Uint8Array,
  fin = true,
): Uint8Array<ArrayBuffer> {
  return frame({ opcode: OP.BINARY, payload, fin });
}

/** A continuation frame. */
export function cont(
  payload: string | Uint8Array,
  fin = true,
): Uint8Array<ArrayBuffer> {
  return frame({ opcode: OP.CONTINUATION, payload, fin });
}

/** A ping frame. */
export function ping(
  payload: string | Uint8Array = "",
): Uint8Array<ArrayBuffer> {
  return frame({ opcode: OP.PING, payload });
}

/** A pong frame. */
export function pong(
  payload: string | Uint8Array = "",
): Uint8Array<ArrayBuffer> {
  return frame({ opcode: OP.PONG, payload });
}

/** A close frame: no body without a code. */
export function close(
  code?: number,
  reason: string | Uint8Array = "",
): Uint8Array<ArrayBuffer> {
  if (code === undefined) return frame({ opcode: OP.CLOSE });
  const r = typeof reason === "string" ? utf8(reason) : reason;
  return frame({
    opcode: OP.CLOSE,
    payload: concat(bytes(code >> 8, code & 0xff), r),
  });
}

/** A frame as the server sent it. */
export interface ServerFrame {
  fin: boolean;
  rsv: number;
  opcode: number;
  masked: boolean;
  payload: Uint8Array<ArrayBuffer>;
}

/** The options of a raw handshake request. */
export interface HandshakeOptions {
  path?: string;
  method?: string;
  httpVersion?: string;
  /** Fields to send; `null` leaves one of the defaults out. */
  headers?: Record<string, string | null>;
  /** Bytes sent right after the head, in the same write. */
  after?: Uint8Array;
}

/** The response head of a handshake. */
export interface HandshakeResponse {
  status: number;
  statusLine: string;
  /** Lower-case names; repeated fields joined with ", ". */
  headers: Record<string, string>;
}

/** A raw client connection. */
export class RawClient implements AsyncDisposable {
  readonly conn: Deno.TcpConn;
  /** Received bytes not yet taken: `#store[#start, #end)`. */
  #store = new Uint8Array(65_536);
  #start = 0;
  #end = 0;
  #eof = false;

  constructor(conn: Deno.TcpConn) {
    this.conn = conn;
  }

  /** Connects, sends the handshake and reads the response head. */
  static async open(
    port: number,
    options: HandshakeOptions = {},
  ): Promise<{ client: RawClient; response: HandshakeResponse }> {
    const conn = await within(
      Deno.connect({ hostname: HOST, port }),
      "connect",
    );
    const client = new RawClient(conn);
    const defaults: Record<string, string> = {
      host: `${HOST}:${port}`,
      upgrade: "websocket",
      connection: "Upgrade",
      "sec-websocket-key": KEY,
      "sec-websocket-version": "13",
    };
    const fields = { ...defaults, ...options.headers };
    let head = `${options.method ?? "GET"} ${options.path ?? "/"} ${
      options.httpVersion ?? "HTTP/1.1"
    }\r\n`;
    for (const [name, value] of Object.entries(fields)) {
      if (value !== null) head += `${name}: ${value}\r\n`;
    }
    head += "\r\n";
    await client.write(concat(utf8(head), options.after ?? new Uint8Array(0)));
    const response = await client.readHead();
    return { client, response };
  }

  /** Writes all of `data`. */
  async write(data: Uint8Array): Promise<void> {
    let at = 0;
    while (at < data.byteLength) {
      at += await this.conn.write(data.subarray(at));
    }
  }

  /** Writes `data` in separate writes of `size` bytes. */
  async writeChops(data: Uint8Array, size: number): Promise<void> {
    for (let at = 0; at < data.byteLength; at += size) {
      await this.write(data.subarray(at, at + size));
    }
  }

  /** Writes frames, all in one write. */
  send(...frames: Uint8Array[]): Promise<void> {
    return this.write(concat(...frames));
  }

  /** Reads more bytes into the buffer; `false` at end of stream. */
  async #fill(what: string): Promise<boolean> {
    if (this.#eof) return false;
    if (this.#store.byteLength - this.#end < 65_536) {
      // Move what is buffered to the front, growing the store if need be.
      const have = this.#end - this.#start;
      const size = Math.max(this.#store.byteLength, (have + 65_536) * 2);
      const store = size > this.#store.byteLength
        ? new Uint8Array(size)
        : this.#store;
      store.set(this.#store.subarray(this.#start, this.#end), 0);
      this.#store = store;
      this.#start = 0;
      this.#end = have;
    }
    const chunk = this.#store.subarray(this.#end);
    let timer: ReturnType<typeof setTimeout> | undefined;
    let expired = false;
    timer = setTimeout(() => {
      expired = true;
      try {
        this.conn.close();
      } catch {
        // Closed already.
      }
    }, WAIT_MS);
    try {
      const n = await this.conn.read(chunk);
      if (n === null) {
        this.#eof = true;
        return false;
      }
      this.#end += n;
      return true;
    } catch (error) {
      if (expired) throw new Error(`Timed out after ${WAIT_MS} ms: ${what}`);
      if (error instanceof Deno.errors.ConnectionReset) {
        this.#eof = true;
        return false;
      }
      throw error;
    } finally {
      clearTimeout(timer);
      timer = undefined;
    }
  }

  /** The received bytes not yet taken. */
  get #buf(): Uint8Array {
    return this.#store.subarray(this.#start, this.#end);
  }

  #take(n: number): Uint8Array<ArrayBuffer> {
    const out = this.#store.slice(this.#start, this.#start + n);
    this.#start += n;
    return out;
  }

  /** Reads the HTTP response head. */
  async readHead(): Promise<HandshakeResponse> {
    while (true) {
      const text = decoder.decode(this.#buf);
      const end = text.indexOf("\r\n\r\n");
      if (end >= 0) {
        const headBytes = utf8(text.slice(0, end + 4)).byteLength;
        this.#take(headBytes);
        const lines = text.slice(0, end).split("\r\n");
        const statusLine = lines[0]!;
        const headers: Record<string, string> = {};
        for (const line of lines.slice(1)) {
          const colon = line.indexOf(":");
          const name = line.slice(0, colon).trim().toLowerCase();
          const value = line.slice(colon + 1).trim();
          headers[name] = headers[name] === undefined
            ? value
            : `${headers[name]}, ${value}`;
        }
        return {
          status: Number(statusLine.split(" ")[1]),
          statusLine,
          headers,
        };
      }
      if (!await this.#fill("the response head")) {
        fail(`the connection ended before a response head: ${text}`);
      }
    }
  }

  /** The next frame from the server, or `null` at end of stream. */
  async readFrame(): Promise<ServerFrame | null> {
    while (true) {
      const b = this.#buf;
      if (b.byteLength >= 2) {
        const len7 = b[1]! & 0x7f;
        const masked = (b[1]! & 0x80) !== 0;
        let at = 2;
        let length = len7;
        if (len7 === 126 && b.byteLength >= 4) {
          length = (b[2]! << 8) | b[3]!;
          at = 4;
        } else if (len7 === 127 && b.byteLength >= 10) {
          length = Number(
            new DataView(b.buffer, b.byteOffset).getBigUint64(2),
          );
          at = 10;
        } else if (len7 >= 126) {
          length = -1;
        }
        if (masked) at += 4;
        if (length >= 0 && b.byteLength >= at + length) {
          const head = this.#take(at);
          const payload = this.#take(length);
          return {
            fin: (head[0]! & 0x80) !== 0,
            rsv: (head[0]! >> 4) & 7,
            opcode: head[0]! & 0x0f,
            masked,
            payload,
          };
        }
      }
      if (!await this.#fill("a frame from the server")) {
        if (this.#buf.byteLength > 0) {
          fail(
            `the stream ended inside a frame (${this.#buf.byteLength} bytes)`,
          );
        }
        return null;
      }
    }
  }

  /** The next frame, which must exist and be unmasked and unfragmented. */
  async nextFrame(what: string): Promise<ServerFrame> {
    const f = await this.readFrame();
    if (f === null) fail(`expected ${what}, got end of stream`);
    assertEquals(f.masked, false, "server frames must not be masked");
    assertEquals(f.rsv, 0, "server frames must have RSV 0");
    assertEquals(f.fin, true, "the server never fragments");
    return f;
  }

  /** Expects a text message. */
  async expectText(expected: string): Promise<void> {
    const f = await this.nextFrame(
      `text ${JSON.stringify(expected.slice(0, 40))}`,
    );
    assertEquals(
      f.opcode,
      OP.TEXT,
      `opcode of a text frame, payload ${shortText(f.payload)}`,
    );
    const got = decoder.decode(f.payload);
    if (got !== expected) {
      fail(
        `text differs: expected ${expected.length} chars ${
          JSON.stringify(expected.slice(0, 40))
        }, got ${got.length} chars ${JSON.stringify(got.slice(0, 40))}`,
      );
    }
  }

  /** Expects a binary message. */
  async expectBinary(expected: Uint8Array): Promise<void> {
    const f = await this.nextFrame(`binary of ${expected.byteLength} bytes`);
    assertEquals(f.opcode, OP.BINARY, `opcode of a binary frame`);
    assertSameBytes(f.payload, expected);
  }

  /** Expects a pong with `payload`. */
  async expectPong(payload: string | Uint8Array = ""): Promise<void> {
    const f = await this.nextFrame("a pong");
    assertEquals(f.opcode, OP.PONG, `a pong: got opcode ${f.opcode}`);
    assertSameBytes(
      f.payload,
      typeof payload === "string" ? utf8(payload) : payload,
    );
  }

  /**
   * Reads the server's close frame, which must carry `code` (`null`: an
   * empty body) and `reason`, if given. Returns the reason.
   */
  async readClose(code: number | null, reason?: string): Promise<string> {
    const f = await this.nextFrame(`a close frame with ${code}`);
    assertEquals(
      f.opcode,
      OP.CLOSE,
      `expected a close frame, got opcode ${f.opcode} ${shortText(f.payload)}`,
    );
    if (code === null) {
      assertEquals(f.payload.byteLength, 0, "an empty close frame");
      return "";
    }
    assert(f.payload.byteLength >= 2, "a close frame with a code");
    const got = (f.payload[0]! << 8) | f.payload[1]!;
    const gotReason = decoder.decode(f.payload.subarray(2));
    assertEquals(got, code, `close code (reason: ${gotReason})`);
    if (reason !== undefined) assertEquals(gotReason, reason);
    return gotReason;
  }

  /**
   * Expects the server's close frame with `code` (and `reason`, if given),
   * then end of stream: the server ends TCP first. Returns the reason.
   */
  async expectClose(code: number | null, reason?: string): Promise<string> {
    const got = await this.readClose(code, reason);
    await this.expectEnd();
    return got;
  }

  /**
   * Answers a close the server started: reads its close frame (`code`),
   * replies with the same code, then expects end of stream.
   */
  async answerClose(code: number | null, reason?: string): Promise<void> {
    await this.readClose(code, reason);
    await this.send(code === null ? close() : close(code));
    await this.expectEnd();
  }

  /**
   * Expects end of stream with no more frames, and then closes the
   * connection, as a client does once the server has ended TCP.
   */
  async expectEnd(): Promise<void> {
    const f = await this.readFrame();
    this.close();
    if (f !== null) {
      fail(
        `expected end of stream, got opcode ${f.opcode} ${
          shortText(f.payload)
        }`,
      );
    }
  }

  /** Sends close 1000, expects 1000 back, then end of stream. */
  async closeNormally(): Promise<void> {
    await this.send(close(1000));
    await this.expectClose(1000);
  }

  /** Closes the connection (idempotent). */
  close(): void {
    try {
      this.conn.close();
    } catch {
      // Closed already.
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }
}

function shortText(payload: Uint8Array): string {
  return JSON.stringify(decoder.decode(payload.subarray(0, 60)));
}

/** Fails at the first differing byte rather than with a huge diff. */
export function assertSameBytes(
  actual: Uint8Array,
  expected: Uint8Array,
): void {
  if (actual.byteLength !== expected.byteLength) {
    fail(`expected ${expected.byteLength} bytes, got ${actual.byteLength}`);
  }
  for (let i = 0; i < expected.byteLength; i++) {
    if (actual[i] !== expected[i]) {
      fail(
        `first difference at byte ${i}: expected ${expected[i]}, got ${
          actual[i]
        }`,
      );
    }
  }
}

/** How a test server reads: `message` events, or `for await`. */
export type Mode = "event" | "pull";

/** A WebSocket server for a test, and what its sockets did. */
export interface WsServer extends AsyncDisposable {
  server: HttpServer;
  port: number;
  /** The sockets made, in order. */
  sockets: EvWebSocket[];
  /** The fields of each upgrade request, in order of sockets. */
  handshakes: Headers[];
  /**
   * Answers the requests without an `Upgrade` field, when set: a page for
   * a browser, on the same origin as the WebSocket.
   */
  pages?: ServeHandler;
  /** Resolves with each socket's CloseEvent, in order of sockets. */
  closed: Promise<CloseEvent>[];
  /** `error` events seen. */
  errors: string[];
  /** Errors thrown by the pull-mode echo loops (there should be none). */
  failures: unknown[];
}

/**
 * Starts a server whose sockets echo every message (event mode: `send()` in
 * a `message` listener; pull mode: `for await` + `await write()`), or run
 * `use` instead. Handshake errors are answered as `serve()` does:
 * `error.status` and `error.headers`.
 */
export function startWsServer(
  mode: Mode,
  options: {
    ws?: UpgradeWebSocketOptions;
    serve?: Partial<ServeOptions>;
    use?: (socket: EvWebSocket, request: Request) => void;
  } = {},
): WsServer {
  const sockets: EvWebSocket[] = [];
  const handshakes: Headers[] = [];
  const closed: Promise<CloseEvent>[] = [];
  const errors: string[] = [];
  const failures: unknown[] = [];
  const handler: ServeHandler = (request, info) => {
    if (ws.pages !== undefined && !request.headers.has("upgrade")) {
      return ws.pages(request, info);
    }
    let upgraded;
    try {
      upgraded = upgradeWebSocket(request, options.ws);
    } catch (error) {
      if (error instanceof WebSocketHandshakeError) {
        return new Response(error.message, {
          status: error.status,
          headers: error.headers,
        });
      }
      throw error;
    }
    const { socket, response } = upgraded;
    sockets.push(socket);
    handshakes.push(new Headers(request.headers));
    closed.push(socket.closed);
    socket.addEventListener("error", (event) => {
      errors.push((event as ErrorEvent).message);
    });
    if (options.use !== undefined) {
      options.use(socket, request);
    } else if (mode === "event") {
      socket.onmessage = (event) => socket.send(event.data);
    } else {
      (async () => {
        for await (const message of socket) await socket.write(message);
      })().catch((error) => failures.push(error));
    }
    return response;
  };
  const server = serve({
    hostname: HOST,
    port: 0,
    onListen() {},
    ...options.serve,
  }, handler);
  const ws: WsServer = {
    server,
    port: server.addr.port,
    sockets,
    handshakes,
    closed,
    errors,
    failures,
    async [Symbol.asyncDispose]() {
      await server.shutdown({ grace: 2000 });
      if (failures.length > 0) {
        fail(`the echo loop failed: ${failures.map(String).join("; ")}`);
      }
    },
  };
  return ws;
}

/** Opens a raw client that must be upgraded (101). */
export async function openClient(
  port: number,
  options?: HandshakeOptions,
): Promise<RawClient> {
  const { client, response } = await RawClient.open(port, options);
  if (response.status !== 101) {
    client.close();
    fail(`expected 101, got ${response.statusLine}`);
  }
  return client;
}
