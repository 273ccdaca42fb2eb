// Copyright 2026 the @corothread/evthread authors. MIT license.
// The server's side of the WebSocket opening handshake (RFC 6455 4.2): the
// checks on the client's request, subprotocol selection, and the
// Sec-WebSocket-Accept value.

import { sha1 } from "./_ws_sha1.ts";

/** The GUID that RFC 6455 4.2.2 appends to the key before hashing. */
const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/** Base64 of exactly 16 bytes: 22 characters, the last with 2 spare bits. */
const KEY = /^[A-Za-z0-9+/]{21}[AQgw]==$/;
/** An HTTP token (RFC 9110 5.6.2), as a subprotocol name must be. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * A WebSocket opening handshake that the server refuses: the client's
 * request is not a valid WebSocket upgrade (RFC 6455 4.2.1), or does not
 * offer the subprotocol the server requires.
 * {@linkcode upgradeWebSocket} throws it, as `Deno.upgradeWebSocket`
 * throws a `TypeError`; `status` is the answer it calls for: 400, 426
 * with the `headers` (`Sec-WebSocket-Version: 13`) for a version other
 * than 13, or 503 when the server takes no more WebSockets.
 *
 * @example Answering a failed handshake
 * ```ts
 * import {
 *   serve,
 *   upgradeWebSocket,
 *   WebSocketHandshakeError,
 * } from "@corothread/evthread/http";
 * import { assertEquals } from "@std/assert";
 *
 * await using server = serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
 *   try {
 *     const { socket, response } = upgradeWebSocket(req);
 *     socket.onmessage = (event) => socket.send(event.data);
 *     return response;
 *   } catch (error) {
 *     if (!(error instanceof WebSocketHandshakeError)) throw error;
 *     return new Response(error.message, {
 *       status: error.status,
 *       headers: error.headers,
 *     });
 *   }
 * });
 * // A plain GET is no WebSocket handshake.
 * const response = await fetch(`http://127.0.0.1:${server.addr.port}/`);
 * assertEquals(response.status, 400);
 * await response.body?.cancel();
 * ```
 */
export class WebSocketHandshakeError extends TypeError {
  /**
   * The status to answer with: 400 Bad Request, 426 Upgrade Required, or
   * 503 Service Unavailable.
   */
  readonly status: 400 | 426 | 503;
  /** Header fields the answer needs (for 426: `Sec-WebSocket-Version`). */
  readonly headers: Record<string, string>;

  /**
   * Constructs a new instance.
   *
   * @param message What was expected and what was received.
   * @param status 400 (the default), 426 for an unsupported version, 503
   * when no more WebSockets are taken.
   */
  constructor(message: string, status: 400 | 426 | 503 = 400) {
    super(message);
    this.name = "WebSocketHandshakeError";
    this.status = status;
    this.headers = status === 426 ? { "sec-websocket-version": "13" } : {};
  }
}

/** What the handshake agreed. */
export interface Handshake {
  /** The Sec-WebSocket-Accept value. */
  accept: string;
  /** The subprotocol selected, if any. */
  protocol: string | undefined;
}

/** Shows a received header value in a message, shortened. */
function shown(value: string | null): string {
  if (value === null) return "none";
  return JSON.stringify(value.length > 64 ? `${value.slice(0, 64)}...` : value);
}

/** The comma-separated tokens of a header field, trimmed. */
function tokens(value: string | null): string[] {
  if (value === null) return [];
  return value.split(",").map((token) => token.trim()).filter((t) => t !== "");
}

function refuse(message: string, status: 400 | 426 = 400): never {
  throw new WebSocketHandshakeError(
    `Invalid WebSocket handshake: ${message}`,
    status,
  );
}

/**
 * Checks that `request` opens a WebSocket (RFC 6455 4.2.1): GET, `Upgrade`
 * listing `websocket` and `Connection` listing `upgrade` (both ASCII
 * case-insensitive), `Sec-WebSocket-Version: 13`, and a
 * `Sec-WebSocket-Key` that is the base64 of exactly 16 bytes; that
 * `protocol`, if given, is one the client offered; and computes the accept
 * value. The HTTP version (1.1) is the server's to check: it hands over only
 * HTTP/1.1 upgrade requests without a body. Extensions are never accepted.
 *
 * @throws {WebSocketHandshakeError} naming the first check that failed.
 */
export function checkHandshake(
  request: Request,
  protocol: string | undefined,
): Handshake {
  if (request.method !== "GET") {
    refuse(`the method must be GET: received ${shown(request.method)}`);
  }
  const headers = request.headers;
  const upgrade = headers.get("upgrade");
  if (!tokens(upgrade).some((t) => t.toLowerCase() === "websocket")) {
    refuse(
      `the 'upgrade' header must contain "websocket": received ${
        shown(upgrade)
      }`,
    );
  }
  const connection = headers.get("connection");
  if (!tokens(connection).some((t) => t.toLowerCase() === "upgrade")) {
    refuse(
      `the 'connection' header must contain "upgrade": received ${
        shown(connection)
      }`,
    );
  }
  const version = headers.get("sec-websocket-version");
  if (version?.trim() !== "13") {
    refuse(
      `the 'sec-websocket-version' header must be 13: received ${
        shown(version)
      }`,
      426,
    );
  }
  const key = headers.get("sec-websocket-key")?.trim() ?? null;
  if (key === null || !KEY.test(key)) {
    refuse(
      `the 'sec-websocket-key' header must be the base64 of 16 bytes: received ${
        shown(key)
      }`,
    );
  }
  if (protocol !== undefined) {
    const offered = tokens(headers.get("sec-websocket-protocol"));
    if (!offered.includes(protocol)) {
      refuse(
        `the client did not offer the subprotocol ${
          JSON.stringify(protocol)
        }: it offered ${
          offered.length === 0
            ? "none"
            : offered.map((p) => JSON.stringify(p)).join(", ")
        }`,
      );
    }
  }
  return { accept: acceptKey(key), protocol };
}

/**
 * Checks the `protocol` option: a token (RFC 6455 4.1 requires subprotocol
 * names to be tokens).
 *
 * @throws {TypeError} if it is not a string, or not a token.
 */
export function checkProtocolOption(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "string" || !TOKEN.test(value)) {
    throw new TypeError(
      `'protocol' must be a subprotocol name (an HTTP token): received ${
        typeof value === "string" ? JSON.stringify(value) : String(value)
      }`,
    );
  }
  return value;
}

/** The Sec-WebSocket-Accept value for a Sec-WebSocket-Key. */
export function acceptKey(key: string): string {
  const digest = sha1(new TextEncoder().encode(key + GUID));
  return btoa(String.fromCharCode(...digest));
}
