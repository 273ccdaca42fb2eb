// Copyright 2026 the @corothread/evthread authors. MIT license.
// The seeded PRNG the fuzzer makes every case from, and the small helpers
// all its parts share: bytes as latin1 text, digests, seeds and counters.

/** A small seeded PRNG (mulberry32): the same seed, the same sequence. */
export class Rng {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** A uint32. */
  u32(): number {
    const s = this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), s | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** An integer in [0, n). */
  below(n: number): number {
    return Math.floor((this.u32() / 4_294_967_296) * n);
  }

  /** An integer in [lo, hi]. */
  between(lo: number, hi: number): number {
    return lo + this.below(hi - lo + 1);
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.u32() < p * 4_294_967_296;
  }

  /** One of `items`. */
  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)]!;
  }

  /** `n` chars drawn from `alphabet`. */
  text(alphabet: string, n: number): string {
    let out = "";
    for (let i = 0; i < n; i++) out += alphabet[this.below(alphabet.length)];
    return out;
  }

  /** `n` random bytes as a latin1 string. */
  bytes(n: number): string {
    let out = "";
    for (let i = 0; i < n; i++) out += String.fromCharCode(this.below(256));
    return out;
  }
}

/** FNV-1a over a latin1 string: a uint32. */
export function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h = Math.imul(h ^ (text.charCodeAt(i) & 0xff), 0x01000193);
  }
  return h >>> 0;
}

/** The seed of one case, from the run's seed, the spec and the index. */
export function caseSeed(seed: number, index: number, salt: number): number {
  let h = (seed ^ Math.imul(index + 1, 0x9e3779b9) ^
    Math.imul(salt | 1, 0x85ebca6b)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** Encodes a string one byte per char (latin1). */
export function toBytes(text: string): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i) & 0xff;
  return out;
}

/** Decodes bytes one char per byte (latin1). */
export function toText(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.byteLength; i += 8192) {
    out += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return out;
}

/** A latin1 string as a JS string literal, `\r\n` and `\xNN` escaped. */
export function escape(text: string, max = 4000): string {
  let out = "";
  const n = Math.min(text.length, max);
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x0d) out += "\\r";
    else if (c === 0x0a) out += "\\n";
    else if (c === 0x09) out += "\\t";
    else if (c === 0x22) out += '\\"';
    else if (c === 0x5c) out += "\\\\";
    else if (c < 0x20 || c >= 0x7f) {
      out += `\\x${c.toString(16).padStart(2, "0")}`;
    } else out += text[i];
  }
  const more = text.length > max ? ` ... (${text.length - max} more)` : "";
  return `"${out}"${more}`;
}

/** What the fuzz handler answers for a body: its length and FNV-1a. */
export function digestOf(body: string): string {
  return `${body.length}:${fnv1a(body).toString(16).padStart(8, "0")}`;
}

/** A seed from a decimal or `0x` hex string; undefined if it is not one. */
export function parseSeed(text: string | undefined): number | undefined {
  if (text === undefined || text.trim() === "") return undefined;
  const n = Number(text.trim());
  return Number.isInteger(n) && n >= 0 && n <= 0xffff_ffff ? n : undefined;
}

/** `name` from the environment, or undefined without the permission. */
export function envVar(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}

/** A seed as `0x` and 8 hex digits. */
export function hexSeed(seed: number): string {
  return `0x${seed.toString(16).padStart(8, "0")}`;
}

export function bump(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}
