// Copyright 2026 the @corothread/evthread authors. MIT license.
// A socket's write queue: its sends and half-close in call order, the
// staging copies of callers' bytes, what a caller that stops waiting leaves
// queued, and what an abort or close cut short. It does no I/O: the socket
// writes `chunk(head)` and reports the count with `advance`.

import { buffers } from "./_buffer_pool.ts";
import { forget, type PendingCall } from "./_socket_limits.ts";
import { UnsentDataError } from "./errors.ts";
import type { EvSocket } from "./ev_socket.ts";

/** Most bytes copied per write for a send that may be abandoned. */
export const COPY_CHUNK = 262_144;

/** The public method that queued a write. */
export type WriteMethod = "send" | "closeWrite" | "writable";

/** Frames of the socket's own code, left out of a debug stack. */
const OWN_FRAMES = new URL("./ev_socket.ts", import.meta.url).href + ":";

function noop(): void {}

function unreachable(): never {
  throw new Error("evthread: internal hook used before its class loaded");
}

/** What ends the wait on a send; set by EvSocket. */
export const writeHooks: {
  /** Its time limit passed. */
  expire: (socket: EvSocket, req: WriteRequest) => void;
  /** Its caller stopped waiting (its signal aborted). */
  detach: (socket: EvSocket, req: WriteRequest, reason: unknown) => void;
} = { expire: unreachable, detach: unreachable };

/**
 * A queued send or `closeWrite`, and its promise; `resolve` is undefined
 * once its caller stopped waiting. With a timeout or a deadline it is its
 * own entry in the shared deadline queue.
 */
export class WriteRequest implements PendingCall {
  readonly socket: EvSocket;
  /** The bytes to write; `undefined` marks a `closeWrite`. */
  bytes: Uint8Array | undefined;
  offset = 0;
  /** Whether `bytes` is the socket's own copy rather than the caller's. */
  owned: boolean;
  readonly method: WriteMethod;
  resolve: (() => void) | undefined = undefined;
  reject: (reason: unknown) => void = noop;
  /** What the caller got. */
  readonly promise: Promise<void>;
  ms: number | undefined = undefined;
  at = 0;
  index = -1;
  signal: AbortSignal | undefined = undefined;
  onAbort: (() => void) | undefined = undefined;
  /** The call queued after it. */
  next: WriteRequest | undefined = undefined;
  /** Where it was called, when the socket's host is in debug mode. */
  stack: string | undefined = undefined;

  constructor(
    socket: EvSocket,
    bytes: Uint8Array | undefined,
    owned: boolean,
    method: WriteMethod,
  ) {
    this.socket = socket;
    this.bytes = bytes;
    this.owned = owned;
    this.method = method;
    this.promise = new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  /**
   * Rejects the call, its promise marked handled first (see
   * `ReadRequest.fail`), and stops waiting on it.
   */
  fail(reason: unknown): void {
    this.resolve = undefined;
    this.promise.catch(noop);
    this.reject(reason);
  }

  /** Its time limit passed. */
  fire(): void {
    writeHooks.expire(this.socket, this);
  }

  /** Its signal aborted: its caller stops waiting; the bytes stay queued. */
  aborted(): void {
    writeHooks.detach(this.socket, this, this.signal!.reason);
  }
}

/**
 * The calls of a socket's write side, first to last (a linked list: most
 * sockets queue one send at a time and then none, and keep no array for it),
 * and the state that outlives them.
 */
export class WriteQueue {
  /** The call being written, or undefined when none is queued. */
  head: WriteRequest | undefined = undefined;
  #tail: WriteRequest | undefined = undefined;
  /**
   * Where a caller's bytes are copied before being written: a pooled 16 KiB
   * buffer, or a larger one for bulk sends; given back when the queue
   * empties.
   */
  #stage: Uint8Array | undefined = undefined;
  /** Why a write failed; every later send rejects with it. */
  error: unknown = undefined;
  /** A `closeWrite` was queued: later sends reject. */
  ended = false;
  /** For `drained()`: made when first asked for. */
  #drain: PromiseWithResolvers<void> | undefined = undefined;

  /** Whether a call still has bytes (or the end of stream) to write. */
  get pending(): boolean {
    return this.head !== undefined;
  }

  /** Whether a caller still waits on a queued call. */
  get waiting(): boolean {
    for (let req = this.head; req !== undefined; req = req.next) {
      if (req.resolve !== undefined) return true;
    }
    return false;
  }

  push(req: WriteRequest): void {
    if (this.#tail === undefined) this.head = req;
    else this.#tail.next = req;
    this.#tail = req;
  }

  /**
   * The bytes the head's next write takes. The caller may stop waiting (a
   * timeout, a signal, an idle timeout or a deadline, even one set after
   * the call began) and reuse its buffer while this write is still in
   * flight: Deno's write reads the buffer when the socket becomes
   * writable, not at the call. So a caller's bytes are written from copies,
   * a piece at a time, through one staging buffer (writes go one at a time,
   * so the next copy is made only once the kernel has taken the last).
   * Measured, this is no slower than writing the caller's buffer in place
   * (bench/socket_bench.ts). Bytes the socket owns are written as they are.
   */
  chunk(req: WriteRequest): Uint8Array {
    const bytes = req.bytes!;
    if (req.owned) {
      return req.offset === 0 ? bytes : bytes.subarray(req.offset);
    }
    const offset = req.offset;
    const size = bytes.byteLength;
    const end = size - offset > COPY_CHUNK ? offset + COPY_CHUNK : size;
    const length = end - offset;
    let stage = this.#stage;
    if (stage === undefined || stage.byteLength < length) {
      if (stage !== undefined) buffers.put(stage);
      stage = this.#stage = buffers.getAny(length);
    }
    // No view of the caller's bytes when all of them are copied at once.
    stage.set(
      offset === 0 && end === size ? bytes : bytes.subarray(offset, end),
    );
    return length === stage.byteLength ? stage : stage.subarray(0, length);
  }

  /**
   * The head's write took `n` bytes (a timeout may have swapped in a copy
   * of the rest at offset 0: the write in flight started at that copy's
   * first byte either way). Returns whether bytes of it remain.
   */
  advance(req: WriteRequest, n: number): boolean {
    req.offset += n;
    return req.offset < req.bytes!.byteLength;
  }

  /** Takes the head, which is done, off the queue and resolves it. */
  shift(): void {
    const req = this.head!;
    this.head = req.next;
    if (this.head === undefined) this.#tail = undefined;
    req.next = undefined;
    forget(req);
    req.resolve?.();
  }

  /**
   * Nothing is queued, and no write is in flight: gives the staging buffer
   * back, and resolves `drained()`.
   */
  idle(): void {
    if (this.#stage !== undefined) {
      buffers.put(this.#stage);
      this.#stage = undefined;
    }
    this.#drain?.resolve();
    this.#drain = undefined;
  }

  /**
   * A caller stopped waiting on `req`: it rejects with `reason`, and its
   * unwritten bytes stay queued (copied, since the caller may now reuse its
   * buffer). A `TimeoutError` says in `bytesWritten` how far it got.
   */
  detach(req: WriteRequest, reason: unknown): void {
    if (req.resolve === undefined) return;
    forget(req);
    const bytes = req.bytes;
    const written = req.offset;
    if (bytes !== undefined) {
      if (!req.owned) {
        req.bytes = bytes.slice(written);
        req.offset = 0;
        req.owned = true;
      }
      if (reason instanceof DOMException && reason.name === "TimeoutError") {
        Object.assign(reason, { bytesWritten: written });
      }
    }
    req.fail(reason);
  }

  /**
   * Detaches every waiting call with a copy of `error` (each says its own
   * `bytesWritten`); their unwritten bytes stay queued.
   */
  expire(error: DOMException): void {
    let req = this.head;
    while (req !== undefined) {
      const next = req.next;
      if (req.resolve !== undefined) {
        this.detach(req, new DOMException(error.message, error.name));
      }
      req = next;
    }
  }

  /**
   * Drops every queued call, rejecting those still waited on with
   * `reason`: a write failed, the task was aborted, or the socket closed.
   * Resolves `drained()`.
   */
  clear(reason: unknown): void {
    let req = this.head;
    this.head = this.#tail = undefined;
    while (req !== undefined) {
      const next = req.next;
      req.next = undefined;
      forget(req);
      if (req.resolve !== undefined) req.fail(reason);
      req = next;
    }
    this.#drain?.resolve();
    this.#drain = undefined;
  }

  /**
   * Resolves once the queue is empty, or the socket can no longer write
   * (`clear`); never rejects.
   */
  drained(): Promise<void> {
    if (this.head === undefined) return Promise.resolve();
    this.#drain ??= Promise.withResolvers<void>();
    return this.#drain.promise;
  }

  /**
   * What clearing the queue now would cut short, as the error to report;
   * undefined if nothing is queued. Its stack is its message, or with the
   * first call's recorded stack (debug mode) where that call was made.
   */
  unsent(
    cause: unknown,
    localAddr: Deno.Addr,
    remoteAddr: Deno.Addr,
  ): UnsentDataError | undefined {
    const first = this.head;
    if (first === undefined) return undefined;
    let bytesUnsent = 0;
    let sends = 0;
    for (
      let req: WriteRequest | undefined = first;
      req !== undefined;
      req = req.next
    ) {
      if (req.bytes !== undefined) {
        bytesUnsent += req.bytes.byteLength - req.offset;
      }
      sends++;
    }
    const error = new UnsentDataError(first.method, {
      bytesUnsent,
      sends,
      localAddr,
      remoteAddr,
      cause,
    });
    let stack = `${error.name}: ${error.message}`;
    if (first.stack !== undefined) {
      const frames = first.stack.split("\n").slice(1)
        .filter((line) => !line.includes(OWN_FRAMES));
      if (frames.length > 0) stack += "\n" + frames.join("\n");
    }
    error.stack = stack;
    return error;
  }
}

/**
 * `error` with `taken` fewer bytes unsent: what the kernel took of a write
 * that was in flight when the queue was cleared. `undefined` if nothing is
 * left unsent; `finished` when that write was taken whole (one send fewer).
 */
export function lessUnsent(
  error: UnsentDataError,
  taken: number,
  finished: boolean,
): UnsentDataError | undefined {
  if (taken <= 0) return error;
  const sends = finished ? error.sends - 1 : error.sends;
  if (sends === 0) return undefined;
  const less = new UnsentDataError(error.method, {
    bytesUnsent: error.bytesUnsent - taken,
    sends,
    localAddr: error.localAddr,
    remoteAddr: error.remoteAddr,
    cause: error.cause,
  });
  const [, ...frames] = (error.stack ?? "").split("\n");
  less.stack = [`${less.name}: ${less.message}`, ...frames].join("\n");
  return less;
}

// WriteQueue has no #private methods: they would cost every instance a slot
// (the class brand), and a socket has one for life.
