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
