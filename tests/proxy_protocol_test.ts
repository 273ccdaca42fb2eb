// Copyright 2026 the @corothread/evthread authors. MIT license.

import {
  parseProxyHeader,
  type ProxyHeader,
  type ProxyParseResult,
  type ProxyTlv,
  V2_SIGNATURE,
} from "../src/_proxy_protocol.ts";
import { createTrustMatcher } from "../src/_trusted_addresses.ts";
import { ProxyProtocolError } from "../src/errors.ts";
import {
  assert,
  assertEquals,
  assertGreater,
  assertInstanceOf,
  assertLessOrEqual,
  assertStrictEquals,
  assertStringIncludes,
  assertThrows,
  fail,
} from "@std/assert";

// Helpers ---------------------------------------------------------------------

/** Encodes text as one byte per character (latin1). */
function latin1(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

function concat(...parts: (Uint8Array | number[])[]): Uint8Array {
  const length = parts.reduce((sum, part) => sum + part.length, 0);
  const bytes = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    bytes.set(part, offset);
    offset += part.length;
  }
  return bytes;
}

const SIGNATURE = [...V2_SIGNATURE];

/**
 * Builds a version 2 header; `length` overrides the length field (by default
 * the payload's length).
 */
function v2(
  versionCommand: number,
  familyTransport: number,
  payload: Uint8Array | number[],
  length = payload.length,
): Uint8Array {
  return concat(
    SIGNATURE,
    [versionCommand, familyTransport, length >> 8, length & 0xff],
    payload,
  );
}

function ipv4(text: string): number[] {
  return text.split(".").map(Number);
}

/** The 16 bytes of an IPv6 address written as 8 full groups. */
function ipv6(text: string): number[] {
  const groups = text.split(":");
  assertEquals(groups.length, 8, `test address ${text} needs 8 groups`);
  return groups.flatMap((group) => {
    const value = parseInt(group, 16);
    return [value >> 8, value & 0xff];
  });
}

function port(value: number): number[] {
  return [value >> 8, value & 0xff];
}

function unixPath(path: string): number[] {
  const bytes = new Array<number>(108).fill(0);
  latin1(path).forEach((byte, i) => bytes[i] = byte);
  return bytes;
}

function tlv(type: number, value: Uint8Array | number[]): number[] {
  return [type, value.length >> 8, value.length & 0xff, ...value];
}

function tcp(hostname: string, port: number): Deno.NetAddr {
  return { transport: "tcp", hostname, port };
}

function proxied(
  version: 1 | 2,
  remoteAddr: Deno.NetAddr | Deno.UnixAddr,
  localAddr: Deno.NetAddr | Deno.UnixAddr,
  tlvs: ProxyTlv[] = [],
): ProxyHeader {
  return { version, command: "proxy", remoteAddr, localAddr, tlvs };
}

function unaddressed(
  version: 1 | 2,
  command: "proxy" | "local",
  tlvs: ProxyTlv[] = [],
): ProxyHeader {
  return {
    version,
    command,
    remoteAddr: undefined,
    localAddr: undefined,
    tlvs,
  };
}

function show(bytes: Uint8Array): string {
  return JSON.stringify(String.fromCharCode(...bytes.subarray(0, 120)));
}

/** Parses and returns the complete header, failing on anything else. */
function parseComplete(
  bytes: Uint8Array,
): { header: ProxyHeader; length: number } {
  const result = parseProxyHeader(bytes);
  if (result === null || !("header" in result)) {
    fail(
      `Expected a complete header for ${show(bytes)}: got ${
        JSON.stringify(result)
      }`,
    );
  }
  return result;
}

/** Parses and returns `need`, failing on anything else. */
function parseNeed(bytes: Uint8Array): number {
  const result = parseProxyHeader(bytes);
  if (result === null || !("need" in result)) {
    fail(`Expected { need } for ${show(bytes)}: got ${JSON.stringify(result)}`);
  }
  return result.need;
}

/** A tiny seeded PRNG (mulberry32): uniform 32-bit integers. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

const DATA = latin1("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n");

// Version 1 -------------------------------------------------------------------

const V1_VALID: { line: string; header: ProxyHeader }[] = [
  {
    line: "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
    header: proxied(1, tcp("192.168.0.1", 56324), tcp("192.168.0.11", 443)),
  },
  {
    line: "PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n",
    header: proxied(1, tcp("0.0.0.0", 0), tcp("255.255.255.255", 65535)),
  },
  {
    line: "PROXY TCP4 10.0.100.9 127.0.0.1 1 10\r\n",
    header: proxied(1, tcp("10.0.100.9", 1), tcp("127.0.0.1", 10)),
  },
  {
    line: "PROXY TCP6 2001:db8::1 ::1 65535 1\r\n",
    header: proxied(1, tcp("2001:db8::1", 65535), tcp("::1", 1)),
  },
  {
    // Upper case and uncompressed forms are printed as Deno prints them.
    line: "PROXY TCP6 2001:0DB8:0000:0000:0000:0000:0000:0001 :: 8080 443\r\n",
    header: proxied(1, tcp("2001:db8::1", 8080), tcp("::", 443)),
  },
  {
    line: "PROXY TCP6 ::FFFF:10.0.0.1 ::ffff:0a00:0002 40000 80\r\n",
    header: proxied(
      1,
      tcp("::ffff:10.0.0.1", 40000),
      tcp("::ffff:10.0.0.2", 80),
    ),
  },
  {
    line:
      "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
    header: proxied(
      1,
      tcp("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535),
      tcp("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535),
    ),
  },
  {
    // The longest zero run is compressed, the first of equal runs, and never
    // a single zero group.
    line: "PROXY TCP6 1:0:0:1:1:0:0:1 fe80:0:0:1:0:0:0:1 1 2\r\n",
    header: proxied(1, tcp("1::1:1:0:0:1", 1), tcp("fe80:0:0:1::1", 2)),
  },
  {
    line: "PROXY TCP6 1:0:2:3:4:5:6:7 1:2:3:4:5:6:7:: 1 2\r\n",
    header: proxied(1, tcp("1:0:2:3:4:5:6:7", 1), tcp("1:2:3:4:5:6:7:0", 2)),
  },
  {
    line: "PROXY UNKNOWN\r\n",
    header: unaddressed(1, "local"),
  },
  {
    // The worst case of the specification: exactly 107 bytes.
    line:
      "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
    header: unaddressed(1, "local"),
  },
  {
    // After UNKNOWN, anything up to the CRLF is ignored.
    line: "PROXY UNKNOWN not even\taddresses \x01\xff\r\n",
    header: unaddressed(1, "local"),
  },
  {
    line: "PROXY UNKNOWN \r\n",
    header: unaddressed(1, "local"),
  },
];

Deno.test("parseProxyHeader() parses valid v1 headers", () => {
  for (const { line, header } of V1_VALID) {
    const bytes = latin1(line);
    assertEquals(
      parseProxyHeader(bytes),
      { header, length: bytes.length },
      line,
    );
  }
});

Deno.test("parseProxyHeader() accepts a v1 line of exactly 107 bytes", () => {
  const line = V1_VALID.find(({ line }) => line.length === 107)!.line;
  assertEquals(parseComplete(latin1(line)).length, 107);
});

Deno.test("parseProxyHeader() leaves the data after a v1 header untouched", () => {
  for (const { line, header } of V1_VALID) {
    const bytes = concat(latin1(line), DATA);
    const copy = bytes.slice();
    assertEquals(
      parseProxyHeader(bytes),
      { header, length: line.length },
      line,
    );
    assertEquals(bytes, copy, line);
    assertEquals(bytes.subarray(line.length), DATA, line);
  }
});

Deno.test("parseProxyHeader() parses a v1 header fed one byte at a time", () => {
  for (const { line } of V1_VALID) {
    const bytes = concat(latin1(line), DATA);
    const whole = parseProxyHeader(bytes);
    let previous = 0;
    for (let k = 1; k < line.length; k++) {
      const need = parseNeed(bytes.subarray(0, k));
      assertEquals(need, k + 1, `${JSON.stringify(line)} after ${k} bytes`);
      assertGreater(need, previous);
      previous = need;
    }
    for (let k = line.length; k <= bytes.length; k++) {
      assertEquals(parseProxyHeader(bytes.subarray(0, k)), whole, line);
    }
  }
});

const V1_MALFORMED: { line: string; includes: string }[] = [
  // Protocol.
  { line: "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", includes: '"TCP4", "TCP6"' },
  { line: "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", includes: '"TCP4", "TCP6"' },
  { line: "PROXY TCP 1.2.3.4 5.6.7.8 1 2\r\n", includes: '"TCP4", "TCP6"' },
  { line: "PROXY UNKNOWNX\r\n", includes: '"TCP4", "TCP6"' },
  { line: "PROXY \r\n", includes: '"TCP4", "TCP6"' },
  { line: "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", includes: '"TCP4", "TCP6"' },
  // Spacing and field count.
  { line: "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", includes: "single spaces" },
  { line: "PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n", includes: "single spaces" },
  { line: "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", includes: "a CRLF after" },
  { line: "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", includes: "a CRLF after" },
  { line: "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", includes: "4 fields" },
  { line: "PROXY TCP4\r\n", includes: "4 fields" },
  { line: "PROXY TCP6 ::1 ::1\r\n", includes: "4 fields" },
  { line: "PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n", includes: "IPv4" },
  // IPv4 addresses.
  { line: "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", includes: "IPv4" },
  { line: "PROXY TCP4 1.2.3.4 5.6.7.08 1 2\r\n", includes: "IPv4" },
  { line: "PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n", includes: "IPv4" },
  { line: "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", includes: "IPv4" },
  { line: "PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", includes: "IPv4" },
  { line: "PROXY TCP4 1..3.4 5.6.7.8 1 2\r\n", includes: "IPv4" },
  { line: "PROXY TCP4 1.2.3.4 0x5.6.7.8 1 2\r\n", includes: "IPv4" },
  { line: "PROXY TCP4 ::1 5.6.7.8 1 2\r\n", includes: "IPv4" },
  { line: "PROXY TCP4 1.2.3.4 ::ffff:5.6.7.8 1 2\r\n", includes: "IPv4" },
  { line: "PROXY TCP4 1.2.3.\xe9 5.6.7.8 1 2\r\n", includes: "IPv4" },
  // IPv6 addresses.
  { line: "PROXY TCP6 1.2.3.4 ::1 1 2\r\n", includes: "IPv6" },
  { line: "PROXY TCP6 ::1 1:::2 1 2\r\n", includes: "IPv6" },
  { line: "PROXY TCP6 1::2::3 ::1 1 2\r\n", includes: "IPv6" },
  { line: "PROXY TCP6 12345:: ::1 1 2\r\n", includes: "IPv6" },
  { line: "PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n", includes: "IPv6" },
  { line: "PROXY TCP6 1:2:3:4:5:6:7 ::1 1 2\r\n", includes: "IPv6" },
  { line: "PROXY TCP6 1:2:3:4:5:6:7:8::1 ::1 1 2\r\n", includes: "IPv6" },
  { line: "PROXY TCP6 :1:2:3:4:5:6:7 ::1 1 2\r\n", includes: "IPv6" },
  { line: "PROXY TCP6 1:2:3:4:5:6:7: ::1 1 2\r\n", includes: "IPv6" },
  { line: "PROXY TCP6 ::g ::1 1 2\r\n", includes: "IPv6" },
  { line: "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", includes: "IPv6" },
  { line: "PROXY TCP6 [::1] ::1 1 2\r\n", includes: "IPv6" },
  { line: "PROXY TCP6 ::1.2.3.04 ::1 1 2\r\n", includes: "IPv6" },
  { line: "PROXY TCP6 1.2.3.4:: ::1 1 2\r\n", includes: "IPv6" },
  { line: "PROXY TCP6 ::1:2:3:4:5:6:1.2.3.4 ::1 1 2\r\n", includes: "IPv6" },
  // Ports.
  { line: "PROXY TCP4 1.2.3.4 5.6.7.8 70000 2\r\n", includes: '"70000"' },
  { line: "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", includes: "0-65535" },
  { line: "PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", includes: "leading zeros" },
  { line: "PROXY TCP4 1.2.3.4 5.6.7.8 00 2\r\n", includes: "0-65535" },
  { line: "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", includes: "0-65535" },
  { line: "PROXY TCP4 1.2.3.4 5.6.7.8 1 2a\r\n", includes: "0-65535" },
  { line: "PROXY TCP4 1.2.3.4 5.6.7.8 1 +2\r\n", includes: "0-65535" },
  { line: "PROXY TCP4 1.2.3.4 5.6.7.8 1 1e3\r\n", includes: "0-65535" },
  { line: "PROXY TCP4 1.2.3.4 5.6.7.8 1 0000080\r\n", includes: "0-65535" },
  // Line endings and length.
  { line: "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", includes: "bare LF" },
  { line: "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", includes: "bare CR" },
  { line: "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", includes: "bare CR" },
  { line: "PROXY UNKNOWN a\nb\r\n", includes: "bare LF" },
  { line: "PROXY UNKNOWN a\rb\r\n", includes: "bare CR" },
  { line: "PROXY UNKNOWN\n", includes: "bare LF" },
  { line: `PROXY UNKNOWN ${"x".repeat(92)}\r\n`, includes: "107 bytes" },
  { line: `PROXY UNKNOWN ${"x".repeat(200)}\r\n`, includes: "107 bytes" },
];

Deno.test("parseProxyHeader() throws ProxyProtocolError on malformed v1 headers", () => {
  for (const { line, includes } of V1_MALFORMED) {
    const error = assertThrows(
      () => parseProxyHeader(latin1(line)),
      ProxyProtocolError,
      includes,
      JSON.stringify(line),
    );
    assertInstanceOf(error, ProxyProtocolError);
    assertStringIncludes(error.message, "Invalid PROXY v1 header: expected ");
    assertStringIncludes(error.message, ": received ");
  }
});

Deno.test("parseProxyHeader() says what it expected and received in v1 errors", () => {
  assertThrows(
    () => parseProxyHeader(latin1("PROXY TCP4 1.2.3.4 5.6.7.8 70000 2\r\n")),
    ProxyProtocolError,
    'Invalid PROXY v1 header: expected a source port number in 0-65535 without leading zeros: received "70000"',
  );
  assertThrows(
    () => parseProxyHeader(latin1("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n")),
    ProxyProtocolError,
    'expected a line ending in CRLF, not a bare LF: received "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\\n"',
  );
});

Deno.test("parseProxyHeader() rejects a malformed v1 header at the first bad byte", () => {
  // Each of these is the shortest prefix of an invalid line that is invalid.
  const prefixes = [
    "PROXY X",
    "PROXY TCP44",
    "PROXY UNKNOWNX",
    "PROXY TCP4  ",
    "PROXY TCP4 1.2.3.x",
    "PROXY TCP4 1.2.3.4.",
    "PROXY TCP4 01",
    "PROXY TCP4 1.256",
    "PROXY TCP4 1..",
    "PROXY TCP4 1.2.3.4 .",
    "PROXY TCP4 1.2.3.4 :",
    "PROXY TCP6 1:::",
    "PROXY TCP6 1::2::",
    "PROXY TCP6 12345",
    "PROXY TCP6 ::1.2.3.4:",
    "PROXY TCP6 ::1.2.3.04",
    "PROXY TCP6 ::1 ::g",
    "PROXY TCP4 1.2.3.4 5.6.7.8 08",
    "PROXY TCP4 1.2.3.4 5.6.7.8 65536",
    "PROXY TCP4 1.2.3.4 5.6.7.8 123456",
    "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 ",
    "PROXY TCP6 ::1 ::1 1 2\n",
    "PROXY TCP6 ::1 ::1 1\r",
    "PROXY TCP6 ::1 1:2:3:4:5:6:7:8:9",
    "PROXY TCP6 1::2:3:4:5:6:7:8",
    "PROXY TCP6 1:2:3:4:5:6:7:1.",
    `PROXY UNKNOWN ${"x".repeat(92)}`,
  ];
  for (const prefix of prefixes) {
    const bytes = latin1(prefix);
    assertThrows(
      () => parseProxyHeader(bytes),
      ProxyProtocolError,
      undefined,
      prefix,
    );
    assertEquals(
      parseNeed(bytes.subarray(0, bytes.length - 1)),
      bytes.length,
      prefix,
    );
  }
});

// Not a PROXY header ----------------------------------------------------------

Deno.test("parseProxyHeader() returns null when the bytes are not a PROXY header", () => {
  const inputs = [
    "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
    "G",
    "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    "SSH-2.0-OpenSSH_9.6\r\n",
    "P ",
    "PROXX TCP4",
    "PROXY\tTCP4 1.2.3.4 5.6.7.8 1 2\r\n",
    "PROXY\r\n",
    "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
    "\r\r",
    "\r\n\r\n\x01",
    "\r\n\r\n\x00\r\nQUIT\r",
    "\r\n\r\n\x00\r\nQUIT\r\x21\x11\x00\x0c",
    "\x00PROXY",
  ];
  for (const input of inputs) {
    assertStrictEquals(
      parseProxyHeader(latin1(input)),
      null,
      JSON.stringify(input),
    );
  }
});

Deno.test("parseProxyHeader() returns need for a prefix of either signature", () => {
  const cases: [Uint8Array, number][] = [
    [new Uint8Array(0), 1],
    [latin1("P"), 2],
    [latin1("PRO"), 4],
    [latin1("PROXY"), 6],
    [latin1("PROXY "), 7],
    [latin1("\r"), 16],
    [new Uint8Array(SIGNATURE.slice(0, 5)), 16],
    [new Uint8Array(SIGNATURE), 16],
    [new Uint8Array([...SIGNATURE, 0x21]), 16],
    [new Uint8Array([...SIGNATURE, 0x21, 0x11]), 16],
    [new Uint8Array([...SIGNATURE, 0x21, 0x11, 0x00]), 16],
    [new Uint8Array([...SIGNATURE, 0x21, 0x11, 0x00, 0x0c]), 28],
    [new Uint8Array([...SIGNATURE, 0x20, 0x00, 0x01, 0x00]), 16 + 256],
  ];
  for (const [bytes, need] of cases) {
    assertEquals(parseProxyHeader(bytes), { need }, show(bytes));
  }
});

// Version 2 -------------------------------------------------------------------

const ALPN = latin1("h2");
const AUTHORITY = latin1("example.com");

const V2_VALID: { name: string; bytes: Uint8Array; header: ProxyHeader }[] = [
  {
    name: "AF_INET",
    bytes: v2(0x21, 0x11, [
      ...ipv4("192.0.2.1"),
      ...ipv4("198.51.100.2"),
      ...port(51234),
      ...port(443),
    ]),
    header: proxied(2, tcp("192.0.2.1", 51234), tcp("198.51.100.2", 443)),
  },
  {
    name: "AF_INET extremes",
    bytes: v2(0x21, 0x11, [
      ...ipv4("0.0.0.0"),
      ...ipv4("255.255.255.255"),
      ...port(0),
      ...port(65535),
    ]),
    header: proxied(2, tcp("0.0.0.0", 0), tcp("255.255.255.255", 65535)),
  },
  {
    name: "AF_INET6",
    bytes: v2(0x21, 0x21, [
      ...ipv6("2001:0db8:0000:0000:0000:0000:0000:0001"),
      ...ipv6("0000:0000:0000:0000:0000:0000:0000:0001"),
      ...port(40000),
      ...port(8443),
    ]),
    header: proxied(2, tcp("2001:db8::1", 40000), tcp("::1", 8443)),
  },
  {
    name: "AF_INET6 IPv4-mapped and unspecified",
    bytes: v2(0x21, 0x21, [
      ...ipv6("0000:0000:0000:0000:0000:ffff:0102:0304"),
      ...ipv6("0000:0000:0000:0000:0000:0000:0000:0000"),
      ...port(1),
      ...port(2),
    ]),
    header: proxied(2, tcp("::ffff:1.2.3.4", 1), tcp("::", 2)),
  },
  {
    name: "AF_UNIX",
    bytes: v2(0x21, 0x31, [
      ...unixPath("/tmp/client.sock"),
      ...unixPath("/run/server.sock"),
    ]),
    header: proxied(
      2,
      { transport: "unix", path: "/tmp/client.sock" },
      { transport: "unix", path: "/run/server.sock" },
    ),
  },
  {
    name: "AF_UNIX unterminated and empty paths",
    bytes: v2(0x21, 0x31, [
      ...new Array<number>(108).fill(0x61),
      ...unixPath(""),
    ]),
    header: proxied(
      2,
      { transport: "unix", path: "a".repeat(108) },
      { transport: "unix", path: "" },
    ),
  },
  {
    name: "AF_UNSPEC with PROXY",
    bytes: v2(0x21, 0x00, []),
    header: unaddressed(2, "proxy"),
  },
  {
    name: "AF_INET with an UNSPEC transport",
    bytes: v2(0x21, 0x10, [...ipv4("1.2.3.4"), ...ipv4("5.6.7.8"), 0, 1, 0, 2]),
    header: unaddressed(2, "proxy"),
  },
  {
    name: "LOCAL",
    bytes: v2(0x20, 0x00, []),
    header: unaddressed(2, "local"),
  },
  {
    name: "LOCAL with addresses",
    bytes: v2(0x20, 0x11, [...ipv4("1.2.3.4"), ...ipv4("5.6.7.8"), 0, 1, 0, 2]),
    header: unaddressed(2, "local"),
  },
  {
    name: "LOCAL with a family it ignores",
    bytes: v2(0x20, 0x12, [...ipv4("1.2.3.4"), ...ipv4("5.6.7.8"), 0, 1, 0, 2]),
    header: unaddressed(2, "local"),
  },
  {
    name: "AF_INET with TLVs",
    bytes: v2(0x21, 0x11, [
      ...ipv4("203.0.113.7"),
      ...ipv4("10.0.0.1"),
      ...port(55555),
      ...port(443),
      ...tlv(0x01, ALPN),
      ...tlv(0x02, AUTHORITY),
      ...tlv(0x04, []),
      ...tlv(0xe0, [0, 1, 2, 3]),
    ]),
    header: proxied(2, tcp("203.0.113.7", 55555), tcp("10.0.0.1", 443), [
      { type: 0x01, value: ALPN },
      { type: 0x02, value: AUTHORITY },
      { type: 0x04, value: new Uint8Array(0) },
      { type: 0xe0, value: new Uint8Array([0, 1, 2, 3]) },
    ]),
  },
  {
    name: "AF_INET6 with a TLV",
    bytes: v2(0x21, 0x21, [
      ...ipv6("fd00:0000:0000:0000:0000:0000:0000:0002"),
      ...ipv6("fd00:0000:0000:0000:0000:0000:0000:0001"),
      ...port(1234),
      ...port(80),
      ...tlv(0x05, [0xde, 0xad, 0xbe, 0xef]),
    ]),
    header: proxied(2, tcp("fd00::2", 1234), tcp("fd00::1", 80), [
      { type: 0x05, value: new Uint8Array([0xde, 0xad, 0xbe, 0xef]) },
    ]),
  },
  {
    name: "AF_UNIX with a TLV",
    bytes: v2(0x21, 0x31, [
      ...unixPath("/a"),
      ...unixPath("/b"),
      ...tlv(0x30, latin1("netns")),
    ]),
    header: proxied(
      2,
      { transport: "unix", path: "/a" },
      { transport: "unix", path: "/b" },
      [{ type: 0x30, value: latin1("netns") }],
    ),
  },
  {
    name: "AF_UNSPEC with a TLV",
    bytes: v2(0x21, 0x00, tlv(0x02, AUTHORITY)),
    header: unaddressed(2, "proxy", [{ type: 0x02, value: AUTHORITY }]),
  },
  {
    name: "LOCAL with TLVs",
    bytes: v2(0x20, 0x00, [...tlv(0x04, [0, 0]), ...tlv(0x02, AUTHORITY)]),
    header: unaddressed(2, "local", [
      { type: 0x04, value: new Uint8Array([0, 0]) },
      { type: 0x02, value: AUTHORITY },
    ]),
  },
  {
    name: "LOCAL with addresses and a TLV",
    bytes: v2(0x20, 0x11, [
      ...ipv4("1.2.3.4"),
      ...ipv4("5.6.7.8"),
      ...port(1),
      ...port(2),
      ...tlv(0x01, ALPN),
    ]),
    header: unaddressed(2, "local", [{ type: 0x01, value: ALPN }]),
  },
  {
    name: "LOCAL with malformed TLVs, which it drops",
    bytes: v2(0x20, 0x00, [0x01, 0x00, 0x09, 0x68, 0x32]),
    header: unaddressed(2, "local"),
  },
  {
    name: "AF_UNSPEC with bytes that are not TLVs, which it drops",
    bytes: v2(0x21, 0x00, [0xff, 0xff]),
    header: unaddressed(2, "proxy"),
  },
];

Deno.test("parseProxyHeader() parses valid v2 headers", () => {
  for (const { name, bytes, header } of V2_VALID) {
    assertEquals(
      parseProxyHeader(bytes),
      { header, length: bytes.length },
      name,
    );
  }
});

Deno.test("parseProxyHeader() leaves the data after a v2 header untouched", () => {
  for (const { name, bytes: headerBytes, header } of V2_VALID) {
    const bytes = concat(headerBytes, DATA);
    const copy = bytes.slice();
    assertEquals(
      parseProxyHeader(bytes),
      { header, length: headerBytes.length },
      name,
    );
    assertEquals(bytes, copy, name);
  }
});

Deno.test("parseProxyHeader() parses a v2 header split at every byte", () => {
  for (const { name, bytes: headerBytes } of V2_VALID) {
    const bytes = concat(headerBytes, DATA);
    const whole = parseProxyHeader(bytes);
    const length = headerBytes.length;
    for (let k = 1; k < length; k++) {
      const need = parseNeed(bytes.subarray(0, k));
      assertEquals(need, k < 16 ? 16 : length, `${name} after ${k} bytes`);
    }
    for (let k = length; k <= bytes.length; k++) {
      assertEquals(parseProxyHeader(bytes.subarray(0, k)), whole, name);
      // Feeding the rest in a second chunk gives the same result.
      const split = concat(bytes.subarray(0, k), bytes.subarray(k));
      assertEquals(parseProxyHeader(split), whole, name);
    }
  }
});

Deno.test("parseProxyHeader() parses a v2 header of the largest length", () => {
  const value = new Uint8Array(0xffff - 12 - 3).fill(0x2a);
  const bytes = v2(0x21, 0x11, [
    ...ipv4("1.2.3.4"),
    ...ipv4("5.6.7.8"),
    ...port(1),
    ...port(2),
    ...tlv(0x04, value),
  ]);
  assertEquals(bytes.length, 16 + 0xffff);
  assertEquals(parseNeed(bytes.subarray(0, 16)), 16 + 0xffff);
  const { header, length } = parseComplete(bytes);
  assertEquals(length, 16 + 0xffff);
  assertEquals(header.tlvs, [{ type: 0x04, value }]);
});

Deno.test("parseProxyHeader() returns TLV values that do not share the input buffer", () => {
  const bytes = v2(0x21, 0x00, tlv(0x02, AUTHORITY));
  const { header } = parseComplete(bytes);
  bytes.fill(0);
  assertEquals(header.tlvs, [{ type: 0x02, value: AUTHORITY }]);
});

const INET_BLOCK = [
  ...ipv4("1.2.3.4"),
  ...ipv4("5.6.7.8"),
  ...port(1),
  ...port(2),
];

const V2_MALFORMED: { name: string; bytes: Uint8Array; includes: string }[] = [
  {
    name: "version 1",
    bytes: v2(0x11, 0x11, INET_BLOCK),
    includes: "expected version 2 in the high nibble of byte 13: received 0x11",
  },
  {
    name: "version 3",
    bytes: v2(0x31, 0x11, INET_BLOCK),
    includes: "expected version 2",
  },
  {
    name: "version 0",
    bytes: v2(0x01, 0x11, INET_BLOCK),
    includes: "expected version 2",
  },
  {
    name: "command 2",
    bytes: v2(0x22, 0x11, INET_BLOCK),
    includes: "LOCAL (0x20) or PROXY (0x21) in byte 13: received 0x22",
  },
  {
    name: "command 15",
    bytes: v2(0x2f, 0x00, []),
    includes: "LOCAL (0x20) or PROXY (0x21)",
  },
  {
    name: "AF_INET over DGRAM",
    bytes: v2(0x21, 0x12, INET_BLOCK),
    includes: "DGRAM is not supported: received 0x12",
  },
  {
    name: "AF_INET6 over DGRAM",
    bytes: v2(0x21, 0x22, new Array<number>(36).fill(0)),
    includes: "DGRAM",
  },
  {
    name: "AF_UNIX over DGRAM",
    bytes: v2(0x21, 0x32, new Array<number>(216).fill(0)),
    includes: "DGRAM",
  },
  {
    name: "AF_UNSPEC over DGRAM",
    bytes: v2(0x21, 0x02, []),
    includes: "DGRAM",
  },
  {
    name: "an unknown transport",
    bytes: v2(0x21, 0x13, INET_BLOCK),
    includes: "expected the transport STREAM or UNSPEC",
  },
  {
    name: "an unknown family",
    bytes: v2(0x21, 0x41, INET_BLOCK),
    includes: "expected the address family",
  },
  {
    name: "family 0xf",
    bytes: v2(0x21, 0xf1, INET_BLOCK),
    includes: "received 0xf1",
  },
  {
    name: "AF_INET with a length of 11",
    bytes: v2(0x21, 0x11, INET_BLOCK.slice(0, 11)),
    includes: "at least 12 for AF_INET: received 11",
  },
  {
    name: "AF_INET with a length of 0",
    bytes: v2(0x21, 0x11, []),
    includes: "at least 12 for AF_INET: received 0",
  },
  {
    name: "AF_INET6 with an AF_INET length",
    bytes: v2(0x21, 0x21, INET_BLOCK),
    includes: "at least 36 for AF_INET6: received 12",
  },
  {
    name: "AF_UNIX with a length of 215",
    bytes: v2(0x21, 0x31, new Array<number>(215).fill(0)),
    includes: "at least 216 for AF_UNIX: received 215",
  },
  {
    name: "a TLV overrunning the header",
    bytes: v2(0x21, 0x11, [
      ...INET_BLOCK,
      ...tlv(0x02, AUTHORITY).slice(0, 10),
    ]),
    includes: "received a value length of 11, 7 bytes left",
  },
  {
    name: "a second TLV overrunning the header",
    bytes: v2(0x21, 0x11, [
      ...INET_BLOCK,
      ...tlv(0x01, ALPN),
      0x02,
      0xff,
      0xff,
    ]),
    includes: "the TLV of type 0x02 at offset 33",
  },
  {
    name: "a 1-byte TLV",
    bytes: v2(0x21, 0x11, [...INET_BLOCK, 0x04]),
    includes: "expected a 3-byte TLV type and length at offset 28: received 1",
  },
  {
    name: "a 2-byte TLV after a TLV",
    bytes: v2(0x21, 0x11, [...INET_BLOCK, ...tlv(0x04, []), 0x04, 0x00]),
    includes: "received 2 bytes",
  },
  {
    name: "AF_UNIX with a truncated TLV",
    bytes: v2(0x21, 0x31, [
      ...new Array<number>(216).fill(0),
      0x01,
      0x00,
      0x01,
    ]),
    includes: "received a value length of 1, 0 bytes left",
  },
  {
    name: "AF_INET6 with a TLV overrunning the header into the data",
    bytes: concat(
      v2(0x21, 0x21, [...new Array<number>(36).fill(0), 0x01, 0x00, 0x04, 1]),
      [2, 3, 4],
    ),
    includes: "received a value length of 4, 1 bytes left",
  },
];

Deno.test("parseProxyHeader() throws ProxyProtocolError on malformed v2 headers", () => {
  for (const { name, bytes, includes } of V2_MALFORMED) {
    const error = assertThrows(
      () => parseProxyHeader(bytes),
      ProxyProtocolError,
      includes,
      name,
    );
    assertInstanceOf(error, ProxyProtocolError);
    assertStringIncludes(error.message, "Invalid PROXY v2 header: expected ");
  }
});

Deno.test("parseProxyHeader() rejects a malformed v2 header as soon as its fixed part shows it", () => {
  const cases: [string, Uint8Array][] = [
    ["a bad version", new Uint8Array([...SIGNATURE, 0x11])],
    ["a bad command", new Uint8Array([...SIGNATURE, 0x23])],
    ["DGRAM", new Uint8Array([...SIGNATURE, 0x21, 0x12])],
    ["a bad family", new Uint8Array([...SIGNATURE, 0x21, 0x51])],
    ["a short length", new Uint8Array([...SIGNATURE, 0x21, 0x21, 0x00, 0x0c])],
  ];
  for (const [name, bytes] of cases) {
    assertThrows(
      () => parseProxyHeader(bytes),
      ProxyProtocolError,
      undefined,
      name,
    );
    assertEquals(parseNeed(bytes.subarray(0, bytes.length - 1)), 16, name);
  }
});

// Properties ------------------------------------------------------------------

/** Random valid headers of both versions, with their expected parses. */
function randomHeaders(
  next: () => number,
  count: number,
): { bytes: Uint8Array; header: ProxyHeader }[] {
  const headers: { bytes: Uint8Array; header: ProxyHeader }[] = [];
  const ipv4Text = () =>
    [next() & 0xff, next() & 0xff, next() & 0xff, next() & 0xff].join(".");
  for (let i = 0; i < count; i++) {
    const sport = next() & 0xffff;
    const dport = next() & 0xffff;
    switch (i % 4) {
      case 0: {
        const source = ipv4Text();
        const destination = ipv4Text();
        headers.push({
          bytes: latin1(
            `PROXY TCP4 ${source} ${destination} ${sport} ${dport}\r\n`,
          ),
          header: proxied(1, tcp(source, sport), tcp(destination, dport)),
        });
        break;
      }
      case 1: {
        const source = ipv4Text();
        const destination = ipv4Text();
        const tlvs: ProxyTlv[] = [];
        for (let t = next() % 4; t > 0; t--) {
          const value = new Uint8Array(next() % 20).map(() => next() & 0xff);
          tlvs.push({ type: next() & 0xff, value });
        }
        headers.push({
          bytes: v2(0x21, 0x11, [
            ...ipv4(source),
            ...ipv4(destination),
            ...port(sport),
            ...port(dport),
            ...tlvs.flatMap(({ type, value }) => tlv(type, value)),
          ]),
          header: proxied(
            2,
            tcp(source, sport),
            tcp(destination, dport),
            tlvs,
          ),
        });
        break;
      }
      case 2: {
        // IPv6 with random zero groups, so that compression varies.
        const groups = () =>
          Array.from(
            { length: 8 },
            () => next() % 3 === 0 ? 0 : next() & 0xffff,
          );
        const source = groups();
        const destination = groups();
        const full = (g: number[]) =>
          g.map((x) => x.toString(16).padStart(4, "0").toUpperCase()).join(":");
        const binary = parseComplete(
          v2(0x21, 0x21, [
            ...ipv6(full(source)),
            ...ipv6(full(destination)),
            ...port(sport),
            ...port(dport),
          ]),
        ).header;
        // The text form of v1 must parse to the hostnames of the binary form.
        headers.push({
          bytes: latin1(
            `PROXY TCP6 ${full(source)} ${
              full(destination)
            } ${sport} ${dport}\r\n`,
          ),
          header: { ...binary, version: 1 },
        });
        break;
      }
      default:
        headers.push({
          bytes: latin1("PROXY UNKNOWN\r\n"),
          header: unaddressed(1, "local"),
        });
    }
  }
  return headers;
}

Deno.test("parseProxyHeader() returns need, never throws, for random prefixes of real headers", () => {
  const next = prng(0x5eed);
  for (const { bytes, header } of randomHeaders(next, 2000)) {
    const withData = concat(bytes, DATA);
    assertEquals(parseProxyHeader(withData), { header, length: bytes.length });
    for (let n = 0; n < 5; n++) {
      const k = 1 + next() % (bytes.length - 1);
      const need = parseNeed(withData.subarray(0, k));
      assertGreater(need, k);
      assertLessOrEqual(need, bytes.length);
    }
  }
});

Deno.test("parseProxyHeader() prints IPv6 hostnames in their canonical text form", () => {
  const next = prng(0xc0ffee);
  for (const { header } of randomHeaders(next, 4000)) {
    for (const addr of [header.remoteAddr, header.localAddr]) {
      if (addr === undefined || addr.transport !== "tcp") continue;
      const hostname = addr.hostname;
      if (!hostname.includes(":")) continue;
      // Parsing the canonical form gives it back.
      const line = `PROXY TCP6 ${hostname} ::1 1 2\r\n`;
      const again = parseComplete(latin1(line)).header.remoteAddr;
      assertEquals(again, tcp(hostname, 1));
      // Lower case, no leading zeros, one "::" replacing two zero groups or
      // more, and none when no zero run has two groups.
      assertEquals(hostname, hostname.toLowerCase());
      assert(!/(^|:)0[0-9a-f]/.test(hostname), hostname);
      assert(hostname.split("::").length <= 2, hostname);
      const groups = hostname.includes("::")
        ? hostname.split("::").flatMap((part) =>
          part === "" ? [] : part.split(":")
        )
        : hostname.split(":");
      if (hostname.startsWith("::ffff:") && hostname.includes(".")) continue;
      if (!hostname.includes("::")) {
        assertEquals(groups.length, 8, hostname);
        assert(!/(^|:)0:0(:|$)/.test(hostname), hostname);
      } else {
        assertLessOrEqual(groups.length, 6, hostname);
      }
    }
  }
});

Deno.test("parseProxyHeader() only returns or throws ProxyProtocolError on fuzzed input", () => {
  const next = prng(20260101);
  const seeds = [
    ...V1_VALID.map(({ line }) => latin1(line)),
    ...V2_VALID.map(({ bytes }) => bytes),
    ...V1_MALFORMED.map(({ line }) => latin1(line)),
    ...V2_MALFORMED.map(({ bytes }) => bytes),
  ];
  const alphabet = latin1(
    "PROXY TCP46UNKOW0123456789abcdefABCDEF:.\r\n\x00\x21\x11",
  );
  const counts = { header: 0, need: 0, null: 0, error: 0 };
  for (let i = 0; i < 20_000; i++) {
    let bytes: Uint8Array;
    if (i % 5 === 0) {
      // Random bytes, starting like one of the two signatures.
      bytes = new Uint8Array(1 + next() % 80).map(() => next() & 0xff);
      bytes[0] = next() % 2 === 0 ? 0x50 : 0x0d;
    } else {
      // A mutated seed: bytes replaced, inserted, deleted; then truncated.
      const seed = seeds[next() % seeds.length]!;
      const mutated = [...seed];
      for (let m = 1 + next() % 4; m > 0; m--) {
        const at = next() % (mutated.length + 1);
        const byte = next() % 2 === 0
          ? alphabet[next() % alphabet.length]!
          : next() & 0xff;
        switch (next() % 3) {
          case 0:
            mutated[Math.min(at, mutated.length - 1)] = byte;
            break;
          case 1:
            mutated.splice(at, 0, byte);
            break;
          default:
            mutated.splice(at, 1);
        }
      }
      const length = next() % 3 === 0
        ? next() % (mutated.length + 1)
        : mutated.length;
      bytes = new Uint8Array(mutated.slice(0, length));
    }
    const copy = bytes.slice();
    let result: ProxyParseResult;
    try {
      result = parseProxyHeader(bytes);
    } catch (error) {
      assertInstanceOf(
        error,
        ProxyProtocolError,
        `${error} for ${show(bytes)}`,
      );
      counts.error++;
      continue;
    } finally {
      assertEquals(bytes, copy, "the input is not modified");
    }
    if (result === null) {
      counts.null++;
    } else if ("need" in result) {
      counts.need++;
      assert(Number.isInteger(result.need), show(bytes));
      assertGreater(result.need, bytes.length, show(bytes));
      assertLessOrEqual(result.need, 16 + 0xffff, show(bytes));
    } else {
      counts.header++;
      assertLessOrEqual(result.length, bytes.length, show(bytes));
      // The header alone parses the same: nothing after it was read.
      assertEquals(
        parseProxyHeader(bytes.subarray(0, result.length)),
        result,
        show(bytes),
      );
    }
  }
  for (const [outcome, count] of Object.entries(counts)) {
    assertGreater(count, 100, `the fuzzer reaches ${outcome} often enough`);
  }
});

// Trusted addresses -----------------------------------------------------------

const TRUST: { trusted: string[]; yes: string[]; no: string[] }[] = [
  {
    trusted: ["127.0.0.1"],
    yes: ["127.0.0.1", "::ffff:127.0.0.1", "::FFFF:7f00:1"],
    no: ["127.0.0.2", "127.0.0.0", "::1", "::127.0.0.1", "::ffff:127.0.0.2"],
  },
  {
    trusted: ["10.0.0.0/8"],
    yes: ["10.0.0.0", "10.1.2.3", "10.255.255.255", "::ffff:10.9.8.7"],
    no: ["11.0.0.0", "9.255.255.255", "::a00:1", "fd00::a00:1"],
  },
  {
    trusted: ["192.168.1.1/32"],
    yes: ["192.168.1.1", "::ffff:192.168.1.1"],
    no: ["192.168.1.0", "192.168.1.2"],
  },
  {
    trusted: ["172.16.0.0/12"],
    yes: ["172.16.0.1", "172.31.255.255"],
    no: ["172.15.255.255", "172.32.0.0"],
  },
  {
    // Host bits are ignored.
    trusted: ["10.1.2.3/8"],
    yes: ["10.200.0.1"],
    no: ["11.1.2.3"],
  },
  {
    trusted: ["0.0.0.0/0"],
    yes: ["0.0.0.0", "1.2.3.4", "255.255.255.255", "::ffff:8.8.8.8"],
    no: ["::1", "2001:db8::1", "::", "::fffe:1.2.3.4"],
  },
  {
    trusted: ["::1"],
    yes: ["::1", "0:0:0:0:0:0:0:1", "0000::0001"],
    no: ["::2", "::", "127.0.0.1", "::ffff:0.0.0.1"],
  },
  {
    trusted: ["fd00::/8"],
    yes: [
      "fd00::1",
      "fd12:3456:789a::1",
      "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    ],
    no: ["fe00::", "fc00::1", "10.0.0.1"],
  },
  {
    trusted: ["2001:db8::/33"],
    yes: ["2001:db8::", "2001:db8:7fff:ffff::1"],
    no: ["2001:db8:8000::", "2001:db9::"],
  },
  {
    trusted: ["2001:db8::1/128"],
    yes: ["2001:db8::1", "2001:DB8:0:0:0:0:0:1"],
    no: ["2001:db8::", "2001:db8::2"],
  },
  {
    // Every address, IPv4 ones included as their IPv4-mapped form.
    trusted: ["::/0"],
    yes: [
      "::",
      "2001:db8::1",
      "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
      "1.2.3.4",
    ],
    no: [],
  },
  {
    trusted: ["::ffff:0:0/96"],
    yes: ["1.2.3.4", "::ffff:1.2.3.4", "0.0.0.0"],
    no: ["::1", "::fffe:1.2.3.4"],
  },
  {
    trusted: ["::ffff:10.0.0.0/104"],
    yes: ["10.0.0.1", "::ffff:10.255.0.1"],
    no: ["11.0.0.1"],
  },
  {
    trusted: ["::ffff:127.0.0.1"],
    yes: ["127.0.0.1", "::ffff:127.0.0.1"],
    no: ["127.0.0.2"],
  },
  {
    trusted: ["127.0.0.0/8", "::1", "10.0.0.0/8", "fd00::/8"],
    yes: ["127.0.0.53", "::1", "10.2.3.4", "fd01::1", "::ffff:127.1.1.1"],
    no: ["192.168.0.1", "::2", "fe80::1"],
  },
  {
    trusted: [],
    yes: [],
    no: ["127.0.0.1", "::1", "::ffff:127.0.0.1"],
  },
  {
    // Only IP addresses can match.
    trusted: ["0.0.0.0/0", "::/0"],
    yes: [],
    no: [
      "",
      "/tmp/server.sock",
      "localhost",
      "example.com",
      "fe80::1%eth0",
      "fe80::1%2",
      "[::1]",
      " 127.0.0.1",
      "127.0.0.1 ",
      "127.0.0.1:80",
      "127.1",
      "0x7f.0.0.1",
      "127.000.0.1",
      ":::1",
      "1::2::3",
    ],
  },
];

Deno.test("createTrustMatcher() matches addresses and CIDR blocks", () => {
  for (const { trusted, yes, no } of TRUST) {
    const isTrusted = createTrustMatcher(trusted);
    for (const hostname of yes) {
      assertStrictEquals(
        isTrusted(hostname),
        true,
        `${JSON.stringify(hostname)} in ${JSON.stringify(trusted)}`,
      );
    }
    for (const hostname of no) {
      assertStrictEquals(
        isTrusted(hostname),
        false,
        `${JSON.stringify(hostname)} not in ${JSON.stringify(trusted)}`,
      );
    }
  }
});

Deno.test("createTrustMatcher() matches the hostnames Deno reports for peers", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  using client = await Deno.connect({
    hostname: "127.0.0.1",
    port: listener.addr.port,
  });
  using server = await listener.accept();
  assertEquals(client.localAddr.hostname, server.remoteAddr.hostname);
  assert(createTrustMatcher(["127.0.0.0/8"])(server.remoteAddr.hostname));
  assert(!createTrustMatcher(["::1"])(server.remoteAddr.hostname));
});

Deno.test("createTrustMatcher() returns false for a hostname that is not a string", () => {
  const isTrusted = createTrustMatcher(["0.0.0.0/0"]) as (
    hostname: unknown,
  ) => boolean;
  for (const value of [undefined, null, 0x7f000001, {}, ["127.0.0.1"]]) {
    assertStrictEquals(isTrusted(value), false, String(value));
  }
});

Deno.test("createTrustMatcher() throws on invalid entries", () => {
  const cases: [unknown, ErrorConstructor | TypeErrorConstructor, string][] = [
    [
      "10.0.0.0/8",
      TypeError,
      `'trusted' must be an array of strings: received "10.0.0.0/8"`,
    ],
    [
      undefined,
      TypeError,
      "'trusted' must be an array of strings: received undefined",
    ],
    [[1], TypeError, "'trusted[0]' must be a string: received 1"],
    [["::1", null], TypeError, "'trusted[1]' must be a string: received null"],
    [
      ["foo"],
      SyntaxError,
      `'trusted[0]' must be an IPv4 or IPv6 address or CIDR block: received "foo"`,
    ],
    [[""], SyntaxError, `received ""`],
    [
      ["::1", "10.0.0.0/"],
      SyntaxError,
      `'trusted[1]' must be an IPv4 or IPv6 address or CIDR block: received "10.0.0.0/"`,
    ],
    [["/8"], SyntaxError, `received "/8"`],
    [["10.0.0.0/08"], SyntaxError, `received "10.0.0.0/08"`],
    [["10.0.0.0/-1"], SyntaxError, `received "10.0.0.0/-1"`],
    [["10.0.0.0/8/8"], SyntaxError, `received "10.0.0.0/8/8"`],
    [["10.0.0.0/8 "], SyntaxError, `received "10.0.0.0/8 "`],
    [[" 10.0.0.0"], SyntaxError, `received " 10.0.0.0"`],
    [["010.0.0.0/8"], SyntaxError, `received "010.0.0.0/8"`],
    [["10.0.0/8"], SyntaxError, `received "10.0.0/8"`],
    [["fe80::1%eth0"], SyntaxError, `received "fe80::1%eth0"`],
    [["1::2::3"], SyntaxError, `received "1::2::3"`],
    [["localhost"], SyntaxError, `received "localhost"`],
    [
      ["10.0.0.0/33"],
      RangeError,
      `'trusted[0]' must have a prefix length from 0 to 32 for IPv4: received "10.0.0.0/33"`,
    ],
    [
      ["::/129"],
      RangeError,
      `'trusted[0]' must have a prefix length from 0 to 128 for IPv6: received "::/129"`,
    ],
    [["::ffff:10.0.0.0/129"], RangeError, "from 0 to 128 for IPv6"],
  ];
  for (const [trusted, ErrorClass, message] of cases) {
    assertThrows(
      () => createTrustMatcher(trusted as string[]),
      ErrorClass,
      message,
      JSON.stringify(trusted),
    );
  }
});
