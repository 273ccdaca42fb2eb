// Copyright 2026 the @corothread/evthread authors. MIT license.
// Hooks between the classes of this module that are not public API. Each
// class fills in its part from a `static` block, so that `#private` state
// stays private and nothing here is exported from mod.ts.

import type { TaskPool } from "./_pool.ts";
import type { SlotHolder, SlotReclaimer } from "./_reclaim.ts";
import type { EvLoop } from "./ev_loop.ts";
import type { EvSocket } from "./ev_socket.ts";
import type { EvictedError, UnsentDataError } from "./errors.ts";
import type { EvProxyInfo } from "./proxy_protocol.ts";
import type {
  EvConnectionFactory,
  EvListenOptions,
  EvTcpAcceptor,
  EvUnixListenOptions,
} from "./ev_tcp_acceptor.ts";
import type { EvThread, EvThreadProc } from "./ev_thread.ts";

/** What a socket reports to, and is stopped by: its owning task. */
export interface SocketHost {
  /** Aborted when the owning task is aborted or ends. */
  readonly signal: AbortSignal;
  /**
   * Whether each send records the stack of its caller (`new Error().stack`,
   * about 2 us a call), so that an {@linkcode UnsentDataError} shows where
   * the first send it cut short was called. Read at every send.
   */
  readonly debug: boolean;
  /** Counts a call that rejected with a TimeoutError. */
  countTimeout(): void;
  /** Forgets a socket that was closed. */
  release(socket: EvSocket): void;
  /**
   * Called once, synchronously from `socketInternals.abort` or `close()`,
   * when the socket dropped queued sends (or a `closeWrite`) that still had
   * bytes to write. Not called for sends that a write error (a peer reset)
   * ended: their callers get that error. It must not throw: the socket is
   * in the middle of being aborted or closed.
   */
  unsent(error: UnsentDataError): void;
}

/** What a task needs from its loop. */
export interface LoopHost {
  /** Raised when the loop starts to shut down. */
  readonly draining: AbortSignal;
  /**
   * How long, in ms, a task whose procedure returned or threw waits for
   * its sockets' queued sends to be written before it closes them.
   */
  readonly linger: number;
  /** Whether sends record the stack of their call site. */
  readonly debug: boolean;
  /** Counts and reports sends that a task's end or abort cut short. */
  unsent(error: UnsentDataError, thread: EvThread<unknown>): void;
  /** Counts a call that rejected with a TimeoutError. */
  countTimeout(): void;
  /** Counts a child task started. */
  spawned(): void;
  /**
   * Called once when a task has ended and released all it owned;
   * `failed` with `error` when its procedure threw; `observed` when its
   * `result` was read before it ended (whoever read it handles the error).
   */
  ended(
    thread: EvThread<unknown>,
    failed: boolean,
    error: unknown,
    observed: boolean,
  ): void;
}

/** What an acceptor needs from its loop. */
export interface AcceptorHost {
  readonly pool: TaskPool;
  accepted(): void;
  refused(): void;
  /** Counts a connection closed for its address's limit (and refused). */
  limited(): void;
  /**
   * Where the acceptor reports connections it holds, or refuses, for want
   * of a slot: the loop's servers then give one back.
   */
  readonly slots: SlotReclaimer;
  report(error: unknown, source: EvTcpAcceptor<Deno.Addr>): void;
  /** Starts a top-level task in a slot the acceptor holds. */
  start(proc: EvThreadProc<unknown>): void;
  closed(acceptor: EvTcpAcceptor<Deno.Addr>): void;
}

function unreachable(): never {
  throw new Error("evthread: internal hook used before its class loaded");
}

/** Internal operations on sockets. */
export const socketInternals: {
  /** Attaches a socket to the task that owns it. */
  attach: (socket: EvSocket, host: SocketHost) => void;
  /** Rejects every pending call of a socket with `reason`. */
  abort: (socket: EvSocket, reason: unknown) => void;
  /** Resolves once the socket's in-flight reads and writes have settled. */
  settled: (socket: EvSocket) => Promise<void>;
  /**
   * `send` of bytes the caller hands over (it never touches them again),
   * so that even a send that can be abandoned need not copy them.
   */
  sendOwned: (
    socket: EvSocket,
    bytes: Uint8Array,
    options?: { timeout?: number },
  ) => Promise<void>;
  /**
   * Resolves when the peer ends the stream (or the connection fails), as
   * seen by reading ahead up to 64 KiB while nobody reads; never, if
   * `signal` aborts first or the socket is closed.
   */
  watchEnd: (socket: EvSocket, signal: AbortSignal) => Promise<void>;
  /**
   * Records the PROXY header a connection started with: its TCP addresses
   * become the socket's `remoteAddr` / `localAddr`.
   */
  setProxy: (socket: EvSocket, proxy: EvProxyInfo) => void;
  /**
   * Whether a read call is waiting on the socket (queued, not yet settled):
   * aborting its task then cannot lose bytes that a read already took.
   */
  readWaiting: (socket: EvSocket) => boolean;
  /**
   * Rejects the read calls waiting on the socket with `reason`, as a
   * timeout does: the read of the connection in flight stays armed and
   * nothing is lost; the socket stays open.
   */
  interruptReads: (socket: EvSocket, reason: unknown) => void;
  /**
   * Fills `buf` from the bytes already buffered, synchronously, and
   * returns true; or returns false, taking nothing, when fewer are
   * buffered, a read call waits, the `readable` stream is in use, or the
   * socket is closed or its task aborted (a read call then tells why). For
   * the WebSocket reader: a frame that has arrived whole costs no read call.
   */
  takeBuffered: (socket: EvSocket, buf: Uint8Array) => boolean;
  /** Records the handshake of a connection accepted with TLS. */
  setTls: (socket: EvSocket, info: Deno.TlsHandshakeInfo) => void;
  /**
   * `readUntil` that stops at whichever of two delimiters ends first, and
   * resolves with the record (delimiter included) decoded as latin1, one
   * char per byte, with no copy of the bytes made first.
   */
  readTextUntil: (
    socket: EvSocket,
    a: Uint8Array,
    b: Uint8Array,
    options: { maxLength: number; timeout?: number },
  ) => Promise<string | null>;
  /**
   * Whether a queued send or `closeWrite` still has bytes to write,
   * including sends whose callers stopped waiting (a timeout, an abort
   * through their signal). Cheap: one field.
   */
  pendingWrites: (socket: EvSocket) => boolean;
  /**
   * Resolves once the socket's write queue is empty, or once it can no
   * longer write (a write error, `abort`, `close()`). Never rejects; the
   * promise is made only when asked for (and shared until it resolves).
   */
  drained: (socket: EvSocket) => Promise<void>;
  /**
   * Whether the socket's owner writes it itself and decides what to drop
   * (the HTTP server): then sends cut short are not reported to the host.
   */
  setQuiet: (socket: EvSocket, quiet: boolean) => void;
} = {
  setQuiet: unreachable,
  readTextUntil: unreachable,
  interruptReads: unreachable,
  takeBuffered: unreachable,
  pendingWrites: unreachable,
  drained: unreachable,
  setProxy: unreachable,
  setTls: unreachable,
  readWaiting: unreachable,
  watchEnd: unreachable,
  attach: unreachable,
  abort: unreachable,
  settled: unreachable,
  sendOwned: unreachable,
};

/** Internal: starts tasks, and evicts them. */
export const threadInternals: {
  start: <T>(
    host: LoopHost,
    parent: EvThread<unknown> | undefined,
    proc: EvThreadProc<T>,
  ) => EvThread<T>;
  /**
   * If the task can be evicted now, a positive number that orders tasks by
   * when their handshake began (smaller: earlier); else 0. It can be if it
   * is in its handshake, running, not evicted yet, and waiting for its
   * peer (a read call waits on one of its sockets), or if its acceptor
   * still prepares its connection (see `preparing`).
   */
  evictable: (thread: EvThread<unknown>) => number;
  /**
   * Evicts the task: its sockets' waiting reads reject with `reason`, and
   * it is aborted with it if it has not ended 1 s later (at once while its
   * acceptor prepares the connection).
   */
  evict: (thread: EvThread<unknown>, reason: EvictedError) => void;
  /** Whether bytes the task has not read yet wait in one of its sockets. */
  buffered: (thread: EvThread<unknown>) => boolean;
  /** Where the slot of a task an acceptor started is counted. */
  slot: (thread: EvThread<unknown>) => SlotHolder | undefined;
  setSlot: (thread: EvThread<unknown>, holder: SlotHolder) => void;
  /**
   * For an acceptor: the task's connection is in its TLS handshake or its
   * PROXY header (`true`) or past them (`false`); meanwhile an eviction
   * aborts the task at once.
   */
  preparing: (thread: EvThread<unknown>, on: boolean) => void;
} = {
  start: unreachable,
  evictable: unreachable,
  evict: unreachable,
  buffered: unreachable,
  slot: unreachable,
  setSlot: unreachable,
  preparing: unreachable,
};

/** Internal: what servers need from their loop. */
export const loopInternals: {
  /** The loop's slot reclaiming, which its servers offer candidates to. */
  slots: (loop: EvLoop) => SlotReclaimer;
} = { slots: unreachable };

/** Internal: creates acceptors. */
export const acceptorInternals: {
  create: (
    options: EvListenOptions | EvUnixListenOptions,
    // deno-lint-ignore no-explicit-any
    factory: EvConnectionFactory<any>,
    host: AcceptorHost,
  ) => EvTcpAcceptor<Deno.Addr>;
} = { create: unreachable };
