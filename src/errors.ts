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
 * when no delimiter arrives within `maxLength` bytes (`readLine`'s message
 * says the line is too long). The bytes stay buffered in the socket: a later
 * call (with a larger limit, or `recv`) gets them.
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
   * @param message What was not found within the limit; by default
   * `No delimiter found within the limit of ${limit} bytes`.
   */
  constructor(limit: number, message?: string) {
    super(message ?? `No delimiter found within the limit of ${limit} bytes`);
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
 * What the pending reads of a connection task reject with when the loop
 * evicts it: its pool was full, a client waited for a slot, no idle
 * keep-alive connection could be closed instead, and the task was still in
 * its handshake ({@linkcode EvThread.handshaking}), waiting for its peer.
 * The sockets stay open: the procedure may write a short goodbye (the HTTP
 * server writes a 408) and return. A task that has not ended 1 second
 * later is aborted with this error as its reason. It is never reported to
 * the loop's `onError`.
 *
 * @example Telling it apart
 * ```ts
 * import { EvictedError } from "@corothread/evthread";
 * import { assertEquals, assertInstanceOf } from "@std/assert";
 *
 * const error = new EvictedError("Evicted to free a slot");
 * assertInstanceOf(error, Error);
 * assertEquals(error.name, "EvictedError");
 * ```
 */
export class EvictedError extends Error {
  /**
   * Constructs a new instance.
   *
   * @param message Why the task was evicted.
   */
  constructor(message: string) {
    super(message);
    this.name = "EvictedError";
  }
}

/**
 * Reported for a socket that was closed, or whose owning task was aborted
 * (or ended), while bytes of its sends were still queued: those bytes were
 * never written, and the peer may be left waiting for them. A send does not
 * have to be awaited to be reported: a procedure that calls
 * `socket.send(bytes)` without `await` and returns at once is the usual
 * cause. A socket made with `new EvSocket(conn)`, which no task owns,
 * reports nothing; a send cut short by the peer (a reset, a write error)
 * is not reported either: the caller's promise rejects with that error.
 *
 * Its `stack` holds only the message (the library's frames would say
 * nothing), unless the owning task records where sends are called (debug
 * mode): then it shows where the first send cut short was called.
 *
 * @example The fields of a report
 * ```ts
 * import { UnsentDataError } from "@corothread/evthread";
 * import { assertEquals } from "@std/assert";
 *
 * const error = new UnsentDataError("send", {
 *   bytesUnsent: 1_000_000,
 *   sends: 1,
 *   localAddr: { transport: "tcp", hostname: "127.0.0.1", port: 8000 },
 *   remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 40123 },
 *   cause: new DOMException("The task ended", "AbortError"),
 * });
 * assertEquals(error.name, "UnsentDataError");
 * assertEquals(
 *   error.message,
 *   "send cut short: 1000000 bytes unsent to 127.0.0.1:40123 from 127.0.0.1:8000 (AbortError: The task ended)",
 * );
 * assertEquals(error.sends, 1);
 * ```
 */
export class UnsentDataError extends Error {
  /**
   * The public method of the first queued call cut short: `"send"`,
   * `"closeWrite"` (the end of stream was never sent), or `"writable"` (a
   * chunk written to {@linkcode EvSocket.writable}).
   */
  readonly method: "send" | "closeWrite" | "writable";
  /** Bytes of the queued sends that were not written, all sends together. */
  readonly bytesUnsent: number;
  /** How many queued calls (sends, and a `closeWrite`) were cut short. */
  readonly sends: number;
  /** The socket's local address. */
  readonly localAddr: Deno.Addr;
  /** The address the bytes were for. */
  readonly remoteAddr: Deno.Addr;

  /**
   * Constructs a new instance.
   *
   * @param method The public method of the first call cut short.
   * @param details What was cut short, on which connection, and why
   * (`cause`: the reason the socket was aborted or closed).
   */
  constructor(
    method: "send" | "closeWrite" | "writable",
    details: {
      bytesUnsent: number;
      sends: number;
      localAddr: Deno.Addr;
      remoteAddr: Deno.Addr;
      cause?: unknown;
    },
  ) {
    const { bytesUnsent, sends, localAddr, remoteAddr, cause } = details;
    super(
      `${method} cut short: ${bytesUnsent} bytes unsent to ${
        formatAddr(remoteAddr)
      } from ${formatAddr(localAddr)}${
        cause === undefined ? "" : ` (${describe(cause)})`
      }`,
      { cause },
    );
    this.name = "UnsentDataError";
    this.method = method;
    this.bytesUnsent = bytesUnsent;
    this.sends = sends;
    this.localAddr = localAddr;
    this.remoteAddr = remoteAddr;
  }
}

/** `host:port` (an IPv6 host in brackets), or a Unix socket's path. */
function formatAddr(addr: Deno.Addr): string {
  switch (addr.transport) {
    case "tcp":
    case "udp":
      return addr.hostname.includes(":")
        ? `[${addr.hostname}]:${addr.port}`
        : `${addr.hostname}:${addr.port}`;
    case "unix":
    case "unixpacket":
      // A Unix client socket has no name: Deno gives its path as null.
      return (addr.path as string | null) ?? "(unnamed)";
    default:
      return JSON.stringify(addr);
  }
}

/** `Name: message` of an error, or the value as a string. */
function describe(reason: unknown): string {
  if (reason instanceof Error || reason instanceof DOMException) {
    return reason.message === ""
      ? reason.name
      : `${reason.name}: ${reason.message}`;
  }
  return String(reason);
}
