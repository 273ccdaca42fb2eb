// Copyright 2026 the @corothread/evthread authors. MIT license.
// A connection of the HTTP server, as Go's `conn.serve`: its requests in
// order, each read, answered and finished, on the connection's task.

import { CoarseTimeouts } from "./_coarse_timeouts.ts";
import { WebSocketHandshakeError } from "./_ws_handshake.ts";
import { BodyReader } from "./_http_body.ts";
import { HttpError, parseHead, type RequestHead } from "./_http_parse.ts";
import { HttpRequest, validRequestUrl } from "./_http_request.ts";
import {
  sendContinue,
  sendError,
  sendSwitching,
  type WriteContext,
  writeResponse,
} from "./_http_response.ts";
import { socketInternals } from "./_internal.ts";
import type { SlotReclaimer } from "./_reclaim.ts";
import { abortError } from "./_validate.ts";
import { EvictedError, LimitExceededError } from "./errors.ts";
import type { EvSocket } from "./ev_socket.ts";
import type { EvThread } from "./ev_thread.ts";
import type { ServeHandler, ServeHandlerInfo } from "./http_server.ts";
import type { EvProxyInfo } from "./proxy_protocol.ts";

/** The limits and timeouts of a server, from its options. */
export interface Limits {
  maxHeaderBytes: number;
  maxHeaderFields: number;
  maxUrlBytes: number;
  maxBodyBytes: number;
  headerTimeout: number;
  idleTimeout: number;
  bodyTimeout: number;
  sendTimeout: number;
}

/** What a connection needs from its server. */
export interface Site {
  handler: ServeHandler<Deno.Addr>;
  onError: (error: unknown) => Response | Promise<Response>;
  limits: Limits;
  /** The loop's slot reclaiming. */
  slots: SlotReclaimer;
  /**
   * Whether a connection waiting for a request head may be evicted to free
   * a slot of the full pool (it is marked `handshaking` meanwhile).
   */
  evict: boolean;
  /** Raised when the server stops taking requests (shutdown). */
  draining: AbortSignal;
  /** WebSockets open or being opened, and the most allowed. */
  webSockets: number;
  maxWebSockets: number;
  /** Tells the server of a new connection (for shutdown and reclaiming). */
  track: (connection: Connection) => void;
  /** Tells the server of a connection that has ended. */
  untrack: (connection: Connection) => void;
}

/**
 * A connection: what its exchanges share, and its state as the server's
 * shutdown and reclaiming see it.
 */
export interface Connection {
  site: Site;
  thread: EvThread<unknown>;
  socket: EvSocket;
  remoteAddr: Deno.Addr;
  /** Waiting for the next request (nothing in flight). */
  idle: boolean;
  /**
   * When it last finished a response and began to wait for the next
   * request (`performance.now()`); 0 before its first response.
   */
  idleSince: number;
  /**
   * What stops the wait in progress (the handler, a body stream read):
   * called with the reason when the connection's task is aborted.
   */
  onAbort: ((reason: unknown) => void) | undefined;
  /** The response writer's reusable buffer. */
  scratch: Uint8Array | undefined;
  /** Whether the connection is TLS (its URLs are `https:`). */
  secure: boolean;
  /** The options of every read of a request head. */
  headOptions: { maxLength: number };
  /**
   * The header, idle, body and send timeouts of every socket call the
   * server makes on the connection: coarse, swept rather than timed (see
   * `_coarse_timeouts.ts`); each call arms its direction first.
   */
  timeouts: CoarseTimeouts;
}

/** What an upgraded connection's procedure learns besides its socket. */
export interface UpgradeInfo {
  /**
   * Aborted when the server starts to shut down (its `shutdown()`, or its
   * loop's): finish up (a WebSocket closes with 1001) within the grace
   * period.
   */
  draining: AbortSignal;
}

/** A switch of protocols that `upgrade()` asked for. */
export interface Upgrade {
  request: Request;
  proc: (
    socket: EvSocket,
    thread: EvThread<unknown>,
    info: UpgradeInfo,
  ) => unknown;
  headers: Headers;
}

/** A request that may be upgraded: the protocol it asked for, its server. */
export interface Upgradable {
  protocol: string;
  site: Site;
  /** Whether it holds one of the server's WebSocket places. */
  reserved: boolean;
}

/** Responses returned by `upgrade()`, and what they stand for. */
export const upgrades = new WeakMap<Response, Upgrade>();
/** The requests that may be upgraded. */
export const upgradable = new WeakMap<Request, Upgradable>();

/**
 * The response that `upgrade()` (or `upgradeWebSocket()`, with
 * `webSocket`, which takes one of the server's `maxWebSockets` places)
 * returns for `request`: the server answers 101 and runs `proc`.
 *
 * @throws {TypeError} if the request did not ask to upgrade.
 * @throws {WebSocketHandshakeError} (503) when no WebSocket place is left.
 */
export function upgradeResponse(
  request: Request,
  proc: Upgrade["proc"],
  headers: HeadersInit | undefined,
  webSocket: boolean,
): Response {
  const entry = upgradable.get(request);
  if (entry === undefined) {
    throw new TypeError(
      "The request did not ask to upgrade (Connection: upgrade and Upgrade), or is not from this server",
    );
  }
  if (webSocket && !entry.reserved) {
    const site = entry.site;
    if (site.webSockets >= site.maxWebSockets) {
      throw new WebSocketHandshakeError(
        `The server takes no more WebSockets: ${site.maxWebSockets} are open`,
        503,
      );
    }
    site.webSockets++;
    entry.reserved = true;
  }
  const response = new Response(null, { status: 200 });
  upgrades.set(response, { request, proc, headers: new Headers(headers) });
  return response;
}

const CRLFCRLF = new Uint8Array([0x0d, 0x0a, 0x0d, 0x0a]);
// A head ended by bare LFs is found (and rejected) at once, rather than
// waited on until the header timeout.
const LFLF = new Uint8Array([0x0a, 0x0a]);

/** Most bytes of an unread request body dropped to keep the connection. */
const DRAIN_LIMIT = 262_144;

/** The default `onError`: logs the error, answers a bare 500. */
export function defaultOnError(error: unknown): Response {
  console.error("evthread/http: the handler failed:", error);
  return new Response("Internal Server Error", { status: 500 });
}

/** Serves one connection: requests in order until it closes. */
export async function serveConnection(
  site: Site,
  socket: EvSocket,
  thread: EvThread<unknown>,
  remoteAddr: Deno.Addr,
): Promise<void> {
  const conn: Connection = {
    site,
    thread,
    socket,
    remoteAddr,
    idle: true,
    idleSince: 0,
    onAbort: undefined,
    scratch: undefined,
    secure: socket.tls !== undefined,
    headOptions: { maxLength: site.limits.maxHeaderBytes },
    timeouts: new CoarseTimeouts(socket),
  };
  // One abort listener for the connection's life: it stops whatever the
  // exchange is waiting on (the handler, a body stream read).
  thread.signal.addEventListener(
    "abort",
    () => conn.onAbort?.(thread.signal.reason),
    { once: true },
  );
  site.track(conn);
  conn.timeouts.watch();
  // The server awaits every write it makes and decides itself to drop what
  // a timed-out or aborted response leaves queued: nothing to report.
  socketInternals.setQuiet(socket, true);
  try {
    // Only plain TCP connections have the option (not TLS, nor Unix).
    if (socket.localAddr.transport === "tcp" && !conn.secure) {
      socket.setNoDelay(true);
    }
    // The first head gets the header timeout; later ones the idle timeout
    // until their first bytes (see headFailed).
    let idle = false;
    const evict = site.evict;
    while (true) {
      conn.idle = true;
      if (site.draining.aborted) return;
      // Until its head is complete, the connection may be evicted for a
      // client that waits for a slot of the full pool.
      if (evict) thread.handshaking = true;
      const next = exchange(conn, idle);
      // Its read of the next head now waits: if a client waits for a slot
      // of the full pool (it came while this one was busy), the idle
      // connection that has waited longest, maybe this one, gives it one.
      if (conn.idleSince > 0) site.slots.reclaim();
      if (!await next) return;
      conn.idleSince = performance.now();
      idle = true;
    }
  } catch (error) {
    if (thread.signal.aborted && error === thread.signal.reason) return;
    if (isDisconnect(error) || isTimeout(error)) return;
    throw error;
  } finally {
    conn.timeouts.unwatch();
    site.untrack(conn);
  }
}

/**
 * One request and its response, as the body of Go's `conn.serve` loop:
 * read the request, respond, finish. Returns whether to read another.
 */
async function exchange(conn: Connection, idle: boolean): Promise<boolean> {
  // Read the request.
  const limits = conn.site.limits;
  let text: string | null;
  try {
    text = await readHead(
      conn,
      idle ? limits.idleTimeout : limits.headerTimeout,
    );
  } catch (error) {
    text = await headFailed(conn, idle, error);
  }
  if (text === null) return false;
  conn.thread.handshaking = false;
  conn.idle = false;
  let head: RequestHead | undefined;
  try {
    head = requestHead(conn, text);
  } catch (error) {
    if (!(error instanceof HttpError)) throw error;
    await sendError(conn, error.status, conn.site.limits.sendTimeout);
    return false;
  }
  if (head === undefined) return true; // empty lines between requests
  const x = new Exchange(conn, head);

  try {
    // Respond: the handler's response (or onError's), written out.
    let response: Response | false;
    try {
      let result: unknown = conn.site.handler(x.request, x.info);
      if (!(result instanceof Response)) {
        result = await untilAborted(result, conn);
      }
      response = checkedResponse(result);
    } catch (error) {
      response = await handlerFailed(x, error);
    }
    if (response === false) return false;
    if (x.body?.failed) return await bodyFailed(x);
    const up = upgrades.get(response);
    if (up !== undefined) return await switchProtocols(x, up);
    x.keepAlive = mayKeepAlive(x);
    let keepAlive: boolean;
    try {
      keepAlive = await writeResponse(response, x);
      x.info.sent();
    } catch (error) {
      return await writeFailed(x, error);
    }

    // Finish: what is left of the request body.
    const body = x.body;
    if (body === undefined || body.done) return keepAlive;
    return keepAlive && !body.failed && await body.drain(DRAIN_LIMIT);
  } finally {
    x.end();
  }
}

/**
 * Reads a request head; `null` when the connection should just close. The
 * read that nearly always succeeds is awaited by the caller itself (one
 * async frame less per request); a failure goes to `headFailed`.
 */
function readHead(
  conn: Connection,
  timeout: number,
): Promise<string | null> {
  conn.timeouts.armRead(timeout);
  return socketInternals.readTextUntil(
    conn.socket,
    CRLFCRLF,
    LFLF,
    conn.headOptions,
  );
}

/**
 * The read of a request head failed (`idle`: it waited with the idle
 * timeout, between requests): an idle
 * connection whose next head had begun gets the header timeout to finish
 * it; a head too long, or timed out, or a connection evicted, is answered
 * (414/431, 408) or closed. Returns the head, or `null` to close.
 */
async function headFailed(
  conn: Connection,
  idle: boolean,
  error: unknown,
): Promise<string | null> {
  const socket = conn.socket;
  const limits = conn.site.limits;
  const sendTimeout = limits.sendTimeout;
  try {
    // Idle keep-alive timeout: close quietly if nothing came; if a head
    // had begun, it gets the header timeout to finish.
    // (Whether it was the idle wait is told by `idle`, not by comparing
    // timeouts: the two may be equal.)
    if (!isTimeout(error) || socket.buffered === 0 || !idle) throw error;
    return await readHead(conn, limits.headerTimeout);
  } catch (error) {
    if (error instanceof LimitExceededError) {
      // 414 when the request line alone is over the limit, else 431.
      const seen = await socket.peek(socket.buffered);
      const eol = seen === null ? -1 : seen.indexOf(0x0a);
      const status = eol < 0 || eol > limits.maxUrlBytes + 64 ? 414 : 431;
      await sendError(conn, status, sendTimeout);
      return null;
    }
    // Timed out, or evicted to free a slot: a head that had begun gets a
    // 408 (the client may retry), a connection that sent nothing is closed.
    if (isTimeout(error) || error instanceof EvictedError) {
      if (socket.buffered > 0) await sendError(conn, 408, sendTimeout);
      return null;
    }
    throw error;
  }
}

/**
 * The request head in `whole` (up to its blank line, decoded as latin1),
 * parsed and checked;
 * `undefined` when they are only empty lines between requests.
 *
 * @throws {HttpError} with the status to refuse the request with.
 */
function requestHead(
  conn: Connection,
  whole: string,
): RequestHead | undefined {
  const n = whole.length;
  if (whole.charCodeAt(n - 3) !== 0x0a || whole.charCodeAt(n - 4) !== 0x0d) {
    throw new HttpError(400, "Request head ended by bare LFs");
  }
  const text = whole.slice(0, n - 4);
  if (text.charCodeAt(0) === 0x0d && /^(\r\n)*$/.test(text)) return undefined;
  if (text === "") return undefined;
  const limits = conn.site.limits;
  const head = parseHead(text, limits);
  const socket = conn.socket;
  if (
    !validRequestUrl(
      head.target,
      requestHost(head, socket),
      head.host ?? "",
      conn.secure,
    )
  ) {
    throw new HttpError(400, "Invalid request URL");
  }
  if (head.contentLength > limits.maxBodyBytes) {
    throw new HttpError(413, "Request body too large");
  }
  return head;
}

/** The host of a request's URL: its Host field, or the server's address. */
function requestHost(head: RequestHead, socket: EvSocket): string {
  return head.host || hostOf(socket.localAddr);
}

/**
 * One request and its response: what the steps of `exchange` share. It is
 * the response writer's context too, so that one object serves both.
 */
class Exchange implements WriteContext {
  readonly conn: Connection;
  readonly head: RequestHead;
  /** The body, read as the handler pulls it. */
  readonly body: BodyReader | undefined;
  readonly request: Request;
  readonly info: Info;
  /**
   * Stops watching for a disconnect (made with `request.signal`, or when
   * a streamed body starts); aborted when the exchange ends.
   */
  watch: AbortController | undefined = undefined;
  /** Set when the request asked to upgrade. */
  upgrade: Upgradable | undefined = undefined;
  // How the response goes out; `started` is shared with the body reader.
  readonly socket: EvSocket;
  readonly isHead: boolean;
  keepAlive = false;
  readonly http10: boolean;
  readonly timeout: number;
  readonly signal: AbortSignal;
  readonly timeouts: CoarseTimeouts;
  readonly state: Connection;
  started = false;
  gone: unknown = undefined;

  constructor(conn: Connection, head: RequestHead) {
    const { socket, site } = conn;
    this.conn = conn;
    this.head = head;
    this.socket = socket;
    this.isHead = head.method === "HEAD";
    this.http10 = head.minor === 0;
    this.timeout = site.limits.sendTimeout;
    this.signal = conn.thread.signal;
    this.timeouts = conn.timeouts;
    this.state = conn;
    this.body = head.chunked || head.contentLength > 0
      ? new BodyReader(socket, {
        contentLength: head.chunked ? -1 : head.contentLength,
        maxBytes: site.limits.maxBodyBytes,
        maxTrailerBytes: site.limits.maxHeaderBytes,
        timeout: site.limits.bodyTimeout,
        timeouts: conn.timeouts,
        // No 100 once the response has begun: it would land inside it.
        onFirstRead: head.expectContinue
          ? () =>
            this.started ? Promise.resolve() : sendContinue(conn, this.timeout)
          : undefined,
      })
      : undefined;
    this.request = new HttpRequest({
      method: head.method,
      target: head.target,
      host: requestHost(head, socket),
      secure: conn.secure,
      fields: head.fields,
      body: this.body === undefined ? null : this.body.stream(),
      signal: () => this.#requestSignal(),
    }) as unknown as Request;
    if (head.upgrade !== undefined) {
      this.upgrade = {
        protocol: head.upgrade,
        site: conn.site,
        reserved: false,
      };
      upgradable.set(this.request, this.upgrade);
    }
    this.info = new Info(conn.remoteAddr, socket.proxy);
  }

  /**
   * Makes `request.signal` (on first use): it aborts when the client
   * disconnects (or the connection is aborted) before the response is sent.
   */
  #requestSignal(): AbortSignal {
    const controller = new AbortController();
    const connSignal = this.signal;
    const stop = (this.watch ??= new AbortController()).signal;
    const onAbort = () => controller.abort(connSignal.reason);
    if (connSignal.aborted) onAbort();
    else {
      connSignal.addEventListener("abort", onAbort, {
        once: true,
        signal: stop,
      });
    }
    watchDisconnect(this.socket, controller, stop);
    return controller.signal;
  }

  /**
   * Watches for the client going away while a streamed body goes out: the
   * body stream is then cancelled at once (through `conn.onAbort`, which
   * the response writer set), not at the next write that fails, and the
   * writer stops with `gone` as its error. An end of stream counts, so a
   * client's half-close too: Deno.serve (hyper) and Go's net/http take it
   * as a disconnect as well. Costs a read ahead of the socket, only for
   * streamed bodies.
   */
  watchClient(): void {
    const stop = (this.watch ??= new AbortController()).signal;
    socketInternals.watchEnd(this.socket, stop).then(() => {
      if (stop.aborted) return; // the exchange ended meanwhile
      this.gone = new DOMException("The client disconnected", "AbortError");
      this.conn.onAbort?.(this.gone);
    });
  }

  /**
   * Ends the exchange: stops the disconnect watch, and fails `completed`
   * if no response was sent.
   */
  end(): void {
    const upgrade = this.upgrade;
    if (upgrade?.reserved) {
      upgrade.reserved = false;
      upgrade.site.webSockets--;
    }
    this.watch?.abort();
    if (this.info.pending) {
      this.info.failed(
        this.signal.reason ?? abortError("No response was sent"),
      );
    }
  }
}

/**
 * A handler's result, once settled, if it can be sent.
 *
 * @throws {TypeError} if it cannot.
 */
function checkedResponse(result: unknown): Response {
  if (!usable(result)) {
    throw new TypeError(
      "The handler must return a Response (not Response.error(), nor a 1xx status outside upgrade()) or a promise of one",
    );
  }
  return result;
}

/**
 * The handler threw (or its result cannot be sent): the response of
 * `onError`; or `false` when it failed reading the body, which is then
 * answered here.
 */
async function handlerFailed(
  x: Exchange,
  error: unknown,
): Promise<Response | false> {
  if (x.signal.aborted && error === x.signal.reason) throw error;
  if (x.body?.failed) return await bodyFailed(x);
  // A refused WebSocket handshake is the client's error (or the server at
  // its limit), not the handler's: 400, 426 or 503, and not reported.
  if (error instanceof WebSocketHandshakeError) {
    return new Response(`${error.message}\n`, {
      status: error.status,
      headers: error.status === 503
        ? { ...error.headers, "retry-after": "5" }
        : error.headers,
    });
  }
  return await errorResponse(x.conn, error);
}

/**
 * Whether the connection may stay open after this response (the response
 * itself may still close it).
 */
function mayKeepAlive(x: Exchange): boolean {
  const { conn, head, body } = x;
  const keepAlive = head.keepAlive &&
    !conn.site.draining.aborted &&
    // A client waits for a slot that no idle connection could give (they
    // were offered when it came): this one gives its slot after this
    // response, which says so (`connection: close`).
    // Not with a pipelined request received: that one is answered first.
    !(conn.socket.buffered === 0 && conn.site.slots.yieldSlot(conn.thread));
  // The client has not sent the body (it waits for a 100): do not wait.
  return keepAlive &&
    !(body !== undefined && !body.done && head.expectContinue &&
      !body.started);
}

/**
 * Writing the response failed. If nothing went out yet, answers for the
 * cause: the request body's failure (the response's stream read it), or
 * else as for a handler that threw (a used or locked body, a chunk that is
 * not bytes). Once bytes went out, cuts the connection: the client must
 * see a truncated response. If the client went away, the exchange is over
 * and `completed` resolves, as Deno.serve's does; on any other failure it
 * rejects. Returns false: the connection closes.
 */
async function writeFailed(x: Exchange, error: unknown): Promise<false> {
  if (!x.started && !x.signal.aborted) {
    if (x.body?.failed) return await bodyFailed(x);
    x.keepAlive = false;
    try {
      await writeResponse(await errorResponse(x.conn, error), x);
      x.info.sent();
      return false;
    } catch (fallbackError) {
      error = fallbackError;
    }
  }
  if (x.signal.aborted && error === x.signal.reason) {
    x.info.failed(error);
    throw error;
  }
  if (x.gone !== undefined || isDisconnect(error)) x.info.sent();
  else x.info.failed(error);
  x.socket.close();
  return false;
}

/** Answers a request whose body could not be read, then closes. */
async function bodyFailed(x: Exchange): Promise<false> {
  const error = x.body!.error;
  x.info.failed(error);
  if (error instanceof HttpError) {
    await sendError(x, error.status, x.timeout);
  } else if (isTimeout(error)) await sendError(x, 408, x.timeout);
  return false;
}

/**
 * Answers `101 Switching Protocols` for `upgrade()` and runs the
 * new protocol on the connection, which is then done with HTTP.
 */
async function switchProtocols(x: Exchange, up: Upgrade): Promise<false> {
  if (up.request !== x.request) {
    throw new TypeError("upgrade() was given another request");
  }
  await sendSwitching(x, x.head.upgrade!, up.headers, x.timeout);
  x.info.sent();
  x.watch?.abort();
  // The new protocol's time limits are its own.
  x.conn.timeouts.unwatch();
  // A WebSocket writes through its own queue; any other protocol is the
  // procedure's own code, whose cut-short sends are reported as any task's.
  if (x.upgrade?.reserved !== true) socketInternals.setQuiet(x.socket, false);
  await up.proc(x.socket, x.conn.thread, { draining: x.conn.site.draining });
  return false;
}

/**
 * Aborts `controller` when the client ends its side of the connection, as
 * seen by whichever read comes first: the body's, or the socket reading
 * ahead while nothing else reads.
 */
function watchDisconnect(
  socket: EvSocket,
  controller: AbortController,
  stop: AbortSignal,
): void {
  socketInternals.watchEnd(socket, stop).then(() =>
    controller.abort(new DOMException("The client disconnected", "AbortError"))
  );
}

/** An address as the host of a URL: `host:port`, `[v6]:port`, `localhost`. */
export function hostOf(addr: Deno.Addr): string {
  if (addr.transport !== "tcp" && addr.transport !== "udp") return "localhost";
  const name = addr.hostname.includes(":")
    ? `[${addr.hostname}]`
    : addr.hostname;
  return `${name}:${addr.port}`;
}

/** The `info` argument of a handler; `completed` is made on first use. */
class Info implements ServeHandlerInfo<Deno.Addr> {
  readonly remoteAddr: Deno.Addr;
  readonly proxy: EvProxyInfo | undefined;
  #completed: Promise<void> | undefined;
  #resolve: (() => void) | undefined;
  #reject: ((error: unknown) => void) | undefined;
  #state = 0; // 0 pending, 1 sent, 2 failed
  #error: unknown;

  constructor(remoteAddr: Deno.Addr, proxy: EvProxyInfo | undefined) {
    this.remoteAddr = remoteAddr;
    this.proxy = proxy;
  }

  get completed(): Promise<void> {
    if (this.#completed === undefined) {
      if (this.#state === 1) this.#completed = Promise.resolve();
      else if (this.#state === 2) this.#completed = Promise.reject(this.#error);
      else {
        this.#completed = new Promise((resolve, reject) => {
          this.#resolve = resolve;
          this.#reject = reject;
        });
      }
      // Nobody need await it: a failure is never an unhandled rejection.
      this.#completed.catch(() => {});
    }
    return this.#completed;
  }

  /** Whether `completed` has not settled yet. */
  get pending(): boolean {
    return this.#state === 0;
  }

  /**
   * The exchange is over: the response was written in full, or the client
   * went away while it streamed (as Deno.serve, `completed` resolves).
   */
  sent(): void {
    if (this.#state !== 0) return;
    this.#state = 1;
    this.#resolve?.();
  }

  /** The response could not be written (a no-op once settled). */
  failed(error: unknown): void {
    if (this.#state !== 0) return;
    this.#state = 2;
    this.#error = error;
    this.#reject?.(error);
  }
}

function isTimeout(error: unknown): boolean {
  return error instanceof DOMException && error.name === "TimeoutError";
}

/** Errors that mean the client went away (or the socket was closed). */
function isDisconnect(error: unknown): boolean {
  return error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.ConnectionAborted ||
    error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.UnexpectedEof ||
    error instanceof Deno.errors.BadResource ||
    error instanceof Deno.errors.Interrupted ||
    error instanceof Deno.errors.NotConnected;
}

/**
 * Whether a handler's result can be sent: a Response, not
 * `Response.error()`, and no 1xx status except from `upgrade()` (a bare
 * 101 would leave the client speaking another protocol).
 */
function usable(value: unknown): value is Response {
  return value instanceof Response && value.type !== "error" &&
    (value.status >= 200 || upgrades.has(value));
}

/**
 * Waits for `value`, or rejects when the connection is aborted (shutdown):
 * a handler or hook that never settles does not hold the connection.
 */
function untilAborted<T>(
  value: T | Promise<T>,
  conn: Connection,
): Promise<T> {
  const signal = conn.thread.signal;
  return new Promise<T>((resolve, reject) => {
    if (signal.aborted) reject(signal.reason);
    conn.onAbort = reject;
    Promise.resolve(value).then(resolve, reject);
  }).finally(() => {
    conn.onAbort = undefined;
  });
}

/** The response of `onError` for `error` (the default's, if it fails). */
async function errorResponse(
  conn: Connection,
  error: unknown,
): Promise<Response> {
  let response: unknown;
  try {
    response = await untilAborted(conn.site.onError(error), conn);
  } catch (hookError) {
    if (conn.thread.signal.aborted) throw hookError;
    return defaultOnError(hookError);
  }
  if (usable(response)) return response;
  return defaultOnError(
    new TypeError("onError must return a Response (not Response.error())"),
  );
}
