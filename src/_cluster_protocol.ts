// Copyright 2026 the @corothread/evthread authors. MIT license.
// The private message protocol between an EvCluster (main side) and
// evClusterWorker (worker side). Every message carries `tag: TAG`; the
// worker starts the exchange, so no message is sent before its listener is.
//
//   worker -> main: hello
//   main -> worker: init { index, count, data }
//   worker -> main: ready { report } | failed { error }
//   main -> worker: stats { id }         worker -> main: stats { id, report }
//   main -> worker: shutdown { grace }
//   worker -> main: ended { report }     (then the worker closes itself)

import type { EvLoopState, EvLoopStats } from "./ev_loop.ts";

/** The prefix of the name a cluster gives its workers. */
export const NAME_PREFIX = "evcluster ";
/** Marks the cluster's own messages among any others on the channel. */
export const TAG = "@corothread/evthread:cluster";

/** A loop's counters and state, as a worker reports them. */
export interface Report {
  stats: EvLoopStats;
  state: EvLoopState;
}

/** An error as it crosses the channel. */
export interface WireError {
  name: string;
  message: string;
  stack: string | undefined;
  /** Whether it was a `DOMException` (its name is then its kind). */
  dom: boolean;
}

/** A message from the main thread to a worker. */
export type ToWorker =
  | {
    tag: typeof TAG;
    type: "init";
    index: number;
    count: number;
    data: unknown;
  }
  | { tag: typeof TAG; type: "stats"; id: number }
  | { tag: typeof TAG; type: "shutdown"; grace: number };

/** A message from a worker to the main thread. */
export type FromWorker =
  | { tag: typeof TAG; type: "hello" }
  | { tag: typeof TAG; type: "ready"; report: Report }
  | { tag: typeof TAG; type: "failed"; error: WireError }
  | { tag: typeof TAG; type: "stats"; id: number; report: Report }
  | { tag: typeof TAG; type: "ended"; report: Report };

/** The message, if it is one of the cluster's. */
export function ours<T extends { tag: typeof TAG }>(
  data: unknown,
): T | undefined {
  return typeof data === "object" && data !== null &&
      (data as { tag?: unknown }).tag === TAG
    ? data as T
    : undefined;
}

export function toWire(error: unknown): WireError {
  if (error instanceof Error || error instanceof DOMException) {
    return {
      name: error.name,
      message: error.message,
      stack: typeof error.stack === "string" ? error.stack : undefined,
      dom: error instanceof DOMException,
    };
  }
  return {
    name: "Error",
    message: String(error),
    stack: undefined,
    dom: false,
  };
}

const STANDARD_ERRORS: Record<string, ErrorConstructor> = {
  Error,
  EvalError,
  RangeError,
  ReferenceError,
  SyntaxError,
  TypeError,
  URIError,
};

/**
 * Rebuilds an error from the worker: the same class for the standard
 * errors, `Deno.errors` and `DOMException`s; an `Error` of the same name
 * otherwise. The stack is the worker's.
 */
export function fromWire(wire: WireError): Error {
  let error: Error;
  if (wire.dom) {
    error = new DOMException(wire.message, wire.name);
  } else {
    const ctor = STANDARD_ERRORS[wire.name] ??
      (Deno.errors as unknown as Record<string, ErrorConstructor | undefined>)[
        wire.name
      ];
    error = typeof ctor === "function"
      ? new ctor(wire.message)
      : Object.assign(new Error(wire.message), { name: wire.name });
  }
  if (wire.stack !== undefined) {
    Object.defineProperty(error, "stack", {
      value: wire.stack,
      writable: true,
      configurable: true,
    });
  }
  return error;
}
