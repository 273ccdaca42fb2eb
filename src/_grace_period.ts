// Copyright 2026 the @corothread/evthread authors. MIT license.

import { delay } from "./_delay.ts";
import { checkGrace } from "./_validate.ts";

/**
 * A shutdown's grace period: waits for `promise` at most `ms` milliseconds,
 * and can be cut short by a later call with a shorter grace (a second
 * Ctrl-C). `end()` clears its timers.
 */
export class GracePeriod {
  #cut = new AbortController();
  #run: Promise<void> | undefined;

  /** Whether {@linkcode GracePeriod.start} has been called. */
  get started(): boolean {
    return this.#run !== undefined;
  }

  /**
   * Runs `shutdown(grace)` once, with the `grace` option (`fallback` when
   * absent); a later call returns the same promise and, if its grace is
   * shorter, cuts the period short. A bad grace rejects without effect.
   */
  start(
    options: unknown,
    fallback: number,
    shutdown: (grace: number) => Promise<void>,
  ): Promise<void> {
    let grace: number;
    try {
      grace = checkGrace(options, fallback);
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.#run === undefined) this.#run = shutdown(grace);
    else this.shorten(grace);
    return this.#run;
  }

  /** Resolves when `promise` does, `ms` pass, or the period is cut short. */
  async wait(promise: Promise<void>, ms: number): Promise<void> {
    const cut = this.#cut.signal;
    if (ms <= 0 || cut.aborted) return;
    const timer = new AbortController();
    const stop = AbortSignal.any([timer.signal, cut]);
    try {
      await Promise.race([
        promise,
        delay(ms, { signal: stop }).catch(() => {}),
      ]);
    } finally {
      timer.abort();
    }
  }

  /** Ends the period `ms` milliseconds from now, if that is sooner. */
  shorten(ms: number): void {
    const cut = this.#cut;
    if (cut.signal.aborted || ms === Infinity) return;
    if (ms <= 0) cut.abort();
    else delay(ms, { signal: cut.signal }).then(() => cut.abort(), () => {});
  }

  /** Ends the period now and clears its timers. */
  end(): void {
    this.#cut.abort();
  }
}
