// Copyright 2026 the @corothread/evthread authors. MIT license.

import { deadlines } from "./_deadline_queue.ts";
import { GracePeriod } from "./_grace_period.ts";
import {
  acceptorInternals,
  type LoopHost,
  loopInternals,
  threadInternals,
} from "./_internal.ts";
import { TaskPool } from "./_pool.ts";
import { SlotReclaimer } from "./_reclaim.ts";
import { abortError, checkFunction, checkInteger } from "./_validate.ts";
import { EvictedError, PoolFullError, UnsentDataError } from "./errors.ts";
import { inScope, InsideCallers, taskContext } from "./_task_context.ts";
import type {
  EvConnectionFactory,
  EvListenOptions,
  EvTcpAcceptor,
  EvUnixListenOptions,
} from "./ev_tcp_acceptor.ts";
import { EvThread, type EvThreadProc } from "./ev_thread.ts";
// Loaded for its side effect: it fills in acceptorInternals.
import "./ev_tcp_acceptor.ts";

/** Default capacity of a loop's task pool. */
const DEFAULT_CAPACITY = 1024;
/** Default grace period of `EvLoop.shutdown`, in milliseconds. */
const DEFAULT_GRACE = 5000;
/** Default time a returning task waits for its queued sends, in ms. */
const DEFAULT_LINGER = 1000;

/**
 * Receives the errors of tasks and acceptors: a task's procedure that threw
 * (once per task; aborts are not errors), a factory that threw, or an accept
 * that failed (the acceptor backs off and goes on).
 */
export type EvErrorHandler = (
  error: unknown,
  source: EvThread<unknown> | EvTcpAcceptor<Deno.Addr>,
) => void;

/** Options for {@linkcode EvLoop}. */
export interface EvLoopOptions {
  /**
   * The most top-level tasks that may run at once (the seed's `STACKS`).
   * Acceptors and {@linkcode EvLoop.spawn} take a slot per task; child
   * tasks share their parent's.
   *
   * @default {1024}
   */
  capacity?: number;
  /**
   * Called with the error of a task or acceptor. The default writes it to
   * stderr. Errors thrown by the hook itself are written to stderr.
   *
   * A task's error is reported here only when nobody else handles it: a
   * task whose {@linkcode EvThread.result} was read before it ended leaves
   * its error to that reader.
   */
  onError?: EvErrorHandler;
  /**
   * How long, in ms, a task whose procedure has returned or thrown waits
   * for its sockets' queued sends (such as a `send` that was not awaited)
   * to be written before its signal aborts and its sockets close. The task
   * keeps its pool slot meanwhile. An aborted task (by
   * {@linkcode EvThread.abort}, its parent, its deadline or shutdown) writes
   * nothing more. Sends cut short are reported to `onError` as an
   * {@linkcode UnsentDataError}. `0` closes at once.
   *
   * @default {1000}
   */
  linger?: number;
  /**
   * Record where each send was called, so that an
   * {@linkcode UnsentDataError} shows it in its `stack`. Costs about 2 us
   * per send: for finding a missing `await`, not for production.
   *
   * @default {false}
   */
  debug?: boolean;
}

/** A snapshot of a loop's counters. */
export interface EvLoopStats {
  /** Capacity of the task pool. */
  capacity: number;
  /** Top-level tasks running now (pool slots in use). */
  active: number;
  /** The most top-level tasks that ever ran at once. */
  peakActive: number;
  /** Tasks started, children included. */
  spawned: number;
  /** Tasks that have ended, children included. */
  ended: number;
  /** Connections taken from the kernel by the loop's acceptors. */
  accepted: number;
  /** Connections closed without running a procedure: pool full, or factory. */
  refused: number;
  /**
   * Connections an acceptor held, with the pool full, until a slot freed
   * (policy `"wait"`).
   */
  held: number;
  /**
   * Tasks ended to free a slot for a waiting connection: idle keep-alive
   * connections of the HTTP server, closed oldest first.
   */
  reclaimed: number;
  /**
   * Tasks evicted in their handshake to free a slot for a waiting
   * connection when no idle one could be closed: HTTP connections whose
   * request head was not complete, and tasks marked
   * {@linkcode EvThread.handshaking}; from the address that held the most
   * slots.
   */
  evicted: number;
  /**
   * Connections closed because their address already held an acceptor's
   * `maxConnectionsPerAddress` (counted in `refused` too).
   */
  addressLimited: number;
  /** Calls that rejected with a TimeoutError. */
  timeouts: number;
  /** Errors reported to `onError`: failed tasks, factories and accepts. */
  errors: number;
  /**
   * Sends that a task's end or abort cut short with bytes unwritten
   * (each socket's are reported once, as an {@linkcode UnsentDataError}).
   */
  sendsCutShort: number;
  /** Bytes those sends left unwritten. */
  bytesUnsent: number;
}

/** The state of a loop. */
export type EvLoopState = "running" | "draining" | "closed";

function defaultOnError(
  error: unknown,
  source: EvThread<unknown> | EvTcpAcceptor<Deno.Addr>,
): void {
  const what = source instanceof EvThread
    ? `task ${source.id}`
    : `acceptor on port ${source.port}`;
  if (error instanceof UnsentDataError) {
    console.error(`evthread: ${what}:`, error);
  } else {
    console.error(`evthread: ${what} failed:`, error);
  }
}

/**
 * The reactor: the seed's `EVLOOP`. Deno's runtime does the OS event work;
 * an `EvLoop` owns the task pool, its acceptors and tasks, a root
 * `AbortSignal`, counters, and orderly shutdown.
 *
 * | seed | here |
 * |---|---|
 * | `EVLOOP_init(stacks)` | `new EvLoop({ capacity })` |
 * | `EVLOOP_run(loop)` | `await loop.finished` |
 * | `EVLOOP_break(loop)` | `await loop.shutdown({ grace })` |
 *
 * A task that throws never takes the loop down: its error goes to
 * `onError` once, and awaiting its {@linkcode EvThread.result} rejects with
 * it.
 *
 * @example An echo server
 * ```ts
 * import { EvLoop } from "@corothread/evthread";
 * import { assertEquals } from "@std/assert";
 *
 * await using loop = new EvLoop({ capacity: 100 });
 * const acceptor = loop.listen({ hostname: "127.0.0.1", port: 0 }, () =>
 *   async (socket) => {
 *     const buf = new Uint8Array(4096);
 *     let n;
 *     while ((n = await socket.recv(buf, { timeout: 3000 })) !== null) {
 *       await socket.send(buf.subarray(0, n), { timeout: 3000 });
 *     }
 *   });
 *
 * using conn = await Deno.connect({ hostname: "127.0.0.1", port: acceptor.port });
 * await conn.write(new TextEncoder().encode("hello"));
 * const buf = new Uint8Array(5);
 * assertEquals(await conn.read(buf), 5);
 * assertEquals(new TextDecoder().decode(buf), "hello");
 * ```
 */
export class EvLoop implements AsyncDisposable {
  #pool: TaskPool;
  #onError: EvErrorHandler;
  #root = new AbortController();
  #draining = new AbortController();
  #threads = new Set<EvThread<unknown>>();
  #acceptors = new Set<EvTcpAcceptor<Deno.Addr>>();
  #idleWaiters: (() => void)[] = [];
  /** The contexts of this loop's tasks: the loop's and its acceptors'. */
  #scopes = new WeakSet<object>([this]);
  /** The loop's tasks that await `shutdown()` (they cannot end meanwhile). */
  #inside = new InsideCallers();
  #grace = new GracePeriod();
  #finished: Promise<void>;
  #resolveFinished!: () => void;
  #closed = false;
  #refed = true;
  #host: LoopHost;
  #stats = {
    spawned: 0,
    ended: 0,
    accepted: 0,
    refused: 0,
    held: 0,
    reclaimed: 0,
    evicted: 0,
    addressLimited: 0,
    timeouts: 0,
    errors: 0,
    sendsCutShort: 0,
    bytesUnsent: 0,
  };
  /** Frees slots for held connections: see _reclaim.ts. */
  #slots = new SlotReclaimer(
    this.#stats,
    (thread) => thread.parent === undefined && this.#threads.has(thread),
    this.#threads,
  );

  /**
   * Makes a loop.
   *
   * @param options Pool capacity, error hook, linger time and debug.
   * @throws {TypeError} if `capacity` or `linger` is not a number, `onError`
   * not a function or `debug` not a boolean.
   * @throws {RangeError} if `capacity` is not a positive integer or
   * `linger` is negative.
   */
  constructor(options: EvLoopOptions = {}) {
    const capacity = checkInteger(
      options.capacity ?? DEFAULT_CAPACITY,
      "capacity",
      1,
    );
    if (options.onError !== undefined) {
      checkFunction(options.onError, "onError");
    }
    const linger = checkInteger(
      options.linger ?? DEFAULT_LINGER,
      "linger",
      0,
    );
    const debug = options.debug ?? false;
    if (typeof debug !== "boolean") {
      throw new TypeError(
        `'debug' must be a boolean: received ${typeof debug}`,
      );
    }
    this.#pool = new TaskPool(capacity);
    this.#onError = options.onError ?? defaultOnError;
    this.#finished = new Promise((resolve) => {
      this.#resolveFinished = resolve;
    });
    const stats = this.#stats;
    this.#host = {
      draining: this.#draining.signal,
      linger,
      debug,
      countTimeout: () => {
        stats.timeouts++;
      },
      spawned: () => {
        stats.spawned++;
      },
      unsent: (error, thread) => {
        stats.sendsCutShort += error.sends;
        stats.bytesUnsent += error.bytesUnsent;
        this.#report(error, thread);
      },
      ended: (thread, failed, error, observed) =>
        this.#ended(thread, failed, error, observed),
    };
  }

  /** The capacity of the task pool. */
  get capacity(): number {
    return this.#pool.capacity;
  }

  /**
   * The root signal: aborted when shutdown ends the tasks that outlived the
   * grace period. Every task's signal follows it.
   */
  get signal(): AbortSignal {
    return this.#root.signal;
  }

  /**
   * Raised when shutdown starts: tasks should finish the unit of work at
   * hand and take no new one (the same signal as
   * {@linkcode EvThread.draining}).
   */
  get draining(): AbortSignal {
    return this.#draining.signal;
  }

  /** `"running"`, `"draining"` during shutdown, `"closed"` after it. */
  get state(): EvLoopState {
    if (this.#closed) return "closed";
    return this.#grace.started ? "draining" : "running";
  }

  /** Resolves when shutdown has finished (`EVLOOP_run` returning). */
  get finished(): Promise<void> {
    return this.#finished;
  }

  /** A snapshot of the loop's counters. */
  get stats(): EvLoopStats {
    return {
      capacity: this.#pool.capacity,
      active: this.#pool.used,
      peakActive: this.#pool.peak,
      ...this.#stats,
    };
  }

  /**
   * Starts a task in a free pool slot (the seed's `EVTHREAD_init` and
   * `EVTHREAD_start`). The procedure runs at once, up to its first `await`.
   *
   * @example Spawning a task
   * ```ts
   * import { EvLoop } from "@corothread/evthread";
   * import { assertEquals } from "@std/assert";
   *
   * await using loop = new EvLoop({ capacity: 2 });
   * const task = loop.spawn(async (thread) => {
   *   await thread.delay(1);
   *   return "done";
   * });
   * assertEquals(await task.result, "done");
   * ```
   *
   * @typeParam T What the procedure returns.
   * @param proc The task's procedure.
   * @returns The task.
   * @throws {PoolFullError} when every slot is in use.
   * @throws {Deno.errors.BadResource} once shutdown has started.
   */
  spawn<T>(proc: EvThreadProc<T>): EvThread<T> {
    checkFunction(proc, "proc");
    if (this.#grace.started) {
      throw new Deno.errors.BadResource("The loop is shutting down");
    }
    if (!this.#pool.tryAcquire()) throw new PoolFullError(this.capacity);
    // In the loop's context, wherever spawn is called from.
    return inScope(this, this.#startTop, proc);
  }

  #startTop = <T>(proc: EvThreadProc<T>): EvThread<T> => this.#startHeld(proc);

  /** Starts a top-level task in a slot the caller already holds. */
  #startHeld<T>(proc: EvThreadProc<T>): EvThread<T> {
    this.#stats.spawned++;
    const thread = threadInternals.start(this.#host, undefined, proc);
    if (!thread.done) this.#threads.add(thread as EvThread<unknown>);
    return thread;
  }

  #ended(
    thread: EvThread<unknown>,
    failed: boolean,
    error: unknown,
    observed: boolean,
  ): void {
    this.#stats.ended++;
    if (thread.parent === undefined) {
      this.#threads.delete(thread);
      this.#slots.ended(thread);
      this.#pool.release();
      if (this.#idleWaiters.length > 0) this.#wakeIdleWaiters();
    }
    if (
      failed && !observed && error !== thread.signal.reason &&
      error !== this.#draining.signal.reason &&
      !(error instanceof EvictedError && thread.evicted)
    ) {
      this.#report(error, thread);
    }
  }

  /** Resolves the waits for "every task has ended" once that holds. */
  #wakeIdleWaiters(): void {
    if (this.#threads.size > this.#inside.count) return;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  static {
    loopInternals.slots = (loop) => loop.#slots;
  }

  #report(
    error: unknown,
    source: EvThread<unknown> | EvTcpAcceptor<Deno.Addr>,
  ): void {
    this.#stats.errors++;
    try {
      this.#onError(error, source);
    } catch (hookError) {
      console.error("evthread: onError threw:", hookError);
    }
  }

  /**
   * Listens for TCP connections (the seed's `EVTCPACCEPTOR_init_ex`). For
   * each connection, once a pool slot is held, `factory` is called with the
   * connection's addresses; it returns the procedure to run in a new task
   * with the connection's socket, or `null` to refuse (close) it.
   *
   * @example Listening on an ephemeral port
   * ```ts
   * import { EvLoop } from "@corothread/evthread";
   * import { assertGreater } from "@std/assert";
   *
   * await using loop = new EvLoop();
   * const acceptor = loop.listen({ hostname: "127.0.0.1", port: 0 }, () => null);
   * assertGreater(acceptor.port, 0);
   * ```
   *
   * @param options Address (TCP, TLS over TCP with `cert` and `key`, or a
   * Unix domain socket with `transport: "unix"` and `path`), backlog, what
   * to do when the pool is full, and the PROXY protocol.
   * @param factory Picks the procedure for each connection.
   * @returns The acceptor.
   * @throws {Deno.errors.AddrInUse} if the address is taken.
   * @throws {Deno.errors.BadResource} once shutdown has started.
   */
  listen(
    options: EvListenOptions,
    factory: EvConnectionFactory<Deno.NetAddr>,
  ): EvTcpAcceptor<Deno.NetAddr>;
  /**
   * Listens on a Unix domain socket and runs a task per connection.
   *
   * @example A Unix domain socket
   * ```ts ignore
   * import { EvLoop } from "@corothread/evthread";
   *
   * await using loop = new EvLoop();
   * loop.listen({ transport: "unix", path: "/tmp/app.sock" }, () =>
   *   async (socket) => {
   *     await socket.send(new TextEncoder().encode("hello\n"));
   *   });
   * ```
   *
   * @param options The path, and what to do when the pool is full.
   * @param factory Picks the procedure for each connection.
   * @returns The acceptor.
   */
  listen(
    options: EvUnixListenOptions,
    factory: EvConnectionFactory<Deno.UnixAddr>,
  ): EvTcpAcceptor<Deno.UnixAddr>;
  listen(
    options: EvListenOptions | EvUnixListenOptions,
    // deno-lint-ignore no-explicit-any
    factory: EvConnectionFactory<any>,
  ): EvTcpAcceptor<Deno.Addr> {
    if (this.#grace.started) {
      throw new Deno.errors.BadResource("The loop is shutting down");
    }
    const stats = this.#stats;
    const acceptor = acceptorInternals.create(options, factory, {
      pool: this.#pool,
      accepted: () => {
        stats.accepted++;
      },
      refused: () => {
        stats.refused++;
      },
      limited: () => {
        stats.addressLimited++;
        stats.refused++;
      },
      slots: this.#slots,
      report: (error, source) => this.#report(error, source),
      start: (proc) => {
        this.#startHeld(proc);
      },
      closed: (a) => this.#acceptors.delete(a),
    });
    this.#acceptors.add(acceptor);
    this.#scopes.add(acceptor);
    if (!this.#refed) acceptor.unref();
    return acceptor;
  }

  /**
   * Shuts down in order (the seed's `EVLOOP_break`, made graceful):
   * 1. stop accepting (every acceptor closes) and raise
   *    {@linkcode EvLoop.draining};
   * 2. wait up to `grace` ms for the tasks to end by themselves;
   * 3. abort the rest through the root signal, which closes their sockets;
   * 4. resolve once every task has ended (and {@linkcode EvLoop.finished}).
   *
   * Calling it again returns the same promise. `grace` defaults to 5000 ms;
   * `0` aborts at once.
   *
   * Awaited from inside one of the loop's own tasks (a request handler that
   * shuts the server down, say), it resolves once every other task has
   * ended: the caller's task is aborted with the rest when the grace period
   * ends (or once the others have ended), and it ends when its procedure
   * returns; {@linkcode EvLoop.finished} resolves after that. Not awaiting
   * it works from anywhere.
   *
   * @example Graceful shutdown
   * ```ts
   * import { EvLoop } from "@corothread/evthread";
   * import { assertEquals } from "@std/assert";
   *
   * const loop = new EvLoop();
   * const task = loop.spawn(async (thread) => {
   *   await thread.delay(10); // in-flight work finishes within the grace
   *   return "finished";
   * });
   * await loop.shutdown({ grace: 5000 });
   * assertEquals(await task.result, "finished");
   * assertEquals(loop.state, "closed");
   * ```
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
    // Only the shutdown path reads the context of the running code.
    const scope = taskContext.getStore();
    if (scope === undefined || !this.#scopes.has(scope)) return all;
    // Called inside one of the loop's tasks: `all` would wait for that task
    // too, which cannot end while it awaits. Give it a promise that does
    // not, and count the task once it awaits.
    return this.#inside.wait(() => {
      if (this.#idleWaiters.length > 0) this.#wakeIdleWaiters();
    });
  }

  async #doShutdown(grace: number): Promise<void> {
    this.#draining.abort(abortError("The loop is shutting down"));
    await Promise.all([...this.#acceptors].map((a) => a.close()));
    await this.#grace.wait(this.#allEnded(), grace);
    this.#grace.end();
    const reason = abortError("The loop was shut down");
    this.#root.abort(reason);
    for (const thread of this.#threads) thread.abort(reason);
    await this.#allEnded();
    // Tasks that await shutdown() from inside resume now, and end.
    this.#inside.release();
    if (this.#threads.size > 0) await this.#allEnded();
    deadlines.settle();
    this.#closed = true;
    this.#resolveFinished();
  }

  /**
   * Resolves when every top-level task has ended, but for those that
   * await `shutdown()` from inside.
   */
  #allEnded(): Promise<void> {
    if (this.#threads.size <= this.#inside.count) {
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /**
   * Makes the loop's listeners keep the process alive (the default).
   *
   * @example Ref
   * ```ts
   * import { EvLoop } from "@corothread/evthread";
   *
   * await using loop = new EvLoop();
   * loop.unref();
   * loop.ref();
   * ```
   */
  ref(): void {
    this.#refed = true;
    for (const acceptor of this.#acceptors) acceptor.ref();
  }

  /**
   * Lets the process exit while the loop's listeners wait for connections.
   * Open connections and running tasks still keep it alive.
   *
   * @example Unref
   * ```ts
   * import { EvLoop } from "@corothread/evthread";
   *
   * await using loop = new EvLoop();
   * loop.unref();
   * ```
   */
  unref(): void {
    this.#refed = false;
    for (const acceptor of this.#acceptors) acceptor.unref();
  }

  /** Shuts down with the default grace period. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }
}
