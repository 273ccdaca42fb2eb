// Copyright 2026 the @corothread/evthread authors. MIT license.
// WebSocket close codes (RFC 6455 7.4, and the IANA registry) and the close
// frame's body: a 2-byte code, then a UTF-8 reason (at most 123 bytes, as a
// control frame carries at most 125).

import { decodeUtf8 } from "./_ws_utf8.ts";

/** Normal closure. */
export const NORMAL = 1000;
/** The endpoint is going away (server shutdown). */
export const GOING_AWAY = 1001;
/** A protocol error. */
export const PROTOCOL_ERROR = 1002;
/** Reported, never sent: the close frame had no code. */
export const NO_STATUS = 1005;
/** Reported, never sent: the connection closed without a close frame. */
export const ABNORMAL = 1006;
/** A text message (or close reason) that is not valid UTF-8. */
export const INVALID_PAYLOAD = 1007;
/** A message larger than the receiver takes. */
export const MESSAGE_TOO_BIG = 1009;

/** Most bytes of a close reason: 125 of a control frame, less the code. */
export const MAX_REASON_BYTES = 123;

/**
 * Whether `code` may appear in a close frame on the wire: 1000-1003,
 * 1007-1014 (1012-1014 registered after RFC 6455), 3000-4999 (registered
 * and private use). Never 1004 (reserved), 1005, 1006 and 1015 (reported
 * only, never sent), 0-999, 1016-2999 (unassigned), 5000 and above.
 */
export function validWireCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
    (code >= 3000 && code <= 4999);
}

/** A close frame's body, as received. */
export type CloseBody =
  | { ok: true; code: number; reason: string }
  | { ok: false; code: number; problem: string };

/**
 * Parses a received close frame's body: `NO_STATUS` for an empty one; a
 * protocol error (1002) for a 1-byte body or a code not valid on the wire;
 * 1007 for a reason that is not UTF-8.
 */
export function parseCloseBody(body: Uint8Array): CloseBody {
  if (body.byteLength === 0) return { ok: true, code: NO_STATUS, reason: "" };
  if (body.byteLength === 1) {
    return {
      ok: false,
      code: PROTOCOL_ERROR,
      problem:
        "a close frame's body must be empty or at least 2 bytes: received 1",
    };
  }
  const code = (body[0]! << 8) | body[1]!;
  if (!validWireCode(code)) {
    return {
      ok: false,
      code: PROTOCOL_ERROR,
      problem: `a close frame must carry a valid close code: received ${code}`,
    };
  }
  const reason = decodeUtf8(body.subarray(2));
  if (reason === null) {
    return {
      ok: false,
      code: INVALID_PAYLOAD,
      problem: "a close frame's reason must be valid UTF-8",
    };
  }
  return { ok: true, code, reason };
}

/** A close frame's body: empty without a code, else the code and reason. */
export function closeBody(
  code: number | undefined,
  reason: Uint8Array | undefined,
): Uint8Array<ArrayBuffer> {
  if (code === undefined) return new Uint8Array(0);
  const body = new Uint8Array(2 + (reason?.byteLength ?? 0));
  body[0] = code >> 8;
  body[1] = code & 0xff;
  if (reason !== undefined) body.set(reason, 2);
  return body;
}
