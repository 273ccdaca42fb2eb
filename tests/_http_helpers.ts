// Copyright 2026 the @corothread/evthread authors. MIT license.
// Helpers for the HTTP server tests: a raw HTTP/1.1 client over Deno.connect
// that parses responses byte by byte, servers on loopback, and curl.

import { fail } from "@std/assert";
import {
  concat,
  eventually,
  Gate,
  payload,
  within as safetyNet,
} from "./_helpers.ts";
import { EvLoop } from "../mod.ts";
import {
  type HttpServer,
  serve,
  type ServeHandler,
  type ServeOptions,
} from "../http.ts";

/** The loopback address every test listens and connects on. */
export const HOST = "127.0.0.1";

/** How long any single wait of a test may take before it fails. */
export const WAIT_MS = 10_000;

const encoder = new TextEncoder();

/** Byte helpers shared with the other tests (`pseudoRandom` is `payload`). */
export { concat, payload as pseudoRandom };

/** Encodes a string one byte per char (latin1), so tests can send any byte. */
export function bytesOf(text: string): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i) & 0xff;
  return out;
}

/** Decodes bytes one char per byte (latin1). */
export function textOf(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.byteLength; i += 8192) {
    out += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return out;
}

/** Starts a server on a free loopback port, without the listening log. */
export function startServer(
  options: ServeOptions,
  handler: ServeHandler,
): HttpServer {
  return serve({ hostname: HOST, port: 0, onListen() {}, ...options }, handler);
}

/** The URL of `path` on `server`. */
export function urlOf(server: HttpServer, path = "/"): string {
  return `http://${HOST}:${server.addr.port}${path}`;
}

/**
 * Races `promise` against a timer that fails the test after `ms`; the timer
 * is always cleared.
 */
export function within<T>(
  promise: Promise<T>,
  what: string,
  ms: number = WAIT_MS,
): Promise<T> {
  return safetyNet(promise, what, ms);
}

/** A parsed HTTP response as the raw client saw it. */
export interface RawResponse {
  status: number;
  /** The status line, without CRLF. */
  statusLine: string;
  /** The head as received, up to and including the blank line. */
  head: string;
  /** Field names in lower case; repeated fields joined with ", ". */
  headers: Map<string, string>;
  /** The body after any chunked decoding. */
  body: Uint8Array;
  /** The body as latin1 text. */
  text: string;
  /** Whether the body was chunked. */
  chunked: boolean;
}

/** How the connection ended, once it has. */
export type EndKind = "eof" | "reset";

/**
 * A raw HTTP client on a Deno.TcpConn: writes any bytes, parses responses
 * strictly (content-length, chunked, or until close), and detects the end
 * of the connection. Every wait is bounded by {@linkcode WAIT_MS}.
 */
export class RawClient implements AsyncDisposable {
  readonly conn: Deno.TcpConn;
  #buf = new Uint8Array(0);
  #pending: Promise<Uint8Array | null> | undefined;
  #end: EndKind | undefined;
  #closed = false;

  private constructor(conn: Deno.TcpConn) {
    this.conn = conn;
  }

  /** Connects to `port` on loopback. */
  static async connect(port: number): Promise<RawClient> {
    return new RawClient(await Deno.connect({ hostname: HOST, port }));
  }

  /** How the server ended the connection, if it has. */
  get end(): EndKind | undefined {
    return this.#end;
  }

  /** Bytes received and not yet parsed. */
  get unread(): string {
    return textOf(this.#buf);
  }

  /** Writes all of `data` (strings as latin1). */
  async write(data: string | Uint8Array): Promise<void> {
    const bytes = typeof data === "string" ? bytesOf(data) : data;
    let off = 0;
    while (off < bytes.byteLength) {
      off += await this.conn.write(bytes.subarray(off));
    }
  }

  /**
   * Writes all of `data`, ignoring the errors of a peer that closed first
   * (it may reject a request before reading all of it).
   */
  async writeLenient(data: string | Uint8Array): Promise<void> {
    try {
      await this.write(data);
    } catch (error) {
      if (
        error instanceof Deno.errors.BrokenPipe ||
        error instanceof Deno.errors.ConnectionReset ||
        error instanceof Deno.errors.BadResource
      ) return;
      throw error;
    }
  }

  /** Writes `data` one byte at a time, `everyMs` apart, until `stop`. */
  async trickle(
    data: string,
    everyMs: number,
    stop: AbortSignal,
  ): Promise<number> {
    let sent = 0;
    for (let i = 0; i < data.length && !stop.aborted; i++) {
      try {
        await this.write(data[i]!);
      } catch {
        break; // the server closed the connection
      }
      sent++;
      await new Promise<void>((resolve) => {
        const id = setTimeout(done, everyMs);
        stop.addEventListener("abort", done, { once: true });
        function done() {
          clearTimeout(id);
          stop.removeEventListener("abort", done);
          resolve();
        }
      });
    }
    return sent;
  }

  /** Reads more bytes into the buffer; false at the end of the stream. */
  async #more(deadline: number, what: string): Promise<boolean> {
    if (this.#end !== undefined) return false;
    this.#pending ??= this.#readOnce();
    const got = await within(
      this.#pending,
      what,
      Math.max(1, deadline - Date.now()),
    );
    this.#pending = undefined;
    if (got === null) return false;
    const next = new Uint8Array(this.#buf.byteLength + got.byteLength);
    next.set(this.#buf);
    next.set(got, this.#buf.byteLength);
    this.#buf = next;
    return true;
  }

  async #readOnce(): Promise<Uint8Array | null> {
    const buf = new Uint8Array(65_536);
    try {
      const n = await this.conn.read(buf);
      if (n === null) {
        this.#end = "eof";
        return null;
      }
      return buf.slice(0, n);
    } catch (error) {
      if (error instanceof Deno.errors.ConnectionReset) {
        this.#end = "reset";
        return null;
      }
      throw error;
    }
  }

  #take(n: number): Uint8Array {
    const out = this.#buf.slice(0, n);
    this.#buf = this.#buf.slice(n);
    return out;
  }

  async #readLine(deadline: number, what: string): Promise<string> {
    while (true) {
      const i = this.#buf.indexOf(0x0a);
      if (i >= 0 && i > 0 && this.#buf[i - 1] === 0x0d) {
        return textOf(this.#take(i + 1)).slice(0, -2);
      }
      if (!await this.#more(deadline, what)) {
        fail(
          `Connection ended (${this.#end}) while reading a line for ${what}; had ${
            JSON.stringify(this.unread)
          }`,
        );
      }
    }
  }

  /** Reads a line ended by LF (for upgraded protocols), without the LF. */
  async readLineLF(timeout = WAIT_MS): Promise<string | null> {
    const deadline = Date.now() + timeout;
    while (true) {
      const i = this.#buf.indexOf(0x0a);
      if (i >= 0) return textOf(this.#take(i + 1)).slice(0, -1);
      if (!await this.#more(deadline, "a line")) return null;
    }
  }

  async #readExactly(
    n: number,
    deadline: number,
    what: string,
  ): Promise<Uint8Array> {
    while (this.#buf.byteLength < n) {
      if (!await this.#more(deadline, what)) {
        fail(
          `Connection ended (${this.#end}) after ${this.#buf.byteLength} of ${n} body bytes for ${what}`,
        );
      }
    }
    return this.#take(n);
  }

  /**
   * Reads the next response, interim (1xx) ones included. `head: true` for
   * the answer to a HEAD request (no body whatever the fields say).
   */
  async readResponse(
    options: { head?: boolean; timeout?: number } = {},
  ): Promise<RawResponse> {
    const deadline = Date.now() + (options.timeout ?? WAIT_MS);
    const what = "a response";
    const statusLine = await this.#readLine(deadline, what);
    const m = /^HTTP\/1\.[01] (\d{3}) ?(.*)$/.exec(statusLine);
    if (m === null) fail(`Bad status line: ${JSON.stringify(statusLine)}`);
    const status = Number(m[1]);
    let head = statusLine + "\r\n";
    const headers = new Map<string, string>();
    while (true) {
      const line = await this.#readLine(deadline, what);
      head += line + "\r\n";
      if (line === "") break;
      const colon = line.indexOf(":");
      if (colon <= 0) fail(`Bad response field: ${JSON.stringify(line)}`);
      const name = line.slice(0, colon).toLowerCase();
      const value = line.slice(colon + 1).trim();
      const old = headers.get(name);
      headers.set(name, old === undefined ? value : `${old}, ${value}`);
    }
    const bodyless = options.head === true || status < 200 || status === 204 ||
      status === 304;
    const te = headers.get("transfer-encoding");
    const cl = headers.get("content-length");
    let body: Uint8Array = new Uint8Array(0);
    let chunked = false;
    if (!bodyless) {
      if (te !== undefined) {
        if (te.toLowerCase() !== "chunked") fail(`Unexpected coding ${te}`);
        chunked = true;
        const parts: Uint8Array[] = [];
        while (true) {
          const sizeLine = await this.#readLine(deadline, "a chunk size");
          if (!/^[0-9a-f]+$/i.test(sizeLine)) {
            fail(`Bad chunk size line ${JSON.stringify(sizeLine)}`);
          }
          const size = parseInt(sizeLine, 16);
          if (size === 0) {
            while ((await this.#readLine(deadline, "trailers")) !== "");
            break;
          }
          parts.push(await this.#readExactly(size, deadline, "a chunk"));
          const crlf = await this.#readExactly(2, deadline, "a chunk's CRLF");
          if (crlf[0] !== 0x0d || crlf[1] !== 0x0a) fail("Chunk without CRLF");
        }
        body = concat(parts);
      } else if (cl !== undefined) {
        if (!/^\d+$/.test(cl)) fail(`Bad content-length ${cl}`);
        body = await this.#readExactly(Number(cl), deadline, "the body");
      } else {
        while (await this.#more(deadline, "a body read until close"));
        body = this.#take(this.#buf.byteLength);
      }
    }
    return {
      status,
      statusLine,
      head,
      headers,
      body,
      text: textOf(body),
      chunked,
    };
  }

  /** Reads responses until a final (non-1xx) one; returns both. */
  async readFinal(
    options: { head?: boolean; timeout?: number } = {},
  ): Promise<{ interim: number[]; response: RawResponse }> {
    const interim: number[] = [];
    while (true) {
      const response = await this.readResponse(options);
      if (response.status >= 200 || response.status === 101) {
        return { interim, response };
      }
      interim.push(response.status);
    }
  }

  /**
   * Reads until the server ends the connection; returns what came (as
   * latin1) and how it ended. Fails if it has not ended within `timeout`.
   */
  async readToEnd(
    timeout = WAIT_MS,
  ): Promise<{ rest: string; end: EndKind }> {
    const deadline = Date.now() + timeout;
    while (await this.#more(deadline, "the connection to close"));
    return { rest: textOf(this.#take(this.#buf.byteLength)), end: this.#end! };
  }

  /** Closes the connection (once) and waits for a pending read to settle. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.conn.close();
    } catch {
      // already closed
    }
    if (this.#pending !== undefined) {
      try {
        await this.#pending;
      } catch {
        // Interrupted by the close
      }
      this.#pending = undefined;
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** An HTTP/1.1 head from a request line and header lines. */
export function head(requestLine: string, ...fields: string[]): string {
  return `${requestLine}\r\n${fields.map((f) => `${f}\r\n`).join("")}\r\n`;
}

/** The output of a curl run. */
export interface CurlResult {
  code: number;
  stdout: string;
  stderr: string;
}

let curlChecked: boolean | undefined;

/** Whether curl can be run; prints the reason to skip when not. */
export async function haveCurl(): Promise<boolean> {
  if (curlChecked === undefined) {
    try {
      const out = await new Deno.Command("curl", {
        args: ["--version"],
        stdin: "null",
        stdout: "piped",
        stderr: "null",
      }).output();
      curlChecked = out.success;
    } catch {
      curlChecked = false;
    }
  }
  if (!curlChecked) console.log("skipped: curl not installed");
  return curlChecked;
}

/**
 * Runs curl with `args` (plus `--max-time`), feeding `stdin` if given;
 * kills it if it outlives {@linkcode WAIT_MS}.
 */
export async function curl(
  args: string[],
  stdin?: Uint8Array,
): Promise<CurlResult> {
  const child = new Deno.Command("curl", {
    args: ["--max-time", "10", ...args],
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const id = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // already ended
    }
  }, WAIT_MS + 2000);
  try {
    if (stdin !== undefined) {
      const writer = child.stdin.getWriter();
      try {
        await writer.write(stdin);
        await writer.close();
      } catch {
        // curl ended early; its status says why
      }
    }
    const out = await child.output();
    const decoder = new TextDecoder();
    return {
      code: out.code,
      stdout: decoder.decode(out.stdout),
      stderr: decoder.decode(out.stderr),
    };
  } finally {
    clearTimeout(id);
  }
}

/** `encoder.encode`, exported for brevity. */
export function utf8(text: string): Uint8Array<ArrayBuffer> {
  return encoder.encode(text);
}

/** A full pool: one busy connection, and one client held behind it. */
export interface BusyAndHeld extends AsyncDisposable {
  loop: EvLoop;
  server: HttpServer;
  /** Opening it lets the busy request's handler answer `ok`. */
  gate: Gate;
  /** The connection whose request waits on `gate`. */
  busy: RawClient;
  /** The client the acceptor holds (factory not run) for want of a slot. */
  waiting: RawClient;
  /** How many handler calls have started. */
  started(): number;
}

/**
 * A server on a loop of one slot (keep-alive idle timeout 60 s), where the
 * first request's handler waits on a gate and a second client, with its
 * request sent, is held by the acceptor: the scene of a client waiting for
 * a slot that only a busy connection can give.
 */
export async function busyAndHeld(): Promise<BusyAndHeld> {
  const loop = new EvLoop({ capacity: 1, onError: () => {} });
  const gate = new Gate();
  let started = 0;
  const server = serve({
    hostname: HOST,
    port: 0,
    loop,
    idleTimeout: 60_000,
    onListen() {},
  }, async () => {
    started++;
    if (started === 1) await gate.opened;
    return new Response("ok");
  });
  const get = head("GET / HTTP/1.1", "Host: x");
  const busy = await RawClient.connect(server.addr.port);
  await busy.write(get);
  await eventually(() => started === 1, "the first request to start");
  const waiting = await RawClient.connect(server.addr.port);
  await waiting.write(get);
  await eventually(() => loop.stats.held === 1, "the second client held");
  return {
    loop,
    server,
    gate,
    busy,
    waiting,
    started: () => started,
    async [Symbol.asyncDispose]() {
      gate.open();
      await busy.close();
      await waiting.close();
      await server.shutdown();
      await loop[Symbol.asyncDispose]();
    },
  };
}
