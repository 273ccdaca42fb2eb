// Copyright 2026 the @corothread/evthread authors. MIT license.
// The limits of a WebSocket's calls and options: a call's timeout,
// deadline and signal read from its options, a promise bounded by them,
// and the defaults and checks of `upgradeWebSocket()`'s numeric options.

import { bound } from "./_deadline_queue.ts";
import {
  checkDeadline,
  checkSignal,
  checkTimeout,
  timeoutError,
} from "./_validate.ts";
import type { EvCallOptions } from "./ev_socket.ts";

/** The default of `maxMessageBytes`: 16 MiB. */
export const DEFAULT_MAX_MESSAGE_BYTES = 16_777_216;
/** The default of `idleTimeout`, in seconds. */
export const DEFAULT_IDLE_TIMEOUT = 30;
/** The default of `closeTimeout`, in milliseconds. */
export const DEFAULT_CLOSE_TIMEOUT = 5000;

export function noop(): void {}

export function isTimeout(error: unknown): boolean {
  return error instanceof DOMException && error.name === "TimeoutError";
}

/** A call's time limit and signal, read from its options. */
export interface Limit {
  /** When the call must be done (`performance.now()` ms), if ever. */
  until: number | undefined;
  /** The limit as given, in ms, for the error message. */
  ms: number;
  /** Whether the limit is the call's deadline rather than its timeout. */
  byDeadline: boolean;
  signal: AbortSignal | undefined;
}

/** @throws {TypeError} / {RangeError} for bad options. */
export function limitOf(options: EvCallOptions | undefined): Limit {
  let ms = checkTimeout(options?.timeout);
  const signal = checkSignal(options?.signal);
  const deadline = checkDeadline(options?.deadline);
  let byDeadline = false;
  if (deadline !== undefined) {
    const left = Math.max(0, deadline - Date.now());
    if (ms === undefined || left < ms) {
      ms = left;
      byDeadline = true;
    }
  }
  return {
    until: ms === undefined ? undefined : performance.now() + ms,
    ms: ms ?? Infinity,
    byDeadline,
    signal,
  };
}

export function limitError(limit: Limit, what: string): DOMException {
  return timeoutError(
    limit.byDeadline
      ? `${what} deadline has passed`
      : `${what} timed out after ${limit.ms} ms`,
  );
}

/**
 * Settles as `promise`, or rejects when `limit` runs out (a `TimeoutError`)
 * or its signal aborts (the reason). `promise` goes on either way.
 */
export function bounded<T>(
  promise: Promise<T>,
  limit: Limit,
  what: string,
): Promise<T> {
  const ms = limit.until === undefined
    ? Infinity
    : Math.max(0, limit.until - performance.now());
  return bound(promise, ms, limit.signal, () => limitError(limit, what));
}

/** `0` for no idle timeout, else the timeout in milliseconds. */
export function idleMsOf(value: unknown): number {
  if (value === undefined) return DEFAULT_IDLE_TIMEOUT * 1000;
  if (typeof value !== "number") {
    throw new TypeError(
      `'idleTimeout' must be a number of seconds: received ${
        typeof value === "string" ? JSON.stringify(value) : String(value)
      }`,
    );
  }
  if (!(value >= 0) || !Number.isFinite(value)) {
    throw new RangeError(
      `'idleTimeout' must be a non-negative, finite number of seconds: received ${value}`,
    );
  }
  return value * 1000;
}
