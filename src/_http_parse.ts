// Copyright 2026 the @corothread/evthread authors. MIT license.
// HTTP/1.1 request head parsing (RFC 9112 sections 2-7). Pure functions over
// the head as a latin1 string, so that they can be tested and fuzzed alone.

export { latin1 } from "./_bytes.ts";

/** A request the server must answer with `status` and then close. */
export class HttpError extends Error {
  /** The status code to answer with. */
  readonly status: number;

  constructor(status: number, message: string) {
    super(message);
    this.name = "HttpError";
    this.status = status;
  }
}

/** The limits the parser enforces. */
export interface HeadLimits {
  /** Longest request target, in bytes (414 beyond). */
  maxUrlBytes: number;
  /** Most header fields (431 beyond). */
  maxHeaderFields: number;
}

/** A parsed request head. */
export interface RequestHead {
  method: string;
  target: string;
  /** The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1 (and 1.x). */
  minor: number;
  /** Field names (lower case) and values, flat: `[name, value, ...]`. */
  fields: string[];
  host: string | undefined;
  /** `Content-Length`, or -1 when absent. */
  contentLength: number;
  chunked: boolean;
  /** Whether the connection may stay open after this exchange. */
  keepAlive: boolean;
  expectContinue: boolean;
  /** The `Upgrade` field's value when `Connection` lists `upgrade`. */
  upgrade: string | undefined;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// Field values: visible ASCII, obs-text, space and tab; no other controls.
// deno-lint-ignore no-control-regex
const BAD_VALUE = /[\x00-\x08\x0a-\x1f\x7f]/;
// Request targets: visible ASCII only (RFC 3986 plus the usual leniency for
// characters like `"` or `{`); no spaces, controls or bytes above 0x7e.
const BAD_TARGET = /[^\x21-\x7e]/;
const VERSION = /^HTTP\/(\d)\.(\d)$/;
// uri-host [":" port] (RFC 9112 3.2, RFC 3986 3.2.2): no "/", "?", "#",
// "@" or spaces, which would change the URL the handler sees.
const HOST = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(:\d*)?$/;
const ABSOLUTE = /^https?:\/\//i;

// No Connection field: no tokens (one array for every such request).
const NO_TOKENS: readonly string[] = [];

/**
 * Parses a request head: everything before the blank line that ends it,
 * decoded as latin1 (one char per byte). Leading empty lines are skipped.
 *
 * @throws {HttpError} with the status to answer: 400 malformed, 414 target
 * too long, 431 too many fields, 501 unknown transfer coding, 505 version.
 */
export function parseHead(head: string, limits: HeadLimits): RequestHead {
  let start = 0;
  while (head.startsWith("\r\n", start)) start += 2;
  let eol = head.indexOf("\r\n", start);
  if (eol < 0) eol = head.length;
  const request = parseRequestLine(head.slice(start, eol), limits);
  const { fields, minor } = request;

  // The field lines; those that frame the message are kept aside.
  let hosts = 0;
  let transferEncoding: string | undefined;
  let connection = "";
  let expect: string | undefined;
  let upgrade: string | undefined;
  for (let pos = eol + 2; pos < head.length;) {
    let end = head.indexOf("\r\n", pos);
    if (end < 0) end = head.length;
    pushField(head, pos, end, fields, limits.maxHeaderFields);
    const value = fields[fields.length - 1]!;
    switch (fields[fields.length - 2]) {
      case "host":
        request.host = value;
        hosts++;
        break;
      case "content-length":
        request.contentLength = mergeContentLength(
          request.contentLength,
          value,
        );
        break;
      case "transfer-encoding":
        transferEncoding = transferEncoding === undefined
          ? value
          : `${transferEncoding}, ${value}`;
        break;
      case "connection":
        connection = connection === "" ? value : `${connection}, ${value}`;
        break;
      case "expect":
        expect = value;
        break;
      case "upgrade":
        upgrade = value;
        break;
    }
    pos = end + 2;
  }

  checkHost(request.host, hosts, minor);
  if (transferEncoding !== undefined) {
    checkTransferEncoding(transferEncoding, request.contentLength, minor);
    request.chunked = true;
  }
  const tokens = connection === ""
    ? NO_TOKENS
    : connection.toLowerCase().split(",").map((s) => s.trim());
  request.keepAlive = minor === 1
    ? !tokens.includes("close")
    : tokens.includes("keep-alive") && !tokens.includes("close");
  // HTTP/1.0 Upgrade is ignored (RFC 9110 7.8); so is one on a request
  // with a body, whose bytes would be mistaken for the new protocol's.
  if (
    upgrade !== undefined && tokens.includes("upgrade") && minor === 1 &&
    !request.chunked && request.contentLength <= 0
  ) {
    request.upgrade = upgrade;
  }
  if (expect !== undefined) {
    if (expect.toLowerCase() !== "100-continue") {
      throw new HttpError(417, "Expectation not supported");
    }
    request.expectContinue = minor === 1;
  }
  return request;
}

/**
 * Parses a request line (method, target, version) into a head without
 * fields, for {@linkcode parseHead} to complete.
 */
function parseRequestLine(line: string, limits: HeadLimits): RequestHead {
  const sp1 = line.indexOf(" ");
  const sp2 = sp1 < 0 ? -1 : line.indexOf(" ", sp1 + 1);
  if (sp1 <= 0 || sp2 < 0) {
    throw new HttpError(400, "Malformed request line");
  }
  const target = line.slice(sp1 + 1, sp2);
  if (target.length > limits.maxUrlBytes) {
    throw new HttpError(414, "Request target too long");
  }
  const method = line.slice(0, sp1);
  const version = line.slice(sp2 + 1);
  if (
    !(method === "GET" || method === "POST" || TOKEN.test(method)) ||
    target.length === 0 || BAD_TARGET.test(target)
  ) {
    throw new HttpError(400, "Malformed request line");
  }
  let minor = 1;
  if (version !== "HTTP/1.1") {
    const m = VERSION.exec(version);
    if (m === null) throw new HttpError(400, "Malformed HTTP version");
    if (m[1] !== "1") throw new HttpError(505, "HTTP version not supported");
    if (m[2] === "0") minor = 0;
  }
  checkTargetForm(method, target);
  return {
    method,
    target,
    minor,
    fields: [],
    host: undefined,
    contentLength: -1,
    chunked: false,
    keepAlive: false,
    expectContinue: false,
    upgrade: undefined,
  };
}

/**
 * Checks the form of a request target: origin-form for any method;
 * absolute-form; authority-form only for CONNECT and "*" only for OPTIONS
 * (RFC 9112 3.2).
 */
function checkTargetForm(method: string, target: string): void {
  if (
    target.charCodeAt(0) !== 0x2f && !ABSOLUTE.test(target) &&
    !(target === "*" && method === "OPTIONS") &&
    !(method === "CONNECT" && /^[^/?#@]+:\d+$/.test(target))
  ) {
    throw new HttpError(400, "Malformed request target");
  }
}

/**
 * Checks the field line from `pos` to `end` and appends its name (lower
 * case) and value (without the spaces around it) to `fields`.
 */
function pushField(
  head: string,
  pos: number,
  end: number,
  fields: string[],
  maxFields: number,
): void {
  if (isOws(head.charCodeAt(pos))) {
    throw new HttpError(400, "Obsolete line folding is not allowed");
  }
  const colon = head.indexOf(":", pos);
  if (colon < 0 || colon >= end) {
    throw new HttpError(400, "Malformed header field");
  }
  const name = head.slice(pos, colon);
  if (!TOKEN.test(name)) {
    throw new HttpError(400, "Malformed header field name");
  }
  if (fields.length >= 2 * maxFields) {
    throw new HttpError(431, "Too many header fields");
  }
  let vs = colon + 1;
  let ve = end;
  while (vs < ve && isOws(head.charCodeAt(vs))) vs++;
  while (ve > vs && isOws(head.charCodeAt(ve - 1))) ve--;
  const value = head.slice(vs, ve);
  if (BAD_VALUE.test(value)) {
    throw new HttpError(400, "Invalid character in header field value");
  }
  fields.push(name.toLowerCase(), value);
}

/** Checks the Host fields: one for HTTP/1.1, at most one for 1.0, valid. */
function checkHost(
  host: string | undefined,
  count: number,
  minor: number,
): void {
  if (minor === 1 && count !== 1) {
    throw new HttpError(400, "HTTP/1.1 requests need exactly one Host field");
  }
  if (minor === 0 && count > 1) {
    throw new HttpError(400, "More than one Host field");
  }
  if (host !== undefined && !HOST.test(host)) {
    throw new HttpError(400, "Invalid Host field");
  }
}

/**
 * Checks a Transfer-Encoding (its fields joined): `chunked` alone, in an
 * HTTP/1.1 request without Content-Length.
 */
function checkTransferEncoding(
  value: string,
  contentLength: number,
  minor: number,
): void {
  if (contentLength >= 0) {
    throw new HttpError(
      400,
      "Both Content-Length and Transfer-Encoding are present",
    );
  }
  if (minor === 0) {
    throw new HttpError(400, "Transfer-Encoding in an HTTP/1.0 request");
  }
  const codings = value.split(",").map((s) => s.trim().toLowerCase())
    .filter((s) => s !== "");
  if (codings.length === 0) {
    throw new HttpError(400, "Empty Transfer-Encoding");
  }
  for (const coding of codings) {
    if (coding !== "chunked") {
      throw new HttpError(501, `Transfer coding not implemented: ${coding}`);
    }
  }
  if (codings.length > 1) {
    throw new HttpError(400, "chunked applied more than once");
  }
}

function isOws(c: number): boolean {
  return c === 0x20 || c === 0x09;
}

/** Merges a Content-Length field into what was seen so far (-1: none). */
function mergeContentLength(previous: number, value: string): number {
  let result = previous;
  // A list of identical values ("5, 5") counts as one value (RFC 9110 8.6).
  for (const part of value.split(",")) {
    const digits = part.trim();
    if (!/^\d{1,15}$/.test(digits)) {
      throw new HttpError(400, "Invalid Content-Length");
    }
    const n = Number(digits);
    if (result >= 0 && result !== n) {
      throw new HttpError(400, "Differing Content-Length values");
    }
    result = n;
  }
  return result;
}

/**
 * Parses a chunk-size line (without CRLF): 1 to 12 hex digits, then any
 * chunk extensions (RFC 9112 7.1.1), which are checked and ignored:
 *
 *     chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
 *
 * where a name is a token, a value a token or a quoted-string (RFC 9110
 * 5.6.4), and BWS optional spaces and tabs.
 *
 * @throws {HttpError} 400 when it is malformed or too large.
 */
export function parseChunkSize(line: string): number {
  let digits = 0;
  while (isHexDigit(line.charCodeAt(digits))) digits++;
  if (
    digits === 0 || digits > 12 ||
    (digits < line.length &&
      line.charCodeAt(skipBws(line, digits)) !== SEMICOLON)
  ) {
    throw new HttpError(400, "Malformed chunk size");
  }
  if (!validChunkExt(line, digits)) {
    throw new HttpError(400, "Malformed chunk extension");
  }
  return parseInt(line.slice(0, digits), 16);
}

const SEMICOLON = 0x3b;
const EQUALS = 0x3d;
const DQUOTE = 0x22;
const BACKSLASH = 0x5c;

// Classes of latin1 chars (RFC 9110 5.6.2 and 5.6.4), as bits.
const TCHAR = 1;
/** qdtext: HTAB, SP, VCHAR but `"` and `\`, obs-text. */
const QDTEXT = 2;
/** What may follow `\` in a quoted-string: HTAB, SP, VCHAR, obs-text. */
const QUOTABLE = 4;
const CHAR_CLASSES = new Uint8Array(256).map((_, c) => {
  const visible = (c >= 0x21 && c <= 0x7e) || c >= 0x80;
  let bits = 0;
  if (TOKEN.test(String.fromCharCode(c))) bits |= TCHAR;
  if (c === 0x09 || c === 0x20 || visible) {
    bits |= QUOTABLE;
    if (c !== DQUOTE && c !== BACKSLASH) bits |= QDTEXT;
  }
  return bits;
});

function isA(c: number, bits: number): boolean {
  return ((CHAR_CLASSES[c] ?? 0) & bits) !== 0;
}

function isHexDigit(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) ||
    (c >= 0x61 && c <= 0x66);
}

/** The index of the first char at or after `i` that is not BWS. */
function skipBws(line: string, i: number): number {
  while (isOws(line.charCodeAt(i))) i++;
  return i;
}

/** The index after the token at `i` (`i` itself when there is none). */
function skipToken(line: string, i: number): number {
  while (isA(line.charCodeAt(i), TCHAR)) i++;
  return i;
}

/**
 * The index after the quoted-string at `start` (`start` itself when there
 * is none: not a quote, a char not allowed, or no closing quote).
 */
function skipQuoted(line: string, start: number): number {
  if (line.charCodeAt(start) !== DQUOTE) return start;
  let i = start + 1;
  while (i < line.length) {
    const c = line.charCodeAt(i);
    if (c === DQUOTE) return i + 1;
    if (c === BACKSLASH) {
      if (!isA(line.charCodeAt(i + 1), QUOTABLE)) return start;
      i += 2;
    } else if (isA(c, QDTEXT)) i++;
    else return start;
  }
  return start;
}

/** Whether `line` from `start` to its end is a valid `chunk-ext`. */
function validChunkExt(line: string, start: number): boolean {
  let i = start;
  while (i < line.length) {
    i = skipBws(line, i);
    if (line.charCodeAt(i) !== SEMICOLON) return false;
    const name = skipBws(line, i + 1);
    i = skipToken(line, name);
    if (i === name) return false;
    const equals = skipBws(line, i);
    if (line.charCodeAt(equals) !== EQUALS) continue; // a name alone
    const value = skipBws(line, equals + 1);
    i = line.charCodeAt(value) === DQUOTE
      ? skipQuoted(line, value)
      : skipToken(line, value);
    if (i === value) return false;
  }
  return true;
}

/**
 * Checks a trailer field line (without CRLF) with the grammar of header
 * fields: a token name, a colon, a value without control characters.
 *
 * @throws {HttpError} 400 when it is malformed.
 */
export function checkFieldLine(line: string): void {
  const colon = line.indexOf(":");
  if (colon <= 0 || !TOKEN.test(line.slice(0, colon))) {
    throw new HttpError(400, "Malformed trailer field");
  }
  if (BAD_VALUE.test(line.slice(colon + 1)) || line.includes("\r")) {
    throw new HttpError(400, "Invalid character in trailer field");
  }
}
