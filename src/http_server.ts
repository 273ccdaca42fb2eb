// Copyright 2026 the @corothread/evthread authors. MIT license.

import { BodyReader } from "./_http_body.ts";
import {
  HttpError,
  latin1,
  parseHead,
  type RequestHead,
} from "./_http_parse.ts";
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
import { GracePeriod } from "./_delay.ts";
import { loopInternals, socketInternals } from "./_internal.ts";
import type { ReclaimCandidate, SlotReclaimer } from "./_reclaim.ts";
import { LimitExceededError } from "./errors.ts";
import { EvLoop } from "./ev_loop.ts";
import type { EvSocket } from "./ev_socket.ts";
import type {
  EvConnectionFactory,
  EvListenOptions,
  EvPoolPolicy,
  EvTcpAcceptor,
  EvUnixListenOptions,
} from "./ev_tcp_acceptor.ts";
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

/**
 * A connection: what its exchanges share, and its state as the server's
 * shutdown and reclaiming see it.
 */
interface Connection {
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
  #removeCandidates: (() => void) | undefined;

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
    this.#removeCandidates?.();
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
    this.#removeCandidates?.();
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
        server.#removeCandidates = loopInternals.slots(loop).addSource(
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

/** Everything a connection needs from its server. */
interface Site {
  server: HttpServer<Deno.Addr>;
  /** The loop's slot reclaiming. */
  slots: SlotReclaimer;
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
  const conn: Connection = {
    site,
    thread,
    socket,
    remoteAddr,
    idle: true,
    idleSince: 0,
    onAbort: undefined,
    scratch: undefined,
  };
  // One abort listener for the connection's life: it stops whatever the
  // exchange is waiting on (the handler, a body stream read).
  thread.signal.addEventListener(
    "abort",
    () => conn.onAbort?.(thread.signal.reason),
    { once: true },
  );
  serverInternals.track(site.server, conn);
  try {
    // Only plain TCP connections have the option (not TLS, nor Unix).
    if (socket.localAddr.transport === "tcp" && socket.tls === undefined) {
      socket.setNoDelay(true);
    }
    let timeout = site.limits.headerTimeout;
    while (true) {
      conn.idle = true;
      if (serverInternals.draining(site.server)) return;
      const next = exchange(conn, timeout);
      // Its read of the next head now waits: if a client waits for a slot
      // of the full pool (it came while this one was busy), the idle
      // connection that has waited longest, maybe this one, gives it one.
      if (conn.idleSince > 0) site.slots.reclaim();
      if (!await next) return;
      conn.idleSince = performance.now();
      timeout = site.limits.idleTimeout;
    }
  } catch (error) {
    if (thread.signal.aborted && error === thread.signal.reason) return;
    if (isDisconnect(error) || isTimeout(error)) return;
    throw error;
  } finally {
    serverInternals.untrack(site.server, conn);
  }
}

/**
 * One request and its response, as the body of Go's `conn.serve` loop:
 * read the request, respond, finish. Returns whether to read another.
 */
async function exchange(conn: Connection, timeout: number): Promise<boolean> {
  // Read the request.
  const bytes = await readHead(conn.socket, conn.site.limits, timeout);
  if (bytes === null) return false;
  conn.idle = false;
  let head: RequestHead | undefined;
  try {
    head = requestHead(conn, bytes);
  } catch (error) {
    if (!(error instanceof HttpError)) throw error;
    await sendError(conn.socket, error.status, conn.site.limits.sendTimeout);
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

/**
 * The request head in `bytes` (up to its blank line), parsed and checked;
 * `undefined` when they are only empty lines between requests.
 *
 * @throws {HttpError} with the status to refuse the request with.
 */
function requestHead(
  conn: Connection,
  bytes: Uint8Array,
): RequestHead | undefined {
  const n = bytes.byteLength;
  if (bytes[n - 3] !== 0x0a || bytes[n - 4] !== 0x0d) {
    throw new HttpError(400, "Request head ended by bare LFs");
  }
  const text = latin1(bytes.subarray(0, n - 4));
  if (/^(\r\n)*$/.test(text)) return undefined;
  const limits = conn.site.limits;
  const head = parseHead(text, limits);
  const socket = conn.socket;
  if (
    !validRequestUrl(
      head.target,
      requestHost(head, socket),
      head.host ?? "",
      socket.tls !== undefined,
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
 * One request and its response: what the steps of {@linkcode exchange}
 * share. It is the response writer's context too, so that one object
 * serves both.
 */
class Exchange implements WriteContext {
  readonly conn: Connection;
  readonly head: RequestHead;
  /** The body, read as the handler pulls it. */
  readonly body: BodyReader | undefined;
  readonly request: Request;
  readonly info: Info;
  /** Stops watching for a disconnect (once `request.signal` is made). */
  watch: AbortController | undefined = undefined;
  // How the response goes out; `started` is shared with the body reader.
  readonly socket: EvSocket;
  readonly isHead: boolean;
  keepAlive = false;
  readonly http10: boolean;
  readonly timeout: number;
  readonly signal: AbortSignal;
  readonly state: Connection;
  started = false;

  constructor(conn: Connection, head: RequestHead) {
    const { socket, site } = conn;
    this.conn = conn;
    this.head = head;
    this.socket = socket;
    this.isHead = head.method === "HEAD";
    this.http10 = head.minor === 0;
    this.timeout = site.limits.sendTimeout;
    this.signal = conn.thread.signal;
    this.state = conn;
    this.body = head.chunked || head.contentLength > 0
      ? new BodyReader(socket, {
        contentLength: head.chunked ? -1 : head.contentLength,
        maxBytes: site.limits.maxBodyBytes,
        maxTrailerBytes: site.limits.maxHeaderBytes,
        timeout: site.limits.bodyTimeout,
        // No 100 once the response has begun: it would land inside it.
        onFirstRead: head.expectContinue
          ? () =>
            this.started
              ? Promise.resolve()
              : sendContinue(socket, this.timeout)
          : undefined,
      })
      : undefined;
    this.request = new HttpRequest({
      method: head.method,
      target: head.target,
      host: requestHost(head, socket),
      secure: socket.tls !== undefined,
      fields: head.fields,
      body: this.body === undefined ? null : this.body.stream(),
      signal: () => this.#requestSignal(),
    }) as unknown as Request;
    if (head.upgrade !== undefined) upgradable.set(this.request, head.upgrade);
    this.info = new Info(conn.remoteAddr, socket.proxy);
  }

  /**
   * Makes `request.signal` (on first use): it aborts when the client
   * disconnects (or the connection is aborted) before the response is sent.
   */
  #requestSignal(): AbortSignal {
    const controller = new AbortController();
    const connSignal = this.signal;
    this.watch = new AbortController();
    const stop = this.watch.signal;
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
   * Ends the exchange: stops the disconnect watch, and fails `completed`
   * if no response was sent.
   */
  end(): void {
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
  return await errorResponse(x.conn, error);
}

/**
 * Whether the connection may stay open after this response (the response
 * itself may still close it).
 */
function mayKeepAlive(x: Exchange): boolean {
  const { conn, head, body } = x;
  const keepAlive = head.keepAlive &&
    !serverInternals.draining(conn.site.server) &&
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
 * else as for a handler that threw (a used body, a chunk that is not
 * bytes). Once bytes went out, cuts the connection: the client must see a
 * truncated response. Returns false: the connection closes.
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
  x.info.failed(error);
  if (x.signal.aborted && error === x.signal.reason) throw error;
  x.socket.close();
  return false;
}

/** Answers a request whose body could not be read, then closes. */
async function bodyFailed(x: Exchange): Promise<false> {
  const error = x.body!.error;
  x.info.failed(error);
  if (error instanceof HttpError) {
    await sendError(x.socket, error.status, x.timeout);
  } else if (isTimeout(error)) await sendError(x.socket, 408, x.timeout);
  return false;
}

/**
 * Answers `101 Switching Protocols` for {@linkcode upgrade} and runs the
 * new protocol on the connection, which is then done with HTTP.
 */
async function switchProtocols(x: Exchange, up: Upgrade): Promise<false> {
  if (up.request !== x.request) {
    throw new TypeError("upgrade() was given another request");
  }
  await sendSwitching(x.socket, x.head.upgrade!, up.headers, x.timeout);
  x.info.sent();
  x.watch?.abort();
  await up.proc(x.socket, x.conn.thread);
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
  const options = (typeof a === "function" ? {} : a ?? {}) as AnyOptions;
  // serve(handler), serve(options, handler), serve({ handler, ...options }).
  const handler = typeof a === "function" ? a : b ?? options.handler;
  checkFunction(handler, "handler");
  if (options.onListen !== undefined) {
    checkFunction(options.onListen, "onListen");
  }
  if (options.onError !== undefined) checkFunction(options.onError, "onError");
  const signal = checkSignal(options.signal);
  const limits = limitsOf(options);
  const loop = loopOf(options);
  const site = {
    handler: handler!,
    onError: options.onError ?? defaultOnError,
    limits,
    slots: loopInternals.slots(loop),
  } as Site;
  const server = serverInternals.create(loop, options.loop === undefined, (
    srv,
  ) => {
    site.server = srv;
    return listen(
      loop,
      options,
      (info) => (socket, thread) =>
        serveConnection(site, socket, thread, info.remoteAddr),
    );
  });
  announce(server.addr, options);
  if (signal?.aborted) server.shutdown();
  else {
    signal?.addEventListener("abort", () => server.shutdown(), { once: true });
  }
  return server;
}

/** Every option of {@linkcode serve}, whatever the transport. */
type AnyOptions =
  & ServeOptions
  & Partial<Omit<ServeUnixOptions, "onListen">>
  & { handler?: ServeHandler };

/** The options serve() reads itself: loop.listen takes the others. */
const OWN_OPTIONS = new Set([
  "handler",
  "transport",
  "signal",
  "onListen",
  "onError",
  "loop",
  "maxConnections",
  "policy",
  "maxHeaderBytes",
  "maxHeaderFields",
  "maxUrlBytes",
  "maxBodyBytes",
  "headerTimeout",
  "idleTimeout",
  "bodyTimeout",
  "sendTimeout",
]);

/** The limits and timeouts the options set, checked, with defaults. */
function limitsOf(options: ServeOptions): Limits {
  return {
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
}

/** The loop given in the options, or a new one of `maxConnections` slots. */
function loopOf(options: ServeOptions): EvLoop {
  if (options.loop === undefined) {
    return new EvLoop({
      capacity: positive(options.maxConnections, "maxConnections", 1024),
    });
  }
  if (!(options.loop instanceof EvLoop)) {
    throw new TypeError("'loop' must be an EvLoop");
  }
  if (options.maxConnections !== undefined) {
    throw new TypeError(
      "'maxConnections' cannot be set with 'loop': the loop's capacity applies",
    );
  }
  return options.loop;
}

/** Listens where the options say: TCP (TLS with a cert), or a Unix socket. */
function listen(
  loop: EvLoop,
  options: AnyOptions,
  factory: EvConnectionFactory<Deno.Addr>,
): EvTcpAcceptor<Deno.Addr> {
  if (options.transport === "unix") {
    // Every other option goes to loop.listen, which refuses those a Unix
    // socket cannot take (a cert here must not silently mean plaintext).
    const unix: Record<string, unknown> = {};
    for (const [name, value] of Object.entries(options)) {
      if (!OWN_OPTIONS.has(name)) unix[name] = value;
    }
    unix.transport = "unix";
    if (options.policy !== undefined) unix.policy = options.policy;
    return loop.listen(unix as unknown as EvUnixListenOptions, factory);
  }
  if (options.transport !== undefined && options.transport !== "tcp") {
    throw new TypeError(
      `'transport' must be "tcp" or "unix": received ${
        JSON.stringify(options.transport)
      }`,
    );
  }
  const tcp: EvListenOptions = {
    hostname: options.hostname ?? "0.0.0.0",
    port: options.port ?? 8000,
  };
  if (options.backlog !== undefined) tcp.backlog = options.backlog;
  if (options.reusePort !== undefined) tcp.reusePort = options.reusePort;
  if (options.policy !== undefined) tcp.policy = options.policy;
  if (options.proxyProtocol !== undefined) {
    tcp.proxyProtocol = options.proxyProtocol;
  }
  if (options.cert !== undefined || options.key !== undefined) {
    tcp.cert = options.cert!;
    tcp.key = options.key!;
    tcp.alpnProtocols = options.alpnProtocols ?? ["http/1.1"];
    if (options.handshakeTimeout !== undefined) {
      tcp.handshakeTimeout = options.handshakeTimeout;
    }
  }
  return loop.listen(tcp, factory);
}

/** Calls `onListen` with the address, or logs it. */
function announce(addr: Deno.Addr, options: AnyOptions): void {
  if (options.onListen !== undefined) {
    (options.onListen as (addr: Deno.Addr) => void)(addr);
  } else if (addr.transport === "unix") {
    console.log(`Listening on ${addr.path}`);
  } else {
    const scheme = options.cert !== undefined ? "https" : "http";
    console.log(`Listening on ${scheme}://${hostOf(addr)}/`);
  }
}
