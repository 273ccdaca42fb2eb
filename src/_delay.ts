// Copyright 2026 the @corothread/evthread authors. MIT license.

// An abortable sleep shaped like @std/async's `delay`: rejects with
// `signal.reason` when aborted, clears its timer either way.

/** Options for {@linkcode delay}. */
export interface DelayOptions {
  /** Aborting it rejects the delay with `signal.reason`. */
  signal?: AbortSignal | undefined;
  /** Whether the timer keeps the process alive (default `true`). */
  persistent?: boolean;
}

/** Resolves after `ms` milliseconds (never, for `Infinity`) unless aborted. */
export function delay(ms: number, options: DelayOptions = {}): Promise<void> {
  const { signal, persistent = true } = options;
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise<void>((resolve, reject) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const onAbort = () => {
      if (timer !== undefined) clearTimeout(timer);
      reject(signal!.reason);
    };
    if (ms !== Infinity) {
      // setTimeout takes at most 2^31-1 ms; longer waits are never reached
      // in practice, so clamp rather than overflow into an immediate fire.
      timer = setTimeout(() => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      }, Math.min(ms, 2 ** 31 - 1));
      if (!persistent) Deno.unrefTimer(timer);
    }
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
