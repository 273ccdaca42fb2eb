// Copyright 2026 the @corothread/evthread authors. MIT license.

import { BodyReader } from "./_http_body.ts";
import { HttpError, latin1, parseHead } from "./_http_parse.ts";
import { HttpRequest, validRequestUrl } from "./_http_request.ts";
import {
  sendContinue,
  sendError,
  sendSwitching,
  type WriteContext,
  writeResponse,
} from "./_http_response.ts";
import {
  abortError,
  checkFunction,
  checkInteger,
  checkSignal,
  checkTimeout,
} from "./_validate.ts";
import { GracePeriod } from "./_grace_period.ts";
import {
  loopInternals,
  type ReclaimCandidate,
  socketInternals,
} from "./_internal.ts";
import { LimitExceededError } from "./errors.ts";
import { EvLoop } from "./ev_loop.ts";
import type { EvSocket } from "./ev_socket.ts";
import type { EvPoolPolicy, EvTcpAcceptor } from "./ev_tcp_acceptor.ts";
import type { EvThread } from "./ev_thread.ts";
import type { EvProxyInfo, EvProxyProtocolOptions } from "./proxy_protocol.ts";

/**
 * What a handler learns besides the request.
 *
 * @typeParam A The address type: `Deno.NetAddr`, or `Deno.UnixAddr` for a
 * server on a Unix domain socket.
 */
export interface ServeHandlerInfo<A extends Deno.Addr = Deno.NetAddr> {
  /**
   * The client's address; behind a proxy that sends a PROXY protocol header
   * (see {@linkcode ServeOptions.proxyProtocol}), the one the header gives.
   */
  remoteAddr: A;
  /**
   * The PROXY protocol header the connection started with, if any: the
   * proxy's own address is its `proxyAddr`.
   */
  proxy?: EvProxyInfo | undefined;
  /**
   * Resolves when the response has been written in full; rejects if it
   * could not be (the client went away, or the body stream failed).
   */
  completed: Promise<void>;
}

/**
 * A request handler, as for `Deno.serve`.
 *
 * @typeParam A The address type of `info.remoteAddr`.
 */
export type ServeHandler<A extends Deno.Addr = Deno.NetAddr> = (
  request: Request,
  info: ServeHandlerInfo<A>,
) => Response | Promise<Response>;

/** Options for {@linkcode serve}. */
export interface ServeOptions {
  /** Address to listen on. @default {"0.0.0.0"} */
  hostname?: string;
  /** Port to listen on; `0` picks a free one. @default {8000} */
  port?: number;
  /** Aborting it shuts the server down (with the default grace). */
  signal?: AbortSignal;
  /**
   * Called once listening, with the address. The default logs
   * `Listening on http://HOST:PORT/`.
   */
  onListen?: (localAddr: Deno.NetAddr) => void;
  /**
   * Makes the response for a handler that threw (or returned something
   * other than a Response). The default logs the error and answers a bare
   * `500 Internal Server Error`, without details.
   */
  onError?: (error: unknown) => Response | Promise<Response>;
  /**
   * Share this loop (and its task pool) with other listeners and tasks.
   * Without it the server makes its own loop with `maxConnections` slots.
   */
  loop?: EvLoop;
  /**
   * Most connections served at once (the pool's capacity), when the server
   * makes its own loop. @default {1024}
   */
  maxConnections?: number;
  /** What to do with new connections when the pool is full. @default {"wait"} */
  policy?: EvPoolPolicy;
  /**
   * Behind HAProxy, AWS NLB and the like: read a PROXY protocol header
   * (version 1 or 2) at the start of each connection from the trusted
   * peers, and give handlers the client's address it carries as
   * `info.remoteAddr`. Off by default. See {@linkcode EvProxyProtocolOptions}.
   */
  proxyProtocol?: EvProxyProtocolOptions;
  /** Deno's `tcpBacklog`. @default {511} */
  backlog?: number;
  /**
   * Share the port with other servers, one per worker (`SO_REUSEPORT`,
   * needs `--unstable-net`): see `EvListenOptions.reusePort`.
   * @default {false}
   */
  reusePort?: boolean;
  /** Most bytes in a request head: request line and fields. @default {65536} */
  maxHeaderBytes?: number;
  /** Most header fields in a request. @default {128} */
  maxHeaderFields?: number;
  /** Longest request target. @default {8192} */
  maxUrlBytes?: number;
  /** Largest request body; larger ones get 413. @default {Infinity} */
  maxBodyBytes?: number;
  /** Milliseconds to receive a whole request head. @default {10000} */
  headerTimeout?: number;
  /** Milliseconds a keep-alive connection may wait for its next request. @default {5000} */
  idleTimeout?: number;
  /** Milliseconds allowed between bytes of a request body. @default {30000} */
  bodyTimeout?: number;
  /** Milliseconds allowed for each write of a response. @default {30000} */
  sendTimeout?: number;
  /**
   * HTTPS: the certificate chain, in PEM. With `key`, the server listens
   * with TLS and request URLs are `https:`.
   */
  cert?: string;
  /** HTTPS: the private key of `cert`, in PEM. */
  key?: string;
  /** HTTPS: the ALPN protocols to offer. @default {["http/1.1"]} */
  alpnProtocols?: string[];
  /**
   * HTTPS: milliseconds for a client to complete the TLS handshake.
   * @default {10000}
   */
  handshakeTimeout?: number;
}

/** Options for {@linkcode serve} on a Unix domain socket. */
export interface ServeUnixOptions extends
  Omit<
    ServeOptions,
    | "hostname"
    | "port"
    | "backlog"
    | "reusePort"
    | "proxyProtocol"
    | "cert"
    | "key"
    | "alpnProtocols"
    | "handshakeTimeout"
    | "onListen"
  > {
  /** The transport. */
  transport: "unix";
  /** The socket's path in the file system. */
  path: string;
  /** Called once listening, with the address. */
  onListen?: (localAddr: Deno.UnixAddr) => void;
}

interface Limits {
  maxHeaderBytes: number;
  maxHeaderFields: number;
  maxUrlBytes: number;
  maxBodyBytes: number;
  headerTimeout: number;
  idleTimeout: number;
  bodyTimeout: number;
  sendTimeout: number;
}

/** A connection's state, as the server's shutdown sees it. */
interface Connection {
  thread: EvThread<unknown>;
  socket: EvSocket;
  /** Waiting for the next request (nothing in flight). */
  idle: boolean;
  /**
   * When it last finished a response and began to wait for the next
   * request (`performance.now()`); 0 before its first response.
   */
  idleSince: number;
}

interface Upgrade {
  request: Request;
  proc: (socket: EvSocket, thread: EvThread<unknown>) => unknown;
  headers: Headers;
}

/** Responses returned by {@linkcode upgrade}, and what they stand for. */
const upgrades = new WeakMap<Response, Upgrade>();
/** The upgrade protocol a request asked for. */
const upgradable = new WeakMap<Request, string>();

const CRLFCRLF = new Uint8Array([0x0d, 0x0a, 0x0d, 0x0a]);
// A head ended by bare LFs is found (and rejected) at once, rather than
// waited on until the header timeout.
const LFLF = new Uint8Array([0x0a, 0x0a]);

let constructing = false;
let serverInternals: {
  create: (
    loop: EvLoop,
    ownLoop: boolean,
    listen: (server: HttpServer<Deno.Addr>) => EvTcpAcceptor<Deno.Addr>,
  ) => HttpServer<Deno.Addr>;
  draining: (server: HttpServer<Deno.Addr>) => boolean;
  track: (server: HttpServer<Deno.Addr>, connection: Connection) => void;
  untrack: (server: HttpServer<Deno.Addr>, connection: Connection) => void;
};
const DEFAULT_GRACE = 5000;
const DRAIN_LIMIT = 262_144;

function defaultOnError(error: unknown): Response {
  console.error("evthread/http: the handler failed:", error);
  return new Response("Internal Server Error", { status: 500 });
}

function positive(value: unknown, name: string, fallback: number): number {
  return checkInteger(value ?? fallback, name, 1);
}

function timeoutOption(
  value: unknown,
  name: string,
  fallback: number,
): number {
  const ms = checkTimeout(value ?? fallback, name);
  if (ms === 0) throw new RangeError(`'${name}' must be above 0: received 0`);
  return ms ?? Infinity;
}

/**
 * Answers a request that asked to switch protocols (`Connection: upgrade`
 * and `Upgrade: NAME`) with `101 Switching Protocols`, then hands the
 * connection to `proc` as an {@linkcode EvSocket} (like Go's `Hijacker`).
 * Return the response from the handler; `proc` runs after the 101 is
 * written, in the connection's task, so shutdown and ownership apply to it.
 * Bytes the client sent after its request are already buffered in the
 * socket.
 *
 * @example A line protocol over an upgraded connection
 * ```ts
 * import { serve, upgrade } from "@corothread/evthread/http";
 * import { assertEquals } from "@std/assert";
 *
 * await using server = serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) =>
 *   upgrade(req, async (socket) => {
 *     const line = await socket.readLine({ timeout: 1000 });
 *     await socket.send(new TextEncoder().encode(`you said ${line}\n`));
 *   }));
 *
 * using conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
 * await conn.write(new TextEncoder().encode(
 *   "GET / HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: line\r\n\r\nhello\n",
 * ));
 * const text = await new Response(conn.readable).text();
 * assertEquals(text.split("\r\n")[0], "HTTP/1.1 101 Switching Protocols");
 * assertEquals(text.endsWith("you said hello\n"), true);
 * ```
 *
 * @param request The request that asked to upgrade.
 * @param proc Runs the new protocol on the connection.
 * @param options Extra `headers` for the 101 response.
 * @returns The response to return from the handler.
 * @throws {TypeError} if the request did not ask to upgrade, or did not
 * come from this server.
 */
export function upgrade(
  request: Request,
  proc: (socket: EvSocket, thread: EvThread<unknown>) => unknown,
  options?: { headers?: HeadersInit },
): Response {
  checkFunction(proc, "proc");
  if (!upgradable.has(request)) {
    throw new TypeError(
      "The request did not ask to upgrade (Connection: upgrade and Upgrade), or is not from this server",
    );
  }
  const response = new Response(null, { status: 200 });
  upgrades.set(response, {
    request,
    proc,
    headers: new Headers(options?.headers),
  });
  return response;
}

/**
 * A running HTTP/1.1 server made by {@linkcode serve}.
 *
 * @example Shutting down
 * ```ts
 * import { serve } from "@corothread/evthread/http";
 * import { assertEquals } from "@std/assert";
 *
 * const server = serve(
 *   { hostname: "127.0.0.1", port: 0, onListen() {} },
 *   () => new Response("ok"),
 * );
 * const response = await fetch(`http://127.0.0.1:${server.addr.port}/`);
 * assertEquals(await response.text(), "ok");
 * await server.shutdown();
 * await server.finished;
 * ```
 */
export class HttpServer<A extends Deno.Addr = Deno.NetAddr>
  implements AsyncDisposable {
  #loop!: EvLoop;
  #ownLoop = false;
  #acceptor!: EvTcpAcceptor<Deno.Addr>;
  #connections = new Set<Connection>();
  #draining = new AbortController();
  #grace = new GracePeriod();
  #finished: Promise<void>;
  #resolveFinished!: () => void;
  #idleWaiters: (() => void)[] = [];
  #removeReclaimer: (() => void) | undefined;

  /**
   * Not for direct use: call {@linkcode serve}.
   *
   * @throws {TypeError} always, when called directly.
   */
  constructor() {
    if (!constructing) {
      throw new TypeError(
        "HttpServer cannot be constructed directly: use serve()",
      );
    }
    constructing = false;
    this.#finished = new Promise((resolve) => {
      this.#resolveFinished = resolve;
    });
  }

  /** The address listened on. */
  get addr(): A {
    return this.#acceptor.addr as A;
  }

  /** The loop the server runs on. */
  get loop(): EvLoop {
    return this.#loop;
  }

  /** Resolves when the server has shut down. */
  get finished(): Promise<void> {
    return this.#finished;
  }

  /**
   * Shuts down gracefully: stops accepting, closes idle keep-alive
   * connections at once, lets requests in flight finish for up to `grace`
   * milliseconds (default 5000), then aborts the rest (their
   * `request.signal` aborts and their connections close). Calling it again
   * returns the same promise.
   *
   * @param options `grace` in milliseconds.
   */
  shutdown(options?: { grace?: number }): Promise<void> {
    return this.#grace.start(
      options,
      DEFAULT_GRACE,
      (grace) => this.#doShutdown(grace),
    );
  }

  async #doShutdown(grace: number): Promise<void> {
    this.#drain();
    this.#removeReclaimer?.();
    await this.#acceptor.close();
    await this.#grace.wait(this.#allEnded(), grace);
    this.#grace.end();
    const reason = abortError("The server was shut down");
    for (const c of this.#connections) c.thread.abort(reason);
    await this.#allEnded();
    if (this.#ownLoop) await this.#loop.shutdown({ grace: 0 });
    this.#resolveFinished();
  }

  /** Stops taking requests; ends the connections that wait for one. */
  #drain(): void {
    if (this.#draining.signal.aborted) return;
    this.#removeReclaimer?.();
    const reason = abortError("The server is shutting down");
    this.#draining.abort(reason);
    for (const c of this.#connections) {
      // Idle: between requests, with no byte of the next one yet.
      if (c.idle && c.socket.buffered === 0) c.thread.abort(reason);
    }
    if (!this.#grace.started) {
      // The loop is shutting down (a shared one, or its own called
      // directly, as by EvCluster): it applies its own grace.
      this.#acceptor.close().then(() => this.#allEnded()).then(() =>
        this.#resolveFinished()
      );
    }
  }

  /**
   * Ends the keep-alive connection that has waited longest for its next
   * request, to give its slot to a client that waits for one. Connections
   * in the middle of a request (or with bytes of the next one) are never
   * touched, nor ones that have not had a response yet.
   */
  #reclaimIdle(): ReclaimCandidate | undefined {
    let oldest: Connection | undefined;
    for (const c of this.#connections) {
      // Idle: between responses, its read of the next head still waiting
      // (a read that has settled may hold a whole request), nothing of the
      // next request received.
      if (
        c.idle && c.idleSince > 0 && c.socket.buffered === 0 &&
        socketInternals.readWaiting(c.socket) && !c.thread.signal.aborted &&
        (oldest === undefined || c.idleSince < oldest.idleSince)
      ) {
        oldest = c;
      }
    }
    if (oldest === undefined) return undefined;
    const chosen = oldest;
    return {
      since: chosen.idleSince,
      reclaim: () => {
        chosen.thread.abort(
          abortError("Closed an idle keep-alive connection to free a slot"),
        );
        return chosen.thread;
      },
    };
  }

  #allEnded(): Promise<void> {
    if (this.#connections.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  static {
    serverInternals = {
      create: (loop, ownLoop, listen) => {
        constructing = true;
        const server = new HttpServer<Deno.Addr>();
        server.#loop = loop;
        server.#ownLoop = ownLoop;
        server.#acceptor = listen(server);
        server.#removeReclaimer = loopInternals.addReclaimer(
          loop,
          () => server.#reclaimIdle(),
        );
        loop.draining.addEventListener("abort", () => server.#drain(), {
          once: true,
        });
        return server;
      },
      draining: (server) => server.#draining.signal.aborted,
      track: (server, connection) => server.#connections.add(connection),
      untrack: (server, connection) => {
        server.#connections.delete(connection);
        if (
          server.#connections.size === 0 && server.#idleWaiters.length > 0
        ) {
          const waiters = server.#idleWaiters;
          server.#idleWaiters = [];
          for (const resolve of waiters) resolve();
        }
      },
    };
  }

  /** Makes the listener keep the process alive (the default). */
  ref(): void {
    this.#acceptor.ref();
  }

  /** Lets the process exit while the server waits for connections. */
  unref(): void {
    this.#acceptor.unref();
  }

  /** Shuts down with the default grace period. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }
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

  /** The response was written in full. */
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
  state: ExchangeState,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (state.signal.aborted) reject(state.signal.reason);
    state.onAbort = reject;
    Promise.resolve(value).then(resolve, reject);
  }).finally(() => {
    state.onAbort = undefined;
  });
}

async function errorResponse(
  onError: (error: unknown) => Response | Promise<Response>,
  error: unknown,
  state: ExchangeState,
): Promise<Response> {
  let response: unknown;
  try {
    response = await untilAborted(onError(error), state);
  } catch (hookError) {
    if (state.signal.aborted) throw hookError;
    return defaultOnError(hookError);
  }
  if (usable(response)) return response;
  return defaultOnError(
    new TypeError("onError must return a Response (not Response.error())"),
  );
}

/** Everything a connection needs from its server. */
interface Site {
  server: HttpServer<Deno.Addr>;
  handler: ServeHandler<Deno.Addr>;
  onError: (error: unknown) => Response | Promise<Response>;
  limits: Limits;
}

/** Serves one connection: requests in order until it closes. */
async function serveConnection(
  site: Site,
  socket: EvSocket,
  thread: EvThread<unknown>,
  remoteAddr: Deno.Addr,
): Promise<void> {
  const { server, limits } = site;
  const connection: Connection = { thread, socket, idle: true, idleSince: 0 };
  // One abort listener for the connection's life: it stops whatever the
  // exchange is waiting on (the handler, a body stream read).
  const state: ExchangeState = {
    onAbort: undefined,
    signal: thread.signal,
    scratch: undefined,
  };
  thread.signal.addEventListener(
    "abort",
    () => state.onAbort?.(thread.signal.reason),
    { once: true },
  );
  serverInternals.track(server, connection);
  try {
    // Only plain TCP connections have the option (not TLS, nor Unix).
    if (socket.localAddr.transport === "tcp" && socket.tls === undefined) {
      socket.setNoDelay(true);
    }
    let timeout = limits.headerTimeout;
    while (true) {
      connection.idle = true;
      if (serverInternals.draining(server)) return;
      const next = exchange(site, socket, thread, remoteAddr, {
        connection,
        state,
        timeout,
      });
      // Its read of the next head now waits: if a client waits for a slot
      // of the full pool (it came while this one was busy), the idle
      // connection that has waited longest, maybe this one, gives it one.
      if (connection.idleSince > 0) loopInternals.reclaim(server.loop);
      if (!await next) return;
      connection.idleSince = performance.now();
      timeout = limits.idleTimeout;
    }
  } catch (error) {
    if (thread.signal.aborted && error === thread.signal.reason) return;
    if (isDisconnect(error) || isTimeout(error)) return;
    throw error;
  } finally {
    serverInternals.untrack(server, connection);
  }
}

/** What `exchange` shares with its connection. */
interface ExchangeState {
  onAbort: ((reason: unknown) => void) | undefined;
  /** The connection's task's signal. */
  signal: AbortSignal;
  /** The response writer's reusable buffer. */
  scratch: Uint8Array | undefined;
}

/** Reads a request head; `null` when the connection should just close. */
async function readHead(
  socket: EvSocket,
  limits: Limits,
  timeout: number,
): Promise<Uint8Array | null> {
  const options = { maxLength: limits.maxHeaderBytes, timeout };
  const sendTimeout = limits.sendTimeout;
  try {
    try {
      return await socketInternals.readUntilEither(
        socket,
        CRLFCRLF,
        LFLF,
        options,
      );
    } catch (error) {
      // Idle keep-alive timeout: close quietly if nothing came; if a head
      // had begun, it gets the header timeout to finish.
      if (!isTimeout(error) || socket.buffered === 0) throw error;
      if (timeout === limits.headerTimeout) throw error;
      options.timeout = limits.headerTimeout;
      return await socketInternals.readUntilEither(
        socket,
        CRLFCRLF,
        LFLF,
        options,
      );
    }
  } catch (error) {
    if (error instanceof LimitExceededError) {
      // 414 when the request line alone is over the limit, else 431.
      const seen = await socket.peek(socket.buffered);
      const eol = seen === null ? -1 : seen.indexOf(0x0a);
      const status = eol < 0 || eol > limits.maxUrlBytes + 64 ? 414 : 431;
      await sendError(socket, status, sendTimeout);
      return null;
    }
    if (isTimeout(error)) {
      if (socket.buffered > 0) await sendError(socket, 408, sendTimeout);
      return null;
    }
    throw error;
  }
}

/** One request and its response. Returns whether to read another. */
async function exchange(
  site: Site,
  socket: EvSocket,
  thread: EvThread<unknown>,
  remoteAddr: Deno.Addr,
  context: { connection: Connection; state: ExchangeState; timeout: number },
): Promise<boolean> {
  const { limits } = site;
  const sendTimeout = limits.sendTimeout;
  const { connection, state } = context;

  const headBytes = await readHead(socket, limits, context.timeout);
  if (headBytes === null) return false;
  connection.idle = false;
  const n = headBytes.byteLength;
  if (headBytes[n - 3] !== 0x0a || headBytes[n - 4] !== 0x0d) {
    await sendError(socket, 400, sendTimeout); // ended by bare LFs
    return false;
  }
  const text = latin1(headBytes.subarray(0, n - 4));
  if (/^(\r\n)*$/.test(text)) return true; // empty lines between requests
  let head;
  try {
    head = parseHead(text, limits);
  } catch (error) {
    if (error instanceof HttpError) {
      await sendError(socket, error.status, sendTimeout);
      return false;
    }
    throw error;
  }

  const host = head.host || hostOf(socket.localAddr);
  if (
    !validRequestUrl(
      head.target,
      host,
      head.host ?? "",
      socket.tls !== undefined,
    )
  ) {
    await sendError(socket, 400, sendTimeout);
    return false;
  }

  // How the response goes out; `started` is shared with the body reader.
  const ctx: WriteContext = {
    socket,
    head: head.method === "HEAD",
    keepAlive: false,
    http10: head.minor === 0,
    timeout: sendTimeout,
    signal: thread.signal,
    state,
    started: false,
  };

  // The body, read as the handler pulls it.
  let body: BodyReader | undefined;
  if (head.chunked || head.contentLength > 0) {
    if (head.contentLength > limits.maxBodyBytes) {
      await sendError(socket, 413, sendTimeout);
      return false;
    }
    body = new BodyReader(socket, {
      contentLength: head.chunked ? -1 : head.contentLength,
      maxBytes: limits.maxBodyBytes,
      maxTrailerBytes: limits.maxHeaderBytes,
      timeout: limits.bodyTimeout,
      // No 100 once the response has begun: it would land inside it.
      onFirstRead: head.expectContinue
        ? () =>
          ctx.started ? Promise.resolve() : sendContinue(socket, sendTimeout)
        : undefined,
    });
  }

  // request.signal, made on first use: aborts when the client disconnects
  // (or the connection is aborted) before the response is sent.
  let watch: AbortController | undefined;
  const request = new HttpRequest({
    method: head.method,
    target: head.target,
    host,
    secure: socket.tls !== undefined,
    fields: head.fields,
    body: body === undefined ? null : body.stream(),
    signal: () => {
      const controller = new AbortController();
      watch = new AbortController();
      const stop = watch.signal;
      const onAbort = () => controller.abort(thread.signal.reason);
      if (thread.signal.aborted) onAbort();
      else {
        thread.signal.addEventListener("abort", onAbort, {
          once: true,
          signal: stop,
        });
      }
      watchDisconnect(socket, controller, stop);
      return controller.signal;
    },
  }) as unknown as Request;
  if (head.upgrade !== undefined) upgradable.set(request, head.upgrade);
  const info = new Info(remoteAddr, socket.proxy);

  try {
    // The handler. A handler that never settles still ends with the
    // connection: aborting it (shutdown) rejects the wait.
    let response: Response;
    try {
      let result: unknown = site.handler(request, info);
      if (!(result instanceof Response)) {
        result = await untilAborted(result, state);
      }
      if (!usable(result)) {
        throw new TypeError(
          "The handler must return a Response (not Response.error(), nor a 1xx status outside upgrade()) or a promise of one",
        );
      }
      response = result;
    } catch (error) {
      if (thread.signal.aborted && error === thread.signal.reason) throw error;
      if (body?.failed) {
        return await bodyFailed(socket, body, info, sendTimeout);
      }
      response = await errorResponse(site.onError, error, state);
    }
    if (body?.failed) return await bodyFailed(socket, body, info, sendTimeout);

    const up = upgrades.get(response);
    if (up !== undefined) {
      if (up.request !== request) {
        throw new TypeError("upgrade() was given another request");
      }
      await sendSwitching(socket, head.upgrade!, up.headers, sendTimeout);
      info.sent();
      watch?.abort();
      await up.proc(socket, thread);
      return false;
    }

    // The response.
    let keepAlive = head.keepAlive && !serverInternals.draining(site.server) &&
      // A client waits for a slot that no idle connection could give (they
      // were offered when it came): this one gives its slot after this
      // response, which says so (`connection: close`).
      // Not with a pipelined request received: that one is answered first.
      !(socket.buffered === 0 &&
        loopInternals.yieldSlot(site.server.loop, thread));
    if (
      body !== undefined && !body.done && head.expectContinue && !body.started
    ) {
      keepAlive = false; // the client has not sent the body: do not wait
    }
    ctx.keepAlive = keepAlive;
    try {
      try {
        keepAlive = await writeResponse(response, ctx);
      } catch (error) {
        if (ctx.started || thread.signal.aborted) throw error;
        // The body stream failed reading the request body: answer for that.
        if (body?.failed) {
          return await bodyFailed(socket, body, info, sendTimeout);
        }
        // Nothing went out yet (a used body, a chunk that is not bytes):
        // answer as for a handler that threw.
        ctx.keepAlive = false;
        keepAlive = await writeResponse(
          await errorResponse(site.onError, error, state),
          ctx,
        );
      }
      info.sent();
    } catch (error) {
      info.failed(error);
      if (thread.signal.aborted && error === thread.signal.reason) throw error;
      // Cut the connection: the client must see a truncated response.
      socket.close();
      return false;
    }

    // What is left of the body.
    if (body !== undefined && !body.done) {
      if (!keepAlive || body.failed) return false;
      if (!await body.drain(DRAIN_LIMIT)) return false;
    }
    return keepAlive;
  } finally {
    watch?.abort();
    if (info.pending) {
      info.failed(thread.signal.reason ?? abortError("No response was sent"));
    }
  }
}

/** Answers a request whose body could not be read, then closes. */
async function bodyFailed(
  socket: EvSocket,
  body: BodyReader,
  info: Info,
  sendTimeout: number,
): Promise<false> {
  const error = body.error;
  info.failed(error);
  if (error instanceof HttpError) {
    await sendError(socket, error.status, sendTimeout);
  } else if (isTimeout(error)) await sendError(socket, 408, sendTimeout);
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

function hostOf(addr: Deno.Addr): string {
  if (addr.transport !== "tcp" && addr.transport !== "udp") return "localhost";
  const name = addr.hostname.includes(":")
    ? `[${addr.hostname}]`
    : addr.hostname;
  return `${name}:${addr.port}`;
}

/**
 * Serves HTTP/1.1 with a task per connection, on {@linkcode EvLoop}. The
 * same forms as `Deno.serve`: `serve(handler)` and
 * `serve(options, handler)`, where the handler takes a `Request` and
 * returns a `Response` (or a promise of one).
 *
 * Keep-alive, pipelining, chunked bodies both ways, `Expect:
 * 100-continue`, `HEAD`, and limits and timeouts on every stage of a
 * request (see {@linkcode ServeOptions}); `request.signal` aborts when the
 * client disconnects; see {@linkcode upgrade} to take a connection over.
 *
 * @example Hello, World
 * ```ts
 * import { serve } from "@corothread/evthread/http";
 * import { assertEquals } from "@std/assert";
 *
 * await using server = serve(
 *   { hostname: "127.0.0.1", port: 0, onListen() {} },
 *   (request) => new Response(`Hello, ${new URL(request.url).pathname}`),
 * );
 * const response = await fetch(`http://127.0.0.1:${server.addr.port}/world`);
 * assertEquals(await response.text(), "Hello, /world");
 * ```
 *
 * @param options Address, limits and hooks.
 * @param handler Makes the response for each request.
 * @returns The running server.
 * @throws {Deno.errors.AddrInUse} if the address is taken.
 * @throws {TypeError} / {RangeError} for bad options.
 */
export function serve(handler: ServeHandler): HttpServer;
/**
 * Serves HTTP/1.1 with `options` (address, limits, hooks): see the first
 * form.
 *
 * @example With options
 * ```ts
 * import { serve } from "@corothread/evthread/http";
 * import { assertEquals } from "@std/assert";
 *
 * await using server = serve({
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   maxBodyBytes: 1024,
 *   onListen() {},
 * }, async (request) => new Response(await request.text()));
 * const response = await fetch(`http://127.0.0.1:${server.addr.port}/`, {
 *   method: "POST",
 *   body: "echo",
 * });
 * assertEquals(await response.text(), "echo");
 * ```
 *
 * @param options Address, limits and hooks.
 * @param handler Makes the response for each request.
 * @returns The running server.
 */
export function serve(options: ServeOptions, handler: ServeHandler): HttpServer;
/**
 * Serves HTTP/1.1 with the handler among the options, as
 * `Deno.serve({ handler, ...options })` does.
 *
 * @example Handler in the options
 * ```ts
 * import { serve } from "@corothread/evthread/http";
 * import { assertEquals } from "@std/assert";
 *
 * await using server = serve({
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   onListen() {},
 *   handler: () => new Response("ok"),
 * });
 * const response = await fetch(`http://127.0.0.1:${server.addr.port}/`);
 * assertEquals(await response.text(), "ok");
 * ```
 *
 * @param options Address, limits, hooks, and `handler`.
 * @returns The running server.
 */
export function serve(
  options: ServeOptions & { handler: ServeHandler },
): HttpServer;
/**
 * Serves HTTP/1.1 on a Unix domain socket.
 *
 * @example On a Unix domain socket
 * ```ts ignore
 * import { serve } from "@corothread/evthread/http";
 *
 * serve(
 *   { transport: "unix", path: "/tmp/app.sock" },
 *   () => new Response("ok"),
 * );
 * // curl --unix-socket /tmp/app.sock http://localhost/
 * ```
 *
 * @param options The path, limits and hooks.
 * @param handler Makes the response for each request.
 * @returns The running server.
 */
export function serve(
  options: ServeUnixOptions,
  handler: ServeHandler<Deno.UnixAddr>,
): HttpServer<Deno.UnixAddr>;
export function serve(
  // deno-lint-ignore no-explicit-any
  a: ServeHandler<any> | ServeOptions | ServeUnixOptions,
  // deno-lint-ignore no-explicit-any
  b?: ServeHandler<any>,
  // deno-lint-ignore no-explicit-any
): HttpServer<any> {
  const options = (typeof a === "function" ? {} : a ?? {}) as
    & ServeOptions
    & Partial<Omit<ServeUnixOptions, "onListen">>;
  // serve(handler), serve(options, handler), serve({ handler, ...options }).
  const handler = typeof a === "function"
    ? a
    : b ?? (options as ServeOptions & { handler?: ServeHandler }).handler;
  checkFunction(handler, "handler");
  if (options.onListen !== undefined) {
    checkFunction(options.onListen, "onListen");
  }
  if (options.onError !== undefined) checkFunction(options.onError, "onError");
  const signal = checkSignal(options.signal);
  const limits: Limits = {
    maxHeaderBytes: positive(options.maxHeaderBytes, "maxHeaderBytes", 65_536),
    maxHeaderFields: positive(options.maxHeaderFields, "maxHeaderFields", 128),
    maxUrlBytes: positive(options.maxUrlBytes, "maxUrlBytes", 8192),
    maxBodyBytes: options.maxBodyBytes === undefined ||
        options.maxBodyBytes === Infinity
      ? Infinity
      : checkInteger(options.maxBodyBytes, "maxBodyBytes", 0),
    headerTimeout: timeoutOption(
      options.headerTimeout,
      "headerTimeout",
      10_000,
    ),
    idleTimeout: timeoutOption(options.idleTimeout, "idleTimeout", 5000),
    bodyTimeout: timeoutOption(options.bodyTimeout, "bodyTimeout", 30_000),
    sendTimeout: timeoutOption(options.sendTimeout, "sendTimeout", 30_000),
  };
  let loop: EvLoop;
  const ownLoop = options.loop === undefined;
  if (ownLoop) {
    loop = new EvLoop({
      capacity: positive(options.maxConnections, "maxConnections", 1024),
    });
  } else {
    if (!(options.loop instanceof EvLoop)) {
      throw new TypeError("'loop' must be an EvLoop");
    }
    if (options.maxConnections !== undefined) {
      throw new TypeError(
        "'maxConnections' cannot be set with 'loop': the loop's capacity applies",
      );
    }
    loop = options.loop;
  }
  const site = {
    handler: handler!,
    onError: options.onError ?? defaultOnError,
    limits,
  } as Site;
  const httpServer = serverInternals.create(loop, ownLoop, (srv) => {
    site.server = srv;
    const factory = (info: { remoteAddr: Deno.Addr }) =>
    (
      socket: EvSocket,
      thread: EvThread<unknown>,
    ) => serveConnection(site, socket, thread, info.remoteAddr);
    const policy = options.policy !== undefined
      ? { policy: options.policy }
      : {};
    if (options.transport === "unix") {
      // Every other address option is loop.listen's to refuse (a cert
      // here must not silently mean plaintext).
      const {
        handler: _h,
        transport: _t,
        signal: _s,
        onListen: _l,
        onError: _e,
        loop: _loop,
        maxConnections: _m,
        policy: _p,
        maxHeaderBytes: _a,
        maxHeaderFields: _b,
        maxUrlBytes: _c,
        maxBodyBytes: _d,
        headerTimeout: _f,
        idleTimeout: _g,
        bodyTimeout: _i,
        sendTimeout: _j,
        ...rest
      } = options as ServeOptions & ServeUnixOptions & { handler?: unknown };
      return loop.listen(
        { ...rest, transport: "unix", path: options.path!, ...policy },
        factory,
      );
    }
    if (options.transport !== undefined && options.transport !== "tcp") {
      throw new TypeError(
        `'transport' must be "tcp" or "unix": received ${
          JSON.stringify(options.transport)
        }`,
      );
    }
    return loop.listen(
      {
        hostname: options.hostname ?? "0.0.0.0",
        port: options.port ?? 8000,
        ...(options.backlog !== undefined ? { backlog: options.backlog } : {}),
        ...(options.reusePort !== undefined
          ? { reusePort: options.reusePort }
          : {}),
        ...policy,
        ...(options.proxyProtocol !== undefined
          ? { proxyProtocol: options.proxyProtocol }
          : {}),
        ...(options.cert !== undefined || options.key !== undefined
          ? {
            cert: options.cert!,
            key: options.key!,
            alpnProtocols: options.alpnProtocols ?? ["http/1.1"],
            ...(options.handshakeTimeout !== undefined
              ? { handshakeTimeout: options.handshakeTimeout }
              : {}),
          }
          : {}),
      },
      factory,
    );
  });
  const addr: Deno.Addr = httpServer.addr;
  if (options.onListen !== undefined) {
    (options.onListen as (addr: Deno.Addr) => void)(addr);
  } else if (addr.transport === "unix") {
    console.log(`Listening on ${addr.path}`);
  } else {
    const scheme = options.cert !== undefined ? "https" : "http";
    console.log(`Listening on ${scheme}://${hostOf(addr)}/`);
  }
  if (signal !== undefined) {
    if (signal.aborted) httpServer.shutdown();
    else {
      signal.addEventListener("abort", () => httpServer.shutdown(), {
        once: true,
      });
    }
  }
  return httpServer;
}
