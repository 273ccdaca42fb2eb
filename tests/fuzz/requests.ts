// Copyright 2026 the @corothread/evthread authors. MIT license.
// Valid HTTP/1.1 requests from a PRNG. A request is a model that
// serializes to bytes, so that mutations can edit one part (a field name, a
// chunk size, a line end) and keep the rest.

import type { Rng } from "./util.ts";

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
export const ALNUM =
  "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const PCHAR = `${ALNUM}-._~!$&'()*+,;=:@`;
const LENIENT = `"{}|^\`[]\\`;
export const HEX = "0123456789abcdef";
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
export function token(rng: Rng, min: number, max: number): string {
  const n = rng.between(min, max);
  if (rng.chance(0.8)) {
    return rng.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 1) +
      rng.text(`${ALNUM}-`, n - 1);
  }
  return rng.text(TOKEN_CHARS, n);
}

/** Randomizes the case of each letter of `name`. */
export function anyCase(rng: Rng, name: string): string {
  if (rng.chance(0.6)) return name;
  let out = "";
  for (const c of name) {
    out += rng.chance(0.5) ? c.toUpperCase() : c.toLowerCase();
  }
  return out;
}

export function hostValue(rng: Rng): string {
  const host = rng.pick(HOSTS);
  return rng.chance(0.3)
    ? `${host}:${rng.pick([1, 80, 443, 8080, 65535])}`
    : host;
}

export function path(rng: Rng): string {
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
export function fieldValue(rng: Rng): string {
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

export function field(name: string, value: string, rng: Rng): Line {
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
export function clone(r: FuzzRequest): FuzzRequest {
  return structuredClone(r);
}
