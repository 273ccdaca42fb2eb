// Copyright 2026 the @corothread/evthread authors. MIT license.
// Unit tests of the pure request-head parser.

import {
  assertEquals,
  assertInstanceOf,
  assertStrictEquals,
  assertThrows,
} from "@std/assert";
import {
  type HeadLimits,
  HttpError,
  latin1,
  parseChunkSize,
  parseHead,
  type RequestHead,
} from "../src/_http_parse.ts";

const LIMITS: HeadLimits = { maxUrlBytes: 64, maxHeaderFields: 8 };

/** Parses a head given as lines (joined with CRLF, no final blank line). */
function parse(lines: string[], limits: HeadLimits = LIMITS): RequestHead {
  return parseHead(lines.join("\r\n"), limits);
}

/** The status parseHead rejects `lines` with. */
function statusOf(lines: string[], limits: HeadLimits = LIMITS): number {
  const error = assertThrows(() => parse(lines, limits), HttpError);
  assertInstanceOf(error, HttpError);
  assertEquals(error.name, "HttpError");
  return error.status;
}

Deno.test("parseHead() parses a simple GET", () => {
  const head = parse(["GET /a?b=c HTTP/1.1", "Host: example.com"]);
  assertEquals(head, {
    method: "GET",
    target: "/a?b=c",
    minor: 1,
    fields: ["host", "example.com"],
    host: "example.com",
    contentLength: -1,
    chunked: false,
    keepAlive: true,
    expectContinue: false,
    upgrade: undefined,
  });
});

Deno.test("parseHead() lower-cases names and keeps values and order", () => {
  const head = parse([
    "POST / HTTP/1.1",
    "HOST: h",
    "X-Multi: a",
    "x-multi: b",
    "Content-Type: text/plain; charset=UTF-8",
  ]);
  assertEquals(head.fields, [
    "host",
    "h",
    "x-multi",
    "a",
    "x-multi",
    "b",
    "content-type",
    "text/plain; charset=UTF-8",
  ]);
});

Deno.test("parseHead() trims spaces and tabs around values, not inside", () => {
  const head = parse(["GET / HTTP/1.1", "Host: h", "X:\t  a \t b\t "]);
  assertEquals(head.fields.slice(2), ["x", "a \t b"]);
  assertEquals(parse(["GET / HTTP/1.1", "Host: h", "X:"]).fields[3], "");
});

Deno.test("parseHead() keeps obs-text in values as latin1 chars", () => {
  const head = parse(["GET / HTTP/1.1", "Host: h", "X: caf\xe9\x80\xff"]);
  assertEquals(head.fields[3], "caf\u00e9\u0080\u00ff");
});

Deno.test("parseHead() skips empty lines before the request line", () => {
  assertEquals(
    parseHead("\r\n\r\nGET / HTTP/1.1\r\nHost: h", LIMITS).method,
    "GET",
  );
});

Deno.test("parseHead() accepts targets in every form", () => {
  for (
    const [method, target] of [
      ["GET", "/"],
      ["GET", "/a/b?c=d&e"],
      ["GET", "http://example.com/x"],
      ["OPTIONS", "*"],
      ["CONNECT", "example.com:443"],
      ["GET", "/%20?{}|"],
    ]
  ) {
    assertEquals(
      parse([`${method} ${target} HTTP/1.1`, "Host: h"]).target,
      target,
    );
  }
});

Deno.test("parseHead() rejects asterisk and authority forms for other methods", () => {
  for (const target of ["*", "example.com:443", "foo", "a?b"]) {
    assertEquals(statusOf([`GET ${target} HTTP/1.1`, "Host: h"]), 400, target);
  }
});

Deno.test("parseHead() rejects a Host that is not uri-host[:port]", () => {
  for (const host of ["a b", "example.com/admin?", "example.com#x", "u@h"]) {
    assertEquals(statusOf(["GET / HTTP/1.1", `Host: ${host}`]), 400, host);
  }
  assertEquals(
    parse(["GET / HTTP/1.1", "Host: [::1]:8080"]).host,
    "[::1]:8080",
  );
});

Deno.test("parseHead() takes HTTP/1.0 and later 1.x minors", () => {
  assertEquals(parse(["GET / HTTP/1.0"]).minor, 0);
  assertEquals(parse(["GET / HTTP/1.0"]).host, undefined);
  assertEquals(parse(["GET / HTTP/1.1", "Host: h"]).minor, 1);
  assertEquals(parse(["GET / HTTP/1.9", "Host: h"]).minor, 1);
});

Deno.test("parseHead() decides keep-alive from the version and Connection", () => {
  const cases: [string, string[], boolean][] = [
    ["HTTP/1.1", [], true],
    ["HTTP/1.1", ["Connection: close"], false],
    ["HTTP/1.1", ["Connection: Keep-Alive, CLOSE"], false],
    ["HTTP/1.1", ["Connection: foo", "Connection: close"], false],
    ["HTTP/1.1", ["Connection: keep-alive"], true],
    ["HTTP/1.0", [], false],
    ["HTTP/1.0", ["Connection: keep-alive"], true],
    ["HTTP/1.0", ["Connection: Keep-Alive"], true],
    ["HTTP/1.0", ["Connection: keep-alive, close"], false],
    ["HTTP/1.0", ["Connection: keep-alivex"], false],
  ];
  for (const [version, fields, keepAlive] of cases) {
    const head = parse([`GET / ${version}`, "Host: h", ...fields]);
    assertEquals(head.keepAlive, keepAlive, `${version} ${fields}`);
  }
});

Deno.test("parseHead() reads Content-Length", () => {
  assertEquals(
    parse(["POST / HTTP/1.1", "Host: h", "Content-Length: 0"]).contentLength,
    0,
  );
  assertEquals(
    parse(["POST / HTTP/1.1", "Host: h", "Content-Length: 123456789012345"])
      .contentLength,
    123456789012345,
  );
  assertEquals(
    parse([
      "POST / HTTP/1.1",
      "Host: h",
      "Content-Length: 7",
      "content-length: 7",
    ])
      .contentLength,
    7,
  );
  assertEquals(
    parse(["POST / HTTP/1.1", "Host: h", "Content-Length: 7 , 7"])
      .contentLength,
    7,
  );
  assertEquals(
    parse(["POST / HTTP/1.1", "Host: h", "Content-Length: 007"]).contentLength,
    7,
  );
});

Deno.test("parseHead() rejects bad Content-Length with 400", () => {
  for (
    const value of [
      "",
      "abc",
      "-1",
      "+1",
      "1.5",
      "0x10",
      "1 2",
      "1,",
      "1e3",
      "1234567890123456",
    ]
  ) {
    assertEquals(
      statusOf(["POST / HTTP/1.1", "Host: h", `Content-Length: ${value}`]),
      400,
      JSON.stringify(value),
    );
  }
  assertEquals(
    statusOf([
      "POST / HTTP/1.1",
      "Host: h",
      "Content-Length: 1",
      "Content-Length: 2",
    ]),
    400,
  );
  assertEquals(
    statusOf(["POST / HTTP/1.1", "Host: h", "Content-Length: 1, 2"]),
    400,
  );
});

Deno.test("parseHead() reads Transfer-Encoding: chunked", () => {
  for (
    const fields of [
      ["Transfer-Encoding: chunked"],
      ["Transfer-Encoding: CHUNKED"],
      ["Transfer-Encoding:  chunked  "],
      ["Transfer-Encoding: chunked,"],
    ]
  ) {
    const head = parse(["POST / HTTP/1.1", "Host: h", ...fields]);
    assertEquals(head.chunked, true, String(fields));
    assertEquals(head.contentLength, -1);
  }
});

Deno.test("parseHead() rejects unknown or unsafe transfer codings", () => {
  const cases: [string[], number][] = [
    [["Transfer-Encoding: gzip"], 501],
    [["Transfer-Encoding: gzip, chunked"], 501],
    [["Transfer-Encoding: identity"], 501],
    [["Transfer-Encoding: chunked, gzip"], 501],
    [["Transfer-Encoding: chunked", "Transfer-Encoding: gzip"], 501],
    [["Transfer-Encoding: chunked, chunked"], 400],
    [["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"], 400],
    [["Transfer-Encoding:"], 400],
    [["Transfer-Encoding: ,"], 400],
    [["Transfer-Encoding: chunked", "Content-Length: 3"], 400],
    [["Content-Length: 3", "Transfer-Encoding: chunked"], 400],
  ];
  for (const [fields, status] of cases) {
    assertEquals(
      statusOf(["POST / HTTP/1.1", "Host: h", ...fields]),
      status,
      String(fields),
    );
  }
  assertEquals(
    statusOf(["POST / HTTP/1.0", "Transfer-Encoding: chunked"]),
    400,
  );
});

Deno.test("parseHead() reads Expect: 100-continue", () => {
  assertEquals(
    parse(["POST / HTTP/1.1", "Host: h", "Expect: 100-continue"])
      .expectContinue,
    true,
  );
  assertEquals(
    parse(["POST / HTTP/1.1", "Host: h", "Expect: 100-Continue"])
      .expectContinue,
    true,
  );
  assertEquals(parse(["POST / HTTP/1.1", "Host: h"]).expectContinue, false);
  assertEquals(
    parse(["POST / HTTP/1.0", "Expect: 100-continue"]).expectContinue,
    false,
  );
  assertEquals(statusOf(["POST / HTTP/1.1", "Host: h", "Expect: 200-ok"]), 417);
});

Deno.test("parseHead() reads Upgrade only when Connection lists upgrade", () => {
  assertEquals(
    parse([
      "GET / HTTP/1.1",
      "Host: h",
      "Connection: keep-alive, Upgrade",
      "Upgrade: websocket",
    ]).upgrade,
    "websocket",
  );
  assertEquals(
    parse(["GET / HTTP/1.1", "Host: h", "Upgrade: websocket"]).upgrade,
    undefined,
  );
  assertEquals(
    parse(["GET / HTTP/1.1", "Host: h", "Connection: upgrade"]).upgrade,
    undefined,
  );
});

Deno.test("parseHead() needs exactly one Host in HTTP/1.1", () => {
  assertEquals(statusOf(["GET / HTTP/1.1"]), 400);
  assertEquals(statusOf(["GET / HTTP/1.1", "Host: a", "Host: a"]), 400);
  assertEquals(statusOf(["GET / HTTP/1.0", "Host: a", "Host: b"]), 400);
  assertEquals(parse(["GET / HTTP/1.1", "Host:"]).host, "");
  assertEquals(parse(["GET / HTTP/1.0", "Host: a"]).host, "a");
});

Deno.test("parseHead() rejects malformed request lines with 400", () => {
  for (
    const line of [
      "",
      "GET",
      "GET /",
      "GET / ",
      " GET / HTTP/1.1",
      "GET  / HTTP/1.1",
      "GE T / HTTP/1.1",
      "GET / HTTP/1.1 ",
      "GET / HTTP/1.1 extra",
      "GET / http/1.1",
      "GET / HTTP/1",
      "GET / HTTP/1.10",
      "GET / HTTP/11",
      "GET / HTTPS/1.1",
      "G(T / HTTP/1.1",
      "GET /\x00 HTTP/1.1",
      "GET /a\tb HTTP/1.1",
      "GET /caf\xe9 HTTP/1.1",
      "GET /\x7f HTTP/1.1",
      "GET / HTTP/1.1\nHost: h",
      "GET / HTTP/1.1\rHost: h",
    ]
  ) {
    assertEquals(statusOf([line, "Host: h"]), 400, JSON.stringify(line));
  }
});

Deno.test("parseHead() rejects other major versions with 505", () => {
  for (const version of ["HTTP/0.9", "HTTP/2.0", "HTTP/3.0", "HTTP/9.9"]) {
    assertEquals(statusOf([`GET / ${version}`, "Host: h"]), 505, version);
  }
});

Deno.test("parseHead() enforces the target limit with 414", () => {
  assertEquals(
    parse([`GET /${"a".repeat(63)} HTTP/1.1`, "Host: h"]).target.length,
    64,
  );
  assertEquals(statusOf([`GET /${"a".repeat(64)} HTTP/1.1`, "Host: h"]), 414);
  // The limit is checked before the target's characters.
  assertEquals(
    statusOf([`GET /${"\x01".repeat(64)} HTTP/1.1`, "Host: h"]),
    414,
  );
});

Deno.test("parseHead() enforces the field count with 431", () => {
  const fields = (n: number) => [
    "Host: h",
    ...Array.from({ length: n - 1 }, (_, i) => `X-${i}: v`),
  ];
  assertEquals(parse(["GET / HTTP/1.1", ...fields(8)]).fields.length, 16);
  assertEquals(statusOf(["GET / HTTP/1.1", ...fields(9)]), 431);
});

Deno.test("parseHead() rejects malformed fields with 400", () => {
  for (
    const field of [
      "NoColon",
      ": empty-name",
      "Host : h",
      "Host\t: h",
      " Leading: space",
      "\tLeading: tab",
      "X\x01Y: z",
      "X Y: z",
      "X(Y): z",
      "X: a\x00b",
      "X: a\x7fb",
      "X: a\rb",
      "X: a\nb",
      "X: a\x1bb",
      "X: a\x0bb",
    ]
  ) {
    assertEquals(
      statusOf(["GET / HTTP/1.1", "Host: h", field]),
      400,
      JSON.stringify(field),
    );
  }
});

Deno.test("parseHead() rejects obsolete line folding with 400", () => {
  assertEquals(statusOf(["GET / HTTP/1.1", "Host: h", "X: a", " b"]), 400);
  assertEquals(statusOf(["GET / HTTP/1.1", "Host: h", "X: a", "\tb"]), 400);
});

Deno.test("HttpError carries its status and message", () => {
  const error = new HttpError(431, "Too many header fields");
  assertInstanceOf(error, Error);
  assertStrictEquals(error.status, 431);
  assertEquals(error.message, "Too many header fields");
});

Deno.test("parseChunkSize() reads hex sizes", () => {
  const cases: [string, number][] = [
    ["0", 0],
    ["1", 1],
    ["a", 10],
    ["A", 10],
    ["ff", 255],
    ["FfFf", 65_535],
    ["0000000010", 16],
    ["ffffffffffff", 0xffffffffffff],
  ];
  for (const [line, size] of cases) {
    assertEquals(parseChunkSize(line), size, line);
  }
});

Deno.test("parseChunkSize() accepts chunk extensions of RFC 9112 7.1.1 and ignores them", () => {
  const cases: [string, number][] = [
    ["5;a=b", 5],
    ["5;name=value", 5],
    ["5 ; a = b", 5],
    ["5\t;\ta\t=\tb", 5],
    ["5 \t ;a", 5],
    ['5;a="x y \\" z"', 5],
    ['5;x="quoted; string"', 5],
    ['5;a=""', 5],
    ['5;a="\\\t"', 5],
    ['5;a="caf\xe9"', 5],
    ['5;a="\\\xe9"', 5],
    ["5;a;b=c", 5],
    ["5;a;b;c", 5],
    ["5;a=b;c=d ; e", 5],
    ["5;!#$%&'*+-.^_`|~09AZaz=!#$%&'*+-.^_`|~09AZaz", 5],
    ["0;last", 0],
    ["ff;a=b", 255],
  ];
  for (const [line, size] of cases) {
    assertEquals(parseChunkSize(line), size, JSON.stringify(line));
  }
});

Deno.test("parseChunkSize() rejects malformed chunk extensions with 400", () => {
  const cases: [string, string][] = [
    ["5;", "no name"],
    ["5 ;", "no name after BWS"],
    ["5;;a", "an empty extension"],
    ["5;a;", "a trailing semicolon"],
    ["5;=b", "a value without a name"],
    ["5;a=", "a name and = without a value"],
    ["5;a= ", "BWS but no value"],
    ["5;a==b", "two equals signs"],
    ['5;a="unterminated', "an unterminated quoted-string"],
    ['5;a="x\\"', "an escaped closing quote"],
    ['5;a=x"y"', "a quote inside a token"],
    ['5;a="x"y', "a token after a quoted-string"],
    ["5;a=b c", "two tokens in a value"],
    ["5;a b", "two tokens in a name"],
    ["5;a ", "trailing BWS after a name"],
    ["5;a=b ", "trailing BWS after a value"],
    ["5;a@=b", "a separator in a name"],
    ["5;a=b@c", "a separator in a token value"],
    ["5;a=(b)", "parentheses in a token value"],
    ["5;caf\xe9", "obs-text in a name"],
    ["5;a=caf\xe9", "obs-text in a token value"],
    ["5;a\x00", "NUL in a name"],
    ["5;a=\x01", "a control character in a token value"],
    ['5;a="\x00"', "NUL in a quoted-string"],
    ['5;a="\x7f"', "DEL in a quoted-string"],
    ['5;a="\\\x01"', "a control character after a backslash"],
    ["5;a\r", "CR in a name"],
    ["5;a\nb", "LF in a name"],
    ["5;a=b\x7f", "DEL after a value"],
    ["5;a=\tb\x0b", "a vertical tab after a value"],
  ];
  for (const [line, what] of cases) {
    const error = assertThrows(() => parseChunkSize(line), HttpError);
    assertInstanceOf(error, HttpError);
    assertEquals(error.status, 400, `${what}: ${JSON.stringify(line)}`);
    assertEquals(error.message, "Malformed chunk extension", what);
  }
});

Deno.test("parseChunkSize() rejects malformed sizes with 400", () => {
  for (
    const line of [
      "",
      " ",
      ";x",
      "g",
      "zz",
      "-1",
      "+1",
      "0x10",
      " 5",
      "5 5",
      "5 x",
      "1000000000000",
      "5 ",
      "5\t",
      "5 ;",
      "5;\x00",
      "5;a\nb",
      "5;a\x7f",
    ]
  ) {
    const error = assertThrows(() => parseChunkSize(line), HttpError);
    assertInstanceOf(error, HttpError);
    assertEquals(error.status, 400, JSON.stringify(line));
  }
});

Deno.test("latin1() decodes one char per byte", () => {
  const all = new Uint8Array(256).map((_, i) => i);
  const text = latin1(all);
  assertEquals(text.length, 256);
  for (let i = 0; i < 256; i++) assertEquals(text.charCodeAt(i), i);
  assertEquals(latin1(new Uint8Array(0)), "");
  assertEquals(
    latin1(new TextEncoder().encode("GET / HTTP/1.1")),
    "GET / HTTP/1.1",
  );
});

Deno.test("latin1() decodes inputs longer than its batch size", () => {
  const n = 100_003;
  const bytes = new Uint8Array(n).map((_, i) => (i * 31) & 0xff);
  const text = latin1(bytes);
  assertEquals(text.length, n);
  for (let i = 0; i < n; i += 997) assertEquals(text.charCodeAt(i), bytes[i]);
  assertEquals(text.charCodeAt(n - 1), bytes[n - 1]);
  assertEquals(latin1(bytes.subarray(8190, 8194)), text.slice(8190, 8194));
});

Deno.test("latin1() is not fooled by bytes that UTF-8 would decode otherwise", () => {
  const cases: number[][] = [
    [0xef, 0xbb, 0xbf, 0x41], // a BOM, which UTF-8 decoding drops
    [0xc3, 0xa9], // "é" in UTF-8: two chars in latin1
    [0xef, 0xbf, 0xbd], // U+FFFD in UTF-8
    [0xf0, 0x9f, 0x98, 0x80], // an emoji: a surrogate pair in UTF-16
    [0x41, 0x80, 0x42], // a lone continuation byte: one replacement char
    [0x0d, 0x0a, 0x7f, 0x00], // ASCII controls stay as they are
  ];
  for (const bytes of cases) {
    const text = latin1(new Uint8Array(bytes));
    const codes = Array.from(text, (_, i) => text.charCodeAt(i));
    assertEquals(codes, bytes, JSON.stringify(bytes));
  }
});
