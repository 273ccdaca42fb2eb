// Copyright 2026 the @corothread/evthread authors. MIT license.

import { delay } from "./_delay.ts";
import { type DeadlineEntry, deadlines } from "./_deadline_queue.ts";
import {
  type LoopHost,
  type SocketHost,
  socketInternals,
  threadInternals,
} from "./_internal.ts";
import {
  abortError,
  checkDeadline,
  checkFunction,
  checkInteger,
  checkSignal,
  checkTimeout,
  timeoutError,
} from "./_validate.ts";
import {
  type EvCallOptions,
  EvSocket,
  type EvTlsClientOptions,
} from "./ev_socket.ts";
import { checkTlsClientOptions } from "./_tls.ts";
import type { EvictedError, UnsentDataError } from "./errors.ts";
import type { SlotHolder } from "./_reclaim.ts";

/**
 * The procedure a task runs. It receives its own {@linkcode EvThread}; what
 * it returns (or throws) becomes the task's {@linkcode EvThread.result}.
 *
 * @typeParam T What the procedure returns.
 */
export type EvThreadProc<T> = (thread: EvThread<unknown>) => T | PromiseLike<T>;

/** Where {@linkcode EvThread.connect} connects to over TCP (or TLS). */
export interface EvConnectAddress {
  /** The transport. @default {"tcp"} */
  transport?: "tcp";
  /** Host name or IP address. @default {"127.0.0.1"} */
  hostname?: string;
  /** TCP port. */
  port: number;
  /**
   * Connect with TLS: `true`, or the certificate checks and ALPN protocols
   * to use. The handshake is done before `connect` resolves, within its
   * timeout, deadline and signal.
   */
  tls?: boolean | EvTlsClientOptions;
}

/** Where {@linkcode EvThread.connect} connects to on a Unix domain socket. */
export interface EvUnixConnectAddress {
  /** The transport. */
  transport: "unix";
  /** The socket's path in the file system. */
  path: string;
}

let nextId = 1;
let constructing = false;
/** Orders handshakes by when they began (`EvThread.handshaking`). */
let handshakes = 0;
/**
 * How long an evicted task may take to end by itself (to write a goodbye)
 * before it is aborted.
 */
const EVICT_GRACE = 1000;

function noop(): void {}

/**
 * Marks a promise the library returns as handled: a caller that does not
 * await it cannot turn its rejection into an unhandled one. A caller that
 * awaits it still sees the rejection.
 */
function handled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(noop);
  return promise;
}

function formatHostPort(hostname: string, port: number): string {
  return hostname.includes(":")
    ? `[${hostname}]:${port}`
    : `${hostname}:${port}`;
}

/**
 * The same kind of error as `error` (so `instanceof` checks still hold),
 * its message prefixed with where it happened:
 * `connect 127.0.0.1:9: Connection refused`. The original is its `cause`.
 */
function withAddress(error: unknown, where: string): unknown {
  if (!(error instanceof Error)) return error;
  const detail = error.message.replace(/ \(os error \d+\)$/, "");
  const Kind = error.constructor as new (
    message: string,
    options?: ErrorOptions,
  ) => Error;
  let wrapped: Error;
  try {
    wrapped = new Kind(`${where}: ${detail}`, { cause: error });
  } catch {
    return error;
  }
  if (wrapped.name !== error.name) wrapped.name = error.name;
  if ("code" in error && !("code" in wrapped)) {
    Object.defineProperty(wrapped, "code", { value: error.code });
  }
  return wrapped;
}

/**
 * The sockets a task owns, and what they report to. Most tasks own one
 * socket, the connection they serve: it takes a field, and a `Set` is made
 * only for more.
 */
class OwnedSockets implements SocketHost {
  readonly signal: AbortSignal;
  readonly #host: LoopHost;
  readonly #thread: EvThread<unknown>;
  /** The socket owned longest; a socket goes here only when none is owned. */
  #first: EvSocket | undefined;
  /** The others, in the order they were adopted. */
  #more: Set<EvSocket> | undefined;

  constructor(signal: AbortSignal, host: LoopHost, thread: EvThread<unknown>) {
    this.signal = signal;
    this.#host = host;
    this.#thread = thread;
  }

  get debug(): boolean {
    return this.#host.debug;
  }

  countTimeout(): void {
    this.#host.countTimeout();
  }

  unsent(error: UnsentDataError): void {
    this.#host.unsent(error, this.#thread);
  }

  /** Whether any owned socket still has queued bytes to write. */
  pendingWrites(): boolean {
    if (
      this.#first !== undefined && socketInternals.pendingWrites(this.#first)
    ) {
      return true;
    }
    if (this.#more !== undefined) {
      for (const socket of this.#more) {
        if (socketInternals.pendingWrites(socket)) return true;
      }
    }
    return false;
  }

  add(socket: EvSocket): void {
    const more = this.#more;
    if (this.#first === undefined && (more === undefined || more.size === 0)) {
      this.#first = socket;
    } else {
      this.#more ??= new Set();
      this.#more.add(socket);
    }
  }

  release(socket: EvSocket): void {
    if (this.#first === socket) this.#first = undefined;
    else this.#more?.delete(socket);
  }

  /** Whether a read call waits on any owned socket. */
  readWaiting(): boolean {
    if (
      this.#first !== undefined && socketInternals.readWaiting(this.#first)
    ) {
      return true;
    }
    if (this.#more !== undefined) {
      for (const socket of this.#more) {
        if (socketInternals.readWaiting(socket)) return true;
      }
    }
    return false;
  }

  /** Whether any owned socket holds bytes no read has taken. */
  buffered(): boolean {
    if (this.#first !== undefined && this.#first.buffered > 0) return true;
    if (this.#more !== undefined) {
      for (const socket of this.#more) if (socket.buffered > 0) return true;
    }
    return false;
  }

  /** Rejects the read calls waiting on every owned socket. */
  interruptReads(reason: unknown): void {
    for (const socket of this.list()) {
      socketInternals.interruptReads(socket, reason);
    }
  }

  /** The sockets owned, in the order they were adopted (a copy). */
  list(): EvSocket[] {
    const list = this.#first === undefined ? [] : [this.#first];
    if (this.#more !== undefined) list.push(...this.#more);
    return list;
  }
}

/**
 * One task: the seed's `EVTHREAD`, a co-routine that runs straight-line code
 * and owns the sockets and child tasks it makes. Start one with
 * {@linkcode EvLoop.spawn}; an acceptor starts one per connection.
 *
 * When the procedure ends, by returning, throwing or being aborted, the task
 * aborts its {@linkcode EvThread.signal}, aborts and awaits its child tasks,
 * and closes every socket it owns. Only then does
 * {@linkcode EvThread.result} settle and its pool slot come free.
 *
 * @typeParam T What the procedure returns.
 *
 * @example A client task
 * ```ts
 * import { EvLoop } from "@corothread/evthread";
 * import { assertEquals } from "@std/assert";
 *
 * await using loop = new EvLoop();
 * const acceptor = loop.listen({ hostname: "127.0.0.1", port: 0 }, () =>
 *   async (socket) => {
 *     const line = await socket.readLine();
 *     await socket.send(new TextEncoder().encode(`hi ${line}\n`));
 *   });
 * const client = loop.spawn(async (thread) => {
 *   const socket = await thread.connect({ port: acceptor.port }, { timeout: 1000 });
 *   await socket.send(new TextEncoder().encode("ada\n"));
 *   return await socket.readLine({ timeout: 1000 });
 * });
 * assertEquals(await client.result, "hi ada");
 * ```
 */
export class EvThread<T = unknown> {
  #id = 0;
  #host!: LoopHost;
  #parent: EvThread<unknown> | undefined;
  #controller = new AbortController();
  // What most tasks never have is made when first needed: a task per
  // connection spends no memory on it while it waits.
  #children: Set<EvThread<unknown>> | undefined;
  /** The sockets the task owns; made by the first `adopt`. */
  #sockets: OwnedSockets | undefined;
  /** In-flight operations of sockets closed by an abort. */
  #closing: Promise<void>[] | undefined;
  #deadline: number | undefined;
  #deadlineEntry: DeadlineEntry | undefined;
  #done = false;
  /**
   * In its handshake since handshake number N (`handshaking`): N; while
   * its acceptor prepares the connection: -N; else 0.
   */
  #handshake = 0;
  /** Set once evicted: the reason, and the abort after the grace period. */
  #eviction: { reason: EvictedError; entry: DeadlineEntry } | undefined;
  /** For a task an acceptor started: where its slot is counted. */
  #slot: SlotHolder | undefined;
  /** Whether `result` was read: its reader then handles a failure. */
  #observed = false;
  #result!: Promise<T>;

  static {
    threadInternals.start = <T>(
      host: LoopHost,
      parent: EvThread<unknown> | undefined,
      proc: EvThreadProc<T>,
    ): EvThread<T> => {
      constructing = true;
      const thread = new EvThread<T>();
      thread.#id = nextId++;
      thread.#host = host;
      thread.#parent = parent;
      thread.#result = thread.#run(proc);
      return thread;
    };
    threadInternals.evictable = (thread) => {
      const n = thread.#handshake;
      if (
        n === 0 || thread.#eviction !== undefined || thread.#done ||
        thread.#controller.signal.aborted
      ) {
        return 0;
      }
      if (n < 0) return -n;
      return thread.#sockets?.readWaiting() ? n : 0;
    };
    threadInternals.evict = (thread, reason) => thread.#evict(reason);
    threadInternals.buffered = (thread) => thread.#sockets?.buffered() ?? false;
    threadInternals.slot = (thread) => thread.#slot;
    threadInternals.setSlot = (thread, holder) => {
      thread.#slot = holder;
    };
    threadInternals.preparing = (thread, on) => {
      thread.#handshake = on ? -++handshakes : 0;
    };
  }

  /**
   * Not for direct use: tasks are started by {@linkcode EvLoop.spawn},
   * {@linkcode EvThread.spawn} and acceptors.
   *
   * @throws {TypeError} always, when called directly.
   */
  constructor() {
    if (!constructing) {
      throw new TypeError(
        "EvThread cannot be constructed directly: use EvLoop.spawn() or EvThread.spawn()",
      );
    }
    constructing = false;
  }

  /** A number unique to this task in the process. */
  get id(): number {
    return this.#id;
  }

  /**
   * Aborted when the task is aborted ({@linkcode EvThread.abort}, its parent
   * ending, or the loop's shutdown running out of grace) and when it ends.
   * Every blocking call of the task and its sockets rejects with its reason.
   */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /**
   * Raised when the loop starts shutting down: finish the unit of work at
   * hand and take no new one. Pass it as the `signal` of the call that waits
   * for the next unit (such as the next request) to stop waiting at once.
   */
  get draining(): AbortSignal {
    return this.#host.draining;
  }

  /** The task that spawned this one, if it is a child task. */
  get parent(): EvThread<unknown> | undefined {
    return this.#parent;
  }

  /** Whether the task has ended and released all it owned. */
  get done(): boolean {
    return this.#done;
  }

  /**
   * Settles when the task has ended and released everything it owned: with
   * what the procedure returned, or rejected with what it threw. Not
   * awaiting it is safe: the rejection is never unhandled.
   */
  get result(): Promise<T> {
    if (!this.#done) this.#observed = true;
    return this.#result;
  }

  /**
   * Runs the procedure, then ends the task. Not an async function: its
   * frame, and the procedure it holds, would last as long as the task.
   */
  #run(proc: EvThreadProc<T>): Promise<T> {
    let running: T | PromiseLike<T>;
    try {
      running = proc(this);
    } catch (error) {
      return this.#end(true, undefined, error);
    }
    return Promise.resolve(running).then(
      (value) => this.#end(false, value, undefined),
      (error) => this.#end(true, undefined, error),
    );
  }

  /** Releases what the task owns, then settles as the procedure did. */
  async #end(
    failed: boolean,
    value: T | undefined,
    error: unknown,
  ): Promise<T> {
    // A procedure that returns (or throws) leaves its queued sends to be
    // written, for up to `linger` ms; an aborted task writes nothing more.
    if (this.#sockets?.pendingWrites() && !this.signal.aborted) {
      await this.#linger();
    }
    await this.#release();
    this.#done = true;
    this.#host.ended(this as EvThread<unknown>, failed, error, this.#observed);
    if (failed) {
      // Whoever awaits `result` sees the error; nobody need await it. (Only
      // now: a handler made at the start would last as long as the task.)
      this.#result.catch(noop);
      throw error;
    }
    return value as T;
  }

  /**
   * Waits until every owned socket has written its queued sends, the
   * loop's `linger` time has passed, or the task is aborted.
   */
  async #linger(): Promise<void> {
    const ms = this.#host.linger;
    if (ms <= 0) return;
    const signal = this.signal;
    let stop!: () => void;
    const stopped = new Promise<void>((resolve) => stop = resolve);
    const entry = deadlines.schedule(ms, stop);
    signal.addEventListener("abort", stop, { once: true });
    try {
      const drained = this.#sockets!.list().map((socket) =>
        socketInternals.drained(socket)
      );
      await Promise.race([Promise.all(drained), stopped]);
    } finally {
      deadlines.cancel(entry);
      deadlines.settle();
      signal.removeEventListener("abort", stop);
    }
  }

  /** Aborts the signal, ends the children, closes the sockets. */
  async #release(): Promise<void> {
    if (this.#deadlineEntry !== undefined) {
      deadlines.cancel(this.#deadlineEntry);
      this.#deadlineEntry = undefined;
      deadlines.settle();
    }
    if (this.#eviction !== undefined) {
      deadlines.cancel(this.#eviction.entry);
      deadlines.settle();
    }
    this.abort(abortError("The task ended"));
    // A child may spawn another while it winds down: wait for all of them.
    const children = this.#children;
    while (children !== undefined && children.size > 0) {
      await Promise.allSettled([...children].map((c) => c.#result));
    }
    // Sockets adopted after the abort are closed here.
    if (this.#sockets !== undefined) {
      for (const socket of this.#sockets.list()) {
        socket.close();
        (this.#closing ??= []).push(socketInternals.settled(socket));
      }
    }
    if (this.#closing !== undefined) await Promise.all(this.#closing);
  }

  /**
   * Whether the task is still in its handshake: its connection is not yet
   * past what a well-behaved client sends at once (an HTTP request head, a
   * line protocol's greeting or first command), so ending it costs the
   * client nothing it was promised. `false` by default; set it to `true`
   * while the procedure waits for such bytes, and back to `false` once
   * they have come (a `try`/`finally` is the safe way).
   *
   * It protects the task pool from clients that open connections and hold
   * them with a slow handshake (slowloris): when a client waits for a slot
   * of the full pool and no idle keep-alive HTTP connection can be closed
   * instead (or the idle one's address holds fewer slots), the loop evicts
   * one task that is in its handshake and waiting for its peer (a read call
   * waits on one of its sockets), from the peer address that holds the most
   * slots (IPv6 addresses grouped by their acceptor's `ipv6PrefixLength`),
   * the one whose handshake began first; a connection accepted less than
   * 250 ms ago from which nothing has come yet is spared.
   * {@linkcode EvLoopStats.evicted} counts them. Eviction rejects the read
   * calls waiting on the task's sockets with an {@linkcode EvictedError}
   * (the sockets stay open, as after a timeout): the procedure may write a
   * short goodbye and return. A task that has not ended 1 second later is
   * aborted with that error as its reason. The error is not reported to
   * `onError`.
   *
   * Only tasks that an acceptor started for a connection are evicted; on
   * any other task the mark is kept but has no effect. A task is never
   * evicted while it is not in its handshake, so a connection whose
   * request is under way is never touched. The HTTP server marks each
   * connection while it waits for a request head.
   *
   * @example A line protocol: protected until its first command
   * ```ts
   * import { EvictedError, EvLoop } from "@corothread/evthread";
   * import { assertEquals } from "@std/assert";
   *
   * await using loop = new EvLoop({ capacity: 100 });
   * const acceptor = loop.listen({ hostname: "127.0.0.1", port: 0 }, () =>
   *   async (socket, thread) => {
   *     let hello;
   *     thread.handshaking = true;
   *     try {
   *       hello = await socket.readLine({ timeout: 10_000 });
   *     } catch (error) {
   *       if (!(error instanceof EvictedError)) throw error;
   *       await socket.send(new TextEncoder().encode("421 too busy\n"));
   *       return;
   *     } finally {
   *       thread.handshaking = false;
   *     }
   *     await socket.send(new TextEncoder().encode(`250 hello ${hello}\n`));
   *   });
   *
   * using conn = await Deno.connect({ hostname: "127.0.0.1", port: acceptor.port });
   * await conn.write(new TextEncoder().encode("ada\n"));
   * const text = await new Response(conn.readable).text();
   * assertEquals(text, "250 hello ada\n");
   * ```
   *
   * @throws {TypeError} when set to something other than a boolean.
   */
  get handshaking(): boolean {
    return this.#handshake > 0;
  }

  set handshaking(value: boolean) {
    if (value === true) {
      if (this.#eviction === undefined) this.#handshake = ++handshakes;
    } else if (value === false) {
      this.#handshake = 0;
    } else {
      throw new TypeError(
        `'handshaking' must be a boolean: received ${typeof value}`,
      );
    }
  }

  /**
   * Whether the loop evicted the task in its handshake to free its slot
   * (see {@linkcode EvThread.handshaking}).
   */
  get evicted(): boolean {
    return this.#eviction !== undefined;
  }

  /** Evicts the task (see `handshaking`). */
  #evict(reason: EvictedError): void {
    const preparing = this.#handshake < 0;
    this.#handshake = 0;
    this.#eviction = {
      reason,
      entry: deadlines.schedule(EVICT_GRACE, () => this.abort(reason)),
    };
    if (preparing) this.abort(reason);
    else this.#sockets?.interruptReads(reason);
  }

  /**
   * A deadline for the whole task, in epoch milliseconds (as `Date.now()`
   * gives), or `undefined` for none (the default). Set it with a number or
   * a `Date`: when it passes, the task is aborted with a `DOMException`
   * named `"TimeoutError"` as the reason, so every pending call of the task
   * and its sockets rejects with it and its sockets close. It can be moved
   * (later or earlier) or removed until then; a deadline already past
   * aborts at once. Child tasks end with their parent, so it bounds them
   * too.
   *
   * @example A task that must be done within 50 ms
   * ```ts
   * import { EvLoop } from "@corothread/evthread";
   * import { assertEquals, assertRejects } from "@std/assert";
   *
   * await using loop = new EvLoop({ onError: () => {} });
   * const task = loop.spawn(async (thread) => {
   *   thread.deadline = Date.now() + 50;
   *   await thread.delay(60_000);
   * });
   * const error = await assertRejects(() => task.result);
   * assertEquals((error as DOMException).name, "TimeoutError");
   * ```
   *
   * @throws {TypeError} when set to something other than a number, a
   * `Date` or `undefined`.
   * @throws {RangeError} when set to NaN or an invalid `Date`.
   */
  get deadline(): number | undefined {
    return this.#deadline;
  }

  set deadline(value: number | Date | undefined) {
    const at = checkDeadline(value);
    if (this.#deadlineEntry !== undefined) {
      deadlines.cancel(this.#deadlineEntry);
      this.#deadlineEntry = undefined;
    }
    this.#deadline = at;
    if (at === undefined || this.#done || this.signal.aborted) {
      deadlines.settle();
      return;
    }
    const left = at - Date.now();
    if (left <= 0) this.#onDeadline();
    else {
      this.#deadlineEntry = deadlines.schedule(left, () => this.#onDeadline());
    }
  }

  #onDeadline(): void {
    this.#deadlineEntry = undefined;
    if (this.#done || this.signal.aborted) return;
    this.#host.countTimeout();
    this.abort(timeoutError("The task's deadline has passed"));
  }

  /**
   * Aborts the task: its signal aborts with `reason`, the pending calls of
   * its sockets reject with it, and its child tasks are aborted too. The
   * procedure sees the rejection and should return; the task then ends as
   * usual. A no-op once aborted or ended.
   *
   * @example Cancelling a task
   * ```ts
   * import { EvLoop } from "@corothread/evthread";
   * import { assertEquals, assertRejects } from "@std/assert";
   *
   * await using loop = new EvLoop();
   * const sleeper = loop.spawn((thread) => thread.delay(60_000));
   * sleeper.abort(new Error("stop"));
   * const error = await assertRejects(() => sleeper.result);
   * assertEquals((error as Error).message, "stop");
   * ```
   *
   * @param reason The abort reason; a `DOMException` named `"AbortError"`
   * by default.
   */
  abort(reason?: unknown): void {
    if (this.#controller.signal.aborted) return;
    const why = reason ?? abortError("The task was aborted");
    this.#controller.abort(why);
    if (this.#children !== undefined) {
      for (const child of this.#children) child.abort(why);
    }
    // Pending calls reject with the reason, then the sockets close at once:
    // a read working in a caller's buffer must not write into it after its
    // call has rejected, and no later call could use them anyway.
    if (this.#sockets !== undefined) {
      for (const socket of this.#sockets.list()) {
        socketInternals.abort(socket, why);
        socket.close();
        (this.#closing ??= []).push(socketInternals.settled(socket));
      }
    }
  }

  /**
   * Waits `ms` milliseconds (the seed's `EVTHREAD_delay`).
   *
   * @example Pausing
   * ```ts
   * import { EvLoop } from "@corothread/evthread";
   * import { assertGreaterOrEqual } from "@std/assert";
   *
   * await using loop = new EvLoop();
   * const task = loop.spawn(async (thread) => {
   *   const start = performance.now();
   *   await thread.delay(20);
   *   return performance.now() - start;
   * });
   * assertGreaterOrEqual(await task.result, 19);
   * ```
   *
   * @param ms Milliseconds to wait (`Infinity`: until aborted).
   * @param options `signal` to stop waiting early; `deadline` (epoch
   * milliseconds or a `Date`) to reject with a `"TimeoutError"` if it
   * comes before `ms` has passed.
   * @returns A promise that rejects with the reason of the task's signal
   * or of `options.signal` when either aborts first, or with a
   * `DOMException` named `"TimeoutError"` when the deadline comes first.
   */
  delay(
    ms: number,
    options?: { signal?: AbortSignal; deadline?: number | Date },
  ): Promise<void> {
    return handled(this.#delay(ms, options));
  }

  #delay(
    ms: number,
    options: { signal?: AbortSignal; deadline?: number | Date } | undefined,
  ): Promise<void> {
    let signal: AbortSignal;
    let deadline: number | undefined;
    try {
      const wait = checkTimeout(ms, "ms");
      if (wait === undefined && ms !== Infinity) {
        throw new TypeError("'ms' must be a number of milliseconds");
      }
      const extra = checkSignal(options?.signal);
      deadline = checkDeadline(options?.deadline);
      signal = extra === undefined
        ? this.signal
        : AbortSignal.any([this.signal, extra]);
    } catch (error) {
      return Promise.reject(error);
    }
    if (deadline === undefined) return delay(ms, { signal });
    if (signal.aborted) return Promise.reject(signal.reason);
    const left = deadline - Date.now();
    if (left >= ms) return delay(ms, { signal });
    // Wait until the deadline; a timer caps at 2^31-1 ms (about 24.8 days),
    // so a later deadline takes several.
    const untilDeadline = (): Promise<void> => {
      const rest = deadline! - Date.now();
      if (rest <= 0) {
        this.#host.countTimeout();
        return Promise.reject(
          timeoutError("The delay's deadline has passed"),
        );
      }
      return delay(rest, { signal }).then(untilDeadline);
    };
    return untilDeadline();
  }

  /**
   * Connects to a TCP server and returns a socket that this task owns.
   *
   * @example Connect with a timeout
   * ```ts
   * import { EvLoop } from "@corothread/evthread";
   * import { assertRejects } from "@std/assert";
   *
   * await using loop = new EvLoop({ onError: () => {} });
   * // Find a port that nothing listens on.
   * const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
   * const port = probe.addr.port;
   * probe.close();
   * const task = loop.spawn((thread) =>
   *   thread.connect({ hostname: "127.0.0.1", port }, { timeout: 1000 })
   * );
   * await assertRejects(() => task.result, Deno.errors.ConnectionRefused);
   * ```
   *
   * @param address Host name (default `"127.0.0.1"`), port and `tls`; or
   * `{ transport: "unix", path }`.
   * @param options `timeout` in ms, `deadline` (epoch ms or a `Date`; the
   * earlier of the two wins) and `signal`.
   * @returns The connected socket.
   * @throws {Deno.errors.ConnectionRefused} when nothing listens there.
   * @throws {DOMException} named `"TimeoutError"` when the timeout or the
   * deadline passes.
   */
  connect(
    address: EvConnectAddress | EvUnixConnectAddress,
    options?: EvCallOptions,
  ): Promise<EvSocket> {
    return handled(this.#connect(address, options));
  }

  async #connect(
    address: EvConnectAddress | EvUnixConnectAddress,
    options: EvCallOptions | undefined,
  ): Promise<EvSocket> {
    if (address === null || typeof address !== "object") {
      throw new TypeError("'address' must be an object with a port");
    }
    if (address.transport === "unix") {
      return this.#connectUnix(address, options);
    }
    if (address.transport !== undefined && address.transport !== "tcp") {
      throw new TypeError(
        `'transport' must be "tcp" or "unix": received ${
          JSON.stringify(address.transport)
        }`,
      );
    }
    const port = checkInteger(address.port, "port", 1, 65_535);
    const hostname = address.hostname ?? "127.0.0.1";
    if (typeof hostname !== "string") {
      throw new TypeError("'hostname' must be a string");
    }
    const tls = address.tls === undefined || address.tls === false
      ? undefined
      : checkTlsClientOptions(address.tls === true ? undefined : address.tls);
    const started = Date.now();
    let timeout = checkTimeout(options?.timeout);
    const signal = checkSignal(options?.signal);
    const deadline = checkDeadline(options?.deadline);
    if (this.#done) throw new Deno.errors.BadResource("The task has ended");
    const mine = this.signal;
    if (mine.aborted) throw mine.reason;
    if (signal?.aborted) throw signal.reason;
    const where = `connect ${formatHostPort(hostname, port)}`;
    let why = `${where}: timed out after ${timeout} ms`;
    if (deadline !== undefined) {
      const left = deadline - Date.now();
      if (left <= 0) {
        this.#host.countTimeout();
        throw timeoutError(`${where}: deadline has passed`);
      }
      if (timeout === undefined || left < timeout) {
        timeout = left;
        why = `${where}: deadline has passed`;
      }
    }

    const controller = new AbortController();
    const abort = (reason: unknown) => controller.abort(reason);
    const onMine = () => abort(mine.reason);
    const onSignal = () => abort(signal!.reason);
    mine.addEventListener("abort", onMine, { once: true });
    signal?.addEventListener("abort", onSignal, { once: true });
    const entry = timeout === undefined ? undefined : deadlines.schedule(
      timeout,
      () => abort(timeoutError(why)),
    );
    let conn: Deno.TcpConn;
    try {
      conn = await Deno.connect({
        hostname,
        port,
        transport: "tcp",
        signal: controller.signal,
      });
    } catch (error) {
      const reason = controller.signal.aborted
        ? controller.signal.reason
        : error;
      if (reason instanceof DOMException && reason.name === "TimeoutError") {
        this.#host.countTimeout();
      }
      throw controller.signal.aborted ? reason : withAddress(error, where);
    } finally {
      if (entry !== undefined) {
        deadlines.cancel(entry);
        deadlines.settle();
      }
      mine.removeEventListener("abort", onMine);
      signal?.removeEventListener("abort", onSignal);
    }
    if (controller.signal.aborted) {
      conn.close();
      throw controller.signal.reason;
    }
    const socket = this.adopt(conn);
    if (tls === undefined) return socket;
    // The handshake gets what is left of the timeout; the deadline and
    // signal apply as they are.
    const left = options?.timeout === undefined || options.timeout === Infinity
      ? undefined
      : Math.max(1, options.timeout - (Date.now() - started));
    try {
      await socket.startTls({
        hostname: tls.hostname ?? hostname,
        ...(tls.caCerts ? { caCerts: tls.caCerts } : {}),
        ...(tls.alpnProtocols ? { alpnProtocols: tls.alpnProtocols } : {}),
        ...(left !== undefined ? { timeout: left } : {}),
        ...(options?.deadline !== undefined
          ? { deadline: options.deadline }
          : {}),
        ...(signal !== undefined ? { signal } : {}),
      });
    } catch (error) {
      socket.close();
      throw error;
    }
    return socket;
  }

  async #connectUnix(
    address: EvUnixConnectAddress,
    options: EvCallOptions | undefined,
  ): Promise<EvSocket> {
    const path = address.path;
    if (typeof path !== "string" || path === "") {
      throw new TypeError(
        "'path' must be a non-empty string for transport \"unix\"",
      );
    }
    checkTimeout(options?.timeout);
    checkDeadline(options?.deadline);
    const signal = checkSignal(options?.signal);
    if (this.#done) throw new Deno.errors.BadResource("The task has ended");
    if (this.signal.aborted) throw this.signal.reason;
    if (signal?.aborted) throw signal.reason;
    // A Unix connect does not wait on the network: it succeeds or fails
    // at once, so it needs no timer.
    let conn: Deno.UnixConn;
    try {
      conn = await Deno.connect({ transport: "unix", path });
    } catch (error) {
      throw withAddress(error, `connect ${path}`);
    }
    if (this.signal.aborted || signal?.aborted) {
      conn.close();
      throw this.signal.aborted ? this.signal.reason : signal!.reason;
    }
    return this.adopt(conn);
  }

  /**
   * Wraps a connection in a socket that this task owns (the seed's
   * `EVSOCKET_init`): it is closed when the task ends.
   *
   * @example Adopting a connection
   * ```ts
   * import { EvLoop } from "@corothread/evthread";
   * import { assert } from "@std/assert";
   *
   * await using loop = new EvLoop();
   * using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
   * const conn = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
   * using _peer = await listener.accept();
   * const task = loop.spawn((thread) => thread.adopt(conn));
   * const socket = await task.result;
   * assert(socket.closed); // the task ended, so it closed its socket
   * ```
   *
   * @param conn The connection.
   * @returns The socket.
   * @throws {Deno.errors.BadResource} if the task has ended (the
   * connection is then closed).
   */
  adopt(conn: Deno.Conn): EvSocket {
    const socket = new EvSocket(conn);
    if (this.#done) {
      socket.close();
      throw new Deno.errors.BadResource("The task has ended");
    }
    this.#sockets ??= new OwnedSockets(
      this.#controller.signal,
      this.#host,
      this as EvThread<unknown>,
    );
    socketInternals.attach(socket, this.#sockets);
    this.#sockets.add(socket);
    return socket;
  }

  /**
   * Starts a child task. It shares this task's pool slot (so it never waits
   * for one, and a parent never deadlocks waiting on a child), and it is
   * aborted and awaited when this task ends. Its errors are reported to the
   * loop's `onError` like any task's.
   *
   * @example Full duplex with a child task
   * ```ts
   * import { EvLoop } from "@corothread/evthread";
   * import { assertEquals } from "@std/assert";
   *
   * await using loop = new EvLoop();
   * const task = loop.spawn(async (thread) => {
   *   const child = thread.spawn(() => 21);
   *   return 2 * await child.result;
   * });
   * assertEquals(await task.result, 42);
   * ```
   *
   * @typeParam U What the child's procedure returns.
   * @param proc The child's procedure.
   * @returns The child task.
   * @throws {Deno.errors.BadResource} if this task has ended.
   */
  spawn<U>(proc: EvThreadProc<U>): EvThread<U> {
    checkFunction(proc, "proc");
    if (this.#done) throw new Deno.errors.BadResource("The task has ended");
    const host = this.#host;
    host.spawned();
    const child = threadInternals.start<U>(
      {
        draining: host.draining,
        linger: host.linger,
        debug: host.debug,
        countTimeout: () => host.countTimeout(),
        spawned: () => host.spawned(),
        unsent: (error, thread) => host.unsent(error, thread),
        ended: (thread, failed, error, observed) => {
          this.#children?.delete(thread);
          host.ended(thread, failed, error, observed);
        },
      },
      this as EvThread<unknown>,
      proc,
    );
    if (!child.#done) {
      (this.#children ??= new Set()).add(child as EvThread<unknown>);
      if (this.signal.aborted) child.abort(this.signal.reason);
    }
    return child;
  }
}
