// Copyright 2026 the @corothread/evthread authors. MIT license.
// The WebSocket codec's pure parts, without sockets: SHA-1, frame headers,
// unmasking, frame encoding, close bodies and codes, incremental UTF-8.
//
// deno test tests/websocket_codec_test.ts

import { assertEquals, assertThrows } from "@std/assert";
import { sha1 } from "../src/_ws_sha1.ts";
import {
  decodeHeader,
  encodeFrame,
  FrameError,
  headerRest,
  unmask,
} from "../src/_ws_frame.ts";
import { closeBody, parseCloseBody, validWireCode } from "../src/_ws_close.ts";
import { Utf8Decoder } from "../src/_ws_utf8.ts";
import { acceptKey } from "../src/_ws_handshake.ts";
import { ACCEPT, KEY, randomBytes } from "./_websocket_client.ts";

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("sha1() gives the FIPS 180-4 test vectors", () => {
  const encode = (s: string) => new TextEncoder().encode(s);
  assertEquals(
    hex(sha1(encode(""))),
    "da39a3ee5e6b4b0d3255bfef95601890afd80709",
  );
  assertEquals(
    hex(sha1(encode("abc"))),
    "a9993e364706816aba3e25717850c26c9cd0d89d",
  );
  assertEquals(
    hex(
      sha1(encode("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
    ),
    "84983e441c3bd26ebaae4aa1f95129e5e54670f1",
  );
  assertEquals(
    hex(sha1(encode("a".repeat(1_000_000)))),
    "34aa973cd4c4daa4f61eeb2bdbad27316534016f",
  );
});

Deno.test("sha1() matches crypto.subtle at every length around block boundaries", async () => {
  for (let n = 0; n < 200; n++) {
    const data = randomBytes(n, n + 1);
    const expected = new Uint8Array(await crypto.subtle.digest("SHA-1", data));
    assertEquals(sha1(data), expected, `length ${n}`);
  }
});

Deno.test("acceptKey() gives RFC 6455's sample accept value", () => {
  assertEquals(acceptKey(KEY), ACCEPT);
});

function errorOf(fn: () => unknown): FrameError {
  return assertThrows(fn, FrameError) as FrameError;
}

Deno.test("headerRest() refuses reserved bits, unknown opcodes, bad control frames and unmasked frames", () => {
  assertEquals(headerRest(0x81, 0x85), 4); // text, 5 bytes, masked
  assertEquals(headerRest(0x82, 0xfe), 6); // 16-bit length
  assertEquals(headerRest(0x82, 0xff), 12); // 64-bit length
  assertEquals(headerRest(0x89, 0xfd), 4); // ping of 125
  for (
    const [b0, b1, what] of [
      [0xc1, 0x80, /reserved bits/],
      [0x83, 0x80, /unknown data opcode 3/],
      [0x8b, 0x80, /unknown control opcode 11/],
      [0x09, 0x80, /must not be fragmented/],
      [0x89, 0xfe, /at most 125/],
      [0x81, 0x05, /must be masked/],
    ] as const
  ) {
    const error = errorOf(() => headerRest(b0, b1));
    assertEquals(error.code, 1002);
    assertEquals(what.test(error.message), true, error.message);
  }
});

Deno.test("decodeHeader() reads lengths and the key, refusing non-minimal and 63-bit-overflowing lengths", () => {
  const head = (bytes: number[]) => new Uint8Array(bytes);
  assertEquals(
    decodeHeader(head([0x81, 0x85, 1, 2, 3, 4]), 100),
    { fin: true, opcode: 1, length: 5, mask: 0x01020304 },
  );
  assertEquals(
    decodeHeader(head([0x02, 0xfe, 0x01, 0x00, 0, 0, 0, 0]), 1000).length,
    256,
  );
  assertEquals(
    decodeHeader(
      head([0x82, 0xff, 0, 0, 0, 1, 0, 0, 0, 0, 9, 9, 9, 9]),
      2 ** 40,
    )
      .length,
    2 ** 32,
  );
  const cases: [number[], number, number, RegExp][] = [
    [[0x82, 0xfe, 0, 125, 0, 0, 0, 0], 1000, 1002, /at least 126/],
    [
      [0x82, 0xff, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0],
      1_000_000,
      1002,
      /at least 65536/,
    ],
    [
      [0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
      1_000_000,
      1002,
      /top bit/,
    ],
    [
      [0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0],
      Number.MAX_SAFE_INTEGER,
      1009,
      /over the limit/,
    ],
    [[0x82, 0x85, 0, 0, 0, 0], 4, 1009, /5 bytes is over the limit of 4/],
  ];
  for (const [bytes, max, code, what] of cases) {
    const error = errorOf(() => decodeHeader(head(bytes), max));
    assertEquals(error.code, code);
    assertEquals(what.test(error.message), true, error.message);
  }
});

Deno.test("unmask() matches a byte-by-byte unmask at every offset and alignment", () => {
  const mask = 0x37fa213d;
  const keys = [0x37, 0xfa, 0x21, 0x3d];
  // Lengths on both sides of the small-payload loop (under 32 bytes).
  for (const length of [0, 1, 3, 4, 5, 31, 32, 33, 100]) {
    const data = randomBytes(length, 5);
    for (let start = 0; start < 5; start++) {
      for (let offset = 0; offset < 8; offset++) {
        const buffer = new Uint8Array(120);
        buffer.set(data, start);
        const view = buffer.subarray(start, start + data.byteLength);
        unmask(view, mask, offset);
        const expected = data.map((b, i) => b ^ keys[(offset + i) & 3]!);
        assertEquals(
          view,
          expected,
          `length ${length}, start ${start}, offset ${offset}`,
        );
      }
    }
  }
});

Deno.test("encodeFrame() uses the shortest length form", () => {
  for (
    const [n, header] of [[0, 2], [125, 2], [126, 4], [65_535, 4], [
      65_536,
      10,
    ]] as const
  ) {
    const frame = encodeFrame(2, new Uint8Array(n));
    assertEquals(frame.byteLength, n + header);
    assertEquals(frame[0], 0x82);
    assertEquals(frame[1]! & 0x80, 0, "unmasked");
  }
  assertEquals(
    encodeFrame(1, new Uint8Array([0x68, 0x69])),
    new Uint8Array([0x81, 0x02, 0x68, 0x69]),
  );
  assertEquals(
    Array.from(encodeFrame(2, new Uint8Array(65_536)).subarray(1, 10)),
    [127, 0, 0, 0, 0, 0, 1, 0, 0],
  );
});

Deno.test("validWireCode() takes 1000-1003, 1007-1014, 3000-4999 and nothing else", () => {
  const valid: number[] = [];
  for (let code = 0; code < 70_000; code++) {
    if (validWireCode(code)) valid.push(code);
  }
  const expected = [
    1000,
    1001,
    1002,
    1003,
    ...Array.from({ length: 8 }, (_, i) => 1007 + i),
    ...Array.from({ length: 2000 }, (_, i) => 3000 + i),
  ];
  assertEquals(valid, expected);
});

Deno.test("parseCloseBody() and closeBody()", () => {
  assertEquals(parseCloseBody(new Uint8Array(0)), {
    ok: true,
    code: 1005,
    reason: "",
  });
  assertEquals(parseCloseBody(new Uint8Array([3])).code, 1002);
  assertEquals(
    parseCloseBody(closeBody(1000, new TextEncoder().encode("ok"))),
    {
      ok: true,
      code: 1000,
      reason: "ok",
    },
  );
  assertEquals(parseCloseBody(new Uint8Array([0x03, 0xec])).code, 1002); // 1004
  assertEquals(parseCloseBody(new Uint8Array([0x03, 0xe8, 0xff])).code, 1007);
  assertEquals(closeBody(undefined, undefined), new Uint8Array(0));
});

Deno.test("Utf8Decoder fails at the chunk holding the first bad byte, keeps a split sequence, keeps U+FEFF", () => {
  const d = new Utf8Decoder();
  assertEquals(d.push(new Uint8Array([0xef, 0xbb])), true);
  assertEquals(d.push(new Uint8Array([0xbf, 0xe2, 0x82])), true);
  assertEquals(d.push(new Uint8Array([0xac])), true);
  assertEquals(d.end(), "\ufeff€");
  // Reused for the next message.
  assertEquals(d.push(new Uint8Array([0x41])), true);
  assertEquals(d.end(), "A");
  // An incomplete end.
  assertEquals(d.push(new Uint8Array([0xe2, 0x82])), true);
  assertEquals(d.end(), null);
  // Invalid as soon as the bad byte arrives, not at the end.
  for (
    const bad of [[0xf4, 0x90], [0xed, 0xa0], [0xc0], [0x80], [0xe0, 0x80], [
      0xf5,
    ]]
  ) {
    const fresh = new Utf8Decoder();
    assertEquals(
      fresh.push(new Uint8Array(bad)),
      false,
      hex(new Uint8Array(bad)),
    );
  }
});
