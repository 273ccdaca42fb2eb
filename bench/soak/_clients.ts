/**
 * The load of `bench/soak/soak.ts`, in its own process: well-behaved clients and
 * hostile ones against one server of `_server.ts`, for a fixed time.
 *
 * Usage (the orchestrator runs it; by hand for a reproduction):
 * ```sh
 * deno run --allow-net bench/soak/_clients.ts --target echo|http --port P \
 *   --seconds N [--seed S] [--flood N]
 * ```
 *
 * Output, JSON lines on stdout: `{"event":"progress",...}` every 5 s, then
 * one `{"event":"result",...}` ({@linkcode ClientsReport}). A hard stop
 * exits with code 3 after `seconds + 50` s whatever happens.
 *
 * Clients use raw `Deno.connect` sockets (not this library), each call
 * bounded by a timer that closes the socket when it expires.
 *
 * **Well-behaved clients** ({@linkcode WELL_BEHAVED} of them, all the run):
 * each opens a connection, makes 1 to 16 requests on it (keep-alive), one
 * at a time, then closes it (sometimes asking the HTTP server to close, with
 * `Connection: close`) and opens the next. A request is one write; its
 * response must come back byte for byte:
 * - echo: a line `wb<id>.<seq> <printable bytes>\n` of 10 B to 100 KiB must
 *   come back identical, with nothing after it;
 * - HTTP: `GET /gen?o=&n=` or `POST /echo` with a body of 0 to 256 KiB; the
 *   response must be `HTTP/1.1 200 OK` with a `content-length` of exactly
 *   the expected size and the exact bytes, with nothing after them.
 *
 * Each request, its connect included, has {@linkcode CLIENT_TIMEOUT_MS}
 * (30 s). Anything else is a failure: a timeout, a connect error, a wrong
 * byte, a short or extra response, an end of stream or reset mid-response,
 * or on a fresh connection before the response. One case is not: a request
 * on a reused keep-alive connection that sees the connection end (EOF or
 * reset) before any byte of its response is retried once on a fresh
 * connection (RFC 9112, section 9.3.1: the server may close an idle
 * keep-alive connection at any time, and this HTTP server does so to give a
 * waiting client its slot). Retries are counted apart; a retry that fails is
 * a failure. After a failure a client waits 100 ms. When the run ends, each
 * client finishes the request it is in.
 *
 * **Hostile clients**: {@linkcode HOSTILE_MAX} workers, so at most 64 hostile
 * clients at once, each drawing kinds from a weighted mix with a PRNG seeded
 * from `--seed` and its index, with 20-250 ms between attacks (weights in
 * brackets):
 * - `reset` (3): asks for 1 MiB of response (16 lines of 64 KiB; a `GET` of
 *   1 MiB) and closes with it unread, in the middle of the server's writing
 *   once its first bytes came (2 in 3), or at once: the kernel answers the
 *   server's bytes with a reset;
 * - `halfclose` (3): sends a request (whole or cut short), half-closes, then
 *   neither reads nor closes for 1-5 s;
 * - `neverread` (2): sends requests with large responses without ever reading,
 *   until a write fails (the server cut it) or the cap;
 * - `slowloris` (3): one byte every 200-500 ms, never ending the line or head,
 *   until the server closes the connection or the cap;
 * - `silent` (1): connects and sends nothing until the server closes it;
 * - `vanish` (4): connects and closes at once;
 * - `burst` (1): {@linkcode BURST_SIZE} connections at once (beyond the pool of
 *   256), each sending one small request; half close right after sending, the
 *   other half read their response (30 s cap). At most one burst at a time,
 *   starts at least {@linkcode BURST_GAP_MS} apart, the first after 1 s. A
 *   burst is one of the 64 hostile clients; its connections are what go
 *   beyond the pool.
 *
 * `neverread`, `slowloris` and `silent` give up after
 * {@linkcode HOSTILE_CAP_MS} (15 s), three times the server's longest limit:
 * a connection the server has not cut by then counts as `capped`, one the
 * server cut as `cut`.
 *
 * **The pool flood** (`--flood N`, off by default): N more connections, all
 * from {@linkcode FLOOD_ADDRESS} (the others come from 127.0.0.1), each
 * sending the start of a request (or line) and then one byte every 1-3 s,
 * never finishing it, and reconnecting at once whenever the server cuts it:
 * with N above the pool, one address tries to hold every slot. It needs
 * node:net (Deno.connect cannot bind a local address). For it the report
 * gives the well-behaved clients' **wait for a slot**: on each fresh
 * connection, the time from the start of the connect to the first byte of
 * the response (the server answers at once once the connection has a
 * slot; the rest is the exchange of a small request, under a millisecond
 * when nothing waits).
 *
 * @module
 */

import net from "node:net";

import { ECHO_LIMITS, patternSlice, type SoakTarget } from "./_server.ts";
import { choice, integer, parseArgs, PORT, SECONDS } from "../_common/args.ts";

/** Well-behaved clients, each one connection at a time. */
export const WELL_BEHAVED = 32;
/** Hostile clients at once (workers). */
export const HOSTILE_MAX = 64;
/** Connections of one burst. */
export const BURST_SIZE = 300;
/** Each well-behaved request, connect included, and each burst connection. */
export const CLIENT_TIMEOUT_MS = 30_000;
/** How long `neverread`, `slowloris` and `silent` wait to be cut. */
export const HOSTILE_CAP_MS = 15_000;
/** The address the pool flood comes from (any 127.0.0.0/8 works on Linux). */
export const FLOOD_ADDRESS = "127.0.0.3";
/** The least time between the starts of two bursts. */
export const BURST_GAP_MS = 5_000;
const BURST_FIRST_MS = 1_000;
const PROGRESS_EVERY_MS = 5_000;
/** Backstops on counts (time ends every loop long before). */
const MAX_RATE_PER_CLIENT = 10_000;
const MAX_WRITES = 10_000;
const FAILURE_SAMPLES = 20;
const FAILURE_BACKOFF_MS = 100;
const HOST = "127.0.0.1";

/** The hostile kinds, in report order. */
export const HOSTILE_KINDS = [
  "reset",
  "halfclose",
  "neverread",
  "slowloris",
  "silent",
  "vanish",
  "burst",
] as const;
/** A hostile kind. */
export type HostileKind = typeof HOSTILE_KINDS[number];

const WEIGHTS: Record<HostileKind, number> = {
  reset: 3,
  halfclose: 3,
  neverread: 2,
  slowloris: 3,
  silent: 1,
  vanish: 4,
  burst: 1,
};

/** How hostile clients of one kind fared. */
export interface HostileStats {
  /** Attacks started. */
  runs: number;
  /** Connections opened. */
  connections: number;
  /** Ended as planned (closed by the client). */
  done: number;
  /** The server closed or reset the connection before the client's cap. */
  cut: number;
  /** Still open at the client's cap: the server did not cut it. */
  capped: number;
  /** Ended by the end of the run. */
  stopped: number;
  /** Unexpected errors (such as a failed connect). */
  errors: number;
  /** Bursts: connections that read their response in full. */
  answered: number;
  /** Bursts: connections that wanted their response and did not get it. */
  unanswered: number;
}

/** How the well-behaved clients fared. */
export interface WellBehavedStats {
  clients: number;
  /** Requests whose response came back exact. */
  served: number;
  /** Requests that failed (must be 0). */
  failed: number;
  /** Failures by reason. */
  failures: Record<string, number>;
  /** The first failures, with details. */
  failureSamples: string[];
  /** Requests retried once on a fresh connection, by reason. */
  retries: number;
  retryReasons: Record<string, number>;
  /** Connections opened. */
  connections: number;
  /** Request and response bytes moved. */
  bytes: number;
  /** Request latency (connect included when fresh), in milliseconds. */
  p50Ms: number | null;
  p99Ms: number | null;
  maxMs: number | null;
  /**
   * Wait for a slot: on fresh connections, from the start of the connect
   * to the first response byte, in milliseconds.
   */
  slotWaitP50Ms: number | null;
  slotWaitP99Ms: number | null;
  slotWaitMaxMs: number | null;
}

/** How the pool flood fared. */
export interface FloodStats {
  /** Flood clients (each one connection at a time). */
  clients: number;
  /** Connections opened. */
  connections: number;
  /** Connections the server closed (evicted, timed out, or limited). */
  cut: number;
  /** Of those, how many got a 408 first. */
  got408: number;
  /** Connects that failed. */
  errors: number;
}

/** The `{"event":"result"}` line. */
export interface ClientsReport {
  event: "result";
  target: SoakTarget;
  seed: number;
  /** Seconds of load, and of the wind-down after it. */
  loadSeconds: number;
  windDownSeconds: number;
  wellBehaved: WellBehavedStats;
  hostile: Record<HostileKind, HostileStats>;
  /** Hostile connections opened in all. */
  hostileConnections: number;
  /** The most hostile clients, and hostile connections, open at once. */
  hostilePeak: number;
  hostileConnectionsPeak: number;
  /** The first unexpected hostile errors. */
  hostileErrorSamples: string[];
  /** The pool flood, if any. */
  flood: FloodStats;
}

/** A `{"event":"progress"}` line. */
export interface ClientsProgress {
  event: "progress";
  t: number;
  served: number;
  failed: number;
  retries: number;
  hostileActive: number;
  hostileConnections: number;
}

// ------------------------------------------------------------ small tools

/** mulberry32: a seeded PRNG giving floats in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** A seed for stream `n` of `seed`. */
function subSeed(seed: number, n: number): number {
  return (Math.imul(seed ^ 0x5bd1e995, 0x27d4eb2d) +
    Math.imul(n, 0x165667b1)) >>>
    0;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const LF = encoder.encode("\n");
const CRLFCRLF = encoder.encode("\r\n\r\n");

/** The client gave up: a call outlived its timeout. */
class ClientTimeout extends Error {
  override name = "ClientTimeout";
}

/** A response that is not what was expected. */
class BadResponse extends Error {
  override name = "BadResponse";
  readonly reason: string;
  constructor(reason: string, detail: string) {
    super(`${reason}: ${detail}`);
    this.reason = reason;
  }
}

/** The stream ended (`mid`: inside a response). */
class EndOfStream extends Error {
  override name = "EndOfStream";
  readonly mid: boolean;
  constructor(mid: boolean) {
    super(mid ? "end of stream mid-response" : "end of stream");
    this.mid = mid;
  }
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Closed already.
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.byteLength) off += await conn.write(bytes.subarray(off));
}

/** Resolves true after `ms`, or false at once when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** Connects, or rejects with a ClientTimeout after `ms`. */
async function connectWithin(port: number, ms: number): Promise<Deno.TcpConn> {
  if (ms <= 0) throw new ClientTimeout("no time left to connect");
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), ms);
  try {
    return await Deno.connect({
      hostname: HOST,
      port,
      signal: controller.signal,
    });
  } catch (error) {
    if (controller.signal.aborted) {
      throw new ClientTimeout(`connect took over ${Math.round(ms)} ms`);
    }
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

/** The name of an error, for counting. */
function errorName(error: unknown): string {
  if (error instanceof BadResponse) return error.reason;
  if (error instanceof Error) return error.name;
  return String(error);
}

/** Whether `error` says the peer closed or reset the connection. */
function isPeerClose(error: unknown): boolean {
  return (error instanceof EndOfStream && !error.mid) ||
    error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.ConnectionAborted;
}

/** Reads a connection through a buffer. */
class Reader {
  readonly conn: Deno.Conn;
  #buf = new Uint8Array(64 * 1024);
  #start = 0;
  #end = 0;
  /** Bytes read from the connection in all. */
  total = 0;
  /** When the first byte came (`performance.now()`), or 0. */
  firstByteAt = 0;

  constructor(conn: Deno.Conn) {
    this.conn = conn;
  }

  get buffered(): number {
    return this.#end - this.#start;
  }

  /** Reads more; false at end of stream. */
  async #fill(): Promise<boolean> {
    if (this.#end === this.#buf.length) {
      const live = this.#end - this.#start;
      if (live * 2 > this.#buf.length) {
        const bigger = new Uint8Array(this.#buf.length * 2);
        bigger.set(this.#buf.subarray(this.#start, this.#end));
        this.#buf = bigger;
      } else {
        this.#buf.copyWithin(0, this.#start, this.#end);
      }
      this.#start = 0;
      this.#end = live;
    }
    const n = await this.conn.read(this.#buf.subarray(this.#end));
    if (n === null) return false;
    if (this.total === 0) this.firstByteAt = performance.now();
    this.#end += n;
    this.total += n;
    return true;
  }

  /** Bytes up to and including `delim` (at most `max`). */
  async until(delim: Uint8Array, max: number): Promise<Uint8Array> {
    let from = this.#start;
    while (true) {
      const at = indexOf(this.#buf, delim, from, this.#end);
      if (at >= 0) {
        const out = this.#buf.slice(this.#start, at + delim.length);
        this.#start = at + delim.length;
        return out;
      }
      if (this.#end - this.#start > max) {
        throw new BadResponse("no end of line or head", `over ${max} bytes`);
      }
      const seen = this.#end - this.#start;
      if (!await this.#fill()) throw new EndOfStream(seen > 0);
      from = Math.max(this.#start, this.#start + seen - delim.length + 1);
    }
  }

  /** Exactly `n` bytes. */
  async exact(n: number): Promise<Uint8Array> {
    while (this.#end - this.#start < n) {
      if (!await this.#fill()) throw new EndOfStream(true);
    }
    const out = this.#buf.slice(this.#start, this.#start + n);
    this.#start += n;
    return out;
  }
}

function indexOf(
  buf: Uint8Array,
  delim: Uint8Array,
  from: number,
  end: number,
): number {
  const first = delim[0]!;
  for (
    let i = buf.indexOf(first, from);
    i >= 0;
    i = buf.indexOf(first, i + 1)
  ) {
    if (i + delim.length > end) return -1;
    let j = 1;
    while (j < delim.length && buf[i + j] === delim[j]) j++;
    if (j === delim.length) return i;
  }
  return -1;
}

/** Throws a BadResponse at the first byte that differs. */
function compare(actual: Uint8Array, expected: Uint8Array, what: string): void {
  if (actual.byteLength !== expected.byteLength) {
    throw new BadResponse(
      `wrong ${what} length`,
      `expected ${expected.byteLength} bytes, got ${actual.byteLength}`,
    );
  }
  for (let i = 0; i < expected.byteLength; i++) {
    if (actual[i] !== expected[i]) {
      throw new BadResponse(
        `wrong ${what} bytes`,
        `first difference at offset ${i} of ${expected.byteLength}`,
      );
    }
  }
}

// ----------------------------------------------------------- the protocol

/** One request and how to check its response. */
interface Exchange {
  request: Uint8Array;
  /** Reads the response and checks it; `close`: the server will close. */
  check(reader: Reader): Promise<{ close: boolean }>;
}

/** A body or line size: mostly small, some medium, a few large. */
function size(rand: () => number, large: number): number {
  const r = rand();
  if (r < 0.7) return Math.floor(rand() * 2048);
  if (r < 0.95) return 2048 + Math.floor(rand() * 30_720);
  return 65_536 + Math.floor(rand() * (large - 65_536));
}

/** Printable bytes (no `\n`) from the pattern. */
function printable(offset: number, n: number): Uint8Array {
  const bytes = patternSlice(offset, n).slice();
  for (let i = 0; i < n; i++) bytes[i] = 0x21 + bytes[i]! % 94;
  return bytes;
}

function echoExchange(line: Uint8Array): Exchange {
  return {
    request: line,
    async check(reader) {
      const back = await reader.until(LF, ECHO_LIMITS.maxLineBytes);
      compare(back, line, "echo");
      if (reader.buffered > 0) {
        throw new BadResponse("bytes after the echo", `${reader.buffered}`);
      }
      return { close: false };
    },
  };
}

/** A well-behaved echo request: `wb<id>.<seq> <bytes>\n`. */
function echoRequest(rand: () => number, label: string): Exchange {
  const head = encoder.encode(`${label} `);
  // The server's limit is 128 KiB a line: stay well under it.
  const body = printable(Math.floor(rand() * 1e9), size(rand, 100 * 1024));
  const line = new Uint8Array(head.length + body.length + 1);
  line.set(head);
  line.set(body, head.length);
  line[line.length - 1] = 0x0a;
  return echoExchange(line);
}

function httpExchange(
  head: string,
  body: Uint8Array | undefined,
  expected: Uint8Array,
): Exchange {
  const headBytes = encoder.encode(head);
  let request = headBytes;
  if (body !== undefined) {
    request = new Uint8Array(headBytes.length + body.length);
    request.set(headBytes);
    request.set(body, headBytes.length);
  }
  return {
    request,
    async check(reader) {
      const raw = decoder.decode(await reader.until(CRLFCRLF, 16 * 1024));
      const lines = raw.slice(0, -4).split("\r\n");
      if (lines[0] !== "HTTP/1.1 200 OK") {
        throw new BadResponse("not 200 OK", JSON.stringify(lines[0]));
      }
      const fields = new Map<string, string>();
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(":");
        if (colon <= 0) {
          throw new BadResponse("bad field", JSON.stringify(line));
        }
        const name = line.slice(0, colon).toLowerCase();
        const value = line.slice(colon + 1).trim();
        if (fields.has(name)) {
          throw new BadResponse("repeated field", JSON.stringify(line));
        }
        fields.set(name, value);
      }
      if (fields.has("transfer-encoding")) {
        throw new BadResponse(
          "unexpected transfer-encoding",
          fields.get("transfer-encoding")!,
        );
      }
      const length = fields.get("content-length");
      if (length !== String(expected.byteLength)) {
        throw new BadResponse(
          "wrong content-length",
          `expected ${expected.byteLength}, got ${length}`,
        );
      }
      compare(await reader.exact(expected.byteLength), expected, "body");
      if (reader.buffered > 0) {
        throw new BadResponse("bytes after the response", `${reader.buffered}`);
      }
      const connection = (fields.get("connection") ?? "").toLowerCase();
      return { close: connection.split(/\s*,\s*/).includes("close") };
    },
  };
}

/** A well-behaved HTTP request: `GET /gen` or `POST /echo`. */
function httpRequest(
  rand: () => number,
  label: string,
  close: boolean,
): Exchange {
  const n = size(rand, 256 * 1024);
  const offset = Math.floor(rand() * 1e9);
  const expected = patternSlice(offset, n);
  const connection = close ? "Connection: close\r\n" : "";
  if (rand() < 0.5) {
    return httpExchange(
      `GET /gen?o=${offset}&n=${n} HTTP/1.1\r\nHost: soak\r\n` +
        `User-Agent: ${label}\r\n${connection}\r\n`,
      undefined,
      expected,
    );
  }
  return httpExchange(
    `POST /echo HTTP/1.1\r\nHost: soak\r\nUser-Agent: ${label}\r\n` +
      `Content-Type: application/octet-stream\r\n` +
      `Content-Length: ${n}\r\n${connection}\r\n`,
    expected,
    expected,
  );
}

/** Requests of the hostile clients, per target. */
interface HostileRequests {
  /** One whose response is large (64 KiB; HTTP: 1 MiB). */
  big: Uint8Array;
  /** Requests for a response of 1 MiB in all. */
  huge: Uint8Array;
  /** A complete small one, and its check. */
  small: (i: number) => Exchange;
  /** The start of one, cut short. */
  partial: Uint8Array;
  /** What a slowloris sends before trickling. */
  slowStart: Uint8Array;
}

function hostileRequests(target: SoakTarget): HostileRequests {
  if (target === "echo") {
    const big = printable(0, 64 * 1024 - 1);
    const line = new Uint8Array(64 * 1024);
    line.set(big);
    line[line.length - 1] = 0x0a;
    const huge = new Uint8Array(16 * line.length);
    for (let i = 0; i < 16; i++) huge.set(line, i * line.length);
    return {
      big: line,
      huge,
      small: (i) => echoExchange(encoder.encode(`burst ${i}\n`)),
      partial: encoder.encode("a line that never ends"),
      slowStart: encoder.encode("slow"),
    };
  }
  const big = encoder.encode(
    `GET /gen?o=0&n=${1024 * 1024} HTTP/1.1\r\nHost: soak\r\n\r\n`,
  );
  return {
    big,
    huge: big,
    small: (i) =>
      httpExchange(
        `GET /gen?o=${i}&n=16 HTTP/1.1\r\nHost: soak\r\n\r\n`,
        undefined,
        patternSlice(i, 16),
      ),
    partial: encoder.encode("GET /gen?o=0&n=16 HTTP/1.1\r\nHo"),
    slowStart: encoder.encode("GET / HTTP/1.1\r\nHost: soak\r\nX-Slow: "),
  };
}

// ------------------------------------------------------------- the run

interface Run {
  target: SoakTarget;
  port: number;
  seed: number;
  seconds: number;
  stop: AbortSignal;
  startedAt: number;
  wb: WellBehavedStats;
  latencies: number[];
  /** Waits for a slot: fresh connections, connect to first response byte. */
  slotWaits: number[];
  flood: FloodStats;
  hostile: Record<HostileKind, HostileStats>;
  hostileActive: number;
  hostilePeak: number;
  hostileOpen: number;
  hostileOpenPeak: number;
  hostileErrorSamples: string[];
  requests: HostileRequests;
  burstRunning: boolean;
  lastBurst: number;
}

function count(map: Record<string, number>, key: string): void {
  map[key] = (map[key] ?? 0) + 1;
}

/** A keep-alive connection of a well-behaved client. */
class Session {
  readonly conn: Deno.TcpConn;
  readonly reader: Reader;

  constructor(conn: Deno.TcpConn) {
    this.conn = conn;
    this.reader = new Reader(conn);
  }

  /** Sends the request and checks its response, before `deadline`. */
  async exchange(
    exchange: Exchange,
    deadline: number,
  ): Promise<{ close: boolean; noByte: boolean }> {
    const ms = deadline - performance.now();
    if (ms <= 0) throw new ClientTimeout("no time left for the request");
    let expired = false;
    const timer = setTimeout(() => {
      expired = true;
      closeQuietly(this.conn);
    }, ms);
    const before = this.reader.total;
    try {
      await writeAll(this.conn, exchange.request);
      const { close } = await exchange.check(this.reader);
      return { close, noByte: false };
    } catch (error) {
      if (expired) {
        throw new ClientTimeout(
          `no complete response within ${CLIENT_TIMEOUT_MS} ms`,
        );
      }
      if (this.reader.total === before && isPeerClose(error)) {
        throw new BeforeResponse(error);
      }
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  close(): void {
    closeQuietly(this.conn);
  }
}

/** The connection ended before any byte of the response. */
class BeforeResponse extends Error {
  override name = "BeforeResponse";
  readonly kind: string;
  constructor(cause: unknown) {
    super(`connection ended before the response (${errorName(cause)})`);
    this.kind = cause instanceof EndOfStream ? "eof" : errorName(cause);
  }
}

async function wellBehaved(run: Run, id: number): Promise<void> {
  const rand = prng(subSeed(run.seed, 1000 + id));
  const wb = run.wb;
  let session: Session | undefined;
  let left = 0;
  // Bounded by time (the stop) and, as a backstop, by count.
  const most = Math.ceil(run.seconds * MAX_RATE_PER_CLIENT);
  try {
    for (let seq = 0; seq < most && !run.stop.aborted; seq++) {
      if (session === undefined) left = 1 + Math.floor(rand() * 16);
      const label = `wb${id}.${seq}`;
      const exchange = run.target === "echo"
        ? echoRequest(rand, label)
        : httpRequest(rand, label, left === 1 && rand() < 0.5);
      const started = performance.now();
      const deadline = started + CLIENT_TIMEOUT_MS;
      let retried = false;
      // One try, and one retry after a keep-alive close.
      for (let attempt = 0; attempt < 2; attempt++) {
        const fresh = session === undefined;
        const connecting = performance.now();
        try {
          if (session === undefined) {
            session = new Session(
              await connectWithin(run.port, deadline - performance.now()),
            );
            wb.connections++;
          }
          const { close } = await session.exchange(exchange, deadline);
          wb.served++;
          wb.bytes += 2 * exchange.request.byteLength;
          run.latencies.push(performance.now() - started);
          if (fresh) {
            run.slotWaits.push(session.reader.firstByteAt - connecting);
          }
          if (close || --left <= 0) {
            session.close();
            session = undefined;
          }
          break;
        } catch (error) {
          session?.close();
          session = undefined;
          if (!fresh && !retried && error instanceof BeforeResponse) {
            retried = true;
            wb.retries++;
            count(wb.retryReasons, error.kind);
            continue;
          }
          let reason = errorName(error);
          if (error instanceof BeforeResponse) {
            reason = retried
              ? `retry on a fresh connection: ${error.kind} before response`
              : `${error.kind} before response on a fresh connection`;
          } else if (error instanceof ClientTimeout) reason = "timeout";
          wb.failed++;
          count(wb.failures, reason);
          if (wb.failureSamples.length < FAILURE_SAMPLES) {
            wb.failureSamples.push(
              `${label} after ${Math.round(performance.now() - started)} ms (${
                fresh ? "fresh" : "reused"
              } connection${retried ? ", retried" : ""}): ${
                error instanceof Error ? error.message : String(error)
              }`,
            );
          }
          // Back off, as a client would (and no busy loop if the server died).
          await sleep(FAILURE_BACKOFF_MS, run.stop);
          break;
        }
      }
    }
  } finally {
    session?.close();
  }
}

/** How one hostile attack ended. */
type Outcome = "done" | "cut" | "capped" | "stopped";

/**
 * The connections of one attack: closed when it ends, when its cap passes
 * (`capped`) or when the run stops (`stopped`).
 */
class Scope {
  readonly run: Run;
  readonly stats: HostileStats;
  readonly #controller = new AbortController();
  readonly #conns = new Set<Deno.Conn>();
  why: "capped" | "stopped" | undefined;

  constructor(run: Run, stats: HostileStats) {
    this.run = run;
    this.stats = stats;
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  async connect(): Promise<Deno.TcpConn> {
    if (this.signal.aborted) throw this.signal.reason;
    const conn = await connectWithin(this.run.port, CLIENT_TIMEOUT_MS);
    this.stats.connections++;
    if (this.signal.aborted) {
      closeQuietly(conn);
      throw this.signal.reason;
    }
    this.#conns.add(conn);
    this.run.hostileOpen++;
    this.run.hostileOpenPeak = Math.max(
      this.run.hostileOpenPeak,
      this.run.hostileOpen,
    );
    return conn;
  }

  close(conn: Deno.Conn): void {
    if (this.#conns.delete(conn)) this.run.hostileOpen--;
    closeQuietly(conn);
  }

  end(why: "capped" | "stopped" | undefined): void {
    this.why ??= why;
    this.#controller.abort(new Error(`attack ${why ?? "ended"}`));
    for (const conn of this.#conns) this.close(conn);
  }
}

/** Runs an attack with a cap; maps the ways it can end to an outcome. */
async function attack(
  run: Run,
  stats: HostileStats,
  capMs: number,
  body: (scope: Scope) => Promise<Outcome>,
): Promise<Outcome> {
  const scope = new Scope(run, stats);
  const timer = setTimeout(() => scope.end("capped"), capMs);
  const onStop = () => scope.end("stopped");
  run.stop.addEventListener("abort", onStop, { once: true });
  try {
    if (run.stop.aborted) return "stopped";
    const outcome = await body(scope);
    return scope.why ?? outcome;
  } catch (error) {
    if (scope.why !== undefined) return scope.why;
    throw error;
  } finally {
    clearTimeout(timer);
    run.stop.removeEventListener("abort", onStop);
    scope.end(undefined);
  }
}

/** Resolves when the peer closes or resets `conn` (or it is closed here). */
function whenClosed(conn: Deno.Conn): Promise<void> {
  return (async () => {
    const buf = new Uint8Array(4096);
    try {
      while (await conn.read(buf) !== null) {
        // Whatever the server says (a 408) is dropped.
      }
    } catch {
      // A reset, or closed here.
    }
  })();
}

const ATTACKS: Record<
  HostileKind,
  (scope: Scope, rand: () => number) => Promise<Outcome>
> = {
  async reset(scope, rand) {
    const conn = await scope.connect();
    // Written meanwhile: the server has a megabyte to send back.
    const writing = writeAll(conn, scope.run.requests.huge).catch(() => {});
    if (rand() < 2 / 3) {
      // Once the response flows, close in the middle of it: the unread
      // bytes make the kernel send a reset to a server that is writing.
      await conn.read(new Uint8Array(1));
    }
    scope.close(conn);
    await writing;
    return "done";
  },

  async halfclose(scope, rand) {
    const conn = await scope.connect();
    const { requests } = scope.run;
    await writeAll(
      conn,
      rand() < 0.5 ? requests.small(0).request : requests.partial,
    );
    await conn.closeWrite();
    await sleep(1000 + rand() * 4000, scope.signal);
    return "done";
  },

  async neverread(scope) {
    const conn = await scope.connect();
    const { target, requests } = scope.run;
    for (let i = 0; i < MAX_WRITES; i++) {
      try {
        await writeAll(conn, requests.big);
      } catch (error) {
        if (scope.signal.aborted) throw error;
        return "cut";
      }
      // HTTP requests are small: pace them; echo lines fill buffers anyway.
      if (target === "http" && !await sleep(20, scope.signal)) return "done";
    }
    return "done";
  },

  async slowloris(scope, rand) {
    const conn = await scope.connect();
    let closed = false;
    whenClosed(conn).then(() => closed = true);
    const byte = encoder.encode("x");
    try {
      await writeAll(conn, scope.run.requests.slowStart);
      for (let i = 0; i < MAX_WRITES && !closed; i++) {
        if (!await sleep(200 + rand() * 300, scope.signal)) return "done";
        if (closed) break;
        await writeAll(conn, byte);
      }
    } catch (error) {
      if (scope.signal.aborted) throw error;
    }
    return "cut";
  },

  async silent(scope) {
    const conn = await scope.connect();
    await whenClosed(conn);
    return "cut";
  },

  async vanish(scope) {
    scope.close(await scope.connect());
    return "done";
  },

  async burst(scope) {
    const { run, stats } = scope;
    run.burstRunning = true;
    run.lastBurst = performance.now();
    try {
      await Promise.all(
        Array.from({ length: BURST_SIZE }, async (_, i) => {
          const wants = i % 2 === 1;
          try {
            const conn = await scope.connect();
            const exchange = run.requests.small(i);
            await writeAll(conn, exchange.request);
            if (!wants) {
              scope.close(conn);
              return;
            }
            await exchange.check(new Reader(conn));
            stats.answered++;
            scope.close(conn);
          } catch (error) {
            if (scope.signal.aborted) return;
            if (wants) stats.unanswered++;
            else stats.errors++;
            if (run.hostileErrorSamples.length < FAILURE_SAMPLES) {
              run.hostileErrorSamples.push(
                `burst connection ${i}: ${
                  error instanceof Error ? error.message : String(error)
                }`,
              );
            }
          }
        }),
      );
    } finally {
      run.burstRunning = false;
    }
    return "done";
  },
};

const CAPS: Record<HostileKind, number> = {
  reset: CLIENT_TIMEOUT_MS,
  halfclose: CLIENT_TIMEOUT_MS,
  neverread: HOSTILE_CAP_MS,
  slowloris: HOSTILE_CAP_MS,
  silent: HOSTILE_CAP_MS,
  vanish: CLIENT_TIMEOUT_MS,
  burst: CLIENT_TIMEOUT_MS,
};

function pick(run: Run, rand: () => number): HostileKind {
  const now = performance.now();
  const burstOk = !run.burstRunning &&
    now - run.startedAt >= BURST_FIRST_MS &&
    now - run.lastBurst >= BURST_GAP_MS;
  const kinds = HOSTILE_KINDS.filter((k) => k !== "burst" || burstOk);
  let total = 0;
  for (const k of kinds) total += WEIGHTS[k];
  let r = rand() * total;
  for (const k of kinds) {
    r -= WEIGHTS[k];
    if (r < 0) return k;
  }
  return kinds.at(-1)!;
}

async function hostileWorker(run: Run, index: number): Promise<void> {
  const rand = prng(subSeed(run.seed, 5000 + index));
  if (!await sleep(rand() * 500, run.stop)) return;
  // At least 20 ms between attacks: this many fit in the run.
  const most = Math.ceil(run.seconds * 1000 / 20);
  for (let i = 0; i < most && !run.stop.aborted; i++) {
    const kind = pick(run, rand);
    const stats = run.hostile[kind];
    stats.runs++;
    run.hostileActive++;
    run.hostilePeak = Math.max(run.hostilePeak, run.hostileActive);
    try {
      stats[
        await attack(run, stats, CAPS[kind], (s) => ATTACKS[kind](s, rand))
      ]++;
    } catch (error) {
      stats.errors++;
      if (run.hostileErrorSamples.length < FAILURE_SAMPLES) {
        run.hostileErrorSamples.push(
          `${kind}: ${error instanceof Error ? error.message : String(error)}`,
        );
      }
    } finally {
      run.hostileActive--;
    }
    await sleep(20 + rand() * 230, run.stop);
  }
}

/**
 * One client of the pool flood: from {@linkcode FLOOD_ADDRESS}, the start of
 * a request, then a byte every 1-3 s; reconnects whenever it is cut.
 */
async function floodClient(run: Run, index: number): Promise<void> {
  const rand = prng(subSeed(run.seed, 9000 + index));
  const start = run.requests.slowStart;
  const most = Math.ceil(run.seconds * 1000);
  for (let i = 0; i < most && !run.stop.aborted; i++) {
    let socket: net.Socket;
    try {
      socket = await new Promise<net.Socket>((resolve, reject) => {
        const s = net.connect({
          host: HOST,
          port: run.port,
          localAddress: FLOOD_ADDRESS,
        });
        s.once("connect", () => resolve(s));
        s.once("error", reject);
      });
    } catch {
      run.flood.errors++;
      if (!await sleep(100, run.stop)) return;
      continue;
    }
    run.flood.connections++;
    let text = "";
    const cut = new Promise<void>((resolve) => {
      socket.on("data", (chunk: Uint8Array) => {
        if (text.length < 16) text += decoder.decode(chunk.subarray(0, 16));
      });
      socket.on("error", () => resolve());
      socket.on("end", () => resolve());
      socket.on("close", () => resolve());
    });
    let ended = false;
    cut.then(() => ended = true);
    socket.write(start);
    while (!ended && !run.stop.aborted) {
      const tick = sleep(1000 + rand() * 2000, run.stop);
      await Promise.race([tick, cut]);
      if (ended || run.stop.aborted) break;
      socket.write("x");
    }
    if (ended && !run.stop.aborted) {
      run.flood.cut++;
      if (text.startsWith("HTTP/1.1 408")) run.flood.got408++;
    }
    const closed = new Promise<void>((resolve) =>
      socket.once("close", resolve)
    );
    socket.destroy();
    await closed;
  }
}

function quantile(sorted: Float64Array, p: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.ceil(p * sorted.length) - 1;
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank))]!;
}

/** Runs the load for `seconds` and reports. */
export async function runClients(
  target: SoakTarget,
  port: number,
  seconds: number,
  seed: number,
  flood = 0,
): Promise<ClientsReport> {
  const stop = new AbortController();
  const emptyHostile = (): HostileStats => ({
    runs: 0,
    connections: 0,
    done: 0,
    cut: 0,
    capped: 0,
    stopped: 0,
    errors: 0,
    answered: 0,
    unanswered: 0,
  });
  const run: Run = {
    target,
    port,
    seed,
    seconds,
    stop: stop.signal,
    startedAt: performance.now(),
    wb: {
      clients: WELL_BEHAVED,
      served: 0,
      failed: 0,
      failures: {},
      failureSamples: [],
      retries: 0,
      retryReasons: {},
      connections: 0,
      bytes: 0,
      p50Ms: null,
      p99Ms: null,
      maxMs: null,
      slotWaitP50Ms: null,
      slotWaitP99Ms: null,
      slotWaitMaxMs: null,
    },
    latencies: [],
    slotWaits: [],
    flood: { clients: flood, connections: 0, cut: 0, got408: 0, errors: 0 },
    hostile: Object.fromEntries(
      HOSTILE_KINDS.map((k) => [k, emptyHostile()]),
    ) as Record<HostileKind, HostileStats>,
    hostileActive: 0,
    hostilePeak: 0,
    hostileOpen: 0,
    hostileOpenPeak: 0,
    hostileErrorSamples: [],
    requests: hostileRequests(target),
    burstRunning: false,
    lastBurst: -Infinity,
  };
  const progress = setInterval(() => {
    const line: ClientsProgress = {
      event: "progress",
      t: Math.round((performance.now() - run.startedAt) / 100) / 10,
      served: run.wb.served,
      failed: run.wb.failed,
      retries: run.wb.retries,
      hostileActive: run.hostileActive,
      hostileConnections: run.hostileOpen,
    };
    console.log(JSON.stringify(line));
  }, PROGRESS_EVERY_MS);
  const timer = setTimeout(() => stop.abort(), seconds * 1000);
  let stoppedAt = 0;
  stop.signal.addEventListener("abort", () => stoppedAt = performance.now());
  try {
    await Promise.all([
      ...Array.from({ length: WELL_BEHAVED }, (_, i) => wellBehaved(run, i)),
      ...Array.from({ length: HOSTILE_MAX }, (_, i) => hostileWorker(run, i)),
      ...Array.from({ length: flood }, (_, i) => floodClient(run, i)),
    ]);
  } finally {
    clearTimeout(timer);
    clearInterval(progress);
    stop.abort();
  }
  const end = performance.now();
  const sorted = Float64Array.from(run.latencies).sort();
  run.wb.p50Ms = quantile(sorted, 0.5);
  run.wb.p99Ms = quantile(sorted, 0.99);
  run.wb.maxMs = sorted.length === 0 ? null : sorted[sorted.length - 1]!;
  const waits = Float64Array.from(run.slotWaits).sort();
  run.wb.slotWaitP50Ms = quantile(waits, 0.5);
  run.wb.slotWaitP99Ms = quantile(waits, 0.99);
  run.wb.slotWaitMaxMs = waits.length === 0 ? null : waits[waits.length - 1]!;
  let hostileConnections = 0;
  for (const k of HOSTILE_KINDS) {
    hostileConnections += run.hostile[k].connections;
  }
  return {
    event: "result",
    target,
    seed,
    loadSeconds: (stoppedAt - run.startedAt) / 1000,
    windDownSeconds: (end - stoppedAt) / 1000,
    wellBehaved: run.wb,
    hostile: run.hostile,
    hostileConnections,
    hostilePeak: run.hostilePeak,
    hostileConnectionsPeak: run.hostileOpenPeak,
    hostileErrorSamples: run.hostileErrorSamples,
    flood: run.flood,
  };
}

async function main(): Promise<void> {
  const { target, port, seconds, seed, flood } = parseArgs(
    Deno.args,
    {
      target: choice(["echo", "http"] as const),
      port: PORT,
      seconds: SECONDS,
      seed: integer(0, 2 ** 32 - 1),
      flood: integer(0, 100_000),
    },
    { target: "echo", port: 0, seconds: 0, seed: 1, flood: 0 },
    {
      required: ["target", "port", "seconds"],
    },
  );
  const limit = seconds + CLIENT_TIMEOUT_MS / 1000 + 20;
  const hardStop = setTimeout(() => {
    console.error(`_soak_clients: hard stop after ${limit} s`);
    Deno.exit(3);
  }, limit * 1000);
  try {
    console.log(
      JSON.stringify(await runClients(target, port, seconds, seed, flood)),
    );
  } finally {
    clearTimeout(hardStop);
  }
}

if (import.meta.main) {
  await main();
}
