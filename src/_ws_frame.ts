// Copyright 2026 the @corothread/evthread authors. MIT license.
// The WebSocket frame (RFC 6455 5.2), server side: headers of client frames
// checked and decoded in two steps (the first 2 bytes say how many more
// make the header), payloads unmasked in place, server frames encoded
// unmasked and unfragmented.
//
//   byte 0: FIN, RSV1-3, opcode (4 bits)
//   byte 1: MASK, payload length (7 bits: 0-125, 126 = 16-bit length
//           follows, 127 = 64-bit length follows)
//   then the extended length, then the 4-byte masking key (client frames)

/** Opcodes. */
export const CONTINUATION = 0x0;
export const TEXT = 0x1;
export const BINARY = 0x2;
export const CLOSE = 0x8;
export const PING = 0x9;
export const PONG = 0xa;

/** Most payload bytes of a control frame. */
export const MAX_CONTROL_PAYLOAD = 125;

/**
 * A violation of the framing rules: the connection fails with `code`
 * (1002, or 1009 for a frame over the size limit).
 */
export class FrameError extends Error {
  /** The close code to fail the connection with. */
  readonly code: number;

  constructor(code: number, message: string) {
    super(message);
    this.name = "FrameError";
    this.code = code;
  }
}

/** A decoded frame header. */
export interface FrameHeader {
  fin: boolean;
  opcode: number;
  /** Payload length in bytes (at most `Number.MAX_SAFE_INTEGER`). */
  length: number;
  /** The masking key, as a big-endian 32-bit number. */
  mask: number;
}

function protocolError(message: string): FrameError {
  return new FrameError(1002, message);
}

/**
 * Checks the first two bytes of a client frame and returns how many header
 * bytes follow them (extended length and masking key). Reserved bits (no
 * extension is ever negotiated), unknown opcodes, fragmented or long control
 * frames and unmasked frames are protocol errors.
 *
 * @throws {FrameError} with code 1002.
 */
export function headerRest(b0: number, b1: number): number {
  if ((b0 & 0x70) !== 0) {
    throw protocolError(
      `reserved bits must be 0 without a negotiated extension: received RSV ${
        (b0 >> 4) & 7
      }`,
    );
  }
  const opcode = b0 & 0x0f;
  if (opcode >= 0x8) {
    if (opcode > PONG) {
      throw protocolError(`unknown control opcode ${opcode}`);
    }
    if ((b0 & 0x80) === 0) {
      throw protocolError("control frames must not be fragmented");
    }
    if ((b1 & 0x7f) > MAX_CONTROL_PAYLOAD) {
      throw protocolError(
        `control frames carry at most 125 bytes: received length code ${
          b1 & 0x7f
        }`,
      );
    }
  } else if (opcode > BINARY) {
    throw protocolError(`unknown data opcode ${opcode}`);
  }
  if ((b1 & 0x80) === 0) {
    throw protocolError("client frames must be masked");
  }
  const len7 = b1 & 0x7f;
  return (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + 4;
}

/**
 * Decodes a whole client frame header (the 2 bytes `headerRest` checked,
 * then the rest). The length must use the fewest bytes that hold it
 * (RFC 6455 5.2 says it MUST; a frame that does not is malformed), and a
 * 64-bit length must have its top bit clear.
 *
 * @throws {FrameError} with code 1002, or 1009 for a length above
 * `maxLength`.
 */
export function decodeHeader(
  bytes: Uint8Array,
  maxLength: number,
): FrameHeader {
  const b0 = bytes[0]!;
  const len7 = bytes[1]! & 0x7f;
  let length = len7;
  let at = 2;
  if (len7 === 126) {
    length = (bytes[2]! << 8) | bytes[3]!;
    if (length < 126) {
      throw protocolError(
        `a 16-bit length must be at least 126: received ${length}`,
      );
    }
    at = 4;
  } else if (len7 === 127) {
    const high = ((bytes[2]! << 24) | (bytes[3]! << 16) | (bytes[4]! << 8) |
      bytes[5]!) >>> 0;
    const low = ((bytes[6]! << 24) | (bytes[7]! << 16) | (bytes[8]! << 8) |
      bytes[9]!) >>> 0;
    if (high >= 0x8000_0000) {
      throw protocolError("a 64-bit length must have its top bit clear");
    }
    if (high === 0 && low < 65_536) {
      throw protocolError(
        `a 64-bit length must be at least 65536: received ${low}`,
      );
    }
    // Above 2^53 the number is inexact, but then it is over any limit.
    length = high * 2 ** 32 + low;
    at = 10;
  }
  if (length > maxLength) {
    throw new FrameError(
      1009,
      `a frame of ${length} bytes is over the limit of ${maxLength}`,
    );
  }
  const mask = ((bytes[at]! << 24) | (bytes[at + 1]! << 16) |
    (bytes[at + 2]! << 8) | bytes[at + 3]!) >>> 0;
  return { fin: (b0 & 0x80) !== 0, opcode: b0 & 0x0f, length, mask };
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * Unmasks `bytes` in place: they are the payload's bytes from `offset` on
 * (the key repeats every 4 bytes of the payload).
 */
export function unmask(bytes: Uint8Array, mask: number, offset: number): void {
  const n = bytes.byteLength;
  if (n < 32) {
    // Small payloads (most messages): no key array, no word view.
    for (let i = 0; i < n; i++) {
      bytes[i] = bytes[i]! ^
        ((mask >>> ((3 - ((offset + i) & 3)) << 3)) & 0xff);
    }
    return;
  }
  const keys = [
    mask >>> 24,
    (mask >>> 16) & 0xff,
    (mask >>> 8) & 0xff,
    mask & 0xff,
  ];
  let i = 0;
  // One byte at a time up to a 4-byte boundary in memory, then 4 at a time.
  while (i < n && ((bytes.byteOffset + i) & 3) !== 0) {
    bytes[i] = bytes[i]! ^ keys[(offset + i) & 3]!;
    i++;
  }
  const words = (n - i) >> 2;
  if (words > 0) {
    const k0 = keys[(offset + i) & 3]!;
    const k1 = keys[(offset + i + 1) & 3]!;
    const k2 = keys[(offset + i + 2) & 3]!;
    const k3 = keys[(offset + i + 3) & 3]!;
    const key = LITTLE_ENDIAN
      ? (k0 | (k1 << 8) | (k2 << 16) | (k3 << 24))
      : ((k0 << 24) | (k1 << 16) | (k2 << 8) | k3);
    const view = new Uint32Array(bytes.buffer, bytes.byteOffset + i, words);
    for (let w = 0; w < words; w++) view[w] = view[w]! ^ key;
    i += words * 4;
  }
  for (; i < n; i++) bytes[i] = bytes[i]! ^ keys[(offset + i) & 3]!;
}

/** Bytes of an unmasked frame header for a payload of `length` bytes. */
function headerSize(length: number): number {
  return length < 126 ? 2 : length < 65_536 ? 4 : 10;
}

/** Encodes an unfragmented, unmasked server frame. */
export function encodeFrame(
  opcode: number,
  payload: Uint8Array,
): Uint8Array<ArrayBuffer> {
  const length = payload.byteLength;
  const at = headerSize(length);
  const frame = new Uint8Array(at + length);
  frame[0] = 0x80 | opcode;
  if (at === 2) {
    frame[1] = length;
  } else if (at === 4) {
    frame[1] = 126;
    frame[2] = length >> 8;
    frame[3] = length & 0xff;
  } else {
    frame[1] = 127;
    const view = new DataView(frame.buffer);
    view.setUint32(2, Math.floor(length / 2 ** 32));
    view.setUint32(6, length >>> 0);
  }
  frame.set(payload, at);
  return frame;
}
