// Copyright 2026 the @corothread/evthread authors. MIT license.

import { GracePeriod } from "./_grace_period.ts";
import {
  type Connection,
  defaultOnError,
  hostOf,
  type Limits,
  serveConnection,
  type Site,
  type UpgradeInfo,
  upgradeResponse,
} from "./_http_connection.ts";
import { loopInternals, socketInternals } from "./_internal.ts";
import type { ReclaimCandidate } from "./_reclaim.ts";
import { InsideCallers, taskContext } from "./_task_context.ts";
import {
  abortError,
  checkFunction,
  checkInteger,
  checkSignal,
  checkTimeout,
} from "./_validate.ts";
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
   * Resolves when the response has been written in full, or when the
   * client went away before that (as `Deno.serve`'s does: an event stream
   * whose client leaves ends normally); rejects if it could not be written
   * for another cause (the body stream failed, a send timed out, a
   * shutdown cut it short).
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
  /**
   * Most WebSockets open at once ({@linkcode upgradeWebSocket}); beyond it
   * the handshake is answered `503`, so that long-lived sockets, which hold
   * a pool slot each, leave slots for plain requests. @default {Infinity}
   */
  maxWebSockets?: number;
  /** What to do with new connections when the pool is full. @default {"wait"} */
  policy?: EvPoolPolicy;
  /**
   * Keep one address from taking the whole pool with slow request heads
   * (slowloris): when a client waits for a slot of the full pool and no
   * idle keep-alive connection can be closed instead (or the idle one's
   * address holds fewer slots), close one connection whose request head is
   * not complete yet (with a `408` if it had begun), from the client
   * address that holds the most slots (IPv6: its network of
   * `ipv6PrefixLength` bits), the one that has waited longest for its head.
   * A connection whose head is complete, or whose response is under way,
   * is never touched, nor one accepted less than 250 ms ago that has sent
   * nothing yet. Counted in `EvLoopStats.evicted`. `false` turns it off:
   * the waiting client then waits for a header timeout or a finished
   * response.
   *
   * @default {true}
   */
  evictUnderPressure?: boolean;
  /**
   * The most connections one client address may hold at once; beyond it a
   * new connection from that address is closed at once, without a slot
   * (`EvLoopStats.addressLimited`). Off by default: behind a load balancer
   * that does not send the PROXY protocol, every connection has its
   * address. With `proxyProtocol`, the address is the client's from the
   * header. See `EvListenOptions.maxConnectionsPerAddress`.
   *
   * @default {Infinity}
   */
  maxConnectionsPerAddress?: number;
  /**
   * The leading bits of an IPv6 address that make the group counted by
   * `maxConnectionsPerAddress` and by eviction.
   *
   * @default {64}
   */
  ipv6PrefixLength?: number;
  /**
   * Called with the client's address and its group when
   * `maxConnectionsPerAddress` closes a connection.
   */
  onAddressLimit?: (remoteAddr: Deno.NetAddr, group: string) => void;
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
  /**
   * Milliseconds allowed for each write of a response. @default {30000}
   *
   * The four timeouts (header, idle, body, send) are checked every 50 ms:
   * never early, at most about 100 ms late.
   */
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
    | "maxConnectionsPerAddress"
    | "ipv6PrefixLength"
    | "onAddressLimit"
    | "onListen"
  > {
  /** The transport. */
  transport: "unix";
  /** The socket's path in the file system. */
  path: string;
  /** Called once listening, with the address. */
  onListen?: (localAddr: Deno.UnixAddr) => void;
}

let constructing = false;
let serverInternals: {
  /**
   * Makes a server on `loop` for `app`; `listen` starts its acceptor, whose
   * connections are served for the site made here.
   */
  create: (
    loop: EvLoop,
    ownLoop: boolean,
    app: Pick<
      Site,
      | "handler"
      | "onError"
      | "limits"
      | "evict"
      | "webSockets"
      | "maxWebSockets"
    >,
    listen: (site: Site) => EvTcpAcceptor<Deno.Addr>,
  ) => HttpServer<Deno.Addr>;
};
const DEFAULT_GRACE = 5000;

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
  proc: (
    socket: EvSocket,
    thread: EvThread<unknown>,
    info: UpgradeInfo,
  ) => unknown,
  options?: { headers?: HeadersInit },
): Response {
  checkFunction(proc, "proc");
  return upgradeResponse(request, proc, options?.headers, false);
}

export type { UpgradeInfo };

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
  /** Handlers that await `shutdown()` (their connections cannot end). */
  #inside = new InsideCallers();

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
   * Awaited inside a handler of this server (an admin endpoint that stops
   * it), it resolves once every other connection has ended. If they all end
   * within the grace period, that handler's response is written (with
   * `connection: close`); otherwise its connection is aborted with the
   * rest. {@linkcode HttpServer.finished} resolves when it has ended.
   *
   * @param options `grace` in milliseconds.
   */
  shutdown(options?: { grace?: number }): Promise<void> {
    const all = this.#grace.start(
      options,
      DEFAULT_GRACE,
      (grace) => this.#doShutdown(grace),
    );
    if (!this.#grace.started) return all; // a bad `grace`: nothing started
    // Called inside one of this server's connections (their tasks run in
    // its acceptor's context)? `all` would wait for that connection too,
    // which cannot end while its handler awaits: give it a promise that
    // does not, and count the handler once it awaits.
    if (taskContext.getStore() !== this.#acceptor) return all;
    return this.#inside.wait(() => this.#wakeIdleWaiters());
  }

  async #doShutdown(grace: number): Promise<void> {
    this.#drain();
    this.#removeCandidates?.();
    await this.#acceptor.close();
    const started = performance.now();
    await this.#grace.wait(this.#allEnded(), grace);
    if (this.#inside.count > 0 && this.#connections.size > 0) {
      // Only connections whose handlers await this shutdown are left: they
      // resume now, and finish within what is left of the grace period.
      this.#inside.release();
      const left = grace - (performance.now() - started);
      await this.#grace.wait(this.#allEnded(), left);
    }
    this.#grace.end();
    const reason = abortError("The server was shut down");
    for (const c of this.#connections) c.thread.abort(reason);
    await this.#allEnded();
    this.#inside.release();
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
      thread: chosen.thread,
      since: chosen.idleSince,
      reclaim: () => {
        chosen.thread.abort(
          abortError("Closed an idle keep-alive connection to free a slot"),
        );
        return chosen.thread;
      },
    };
  }

  /**
   * Resolves when every connection has ended, but for those whose handler
   * awaits `shutdown()`.
   */
  #allEnded(): Promise<void> {
    if (this.#connections.size <= this.#inside.count) {
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  #wakeIdleWaiters(): void {
    if (this.#idleWaiters.length === 0) return;
    if (this.#connections.size > this.#inside.count) return;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  static {
    serverInternals = {
      create: (loop, ownLoop, app, listen) => {
        constructing = true;
        const server = new HttpServer<Deno.Addr>();
        server.#loop = loop;
        server.#ownLoop = ownLoop;
        const slots = loopInternals.slots(loop);
        server.#acceptor = listen({
          ...app,
          slots,
          draining: server.#draining.signal,
          track: (connection) => server.#connections.add(connection),
          untrack: (connection) => server.#untrack(connection),
        });
        server.#removeCandidates = slots.addSource(() => server.#reclaimIdle());
        loop.draining.addEventListener("abort", () => server.#drain(), {
          once: true,
        });
        return server;
      },
    };
  }

  /** Forgets a connection that has ended. */
  #untrack(connection: Connection): void {
    this.#connections.delete(connection);
    this.#wakeIdleWaiters();
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
  const evict = options.evictUnderPressure ?? true;
  if (typeof evict !== "boolean") {
    throw new TypeError(
      `'evictUnderPressure' must be a boolean: received ${typeof evict}`,
    );
  }
  const app = {
    handler: handler as ServeHandler<Deno.Addr>,
    onError: options.onError ?? defaultOnError,
    limits,
    evict,
    webSockets: 0,
    maxWebSockets: options.maxWebSockets === undefined ||
        options.maxWebSockets === Infinity
      ? Infinity
      : checkInteger(options.maxWebSockets, "maxWebSockets", 0),
  };
  const server = serverInternals.create(
    loop,
    options.loop === undefined,
    app,
    (site) =>
      listen(
        loop,
        options,
        (info) => (socket, thread) =>
          serveConnection(site, socket, thread, info.remoteAddr),
      ),
  );
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
  "maxWebSockets",
  "policy",
  "evictUnderPressure",
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
  if (options.maxConnectionsPerAddress !== undefined) {
    tcp.maxConnectionsPerAddress = options.maxConnectionsPerAddress;
  }
  if (options.ipv6PrefixLength !== undefined) {
    tcp.ipv6PrefixLength = options.ipv6PrefixLength;
  }
  if (options.onAddressLimit !== undefined) {
    tcp.onAddressLimit = options.onAddressLimit;
  }
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
