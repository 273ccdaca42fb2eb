// Copyright 2026 the @corothread/evthread authors. MIT license.
// Where a task's code runs: `EvLoop.shutdown()` and `HttpServer.shutdown()`
// awaited from inside one of their own tasks must not wait for that task.
// Deno carries an AsyncLocalStorage's context through every continuation of
// the code run in it. An acceptor's accept loop runs in a context made once
// for the acceptor (its "scope"), so the tasks it starts cost nothing for it
// (a context per task measured ~500 B per idle connection); `loop.spawn`
// enters the loop's context only when called from outside it (~0.5 us).
// Only shutdown reads it.

import { AsyncLocalStorage } from "node:async_hooks";

/** The scope (an `EvLoop` or an acceptor) whose task's code is running. */
export const taskContext: AsyncLocalStorage<object> = new AsyncLocalStorage();

/** Runs `fn(arg)` in the context of `scope`, unless already in it. */
export function inScope<A, R>(scope: object, fn: (arg: A) => R, arg: A): R {
  if (taskContext.getStore() === scope) return fn(arg);
  return taskContext.run(scope, fn, arg);
}

/**
 * A promise that settles as `source` does and calls `onAwait` the first
 * time it is awaited (or `then` is called on it), so that a shutdown knows
 * how many of its own tasks wait for it. A promise nobody awaits (a
 * shutdown started from inside a task that then returns) is not counted.
 */
export function awaitedPromise(
  source: Promise<void>,
  onAwait: () => void,
): Promise<void> {
  let counted = false;
  // `await` calls `then` on a promise whose constructor is not `Promise`.
  class Awaited extends Promise<void> {
    static override get [Symbol.species](): PromiseConstructor {
      return Promise;
    }
    override then<A = void, B = never>(
      onFulfilled?: ((value: void) => A | PromiseLike<A>) | null,
      onRejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
    ): Promise<A | B> {
      if (!counted) {
        counted = true;
        onAwait();
      }
      return super.then(onFulfilled, onRejected);
    }
  }
  return new Awaited((resolve, reject) => source.then(resolve, reject));
}

/**
 * The callers that await a shutdown from inside the tasks it waits for: how
 * many there are, and the promise they get, which resolves at `release()`
 * (once the other tasks have ended) rather than when the shutdown is done.
 */
export class InsideCallers {
  /** How many await it: the shutdown's waits leave that many tasks out. */
  count = 0;
  #released = false;
  #ended: PromiseWithResolvers<void> | undefined;

  /** The promise for one more caller; `onCounted` runs once it is awaited. */
  wait(onCounted: () => void): Promise<void> {
    const ended = this.#released
      ? Promise.resolve()
      : (this.#ended ??= Promise.withResolvers<void>()).promise;
    return awaitedPromise(ended, () => {
      this.count++;
      onCounted();
    });
  }

  /** Lets every caller resume, now and later; the waits count them again. */
  release(): void {
    this.#released = true;
    this.count = 0;
    this.#ended?.resolve();
  }
}
