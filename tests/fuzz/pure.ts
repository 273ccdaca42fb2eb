// Copyright 2026 the @corothread/evthread authors. MIT license.
// The pure functions, without sockets: parseHead(), parseChunkSize(),
// checkFieldLine() and BodyReader driven with generated and mutated input.

import { EvSocket } from "../../mod.ts";
import { CoarseTimeouts } from "../../src/_coarse_timeouts.ts";
import { BodyReader } from "../../src/_http_body.ts";
import {
  checkFieldLine,
  type HeadLimits,
  HttpError,
  parseChunkSize,
  parseHead,
} from "../../src/_http_parse.ts";
import { requestUrl } from "../../src/_http_request.ts";
import {
  badChunkSize,
  CONTROLS,
  insertAt,
  INVALID,
  INVALID_BY_ID,
  type InvalidMutation,
  mutateRandomly,
} from "./mutations.ts";
import {
  bodyOf,
  type Chunk,
  clone,
  field,
  fieldValue,
  generateRequest,
  headOf,
  token,
} from "./requests.ts";
import { errorText, FUZZ_LIMITS } from "./server.ts";
import {
  bump,
  caseSeed,
  escape,
  hexSeed,
  Rng,
  toBytes,
  toText,
} from "./util.ts";

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
      timeouts: new CoarseTimeouts(socket),
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
