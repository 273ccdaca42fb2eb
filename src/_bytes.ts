// Copyright 2026 the @corothread/evthread authors. MIT license.

/** Index of `needle` (not empty) in `hay[from, to)`, or -1. */
export function indexOf(
  hay: Uint8Array,
  from: number,
  to: number,
  needle: Uint8Array,
): number {
  const first = needle[0]!;
  const n = needle.byteLength;
  const last = to - n;
  let i = from;
  while (i <= last) {
    i = hay.indexOf(first, i);
    if (i < 0 || i > last) return -1;
    let j = 1;
    while (j < n && hay[i + j] === needle[j]) j++;
    if (j === n) return i;
    i++;
  }
  return -1;
}

const utf8 = new TextDecoder();

/** Decodes bytes as latin1: one char per byte, nothing rejected. */
export function latin1(bytes: Uint8Array): string {
  // ASCII, as nearly every head is, decodes the same as UTF-8, and the
  // runtime's decoder is 1.4x (40 bytes) to 8x (a browser's head) faster
  // than the loop below. It was ASCII if every byte became one char and
  // none a replacement char (a BOM or any byte above 0x7f fails that).
  const text = utf8.decode(bytes);
  if (text.length === bytes.byteLength && !text.includes("\uFFFD")) {
    return text;
  }
  let out = "";
  const n = bytes.byteLength;
  for (let i = 0; i < n; i += 8192) {
    out += String.fromCharCode.apply(
      null,
      bytes.subarray(i, Math.min(i + 8192, n)) as unknown as number[],
    );
  }
  return out;
}
