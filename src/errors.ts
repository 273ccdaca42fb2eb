// Copyright 2026 the @corothread/evthread authors. MIT license.

/**
 * Thrown by {@linkcode EvLoop.spawn} when every slot of the task pool is in
 * use (the seed's `EVTHREAD_init` returning 0). Child tasks started with
 * {@linkcode EvThread.spawn} share their parent's slot and never throw it.
 *
 * @example Catching a full pool
 * ```ts
 * import { EvLoop, PoolFullError } from "@corothread/evthread";
 * import { assertInstanceOf, assertThrows } from "@std/assert";
 *
 * await using loop = new EvLoop({ capacity: 1 });
 * const first = loop.spawn((thread) => thread.delay(10));
 * const error = assertThrows(() => loop.spawn(() => {}));
 * assertInstanceOf(error, PoolFullError);
 * await first.result;
 * ```
 */
export class PoolFullError extends Error {
  /** The capacity of the pool that was full. */
  readonly capacity: number;

  /**
   * Constructs a new instance.
   *
   * @param capacity The capacity of the full pool.
   */
  constructor(capacity: number) {
    super(`The task pool is full: all ${capacity} slots are in use`);
    this.name = "PoolFullError";
    this.capacity = capacity;
  }
}

/**
 * Thrown by {@linkcode EvSocket.readLine} and {@linkcode EvSocket.readUntil}
 * when no delimiter arrives within `maxLength` bytes. The bytes stay buffered
 * in the socket: a later call (with a larger limit, or `recv`) gets them.
 *
 * @example Checking the limit
 * ```ts
 * import { LimitExceededError } from "@corothread/evthread";
 * import { assertEquals } from "@std/assert";
 *
 * const error = new LimitExceededError(8192);
 * assertEquals(error.name, "LimitExceededError");
 * assertEquals(error.limit, 8192);
 * ```
 */
export class LimitExceededError extends Error {
  /** The limit in bytes that was exceeded. */
  readonly limit: number;

  /**
   * Constructs a new instance.
   *
   * @param limit The limit in bytes.
   */
  constructor(limit: number) {
    super(`No delimiter found within the limit of ${limit} bytes`);
    this.name = "LimitExceededError";
    this.limit = limit;
  }
}

/**
 * Reported for a connection whose PROXY protocol header (HAProxy's, version 1
 * or 2) is malformed, is missing where one is required, or was sent by a peer
 * that is not a trusted proxy. The message says what was expected and what was
 * received.
 *
 * @example Telling it apart
 * ```ts
 * import { ProxyProtocolError } from "@corothread/evthread";
 * import { assertEquals, assertInstanceOf } from "@std/assert";
 *
 * const error = new ProxyProtocolError(
 *   'Invalid PROXY v1 header: expected a source port number in 0-65535 without leading zeros: received "70000"',
 * );
 * assertInstanceOf(error, Error);
 * assertEquals(error.name, "ProxyProtocolError");
 * ```
 */
export class ProxyProtocolError extends Error {
  /**
   * Constructs a new instance.
   *
   * @param message What was expected and what was received.
   * @param options The error's `cause`, if any.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ProxyProtocolError";
  }
}

/**
 * Reported to the loop's `onError` when a task's end or abort cut short
 * sends that still had bytes to write.
 */
export class UnsentDataError extends Error {
  /** The method whose bytes were cut short. */
  readonly method: "send" | "closeWrite" | "writable";
  /** Bytes that were never written. */
  readonly bytesUnsent: number;
  /** How many sends were cut short. */
  readonly sends: number;
  /** The socket's local address. */
  readonly localAddr: Deno.Addr;
  /** The socket's remote address. */
  readonly remoteAddr: Deno.Addr;

  /**
   * Constructs a new instance.
   *
   * @param info What was cut short, where, and why.
   */
  constructor(info: {
    method: "send" | "closeWrite" | "writable";
    bytesUnsent: number;
    sends: number;
    localAddr: Deno.Addr;
    remoteAddr: Deno.Addr;
    cause: unknown;
  }) {
    super(`${info.method} cut short: ${info.bytesUnsent} bytes unsent`, {
      cause: info.cause,
    });
    this.name = "UnsentDataError";
    this.method = info.method;
    this.bytesUnsent = info.bytesUnsent;
    this.sends = info.sends;
    this.localAddr = info.localAddr;
    this.remoteAddr = info.remoteAddr;
  }
}
