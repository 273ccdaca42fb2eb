// Copyright 2026 the @corothread/evthread authors. MIT license.
// A WebSocket's connection, in the task of its TCP connection: the write
// queue (frames in call order, a Blob's read awaited in place), the read
// loop with its backpressure, idle pings and frame dispatch, and the
// closing handshake down to the TCP close. `EvWebSocket` keeps the public
// state (`readyState`, events, the queue of `receive()`) and owns one
// `WsConnection`; the connection reaches the socket's private state
// through `wsHooks`, set from the class's static block.

import { deadlines } from "./_deadline_queue.ts";
import { GOING_AWAY, NO_STATUS } from "./_ws_close.ts";
import {
  BINARY,
  encodeFrame,
  FrameError,
  PING,
  PONG,
  TEXT,
} from "./_ws_frame.ts";
import {
  bounded,
  DEFAULT_CLOSE_TIMEOUT,
  DEFAULT_IDLE_TIMEOUT,
  DEFAULT_MAX_MESSAGE_BYTES,
  isTimeout,
  type Limit,
  noop,
} from "./_ws_limits.ts";
import { type Incoming, MessageReader } from "./_ws_reader.ts";
import { CoarseTimeouts } from "./_coarse_timeouts.ts";
import type { EvSocket } from "./ev_socket.ts";
import type { EvThread } from "./ev_thread.ts";
import type { EvWebSocket, WebSocketMessage } from "./websocket.ts";

/**
 * Reading pauses while more bytes than this are queued for writing (sends
 * of message handlers that a slow client has not taken yet).
 */
const SEND_HIGH_WATER = 1_048_576;
/**
 * In pull mode, reading pauses while messages of at least this many bytes
 * wait for `receive()`.
 */
export const RECEIVE_HIGH_WATER = 1_048_576;

/** How the reading of a connection ended. */
const ABNORMAL = 0; // no closing handshake: EOF, reset, abort, timeout
const CLEAN = 1; // close frames both ways
const FAILED = 2; // this side failed the connection (and sent a close)

const EMPTY = new Uint8Array(0);
const encoder = new TextEncoder();
const goingAway = encoder.encode("going away");

function unreachable(): never {
  throw new Error("evthread: internal hook used before its class loaded");
}

/** What the connection needs of its `EvWebSocket`; set by the class. */
export const wsHooks: {
  /**
   * After the 101: `OPEN` and the `open` event, or the close frame that
   * `close()` asked for before.
   */
  open: (ws: EvWebSocket) => void;
  /** Whether `readyState` is `OPEN`. */
  isOpen: (ws: EvWebSocket) => boolean;
  /** Whether this side's close frame is queued. */
  closeSent: (ws: EvWebSocket) => boolean;
  /** Queues a close frame and starts the close timeout. */
  sendClose: (
    ws: EvWebSocket,
    code: number | undefined,
    reason: Uint8Array,
  ) => void;
  /** Fails the connection (RFC 6455 7.1.7): a close frame with `code`. */
  fail: (ws: EvWebSocket, code: number, message: string) => void;
  /** Pull mode: whether enough messages wait for `receive()` to pause. */
  backlogged: (ws: EvWebSocket) => boolean;
  /** Hands a message to `receive()`, or dispatches it. */
  deliver: (ws: EvWebSocket, message: WebSocketMessage, size: number) => void;
  /** Whether the socket is in pull mode. */
  pull: (ws: EvWebSocket) => boolean;
  /**
   * Pull mode: answers a waiting `receive()` with `null` (true), or queues
   * the mark of the peer's close behind the messages (false).
   */
  queueClose: (ws: EvWebSocket) => boolean;
  /** Whether `receive()` has taken the mark of the peer's close. */
  closeTaken: (ws: EvWebSocket) => boolean;
  /** `CLOSED`: ends the waits, dispatches `error` and `close`. */
  closeDone: (ws: EvWebSocket, clean: boolean) => void;
} = {
  open: unreachable,
  isOpen: unreachable,
  closeSent: unreachable,
  sendClose: unreachable,
  fail: unreachable,
  backlogged: unreachable,
  deliver: unreachable,
  pull: unreachable,
  queueClose: unreachable,
  closeTaken: unreachable,
  closeDone: unreachable,
};

/** A frame waiting behind a Blob being read, to keep sends in order. */
interface HeldFrame {
  frame: Uint8Array | Promise<Uint8Array>;
  size: number;
  resolve: () => void;
  reject: (reason: unknown) => void;
}

/** A message's frame (a promise of it for a Blob) and its data's size. */
export function encodeMessage(
  data: string | ArrayBufferLike | Blob | ArrayBufferView,
): { frame: Uint8Array | Promise<Uint8Array>; size: number } {
  if (typeof data === "string") {
    const bytes = encoder.encode(data);
    return { frame: encodeFrame(TEXT, bytes), size: bytes.byteLength };
  }
  if (ArrayBuffer.isView(data)) {
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    return { frame: encodeFrame(BINARY, bytes), size: bytes.byteLength };
  }
  if (
    data instanceof ArrayBuffer ||
    (typeof SharedArrayBuffer !== "undefined" &&
      data instanceof SharedArrayBuffer)
  ) {
    const bytes = new Uint8Array(data);
    return { frame: encodeFrame(BINARY, bytes), size: bytes.byteLength };
  }
  if (data instanceof Blob) {
    return {
      frame: data.arrayBuffer().then((buffer) =>
        encodeFrame(BINARY, new Uint8Array(buffer))
      ),
      size: data.size,
    };
  }
  // Anything else is sent as its string form, as WebIDL converts it.
  const bytes = encoder.encode(String(data));
  return { frame: encodeFrame(TEXT, bytes), size: bytes.byteLength };
}

/** The bytes `send()` counts for `data`. */
export function sizeOf(
  data: string | ArrayBufferLike | Blob | ArrayBufferView,
): number {
  if (typeof data === "string") return encoder.encode(data).byteLength;
  if (data instanceof Blob) return data.size;
  if (ArrayBuffer.isView(data) || typeof data === "object") {
    return (data as ArrayBufferLike).byteLength ?? 0;
  }
  return encoder.encode(String(data)).byteLength;
}

/**
 * The connection of an `EvWebSocket`: its write queue, and its life in the
 * connection's task, from the 101 to the TCP close.
 */
export class WsConnection {
  readonly ws: EvWebSocket;
  /** Set when the 101 has been sent. */
  socket: EvSocket | undefined = undefined;
  /** Bytes of data sent and not yet written (`bufferedAmount`). */
  buffered = 0;
  /** Bytes of frames handed to the socket whose writes have not settled. */
  inFlight = 0;
  idleMs: number = DEFAULT_IDLE_TIMEOUT * 1000;
  maxBytes: number = DEFAULT_MAX_MESSAGE_BYTES;
  closeMs: number = DEFAULT_CLOSE_TIMEOUT;
  /** Frames behind a Blob being read. */
  held: HeldFrame[] = [];
  /** Settles when the close frame has been written (or could not be). */
  closeWritten: Promise<void> | undefined = undefined;
  /** The peer's close frame. */
  received: { code: number; reason: string } | undefined = undefined;
  /** When closing must be done by (epoch ms). */
  closeAt = 0;
  /** Whether to wait for the peer to end TCP after failing. */
  #awaitEof = true;
  #wakeReader: (() => void) | undefined = undefined;

  constructor(ws: EvWebSocket) {
    this.ws = ws;
  }

  /**
   * Queues a frame behind the others; resolves when it is written. Frames
   * after a Blob being read wait for it, so that frames keep call order.
   */
  push(frame: Uint8Array | Promise<Uint8Array>, size: number): Promise<void> {
    this.buffered += size;
    if (this.held.length === 0 && !(frame instanceof Promise)) {
      return this.#write(frame, size);
    }
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    promise.catch(noop);
    this.held.push({ frame, size, resolve, reject });
    if (this.held.length === 1) this.#flushHeld();
    return promise;
  }

  async #flushHeld(): Promise<void> {
    while (this.held.length > 0) {
      const entry = this.held[0]!;
      let frame: Uint8Array;
      try {
        frame = await entry.frame;
      } catch (error) {
        this.held.shift();
        this.buffered -= entry.size;
        entry.reject(error);
        continue;
      }
      this.held.shift();
      this.#write(frame, entry.size).then(entry.resolve, entry.reject);
    }
  }

  /** Hands a frame to the socket. */
  #write(frame: Uint8Array, size: number): Promise<void> {
    const socket = this.socket!;
    const bytes = frame.byteLength;
    this.inFlight += bytes;
    const written = socket.send(frame).then(() => {
      this.inFlight -= bytes;
      this.buffered -= size;
      this.wake();
    }, (error) => {
      this.inFlight -= bytes;
      this.wake();
      // The connection cannot be written: end it (the reader then stops).
      if (!socket.closed) socket.close();
      throw error;
    });
    written.catch(noop);
    return written;
  }

  /** Wakes the reader if it is paused. */
  wake(): void {
    const wake = this.#wakeReader;
    if (wake !== undefined) {
      this.#wakeReader = undefined;
      wake();
    }
  }

  #pause(): Promise<void> {
    return new Promise((resolve) => this.#wakeReader = resolve);
  }

  /** The connection's life, in its task, from the 101 to the TCP close. */
  async run(
    socket: EvSocket,
    thread: EvThread<unknown>,
    extra: { draining?: AbortSignal } | undefined,
  ): Promise<void> {
    const ws = this.ws;
    this.socket = socket;
    const onAbort = () => this.wake();
    thread.signal.addEventListener("abort", onAbort, { once: true });
    const drains = [thread.draining];
    if (extra?.draining instanceof AbortSignal) drains.push(extra.draining);
    const onDrain = () => {
      if (wsHooks.isOpen(ws)) wsHooks.sendClose(ws, GOING_AWAY, goingAway);
    };
    let outcome = ABNORMAL;
    try {
      wsHooks.open(ws);
      for (const signal of drains) {
        if (signal.aborted) onDrain();
        else signal.addEventListener("abort", onDrain, { once: true });
      }
      outcome = await this.#read(socket, thread);
    } catch {
      // The connection failed (reset, closed) or the task was aborted.
      outcome = ABNORMAL;
    } finally {
      thread.signal.removeEventListener("abort", onAbort);
      for (const signal of drains) {
        signal.removeEventListener("abort", onDrain);
      }
    }
    await this.#finish(socket, thread, outcome);
  }

  /** Reads frames until the closing handshake, a failure or the end. */
  async #read(socket: EvSocket, thread: EvThread<unknown>): Promise<number> {
    // The idle timeout, checked by the coarse sweep (never early, at most
    // ~100 ms late): a read costs no timer.
    const timeouts = new CoarseTimeouts(socket);
    timeouts.watch();
    try {
      return await this.#readFrames(socket, thread, timeouts);
    } finally {
      timeouts.unwatch();
    }
  }

  /** `#read`'s loop. */
  async #readFrames(
    socket: EvSocket,
    thread: EvThread<unknown>,
    timeouts: CoarseTimeouts,
  ): Promise<number> {
    const ws = this.ws;
    const reader = new MessageReader(socket, this.maxBytes, timeouts);
    const idle = this.idleMs > 0 ? this.idleMs / 2 : 0;
    let pinged = false;
    while (true) {
      // Backpressure: pause while a slow client leaves sends queued, or
      // (pull mode) while messages wait for receive(). Closing reads on,
      // to find the peer's close frame.
      while (
        !wsHooks.closeSent(ws) && !thread.signal.aborted &&
        (this.inFlight > SEND_HIGH_WATER || wsHooks.backlogged(ws))
      ) {
        await this.#pause();
      }
      if (thread.signal.aborted) return ABNORMAL;
      const before = socket.buffered;
      let item: Incoming | null;
      try {
        item = await reader.next(wsHooks.closeSent(ws) ? 0 : idle);
      } catch (error) {
        if (error instanceof FrameError) {
          // The frames before the bad one were delivered: let a pull-mode
          // consumer queue its replies to them (its continuation runs in
          // this turn's microtasks) before the close frame goes behind
          // them. The reader may find the bad frame in the same turn as
          // the good ones when they arrived together.
          await new Promise((resolve) => setTimeout(resolve, 0));
          wsHooks.fail(ws, error.code, error.message);
          return FAILED;
        }
        if (!isTimeout(error)) throw error;
        if (wsHooks.closeSent(ws)) {
          // The close timeout (the socket's read deadline), or an idle
          // timeout armed before closing began.
          if (Date.now() + 5 >= this.closeAt) return ABNORMAL;
          continue;
        }
        if (socket.buffered !== before) {
          pinged = false; // bytes came, part of a header: not idle
          continue;
        }
        if (!pinged) {
          pinged = true;
          this.push(encodeFrame(PING, EMPTY), 0).catch(noop);
          continue;
        }
        this.#awaitEof = false;
        wsHooks.fail(
          ws,
          GOING_AWAY,
          `No frame from the client within idleTimeout (${
            this.idleMs / 1000
          } s), even after a ping`,
        );
        return FAILED;
      }
      pinged = false;
      if (item === null) return ABNORMAL;
      switch (item.type) {
        case "text":
          if (wsHooks.isOpen(ws)) wsHooks.deliver(ws, item.data, item.size);
          break;
        case "binary":
          if (wsHooks.isOpen(ws)) {
            wsHooks.deliver(ws, item.data, item.data.byteLength);
          }
          break;
        case "ping":
          if (!wsHooks.closeSent(ws)) {
            this.push(encodeFrame(PONG, item.data), 0).catch(noop);
          }
          break;
        case "pong":
          break;
        case "close":
          this.received = { code: item.code, reason: item.reason };
          if (!wsHooks.closeSent(ws) && wsHooks.pull(ws)) {
            await this.#closeInOrder(thread);
          }
          if (!wsHooks.closeSent(ws)) {
            // Answer with the same code (none, if it had none).
            wsHooks.sendClose(
              ws,
              item.code === NO_STATUS ? undefined : item.code,
              EMPTY,
            );
          }
          return CLEAN;
      }
    }
  }

  /**
   * Pull mode: the peer's close frame waits in the queue behind the
   * messages before it, and is answered once `receive()` reaches it (or
   * `close()` is called, or `closeTimeout` passes).
   */
  async #closeInOrder(thread: EvThread<unknown>): Promise<void> {
    const ws = this.ws;
    if (wsHooks.queueClose(ws)) return;
    let expired = false;
    const entry = deadlines.schedule(this.closeMs, () => {
      expired = true;
      this.wake();
    });
    try {
      while (
        !wsHooks.closeTaken(ws) && !wsHooks.closeSent(ws) && !expired &&
        !thread.signal.aborted
      ) {
        await this.#pause();
      }
    } finally {
      deadlines.cancel(entry);
      deadlines.settle();
    }
  }

  /**
   * Ends the connection: after a closing handshake or a failure, writes
   * what is queued (the close frame last) and ends this side of TCP first,
   * within the close timeout; `error` (after a failure) and `close` are
   * then dispatched. The peer's end of TCP is awaited (what it still sends
   * is dropped) until the close timeout, so that closing never resets a
   * connection whose close frame the peer has not read yet; then the socket
   * closes.
   */
  async #finish(
    socket: EvSocket,
    thread: EvThread<unknown>,
    outcome: number,
  ): Promise<void> {
    let linger = false;
    const deadline = this.closeAt;
    if (outcome !== ABNORMAL && !thread.signal.aborted && !socket.closed) {
      const ms = Math.max(0, deadline - Date.now());
      const limit: Limit = {
        until: performance.now() + ms,
        ms,
        byDeadline: true,
        signal: thread.signal,
      };
      try {
        await bounded(this.closeWritten!, limit, "Close");
        await socket.closeWrite({ deadline });
        linger = this.#awaitEof;
      } catch {
        // Out of time, or the connection failed: close it now.
      }
    }
    if (!linger) socket.close();
    wsHooks.closeDone(this.ws, outcome === CLEAN);
    if (!linger) return;
    try {
      // RFC 6455 7.1.1: the server ends TCP first; then the client's end.
      const scratch = new Uint8Array(4096);
      while (await socket.recv(scratch, { deadline }) !== null) {
        // Dropped.
      }
    } catch {
      // Out of time, reset, or the task was aborted.
    }
    socket.close();
  }
}
