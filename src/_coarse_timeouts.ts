// Copyright 2026 the @corothread/evthread authors. MIT license.
// Coarse time limits for the HTTP server's socket calls (its header, idle,
// body and send timeouts): a call costs a few field writes, no clock read
// and no timer; one sweep every SWEEP_MS checks every connection. A limit
// never fires early and at most about 2 * SWEEP_MS late (plus whatever
// delays the event loop). EvSocket's own per-call timeouts, deadlines and
// `delay` keep their millisecond precision (the deadline queue).

import { limitHooks, READ, WRITE } from "./_socket_limits.ts";
import { taskContext } from "./_task_context.ts";
import { timeoutError } from "./_validate.ts";
import type { EvSocket } from "./ev_socket.ts";

/** How often the sweep runs, in ms. */
export const SWEEP_MS = 50;

/**
 * The coarse limit of the calls in one direction: the limit in ms (0:
 * none); the sweep count when it was armed; and, once a sweep has run
 * since, that sweep's time, which is after the call began: the limit
 * counts from there, so it never fires early.
 */
class Limit {
  ms = 0;
  tick = 0;
  from = -1;

  arm(ms: number): void {
    this.ms = ms === Infinity ? 0 : ms;
    this.tick = sweeper.tick;
    this.from = -1;
  }

  /** At a sweep: the limit if it has passed (it is then disarmed), else 0. */
  passed(now: number, tick: number): number {
    const ms = this.ms;
    if (ms === 0) return 0;
    if (this.from < 0) {
      if (tick > this.tick) this.from = now;
      return 0;
    }
    if (now - this.from < ms) return 0;
    this.ms = 0;
    return ms;
  }
}

/**
 * The coarse time limits of one socket's calls, one per direction. Arm a
 * direction before each call in it: the call then rejects with a
 * `TimeoutError` (losing no bytes, as an expired per-call timeout) if it
 * is still waiting once `ms` have passed. An armed limit whose call has
 * settled is dropped by the next sweep that finds it due; until then it
 * applies to whatever call waits in its direction, so every call made in
 * a direction while watched must arm it, or disarm it (`Infinity`) if the
 * call has a time limit of its own.
 */
export class CoarseTimeouts {
  readonly socket: EvSocket;
  readonly #read = new Limit();
  readonly #write = new Limit();
  #watched = false;

  constructor(socket: EvSocket) {
    this.socket = socket;
  }

  /** Limits the read about to be made to `ms` (Infinity: none). */
  armRead(ms: number): void {
    this.#read.arm(ms);
  }

  /** Limits the send about to be made to `ms` (Infinity: none). */
  armWrite(ms: number): void {
    this.#write.arm(ms);
  }

  /** Starts the sweeps over this socket's limits. */
  watch(): void {
    if (this.#watched) return;
    this.#watched = true;
    sweeper.add(this);
  }

  /** Stops them (the socket is done with HTTP, or closed). */
  unwatch(): void {
    if (!this.#watched) return;
    this.#watched = false;
    this.#read.ms = this.#write.ms = 0;
    sweeper.delete(this);
  }

  /** A sweep at `now` (its `tick`): expires the calls that are due. */
  check(now: number, tick: number): void {
    let ms = this.#read.passed(now, tick);
    if (ms > 0) this.#expire(READ, `Read timed out after ${ms} ms`);
    ms = this.#write.passed(now, tick);
    if (ms > 0) this.#expire(WRITE, `Send timed out after ${ms} ms`);
  }

  #expire(mode: typeof READ | typeof WRITE, message: string): void {
    const socket = this.socket;
    if (socket.closed || !limitHooks.waiting(socket, mode)) return;
    limitHooks.countTimeout(socket);
    limitHooks.expire(socket, mode, timeoutError(message));
  }
}

/** One interval timer for every watched socket; runs while there are any. */
class Sweeper {
  #watched = new Set<CoarseTimeouts>();
  #timer: ReturnType<typeof setInterval> | undefined = undefined;
  /** Sweeps so far. */
  tick = 0;

  add(entry: CoarseTimeouts): void {
    this.#watched.add(entry);
    if (this.#timer === undefined) {
      // Made outside any task's context: the timer would otherwise keep
      // the context (a server's scope) of whichever connection came first.
      this.#timer = taskContext.exit(() => setInterval(this.#sweep, SWEEP_MS));
      // The sockets' pending calls keep the process alive, not this.
      Deno.unrefTimer(this.#timer);
    }
  }

  /** Whether the interval timer is set (for tests). */
  get running(): boolean {
    return this.#timer !== undefined;
  }

  delete(entry: CoarseTimeouts): void {
    this.#watched.delete(entry);
    if (this.#watched.size === 0 && this.#timer !== undefined) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  #sweep = (): void => {
    const tick = ++this.tick;
    const now = performance.now();
    for (const entry of this.#watched) entry.check(now, tick);
  };
}

const sweeper = new Sweeper();

/** Whether the sweep's interval timer is set: some socket is watched. */
export function sweeping(): boolean {
  return sweeper.running;
}
