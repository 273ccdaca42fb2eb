// Copyright 2026 the @corothread/evthread authors. MIT license.

import { deadlines } from "./_deadline_queue.ts";
import { delay } from "./_delay.ts";
import {
  type AcceptorHost,
  acceptorInternals,
  socketInternals,
  threadInternals,
} from "./_internal.ts";
import { addressGroup } from "./_ip_address.ts";
import { AddressCounts, type SlotHolder } from "./_reclaim.ts";
import { type ProxySettings, readProxyHeader } from "./_read_proxy_header.ts";
import { inScope } from "./_task_context.ts";
import { handshake } from "./_tls.ts";
import { createTrustMatcher } from "./_trusted_addresses.ts";
import { checkFunction, checkInteger, checkTimeout } from "./_validate.ts";
import type { EvProxyInfo, EvProxyProtocolOptions } from "./proxy_protocol.ts";
import type { EvSocket } from "./ev_socket.ts";
import type { EvThread, EvThreadProc } from "./ev_thread.ts";

/** What an acceptor does with a new connection while the pool is full. */
export type EvPoolPolicy = "wait" | "refuse";

/** Options for {@linkcode EvLoop.listen} over TCP, or TLS over TCP. */
export interface EvListenOptions {
  /** The transport. @default {"tcp"} */
  transport?: "tcp";
  /** Address to listen on. @default {"0.0.0.0"} */
  hostname?: string;
  /** Port to listen on; `0` picks a free one. @default {0} */
  port?: number;
  /** Length of the kernel's queue of completed connections (Deno's
   * `tcpBacklog`). @default {511} */
  backlog?: number;
  /**
   * When the pool is full: `"wait"` accepts one more connection and holds it
   * (its factory not yet run) until a slot frees, accepting nothing more
   * meanwhile, so the kernel's backlog queues the next clients (then, when
   * the backlog is full too, their connects wait); `"refuse"` accepts and
   * closes each new connection at once (the seed's behaviour), after
   * `onRefuse` if given. Either way the factory never runs without a slot,
   * and servers on the loop that can give a slot back without harm do so
   * for the waiting client: the HTTP server closes its idle keep-alive
   * connections, the one idle longest first (see `EvLoopStats.held` and
   * `reclaimed`); failing that, the loop evicts a task still in its
   * handshake (see {@linkcode EvThread.handshaking}; the HTTP server's
   * connections are, until their request head is complete).
   *
   * @default {"wait"}
   */
  policy?: EvPoolPolicy;
  /**
   * The most connections one client address may hold at once on this
   * listener; beyond it, a new connection from that address is closed at
   * once, without a pool slot and without running the factory (counted in
   * `EvLoopStats.addressLimited` and `refused`, and reported to
   * `onAddressLimit`). IPv6 addresses count by their network of
   * `ipv6PrefixLength` bits. With `proxyProtocol`, the address is the
   * client's from the PROXY header, never the proxy's: the check is made
   * once the header has been read, in the connection's task, so such a
   * connection holds a slot for that long.
   *
   * Off by default: behind a load balancer that does not send the PROXY
   * protocol, every connection has the balancer's address.
   *
   * @default {Infinity}
   */
  maxConnectionsPerAddress?: number;
  /**
   * How many leading bits of an IPv6 address make the group that
   * `maxConnectionsPerAddress` and eviction count it in (a host usually
   * has a whole /64). IPv4 addresses, IPv4-mapped ones included, count
   * alone.
   *
   * @default {64}
   */
  ipv6PrefixLength?: number;
  /**
   * Called when `maxConnectionsPerAddress` closes a connection, with the
   * client's address and the group it counts in (the address, or for IPv6
   * its network, such as `"2001:db8:1:2::/64"`). Errors it throws go to
   * the loop's `onError`.
   */
  onAddressLimit?: (remoteAddr: Deno.NetAddr, group: string) => void;
  /**
   * With policy `"refuse"`: called with a connection about to be refused, to
   * write a short message. The connection is closed when the returned
   * promise settles, or after 1 second at most.
   */
  onRefuse?: (conn: Deno.Conn) => void | Promise<void>;
  /**
   * Read a PROXY protocol header (HAProxy's, version 1 or 2) at the start of
   * each connection, from the trusted peers only: the client's address it
   * carries becomes the connection's `remoteAddr`. The header is read in
   * the connection's task, before the factory runs. See
   * {@linkcode EvProxyProtocolOptions}.
   */
  proxyProtocol?: EvProxyProtocolOptions;
  /**
   * Let several listeners (usually one per worker, one per core) bind the
   * same address and port (`SO_REUSEPORT`); the Linux kernel spreads new
   * connections across them. Deno requires its `--unstable-net` flag for
   * it: without the flag, `listen` throws a `TypeError` (rather than let
   * Deno end the process).
   *
   * @default {false}
   */
  reusePort?: boolean;
  /**
   * TLS: the certificate chain, in PEM. With `key`, the acceptor listens
   * with TLS (`Deno.listenTls`) and its sockets carry plaintext; the
   * handshake is done in the connection's task before the factory runs.
   * Cannot be combined with `proxyProtocol` (the header would come before
   * the TLS layer, which Deno does not let a server start late).
   */
  cert?: string;
  /** TLS: the private key of `cert`, in PEM. */
  key?: string;
  /** TLS: the ALPN protocols to offer, in order of preference. */
  alpnProtocols?: string[];
  /**
   * TLS: milliseconds for a client to complete the handshake; a connection
   * that fails it or runs out of time is closed, counted in `refused` and
   * not reported (scanners and broken clients are common).
   *
   * @default {10000}
   */
  handshakeTimeout?: number;
}

/** Options for {@linkcode EvLoop.listen} on a Unix domain socket. */
export interface EvUnixListenOptions {
  /** The transport. */
  transport: "unix";
  /** The socket's path in the file system. */
  path: string;
  /** As {@linkcode EvListenOptions.policy}. @default {"wait"} */
  policy?: EvPoolPolicy;
  /** As {@linkcode EvListenOptions.onRefuse}. */
  onRefuse?: (conn: Deno.Conn) => void | Promise<void>;
}

/**
 * What a factory learns about a new connection.
 *
 * @typeParam A The address type: `Deno.NetAddr` over TCP and TLS,
 * `Deno.UnixAddr` on a Unix domain socket.
 */
export interface EvConnectionInfo<A extends Deno.Addr = Deno.NetAddr> {
  /**
   * The local address of the connection (with a PROXY header: the address
   * the client connected to).
   */
  localAddr: A;
  /** The address of the peer (with a PROXY header: the client's). */
  remoteAddr: A;
  /** The PROXY protocol header the connection started with, if any. */
  proxy: EvProxyInfo | undefined;
  /** The acceptor that took the connection. */
  acceptor: EvTcpAcceptor<A>;
  /**
   * The connection's task's signal: aborted if the loop shuts down (or the
   * task is aborted) while an async factory is still deciding. If it aborts,
   * the procedure is not run.
   */
  signal: AbortSignal;
}

/**
 * The procedure run for a connection, in its own task. The socket is owned
 * by the task and closed when the procedure ends.
 */
export type EvConnectionProc = (
  socket: EvSocket,
  thread: EvThread<unknown>,
) => unknown;

/**
 * Picks the procedure for a connection (the seed's factory; its closure
 * plays the seed's context pointer). Return `null` to refuse the connection.
 * It may be async. If it throws, the connection is closed and the error is
 * reported to the loop's `onError`.
 */
export type EvConnectionFactory<A extends Deno.Addr = Deno.NetAddr> = (
  info: EvConnectionInfo<A>,
) =>
  | EvConnectionProc
  | null
  | undefined
  | Promise<EvConnectionProc | null | undefined>;

/** How long a trusted proxy may take to send its PROXY header, by default. */
const PROXY_TIMEOUT = 5000;
/** How long a TLS client may take to complete its handshake, by default. */
const HANDSHAKE_TIMEOUT = 10_000;

/** Opens the listener that the options ask for. */
function openListener(
  options: EvListenOptions | EvUnixListenOptions,
): { listener: Deno.Listener; tls: number | undefined } {
  if (options.transport === "unix") {
    const path = options.path;
    if (typeof path !== "string" || path === "") {
      throw new TypeError(
        "'path' must be a non-empty string for transport \"unix\"",
      );
    }
    for (
      const name of [
        "proxyProtocol",
        "cert",
        "key",
        "alpnProtocols",
        "handshakeTimeout",
        "port",
        "hostname",
        "backlog",
        "reusePort",
        "maxConnectionsPerAddress",
        "ipv6PrefixLength",
        "onAddressLimit",
      ]
    ) {
      if ((options as unknown as Record<string, unknown>)[name] !== undefined) {
        throw new TypeError(
          `'${name}' is not supported with transport "unix"`,
        );
      }
    }
    return {
      listener: Deno.listen({ transport: "unix", path }),
      tls: undefined,
    };
  }
  if (options.transport !== undefined && options.transport !== "tcp") {
    throw new TypeError(
      `'transport' must be "tcp" or "unix": received ${
        JSON.stringify(options.transport)
      }`,
    );
  }
  const port = checkInteger(options.port ?? 0, "port", 0, 65_535);
  const backlog = checkInteger(options.backlog ?? 511, "backlog", 1);
  const hostname = options.hostname ?? "0.0.0.0";
  if (typeof hostname !== "string") {
    throw new TypeError(`'hostname' must be a string`);
  }
  const reusePort = options.reusePort ?? false;
  if (typeof reusePort !== "boolean") {
    throw new TypeError(
      `'reusePort' must be a boolean: received ${typeof reusePort}`,
    );
  }
  // Deno ends the process (exit code 70) when reusePort is used without
  // --unstable-net; its unstable network APIs show whether the flag is on.
  if (
    reusePort &&
    typeof (Deno as { listenDatagram?: unknown }).listenDatagram !==
      "function"
  ) {
    throw new TypeError(
      "'reusePort' needs Deno's --unstable-net flag (deno run --unstable-net ...)",
    );
  }
  const reuse = reusePort ? { reusePort: true } : {};
  const { cert, key } = options;
  if (cert === undefined && key === undefined) {
    for (const name of ["alpnProtocols", "handshakeTimeout"] as const) {
      if (options[name] !== undefined) {
        throw new TypeError(`'${name}' needs TLS: give 'cert' and 'key'`);
      }
    }
    return {
      listener: Deno.listen({
        hostname,
        port,
        transport: "tcp",
        tcpBacklog: backlog,
        ...reuse,
      }),
      tls: undefined,
    };
  }
  if (typeof cert !== "string" || typeof key !== "string") {
    throw new TypeError(
      "'cert' and 'key' must both be given, as PEM strings, for TLS",
    );
  }
  if (options.proxyProtocol !== undefined) {
    throw new TypeError(
      "'proxyProtocol' cannot be combined with TLS: terminate TLS at the proxy",
    );
  }
  const handshakeTimeout = checkTimeout(
    options.handshakeTimeout ?? HANDSHAKE_TIMEOUT,
    "handshakeTimeout",
  ) ?? Infinity;
  const alpn = options.alpnProtocols;
  if (
    alpn !== undefined &&
    (!Array.isArray(alpn) || alpn.some((p) => typeof p !== "string"))
  ) {
    throw new TypeError("'alpnProtocols' must be an array of strings");
  }
  return {
    listener: Deno.listenTls({
      hostname,
      port,
      transport: "tcp",
      tcpBacklog: backlog,
      ...reuse,
      cert,
      key,
      ...(alpn !== undefined ? { alpnProtocols: alpn } : {}),
    }),
    tls: handshakeTimeout,
  };
}

/** Checks the `proxyProtocol` option. */
function proxySettings(value: unknown): ProxySettings | undefined {
  if (value === undefined) return undefined;
  if (value === null || typeof value !== "object") {
    throw new TypeError(
      "'proxyProtocol' must be an object with a 'trusted' list",
    );
  }
  const options = value as EvProxyProtocolOptions;
  if (!Array.isArray(options.trusted) || options.trusted.length === 0) {
    throw new TypeError(
      "'proxyProtocol.trusted' must be a non-empty array of addresses or CIDR blocks",
    );
  }
  const required = options.required ?? true;
  if (typeof required !== "boolean") {
    throw new TypeError(
      `'proxyProtocol.required' must be a boolean: received ${typeof required}`,
    );
  }
  return {
    trusted: createTrustMatcher(options.trusted),
    required,
    timeout: checkTimeout(
      options.timeout ?? PROXY_TIMEOUT,
      "proxyProtocol.timeout",
    ),
  };
}

/** The per-address limit of an acceptor. */
interface AddressLimit {
  max: number;
  counts: AddressCounts;
  onLimit: ((remoteAddr: Deno.NetAddr, group: string) => void) | undefined;
}

/** Checks `maxConnectionsPerAddress` and `onAddressLimit`. */
function addressLimit(
  options: EvListenOptions,
): AddressLimit | undefined {
  const { maxConnectionsPerAddress: max, onAddressLimit: onLimit } = options;
  if (onLimit !== undefined) checkFunction(onLimit, "onAddressLimit");
  if (max === undefined || max === Infinity) return undefined;
  return {
    max: checkInteger(max, "maxConnectionsPerAddress", 1),
    counts: new AddressCounts(),
    onLimit,
  };
}

/** How long an `onRefuse` hook may take. */
const REFUSE_HOOK_TIMEOUT = 1000;
/** Backoff after a failed accept (EMFILE and the like). */
const BACKOFF_MIN = 5;
const BACKOFF_MAX = 1000;

let constructing = false;

/**
 * A listening TCP socket that runs a task per connection: the seed's
 * `EVTCPACCEPTOR`. Made by {@linkcode EvLoop.listen}.
 *
 * Failed accepts (such as `EMFILE`, out of file descriptors) do not end it:
 * it reports the error, backs off (5 ms, doubling up to 1 s) and tries
 * again.
 *
 * @example A refusing factory
 * ```ts
 * import { EvLoop } from "@corothread/evthread";
 * import { assertEquals } from "@std/assert";
 *
 * await using loop = new EvLoop();
 * const acceptor = loop.listen({ hostname: "127.0.0.1", port: 0 }, (info) =>
 *   // Serve loopback peers only.
 *   info.remoteAddr.hostname === "127.0.0.1"
 *     ? async (socket) => await socket.send(new TextEncoder().encode("hi"))
 *     : null);
 * using conn = await Deno.connect({ hostname: "127.0.0.1", port: acceptor.port });
 * const text = await new Response(conn.readable).text();
 * assertEquals(text, "hi");
 * await acceptor.close();
 * ```
 */
export class EvTcpAcceptor<A extends Deno.Addr = Deno.NetAddr>
  implements AsyncDisposable {
  #listener!: Deno.Listener;
  // Not EvConnectionFactory<A>: that would make the class invariant in A,
  // and an acceptor of NetAddr could not be used as one of Deno.Addr.
  // deno-lint-ignore no-explicit-any
  #factory!: EvConnectionFactory<any>;
  /** TLS: the handshake timeout (`Infinity`: none); undefined for none. */
  #tls: number | undefined;
  #host!: AcceptorHost;
  #policy: EvPoolPolicy = "wait";
  #onRefuse: ((conn: Deno.Conn) => void | Promise<void>) | undefined;
  #proxy: ProxySettings | undefined;
  #limit: AddressLimit | undefined;
  #ipv6PrefixLength = 64;
  #stop = new AbortController();
  #closed = false;
  #refed = true;
  #running!: Promise<void>;
  #refusing = new Set<Promise<void>>();
  #accepted = 0;
  #refused = 0;
  #held = 0;
  #limited = 0;
  #gone = 0;
  /** Whether the accept loop waits on the listener's accept. */
  #inAccept = false;

  static {
    acceptorInternals.create = (options, factory, host) => {
      if (options === null || typeof options !== "object") {
        throw new TypeError("'options' must be an object");
      }
      checkFunction(factory, "factory");
      const policy = options.policy ?? "wait";
      if (policy !== "wait" && policy !== "refuse") {
        throw new TypeError(
          `'policy' must be "wait" or "refuse": received ${
            JSON.stringify(policy)
          }`,
        );
      }
      if (options.onRefuse !== undefined) {
        checkFunction(options.onRefuse, "onRefuse");
      }
      const tcp = options.transport === "unix" ? undefined : options;
      const proxy = tcp === undefined
        ? undefined
        : proxySettings(tcp.proxyProtocol);
      const limit = tcp === undefined ? undefined : addressLimit(tcp);
      const ipv6PrefixLength = checkInteger(
        tcp?.ipv6PrefixLength ?? 64,
        "ipv6PrefixLength",
        0,
        128,
      );
      const { listener, tls } = openListener(options);
      constructing = true;
      const acceptor = new EvTcpAcceptor<Deno.Addr>();
      acceptor.#listener = listener;
      acceptor.#tls = tls;
      acceptor.#factory = factory;
      acceptor.#host = host;
      acceptor.#policy = policy;
      acceptor.#onRefuse = options.onRefuse;
      acceptor.#proxy = proxy;
      acceptor.#limit = limit;
      acceptor.#ipv6PrefixLength = ipv6PrefixLength;
      // The accept loop, and so every task it starts, runs in the
      // acceptor's context: a shutdown awaited by one of them can tell.
      acceptor.#running = inScope(acceptor, (a) => a.#run(), acceptor);
      return acceptor;
    };
  }

  /**
   * Not for direct use: acceptors are made by {@linkcode EvLoop.listen}.
   *
   * @throws {TypeError} always, when called directly.
   */
  constructor() {
    if (!constructing) {
      throw new TypeError(
        "EvTcpAcceptor cannot be constructed directly: use EvLoop.listen()",
      );
    }
    constructing = false;
  }

  /** The address listened on (with the real port when `port` was `0`). */
  get addr(): A {
    return this.#listener.addr as A;
  }

  /** The port listened on; 0 on a Unix domain socket. */
  get port(): number {
    const addr = this.#listener.addr;
    return addr.transport === "tcp" ? addr.port : 0;
  }

  /** Whether the acceptor listens with TLS. */
  get tls(): boolean {
    return this.#tls !== undefined;
  }

  /** The pool policy in force. */
  get policy(): EvPoolPolicy {
    return this.#policy;
  }

  /** Whether the acceptor was closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Connections this acceptor took from the kernel. */
  get accepted(): number {
    return this.#accepted;
  }

  /** Connections this acceptor closed without running a procedure. */
  get refused(): number {
    return this.#refused;
  }

  /**
   * Connections this acceptor held, with the pool full, until a slot freed
   * (policy `"wait"`).
   */
  get held(): number {
    return this.#held;
  }

  /**
   * Connections this acceptor closed because their address already held
   * `maxConnectionsPerAddress` (counted in `refused` too).
   */
  get addressLimited(): number {
    return this.#limited;
  }

  /**
   * Connections the client closed or reset before they could be accepted
   * (the accept failed with `NotConnected`, `ConnectionAborted` or
   * `ConnectionReset`): load balancers' TCP health checks, scanners. Not
   * reported as errors.
   */
  get vanished(): number {
    return this.#gone;
  }

  async #run(): Promise<void> {
    const pool = this.#host.pool;
    const stop = this.#stop.signal;
    let backoff = 0;
    while (!this.#closed) {
      let conn: Deno.Conn;
      try {
        this.#inAccept = true;
        conn = await this.#listener.accept();
      } catch (error) {
        this.#inAccept = false;
        if (this.#closed || error instanceof Deno.errors.BadResource) break;
        // The client went away between the handshake and the accept (a
        // load balancer's TCP health check does this every time): its
        // fault, not the server's; nothing to report or back off from.
        if (
          error instanceof Deno.errors.NotConnected ||
          error instanceof Deno.errors.ConnectionAborted ||
          error instanceof Deno.errors.ConnectionReset
        ) {
          this.#gone++;
          continue;
        }
        this.#host.report(error, this);
        backoff = backoff === 0
          ? BACKOFF_MIN
          : Math.min(2 * backoff, BACKOFF_MAX);
        try {
          // While it backs off no accept is pending: the timer must keep
          // the process alive in its place (unless the acceptor is unref'd).
          await delay(backoff, { signal: stop, persistent: this.#refed });
        } catch {
          break;
        }
        continue;
      }
      this.#inAccept = false;
      backoff = 0;
      this.#accepted++;
      this.#host.accepted();
      if (this.#closed) {
        this.#refuse(conn, false);
        break;
      }
      const group = this.#groupOf(conn.remoteAddr);
      // The per-address limit, unless the address comes in a PROXY header
      // (then the connection's task checks it, once it has read it).
      let limit = this.#proxy === undefined ? this.#limit : undefined;
      if (limit !== undefined) {
        if (limit.counts.get(group) >= limit.max) {
          conn.close();
          this.#overLimit(conn.remoteAddr as Deno.NetAddr, group);
          continue;
        }
        limit.counts.add(group);
      }
      if (!pool.tryAcquire()) {
        if (this.#policy === "refuse") {
          limit?.counts.remove(group);
          limit = undefined;
          this.#refuse(conn, true);
          this.#host.slots.wanted();
          continue;
        }
        // "wait": hold this one connection until a slot frees, and accept
        // nothing more meanwhile (the kernel's backlog queues the rest).
        // Holding it, rather than leaving it in the backlog where Deno
        // cannot see it, tells the loop that a client waits: servers on
        // the loop then give back slots that idle connections hold.
        this.#held++;
        this.#host.slots.hold();
        try {
          await pool.acquire(stop);
        } catch {
          limit?.counts.remove(group);
          this.#refuse(conn, false);
          break;
        } finally {
          this.#host.slots.unhold();
        }
      }
      this.#host.start(this.#connectionTask(conn, group, limit));
    }
  }

  /** The address group a peer counts in (see `addressGroup`). */
  #groupOf(addr: Deno.Addr): string {
    return addr.transport === "tcp"
      ? addressGroup(addr.hostname, this.#ipv6PrefixLength)
      : "";
  }

  /**
   * Counts a connection closed for its address's limit, and tells the
   * hook.
   */
  #overLimit(remoteAddr: Deno.NetAddr, group: string): void {
    this.#refused++;
    this.#limited++;
    this.#host.limited();
    const hook = this.#limit?.onLimit;
    if (hook === undefined) return;
    try {
      hook(remoteAddr, group);
    } catch (error) {
      this.#host.report(error, this);
    }
  }

  /**
   * The task of a connection from address `group`; `limit`: the
   * per-address counts that it was added to, if any.
   */
  #connectionTask(
    conn: Deno.Conn,
    group: string,
    limit: AddressLimit | undefined,
  ): EvThreadProc<unknown> {
    return (thread) => {
      const holder = this.#host.slots.admit(thread, group);
      holder.limit = limit?.counts;
      const socket = thread.adopt(conn);
      if (this.#tls !== undefined || this.#proxy !== undefined) {
        return this.#prepare(conn, socket, thread, holder);
      }
      // Nothing to wait for before the factory: no async function runs here,
      // whose frame would last as long as the connection.
      return this.#runFactory(socket, thread, undefined);
    };
  }

  /**
   * Does the TLS handshake or reads the PROXY header, then runs the factory
   * and the procedure.
   */
  async #prepare(
    conn: Deno.Conn,
    socket: EvSocket,
    thread: EvThread<unknown>,
    holder: SlotHolder,
  ): Promise<unknown> {
    // Until the handshake and header are done, an eviction aborts the task.
    threadInternals.preparing(thread, true);
    try {
      if (!await this.#handshakeAndHeader(conn, socket, thread)) return;
    } finally {
      threadInternals.preparing(thread, false);
    }
    const proxy = socket.proxy;
    if (this.#proxy !== undefined) {
      // The client's address is known now: count the connection in its
      // group, and apply the per-address limit to it.
      const remoteAddr = socket.remoteAddr as Deno.NetAddr;
      const group = this.#groupOf(remoteAddr);
      this.#host.slots.regroup(holder, group);
      const limit = this.#limit;
      if (limit !== undefined) {
        if (limit.counts.get(group) >= limit.max) {
          this.#overLimit(remoteAddr, group);
          return;
        }
        limit.counts.add(group);
        holder.limit = limit.counts;
      }
    }
    return await this.#runFactory(socket, thread, proxy);
  }

  /**
   * Does the TLS handshake and reads the PROXY header, as the listener
   * has them; false if the connection is to be closed (counted as
   * refused).
   */
  async #handshakeAndHeader(
    conn: Deno.Conn,
    socket: EvSocket,
    thread: EvThread<unknown>,
  ): Promise<boolean> {
    if (this.#tls !== undefined) {
      try {
        const info = await handshake(
          conn as Deno.TlsConn,
          this.#tls,
          thread.signal,
        );
        socketInternals.setTls(socket, info);
      } catch {
        // A failed or late handshake: the client's fault, not reported.
        if (thread.signal.aborted) throw thread.signal.reason;
        this.#refused++;
        this.#host.refused();
        return false;
      }
    }
    if (this.#proxy !== undefined) {
      const proxyAddr = conn.remoteAddr as Deno.NetAddr;
      let header;
      try {
        header = await readProxyHeader(socket, proxyAddr, this.#proxy);
      } catch (error) {
        if (thread.signal.aborted) throw thread.signal.reason;
        this.#refused++;
        this.#host.refused();
        throw error;
      }
      if (header === null) {
        // Closed without a byte (a TCP health check): nothing to report.
        this.#refused++;
        this.#host.refused();
        return false;
      }
      if (header !== undefined) {
        socketInternals.setProxy(socket, { ...header, proxyAddr });
      }
    }
    return true;
  }

  /**
   * Runs the factory, then, once what it returned has settled (a turn later
   * at least, as with `await`), the procedure it picked.
   */
  #runFactory(
    socket: EvSocket,
    thread: EvThread<unknown>,
    proxy: EvProxyInfo | undefined,
  ): Promise<unknown> {
    const picked = this.#factory({
      localAddr: socket.localAddr,
      remoteAddr: socket.remoteAddr,
      proxy,
      acceptor: this,
      signal: thread.signal,
    });
    return Promise.resolve(picked).then((proc) =>
      this.#runProc(proc, socket, thread)
    );
  }

  /** Runs the procedure that the factory picked, if it picked one. */
  #runProc(
    proc: EvConnectionProc | null | undefined,
    socket: EvSocket,
    thread: EvThread<unknown>,
  ): unknown {
    if (thread.signal.aborted) throw thread.signal.reason;
    if (proc === null || proc === undefined) {
      this.#refused++;
      this.#host.refused();
      return;
    }
    if (typeof proc !== "function") {
      throw new TypeError(
        `The factory must return a function or null: received ${typeof proc}`,
      );
    }
    return proc(socket, thread);
  }

  /**
   * Closes a connection that gets no task; `full`: because the pool is
   * full (policy "refuse": the refuse hook runs first), else because the
   * acceptor closed while it held the connection. Either way it counts as
   * refused.
   */
  #refuse(conn: Deno.Conn, full: boolean): void {
    this.#refused++;
    this.#host.refused();
    const hook = full ? this.#onRefuse : undefined;
    if (hook === undefined) {
      conn.close();
      return;
    }
    const done = (async () => {
      let entry;
      try {
        await new Promise<void>((resolve, reject) => {
          entry = deadlines.schedule(REFUSE_HOOK_TIMEOUT, resolve);
          Promise.resolve().then(() => hook(conn)).then(
            () => resolve(),
            reject,
          );
        });
      } catch (error) {
        this.#host.report(error, this);
      } finally {
        if (entry !== undefined) {
          deadlines.cancel(entry);
          deadlines.settle();
        }
        try {
          conn.close();
        } catch {
          // The hook closed it already.
        }
      }
    })();
    this.#refusing.add(done);
    done.then(() => this.#refusing.delete(done));
  }

  /**
   * Stops listening. Connections already accepted go on; their tasks are
   * not touched. Resolves once the listener is closed and its accept loop
   * has ended. Closing twice is a no-op.
   *
   * @example Closing
   * ```ts
   * import { EvLoop } from "@corothread/evthread";
   * import { assert } from "@std/assert";
   *
   * await using loop = new EvLoop();
   * const acceptor = loop.listen({ hostname: "127.0.0.1", port: 0 }, () => null);
   * await acceptor.close();
   * assert(acceptor.closed);
   * ```
   */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#stop.abort();
      try {
        this.#listener.close();
      } catch {
        // Already closed.
      }
      this.#host.closed(this);
    }
    // An accept pending on the closed listener rejects and the loop ends.
    // When the listener is unref'd, Deno does not deliver that rejection
    // while nothing else keeps the process running: then do not wait for it
    // (the loop does nothing more after it, but close a connection that a
    // racing accept took).
    if (this.#refed || !this.#inAccept) await this.#running;
    while (this.#refusing.size > 0) await Promise.all(this.#refusing);
  }

  /** Closes the acceptor. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /**
   * Makes the listener keep the process alive (the default).
   *
   * @example Ref
   * ```ts
   * import { EvLoop } from "@corothread/evthread";
   *
   * await using loop = new EvLoop();
   * const acceptor = loop.listen({ hostname: "127.0.0.1", port: 0 }, () => null);
   * acceptor.unref();
   * acceptor.ref();
   * ```
   */
  ref(): void {
    this.#refed = true;
    if (!this.#closed) this.#listener.ref();
  }

  /**
   * Lets the process exit while the listener waits for connections.
   *
   * @example Unref
   * ```ts
   * import { EvLoop } from "@corothread/evthread";
   *
   * await using loop = new EvLoop();
   * const acceptor = loop.listen({ hostname: "127.0.0.1", port: 0 }, () => null);
   * acceptor.unref();
   * ```
   */
  unref(): void {
    this.#refed = false;
    if (!this.#closed) this.#listener.unref();
  }
}
