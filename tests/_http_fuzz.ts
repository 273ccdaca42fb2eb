// Copyright 2026 the @corothread/evthread authors. MIT license.
// The engine of the HTTP request fuzzer, shared by tests/http_fuzz_test.ts (a
// small seeded run inside `deno test`) and bench/http_fuzz.ts (a large one):
// a seeded PRNG, a generator of valid HTTP/1.1 requests, random mutations, a
// catalogue of mutations known to make a request invalid, a runner that sends
// cases to a live serve() over raw sockets and classifies what comes back,
// and drivers of the pure parsing functions (no sockets).
//
// Every case is made from (seed, spec, index) alone, so a failure is
// reproduced by its seed and index whatever ran before or beside it.

import { type HttpServer, serve } from "../http.ts";
import { EvLoop, EvSocket } from "../mod.ts";
import { BodyReader } from "../src/_http_body.ts";
import {
  checkFieldLine,
  type HeadLimits,
  HttpError,
  parseChunkSize,
  parseHead,
} from "../src/_http_parse.ts";
import { requestUrl } from "../src/_http_request.ts";
import { eventually, UnhandledRejectionSpy } from "./_helpers.ts";

// ---------------------------------------------------------------------------
// PRNG and bytes.

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

// ---------------------------------------------------------------------------
// Requests: a model that serializes to bytes, so that mutations can edit
// one part (a field name, a chunk size, a line end) and keep the rest.

/** One chunk of a chunked body. The last chunk has size 0 and no data. */
export interface Chunk {
  /** The chunk-size, as hex digits. */
  size: string;
  /** Chunk extensions, from the first `;` (and any BWS before it). */
  ext: string;
  /** What ends the chunk-size line: CRLF. */
  eol: string;
  data: string;
  /** What follows the data: CRLF (nothing for the last chunk). */
  end: string;
}

/** A field or trailer line and what ends it. */
export interface Line {
  text: string;
  eol: string;
}

/** A request, as the parts that make up its bytes. */
export interface FuzzRequest {
  /** Its `X-Fuzz-Id`, by which the handler reports seeing it. */
  id: string;
  /** Empty lines before the request line (the server skips them). */
  leading: string;
  method: string;
  target: string;
  version: string;
  /** Replaces `method target version` when set. */
  requestLine: string | undefined;
  /** What ends the request line. */
  eol: string;
  fields: Line[];
  /** The blank line that ends the head. */
  headEnd: string;
  framing: "none" | "length" | "chunked";
  /** The body of a `length` request. */
  data: string;
  /** The chunks of a chunked body, the last (size 0) included. */
  chunks: Chunk[];
  trailers: Line[];
  /** The blank line that ends a chunked body. */
  bodyEnd: string;
  // What the server should make of it, when unmutated.
  /** Whether the connection stays open after it. */
  keepAlive: boolean;
  /** The body as the handler reads it. */
  payload: string;
  /** Whether its target asks the handler to throw. */
  throws: boolean;
  /** `Content-Length` as parsed, -1 when absent. */
  contentLength: number;
  /** The Host field's value, if any. */
  host: string | undefined;
  expectContinue: boolean;
}

/** The bytes of the head, up to and including the blank line. */
export function headOf(r: FuzzRequest): string {
  const line = r.requestLine ?? `${r.method} ${r.target} ${r.version}`;
  let out = `${r.leading}${line}${r.eol}`;
  for (const f of r.fields) out += f.text + f.eol;
  return out + r.headEnd;
}

/** The bytes of the body. */
export function bodyOf(r: FuzzRequest): string {
  if (r.framing === "length") return r.data;
  if (r.framing === "none") return "";
  let out = "";
  for (const c of r.chunks) out += c.size + c.ext + c.eol + c.data + c.end;
  for (const t of r.trailers) out += t.text + t.eol;
  return out + r.bodyEnd;
}

/** The bytes of the whole request. */
export function textOf(r: FuzzRequest): string {
  return headOf(r) + bodyOf(r);
}

const TOKEN_CHARS =
  "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const PCHAR = `${ALNUM}-._~!$&'()*+,;=:@`;
const LENIENT = `"{}|^\`[]\\`;
const HEX = "0123456789abcdef";
/** Field names the generator sets on purpose, never at random. */
const RESERVED = new Set([
  "host",
  "content-length",
  "transfer-encoding",
  "connection",
  "expect",
  "upgrade",
  "x-fuzz-id",
]);
/** Hosts that are valid uri-host values the URL parser also accepts. */
const HOSTS = [
  "example.com",
  "www.example.org",
  "localhost",
  "127.0.0.1",
  "10.0.0.7",
  "[::1]",
  "[2001:db8::1]",
  "a-b.c_d.example",
  "xn--bcher-kva.example",
  "EXAMPLE.COM",
];
const METHODS = [
  "GET",
  "GET",
  "GET",
  "POST",
  "POST",
  "HEAD",
  "PUT",
  "DELETE",
  "PATCH",
  "PURGE",
  "PROPFIND",
  "get",
];

/** A token of `min` to `max` chars (mostly letters, digits and `-`). */
function token(rng: Rng, min: number, max: number): string {
  const n = rng.between(min, max);
  if (rng.chance(0.8)) {
    return rng.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 1) +
      rng.text(`${ALNUM}-`, n - 1);
  }
  return rng.text(TOKEN_CHARS, n);
}

/** Randomizes the case of each letter of `name`. */
function anyCase(rng: Rng, name: string): string {
  if (rng.chance(0.6)) return name;
  let out = "";
  for (const c of name) {
    out += rng.chance(0.5) ? c.toUpperCase() : c.toLowerCase();
  }
  return out;
}

function hostValue(rng: Rng): string {
  const host = rng.pick(HOSTS);
  return rng.chance(0.3)
    ? `${host}:${rng.pick([1, 80, 443, 8080, 65535])}`
    : host;
}

function path(rng: Rng): string {
  let out = "";
  const segments = rng.below(4);
  for (let i = 0; i < segments; i++) {
    out += "/" + rng.text(PCHAR, rng.below(10));
    if (rng.chance(0.1)) out += `%${rng.text(HEX, 2)}`;
  }
  if (out === "") out = "/";
  if (rng.chance(0.3)) {
    out += "?" + rng.text(`${PCHAR}/?`, rng.below(16));
    if (rng.chance(0.1)) out += rng.text(LENIENT, 1);
  }
  return out;
}

/** A field value: visible ASCII, obs-text, inner spaces and tabs. */
function fieldValue(rng: Rng): string {
  let out = "";
  const n = rng.below(24);
  for (let i = 0; i < n; i++) {
    const r = rng.below(20);
    if (r === 0) out += String.fromCharCode(rng.between(0x80, 0xff));
    else if (r === 1) out += rng.pick([" ", "\t"]);
    else out += String.fromCharCode(rng.between(0x21, 0x7e));
  }
  return out.trim() === "" ? out.replace(/[ \t]/g, "") : out;
}

function ows(rng: Rng): string {
  return rng.pick(["", " ", " ", " ", "\t", "  ", " \t"]);
}

function field(name: string, value: string, rng: Rng): Line {
  return { text: `${name}:${ows(rng)}${value}${ows(rng)}`, eol: "\r\n" };
}

function chunkSize(rng: Rng, n: number): string {
  let hex = n.toString(16);
  if (rng.chance(0.3)) hex = hex.toUpperCase();
  if (rng.chance(0.2)) hex = "0".repeat(rng.between(1, 2)) + hex;
  return hex;
}

function quoted(rng: Rng): string {
  let out = '"';
  const n = rng.below(8);
  for (let i = 0; i < n; i++) {
    const r = rng.below(12);
    if (r === 0) out += `\\${String.fromCharCode(rng.between(0x21, 0x7e))}`;
    else if (r === 1) out += " ";
    else {
      let c = rng.between(0x21, 0x7e);
      if (c === 0x22 || c === 0x5c) c = 0x61;
      out += String.fromCharCode(c);
    }
  }
  return out + '"';
}

function chunkExt(rng: Rng): string {
  if (rng.chance(0.6)) return "";
  let ext = "";
  const n = rng.between(1, 2);
  for (let i = 0; i < n; i++) {
    ext += rng.pick(["", "", " ", "\t"]) + ";" + rng.pick(["", "", " "]) +
      token(rng, 1, 8);
    if (rng.chance(0.6)) {
      ext += "=" + (rng.chance(0.5) ? token(rng, 1, 8) : quoted(rng));
    }
  }
  return ext;
}

/** What a request must have: options of {@linkcode generateRequest}. */
export interface RequestNeeds {
  framing?: "none" | "length" | "chunked";
  version?: "HTTP/1.1" | "HTTP/1.0";
  /** true: the connection must stay open after it; false: must close. */
  keepAlive?: boolean;
  /** Whether it may ask the handler to throw. */
  mayThrow?: boolean;
  /** At least this many data chunks, when chunked. */
  dataChunks?: number;
  /** At least one field besides Host and the marker. */
  extraField?: boolean;
  /** Whether it may carry `Expect: 100-continue`. */
  mayExpect?: boolean;
}

/** A valid request, with what the server should make of it. */
export function generateRequest(
  rng: Rng,
  id: string,
  needs: RequestNeeds = {},
): FuzzRequest {
  const version = needs.version ??
    (needs.framing === "chunked" || rng.chance(0.85) ? "HTTP/1.1" : "HTTP/1.0");
  const http11 = version === "HTTP/1.1";
  const framing = needs.framing ??
    (http11
      ? rng.pick(["none", "none", "length", "chunked"] as const)
      : rng.pick(["none", "length"] as const));
  let method = rng.chance(0.05)
    ? rng.text(TOKEN_CHARS, rng.between(1, 8))
    : rng.pick(METHODS);
  const throws = needs.mayThrow === true && rng.chance(0.05);
  let target: string;
  const form = rng.below(100);
  if (throws) target = "/throw" + (rng.chance(0.3) ? "?x=1" : "");
  else if (form < 10) {
    target = `${rng.pick(["http", "HTTP", "https"])}://${hostValue(rng)}${
      path(rng)
    }`;
  } else if (form < 14) {
    method = "OPTIONS";
    target = "*";
  } else if (form < 16 && framing === "none") {
    method = "CONNECT";
    target = `${rng.pick(HOSTS)}:${rng.pick([80, 443, 8443])}`;
  } else target = path(rng);

  const fields: Line[] = [];
  let host: string | undefined;
  if (http11 || rng.chance(0.5)) {
    host = rng.chance(0.03) ? "" : hostValue(rng);
    fields.push(field(anyCase(rng, "Host"), host, rng));
  }
  fields.push({ text: `X-Fuzz-Id: ${id}`, eol: "\r\n" });
  const extra = rng.below(needs.extraField ? 4 : 5) +
    (needs.extraField ? 1 : 0);
  for (let i = 0; i < extra; i++) {
    let name = token(rng, 1, 14);
    while (RESERVED.has(name.toLowerCase())) name = token(rng, 1, 14);
    fields.push(field(name, fieldValue(rng), rng));
  }

  // Keep-alive, decided by Connection.
  let keepAlive = needs.keepAlive ?? rng.chance(0.75);
  const upgrade = http11 && framing === "none" && rng.chance(0.05);
  const tokens: string[] = [];
  if (http11) {
    if (!keepAlive) tokens.push("close");
    else if (rng.chance(0.2)) tokens.push("keep-alive");
  } else if (keepAlive) tokens.push("keep-alive");
  else if (rng.chance(0.3)) tokens.push("close");
  if (upgrade) {
    tokens.push("Upgrade");
    fields.push(field(anyCase(rng, "Upgrade"), "websocket", rng));
  }
  if (tokens.length > 0) {
    fields.push(
      field(
        anyCase(rng, "Connection"),
        rng.chance(0.5) ? tokens.join(", ") : tokens.join(","),
        rng,
      ),
    );
  }
  keepAlive = http11
    ? !tokens.includes("close")
    : tokens.includes("keep-alive");

  // The body.
  let data = "";
  const chunks: Chunk[] = [];
  const trailers: Line[] = [];
  let payload = "";
  let contentLength = -1;
  if (framing === "length") {
    data = rng.bytes(
      rng.chance(0.1) ? 0 : rng.between(1, rng.chance(0.1) ? 1500 : 200),
    );
    payload = data;
    contentLength = data.length;
    const name = anyCase(rng, "Content-Length");
    const r = rng.below(10);
    if (r === 0) {
      fields.push(field(name, `${data.length}, ${data.length}`, rng));
    } else if (r === 1) {
      fields.push(field(name, `${data.length}`, rng));
      fields.push(field(name, `${data.length}`, rng));
    } else if (r === 2) fields.push(field(name, `00${data.length}`, rng));
    else fields.push(field(name, `${data.length}`, rng));
  } else if (framing === "chunked") {
    fields.push(
      field(
        anyCase(rng, "Transfer-Encoding"),
        rng.pick(["chunked", "chunked", "Chunked", "CHUNKED"]),
        rng,
      ),
    );
    const count = Math.max(needs.dataChunks ?? 0, rng.below(5));
    for (let i = 0; i < count; i++) {
      const piece = rng.bytes(rng.between(1, rng.chance(0.1) ? 600 : 64));
      payload += piece;
      chunks.push({
        size: chunkSize(rng, piece.length),
        ext: chunkExt(rng),
        eol: "\r\n",
        data: piece,
        end: "\r\n",
      });
    }
    chunks.push({
      size: rng.pick(["0", "0", "0", "00", "000"]),
      ext: chunkExt(rng),
      eol: "\r\n",
      data: "",
      end: "",
    });
    if (rng.chance(0.2)) {
      const n = rng.between(1, 2);
      for (let i = 0; i < n; i++) {
        trailers.push(field(token(rng, 1, 10), fieldValue(rng), rng));
      }
    }
  } else if (rng.chance(0.1)) {
    fields.push(field(anyCase(rng, "Content-Length"), "0", rng));
    contentLength = 0;
  }
  const hasBody = framing === "chunked" || contentLength > 0;
  let expectContinue = false;
  if (hasBody && needs.mayExpect !== false && rng.chance(0.15)) {
    fields.push(
      field(
        anyCase(rng, "Expect"),
        rng.pick(["100-continue", "100-Continue"]),
        rng,
      ),
    );
    expectContinue = http11;
  }

  // Shuffle the fields (Fisher-Yates).
  for (let i = fields.length - 1; i > 0; i--) {
    const j = rng.below(i + 1);
    [fields[i], fields[j]] = [fields[j]!, fields[i]!];
  }
  return {
    id,
    leading: rng.chance(0.05) ? "\r\n".repeat(rng.between(1, 2)) : "",
    method,
    target,
    version,
    requestLine: undefined,
    eol: "\r\n",
    fields,
    headEnd: "\r\n",
    framing,
    data,
    chunks,
    trailers,
    bodyEnd: "\r\n",
    keepAlive,
    payload,
    throws,
    contentLength,
    host,
    expectContinue,
  };
}

/** A copy to mutate. */
function clone(r: FuzzRequest): FuzzRequest {
  return structuredClone(r);
}

// ---------------------------------------------------------------------------
// Random mutations: anything goes, only the server's conduct is checked.

const INTERESTING = [
  "\r\n",
  "\r",
  "\n",
  "\x00",
  " ",
  "\t",
  ":",
  ";",
  ",",
  "0",
  "f",
  "-",
  "+",
  "\r\n\r\n",
  "\x7f",
  "\xff",
  "chunked",
  "HTTP/1.1",
  "0\r\n\r\n",
  "Transfer-Encoding: chunked\r\n",
  "Content-Length: 0\r\n",
  "Content-Length: 5\r\n",
  "Host: x\r\n",
  "Expect: 100-continue\r\n",
  "Connection: close\r\n",
  "GET / HTTP/1.1\r\n",
];
const SOUP = [
  "GET",
  "POST",
  " ",
  "/",
  "*",
  "HTTP/1.1",
  "HTTP/1.0",
  "\r\n",
  "\n",
  "Host: a",
  ":",
  "Transfer-Encoding: chunked",
  "Content-Length: 3",
  "0",
  "5",
  "ffff",
  "\r\n\r\n",
  ";",
  "abc",
  "\t",
  "Expect: 100-continue",
];

/** Applies random mutations to `text`; `other` makes a second pipeline. */
export function mutateRandomly(
  rng: Rng,
  text: string,
  other: () => string,
): { text: string; label: string } {
  const r = rng.below(100);
  if (r < 6) {
    const n = rng.below(600);
    const style = rng.below(3);
    let out = "";
    if (style === 0) out = rng.bytes(n);
    else if (style === 1) {
      while (out.length < n) {
        out += rng.chance(0.05)
          ? "\r\n"
          : String.fromCharCode(rng.between(0x20, 0x7e));
      }
    } else {
      while (out.length < n) out += rng.pick(SOUP);
    }
    return {
      text: out,
      label: ["random-bytes", "random-ascii", "random-soup"][style]!,
    };
  }
  if (r < 13) {
    const b = other();
    return {
      text: text.slice(0, rng.below(text.length + 1)) +
        b.slice(rng.below(b.length + 1)),
      label: "splice",
    };
  }
  const ops: string[] = [];
  const n = rng.between(1, 3);
  let out = text;
  for (let i = 0; i < n; i++) {
    const op = rng.below(100);
    const at = rng.below(out.length + 1);
    if (op < 25) {
      ops.push("flip");
      if (out.length === 0) continue;
      const p = Math.min(at, out.length - 1);
      const c = rng.chance(0.5)
        ? out.charCodeAt(p) ^ (1 << rng.below(8))
        : rng.below(256);
      out = out.slice(0, p) + String.fromCharCode(c) + out.slice(p + 1);
    } else if (op < 45) {
      ops.push("insert");
      const what = rng.chance(0.6)
        ? rng.pick(INTERESTING)
        : rng.bytes(rng.between(1, 4));
      out = out.slice(0, at) + what + out.slice(at);
    } else if (op < 55) {
      ops.push("insert-line");
      const ends: number[] = [];
      for (let j = out.indexOf("\n"); j >= 0; j = out.indexOf("\n", j + 1)) {
        ends.push(j + 1);
      }
      const p = ends.length > 0 ? rng.pick(ends) : at;
      const line = rng.chance(0.5)
        ? rng.pick(INTERESTING.filter((s) => s.endsWith("\r\n")))
        : `${token(rng, 1, 8)}:${fieldValue(rng)}\r\n`;
      out = out.slice(0, p) + line + out.slice(p);
    } else if (op < 70) {
      ops.push("delete");
      out = out.slice(0, at) + out.slice(at + rng.between(1, 8));
    } else if (op < 80) {
      ops.push("duplicate");
      const from = rng.below(out.length + 1);
      const piece = out.slice(from, from + rng.between(1, 40));
      out = out.slice(0, at) + piece + out.slice(at);
    } else if (op < 90) {
      ops.push("truncate");
      out = out.slice(0, at);
    } else if (op < 97) {
      ops.push("case");
      const end = Math.min(out.length, at + rng.between(1, 20));
      const piece = out.slice(at, end);
      out = out.slice(0, at) +
        (rng.chance(0.5) ? piece.toUpperCase() : piece.toLowerCase()) +
        out.slice(end);
    } else {
      // Many copies of one line: the header size and count limits.
      ops.push("inflate");
      const start = out.lastIndexOf("\n", at) + 1;
      const end = out.indexOf("\n", at);
      const line = end < 0 ? "X-Pad: p\r\n" : out.slice(start, end + 1);
      const copies = rng.between(50, 1200);
      out = out.slice(0, start) + line.repeat(copies) + out.slice(start);
    }
  }
  return { text: out, label: ops.join("+") };
}

// ---------------------------------------------------------------------------
// The catalogue of mutations known to make a request invalid: each must get
// a 4xx/5xx or a close, never a 2xx; a defect in the head must also never
// reach the handler.

/** A request after a known-invalid mutation. */
export interface Mutated {
  head: string;
  body: string;
}

/** One class of known-invalid mutation. */
export interface InvalidMutation {
  /** Short name, used in specs and labels. */
  id: string;
  /** What it does, for test names and reports. */
  title: string;
  /**
   * Where the defect is: in the head (the head checks reject it before the
   * handler runs) or in the body (reading the body fails).
   */
  where: "head" | "body";
  /**
   * Whether the URL parser has the last word (the server's URL check, not
   * parseHead, must refuse it): such classes are judged on the live server
   * only, not in the pure fuzz of parseHead.
   */
  byUrl?: boolean;
  /** What the request to mutate must have. */
  needs: RequestNeeds;
  /** Mutates a copy of `request`. */
  apply(request: FuzzRequest, rng: Rng): Mutated;
  /**
   * A server defect this class exposes, known when the catalogue was
   * written: printed with its failures. It is not an excuse: the class
   * still fails until the server is fixed.
   */
  defect?: string;
}

const CONTROLS = Array.from({ length: 0x20 }, (_, i) => String.fromCharCode(i))
  .concat(["\x7f"]);
const VALUE_CONTROLS = CONTROLS.filter((c) =>
  c !== "\t" && c !== "\r" && c !== "\n"
);
const SEPARATORS = '"(),/:;<=>?@[\\]{}'.split("");

function whole(r: FuzzRequest): Mutated {
  return { head: headOf(r), body: bodyOf(r) };
}

/** The index of a field other than the marker (adds one when none). */
function pickField(r: FuzzRequest, rng: Rng): number {
  const choices: number[] = [];
  r.fields.forEach((f, i) => {
    if (!f.text.startsWith("X-Fuzz-Id:")) choices.push(i);
  });
  if (choices.length > 0) return rng.pick(choices);
  r.fields.push(field(token(rng, 1, 8), fieldValue(rng), rng));
  return r.fields.length - 1;
}

function insertAt(text: string, at: number, what: string): string {
  return text.slice(0, at) + what + text.slice(at);
}

function hostIndices(r: FuzzRequest): number[] {
  const out: number[] = [];
  r.fields.forEach((f, i) => {
    if (/^host:/i.test(f.text)) out.push(i);
  });
  return out;
}

function setField(r: FuzzRequest, name: RegExp, line: Line | undefined): void {
  r.fields = r.fields.filter((f) => !name.test(f.text));
  if (line !== undefined) r.fields.push(line);
}

function dataChunk(r: FuzzRequest, rng: Rng): Chunk {
  return rng.pick(r.chunks.slice(0, -1));
}

/** A chunk size that is not 1*HEXDIG (nor hex digits then BWS then `;`). */
function badChunkSize(c: Chunk, rng: Rng): string {
  const v = rng.below(7);
  const nonHex = rng.text(
    "ghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ_.,:/'!@#$%^&*()=[]{}<>?~`|\\\"",
    1,
  );
  if (v === 0) return insertAt(c.size, rng.below(c.size.length + 1), nonHex);
  if (v === 1) return `0x${c.size}`;
  if (v === 2) return "";
  if (v === 3) return ` ${c.size}`;
  if (v === 4 && c.ext === "") return `${c.size}${rng.pick([" ", "\t"])}`;
  if (v === 5 && c.size.length > 1) return insertAt(c.size, 1, " ");
  return `${c.size}${nonHex}`;
}

/** Hosts that are not uri-host [":" port]: parseHead refuses them. */
const BAD_HOSTS = [
  "a b",
  "a/b",
  "a?b",
  "a#b",
  "user@a",
  "[::1",
  "::1",
  "a:1:2",
  "a:b",
  "a:-1",
  "[::1]x",
  "[::g]",
  "[]",
  "a\\b",
  "a^b",
  "a|b",
  "<a>",
  'a"b',
  "{a}",
  "a,b c",
];
/**
 * Hosts with a bad percent-encoding or IP literal (or a port out of range):
 * parseHead lets them through and the URL check refuses them, when the URL
 * is made from the Host (an origin-form or asterisk-form target).
 */
const BAD_HOSTS_URL = ["%zz", "a%", "a%4", "[1:2]", "[1::2::3]", "a:99999"];
/**
 * Hosts that match the server's uri-host check but that the URL parser
 * rejects: an empty host before a port (RFC 9110 4.2.1: an http URI with an
 * empty host is invalid), IPv4-like names out of range, bad punycode.
 */
const HOSTS_NOT_URLS = [
  ":80",
  ":",
  "1.2.3.256",
  "999.0.0.1",
  "4294967296",
  "1.2.3.4.5",
  "08",
  "0x100000000",
  "xn--a",
  "xn--zz.example",
];

/** The catalogue. */
export const INVALID: readonly InvalidMutation[] = [
  {
    id: "field-name-ctl",
    title: "a control byte (0x00-0x1f, 0x7f) in a field name",
    where: "head",
    needs: { extraField: true },
    apply(r, rng) {
      const f = r.fields[pickField(r, rng)]!;
      const colon = f.text.indexOf(":");
      f.text = insertAt(f.text, rng.below(colon + 1), rng.pick(CONTROLS));
      return whole(r);
    },
  },
  {
    id: "space-before-colon",
    title: "a space or tab before the colon",
    where: "head",
    needs: {},
    apply(r, rng) {
      const f = r.fields[pickField(r, rng)]!;
      const colon = f.text.indexOf(":");
      f.text = insertAt(f.text, colon, rng.pick([" ", "\t", "  ", " \t"]));
      return whole(r);
    },
  },
  {
    id: "obs-fold",
    title: "obsolete line folding (a line starting with SP or HTAB)",
    where: "head",
    needs: {},
    apply(r, rng) {
      const text = rng.pick([" ", "\t", "  "]) +
        rng.text(`${ALNUM}-=`, rng.between(1, 10));
      r.fields.splice(rng.below(r.fields.length + 1), 0, {
        text,
        eol: "\r\n",
      });
      return whole(r);
    },
  },
  {
    id: "value-bare-cr",
    title: "a bare CR in a field value",
    where: "head",
    needs: {},
    apply(r, rng) {
      const f = r.fields[pickField(r, rng)]!;
      const colon = f.text.indexOf(":");
      f.text = insertAt(
        f.text,
        rng.between(colon + 1, f.text.length),
        "\r",
      );
      return whole(r);
    },
  },
  {
    id: "value-ctl",
    title: "a NUL, DEL or other control byte in a field value",
    where: "head",
    needs: {},
    apply(r, rng) {
      const f = r.fields[pickField(r, rng)]!;
      const colon = f.text.indexOf(":");
      f.text = insertAt(
        f.text,
        rng.between(colon + 1, f.text.length),
        rng.pick(VALUE_CONTROLS),
      );
      return whole(r);
    },
  },
  {
    id: "target-nul",
    title: "a NUL in the target",
    where: "head",
    needs: {},
    apply(r, rng) {
      r.target = insertAt(r.target, rng.below(r.target.length + 1), "\x00");
      return whole(r);
    },
  },
  {
    id: "target-bad-byte",
    title: "a control, DEL or non-ASCII byte in the target",
    where: "head",
    needs: {},
    apply(r, rng) {
      const byte = rng.chance(0.5)
        ? rng.pick(CONTROLS)
        : String.fromCharCode(rng.between(0x80, 0xff));
      r.target = insertAt(r.target, rng.below(r.target.length + 1), byte);
      return whole(r);
    },
  },
  {
    id: "target-form",
    byUrl: true,
    title: "a target in a form its method cannot have, or no URL at all",
    where: "head",
    needs: {},
    apply(r, rng) {
      const v = rng.below(10);
      if (v === 0) {
        if (r.method === "OPTIONS") r.method = "GET";
        r.target = "*";
      } else if (v === 1) {
        if (r.method === "CONNECT") r.method = "GET";
        r.target = "example.com:443";
      } else if (v === 2 && r.method === "CONNECT") r.target = "example.com";
      else {
        r.target = rng.pick([
          "a/b",
          "?q=1",
          "#frag",
          "http:/x",
          "ftp://example.com/",
          "http://",
          "https://example.com:99999/",
          "http://[::1/",
          "http://%zz/",
          "http://1.2.3.256/",
          "http://:80/",
          "*x",
          "**",
        ]);
      }
      return whole(r);
    },
  },
  {
    id: "method-char",
    title: "an invalid character in the method",
    where: "head",
    needs: {},
    apply(r, rng) {
      const v = rng.below(3);
      const c = v === 0
        ? rng.pick(SEPARATORS)
        : v === 1
        ? rng.pick(CONTROLS.filter((c) => c !== "\n" || r.leading === ""))
        : String.fromCharCode(rng.between(0x80, 0xff));
      r.method = insertAt(r.method, rng.below(r.method.length + 1), c);
      return whole(r);
    },
  },
  {
    id: "version",
    title: "an unsupported or garbled HTTP version",
    where: "head",
    needs: {},
    apply(r, rng) {
      if (rng.chance(0.6)) {
        r.version = rng.pick([
          "HTTP/2.0",
          "HTTP/3.0",
          "HTTP/0.9",
          "HTTP/9.9",
          "HTTP/1.10",
          "HTTP/1",
          "HTTP/1.",
          "HTTP/11",
          "HTTP/1.1.1",
          "http/1.1",
          "Http/1.1",
          "HTTP/1.x",
          "HTTPS/1.1",
          "HTTP/+1.1",
          "HTTP/1.-1",
          "HTTP1.1",
          "",
          "HTTP/1.1\x00",
          "HTTP/\xb9.1",
          "HTTP/1,1",
          "HTTP/1.1a",
          "HTTP\\1.1",
        ]);
      } else {
        let v = r.version;
        while (/^HTTP\/1\.\d$/.test(v)) {
          const at = rng.below(r.version.length);
          v = r.version.slice(0, at) + String.fromCharCode(rng.below(256)) +
            r.version.slice(at + 1);
        }
        r.version = v;
      }
      return whole(r);
    },
  },
  {
    id: "extra-space",
    title: "extra spaces (or a tab) in the request line",
    where: "head",
    needs: {},
    apply(r, rng) {
      const { method: m, target: t, version: v } = r;
      r.requestLine = rng.pick([
        `${m}  ${t} ${v}`,
        `${m} ${t}  ${v}`,
        `${m} ${t} ${v} `,
        ` ${m} ${t} ${v}`,
        `${m}\t${t} ${v}`,
        `${m} ${t}\t${v}`,
        `${m} ${t} ${v}\t`,
        `${m} ${t.slice(0, 1)} ${t.slice(1) || "x"} ${v}`,
      ]);
      return whole(r);
    },
  },
  {
    id: "bare-lf",
    title: "a bare LF ending a head line",
    where: "head",
    needs: {},
    apply(r, rng) {
      const v = rng.below(r.fields.length + 3);
      if (v === 0) r.eol = "\n";
      else if (v === 1) r.headEnd = "\n";
      else if (v === 2) {
        r.eol = "\n";
        for (const f of r.fields) f.eol = "\n";
        r.headEnd = "\n";
      } else r.fields[v - 3]!.eol = "\n";
      return whole(r);
    },
  },
  {
    id: "no-host",
    title: "HTTP/1.1 without Host",
    where: "head",
    needs: { version: "HTTP/1.1" },
    apply(r) {
      setField(r, /^host:/i, undefined);
      return whole(r);
    },
  },
  {
    id: "two-hosts",
    title: "two Host fields",
    where: "head",
    needs: {},
    apply(r, rng) {
      const count = hostIndices(r).length;
      for (let i = count; i < 2; i++) {
        r.fields.splice(
          rng.below(r.fields.length + 1),
          0,
          field(
            anyCase(rng, "Host"),
            rng.chance(0.3) ? r.host ?? "example.com" : hostValue(rng),
            rng,
          ),
        );
      }
      return whole(r);
    },
  },
  {
    id: "bad-host",
    title: 'a Host that is not uri-host [":" port]',
    where: "head",
    needs: {},
    apply(r, rng) {
      setField(r, /^host:/i, field("Host", rng.pick(BAD_HOSTS), rng));
      return whole(r);
    },
  },
  {
    id: "host-url-check",
    byUrl: true,
    title: "a Host with a bad percent-encoding, IP literal or port, " +
      "beside an origin-form target",
    where: "head",
    needs: {},
    apply(r, rng) {
      setField(r, /^host:/i, field("Host", rng.pick(BAD_HOSTS_URL), rng));
      if (r.target.charCodeAt(0) !== 0x2f && r.target !== "*") {
        if (r.method === "CONNECT") r.method = "GET";
        r.target = "/";
      }
      return whole(r);
    },
  },
  {
    id: "host-invalid-absolute",
    byUrl: true,
    title: "a Host with an invalid value (bad percent-encoding or IP " +
      "literal) beside an absolute-form or authority-form target",
    where: "head",
    needs: { framing: "none" },
    apply(r, rng) {
      setField(
        r,
        /^host:/i,
        field("Host", rng.pick(BAD_HOSTS_URL.slice(0, -1)), rng),
      );
      if (rng.chance(0.7)) {
        if (r.method === "CONNECT" || r.method === "OPTIONS") r.method = "GET";
        r.target = `http://example.com${path(rng)}`;
      } else {
        r.method = "CONNECT";
        r.target = "example.com:443";
      }
      return whole(r);
    },
  },
  {
    id: "host-not-a-url",
    byUrl: true,
    title: "a Host the URL parser rejects (empty host, IPv4 out of range)",
    where: "head",
    needs: {},
    apply(r, rng) {
      setField(r, /^host:/i, field("Host", rng.pick(HOSTS_NOT_URLS), rng));
      // Origin-form: an absolute-form target would make the URL.
      if (r.target.charCodeAt(0) !== 0x2f) {
        r.method = r.method === "CONNECT" ? "GET" : r.method;
        r.target = "/";
      }
      return whole(r);
    },
  },
  {
    id: "cl-differing",
    title: "a second Content-Length with a different value",
    where: "head",
    needs: { framing: "length" },
    apply(r, rng) {
      const n = r.data.length;
      const m = rng.chance(0.3) && n > 0 ? 0 : n + rng.between(1, 10);
      const v = rng.below(3);
      if (v === 0) {
        r.fields.splice(
          rng.below(r.fields.length + 1),
          0,
          field(anyCase(rng, "Content-Length"), `${m}`, rng),
        );
      } else {
        setField(
          r,
          /^content-length:/i,
          field("Content-Length", v === 1 ? `${n}, ${m}` : `${m}, ${n}`, rng),
        );
      }
      return whole(r);
    },
  },
  {
    id: "cl-malformed",
    title: "a Content-Length with a sign, a space, a non-digit or 20 digits",
    where: "head",
    needs: { framing: "length" },
    apply(r, rng) {
      const n = r.data.length;
      const value = rng.pick([
        `+${n}`,
        `-${n}`,
        "-0",
        `${n} ${n}`,
        `1 ${n}`,
        `0x${n.toString(16)}`,
        `${n}a`,
        `${n}.0`,
        "1e2",
        "",
        `${n},`,
        `,${n}`,
        `"${n}"`,
        `${n};`,
        "\xb2",
        "99999999999999999999",
        `${n}\x0b`,
      ]);
      setField(r, /^content-length:/i, field("Content-Length", value, rng));
      return whole(r);
    },
  },
  {
    id: "te-and-cl",
    title: "Transfer-Encoding: chunked with Content-Length",
    where: "head",
    needs: { framing: "chunked" },
    apply(r, rng) {
      const body = bodyOf(r).length;
      r.fields.splice(
        rng.below(r.fields.length + 1),
        0,
        field(
          anyCase(rng, "Content-Length"),
          `${rng.pick([0, body, body + 1, r.payload.length])}`,
          rng,
        ),
      );
      return whole(r);
    },
  },
  {
    id: "te-not-chunked-last",
    title: "a Transfer-Encoding other than chunked-last (with or without " +
      "Content-Length)",
    where: "head",
    needs: { framing: "chunked" },
    apply(r, rng) {
      const value = rng.pick([
        "gzip",
        "chunked, gzip",
        "gzip, chunked, identity",
        "identity",
        "deflate",
        "chunked;q=1",
        '"chunked"',
        "xchunked",
        "chunked, chunked",
        "chunked chunked",
        "chunked\x0b",
        ",",
        "",
      ]);
      setField(
        r,
        /^transfer-encoding:/i,
        field("Transfer-Encoding", value, rng),
      );
      if (rng.chance(0.5)) {
        r.fields.push(
          field("Content-Length", `${bodyOf(r).length}`, rng),
        );
      }
      return whole(r);
    },
  },
  {
    id: "te-http10",
    title: "Transfer-Encoding in HTTP/1.0",
    where: "head",
    needs: { framing: "chunked" },
    apply(r) {
      r.version = "HTTP/1.0";
      return whole(r);
    },
  },
  {
    id: "expect-unsupported",
    title: "an unsupported expectation",
    where: "head",
    needs: {},
    apply(r, rng) {
      setField(
        r,
        /^expect:/i,
        field(
          "Expect",
          rng.pick(["100-continuex", "fly", "100-continue, foo", "200-ok"]),
          rng,
        ),
      );
      return whole(r);
    },
  },
  {
    id: "field-no-colon",
    title: "a field line without a colon, or with an empty name",
    where: "head",
    needs: {},
    apply(r, rng) {
      r.fields.splice(rng.below(r.fields.length + 1), 0, {
        text: rng.pick(["NoColon", "Name value", ": v", ":", "X-A\x00"]),
        eol: "\r\n",
      });
      return whole(r);
    },
  },
  {
    id: "chunk-size-non-hex",
    title: "a non-hex chunk size",
    where: "body",
    needs: { framing: "chunked" },
    apply(r, rng) {
      const c = rng.pick(r.chunks);
      c.size = badChunkSize(c, rng);
      return whole(r);
    },
  },
  {
    id: "chunk-size-sign",
    title: "a chunk size with a sign",
    where: "body",
    needs: { framing: "chunked" },
    apply(r, rng) {
      const c = rng.pick(r.chunks);
      c.size = rng.pick(["+", "-"]) + c.size;
      return whole(r);
    },
  },
  {
    id: "chunk-size-overflow",
    title: "a chunk size of 17 or more hex digits",
    where: "body",
    needs: { framing: "chunked", dataChunks: 1 },
    apply(r, rng) {
      const c = rng.pick(r.chunks);
      c.size = rng.pick([
        "10000000000000000",
        "fffffffffffffffff",
        "1" + "0".repeat(rng.between(16, 24)),
        rng.text("123456789abcdef", 1) + rng.text(HEX, rng.between(16, 23)),
      ]);
      return whole(r);
    },
  },
  {
    id: "chunk-no-crlf",
    title: "chunk data not followed by its CRLF",
    where: "body",
    needs: { framing: "chunked", dataChunks: 1 },
    apply(r, rng) {
      const c = dataChunk(r, rng);
      const v = rng.below(9);
      if (v < 7) {
        c.end = ["", "\n", "\r", "X", "\n\r", "\r\r\n", " \r\n"][v]!;
      } else if (v === 7) {
        c.data += rng.bytes(1); // one byte more than its size
      } else {
        // One byte less than its size: the CR of its CRLF is read as data.
        c.data = c.data.slice(0, -1);
        c.size = (c.data.length + 1).toString(16);
        if (c.data.length === 0) c.end = "\n";
      }
      return whole(r);
    },
  },
  {
    id: "chunk-line-bare-lf",
    title: "a chunk-size line, trailer or final line ended by a bare LF",
    where: "body",
    needs: { framing: "chunked" },
    apply(r, rng) {
      const v = rng.below(r.chunks.length + r.trailers.length + 1);
      if (v < r.chunks.length) r.chunks[v]!.eol = "\n";
      else if (v < r.chunks.length + r.trailers.length) {
        r.trailers[v - r.chunks.length]!.eol = "\n";
      } else r.bodyEnd = "\n";
      return whole(r);
    },
  },
  {
    id: "chunk-ext-ctl",
    title: "a control byte in a chunk extension",
    where: "body",
    needs: { framing: "chunked" },
    apply(r, rng) {
      const c = rng.pick(r.chunks);
      const ctl = rng.pick(CONTROLS.filter((c) => c !== "\t"));
      if (c.ext === "") c.ext = `;${token(rng, 1, 6)}`;
      c.ext = insertAt(c.ext, rng.between(1, c.ext.length), ctl);
      return whole(r);
    },
  },
  {
    id: "trailer-malformed",
    title: "a malformed trailer field",
    where: "body",
    needs: { framing: "chunked" },
    apply(r, rng) {
      r.trailers.splice(rng.below(r.trailers.length + 1), 0, {
        text: rng.pick([
          "NoColon",
          "X-T : v",
          "X-T\t: v",
          " folded",
          "\tfolded: x",
          "X\x01T: v",
          "X-T: a\x00b",
          ": v",
          "X-T: a\rb",
          "X-T: a\x7f",
        ]),
        eol: "\r\n",
      });
      return whole(r);
    },
  },
];

/** The catalogue by id. */
export const INVALID_BY_ID: ReadonlyMap<string, InvalidMutation> = new Map(
  INVALID.map((m) => [m.id, m]),
);

// ---------------------------------------------------------------------------
// Cases.

/** What a case is: a kind, and for invalid ones the mutation class. */
export type CaseSpec =
  | { kind: "valid"; holdOpen?: boolean }
  | { kind: "random"; holdOpen?: boolean }
  | { kind: "invalid"; mutation: string; holdOpen?: boolean };

/** A spec as text: `valid`, `random+hold`, `invalid:chunk-no-crlf`. */
export function specName(spec: CaseSpec): string {
  const base = spec.kind === "invalid" ? `invalid:${spec.mutation}` : spec.kind;
  return spec.holdOpen ? `${base}+hold` : base;
}

/** Parses {@linkcode specName}'s text. */
export function parseSpec(text: string): CaseSpec {
  const holdOpen = text.endsWith("+hold");
  const base = holdOpen ? text.slice(0, -5) : text;
  if (base === "valid" || base === "random") return { kind: base, holdOpen };
  if (base.startsWith("invalid:") && INVALID_BY_ID.has(base.slice(8))) {
    return { kind: "invalid", mutation: base.slice(8), holdOpen };
  }
  throw new TypeError(`Unknown case spec: received ${JSON.stringify(text)}`);
}

/** The spec of case `index` in a mixed run (the bench). */
export function mixedSpec(
  seed: number,
  index: number,
  holdOpenRate: number,
): CaseSpec {
  const rng = new Rng(caseSeed(seed, index, 0x5bec));
  const r = rng.below(100);
  const holdOpen = rng.chance(holdOpenRate);
  if (r < 20) return { kind: "valid", holdOpen };
  if (r < 65) return { kind: "random", holdOpen };
  return { kind: "invalid", mutation: rng.pick(INVALID).id, holdOpen };
}

/** An answer a valid request must get. */
export interface Expected {
  /** 200, or 500 when the handler throws on purpose. */
  status: number;
  /** The digest of the body the handler must have read (for 200). */
  digest: string;
}

/** One case: bytes to send over one connection, and how to judge. */
export interface FuzzCase {
  seed: number;
  index: number;
  spec: CaseSpec;
  /** `spec/index`, the prefix of its requests' `X-Fuzz-Id`. */
  key: string;
  /** What was done to it: `valid`, `random:flip+truncate`, `invalid:...`. */
  label: string;
  /** The bytes, as latin1. */
  text: string;
  /** Sizes of the writes, in order. */
  pieces: number[];
  /** Whether to pause a little between writes. */
  pauses: boolean;
  /** Keep the write side open: the server's timeouts must end it. */
  holdOpen: boolean;
  /** Valid cases: the final responses, in order. */
  expected: Expected[];
  /** Invalid cases: how many valid requests precede the mutated one. */
  before: number;
  /** Invalid cases: the mutation class. */
  mutation: InvalidMutation | undefined;
}

function pipeline(
  rng: Rng,
  key: string,
  count: number,
  needs: RequestNeeds,
): FuzzRequest[] {
  const out: FuzzRequest[] = [];
  for (let i = 0; i < count; i++) {
    out.push(
      generateRequest(rng, `${key}.${i}`, {
        ...needs,
        ...(i < count - 1 ? { keepAlive: true } : {}),
      }),
    );
  }
  return out;
}

function pipelineLength(rng: Rng): number {
  const r = rng.below(100);
  return r < 60 ? 1 : r < 85 ? 2 : 3;
}

/** Makes case `index` of `spec` for the run's `seed`. */
export function makeCase(
  seed: number,
  index: number,
  spec: CaseSpec,
): FuzzCase {
  const name = specName(spec);
  const rng = new Rng(caseSeed(seed, index, fnv1a(name)));
  const key = `${name}/${index}`;
  let text = "";
  let label: string = spec.kind;
  let expected: Expected[] = [];
  let before = 0;
  let mutation: InvalidMutation | undefined;
  if (spec.kind === "valid") {
    const requests = pipeline(rng, key, pipelineLength(rng), {
      mayThrow: true,
    });
    text = requests.map(textOf).join("");
    expected = requests.map((r) => ({
      status: r.throws ? 500 : 200,
      digest: digestOf(r.payload),
    }));
  } else if (spec.kind === "random") {
    const requests = pipeline(rng, key, pipelineLength(rng), {
      mayThrow: true,
    });
    const mutated = mutateRandomly(
      rng,
      requests.map(textOf).join(""),
      () =>
        pipeline(rng, `${key}.b`, pipelineLength(rng), {}).map(textOf).join(""),
    );
    text = mutated.text;
    label = `random:${mutated.label}`;
  } else {
    mutation = INVALID_BY_ID.get(spec.mutation);
    if (mutation === undefined) {
      throw new TypeError(`Unknown mutation: received ${spec.mutation}`);
    }
    label = `invalid:${mutation.id}`;
    const r = rng.below(100);
    before = r < 50 ? 0 : r < 85 ? 1 : 2;
    // Valid requests first, each leaving the connection open for the next.
    const prior: FuzzRequest[] = [];
    for (let i = 0; i < before; i++) {
      prior.push(
        generateRequest(rng, `${key}.${i}`, {
          keepAlive: true,
          mayThrow: true,
        }),
      );
    }
    const victim = generateRequest(rng, `${key}.${before}`, {
      ...(rng.chance(0.5) ? { keepAlive: true } : {}),
      ...mutation.needs,
    });
    const bad = mutation.apply(clone(victim), rng);
    text = prior.map(textOf).join("") + bad.head + bad.body;
    if (rng.chance(0.4)) {
      text += textOf(generateRequest(rng, `${key}.${before + 1}`, {}));
    }
  }
  const pieces: number[] = [];
  if (text.length > 1 && rng.chance(0.5)) {
    let left = text.length;
    const parts = rng.between(2, 8);
    for (let i = 0; i < parts - 1 && left > 1; i++) {
      const n = rng.between(1, Math.max(1, Math.floor(left / 2)));
      pieces.push(n);
      left -= n;
    }
    pieces.push(left);
  } else pieces.push(text.length);
  return {
    seed,
    index,
    spec,
    key,
    label,
    text,
    pieces,
    pauses: rng.chance(0.3),
    holdOpen: spec.holdOpen === true,
    expected,
    before,
    mutation,
  };
}

// ---------------------------------------------------------------------------
// The server under test.

/** The limits the fuzzed server runs with. */
export const FUZZ_LIMITS = {
  headerTimeout: 2000,
  idleTimeout: 500,
  bodyTimeout: 2000,
  sendTimeout: 2000,
  maxBodyBytes: 65_536,
  maxHeaderBytes: 16_384,
  maxUrlBytes: 4096,
  maxHeaderFields: 64,
} as const;

/**
 * How long a case may take before it counts as a hang: the longest the
 * server may legitimately wait (a head begun after the idle timeout, 500 +
 * 2000 ms) with room to spare.
 */
export const SAFETY_NET_MS = 5000;

/** What the handler throws on purpose (a target of `/throw`). */
export class FuzzHandlerError extends Error {
  constructor(id: string) {
    super(`The fuzz handler throws for ${id}`);
    this.name = "FuzzHandlerError";
  }
}

/** Something the handler could not do with a request the server passed. */
export interface HandlerProblem {
  id: string;
  method: string;
  url: string;
  error: unknown;
}

/**
 * A live `serve()` on loopback with {@linkcode FUZZ_LIMITS}, a loop of its
 * own whose error reports are kept, a handler that reads each body in full
 * and answers 200 with its digest in `x-digest`, an onError that keeps
 * anything but a {@linkcode FuzzHandlerError}, and an unhandled-rejection
 * spy.
 */
export class FuzzServer implements AsyncDisposable {
  readonly server: HttpServer;
  readonly loop: EvLoop;
  /** `X-Fuzz-Id`s of the requests the handler got. */
  readonly seen: Set<string> = new Set();
  /** Requests the handler could not use (request.url, headers). */
  readonly problems: HandlerProblem[] = [];
  /** onError calls with anything but a FuzzHandlerError. */
  readonly unexpected: unknown[] = [];
  /** What the loop reported to its onError hook. */
  readonly loopErrors: unknown[] = [];
  /** Handler calls. */
  handled = 0;
  #spy = new UnhandledRejectionSpy();
  #closed = false;

  constructor() {
    this.loop = new EvLoop({
      capacity: 256,
      onError: (error) => {
        this.loopErrors.push(error);
      },
    });
    this.server = serve({
      hostname: "127.0.0.1",
      port: 0,
      onListen() {},
      loop: this.loop,
      ...FUZZ_LIMITS,
      onError: (error) => {
        if (!(error instanceof FuzzHandlerError)) this.unexpected.push(error);
        return new Response(null, {
          status: 500,
          headers: { "x-fuzz": "on-error" },
        });
      },
    }, async (request) => {
      this.handled++;
      const id = request.headers.get("x-fuzz-id") ?? "";
      this.seen.add(id);
      let url: URL;
      try {
        url = new URL(request.url);
        for (const _ of request.headers);
      } catch (error) {
        this.problems.push({
          id,
          method: request.method,
          url: request.url,
          error,
        });
        return new Response(null, {
          status: 500,
          headers: { "x-fuzz": "bad-request-object" },
        });
      }
      const body = toText(new Uint8Array(await request.arrayBuffer()));
      if (url.pathname === "/throw") throw new FuzzHandlerError(id);
      return new Response(null, { headers: { "x-digest": digestOf(body) } });
    });
  }

  /** The port it listens on. */
  get port(): number {
    return this.server.addr.port;
  }

  /**
   * The end-of-run checks: a plain request still gets 200, the loop has no
   * task left once the clients are gone, nothing reached onError or the
   * loop's error hook unexpectedly, no rejection went unhandled.
   *
   * @returns the failures, as messages (empty when all is well).
   */
  async finish(): Promise<string[]> {
    const failures: string[] = [];
    const plain = "GET /final HTTP/1.1\r\nHost: example.com\r\n" +
      "X-Fuzz-Id: final\r\nConnection: close\r\n\r\n";
    const exchange = await sendBytes(this.port, plain, {
      pieces: [plain.length],
      pauses: undefined,
      holdOpen: false,
      safetyMs: SAFETY_NET_MS,
    });
    const parsed = parseResponses(exchange.bytes, false);
    const first = parsed.responses[0];
    if (
      parsed.error !== undefined || parsed.responses.length !== 1 ||
      first?.status !== 200 || first.fields.get("x-digest") !== digestOf("")
    ) {
      failures.push(
        `a plain request after the run did not get 200: ${
          escape(toText(exchange.bytes))
        } (${exchange.end})`,
      );
    }
    try {
      await eventually(
        () => this.loop.stats.active === 0,
        "the loop to have no task left",
        5000,
      );
    } catch {
      failures.push(
        `the loop still has ${this.loop.stats.active} task(s) 5 s after the last client left`,
      );
    }
    for (const p of this.problems) failures.push(describeProblem(p));
    for (const e of this.unexpected) {
      failures.push(`onError got an unexpected error: ${errorText(e)}`);
    }
    for (const e of this.loopErrors) {
      failures.push(`the loop reported an error: ${errorText(e)}`);
    }
    await this.#spy.flush();
    for (const reason of this.#spy.reasons) {
      failures.push(`an unhandled rejection: ${errorText(reason)}`);
    }
    return failures;
  }

  /** Shuts the server and its loop down. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await this.server.shutdown({ grace: 1000 });
      await this.loop.shutdown({ grace: 0 });
    } finally {
      this.#spy[Symbol.dispose]();
    }
  }
}

function errorText(error: unknown): string {
  if (error instanceof Error) {
    return `${error.name}: ${error.message}${
      error.stack ? `\n${error.stack.split("\n").slice(1, 4).join("\n")}` : ""
    }`;
  }
  return String(error);
}

function describeProblem(p: HandlerProblem): string {
  const known = p.error instanceof TypeError &&
      p.error.message.startsWith("Invalid URL")
    ? " [known defect: host-not-a-url]"
    : "";
  return `the handler got a request it could not use${known} (X-Fuzz-Id ${
    JSON.stringify(p.id)
  }): ${p.method} url=${JSON.stringify(p.url)}: ${errorText(p.error)}`;
}

// ---------------------------------------------------------------------------
// Sending a case and reading what comes back.

/** What one connection got. */
export interface Exchange {
  bytes: Uint8Array;
  /** How it ended: the server closed (eof), reset, or the safety net hit. */
  end: "eof" | "reset" | "safety";
  ms: number;
}

/**
 * Connects, writes `text` in `pieces` (pausing 0-2 ms between them when
 * `pauses` gives a PRNG), half-closes unless `holdOpen`, and reads until
 * the server closes or `safetyMs` passes.
 */
export async function sendBytes(
  port: number,
  text: string,
  options: {
    pieces: number[];
    pauses: Rng | undefined;
    holdOpen: boolean;
    safetyMs: number;
  },
): Promise<Exchange> {
  const start = performance.now();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  let expired = false;
  const timer = setTimeout(() => {
    expired = true;
    try {
      conn.close();
    } catch {
      // closed already
    }
  }, options.safetyMs);
  const chunks: Uint8Array[] = [];
  const reading = (async (): Promise<Exchange["end"]> => {
    const buf = new Uint8Array(65_536);
    try {
      let n: number | null;
      while ((n = await conn.read(buf)) !== null) chunks.push(buf.slice(0, n));
      return "eof";
    } catch (error) {
      if (expired) return "safety";
      if (error instanceof Deno.errors.ConnectionReset) return "reset";
      throw error;
    }
  })();
  const writing = (async () => {
    const bytes = toBytes(text);
    let off = 0;
    try {
      for (const size of options.pieces) {
        const piece = bytes.subarray(off, off + size);
        off += size;
        let done = 0;
        while (done < piece.byteLength) {
          done += await conn.write(piece.subarray(done));
        }
        if (options.pauses !== undefined) {
          const ms = options.pauses.below(3);
          await new Promise((resolve) => setTimeout(resolve, ms));
        }
      }
      if (!options.holdOpen) await conn.closeWrite();
    } catch {
      // The server closed first (or the safety net did): reading tells.
    }
  })();
  let end: Exchange["end"];
  try {
    end = await reading;
  } finally {
    await writing;
    clearTimeout(timer);
    if (!expired) {
      try {
        conn.close();
      } catch {
        // closed already
      }
    }
  }
  let n = 0;
  for (const c of chunks) n += c.byteLength;
  const bytes = new Uint8Array(n);
  let off = 0;
  for (const c of chunks) {
    bytes.set(c, off);
    off += c.byteLength;
  }
  return { bytes, end, ms: performance.now() - start };
}

/** A response as the fuzzer's parser saw it. */
export interface ParsedResponse {
  status: number;
  /** Field names in lower case, repeated ones joined with `, `. */
  fields: Map<string, string>;
}

const STATUS_LINE = /^HTTP\/1\.1 ([1-5]\d\d) [\x20-\x7e]*$/;
const FIELD_LINE =
  /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+): ?([\t\x20-\x7e\x80-\xff]*)$/;

/**
 * Parses the responses the server sent, strictly: a status line, fields,
 * and a body of exactly `content-length` bytes (none for 1xx, 204, 304).
 * With `cut` (the connection was reset), a truncated last response is not
 * an error.
 */
export function parseResponses(
  bytes: Uint8Array,
  cut: boolean,
): { responses: ParsedResponse[]; error: string | undefined } {
  const s = toText(bytes);
  const responses: ParsedResponse[] = [];
  let pos = 0;
  const truncated = (what: string) => ({
    responses,
    error: cut ? undefined : `a truncated response (${what}) at byte ${pos}`,
  });
  while (pos < s.length) {
    const end = s.indexOf("\r\n\r\n", pos);
    if (end < 0) return truncated("head");
    const lines = s.slice(pos, end).split("\r\n");
    const m = STATUS_LINE.exec(lines[0]!);
    if (m === null) {
      return {
        responses,
        error: `a bad status line ${escape(lines[0]!, 200)} at byte ${pos}`,
      };
    }
    const status = Number(m[1]);
    const fields = new Map<string, string>();
    for (const line of lines.slice(1)) {
      const f = FIELD_LINE.exec(line);
      if (f === null) {
        return {
          responses,
          error: `a bad response field ${escape(line, 200)} at byte ${pos}`,
        };
      }
      const name = f[1]!.toLowerCase();
      const old = fields.get(name);
      fields.set(name, old === undefined ? f[2]! : `${old}, ${f[2]}`);
    }
    pos = end + 4;
    if (status >= 200 && status !== 204 && status !== 304) {
      if (fields.has("transfer-encoding")) {
        return { responses, error: "a response with transfer-encoding" };
      }
      const cl = fields.get("content-length");
      if (cl === undefined || !/^\d{1,15}$/.test(cl)) {
        return {
          responses,
          error: `a response without a valid content-length: ${cl}`,
        };
      }
      if (pos + Number(cl) > s.length) return truncated("body");
      pos += Number(cl);
    }
    responses.push({ status, fields });
  }
  return { responses, error: undefined };
}

/** How a case ended, from the fuzzer's point of view. */
export type Outcome =
  | "ok"
  | "invalid-rejected"
  | "hang"
  | "2xx-for-invalid"
  | "handler-saw-invalid"
  | "response-after-rejection"
  | "malformed-response"
  | "wrong-answer"
  | "handler-problem";

/** The result of one case. */
export interface CaseResult {
  fuzzCase: FuzzCase;
  outcome: Outcome;
  failed: boolean;
  /** The final statuses received, in order. */
  statuses: number[];
  end: Exchange["end"];
  ms: number;
  /** What went wrong, for failures. */
  detail: string;
  /** What came back, as latin1. */
  received: string;
  /**
   * For failures: `known:ID` when a catalogue class with a known defect
   * (or that defect's symptom) explains it, else `other`.
   */
  cause: string;
}

/** Sends one case to `target` and judges what came back. */
export async function runCase(
  target: FuzzServer,
  c: FuzzCase,
  safetyMs: number = SAFETY_NET_MS,
): Promise<CaseResult> {
  const pauses = c.pauses
    ? new Rng(caseSeed(c.seed, c.index, 0x9a05e))
    : undefined;
  const exchange = await sendBytes(target.port, c.text, {
    pieces: c.pieces,
    pauses,
    holdOpen: c.holdOpen,
    safetyMs,
  });
  const result = judge(target, c, exchange);
  // The ids of this case are no longer needed.
  for (let i = 0; i <= 3; i++) target.seen.delete(`${c.key}.${i}`);
  return result;
}

function judge(target: FuzzServer, c: FuzzCase, ex: Exchange): CaseResult {
  const { responses, error } = parseResponses(ex.bytes, ex.end === "reset");
  const finals = responses.filter((r) => r.status >= 200);
  const statuses = finals.map((r) => r.status);
  const result = (
    outcome: Outcome,
    failed: boolean,
    detail = "",
  ): CaseResult => ({
    fuzzCase: c,
    outcome,
    failed,
    statuses,
    end: ex.end,
    ms: ex.ms,
    detail,
    received: toText(ex.bytes),
    cause: !failed
      ? ""
      : c.mutation?.defect !== undefined
      ? `known:${c.mutation.id}`
      : outcome === "handler-problem" && /known defect: host-not/.test(detail)
      ? "known:host-not-a-url"
      : "other",
  });
  // Problems the handler met with this case's requests.
  const mine = target.problems.filter((p) => p.id.startsWith(`${c.key}.`));
  if (mine.length > 0) {
    for (const p of mine) target.problems.splice(target.problems.indexOf(p), 1);
    return result(
      "handler-problem",
      true,
      mine.map(describeProblem).join("\n") +
        (c.mutation?.defect ? `\nknown defect: ${c.mutation.defect}` : ""),
    );
  }
  if (ex.end === "safety") {
    return result(
      "hang",
      true,
      `the server neither answered in full nor closed within ${
        Math.round(ex.ms)
      } ms`,
    );
  }
  if (error !== undefined) return result("malformed-response", true, error);
  if (c.spec.kind === "valid") {
    const got = finals.map((r) =>
      r.status === 200 ? `200 ${r.fields.get("x-digest")}` : `${r.status}`
    );
    const want = c.expected.map((e) =>
      e.status === 200 ? `200 ${e.digest}` : `${e.status}`
    );
    const onError = finals.every((r) =>
      r.status !== 500 || r.fields.get("x-fuzz") === "on-error"
    );
    if (got.join("|") !== want.join("|") || ex.end !== "eof" || !onError) {
      return result(
        "wrong-answer",
        true,
        `expected [${want.join(", ")}] then end of stream, got [${
          got.join(", ")
        }] then ${ex.end}`,
      );
    }
    return result("ok", false);
  }
  if (c.spec.kind === "random") return result("ok", false);
  // Invalid: the requests before it answered (unless a reset lost them),
  // the mutated one never 2xx, nothing after a rejection.
  const m = c.mutation!;
  const defect = m.defect ? `\nknown defect: ${m.defect}` : "";
  const victim = finals[c.before];
  if (victim !== undefined && victim.status < 300) {
    return result(
      "2xx-for-invalid",
      true,
      `${m.title}: the mutated request (#${
        c.before + 1
      }) got ${victim.status}${defect}`,
    );
  }
  if (m.where === "head" && target.seen.has(`${c.key}.${c.before}`)) {
    return result(
      "handler-saw-invalid",
      true,
      `${m.title}: the handler got the mutated request (#${
        c.before + 1
      })${defect}`,
    );
  }
  if (finals.length > c.before + 1) {
    return result(
      "response-after-rejection",
      true,
      `${finals.length - c.before - 1} response(s) after the rejection`,
    );
  }
  if (
    ex.end === "eof" &&
    (finals.length < c.before ||
      finals.slice(0, c.before).some((r) =>
        r.status !== 200 && r.status !== 500
      ))
  ) {
    return result(
      "wrong-answer",
      true,
      `the ${c.before} valid request(s) before the mutated one got [${
        statuses.join(", ")
      }]`,
    );
  }
  return result("invalid-rejected", false);
}

/** Counts of a run, the failures in full, and the slowest case. */
export class FuzzStats {
  cases = 0;
  readonly byOutcome: Map<string, number> = new Map();
  readonly byStatus: Map<string, number> = new Map();
  readonly byLabel: Map<string, number> = new Map();
  /** Invalid cases by mutation class. */
  readonly byClass: Map<string, number> = new Map();
  /** Failures by cause (see {@linkcode CaseResult.cause}). */
  readonly causes: Map<string, number> = new Map();
  readonly failures: CaseResult[] = [];
  slowest: CaseResult | undefined;

  /** Counts one result. */
  add(r: CaseResult): void {
    this.cases++;
    bump(this.byOutcome, r.outcome);
    if (r.statuses.length === 0) bump(this.byStatus, `none (${r.end})`);
    for (const s of r.statuses) bump(this.byStatus, String(s));
    bump(this.byLabel, r.fuzzCase.spec.kind);
    const m = r.fuzzCase.mutation;
    if (m !== undefined) bump(this.byClass, m.id);
    if (r.failed) {
      this.failures.push(r);
      bump(this.causes, r.cause);
    }
    if (this.slowest === undefined || r.ms > this.slowest.ms) this.slowest = r;
  }

  /** The counts, a few lines of text. */
  summary(): string {
    const list = (m: Map<string, number>) =>
      [...m].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k}: ${v}`).join(
        ", ",
      );
    const slow = this.slowest;
    return [
      `cases: ${this.cases} (${list(this.byLabel)})`,
      `by outcome: ${list(this.byOutcome)}`,
      `by status: ${list(this.byStatus)}`,
      slow === undefined
        ? "slowest: -"
        : `slowest: ${Math.round(slow.ms)} ms, case ${slow.fuzzCase.index} (${
          specName(slow.fuzzCase.spec)
        }, ${slow.fuzzCase.label}${
          slow.fuzzCase.holdOpen ? ", held open" : ""
        }) ended by ${slow.end}`,
      `invalid cases by class: ${list(this.byClass)}`,
      `failures: ${this.failures.length}${
        this.causes.size > 0 ? ` (${list(this.causes)})` : ""
      }`,
    ].join("\n");
  }
}

function bump(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}

/** A failure, with what to run to see it again. */
export function describeFailure(r: CaseResult): string {
  const c = r.fuzzCase;
  return [
    `case ${c.index} (${specName(c.spec)}${
      c.label === specName(c.spec) || c.label === c.spec.kind
        ? ""
        : `, ${c.label}`
    }) seed ${hexSeed(c.seed)}: ${r.outcome}`,
    `  ${r.detail.split("\n").join("\n  ")}`,
    `  got [${r.statuses.join(", ")}] then ${r.end} after ${
      Math.round(r.ms)
    } ms`,
    `  sent (${c.text.length} bytes${c.holdOpen ? ", held open" : ""}): ${
      escape(c.text, 1500)
    }`,
    `  received: ${escape(r.received, 600)}`,
    `  again: deno run -A bench/http_fuzz.ts --seed ${
      hexSeed(c.seed)
    } --only ${c.index} --spec ${specName(c.spec)}`,
  ].join("\n");
}

/**
 * Runs `count` cases made by `make(i)` against `target`, `concurrency` at
 * a time, and counts them in `stats`.
 */
export async function runCases(
  target: FuzzServer,
  count: number,
  make: (i: number) => FuzzCase,
  options: {
    concurrency?: number;
    stats?: FuzzStats;
    onResult?: (r: CaseResult, done: number) => void;
  } = {},
): Promise<FuzzStats> {
  const stats = options.stats ?? new FuzzStats();
  let next = 0;
  let done = 0;
  const lane = async () => {
    while (next < count) {
      const c = make(next++);
      const r = await runCase(target, c);
      stats.add(r);
      options.onResult?.(r, ++done);
    }
  };
  const lanes: Promise<void>[] = [];
  for (let i = 0; i < Math.min(options.concurrency ?? 8, count); i++) {
    lanes.push(lane());
  }
  await Promise.all(lanes);
  return stats;
}

// ---------------------------------------------------------------------------
// The pure functions, without sockets.

/** The limits of the fuzzed server, as parseHead takes them. */
export const HEAD_LIMITS: HeadLimits = {
  maxUrlBytes: FUZZ_LIMITS.maxUrlBytes,
  maxHeaderFields: FUZZ_LIMITS.maxHeaderFields,
};

/** Counts and failures of a pure run. */
export interface PureReport {
  cases: number;
  /** Inputs the function accepted. */
  accepted: number;
  /** Inputs it refused with the documented error. */
  rejected: number;
  failures: string[];
  /**
   * Failures by cause: the id of a catalogue class with a known defect
   * (`known:host-not-a-url`), or `other`.
   */
  causes: Map<string, number>;
}

function report(): PureReport {
  return {
    cases: 0,
    accepted: 0,
    rejected: 0,
    failures: [],
    causes: new Map(),
  };
}

/** Records a failure of a pure run under its cause. */
function failure(rep: PureReport, cause: string, text: string): void {
  rep.failures.push(text);
  bump(rep.causes, cause);
}

/** The failures of a pure run counted by cause, one line. */
export function causesOf(rep: PureReport): string {
  return [...rep.causes].map(([k, v]) => `${v} ${k}`).join(", ");
}

const HEAD_STATUSES = new Set([400, 414, 417, 431, 501, 505]);

/**
 * What parseHead makes of the bytes of one request's head, cut as the
 * server cuts it: at the first CRLFCRLF (a bare LFLF first is a 400 before
 * parsing), skipping heads of empty lines.
 */
export function headVerdict(
  text: string,
): { accepted: true; head: ReturnType<typeof parseHead> } | {
  accepted: false;
  reason: string;
} {
  let rest = text;
  while (true) {
    const crlf = rest.indexOf("\r\n\r\n");
    const lf = rest.indexOf("\n\n");
    if (crlf < 0 && lf < 0) {
      return { accepted: false, reason: "no end of head" };
    }
    if (crlf < 0 || (lf >= 0 && lf + 2 < crlf + 4)) {
      return { accepted: false, reason: "a head ended by bare LFs" };
    }
    const head = rest.slice(0, crlf);
    rest = rest.slice(crlf + 4);
    if (/^(\r\n)*$/.test(head)) continue;
    // Throws HttpError (or, if it is broken, anything).
    return { accepted: true, head: parseHead(head, HEAD_LIMITS) };
  }
}

/** Checks what parseHead returned against what any accepted head must be. */
function headInvariants(head: ReturnType<typeof parseHead>): string[] {
  const out: string[] = [];
  if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(head.method)) {
    out.push("a method that is not a token");
  }
  if (/[^\x21-\x7e]/.test(head.target)) {
    out.push("a target with a byte outside 0x21-0x7e");
  }
  if (head.chunked && head.contentLength >= 0) {
    out.push("both chunked and a Content-Length");
  }
  if (!Number.isSafeInteger(head.contentLength) || head.contentLength < -1) {
    out.push(`Content-Length ${head.contentLength}`);
  }
  if (head.minor !== 0 && head.minor !== 1) {
    out.push(`minor version ${head.minor}`);
  }
  for (let i = 0; i < head.fields.length; i += 2) {
    // deno-lint-ignore no-control-regex
    if (/[\x00\r\n]/.test(head.fields[i + 1]!)) {
      out.push("a field value with NUL, CR or LF");
    }
  }
  return out;
}

/**
 * Fuzzes parseHead() (on heads cut as the server cuts them): valid heads
 * parse to what was generated, random mutations return or throw HttpError
 * with a documented status, and known-invalid head mutations that are
 * syntax errors are rejected (those the URL parser decides are judged on
 * the live server).
 */
export function fuzzHeads(seed: number, count: number): PureReport {
  const rep = report();
  const headClasses = INVALID.filter((m) => m.where === "head" && !m.byUrl);
  for (let i = 0; i < count; i++) {
    const rng = new Rng(caseSeed(seed, i, 0x4ead));
    const kind = rng.below(100);
    const r = generateRequest(rng, `h/${i}`, { mayThrow: true });
    let text: string;
    let label: string;
    let mutation: InvalidMutation | undefined;
    if (kind < 30) {
      text = headOf(r);
      label = "valid";
    } else if (kind < 75) {
      const m = mutateRandomly(
        rng,
        headOf(r),
        () => headOf(generateRequest(rng, "b", {})),
      );
      text = m.text;
      label = `random:${m.label}`;
    } else {
      mutation = rng.pick(headClasses);
      const victim = generateRequest(rng, `h/${i}`, mutation.needs);
      text = mutation.apply(clone(victim), rng).head;
      label = `invalid:${mutation.id}`;
    }
    rep.cases++;
    const where = () =>
      `parseHead case ${i} (${label}) seed ${hexSeed(seed)}: ${
        escape(text, 1500)
      }`;
    let verdict: ReturnType<typeof headVerdict>;
    try {
      verdict = headVerdict(text);
    } catch (error) {
      if (!(error instanceof HttpError)) {
        failure(rep, "other", `${where()}\n  threw ${errorText(error)}`);
        continue;
      }
      if (!HEAD_STATUSES.has(error.status)) {
        failure(
          rep,
          "other",
          `${where()}\n  threw HttpError with status ${error.status}`,
        );
        continue;
      }
      if (label === "valid") {
        failure(
          rep,
          "other",
          `${where()}\n  a valid head was rejected: ${error.status} ${error.message}`,
        );
        continue;
      }
      rep.rejected++;
      continue;
    }
    if (!verdict.accepted) {
      if (label === "valid") {
        failure(
          rep,
          "other",
          `${where()}\n  a valid head was rejected: ${verdict.reason}`,
        );
      } else rep.rejected++;
      continue;
    }
    rep.accepted++;
    const problems = headInvariants(verdict.head);
    if (mutation !== undefined) {
      problems.push(
        `accepted a known-invalid head (${mutation.title})${
          mutation.defect ? `; known defect: ${mutation.defect}` : ""
        }`,
      );
    }
    if (label === "valid") {
      const h = verdict.head;
      const want = {
        method: r.method,
        target: r.target,
        minor: r.version === "HTTP/1.0" ? 0 : 1,
        contentLength: r.contentLength,
        chunked: r.framing === "chunked",
        keepAlive: r.keepAlive,
        host: r.host,
        expectContinue: r.expectContinue,
      };
      const got = {
        method: h.method,
        target: h.target,
        minor: h.minor,
        contentLength: h.contentLength,
        chunked: h.chunked,
        keepAlive: h.keepAlive,
        host: h.host,
        expectContinue: h.expectContinue,
      };
      // The generator's own check: the URL a handler sees parses.
      const url = requestUrl(h.target, h.host || "127.0.0.1:8000");
      if (!URL.canParse(url)) {
        problems.push(
          `the generated URL ${JSON.stringify(url)} does not parse`,
        );
      }
      if (JSON.stringify(got) !== JSON.stringify(want)) {
        problems.push(
          `parsed ${JSON.stringify(got)}, generated ${JSON.stringify(want)}`,
        );
      }
    }
    if (problems.length > 0) {
      const cause = mutation?.defect !== undefined
        ? `known:${mutation.id}`
        : "other";
      failure(rep, cause, `${where()}\n  ${problems.join("\n  ")}`);
    }
  }
  return rep;
}

/** Chunk sizes that must be refused, whatever follows them. */
function invalidChunkLine(rng: Rng, c: Chunk): string {
  const v = rng.below(4);
  if (v === 0) return badChunkSize(c, rng) + c.ext;
  if (v === 1) return rng.pick(["+", "-"]) + c.size + c.ext;
  if (v === 2) return "1" + "0".repeat(rng.between(16, 24)) + c.ext;
  const ext = c.ext === "" ? `;${token(rng, 1, 5)}` : c.ext;
  const at = rng.between(c.size.length + 1, c.size.length + ext.length);
  return c.size +
    insertAt(
      ext,
      at - c.size.length,
      rng.pick(CONTROLS.filter((x) => x !== "\t")),
    );
}

/**
 * Fuzzes parseChunkSize() and checkFieldLine(): valid lines give their
 * size (or pass), mutated ones return a consistent size or throw HttpError
 * 400, known-invalid ones throw it.
 */
export function fuzzChunkLines(seed: number, count: number): PureReport {
  const rep = report();
  for (let i = 0; i < count; i++) {
    const rng = new Rng(caseSeed(seed, i, 0xc4c));
    const r = generateRequest(rng, `c/${i}`, {
      framing: "chunked",
      dataChunks: 1,
    });
    const c = rng.pick(r.chunks);
    const trailer = rng.chance(0.25);
    const kind = rng.below(100);
    let line: string;
    let label: string;
    if (trailer) {
      const t = field(token(rng, 1, 10), fieldValue(rng), rng).text;
      if (kind < 35) [line, label] = [t, "valid"];
      else if (kind < 75) {
        [line, label] = [mutateRandomly(rng, t, () => "X: y").text, "random"];
      } else {
        const bad = INVALID_BY_ID.get("trailer-malformed")!;
        const m = bad.apply(clone({ ...r, trailers: [] }), rng);
        // The trailer the mutation added: the body's last line but one.
        const lines = m.body.split("\r\n");
        [line, label] = [lines[lines.length - 3]!, "invalid"];
      }
    } else if (kind < 35) [line, label] = [c.size + c.ext, "valid"];
    else if (kind < 75) {
      [line, label] = [
        mutateRandomly(rng, c.size + c.ext, () => "0").text,
        "random",
      ];
    } else [line, label] = [invalidChunkLine(rng, c), "invalid"];
    rep.cases++;
    const fn = trailer ? "checkFieldLine" : "parseChunkSize";
    const where = `${fn} case ${i} (${label}) seed ${hexSeed(seed)}: ${
      escape(line, 600)
    }`;
    let value: number | undefined;
    try {
      if (trailer) checkFieldLine(line);
      else value = parseChunkSize(line);
    } catch (error) {
      if (
        !(error instanceof HttpError) ||
        (error.status !== 400 && error.status !== 431)
      ) {
        failure(rep, "other", `${where}\n  threw ${errorText(error)}`);
      } else if (label === "valid") {
        failure(
          rep,
          "other",
          `${where}\n  a valid line was refused: ${error.message}`,
        );
      } else rep.rejected++;
      continue;
    }
    rep.accepted++;
    if (label === "invalid") {
      failure(
        rep,
        "other",
        `${where}\n  a known-invalid line was accepted${
          value === undefined ? "" : ` as ${value}`
        }`,
      );
      continue;
    }
    if (!trailer) {
      const semi = line.indexOf(";");
      const size = semi < 0 ? line : line.slice(0, semi).replace(/[ \t]+$/, "");
      if (
        !/^[0-9a-fA-F]+$/.test(size) || !Number.isSafeInteger(value) ||
        value !== parseInt(size, 16) ||
        (label === "valid" && value !== parseInt(c.size, 16))
      ) {
        failure(
          rep,
          "other",
          `${where}\n  returned ${value} for size ${JSON.stringify(size)}`,
        );
      }
    }
  }
  return rep;
}

/** A Deno.Conn over bytes in memory, handing them out in random pieces. */
class MemoryConn {
  readonly localAddr: Deno.NetAddr = {
    transport: "tcp",
    hostname: "127.0.0.1",
    port: 1,
  };
  readonly remoteAddr: Deno.NetAddr = {
    transport: "tcp",
    hostname: "127.0.0.1",
    port: 2,
  };
  #data: Uint8Array;
  #pos = 0;
  #rng: Rng;
  #maxPiece: number;

  constructor(data: Uint8Array, rng: Rng) {
    this.#data = data;
    this.#rng = rng;
    this.#maxPiece = rng.pick([1, 3, 16, 256, 65_536]);
  }

  read(p: Uint8Array): Promise<number | null> {
    if (this.#pos >= this.#data.byteLength) return Promise.resolve(null);
    const n = Math.min(
      p.byteLength,
      this.#data.byteLength - this.#pos,
      1 + this.#rng.below(this.#maxPiece),
    );
    p.set(this.#data.subarray(this.#pos, this.#pos + n));
    this.#pos += n;
    return Promise.resolve(n);
  }

  write(p: Uint8Array): Promise<number> {
    return Promise.resolve(p.byteLength);
  }

  closeWrite(): Promise<void> {
    return Promise.resolve();
  }

  close(): void {}
  ref(): void {}
  unref(): void {}
}

/** Reads a whole body (or drains it) with a BodyReader over `bytes`. */
async function readBody(
  bytes: string,
  contentLength: number,
  rng: Rng,
  drain: boolean,
): Promise<{ body: string; drained: boolean | undefined }> {
  const socket = new EvSocket(
    new MemoryConn(toBytes(bytes), rng) as unknown as Deno.Conn,
  );
  try {
    const reader = new BodyReader(socket, {
      contentLength,
      maxBytes: FUZZ_LIMITS.maxBodyBytes,
      maxTrailerBytes: FUZZ_LIMITS.maxHeaderBytes,
      timeout: FUZZ_LIMITS.bodyTimeout,
      onFirstRead: undefined,
    });
    if (drain) return { body: "", drained: await reader.drain(262_144) };
    let body = "";
    for (let reads = 0; reads < 100_000; reads++) {
      const piece = await reader.read();
      if (piece === null) return { body, drained: undefined };
      body += toText(piece);
    }
    throw new Error("The body reader never ended");
  } finally {
    await socket[Symbol.asyncDispose]();
  }
}

/**
 * Fuzzes BodyReader over an in-memory connection: valid bodies read back
 * exactly, mutated ones end or fail with HttpError or UnexpectedEof (the
 * errors it documents), known-invalid chunked bodies fail with HttpError,
 * and drain() never throws.
 */
export async function fuzzBodies(
  seed: number,
  count: number,
): Promise<PureReport> {
  const rep = report();
  const bodyClasses = INVALID.filter((m) => m.where === "body");
  for (let i = 0; i < count; i++) {
    const rng = new Rng(caseSeed(seed, i, 0xb0d));
    const kind = rng.below(100);
    const r = generateRequest(rng, `b/${i}`, {
      framing: rng.chance(0.7) ? "chunked" : "length",
    });
    let text = bodyOf(r);
    let label = "valid";
    let mutation: InvalidMutation | undefined;
    if (kind >= 30 && kind < 70) {
      const m = mutateRandomly(
        rng,
        text,
        () => bodyOf(generateRequest(rng, "x", { framing: "chunked" })),
      );
      text = m.text;
      label = `random:${m.label}`;
    } else if (kind >= 70 && r.framing === "chunked") {
      mutation = rng.pick(
        bodyClasses.filter((m) =>
          (m.needs.dataChunks ?? 0) <= r.chunks.length - 1
        ),
      );
      text = mutation.apply(clone(r), rng).body;
      label = `invalid:${mutation.id}`;
    }
    // Bytes of a next request after the body, as on a keep-alive connection.
    if (rng.chance(0.3)) text += "GET /next HTTP/1.1\r\nHost: x\r\n\r\n";
    const drain = rng.chance(0.15);
    const contentLength = r.framing === "chunked" ? -1 : r.contentLength;
    rep.cases++;
    const where = `BodyReader case ${i} (${label}, ${r.framing}${
      drain ? ", drain" : ""
    }) seed ${hexSeed(seed)}: ${escape(text, 1500)}`;
    try {
      const { body, drained } = await readBody(text, contentLength, rng, drain);
      rep.accepted++;
      if (mutation !== undefined && !drain) {
        failure(
          rep,
          "other",
          `${where}\n  a known-invalid body was read without error (${mutation.title})`,
        );
      } else if (label === "valid" && !drain && body !== r.payload) {
        failure(
          rep,
          "other",
          `${where}\n  read ${escape(body, 300)}, expected ${
            escape(r.payload, 300)
          }`,
        );
      } else if (label === "valid" && drain && drained !== true) {
        failure(
          rep,
          "other",
          `${where}\n  drain() of a valid body returned ${drained}`,
        );
      }
    } catch (error) {
      if (drain) {
        failure(rep, "other", `${where}\n  drain() threw ${errorText(error)}`);
      } else if (
        !(error instanceof HttpError) &&
        !(error instanceof Deno.errors.UnexpectedEof)
      ) {
        failure(rep, "other", `${where}\n  threw ${errorText(error)}`);
      } else if (label === "valid") {
        failure(
          rep,
          "other",
          `${where}\n  a valid body failed: ${errorText(error)}`,
        );
      } else if (mutation !== undefined && !(error instanceof HttpError)) {
        failure(
          rep,
          "other",
          `${where}\n  a known-invalid body failed with ${
            errorText(error)
          }, not HttpError`,
        );
      } else rep.rejected++;
    }
  }
  return rep;
}
