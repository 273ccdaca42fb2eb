/**
 * Hello-world HTTP server for `bench/http/http.ts` in the reactor (callback)
 * paradigm: `node:net` `data` events drive an explicit per-connection state
 * machine over the SAME code the evthread server uses for the protocol
 * (`parseHead` and `latin1` from `src/_http_parse.ts`, the lazy request of
 * `src/_http_request.ts`, `responseHead` and `chunk` from
 * `src/_http_response.ts`), so that set against `_evthread_server.ts`
 * the comparison isolates the paradigm: callbacks and a state machine
 * instead of a task per connection running straight-line code.
 *
 * Per request it does the work the evthread server does: find the end of
 * the head (CRLFCRLF, scanning only new bytes), decode it as latin1, parse
 * it, build the lazy request, call the handler, which builds a
 * `new Response("Hello, World!")`, read the fixed body through the body's
 * reader (one read, then a few microtask turns until `reader.closed`
 * settles, as `writeResponse` in `src/_http_response.ts` does), serialize
 * the status line, the response's fields (lower-case names as
 * `response.headers` iterates them), `date` and `content-length`, and write
 * head and body in one write.
 * Bodies with `Content-Length` are skipped; keep-alive follows HTTP/1.1 and
 * HTTP/1.0 rules and `Connection`; pipelined requests are answered in order;
 * a full write buffer pauses reading until `drain`; an idle connection is
 * closed after 5 s. Chunked request bodies get 501 and a close (not needed
 * for the benchmark).
 *
 * Usage: `deno run --allow-net bench/http/_reactor_server.ts [--port N]` (0: any free port).
 * Prints `listening <port>` as its first stdout line. On SIGTERM it closes
 * its connections and lets the process end by itself, so `--cpu-prof`
 * writes a profile.
 *
 * @module
 */

import { parseArgs, PORT } from "../_common/args.ts";
import { listenNode, onSigterm } from "../_common/server.ts";
import { createServer, type Socket } from "node:net";
import {
  HttpError,
  latin1,
  parseHead,
  type RequestHead,
} from "../../src/_http_parse.ts";
import { HttpRequest } from "../../src/_http_request.ts";
import { indexOf as indexIn } from "../../src/_bytes.ts";
import {
  chunk,
  httpDate,
  responseHead,
  statusLine,
} from "../../src/_http_response.ts";

type Handler = (request: Request) => Response;

const handler: Handler = () => new Response("Hello, World!");

const LIMITS = { maxUrlBytes: 8192, maxHeaderFields: 128 };
const MAX_HEAD_BYTES = 65_536;
const IDLE_TIMEOUT_MS = 5000;
const CRLFCRLF = new Uint8Array([0x0d, 0x0a, 0x0d, 0x0a]);
const EMPTY = new Uint8Array(0);

const encoder = new TextEncoder();
const sockets = new Set<Socket>();

/** One connection's state machine. */
class Connection {
  readonly socket: Socket;
  /** Bytes received and not yet consumed. */
  buf: Uint8Array = EMPTY;
  /** Bytes of `buf` already searched for CRLFCRLF. */
  scanned = 0;
  /** Request body bytes still to skip. */
  skip = 0;
  /** A response is being built (its body read): wait before the next. */
  busy = false;
  /** Waiting for `drain` after a write the socket could not take at once. */
  paused = false;
  /** The peer half-closed: finish what is buffered, then end. */
  peerEnded = false;
  /** The connection is ending: ignore further input. */
  closing = false;
  /** Inside `process()`: a response finished synchronously just goes on. */
  processing = false;

  constructor(socket: Socket) {
    this.socket = socket;
  }

  onData(chunk: Uint8Array): void {
    if (this.closing) return;
    if (this.buf.byteLength === 0) this.buf = chunk;
    else {
      const joined = new Uint8Array(this.buf.byteLength + chunk.byteLength);
      joined.set(this.buf, 0);
      joined.set(chunk, this.buf.byteLength);
      this.buf = joined;
    }
    this.process();
  }

  onEnd(): void {
    this.peerEnded = true;
    if (!this.busy) this.process();
  }

  onDrain(): void {
    this.paused = false;
    this.socket.resume();
    this.process();
  }

  /** Handles every complete request in `buf`, in order. */
  process(): void {
    if (this.processing) return;
    this.processing = true;
    try {
      this.#process();
    } finally {
      this.processing = false;
    }
  }

  #process(): void {
    while (!this.busy && !this.paused && !this.closing) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, this.buf.byteLength);
        this.skip -= n;
        this.buf = this.buf.subarray(n);
        if (this.skip > 0) break;
      }
      const end = indexIn(
        this.buf,
        this.scanned,
        this.buf.byteLength,
        CRLFCRLF,
      );
      if (end < 0) {
        if (this.buf.byteLength > MAX_HEAD_BYTES) {
          this.fail(new HttpError(431, "Request head too large"));
          return;
        }
        this.scanned = Math.max(0, this.buf.byteLength - 3);
        break;
      }
      const text = latin1(this.buf.subarray(0, end));
      this.buf = this.buf.subarray(end + 4);
      this.scanned = 0;
      if (/^(\r\n)*$/.test(text)) continue; // empty lines between requests
      let head: RequestHead;
      try {
        head = parseHead(text, LIMITS);
      } catch (error) {
        this.fail(error);
        return;
      }
      if (head.chunked) {
        this.fail(new HttpError(501, "Chunked request bodies not supported"));
        return;
      }
      if (head.contentLength > 0) this.skip = head.contentLength;
      this.respond(head);
    }
    if (this.peerEnded && !this.busy && !this.paused && !this.closing) {
      this.closing = true;
      this.socket.end();
    }
  }

  /** Calls the handler and writes its response; resumes when written. */
  respond(head: RequestHead): void {
    const request = new HttpRequest({
      method: head.method,
      target: head.target,
      host: head.host || "127.0.0.1",
      secure: false,
      fields: head.fields,
      body: null,
      signal: () => new AbortController().signal,
    }) as unknown as Request;
    let response: Response;
    try {
      response = handler(request);
    } catch {
      response = new Response("Internal Server Error", { status: 500 });
    }
    const http10 = head.minor === 0;
    const isHead = head.method === "HEAD";

    const status = response.status;
    const fields = responseHead(response, head.keepAlive);
    const keepAlive = fields.keepAlive;
    let text = fields.head;
    const userLength = fields.userLength;

    const body = response.body;
    if (status < 200 || status === 204 || status === 304 || body === null) {
      if (body !== null) body.cancel().catch(() => {});
      if (status === 304 && userLength !== null) {
        text += `content-length: ${userLength}\r\n`;
      } else if (body === null && status >= 200 && status !== 204) {
        text += `content-length: ${
          isHead && userLength ? userLength : "0"
        }\r\n`;
      }
      this.finish(text, keepAlive, http10, undefined);
      return;
    }

    // The body through its reader, as the evthread server reads it: one
    // read, then a few microtask turns for `reader.closed` to settle; a
    // body closed by then (a string or bytes) goes out with
    // content-length, one still open goes out chunked.
    this.busy = true;
    const reader = body.getReader();
    let closed = false;
    reader.closed.then(() => {
      closed = true;
    }, () => {});
    const failed = () => {
      reader.cancel().catch(() => {});
      this.socket.destroy();
    };
    reader.read().then((first) => {
      let turns = 0;
      const decide = (): void => {
        if (!closed && !first.done && turns++ < 4) {
          Promise.resolve().then(decide);
          return;
        }
        if (first.done || closed) {
          const bytes = first.done ? undefined : first.value;
          this.finish(
            `${text}content-length: ${bytes?.byteLength ?? 0}\r\n`,
            keepAlive,
            http10,
            isHead ? undefined : bytes,
          );
          return;
        }
        if (isHead || http10) {
          // Not needed for the benchmark: no chunked coding, just close.
          reader.cancel().catch(() => {});
          this.finish(text, false, http10, undefined);
          return;
        }
        this.write(
          text + "transfer-encoding: chunked\r\n",
          keepAlive,
          http10,
          chunk(first.value),
        );
        const pump = (): void => {
          reader.read().then((next) => {
            if (next.done) {
              this.socket.write(LAST_CHUNK);
              this.done(keepAlive);
              return;
            }
            if (this.socket.write(chunk(next.value))) pump();
            else this.socket.once("drain", pump);
          }, failed);
        };
        pump();
      };
      decide();
    }, failed);
  }

  /** Writes a whole response and moves on. */
  finish(
    text: string,
    keepAlive: boolean,
    http10: boolean,
    body: Uint8Array | undefined,
  ): void {
    this.write(text, keepAlive, http10, body);
    this.done(keepAlive);
  }

  /** Writes the head (with the connection field) and a body in one write. */
  write(
    text: string,
    keepAlive: boolean,
    http10: boolean,
    body?: Uint8Array,
  ): void {
    if (!keepAlive) text += "connection: close\r\n";
    else if (http10) text += "connection: keep-alive\r\n";
    text += "\r\n";
    const bodyLength = body?.byteLength ?? 0;
    const out = new Uint8Array(text.length + bodyLength);
    const { read, written } = encoder.encodeInto(text, out);
    let length = written;
    if (read !== text.length || written !== text.length) {
      for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i) & 0xff;
      length = text.length;
    }
    if (body !== undefined) out.set(body, length);
    if (!this.socket.write(out.subarray(0, length + bodyLength))) {
      this.paused = true;
      this.socket.pause();
      this.socket.once("drain", () => this.onDrain());
    }
  }

  /** After a response: close, or go on with what is buffered. */
  done(keepAlive: boolean): void {
    this.busy = false;
    if (!keepAlive) {
      this.closing = true;
      this.socket.end();
      return;
    }
    this.process();
  }

  /** Answers a request the parser rejected, then closes. */
  fail(error: unknown): void {
    const status = error instanceof HttpError ? error.status : 400;
    const body = `${
      status === 431 ? "Request Header Fields Too Large" : "Error"
    }\n`;
    const text =
      `${statusLine(status)}content-type: text/plain;charset=UTF-8\r\n` +
      `content-length: ${body.length}\r\ndate: ${httpDate()}\r\n` +
      `connection: close\r\n\r\n${body}`;
    this.closing = true;
    this.socket.end(encoder.encode(text));
  }
}

const LAST_CHUNK = encoder.encode("0\r\n\r\n");

const { port } = parseArgs(Deno.args, { port: PORT }, { port: 0 });
const server = createServer(
  { noDelay: true, allowHalfOpen: true },
  (socket) => {
    sockets.add(socket);
    socket.setNoDelay(true);
    socket.setTimeout(IDLE_TIMEOUT_MS, () => socket.destroy());
    const connection = new Connection(socket);
    socket.on("data", (data: Uint8Array) => connection.onData(data));
    socket.on("end", () => connection.onEnd());
    socket.on("error", () => {
      // Peer reset: "close" follows.
    });
    socket.on("close", () => {
      connection.closing = true;
      sockets.delete(socket);
    });
  },
);

listenNode(server, port);

onSigterm(() => {
  server.close();
  for (const socket of sockets) socket.destroy();
});
