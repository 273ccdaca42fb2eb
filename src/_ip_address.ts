// Copyright 2026 the @corothread/evthread authors. MIT license.
// The text forms of IPv4 and IPv6 addresses: parsing (strictly, as the PROXY
// protocol and the trusted-address list need it), checking a prefix of one,
// and formatting IPv6 addresses as Deno prints them.

const DECIMAL = /^(?:0|[1-9][0-9]*)$/;
const HEX_GROUP = /^[0-9A-Fa-f]{1,4}$/;
const IPV6_PREFIX_CHARS = /^[0-9A-Fa-f:.]{0,45}$/;

/**
 * Parses a dotted-quad IPv4 address (exactly four decimal numbers 0-255, no
 * leading zeros) into an unsigned 32-bit number.
 */
export function parseIPv4(text: string): number | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  let value = 0;
  for (const part of parts) {
    if (part.length > 3 || !DECIMAL.test(part)) return undefined;
    const octet = Number(part);
    if (octet > 255) return undefined;
    value = value * 256 + octet;
  }
  return value;
}

/**
 * Parses an IPv6 address in any RFC 4291 text form (hex groups of 1-4 digits,
 * at most one `::`, optionally ending in a dotted quad; no zone) into its 8
 * groups.
 */
export function parseIPv6(text: string): number[] | undefined {
  if (text.length < 2 || text.length > 45) return undefined;
  const gap = text.indexOf("::");
  if (gap !== -1 && text.indexOf("::", gap + 1) !== -1) return undefined;
  const head = gap === -1 ? text : text.slice(0, gap);
  const tail = gap === -1 ? "" : text.slice(gap + 2);
  const headGroups = parseGroups(head, gap === -1);
  const tailGroups = parseGroups(tail, true);
  if (headGroups === undefined || tailGroups === undefined) return undefined;
  const count = headGroups.length + tailGroups.length;
  if (gap === -1) return count === 8 ? headGroups : undefined;
  if (count > 7) return undefined;
  return [
    ...headGroups,
    ...new Array<number>(8 - count).fill(0),
    ...tailGroups,
  ];
}

/**
 * Parses colon-separated hex groups; when `last` is true the text ends the
 * address, so its final piece may be a dotted quad (two groups).
 */
function parseGroups(text: string, last: boolean): number[] | undefined {
  if (text === "") return [];
  const pieces = text.split(":");
  const groups: number[] = [];
  for (let i = 0; i < pieces.length; i++) {
    const piece = pieces[i]!;
    if (HEX_GROUP.test(piece)) {
      groups.push(parseInt(piece, 16));
    } else if (last && i === pieces.length - 1) {
      const ipv4 = parseIPv4(piece);
      if (ipv4 === undefined) return undefined;
      groups.push(ipv4 >>> 16, ipv4 & 0xffff);
    } else {
      return undefined;
    }
  }
  return groups;
}

/**
 * Formats 8 IPv6 groups as RFC 5952 text, as Deno prints addresses: lower
 * case, no leading zeros, the longest run of two or more zero groups (the
 * first of equal runs) as `::`, and IPv4-mapped addresses as `::ffff:a.b.c.d`.
 */
export function formatIPv6(groups: readonly number[]): string {
  if (
    groups[0] === 0 && groups[1] === 0 && groups[2] === 0 &&
    groups[3] === 0 && groups[4] === 0 && groups[5] === 0xffff
  ) {
    const high = groups[6]!;
    const low = groups[7]!;
    return `::ffff:${high >> 8}.${high & 0xff}.${low >> 8}.${low & 0xff}`;
  }
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const text = (from: number, to: number) =>
    groups.slice(from, to).map((group) => group.toString(16)).join(":");
  if (bestStart === -1) return text(0, 8);
  return `${text(0, bestStart)}::${text(bestStart + bestLength, 8)}`;
}

/** Whether `text` can start a dotted-quad IPv4 address. */
export function isIPv4Prefix(text: string): boolean {
  const parts = text.split(".");
  if (parts.length > 4) return false;
  return parts.every((part, i) =>
    (part === "" && i === parts.length - 1) ||
    (part.length <= 3 && DECIMAL.test(part) && Number(part) <= 255)
  );
}

/**
 * Whether `text` can start an IPv6 address: conditions that, once broken, stay
 * broken however the text goes on.
 */
export function isIPv6Prefix(text: string): boolean {
  if (!IPV6_PREFIX_CHARS.test(text) || text.includes(":::")) return false;
  const gap = text.indexOf("::");
  if (gap !== -1 && text.indexOf("::", gap + 1) !== -1) return false;
  const pieces = text.split(":");
  let groups = 0;
  for (let i = 0; i < pieces.length; i++) {
    const piece = pieces[i]!;
    if (piece.includes(".")) {
      if (i !== pieces.length - 1 || !isIPv4Prefix(piece)) return false;
      groups += 2;
    } else if (piece.length > 4) {
      return false;
    } else if (piece !== "") {
      groups++;
    }
  }
  return groups <= (gap === -1 ? 8 : 7);
}

/**
 * The group a peer's address counts in, for the per-address limits of the
 * task pool: an IPv4 address is its own group; an IPv6 address counts in its
 * network of `ipv6PrefixLength` bits (`"2001:db8:1:2::/64"`), since one
 * host usually holds a whole /64; an IPv4-mapped IPv6 address
 * (`::ffff:a.b.c.d`, as a dual-stack listener reports IPv4 peers) is the
 * IPv4 address. A hostname that is not an IP address (one with a zone, or
 * anything else) is its own group, as it is.
 */
export function addressGroup(
  hostname: string,
  ipv6PrefixLength: number,
): string {
  if (!hostname.includes(":")) return hostname;
  const groups = parseIPv6(hostname);
  if (groups === undefined) return hostname;
  if (
    groups[0] === 0 && groups[1] === 0 && groups[2] === 0 &&
    groups[3] === 0 && groups[4] === 0 && groups[5] === 0xffff
  ) {
    const high = groups[6]!;
    const low = groups[7]!;
    return `${high >> 8}.${high & 0xff}.${low >> 8}.${low & 0xff}`;
  }
  if (ipv6PrefixLength >= 128) return formatIPv6(groups);
  let bits = ipv6PrefixLength;
  for (let i = 0; i < 8; i++) {
    const take = Math.min(16, Math.max(0, bits));
    bits -= take;
    groups[i] = take === 0
      ? 0
      : groups[i]! & ((0xffff << (16 - take)) & 0xffff);
  }
  return `${formatIPv6(groups)}/${ipv6PrefixLength}`;
}
