// Copyright 2026 the @corothread/evthread authors. MIT license.
// The addresses trusted to send a PROXY header: IPv4 and IPv6 addresses and
// CIDR blocks, parsed once and matched numerically.

import { parseIPv4, parseIPv6 } from "./_ip_address.ts";

const PREFIX_LENGTH = /^(?:0|[1-9][0-9]*)$/;

/**
 * Parses an IPv4 or IPv6 address into four unsigned 32-bit words of its IPv6
 * form, IPv4 addresses as IPv4-mapped (`::ffff:a.b.c.d`); `undefined` if the
 * text is neither. `ipv4` tells whether the text was an IPv4 address.
 */
function parseIPWords(
  text: string,
): { words: number[]; ipv4: boolean } | undefined {
  if (text.includes(":")) {
    const groups = parseIPv6(text);
    if (groups === undefined) return undefined;
    const words = [0, 0, 0, 0];
    for (let i = 0; i < 4; i++) {
      words[i] = ((groups[2 * i]! << 16) | groups[2 * i + 1]!) >>> 0;
    }
    return { words, ipv4: false };
  }
  const ipv4 = parseIPv4(text);
  if (ipv4 === undefined) return undefined;
  return { words: [0, 0, 0xffff, ipv4], ipv4: true };
}

function show(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "symbol") return value.toString();
  if (value === null || typeof value !== "object") return String(value);
  return Object.prototype.toString.call(value);
}

/**
 * Creates a function that tells whether a peer's hostname is one of the
 * `trusted` addresses, the proxies allowed to send a PROXY header.
 *
 * The entries are IPv4 or IPv6 addresses (`"127.0.0.1"`, `"::1"`) or CIDR
 * blocks (`"10.0.0.0/8"`, `"fd00::/8"`, `"0.0.0.0/0"`); a block's host bits
 * are ignored (`"10.1.2.3/8"` is `"10.0.0.0/8"`). The list is parsed once and
 * matched numerically. IPv4 addresses are matched as their IPv4-mapped IPv6
 * form, so that `"::ffff:127.0.0.1"`, as Deno reports IPv4 peers of a
 * dual-stack listener, matches `"127.0.0.1"` and `"127.0.0.0/8"` (and, as
 * every address is in it, `"::/0"`).
 *
 * @param trusted The trusted addresses and CIDR blocks.
 * @returns A function of a hostname as Deno reports a peer's, returning
 * whether it is trusted; `false` for anything that is not an IP address (a
 * unix socket path, `""`, an address with a zone).
 * @throws {TypeError} if `trusted` is not an array of strings.
 * @throws {SyntaxError} if an entry is not an address or CIDR block.
 * @throws {RangeError} if an entry's prefix length exceeds 32 (IPv4) or 128
 * (IPv6).
 */
export function createTrustMatcher(
  trusted: readonly string[],
): (hostname: string) => boolean {
  if (!Array.isArray(trusted)) {
    throw new TypeError(
      `'trusted' must be an array of strings: received ${show(trusted)}`,
    );
  }
  // networks[4 * i + k] and masks[4 * i + k]: word k of entry i.
  const networks = new Uint32Array(trusted.length * 4);
  const masks = new Uint32Array(trusted.length * 4);
  for (let i = 0; i < trusted.length; i++) {
    const entry: unknown = trusted[i];
    const name = `trusted[${i}]`;
    if (typeof entry !== "string") {
      throw new TypeError(
        `'${name}' must be a string: received ${show(entry)}`,
      );
    }
    const slash = entry.indexOf("/");
    const address = parseIPWords(slash === -1 ? entry : entry.slice(0, slash));
    const prefixText = slash === -1 ? undefined : entry.slice(slash + 1);
    if (
      address === undefined ||
      (prefixText !== undefined && !PREFIX_LENGTH.test(prefixText))
    ) {
      throw new SyntaxError(
        `'${name}' must be an IPv4 or IPv6 address or CIDR block: received ${
          show(entry)
        }`,
      );
    }
    const max = address.ipv4 ? 32 : 128;
    const prefix = prefixText === undefined ? max : Number(prefixText);
    if (prefix > max) {
      throw new RangeError(
        `'${name}' must have a prefix length from 0 to ${max} for ${
          address.ipv4 ? "IPv4" : "IPv6"
        }: received ${show(entry)}`,
      );
    }
    let bits = address.ipv4 ? prefix + 96 : prefix;
    for (let k = 0; k < 4; k++) {
      const take = Math.min(32, Math.max(0, bits));
      bits -= take;
      const mask = take === 0 ? 0 : (0xffffffff << (32 - take)) >>> 0;
      masks[4 * i + k] = mask;
      networks[4 * i + k] = (address.words[k]! & mask) >>> 0;
    }
  }
  const count = trusted.length;
  return function isTrusted(hostname: string): boolean {
    if (typeof hostname !== "string" || count === 0) return false;
    const address = parseIPWords(hostname);
    if (address === undefined) return false;
    const [w0, w1, w2, w3] = address.words as [number, number, number, number];
    for (let i = 0; i < 4 * count; i += 4) {
      if (
        ((w0 & masks[i]!) >>> 0) === networks[i] &&
        ((w1 & masks[i + 1]!) >>> 0) === networks[i + 1] &&
        ((w2 & masks[i + 2]!) >>> 0) === networks[i + 2] &&
        ((w3 & masks[i + 3]!) >>> 0) === networks[i + 3]
      ) {
        return true;
      }
    }
    return false;
  };
}
