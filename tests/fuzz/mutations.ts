// Copyright 2026 the @corothread/evthread authors. MIT license.
// The mutation classes: random mutations (anything goes, only the server's
// conduct is checked) and the catalogue of mutations known to make a
// request invalid, each with what the server must do with it.

import {
  ALNUM,
  anyCase,
  bodyOf,
  type Chunk,
  field,
  fieldValue,
  type FuzzRequest,
  headOf,
  HEX,
  hostValue,
  type Line,
  path,
  type RequestNeeds,
  token,
} from "./requests.ts";
import type { Rng } from "./util.ts";

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
   * A server defect this class is known to expose, printed with its
   * failures. It excuses nothing: the class fails as long as the defect is
   * there.
   */
  defect?: string;
}

export const CONTROLS = Array.from(
  { length: 0x20 },
  (_, i) => String.fromCharCode(i),
)
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

export function insertAt(text: string, at: number, what: string): string {
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

/**
 * Inserts `what()` into a field other than the marker, at `at(colon, text)`
 * (`colon` the index of its colon, `text` the line); the PRNG is drawn on
 * for the field, then by `at`, then by `what`.
 */
function insertInField(
  r: FuzzRequest,
  rng: Rng,
  at: (colon: number, text: string) => number,
  what: () => string,
): Mutated {
  const f = r.fields[pickField(r, rng)]!;
  const colon = f.text.indexOf(":");
  f.text = insertAt(f.text, at(colon, f.text), what());
  return whole(r);
}

/** A class in the body: the size of a chunk picked at random, replaced. */
function chunkSizeClass(
  spec: Pick<InvalidMutation, "id" | "title" | "needs">,
  size: (chunk: Chunk, rng: Rng) => string,
): InvalidMutation {
  return {
    ...spec,
    where: "body",
    apply(r, rng) {
      const c = rng.pick(r.chunks);
      c.size = size(c, rng);
      return whole(r);
    },
  };
}

/** A chunk size that is not 1*HEXDIG (nor hex digits then BWS then `;`). */
export function badChunkSize(c: Chunk, rng: Rng): string {
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
      return insertInField(
        r,
        rng,
        (colon) => rng.below(colon + 1),
        () => rng.pick(CONTROLS),
      );
    },
  },
  {
    id: "space-before-colon",
    title: "a space or tab before the colon",
    where: "head",
    needs: {},
    apply(r, rng) {
      return insertInField(
        r,
        rng,
        (colon) => colon,
        () => rng.pick([" ", "\t", "  ", " \t"]),
      );
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
      return insertInField(
        r,
        rng,
        (colon, text) => rng.between(colon + 1, text.length),
        () => "\r",
      );
    },
  },
  {
    id: "value-ctl",
    title: "a NUL, DEL or other control byte in a field value",
    where: "head",
    needs: {},
    apply(r, rng) {
      return insertInField(
        r,
        rng,
        (colon, text) => rng.between(colon + 1, text.length),
        () => rng.pick(VALUE_CONTROLS),
      );
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
  chunkSizeClass({
    id: "chunk-size-non-hex",
    title: "a non-hex chunk size",
    needs: { framing: "chunked" },
  }, badChunkSize),
  chunkSizeClass({
    id: "chunk-size-sign",
    title: "a chunk size with a sign",
    needs: { framing: "chunked" },
  }, (c, rng) => rng.pick(["+", "-"]) + c.size),
  chunkSizeClass({
    id: "chunk-size-overflow",
    title: "a chunk size of 17 or more hex digits",
    needs: { framing: "chunked", dataChunks: 1 },
  }, (_c, rng) =>
    rng.pick([
      "10000000000000000",
      "fffffffffffffffff",
      "1" + "0".repeat(rng.between(16, 24)),
      rng.text("123456789abcdef", 1) + rng.text(HEX, rng.between(16, 23)),
    ])),
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
