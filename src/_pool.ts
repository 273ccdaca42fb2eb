// Copyright 2026 the @corothread/evthread authors. MIT license.
// The task pool: a counting semaphore with a hard capacity, the seed's STACKS.

interface Waiter {
  resolve: () => void;
  reject: (reason: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

/**
 * A bounded set of slots. `tryAcquire` never waits; `acquire` waits in FIFO
 * order (an acceptor holding a connection while the pool is full).
 */
export class TaskPool {
  readonly capacity: number;
  #used = 0;
  #peak = 0;
  #acquirers: Waiter[] = [];

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  /** Slots in use. */
  get used(): number {
    return this.#used;
  }

  /** The most slots ever in use at once. */
  get peak(): number {
    return this.#peak;
  }

  /** Takes a slot if one is free. */
  tryAcquire(): boolean {
    if (this.#used >= this.capacity || this.#acquirers.length > 0) return false;
    this.#take();
    return true;
  }

  /** Takes a slot, waiting in line for one. Rejects with `signal.reason`. */
  acquire(signal?: AbortSignal): Promise<void> {
    if (this.tryAcquire()) return Promise.resolve();
    return this.#wait(this.#acquirers, signal);
  }

  /** Gives a slot back; hands it to the first waiter, if any. */
  release(): void {
    if (this.#used <= 0) throw new Error("TaskPool released more than taken");
    this.#used--;
    const next = this.#acquirers.shift();
    if (next !== undefined) {
      this.#take();
      settle(next);
    }
  }

  #take(): void {
    this.#used++;
    if (this.#used > this.#peak) this.#peak = this.#used;
  }

  #wait(queue: Waiter[], signal: AbortSignal | undefined): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, signal, onAbort: undefined };
      if (signal !== undefined) {
        waiter.onAbort = () => {
          const i = queue.indexOf(waiter);
          if (i >= 0) queue.splice(i, 1);
          reject(signal.reason);
        };
        signal.addEventListener("abort", waiter.onAbort, { once: true });
      }
      queue.push(waiter);
    });
  }
}

function settle(waiter: Waiter): void {
  if (waiter.onAbort !== undefined) {
    waiter.signal!.removeEventListener("abort", waiter.onAbort);
  }
  waiter.resolve();
}
