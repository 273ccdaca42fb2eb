// Copyright 2026 the @corothread/evthread authors. MIT license.
// The time limits of a socket's calls: each call's own timeout and deadline,
// and the socket's idle timeout and read/write deadlines (SocketLimits), with
// the errors a call rejects with when one passes (or the socket is closed).
// All of them are entries of the one shared deadline queue. What expiry does
// to the socket's pending calls goes through `limitHooks`, which EvSocket
// fills in from its `static` block (its queues are private).

import { type DeadlineEntry, deadlines } from "./_deadline_queue.ts";
import { timeoutError } from "./_validate.ts";
import type { EvSocket } from "./ev_socket.ts";

/** The read direction: the socket's read deadline. */
export const READ = 0;
/** The write direction: the socket's write deadline. */
export const WRITE = 1;
/** Both directions: the socket's idle timeout. */
export const IDLE = 2;
/** A socket-wide limit: its read or write deadline, or its idle timeout. */
export type LimitMode = typeof READ | typeof WRITE | typeof IDLE;

/** What expiring a socket-wide limit does to the socket. */
export const limitHooks: {
  /** Whether a call in `mode`'s direction (IDLE: either) is waiting. */
  waiting: (socket: EvSocket, mode: LimitMode) => boolean;
  /**
   * Rejects the calls waiting in `mode`'s direction (IDLE: both) with
   * `error`; no bytes are lost.
   */
  expire: (socket: EvSocket, mode: LimitMode, error: DOMException) => void;
  /** Counts a call that rejected with a TimeoutError. */
  countTimeout: (socket: EvSocket) => void;
} = { waiting: unreachable, expire: unreachable, countTimeout: unreachable };

function unreachable(): never {
  throw new Error("evthread: internal hook used before its class loaded");
}

/**
 * A pending read or send, with its own time limit and signal. It is its own
 * entry in the deadline queue (`at`, `index`, `fire`), so that a call that
 * waits costs no closure and no entry besides it; `aborted` is called when
 * its signal aborts.
 */
export interface PendingCall extends DeadlineEntry {
  /**
   * The call's time limit in ms: its timeout; or, negated, what was left of
   * its deadline when that came first; undefined for none. One field for
   * both, since every waiting call holds it (and no double: a field that
   * held Infinity would box every value in a heap number).
   */
  ms: number | undefined;
  signal: AbortSignal | undefined;
  /** The listener on `signal`, while one is added. */
  onAbort: (() => void) | undefined;
  /** Its signal aborted. */
  aborted(): void;
  /** Rejects the call (its promise marked handled). */
  fail(reason: unknown): void;
}

/**
 * Works out the time limit of a new call in `mode`'s direction: its own
 * `timeout`, or what is left until its `deadline` if that comes first (sets
 * `ms`). Returns false, having rejected the call, if a
 * limit has passed already: the socket's idle timeout expired while no call
 * waited, the socket's deadline, or the call's own.
 */
export function limitCall(
  socket: EvSocket,
  limits: SocketLimits | undefined,
  call: PendingCall,
  mode: typeof READ | typeof WRITE,
  timeout: number | undefined,
  deadline: number | undefined,
): boolean {
  const refusal = limits?.refuse(mode);
  if (refusal !== undefined) {
    call.fail(refusal);
    return false;
  }
  let ms = timeout;
  if (deadline !== undefined) {
    const left = deadline - Date.now();
    if (left <= 0) {
      limitHooks.countTimeout(socket);
      call.fail(
        mode === READ
          ? deadlineError("read", false)
          : Object.assign(deadlineError("send", false), { bytesWritten: 0 }),
      );
      return false;
    }
    if (ms === undefined || left < ms) ms = -left;
  }
  call.ms = ms;
  return true;
}

/**
 * A call must wait: puts it into the deadline queue if it has a time limit,
 * and listens to its signal if it has one.
 */
export function armCall(call: PendingCall): void {
  const ms = call.ms;
  if (ms !== undefined) deadlines.add(call, ms < 0 ? -ms : ms);
  const signal = call.signal;
  if (signal !== undefined) {
    call.onAbort = () => {
      call.onAbort = undefined;
      call.aborted();
    };
    signal.addEventListener("abort", call.onAbort, { once: true });
  }
}

/** Takes a call out of the deadline queue and off its signal. */
export function forget(call: PendingCall): void {
  // A no-op unless its time limit is pending.
  deadlines.cancel(call);
  if (call.onAbort !== undefined) {
    call.signal!.removeEventListener("abort", call.onAbort);
    call.onAbort = undefined;
  }
}

/** The `TimeoutError` of a call whose own time limit passed. */
export function callTimeoutError(
  call: PendingCall,
  direction: "read" | "send",
): DOMException {
  if (call.ms! < 0) return deadlineError(direction, false);
  return timeoutError(
    `${direction === "read" ? "Read" : "Send"} timed out after ${call.ms} ms`,
  );
}

/** The `TimeoutError` of a call whose deadline (its own, or the socket's) passed. */
export function deadlineError(
  direction: "read" | "send",
  socketWide: boolean,
): DOMException {
  const what = direction === "read" ? "Read" : "Send";
  return timeoutError(
    socketWide
      ? `The socket's ${direction} deadline has passed`
      : `${what} deadline has passed`,
  );
}

/** What a call on a closed socket rejects with. */
export function closedError(): Error {
  return new Deno.errors.BadResource("The socket is closed");
}

function idleError(ms: number): DOMException {
  return timeoutError(`The socket was idle for ${ms} ms`);
}

/** One socket-wide limit: its state, and its entry in the deadline queue. */
class Limit implements DeadlineEntry {
  at = 0;
  index = -1;
  /** READ / WRITE: the deadline, epoch ms; IDLE: the timeout, ms. Infinity: none. */
  value = Infinity;
  /**
   * READ / WRITE: the deadline's entry fired, which may be up to 1 ms before
   * `Date.now()` reaches it, so that no call slips in after the pending ones
   * expired. IDLE: it expired while no call waited; the next call rejects.
   */
  fired = false;
  readonly owner: SocketLimits;
  readonly mode: LimitMode;

  constructor(owner: SocketLimits, mode: LimitMode) {
    this.owner = owner;
    this.mode = mode;
  }

  fire(): void {
    this.owner.expire(this);
  }
}

/**
 * A socket's idle timeout and socket-wide deadlines. The socket makes it on
 * the first `setIdleTimeout` or `setDeadline` (or `setReadDeadline`,
 * `setWriteDeadline`): most sockets use neither, and spend no memory on
 * them. Each limit is made when first set.
 */
export class SocketLimits {
  readonly #socket: EvSocket;
  #read: Limit | undefined = undefined;
  #write: Limit | undefined = undefined;
  #idle: Limit | undefined = undefined;
  /** When bytes last moved, `performance.now()`; for the idle timeout. */
  #lastActivity = 0;

  constructor(socket: EvSocket) {
    this.#socket = socket;
  }

  /**
   * Sets one limit, pending calls included: READ / WRITE, the deadline in
   * epoch ms; IDLE, the timeout in ms; Infinity removes it. A deadline
   * already past expires the pending calls at once.
   */
  arm(mode: LimitMode, value: number): void {
    const limit = mode === READ
      ? this.#read ??= new Limit(this, READ)
      : mode === WRITE
      ? this.#write ??= new Limit(this, WRITE)
      : this.#idle ??= new Limit(this, IDLE);
    deadlines.cancel(limit);
    limit.value = value;
    limit.fired = false;
    if (value === Infinity || this.#socket.closed) return;
    if (mode === IDLE) {
      this.#lastActivity = performance.now();
      deadlines.add(limit, value);
      return;
    }
    const left = value - Date.now();
    if (left <= 0) this.expire(limit);
    else deadlines.add(limit, left);
  }

  /** Bytes moved: the idle timeout, if any, starts over. */
  active(): void {
    if (this.#idle !== undefined && this.#idle.value !== Infinity) {
      this.#lastActivity = performance.now();
    }
  }

  /**
   * Whether no socket-wide limit can refuse a call in `mode`'s direction:
   * the idle timeout has not expired unseen, and no deadline is set.
   */
  clear(mode: typeof READ | typeof WRITE): boolean {
    const deadline = mode === READ ? this.#read : this.#write;
    return (this.#idle === undefined || !this.#idle.fired) &&
      (deadline === undefined || deadline.value === Infinity);
  }

  /**
   * Why a new call in `mode`'s direction must reject at once, if it must:
   * the idle timeout expired while no call waited (this call takes that
   * error, the next one proceeds), or the socket's deadline has passed.
   */
  refuse(mode: typeof READ | typeof WRITE): DOMException | undefined {
    const idle = this.#idle;
    if (idle !== undefined && idle.fired) {
      idle.fired = false;
      return idleError(idle.value);
    }
    const limit = mode === READ ? this.#read : this.#write;
    if (
      limit === undefined || limit.value === Infinity ||
      (!limit.fired && Date.now() < limit.value)
    ) {
      return undefined;
    }
    limitHooks.countTimeout(this.#socket);
    return mode === READ
      ? deadlineError("read", true)
      : Object.assign(deadlineError("send", true), { bytesWritten: 0 });
  }

  /** The socket closed: no limit fires any more. */
  cancel(): void {
    if (this.#read !== undefined) deadlines.cancel(this.#read);
    if (this.#write !== undefined) deadlines.cancel(this.#write);
    if (this.#idle !== undefined) deadlines.cancel(this.#idle);
  }

  /** A limit's entry fired (or a deadline was set in the past). */
  expire(limit: Limit): void {
    const socket = this.#socket;
    if (limit.mode !== IDLE) {
      limit.fired = true;
      if (socket.closed || !limitHooks.waiting(socket, limit.mode)) return;
      limitHooks.countTimeout(socket);
      limitHooks.expire(
        socket,
        limit.mode,
        deadlineError(limit.mode === READ ? "read" : "send", true),
      );
      return;
    }
    const ms = limit.value;
    if (ms === Infinity || socket.closed) return;
    const quiet = performance.now() - this.#lastActivity;
    if (quiet + 1 < ms) {
      deadlines.add(limit, ms - quiet);
      return;
    }
    if (limitHooks.waiting(socket, IDLE)) {
      limitHooks.expire(socket, IDLE, idleError(ms));
      limitHooks.countTimeout(socket);
    } else {
      limit.fired = true;
    }
    this.#lastActivity = performance.now();
    deadlines.add(limit, ms);
  }
}
