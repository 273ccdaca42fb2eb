// Copyright 2026 the @corothread/evthread authors. MIT license.
// The PROXY protocol header (HAProxy's, versions 1 and 2), parsed from the
// bytes at the start of a connection. Pure functions over bytes, with no I/O,
// so that they can be tested and fuzzed alone.

import {
  formatIPv6,
  isIPv4Prefix,
  isIPv6Prefix,
  parseIPv4,
  parseIPv6,
} from "./_ip_address.ts";
import { ProxyProtocolError } from "./errors.ts";

/** A type-length-value record of a version 2 header. */
export interface ProxyTlv {
  /** The record's type, 0-255 (`0x01` ALPN, `0x02` authority, ...). */
  type: number;
  /** The record's value: a copy, not a view of the parsed bytes. */
  value: Uint8Array;
}

/** A parsed PROXY protocol header. */
export interface ProxyHeader {
  /** The protocol version: 1 (text) or 2 (binary). */
  version: 1 | 2;
  /**
   * `"proxy"`: the addresses are the original connection's. `"local"`: a
   * health check or the proxy's own connection, use the real addresses
   * (version 1's `UNKNOWN` maps to `"local"`).
   */
  command: "proxy" | "local";
  /**
   * The original client (source) address; `undefined` for `"local"`, and for
   * a version 2 header whose family or transport is unspecified.
   */
  remoteAddr: Deno.NetAddr | Deno.UnixAddr | undefined;
  /** The original destination address; `undefined` when `remoteAddr` is. */
  localAddr: Deno.NetAddr | Deno.UnixAddr | undefined;
  /** The version 2 TLVs in order (empty for version 1). */
  tlvs: ProxyTlv[];
}

/**
 * What {@linkcode parseProxyHeader} makes of the bytes so far:
 *
 * - `{ header, length }`: a complete header, occupying the first `length`
 *   bytes; the bytes after it are application data.
 * - `{ need }`: a valid prefix so far; call again once at least `need` bytes
 *   in total are available.
 * - `null`: not a PROXY header at all.
 */
export type ProxyParseResult =
  | { header: ProxyHeader; length: number }
  | { need: number }
  | null;

/** The longest version 1 line, CRLF included. */
const V1_MAX_LENGTH = 107;
/** `"PROXY "` in ASCII. */
const V1_PREFIX = [0x50, 0x52, 0x4f, 0x58, 0x59, 0x20];
/** The 12-byte version 2 signature. */
export const V2_SIGNATURE: readonly number[] = [
  0x0d,
  0x0a,
  0x0d,
  0x0a,
  0x00,
  0x0d,
  0x0a,
  0x51,
  0x55,
  0x49,
  0x54,
  0x0a,
];
/** The fixed part of a version 2 header: signature, 4 bytes, length. */
const V2_FIXED_LENGTH = 16;
/** The address block sizes of the version 2 families, by family nibble. */
const V2_BLOCK_SIZES = [0, 12, 36, 216];
const V2_FAMILY_NAMES = ["AF_UNSPEC", "AF_INET", "AF_INET6", "AF_UNIX"];
/** The length of a version 2 AF_UNIX address. */
const UNIX_PATH_LENGTH = 108;
const CR = 0x0d;
const LF = 0x0a;

const V1_PROTOCOLS = ["TCP4", "TCP6", "UNKNOWN"];
const V1_FIELD_NAMES = [
  "",
  "",
  "a source address",
  "a destination address",
  "a source port",
  "a destination port",
];
const PORT_PREFIX = /^(?:0|[1-9][0-9]{0,4})?$/;
const PORT = /^(?:0|[1-9][0-9]{0,4})$/;

const utf8 = new TextDecoder();

/**
 * Parses a PROXY protocol header (version 1 or 2) at the start of `bytes`,
 * the bytes buffered so far at the start of a connection.
 *
 * It decides as early as the bytes allow: `null` as soon as they cannot start
 * a header, an error as soon as they cannot start a valid one, and otherwise
 * `{ need }` until the header is complete. `need` never exceeds the length of
 * the header being received, so waiting for it cannot stall a sender that sent
 * only the header. Bytes after the header are never read.
 *
 * Version 1 is checked as strictly as the specification describes it: exactly
 * `"PROXY"`, single spaces, `TCP4` with dotted-quad addresses without leading
 * zeros, or `TCP6` with IPv6 addresses, decimal ports 0-65535 without leading
 * zeros, a CRLF ending within 107 bytes; after `UNKNOWN` anything up to the
 * CRLF is ignored. Version 2 needs version 2 and the LOCAL or PROXY command;
 * a PROXY header needs a stream (or unspecified) transport, an address length
 * covering its family's addresses, and well-formed TLVs after them. A LOCAL
 * header's family and addresses are ignored, as the specification requires;
 * its TLVs are returned when well-formed and dropped otherwise.
 *
 * @param bytes The bytes received so far, from the first byte of the
 * connection.
 * @returns The header and its length, the byte count to wait for, or `null`.
 * @throws {ProxyProtocolError} if the bytes start a PROXY header but not a
 * valid one.
 */
export function parseProxyHeader(bytes: Uint8Array): ProxyParseResult {
  if (bytes.length === 0) return { need: 1 };
  if (bytes[0] === V1_PREFIX[0]) return parseV1(bytes);
  if (bytes[0] === V2_SIGNATURE[0]) return parseV2(bytes);
  return null;
}

// Version 1 -------------------------------------------------------------------

function v1Error(expected: string, received: string): ProxyProtocolError {
  return new ProxyProtocolError(
    `Invalid PROXY v1 header: expected ${expected}: received ${
      JSON.stringify(received)
    }`,
  );
}

function latin1(bytes: Uint8Array, end: number): string {
  let text = "";
  for (let i = 0; i < end; i++) text += String.fromCharCode(bytes[i]!);
  return text;
}

function parseV1(bytes: Uint8Array): ProxyParseResult {
  const prefixEnd = Math.min(bytes.length, V1_PREFIX.length);
  for (let i = 1; i < prefixEnd; i++) {
    if (bytes[i] !== V1_PREFIX[i]) return null;
  }
  if (bytes.length < V1_PREFIX.length) return { need: bytes.length + 1 };

  // The CR of the CRLF can be at index 105 at the latest.
  const scanEnd = Math.min(bytes.length, V1_MAX_LENGTH - 1);
  let end = V1_PREFIX.length;
  while (end < scanEnd && bytes[end] !== CR && bytes[end] !== LF) end++;
  const line = latin1(bytes, end);
  if (end === scanEnd) {
    checkV1Fields(line, false);
    if (end === V1_MAX_LENGTH - 1) {
      throw v1Error(
        `a line ending in CRLF within ${V1_MAX_LENGTH} bytes`,
        bytes.length > end
          ? `${line}${String.fromCharCode(bytes[end]!)}`
          : line,
      );
    }
    return { need: bytes.length + 1 };
  }
  if (bytes[end] === LF) {
    throw v1Error("a line ending in CRLF, not a bare LF", `${line}\n`);
  }
  // A CR: the line is final, whatever follows it.
  const header = checkV1Fields(line, true);
  if (end + 1 === bytes.length) return { need: end + 2 };
  if (bytes[end + 1] !== LF) {
    throw v1Error(
      "a line ending in CRLF, not a bare CR",
      `${line}\r${String.fromCharCode(bytes[end + 1]!)}`,
    );
  }
  return { header, length: end + 2 };
}

/**
 * Checks the fields of a version 1 line (without its CRLF). When `complete` is
 * false the line is still arriving: its last field is checked as a prefix, and
 * the result is `undefined`.
 */
function checkV1Fields(line: string, complete: true): ProxyHeader;
function checkV1Fields(line: string, complete: false): undefined;
function checkV1Fields(
  line: string,
  complete: boolean,
): ProxyHeader | undefined {
  const fields = line.split(" ");
  const last = fields.length - 1;
  const protocol = fields[1]!;
  if (!complete && last === 1) {
    if (!V1_PROTOCOLS.some((name) => name.startsWith(protocol))) {
      throw v1Error('"TCP4", "TCP6" or "UNKNOWN" after "PROXY "', line);
    }
    return undefined;
  }
  if (protocol === "UNKNOWN") {
    // Anything may follow up to the CRLF; the receiver ignores it.
    return complete ? localV1Header() : undefined;
  }
  if (protocol !== "TCP4" && protocol !== "TCP6") {
    throw v1Error('"TCP4", "TCP6" or "UNKNOWN" after "PROXY "', line);
  }
  const ipv6 = protocol === "TCP6";
  for (let i = 2; i <= last; i++) {
    const field = fields[i]!;
    const partial = !complete && i === last;
    if (i > 5) {
      throw v1Error("a CRLF after the destination port", line);
    }
    if (field === "" && !partial) {
      throw v1Error("single spaces between fields", line);
    }
    if (i < 4) {
      const ok = partial
        ? (ipv6 ? isIPv6Prefix(field) : isIPv4Prefix(field))
        : (ipv6 ? parseIPv6(field) : parseIPv4(field)) !== undefined;
      if (!ok) {
        throw v1Error(
          ipv6
            ? `${V1_FIELD_NAMES[i]} in IPv6 notation for TCP6`
            : `${
              V1_FIELD_NAMES[i]
            } as an IPv4 dotted quad without leading zeros for TCP4`,
          field,
        );
      }
    } else {
      const ok = partial
        ? PORT_PREFIX.test(field) && !(Number(field) > 0xffff)
        : PORT.test(field) && Number(field) <= 0xffff;
      if (!ok) {
        throw v1Error(
          `${V1_FIELD_NAMES[i]} number in 0-65535 without leading zeros`,
          field,
        );
      }
    }
  }
  if (!complete) return undefined;
  if (last < 5) {
    throw v1Error(
      `4 fields after "${protocol}" (source and destination address and port)`,
      line,
    );
  }
  const hostname = (text: string) => ipv6 ? formatIPv6(parseIPv6(text)!) : text;
  return {
    version: 1,
    command: "proxy",
    remoteAddr: {
      transport: "tcp",
      hostname: hostname(fields[2]!),
      port: Number(fields[4]),
    },
    localAddr: {
      transport: "tcp",
      hostname: hostname(fields[3]!),
      port: Number(fields[5]),
    },
    tlvs: [],
  };
}

function localV1Header(): ProxyHeader {
  return {
    version: 1,
    command: "local",
    remoteAddr: undefined,
    localAddr: undefined,
    tlvs: [],
  };
}

// Version 2 -------------------------------------------------------------------

function v2Error(message: string): ProxyProtocolError {
  return new ProxyProtocolError(`Invalid PROXY v2 header: ${message}`);
}

function hex(byte: number): string {
  return `0x${byte.toString(16).padStart(2, "0")}`;
}

function parseV2(bytes: Uint8Array): ProxyParseResult {
  const signatureEnd = Math.min(bytes.length, V2_SIGNATURE.length);
  for (let i = 1; i < signatureEnd; i++) {
    if (bytes[i] !== V2_SIGNATURE[i]) return null;
  }
  if (bytes.length <= 12) return { need: V2_FIXED_LENGTH };

  const versionCommand = bytes[12]!;
  if (versionCommand >> 4 !== 2) {
    throw v2Error(
      `expected version 2 in the high nibble of byte 13: received ${
        hex(versionCommand)
      }`,
    );
  }
  const command = versionCommand & 0xf;
  if (command > 1) {
    throw v2Error(
      `expected the command LOCAL (0x20) or PROXY (0x21) in byte 13: received ${
        hex(versionCommand)
      }`,
    );
  }
  const local = command === 0;
  if (bytes.length === 13) return { need: V2_FIXED_LENGTH };

  // A LOCAL header's family is ignored; a PROXY header's must be valid.
  const familyTransport = bytes[13]!;
  const family = familyTransport >> 4;
  const transport = familyTransport & 0xf;
  if (!local) {
    if (family > 3) {
      throw v2Error(
        `expected the address family AF_UNSPEC, AF_INET, AF_INET6 or AF_UNIX in the high nibble of byte 14: received ${
          hex(familyTransport)
        }`,
      );
    }
    if (transport === 2) {
      throw v2Error(
        `expected the transport STREAM or UNSPEC in the low nibble of byte 14, DGRAM is not supported: received ${
          hex(familyTransport)
        }`,
      );
    }
    if (transport > 2) {
      throw v2Error(
        `expected the transport STREAM or UNSPEC in the low nibble of byte 14: received ${
          hex(familyTransport)
        }`,
      );
    }
  }
  if (bytes.length < V2_FIXED_LENGTH) return { need: V2_FIXED_LENGTH };

  const length = V2_FIXED_LENGTH + ((bytes[14]! << 8) | bytes[15]!);
  const blockSize = V2_BLOCK_SIZES[family] ?? 0;
  const useAddresses = !local && family !== 0 && transport !== 0;
  if (useAddresses && length - V2_FIXED_LENGTH < blockSize) {
    throw v2Error(
      `expected an address length of at least ${blockSize} for ${
        V2_FAMILY_NAMES[family]
      }: received ${length - V2_FIXED_LENGTH}`,
    );
  }
  if (bytes.length < length) return { need: length };

  const header: ProxyHeader = {
    version: 2,
    command: local ? "local" : "proxy",
    remoteAddr: undefined,
    localAddr: undefined,
    tlvs: [],
  };
  const block = V2_FIXED_LENGTH;
  if (useAddresses) {
    if (family === 3) {
      header.remoteAddr = unixAddr(bytes, block);
      header.localAddr = unixAddr(bytes, block + UNIX_PATH_LENGTH);
    } else {
      const size = family === 1 ? 4 : 16;
      const ports = block + 2 * size;
      const format = family === 1 ? formatIPv4Bytes : formatIPv6Bytes;
      header.remoteAddr = {
        transport: "tcp",
        hostname: format(bytes, block),
        port: (bytes[ports]! << 8) | bytes[ports + 1]!,
      };
      header.localAddr = {
        transport: "tcp",
        hostname: format(bytes, block + size),
        port: (bytes[ports + 2]! << 8) | bytes[ports + 3]!,
      };
    }
    header.tlvs = parseTlvs(bytes, block + blockSize, length);
  } else if (length - block >= blockSize) {
    // The addresses are ignored, and so are TLVs that do not parse.
    try {
      header.tlvs = parseTlvs(bytes, block + blockSize, length);
    } catch (error) {
      if (!(error instanceof ProxyProtocolError)) throw error;
    }
  }
  return { header, length };
}

function parseTlvs(bytes: Uint8Array, start: number, end: number): ProxyTlv[] {
  const tlvs: ProxyTlv[] = [];
  let offset = start;
  while (offset < end) {
    if (end - offset < 3) {
      throw v2Error(
        `expected a 3-byte TLV type and length at offset ${offset}: received ${
          end - offset
        } bytes before the end of the header`,
      );
    }
    const type = bytes[offset]!;
    const size = (bytes[offset + 1]! << 8) | bytes[offset + 2]!;
    const valueStart = offset + 3;
    if (size > end - valueStart) {
      throw v2Error(
        `expected the TLV of type ${
          hex(type)
        } at offset ${offset} to end within the header's ${end} bytes: received a value length of ${size}, ${
          end - valueStart
        } bytes left`,
      );
    }
    tlvs.push({ type, value: bytes.slice(valueStart, valueStart + size) });
    offset = valueStart + size;
  }
  return tlvs;
}

function unixAddr(bytes: Uint8Array, start: number): Deno.UnixAddr {
  let end = start;
  const limit = start + UNIX_PATH_LENGTH;
  while (end < limit && bytes[end] !== 0) end++;
  return { transport: "unix", path: utf8.decode(bytes.subarray(start, end)) };
}

function formatIPv4Bytes(bytes: Uint8Array, start: number): string {
  return `${bytes[start]}.${bytes[start + 1]}.${bytes[start + 2]}.${
    bytes[start + 3]
  }`;
}

function formatIPv6Bytes(bytes: Uint8Array, start: number): string {
  const groups: number[] = [];
  for (let i = start; i < start + 16; i += 2) {
    groups.push((bytes[i]! << 8) | bytes[i + 1]!);
  }
  return formatIPv6(groups);
}
