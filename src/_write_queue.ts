// Copyright 2026 the @corothread/evthread authors. MIT license.
// A socket's write queue: its sends and half-close in call order, the
// staging copies of callers' bytes, what a caller that stops waiting leaves
// queued, and what an abort or close cut short. It does no I/O: the socket
// writes `chunk(head)` and reports the count with `advance`.

import { buffers } from "./_buffer_pool.ts";
import { forget, type PendingCall } from "./_socket_limits.ts";
import type { EvSocket } from "./ev_socket.ts";

/** Most bytes copied per write for a send that may be abandoned. */
export const COPY_CHUNK = 262_144;

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

  constructor(
    socket: EvSocket,
    bytes: Uint8Array | undefined,
    owned: boolean,
  ) {
    this.socket = socket;
    this.bytes = bytes;
    this.owned = owned;
    this.promise = new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  /** Rejects the call, and stops waiting on it. */
  fail(reason: unknown): void {
    this.resolve = undefined;
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
    const end = Math.min(bytes.byteLength, req.offset + COPY_CHUNK);
    const length = end - req.offset;
    let stage = this.#stage;
    if (stage === undefined || stage.byteLength < length) {
      if (stage !== undefined) buffers.put(stage);
      stage = this.#stage = buffers.get(length);
    }
    stage.set(bytes.subarray(req.offset, end));
    return stage.subarray(0, length);
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
   * back.
   */
  idle(): void {
    if (this.#stage !== undefined) {
      buffers.put(this.#stage);
      this.#stage = undefined;
    }
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
  }
}

// No #private methods in WriteQueue: they would cost every instance a slot
// (the class brand), and a socket has one for life.
