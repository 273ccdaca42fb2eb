// Copyright 2026 the @corothread/evthread authors. MIT license.
// One timer for many deadlines. Per-call timeouts on sockets are armed and
// cancelled on every recv/send; a setTimeout (or AbortSignal.timeout) per call
// costs a timer op each. Here a call costs one heap insert and one removal,
// and a single unref'd timer is armed for the earliest deadline. Deadlines
// added while JavaScript runs are collected and put into the heap together at
// the end of that run of microtasks, with one clock read for all of them (a
// clock read, `performance.now()`, is an op that costs about 0.15 us); one
// cancelled before then never touches the heap. A deadline thus counts from
// a moment at or after its `add()`: never early, late by at most what the
// rest of that run of JavaScript took.

/**
 * A scheduled deadline. Keep it to cancel the deadline.
 *
 * {@linkcode DeadlineQueue.schedule} makes one around a callback. An object
 * that lives as long as its deadline anyway (a socket's pending call, say)
 * can be the entry itself, with `fire` as a method of its class: then
 * {@linkcode DeadlineQueue.add} schedules it, and the deadline costs no
 * closure and no entry of its own.
 */
export interface DeadlineEntry {
  /** When it fires, in `performance.now()` milliseconds. */
  at: number;
  /**
   * Called once, as a method of the entry, when the deadline passes, unless
   * cancelled first.
   */
  fire(): void;
  /**
   * Position in the heap; -1 while not pending (fired or cancelled); below
   * -1 while waiting to enter the heap (-2 - its place in the batch).
   */
  index: number;
}

/**
 * A binary min-heap of deadlines with a single timer, armed for the earliest
 * deadline. The timer is unref'd so it never keeps a process alive on its
 * own: the socket operation that a deadline guards does that.
 */
export class DeadlineQueue {
  #heap: DeadlineEntry[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAt = Infinity;
  /** Entries added since the last flush, `at` holding their `ms`. */
  #batch: DeadlineEntry[] = [];
  /** Entries of `#batch` not cancelled since. */
  #batched = 0;

  /** Number of pending deadlines. */
  get size(): number {
    return this.#heap.length + this.#batched;
  }

  /** Calls `fire` once after `ms` milliseconds unless cancelled. */
  schedule(ms: number, fire: () => void): DeadlineEntry {
    const entry: DeadlineEntry = { at: 0, fire, index: -1 };
    this.add(entry, ms);
    return entry;
  }

  /**
   * Schedules `entry` itself to fire after `ms` milliseconds unless
   * cancelled. It must not be pending (`index` -1); once it has fired or
   * been cancelled it can be added again.
   */
  add(entry: DeadlineEntry, ms: number): void {
    entry.at = ms;
    const batch = this.#batch;
    entry.index = -2 - batch.length;
    batch.push(entry);
    this.#batched++;
    if (batch.length === 1) queueMicrotask(this.#flush);
  }

  /** Puts the entries added since the last flush into the heap. */
  #flush = (): void => {
    // Reused from batch to batch: nothing here can add an entry.
    const batch = this.#batch;
    if (this.#batched === 0) {
      batch.length = 0;
      return;
    }
    this.#batched = 0;
    const now = performance.now();
    let earliest = Infinity;
    for (let k = 0; k < batch.length; k++) {
      const entry = batch[k]!;
      // Cancelled (-1), or added again later in the batch (another slot).
      if (entry.index !== -2 - k) continue;
      entry.at += now;
      entry.index = this.#heap.length;
      this.#heap.push(entry);
      this.#up(entry.index);
      if (entry.at < earliest) earliest = entry.at;
    }
    batch.length = 0;
    if (earliest < this.#timerAt) this.#arm(earliest);
  };

  /** Removes a pending deadline; a no-op if it already fired or was removed. */
  cancel(entry: DeadlineEntry): void {
    const i = entry.index;
    if (i < -1) {
      // Still in the batch: it never reaches the heap.
      entry.index = -1;
      this.#batched--;
      return;
    }
    if (i < 0) return;
    entry.index = -1;
    const last = this.#heap.pop()!;
    if (i < this.#heap.length) {
      this.#heap[i] = last;
      last.index = i;
      this.#down(i);
      this.#up(last.index);
    }
    // The timer stays armed even for a removed earliest entry, and even when
    // the heap is empty: it then fires early, finds nothing due, and re-arms
    // or stops. Clearing and re-arming a timer on every call would cost more
    // than the queue saves (a lone socket with per-call timeouts would pay
    // one timer per call). `settle()` clears it when its owners close.
  }

  /**
   * Clears the timer if no deadline is pending. Sockets and loops call it
   * when they close, so that an idle process (or a finished test, under
   * Deno's op sanitizer) holds no timer.
   */
  settle(): void {
    if (this.#heap.length === 0 && this.#batched === 0) this.#disarm();
  }

  #arm(at: number): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timerAt = at;
    // setTimeout takes at most 2^31-1 ms (larger fires at once); a later
    // deadline is reached by re-arming when this one fires.
    const delay = Math.min(
      Math.max(0, Math.ceil(at - performance.now())),
      2 ** 31 - 1,
    );
    this.#timer = setTimeout(this.#onTimer, delay);
    Deno.unrefTimer(this.#timer);
  }

  #disarm(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
  }

  #onTimer = (): void => {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    // Timers may fire a little early or late; treat anything due within 1 ms
    // as due so that a deadline never needs a second timer turn.
    const now = performance.now() + 1;
    const due: DeadlineEntry[] = [];
    while (this.#heap.length > 0 && this.#heap[0]!.at <= now) {
      const entry = this.#heap[0]!;
      this.cancel(entry);
      due.push(entry);
    }
    if (this.#heap.length > 0) this.#arm(this.#heap[0]!.at);
    for (const entry of due) entry.fire();
  };

  #up(i: number): void {
    const heap = this.#heap;
    const entry = heap[i]!;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = heap[p]!;
      if (parent.at <= entry.at) break;
      heap[i] = parent;
      parent.index = i;
      i = p;
    }
    heap[i] = entry;
    entry.index = i;
  }

  #down(i: number): void {
    const heap = this.#heap;
    const n = heap.length;
    const entry = heap[i]!;
    while (true) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && heap[r]!.at < heap[l]!.at ? r : l;
      const child = heap[c]!;
      if (child.at >= entry.at) break;
      heap[i] = child;
      child.index = i;
      i = c;
    }
    heap[i] = entry;
    entry.index = i;
  }
}

/** The process-wide queue that every socket and task shares. */
export const deadlines: DeadlineQueue = new DeadlineQueue();

function noop(): void {}

/**
 * Settles as `promise`, or rejects with `onTimeout()` after `ms`
 * milliseconds (`Infinity`: never) or with `signal.reason` when it aborts,
 * whichever comes first. `promise` goes on either way; its outcome is then
 * ignored (never an unhandled rejection).
 */
export function bound<T>(
  promise: Promise<T>,
  ms: number,
  signal: AbortSignal | undefined,
  onTimeout: () => unknown,
): Promise<T> {
  if (ms === Infinity && signal === undefined) return promise;
  if (signal?.aborted) {
    promise.catch(noop);
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    let entry: DeadlineEntry | undefined;
    const done = () => {
      if (entry !== undefined) {
        deadlines.cancel(entry);
        deadlines.settle();
        entry = undefined;
      }
      signal?.removeEventListener("abort", onAbort);
    };
    const onAbort = () => {
      done();
      reject(signal!.reason);
    };
    if (ms !== Infinity) {
      entry = deadlines.schedule(ms, () => {
        entry = undefined;
        done();
        reject(onTimeout());
      });
    }
    signal?.addEventListener("abort", onAbort, { once: true });
    promise.then((value) => {
      done();
      resolve(value);
    }, (error) => {
      done();
      reject(error);
    });
  });
}
