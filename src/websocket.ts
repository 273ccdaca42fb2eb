// Copyright 2026 the @corothread/evthread authors. MIT license.

import { type DeadlineEntry, deadlines } from "./_deadline_queue.ts";
import { HttpRequest } from "./_http_request.ts";
import { checkInteger, checkTimeout, timeoutError } from "./_validate.ts";
import { closeBody, MAX_REASON_BYTES, validWireCode } from "./_ws_close.ts";
import {
  encodeMessage,
  RECEIVE_HIGH_WATER,
  sizeOf,
  WsConnection,
  wsHooks,
} from "./_ws_connection.ts";
import { CLOSE, encodeFrame } from "./_ws_frame.ts";
import {
  checkHandshake,
  checkProtocolOption,
  WebSocketHandshakeError,
} from "./_ws_handshake.ts";
import {
  bounded,
  DEFAULT_CLOSE_TIMEOUT,
  DEFAULT_MAX_MESSAGE_BYTES,
  idleMsOf,
  type Limit,
  limitError,
  limitOf,
  noop,
} from "./_ws_limits.ts";
import type { EvCallOptions, EvSocket } from "./ev_socket.ts";
import type { EvThread } from "./ev_thread.ts";
import { upgradeResponse } from "./_http_connection.ts";

export { WebSocketHandshakeError };

/**
 * Options for {@linkcode upgradeWebSocket}: `protocol` and `idleTimeout`
 * (seconds) as for `Deno.upgradeWebSocket`, and this module's
 * `maxMessageBytes` and `closeTimeout` (milliseconds).
 *
 * @example Options for a chat protocol
 * ```ts
 * import type { UpgradeWebSocketOptions } from "@corothread/evthread/http";
 *
 * const options: UpgradeWebSocketOptions = {
 *   protocol: "chat.v1", // must be one the client offers
 *   idleTimeout: 60, // seconds: ping after 30 s of silence, close at 60 s
 *   maxMessageBytes: 65_536, // larger messages fail with 1009
 *   closeTimeout: 2000, // ms for the closing handshake
 * };
 * ```
 */
export interface UpgradeWebSocketOptions {
  /**
   * The subprotocol to select, answered in `Sec-WebSocket-Protocol`. It
   * must be one the client offered: if not, the call throws a
   * {@linkcode WebSocketHandshakeError} (as `Deno.upgradeWebSocket` throws
   * a `TypeError`).
   */
  protocol?: string;
  /**
   * Seconds without a byte from the client before the connection is deemed
   * dead, as in `Deno.upgradeWebSocket`: after half of it in silence the
   * server sends a ping; if the other half passes without a byte either, it
   * closes with 1001 and fires `error`, then `close`. `0` turns it off.
   * Any frame counts, not only a pong. While reading is paused (see
   * {@linkcode EvWebSocket}), silence is not counted. Checked every 50 ms,
   * as the HTTP server's timeouts: never early, at most about 100 ms late.
   *
   * @default {30}
   */
  idleTimeout?: number;
  /**
   * The largest message taken, in bytes (a fragmented message counts all
   * its fragments). A frame that would take a message over it fails the
   * connection with 1009 as soon as its header arrives.
   *
   * @default {16777216}
   */
  maxMessageBytes?: number;
  /**
   * Milliseconds (like every time in this module except `idleTimeout`,
   * which follows Deno) that closing may take once a close frame is sent:
   * the peer's close frame, the last frames written, and the peer closing
   * its end of TCP. When they pass, the connection is closed anyway.
   *
   * @default {5000}
   */
  closeTimeout?: number;
}

/**
 * What {@linkcode upgradeWebSocket} returns, as `Deno.upgradeWebSocket`
 * does.
 *
 * @example Destructuring in a handler
 * ```ts
 * import { type ServeHandler, upgradeWebSocket } from "@corothread/evthread/http";
 *
 * const handler: ServeHandler = (request) => {
 *   const { socket, response } = upgradeWebSocket(request);
 *   socket.onmessage = (event) => socket.send(event.data);
 *   return response;
 * };
 * ```
 */
export interface WebSocketUpgrade {
  /** The WebSocket, open once the handler has returned `response`. */
  socket: EvWebSocket;
  /** The `101 Switching Protocols` response: return it from the handler. */
  response: Response;
}

/**
 * A message as {@linkcode EvWebSocket.receive} gives it: a `string` for a
 * text message, a `Uint8Array` for a binary one.
 *
 * @example Telling text from binary
 * ```ts
 * import type { WebSocketMessage } from "@corothread/evthread/http";
 * import { assertEquals } from "@std/assert";
 *
 * function describe(message: WebSocketMessage): string {
 *   return typeof message === "string"
 *     ? `text of ${message.length} characters`
 *     : `binary of ${message.byteLength} bytes`;
 * }
 * assertEquals(describe(new Uint8Array(3)), "binary of 3 bytes");
 * ```
 */
export type WebSocketMessage = string | Uint8Array<ArrayBuffer>;

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

const EMPTY = new Uint8Array(0);
const encoder = new TextEncoder();
/** What the queue of a pull-mode socket holds for the peer's close frame. */
const CLOSE_MARK = Symbol("close");

function invalidState(message: string): DOMException {
  return new DOMException(message, "InvalidStateError");
}

/** A `receive()` call waiting for a message. */
interface Waiter {
  resolve: (value: WebSocketMessage | null) => void;
  reject: (reason: unknown) => void;
  entry: DeadlineEntry | undefined;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

/** An `on*` event handler attribute. */
interface Handler {
  fn: ((event: Event) => unknown) | null;
  listener: (event: Event) => void;
}

/** What the handshake and the options set up for a socket. */
interface Setup {
  protocol: string | undefined;
  idleMs: number;
  maxBytes: number;
  closeMs: number;
}

let constructing = false;
let setUp: (ws: EvWebSocket, setup: Setup) => void;
let run: (
  ws: EvWebSocket,
  socket: EvSocket,
  thread: EvThread<unknown>,
  extra: { draining?: AbortSignal } | undefined,
) => Promise<void>;

/**
 * A server-side WebSocket (RFC 6455) on a connection of
 * {@linkcode serve}, made by {@linkcode upgradeWebSocket}. It is a
 * standard `WebSocket` (assignable to the type, with its events, `on*`
 * handlers, `send`, `close`, `readyState`, `bufferedAmount` and
 * `binaryType`), so a `Deno.serve` WebSocket handler ports by changing its
 * import. It also reads in this module's straight-line style:
 * {@linkcode EvWebSocket.receive} and `for await`, with timeouts that lose
 * nothing, and {@linkcode EvWebSocket.write}, which resolves when the
 * frame is written.
 *
 * **Two ways to read, one at a time.** Until `receive()` (or iteration) is
 * first called, messages are dispatched as `message` events (event mode).
 * From then on they go to `receive()` and are no longer dispatched (pull
 * mode); `open`, `error` and `close` events are dispatched in both modes.
 * Start iterating before returning the response (or in `open`) to get
 * every message.
 *
 * **Backpressure.** The connection's task reads a frame only when the
 * previous message was handed over. In pull mode it stops reading while
 * 1 MiB of messages wait for `receive()`; in both modes it stops while more
 * than 1 MiB of sent frames wait to be written (a slow client), so neither
 * a flood of messages nor an echo to a client that does not read grows
 * memory without bound: TCP pushes back on the client instead. `send()` is
 * the WebSocket API's: synchronous, it queues without limit and counts the
 * bytes not yet written in `bufferedAmount`; `await write()` instead waits
 * until the frame is written.
 *
 * **Closing.** `close(code, reason)` sends a close frame after the frames
 * already queued, and {@linkcode EvWebSocket.closed} resolves with the
 * `CloseEvent` once the peer has answered and the server has ended its side
 * of TCP (it ends TCP first, RFC 6455 7.1.1), or `closeTimeout` has passed.
 * A close frame from the client is answered with the same code. In pull
 * mode it is answered once `receive()` has returned the messages before it
 * and then `null`, so that replies written meanwhile still go out first:
 * keep calling `receive()` until `null` (a `for await` loop does), or call
 * `close()`; otherwise the answer waits for `closeTimeout`. A protocol
 * error fails the connection: a close frame with the code (1002, 1007,
 * 1009) and the problem as its reason, then `error` and `close` events
 * (code 1006, as no close frame came back). When the server shuts down
 * (`thread.draining`, raised by `EvLoop.shutdown`), the socket closes with
 * 1001 "going away" within the grace period; a task aborted after it
 * closes the TCP connection at once.
 *
 * Messages are delivered whole (fragments joined, text checked as UTF-8)
 * and sent as single frames; extensions (permessage-deflate) are declined.
 * As with any `EventTarget`, an exception in a listener is reported as
 * uncaught (as it is with Deno's own WebSocket), so handle errors in
 * listeners.
 *
 * @example Echo, as with Deno.serve
 * ```ts
 * import { serve, upgradeWebSocket } from "@corothread/evthread/http";
 * import { assertEquals } from "@std/assert";
 *
 * await using server = serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
 *   const { socket, response } = upgradeWebSocket(req);
 *   socket.onmessage = (event) => socket.send(`echo: ${event.data}`);
 *   return response;
 * });
 *
 * const client = new WebSocket(`ws://127.0.0.1:${server.addr.port}/`);
 * await new Promise((resolve) => client.onopen = resolve);
 * client.send("hello");
 * const reply = await new Promise((resolve) => client.onmessage = (event) => resolve(event.data));
 * assertEquals(reply, "echo: hello");
 * client.close();
 * await new Promise((resolve) => client.onclose = resolve);
 * ```
 *
 * @example Straight-line: a request, a reply, with timeouts
 * ```ts
 * import { serve, upgradeWebSocket } from "@corothread/evthread/http";
 * import { assertEquals } from "@std/assert";
 *
 * await using server = serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
 *   const { socket, response } = upgradeWebSocket(req);
 *   (async () => {
 *     for await (const message of socket) {
 *       await socket.write(`${message}`.toUpperCase(), { timeout: 5000 });
 *     }
 *   })().catch(() => socket.close(1011)); // a write failed or timed out
 *   return response;
 * });
 *
 * const client = new WebSocket(`ws://127.0.0.1:${server.addr.port}/`);
 * await new Promise((resolve) => client.onopen = resolve);
 * client.send("shout");
 * const reply = await new Promise((resolve) => client.onmessage = (event) => resolve(event.data));
 * assertEquals(reply, "SHOUT");
 * client.close();
 * await new Promise((resolve) => client.onclose = resolve);
 * ```
 */
export class EvWebSocket extends EventTarget
  implements WebSocket, AsyncDisposable {
  /** `readyState` before the 101 is sent. */
  static readonly CONNECTING = 0;
  /** `readyState` while messages flow. */
  static readonly OPEN = 1;
  /** `readyState` once a close frame was sent, until the TCP connection closes. */
  static readonly CLOSING = 2;
  /** `readyState` once the connection is closed. */
  static readonly CLOSED = 3;

  #state = CONNECTING;
  #protocol = "";
  #selected: string | undefined;
  #binaryType: BinaryType = "arraybuffer";
  /** The write queue and the connection's task. */
  #conn: WsConnection = new WsConnection(this);
  #handlers: Map<string, Handler> | undefined;

  // Pull mode.
  #pull = false;
  #queue: (WebSocketMessage | typeof CLOSE_MARK)[] = [];
  #queueSizes: number[] = [];
  #queueBytes = 0;
  #waiters: Waiter[] = [];
  /** The peer's close frame was taken from the queue by `receive()`. */
  #markTaken = false;

  // Closing.
  #closeSent = false;
  /** `close()` called before the 101 went out: what to send once it has. */
  #closeRequest: { code: number | undefined; reason: Uint8Array } | undefined;
  /** Why this side failed the connection (the `error` event's message). */
  #failure: string | undefined;
  #opened: Promise<boolean>;
  #resolveOpened!: (open: boolean) => void;
  #closed: Promise<CloseEvent>;
  #resolveClosed!: (event: CloseEvent) => void;

  static {
    setUp = (ws, setup) => {
      ws.#selected = setup.protocol;
      const conn = ws.#conn;
      conn.idleMs = setup.idleMs;
      conn.maxBytes = setup.maxBytes;
      conn.closeMs = setup.closeMs;
    };
    run = (ws, socket, thread, extra) => ws.#conn.run(socket, thread, extra);
    wsHooks.open = (ws) => ws.#open();
    wsHooks.isOpen = (ws) => ws.#state === OPEN;
    wsHooks.closeSent = (ws) => ws.#closeSent;
    wsHooks.sendClose = (ws, code, reason) => ws.#sendClose(code, reason);
    wsHooks.fail = (ws, code, message) => ws.#fail(code, message);
    wsHooks.backlogged = (ws) =>
      ws.#queue.length > 0 && ws.#queueBytes >= RECEIVE_HIGH_WATER;
    wsHooks.deliver = (ws, message, size) => ws.#deliver(message, size);
    wsHooks.pull = (ws) => ws.#pull;
    wsHooks.queueClose = (ws) => ws.#queueClose();
    wsHooks.closeTaken = (ws) => ws.#markTaken;
    wsHooks.closeDone = (ws, clean) => ws.#closeDone(clean);
  }

  /**
   * Not for direct use: call {@linkcode upgradeWebSocket}.
   *
   * @throws {TypeError} always, when called directly.
   */
  constructor() {
    super();
    if (!constructing) {
      throw new TypeError(
        "EvWebSocket cannot be constructed directly: use upgradeWebSocket()",
      );
    }
    constructing = false;
    this.#opened = new Promise((resolve) => this.#resolveOpened = resolve);
    this.#closed = new Promise((resolve) => this.#resolveClosed = resolve);
  }

  /** `readyState` before the 101 is sent: 0. */
  get CONNECTING(): 0 {
    return CONNECTING;
  }

  /** `readyState` while messages flow: 1. */
  get OPEN(): 1 {
    return OPEN;
  }

  /** `readyState` while closing: 2. */
  get CLOSING(): 2 {
    return CLOSING;
  }

  /** `readyState` once closed: 3. */
  get CLOSED(): 3 {
    return CLOSED;
  }

  /**
   * `CONNECTING` (0) until the handler's response has been sent, `OPEN`
   * (1), `CLOSING` (2) once a close frame is sent, `CLOSED` (3) once the TCP
   * connection is closed.
   */
  get readyState(): number {
    return this.#state;
  }

  /**
   * Bytes of data queued by `send()` and `write()` and not yet written to
   * the connection. As the WebSocket API specifies, data sent once closing
   * has begun is discarded but still counted, so it never drops back to 0
   * after the close.
   */
  get bufferedAmount(): number {
    return this.#conn.buffered;
  }

  /**
   * How binary messages are given to `message` events: `"arraybuffer"`
   * (the default on the server, as in Deno) or `"blob"`. Other values are
   * ignored, as the WebSocket API specifies. `receive()` always gives a
   * `Uint8Array`.
   */
  get binaryType(): BinaryType {
    return this.#binaryType;
  }

  set binaryType(value: BinaryType) {
    if (value === "arraybuffer" || value === "blob") this.#binaryType = value;
  }

  /** The subprotocol selected (the `protocol` option), once open; else `""`. */
  get protocol(): string {
    return this.#protocol;
  }

  /** The extensions in use: always `""` (none is ever accepted). */
  get extensions(): string {
    return "";
  }

  /**
   * `""`, as for a server-side `WebSocket` in Deno: the request's URL is
   * `request.url` in the handler.
   */
  get url(): string {
    return "";
  }

  /**
   * Resolves with the `CloseEvent` (the one dispatched) once the socket is
   * `CLOSED`: after a closing handshake, with the peer's code and reason
   * and `wasClean: true`; else (a failure, a lost connection, a close
   * timeout, an abort) with code 1006 and `wasClean: false`. Never rejects.
   * The connection's task may still wait, within `closeTimeout`, for the
   * client to end its side of TCP.
   */
  get closed(): Promise<CloseEvent> {
    return this.#closed;
  }

  /** Called when the connection opens. */
  get onopen(): ((this: WebSocket, event: Event) => unknown) | null {
    return this.#handler("open");
  }

  set onopen(fn: ((this: WebSocket, event: Event) => unknown) | null) {
    this.#setHandler("open", fn);
  }

  /** Called for each message, in event mode. */
  get onmessage(): ((this: WebSocket, event: MessageEvent) => unknown) | null {
    return this.#handler("message");
  }

  set onmessage(
    fn: ((this: WebSocket, event: MessageEvent) => unknown) | null,
  ) {
    this.#setHandler("message", fn);
  }

  /** Called when this side fails the connection (an `ErrorEvent`). */
  get onerror():
    | ((this: WebSocket, event: Event | ErrorEvent) => unknown)
    | null {
    return this.#handler("error");
  }

  set onerror(
    fn: ((this: WebSocket, event: Event | ErrorEvent) => unknown) | null,
  ) {
    this.#setHandler("error", fn);
  }

  /** Called once the connection is closed. */
  get onclose(): ((this: WebSocket, event: CloseEvent) => unknown) | null {
    return this.#handler("close");
  }

  set onclose(fn: ((this: WebSocket, event: CloseEvent) => unknown) | null) {
    this.#setHandler("close", fn);
  }

  /**
   * Adds a listener, typed by event as on the `WebSocket` interface:
   * `"open"`, `"message"` (a `MessageEvent`), `"error"`, `"close"` (a
   * `CloseEvent`).
   *
   * @example Listening for messages
   * ```ts
   * import { serve, upgradeWebSocket } from "@corothread/evthread/http";
   * import { assertEquals } from "@std/assert";
   *
   * await using server = serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
   *   const { socket, response } = upgradeWebSocket(req);
   *   socket.addEventListener("message", (event) => socket.send(`${event.data}!`));
   *   return response;
   * });
   * const client = new WebSocket(`ws://127.0.0.1:${server.addr.port}/`);
   * await new Promise((resolve) => client.onopen = resolve);
   * client.send("hey");
   * const reply = await new Promise((resolve) => client.onmessage = (event) => resolve(event.data));
   * assertEquals(reply, "hey!");
   * client.close();
   * await new Promise((resolve) => client.onclose = resolve);
   * ```
   *
   * @param type The event type.
   * @param listener Called with the event.
   * @param options As for `EventTarget.addEventListener`.
   */
  override addEventListener<K extends keyof WebSocketEventMap>(
    type: K,
    listener: (this: WebSocket, event: WebSocketEventMap[K]) => unknown,
    options?: boolean | AddEventListenerOptions,
  ): void;
  /**
   * Adds a listener for any event type.
   *
   * @param type The event type.
   * @param listener Called with the event.
   * @param options As for `EventTarget.addEventListener`.
   */
  override addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  override addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void {
    super.addEventListener(type, listener, options);
  }

  /**
   * Removes a listener added with `addEventListener`.
   *
   * @example Removing a listener
   * ```ts
   * import { serve, upgradeWebSocket } from "@corothread/evthread/http";
   * import { assertEquals } from "@std/assert";
   *
   * await using server = serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
   *   const { socket, response } = upgradeWebSocket(req);
   *   const once = (event: MessageEvent) => {
   *     socket.removeEventListener("message", once);
   *     socket.send(`first: ${event.data}`);
   *     socket.close();
   *   };
   *   socket.addEventListener("message", once);
   *   return response;
   * });
   * const client = new WebSocket(`ws://127.0.0.1:${server.addr.port}/`);
   * await new Promise((resolve) => client.onopen = resolve);
   * client.send("a");
   * const reply = await new Promise((resolve) => client.onmessage = (event) => resolve(event.data));
   * assertEquals(reply, "first: a");
   * await new Promise((resolve) => client.onclose = resolve);
   * ```
   *
   * @param type The event type.
   * @param listener The listener to remove.
   * @param options As for `EventTarget.removeEventListener`.
   */
  override removeEventListener<K extends keyof WebSocketEventMap>(
    type: K,
    listener: (this: WebSocket, event: WebSocketEventMap[K]) => unknown,
    options?: boolean | EventListenerOptions,
  ): void;
  /**
   * Removes a listener for any event type.
   *
   * @param type The event type.
   * @param listener The listener to remove.
   * @param options As for `EventTarget.removeEventListener`.
   */
  override removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void;
  override removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void {
    super.removeEventListener(type, listener, options);
  }

  // deno-lint-ignore no-explicit-any
  #handler(type: string): any {
    return this.#handlers?.get(type)?.fn ?? null;
  }

  #setHandler(type: string, fn: unknown): void {
    const value = typeof fn === "function"
      ? fn as (event: Event) => unknown
      : null;
    this.#handlers ??= new Map();
    const entry = this.#handlers.get(type);
    if (entry !== undefined) {
      entry.fn = value;
      if (value === null) {
        this.removeEventListener(type, entry.listener);
        this.#handlers.delete(type);
      }
      return;
    }
    if (value === null) return;
    const handler: Handler = {
      fn: value,
      listener: (event) => {
        handler.fn?.call(this, event);
      },
    };
    this.#handlers.set(type, handler);
    this.addEventListener(type, handler.listener);
  }

  // ------------------------------------------------------------- sending

  /**
   * Sends a message, as the WebSocket API does: a string as text; an
   * `ArrayBuffer`, a typed array, a `DataView` or a `Blob` as binary. It
   * returns at once; the frame is queued in call order and `bufferedAmount`
   * counts its bytes until they are written. After `close()` (or once the
   * peer's close has been answered) the data is discarded.
   *
   * @example Sending text and bytes
   * ```ts
   * import { serve, upgradeWebSocket } from "@corothread/evthread/http";
   * import { assertEquals } from "@std/assert";
   *
   * await using server = serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
   *   const { socket, response } = upgradeWebSocket(req);
   *   socket.onopen = () => {
   *     socket.send("text");
   *     socket.send(new Uint8Array([1, 2, 3]));
   *   };
   *   return response;
   * });
   *
   * const client = new WebSocket(`ws://127.0.0.1:${server.addr.port}/`);
   * client.binaryType = "arraybuffer";
   * const received: unknown[] = [];
   * await new Promise<void>((resolve) => {
   *   client.onmessage = (event) => {
   *     received.push(event.data);
   *     if (received.length === 2) resolve();
   *   };
   * });
   * assertEquals(received[0], "text");
   * assertEquals(new Uint8Array(received[1] as ArrayBuffer), new Uint8Array([1, 2, 3]));
   * client.close();
   * await new Promise((resolve) => client.onclose = resolve);
   * ```
   *
   * @param data The message.
   * @throws {DOMException} `InvalidStateError` before the connection is open.
   */
  send(data: string | ArrayBufferLike | Blob | ArrayBufferView): void {
    if (this.#state === CONNECTING) {
      throw invalidState("The WebSocket is not open yet");
    }
    if (this.#state !== OPEN || this.#closeSent) {
      this.#conn.buffered += sizeOf(data);
      return;
    }
    const { frame, size } = encodeMessage(data);
    this.#conn.push(frame, size).catch(noop);
  }

  /**
   * Sends a message and resolves once its frame has been written to the
   * connection: awaiting it keeps a fast producer in step with a slow
   * client. Takes what `send()` takes. Before the connection opens it waits
   * for it (within the call's limits).
   *
   * On timeout (or abort through `signal`) it rejects with a `DOMException`
   * named `"TimeoutError"` (or the reason), but the message stays queued
   * and is still written, in order: a frame cannot be taken back once
   * queued. A client that does not read within a timeout is usually best
   * closed.
   *
   * @example A reply that must be written within 5 seconds
   * ```ts
   * import { serve, upgradeWebSocket } from "@corothread/evthread/http";
   * import { assertEquals } from "@std/assert";
   *
   * await using server = serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
   *   const { socket, response } = upgradeWebSocket(req);
   *   socket.write("welcome", { timeout: 5000 }).catch(() => socket.close(1008, "too slow"));
   *   return response;
   * });
   *
   * const client = new WebSocket(`ws://127.0.0.1:${server.addr.port}/`);
   * const welcome = await new Promise((resolve) => client.onmessage = (event) => resolve(event.data));
   * assertEquals(welcome, "welcome");
   * client.close();
   * await new Promise((resolve) => client.onclose = resolve);
   * ```
   *
   * @param data The message.
   * @param options `timeout` (ms), `deadline` (epoch ms or a `Date`), `signal`.
   * @returns Resolves when the frame is written.
   * @throws {DOMException} `InvalidStateError` (as a rejection) once
   * closing has begun; the connection's error (such as
   * `Deno.errors.BadResource` or `ConnectionReset`) if it is lost before
   * the frame is written. In a loop of its own, catch it: an unhandled
   * rejection ends a Deno process.
   */
  write(
    data: string | ArrayBufferLike | Blob | ArrayBufferView,
    options?: EvCallOptions,
  ): Promise<void> {
    let limit: Limit;
    try {
      limit = limitOf(options);
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.#state === CONNECTING) {
      return bounded(this.#opened, limit, "Write").then(() =>
        this.#writeNow(data, limit)
      );
    }
    return this.#writeNow(data, limit);
  }

  #writeNow(
    data: string | ArrayBufferLike | Blob | ArrayBufferView,
    limit: Limit,
  ): Promise<void> {
    if (this.#state !== OPEN || this.#closeSent) {
      return Promise.reject(invalidState("The WebSocket is closing or closed"));
    }
    const { frame, size } = encodeMessage(data);
    return bounded(this.#conn.push(frame, size), limit, "Write");
  }

  // ------------------------------------------------------------- receiving

  /**
   * The next message: a `string` for text, a `Uint8Array` for binary; or
   * `null` once closing has begun and every message received before it was
   * taken. The first call switches the socket to pull mode: messages are no
   * longer dispatched as `message` events.
   *
   * A timed-out or aborted call loses nothing: a message that arrives later
   * goes to the next call.
   *
   * @example Reading with a timeout
   * ```ts
   * import { serve, upgradeWebSocket } from "@corothread/evthread/http";
   * import { assertEquals } from "@std/assert";
   *
   * await using server = serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
   *   const { socket, response } = upgradeWebSocket(req);
   *   (async () => {
   *     try {
   *       const name = await socket.receive({ timeout: 5000 });
   *       await socket.write(`hello, ${name}`);
   *       socket.close(1000, "done");
   *     } catch {
   *       socket.close(1008, "say something");
   *     }
   *   })();
   *   return response;
   * });
   *
   * const client = new WebSocket(`ws://127.0.0.1:${server.addr.port}/`);
   * await new Promise((resolve) => client.onopen = resolve);
   * client.send("ada");
   * const reply = await new Promise((resolve) => client.onmessage = (event) => resolve(event.data));
   * assertEquals(reply, "hello, ada");
   * const event = await new Promise<CloseEvent>((resolve) => client.onclose = resolve);
   * assertEquals([event.code, event.reason], [1000, "done"]);
   * ```
   *
   * @param options `timeout` (ms; `0`: only a message already received),
   * `deadline` (epoch ms or a `Date`), `signal`.
   * @returns The message, or `null` after a close.
   */
  receive(options?: EvCallOptions): Promise<WebSocketMessage | null> {
    let limit: Limit;
    try {
      limit = limitOf(options);
    } catch (error) {
      return Promise.reject(error);
    }
    if (!this.#pull) {
      this.#pull = true;
    }
    if (this.#queue.length > 0) return Promise.resolve(this.#take());
    if (this.#ended()) return Promise.resolve(null);
    const signal = limit.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (limit.ms === 0) {
      return Promise.reject(
        limit.byDeadline
          ? limitError(limit, "Receive")
          : timeoutError("No message received (timeout 0)"),
      );
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        entry: undefined,
        signal,
        onAbort: undefined,
      };
      if (limit.until !== undefined) {
        waiter.entry = deadlines.schedule(limit.ms, () => {
          waiter.entry = undefined;
          this.#dropWaiter(waiter);
          reject(limitError(limit, "Receive"));
        });
      }
      if (signal !== undefined) {
        waiter.onAbort = () => {
          this.#dropWaiter(waiter);
          reject(signal.reason);
        };
        signal.addEventListener("abort", waiter.onAbort, { once: true });
      }
      this.#waiters.push(waiter);
    });
  }

  /**
   * Iterates over the messages until the connection closes (`receive()`
   * until `null`). Leaving the loop early does not close the socket.
   *
   * @example Echo in straight-line code
   * ```ts
   * import { serve, upgradeWebSocket } from "@corothread/evthread/http";
   * import { assertEquals } from "@std/assert";
   *
   * await using server = serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
   *   const { socket, response } = upgradeWebSocket(req);
   *   (async () => {
   *     for await (const message of socket) await socket.write(message);
   *   })().catch(() => socket.close(1011));
   *   return response;
   * });
   *
   * const client = new WebSocket(`ws://127.0.0.1:${server.addr.port}/`);
   * await new Promise((resolve) => client.onopen = resolve);
   * client.send("one");
   * const reply = await new Promise((resolve) => client.onmessage = (event) => resolve(event.data));
   * assertEquals(reply, "one");
   * client.close();
   * await new Promise((resolve) => client.onclose = resolve);
   * ```
   *
   * @returns An async iterator of the messages.
   */
  async *[Symbol.asyncIterator](): AsyncGenerator<
    WebSocketMessage,
    void,
    undefined
  > {
    let message: WebSocketMessage | null;
    while ((message = await this.receive()) !== null) yield message;
  }

  /** Whether `receive()` can get nothing more than what is queued. */
  #ended(): boolean {
    return this.#state === CLOSED || this.#closeSent ||
      this.#closeRequest !== undefined || this.#markTaken;
  }

  /** Takes the first queued message (the queue is not empty). */
  #take(): WebSocketMessage | null {
    const item = this.#queue.shift()!;
    const size = this.#queueSizes.shift()!;
    if (item === CLOSE_MARK) {
      this.#markTaken = true;
      this.#conn.wake();
      return null;
    }
    this.#queueBytes -= size;
    this.#conn.wake();
    return item;
  }

  #dropWaiter(waiter: Waiter): void {
    const i = this.#waiters.indexOf(waiter);
    if (i >= 0) this.#waiters.splice(i, 1);
    this.#forget(waiter);
  }

  #forget(waiter: Waiter): void {
    if (waiter.entry !== undefined) {
      deadlines.cancel(waiter.entry);
      deadlines.settle();
      waiter.entry = undefined;
    }
    if (waiter.onAbort !== undefined) {
      waiter.signal!.removeEventListener("abort", waiter.onAbort);
      waiter.onAbort = undefined;
    }
  }

  /** Answers every waiting `receive()` with `null`. */
  #endWaiters(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const waiter of waiters) {
      this.#forget(waiter);
      waiter.resolve(null);
    }
  }

  /** Hands a message to `receive()`, or dispatches it. */
  #deliver(message: WebSocketMessage, size: number): void {
    if (this.#pull) {
      const waiter = this.#waiters.shift();
      if (waiter !== undefined) {
        this.#forget(waiter);
        waiter.resolve(message);
        return;
      }
      this.#queue.push(message);
      this.#queueSizes.push(size);
      this.#queueBytes += size;
      return;
    }
    let data: unknown = message;
    if (typeof message !== "string") {
      data = this.#binaryType === "blob"
        ? new Blob([message])
        : message.byteOffset === 0 &&
            message.byteLength === message.buffer.byteLength
        ? message.buffer
        : message.slice().buffer;
    }
    this.dispatchEvent(new MessageEvent("message", { data }));
  }

  // --------------------------------------------------------------- closing

  /**
   * Starts the closing handshake: sends a close frame with `code` and
   * `reason` after the frames already queued; `readyState` becomes
   * `CLOSING`. {@linkcode EvWebSocket.closed} resolves when the connection
   * is closed: the peer answered and ended TCP, or `closeTimeout` passed.
   * Closing twice, or once closing, does nothing.
   *
   * Beyond the WebSocket API's 1000 and 3000-4999, a server may send any
   * code valid on the wire: 1001 (going away), 1002, 1003, 1007-1014 (1008
   * policy violation, 1011 internal error, ...). A reason without a code
   * sends 1000.
   *
   * @example Closing and waiting for the handshake
   * ```ts
   * import { serve, upgradeWebSocket } from "@corothread/evthread/http";
   * import { assertEquals } from "@std/assert";
   *
   * const done = Promise.withResolvers<CloseEvent>();
   * await using server = serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
   *   const { socket, response } = upgradeWebSocket(req);
   *   socket.onopen = async () => {
   *     socket.close(4000, "bye");
   *     done.resolve(await socket.closed);
   *   };
   *   return response;
   * });
   *
   * const client = new WebSocket(`ws://127.0.0.1:${server.addr.port}/`);
   * const seen = await new Promise<CloseEvent>((resolve) => client.onclose = resolve);
   * assertEquals([seen.code, seen.reason], [4000, "bye"]);
   * const event = await done.promise;
   * assertEquals([event.code, event.wasClean], [4000, true]);
   * ```
   *
   * @param code The close code.
   * @param reason Why, in at most 123 bytes of UTF-8.
   * @throws {DOMException} `InvalidAccessError` for a code that cannot be
   * sent, `SyntaxError` for a reason over 123 bytes.
   */
  close(code?: number, reason?: string): void {
    if (
      code !== undefined &&
      !(Number.isInteger(code) && validWireCode(code))
    ) {
      throw new DOMException(
        `'code' must be 1000-1003, 1007-1014 or 3000-4999: received ${code}`,
        "InvalidAccessError",
      );
    }
    let reasonBytes = EMPTY;
    if (reason !== undefined) {
      reasonBytes = encoder.encode(`${reason}`);
      if (reasonBytes.byteLength > MAX_REASON_BYTES) {
        throw new DOMException(
          `'reason' must be at most 123 bytes of UTF-8: received ${reasonBytes.byteLength}`,
          "SyntaxError",
        );
      }
    }
    if (code === undefined && reasonBytes.byteLength > 0) code = 1000;
    if (this.#state === CLOSING || this.#state === CLOSED) return;
    if (this.#state === CONNECTING) {
      this.#state = CLOSING;
      this.#closeRequest = { code, reason: reasonBytes };
      this.#endWaiters();
      return;
    }
    this.#sendClose(code, reasonBytes);
  }

  /**
   * Closes with 1000 (unless closing already) and waits until the
   * connection is closed. Before the connection opens it only asks for the
   * close.
   */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#state === CONNECTING) {
      this.close();
      return;
    }
    if (this.#state === OPEN) this.close(1000);
    await this.#closed;
  }

  /** Queues the close frame and starts the close timeout. */
  #sendClose(code: number | undefined, reason: Uint8Array): void {
    if (this.#closeSent) return;
    this.#closeSent = true;
    this.#state = CLOSING;
    const conn = this.#conn;
    conn.closeAt = Date.now() + conn.closeMs;
    const socket = conn.socket!;
    if (!socket.closed) socket.setReadDeadline(conn.closeAt);
    conn.closeWritten = conn.push(
      encodeFrame(CLOSE, closeBody(code, reason)),
      0,
    ).catch(noop);
    this.#endWaiters();
    conn.wake();
  }

  /** Fails the connection (RFC 6455 7.1.7): a close frame with `code`. */
  #fail(code: number, message: string): void {
    this.#failure = message;
    // The reason tells the client what went wrong (ASCII, within 123).
    this.#sendClose(code, encoder.encode(message.slice(0, MAX_REASON_BYTES)));
  }

  // ------------------------------------------------------ the connection

  /** After the 101: `OPEN`, or the close frame asked for before it. */
  #open(): void {
    const request = this.#closeRequest;
    if (request !== undefined) {
      this.#resolveOpened(false);
      this.#sendClose(request.code, request.reason);
    } else {
      this.#state = OPEN;
      this.#protocol = this.#selected ?? "";
      this.#resolveOpened(true);
      this.dispatchEvent(new Event("open"));
    }
  }

  /**
   * Pull mode, on the peer's close frame: answers a waiting `receive()`
   * with `null` (true), or queues the close mark (false).
   */
  #queueClose(): boolean {
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) {
      this.#forget(waiter);
      this.#markTaken = true;
      waiter.resolve(null);
      return true;
    }
    this.#queue.push(CLOSE_MARK);
    this.#queueSizes.push(0);
    return false;
  }

  /** `CLOSED`: ends the waits, dispatches `error` and `close`. */
  #closeDone(clean: boolean): void {
    this.#state = CLOSED;
    this.#closeSent = true;
    this.#resolveOpened(false);
    this.#endWaiters();
    const conn = this.#conn;
    for (const held of conn.held.splice(0)) {
      held.reject(new Deno.errors.BadResource("The WebSocket is closed"));
    }
    if (this.#failure !== undefined) {
      this.dispatchEvent(
        new ErrorEvent("error", { message: this.#failure }),
      );
    }
    const event = new CloseEvent("close", {
      code: clean ? conn.received!.code : 1006,
      reason: clean ? conn.received!.reason : "",
      wasClean: clean,
    });
    this.dispatchEvent(event);
    this.#resolveClosed(event);
  }
}

/**
 * Upgrades a request of {@linkcode serve} to a WebSocket, with the call
 * shape of `Deno.upgradeWebSocket`: return `response` from the handler,
 * and use `socket` as a standard `WebSocket` (or read it with
 * {@linkcode EvWebSocket.receive}). The connection stays the task of the
 * server's pool that served the request: its slot stays taken until the
 * socket closes, and shutdown closes it with 1001 "going away".
 *
 * The request must be a WebSocket opening handshake (RFC 6455 4.2.1):
 * `GET`, HTTP/1.1, `Upgrade: websocket`, `Connection: upgrade`,
 * `Sec-WebSocket-Version: 13` and a `Sec-WebSocket-Key` of 16 bytes in
 * base64. Offered extensions (permessage-deflate) are declined. The
 * `Origin` is not checked: check it in the handler when browsers of other
 * sites must not connect.
 *
 * @example Echo server
 * ```ts
 * import { serve, upgradeWebSocket } from "@corothread/evthread/http";
 * import { assertEquals } from "@std/assert";
 *
 * await using server = serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
 *   if (req.headers.get("upgrade") !== "websocket") {
 *     return new Response("a WebSocket endpoint", { status: 426 });
 *   }
 *   const { socket, response } = upgradeWebSocket(req, { protocol: "echo", idleTimeout: 60 });
 *   socket.addEventListener("message", (event) => socket.send(event.data));
 *   return response;
 * });
 *
 * const client = new WebSocket(`ws://127.0.0.1:${server.addr.port}/`, ["echo"]);
 * await new Promise((resolve) => client.onopen = resolve);
 * assertEquals(client.protocol, "echo");
 * client.send("ping");
 * const reply = await new Promise((resolve) => client.onmessage = (event) => resolve(event.data));
 * assertEquals(reply, "ping");
 * client.close();
 * await new Promise((resolve) => client.onclose = resolve);
 * ```
 *
 * @param request The request, as the handler got it.
 * @param options `protocol`, `idleTimeout` (seconds), `maxMessageBytes`,
 * `closeTimeout` (milliseconds).
 * @returns The socket and the response to return.
 * @throws {WebSocketHandshakeError} (a `TypeError`) if the request is not a
 * valid WebSocket handshake, or does not offer `protocol`: answer 400 (426
 * with its `headers` for a version other than 13).
 * @throws {TypeError} / {RangeError} for bad options, or a request that
 * did not come from {@linkcode serve}.
 */
export function upgradeWebSocket(
  request: Request,
  options?: UpgradeWebSocketOptions,
): WebSocketUpgrade {
  const protocol = checkProtocolOption(options?.protocol);
  const setup: Setup = {
    protocol,
    idleMs: idleMsOf(options?.idleTimeout),
    maxBytes: checkInteger(
      options?.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
      "maxMessageBytes",
      1,
    ),
    closeMs: checkTimeout(
      options?.closeTimeout ?? DEFAULT_CLOSE_TIMEOUT,
      "closeTimeout",
    ) ?? 2 ** 31 - 1,
  };
  const handshake = checkHandshake(request, protocol);
  const headers: Record<string, string> = {
    "sec-websocket-accept": handshake.accept,
  };
  if (protocol !== undefined) headers["sec-websocket-protocol"] = protocol;
  constructing = true;
  const socket = new EvWebSocket();
  setUp(socket, setup);
  let response: Response;
  try {
    response = upgradeResponse(
      request,
      (conn, thread, extra) => run(socket, conn, thread, extra),
      { ...headers, upgrade: "websocket" },
      true,
    );
  } catch (error) {
    // Refused by the server with a status of its own (such as 503).
    if (error instanceof WebSocketHandshakeError) throw error;
    if (request instanceof HttpRequest) {
      // The server did not take it as an upgrade request: HTTP/1.0, or a
      // request with a body.
      throw new WebSocketHandshakeError(
        "Invalid WebSocket handshake: the request must be HTTP/1.1, without a body",
      );
    }
    throw new TypeError(
      "upgradeWebSocket() needs a request that serve() of @corothread/evthread/http gave the handler",
      { cause: error },
    );
  }
  return { socket, response };
}
