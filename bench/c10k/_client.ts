/**
 * Load client for `bench/c10k/c10k.ts`, controlled over stdin/stdout lines. It
 * holds many idle connections to one echo server on 127.0.0.1 and measures
 * the latency of a few more, active ones.
 *
 * Usage: `deno run --allow-net bench/c10k/_client.ts --port P`
 *
 * Commands (one per stdin line; each answers one stdout line, `@c10k ok
 * <json>` or `@c10k error <message>`):
 * - `open N BATCH`: opens N more connections, BATCH connects at a time, and
 *   proves each alive with one 64-byte round trip (the echo must match);
 *   keeps them open and idle. Answers {@linkcode OpenResult}.
 * - `verify BATCH`: one more round trip on every open connection, BATCH at a
 *   time. Answers {@linkcode VerifyResult}.
 * - `latency COUNT WARMUP [ACTIVE]`: on ACTIVE (default 1) extra
 *   connections at once, each doing WARMUP then COUNT sequential 64-byte
 *   round trips (ping-pong: the next message when the echo is back; all
 *   connections finish their warm-up before any counts); closes them.
 *   Answers {@linkcode LatencyResult} (microseconds, over all of them).
 * - `close`: closes every open connection. Answers `{ "closed": n }`.
 * - `quit`: exits.
 *
 * Every connect and round trip has a timeout; the client exits when stdin
 * ends (the orchestrator is gone).
 *
 * @module
 */

import { integer, parseArgs } from "../_common/args.ts";

/** Answer of `open`. */
export interface OpenResult {
  /** Connections opened and proved alive by this command. */
  opened: number;
  /** Connects or round trips that failed or timed out. */
  failed: number;
  /** Open connections now, in all. */
  open: number;
  /** Wall time of the command. */
  ms: number;
  /** The first failure, if any. */
  firstError?: string;
}

/** Answer of `verify`. */
export interface VerifyResult {
  alive: number;
  dead: number;
  ms: number;
  firstError?: string;
}

/** Answer of `latency`, in microseconds. */
export interface LatencyResult {
  /** Active connections the round trips ran on, at the same time. */
  connections: number;
  /** Round trips counted, on all of them. */
  count: number;
  p50: number;
  p90: number;
  p99: number;
  mean: number;
  min: number;
  max: number;
}

const PING_SIZE = 64;
const CONNECT_TIMEOUT_MS = 10_000;
const ROUND_TRIP_TIMEOUT_MS = 10_000;

const { port } = parseArgs(Deno.args, { port: integer(1, 65535) }, {
  port: 0,
}, { required: ["port"] });

const open: Deno.TcpConn[] = [];

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

/** Rejects with a timeout error after `ms` unless `promise` settles first. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what} timed out after ${ms} ms`)),
      ms,
    );
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
}

async function readFull(conn: Deno.Conn, buf: Uint8Array): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const n = await conn.read(buf.subarray(off));
    if (n === null) throw new Deno.errors.UnexpectedEof("the server closed");
    off += n;
  }
}

/** A 64-byte message that names connection `id`, so echoes are checked. */
function message(id: number): Uint8Array {
  const bytes = new Uint8Array(PING_SIZE).fill(0x2e);
  const tag = new TextEncoder().encode(`c10k ${id} `);
  bytes.set(tag);
  bytes[PING_SIZE - 1] = 0x0a;
  return bytes;
}

/** One checked round trip; on failure the connection is closed. */
async function roundTrip(conn: Deno.Conn, id: number): Promise<void> {
  const out = message(id);
  const back = new Uint8Array(PING_SIZE);
  try {
    await within(
      (async () => {
        await writeAll(conn, out);
        await readFull(conn, back);
      })(),
      ROUND_TRIP_TIMEOUT_MS,
      "round trip",
    );
  } catch (error) {
    closeQuietly(conn);
    throw error;
  }
  for (let i = 0; i < PING_SIZE; i++) {
    if (back[i] !== out[i]) {
      closeQuietly(conn);
      throw new Error(`connection ${id}: the echo differs at byte ${i}`);
    }
  }
}

async function connect(): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port,
    signal: AbortSignal.timeout(CONNECT_TIMEOUT_MS),
  });
  conn.setNoDelay(true);
  return conn;
}

/** Runs `job(i)` for i in [0, n), `batch` at a time. */
async function inBatches(
  n: number,
  batch: number,
  job: (i: number) => Promise<void>,
): Promise<{ ok: number; failed: number; firstError?: string }> {
  let ok = 0;
  let failed = 0;
  let firstError: string | undefined;
  for (let from = 0; from < n; from += batch) {
    const to = Math.min(n, from + batch);
    const jobs = [];
    for (let i = from; i < to; i++) jobs.push(job(i));
    for (const result of await Promise.allSettled(jobs)) {
      if (result.status === "fulfilled") {
        ok++;
      } else {
        failed++;
        firstError ??= String(result.reason);
      }
    }
  }
  return firstError === undefined ? { ok, failed } : { ok, failed, firstError };
}

async function openMany(n: number, batch: number): Promise<OpenResult> {
  const start = performance.now();
  const base = open.length;
  const { ok, failed, firstError } = await inBatches(n, batch, async (i) => {
    const conn = await connect();
    await roundTrip(conn, base + i);
    open.push(conn);
  });
  const result: OpenResult = {
    opened: ok,
    failed,
    open: open.length,
    ms: Math.round(performance.now() - start),
  };
  if (firstError !== undefined) result.firstError = firstError;
  return result;
}

async function verify(batch: number): Promise<VerifyResult> {
  const start = performance.now();
  const conns = [...open];
  const dead = new Set<Deno.TcpConn>();
  const { ok, failed, firstError } = await inBatches(
    conns.length,
    batch,
    async (i) => {
      try {
        await roundTrip(conns[i]!, i);
      } catch (error) {
        dead.add(conns[i]!);
        throw error;
      }
    },
  );
  if (dead.size > 0) {
    open.splice(0, open.length, ...open.filter((c) => !dead.has(c)));
  }
  const result: VerifyResult = {
    alive: ok,
    dead: failed,
    ms: Math.round(performance.now() - start),
  };
  if (firstError !== undefined) result.firstError = firstError;
  return result;
}

function percentile(sorted: Float64Array, p: number): number {
  // Nearest rank.
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

async function latency(
  count: number,
  warmup: number,
  active: number,
): Promise<LatencyResult> {
  const conns: Deno.TcpConn[] = [];
  try {
    for (let c = 0; c < active; c++) conns.push(await connect());
    const samples = new Float64Array(count * active);
    const run = async (c: number, rounds: number, counted: boolean) => {
      const conn = conns[c]!;
      const out = message(-1 - c);
      const back = new Uint8Array(PING_SIZE);
      for (let i = 0; i < rounds; i++) {
        const t0 = performance.now();
        await writeAll(conn, out);
        await readFull(conn, back);
        if (counted) samples[c * count + i] = (performance.now() - t0) * 1000;
      }
      for (let i = 0; i < PING_SIZE; i++) {
        if (back[i] !== out[i]) throw new Error("the echo differs");
      }
    };
    const all = (rounds: number, counted: boolean) =>
      Promise.all(conns.map((_, c) => run(c, rounds, counted)));
    await within(
      (async () => {
        if (warmup > 0) await all(warmup, false);
        await all(count, true);
      })(),
      ROUND_TRIP_TIMEOUT_MS + (count + warmup) * active * 10,
      "latency run",
    );
    samples.sort();
    let sum = 0;
    for (const s of samples) sum += s;
    const round = (x: number) => Math.round(x * 10) / 10;
    const total = samples.length;
    return {
      connections: active,
      count: total,
      p50: round(percentile(samples, 50)),
      p90: round(percentile(samples, 90)),
      p99: round(percentile(samples, 99)),
      mean: round(sum / total),
      min: round(samples[0]!),
      max: round(samples[total - 1]!),
    };
  } finally {
    for (const conn of conns) closeQuietly(conn);
  }
}

function closeAll(): { closed: number } {
  const closed = open.length;
  for (const conn of open) closeQuietly(conn);
  open.length = 0;
  return { closed };
}

function positive(raw: string | undefined, what: string): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) {
    throw new RangeError(`${what} must be a non-negative integer: ${raw}`);
  }
  return n;
}

async function run(line: string): Promise<unknown> {
  const [cmd, a, b, c] = line.split(/\s+/);
  switch (cmd) {
    case "open":
      return await openMany(
        positive(a, "N"),
        Math.max(1, positive(b ?? "200", "BATCH")),
      );
    case "verify":
      return await verify(Math.max(1, positive(a ?? "200", "BATCH")));
    case "latency":
      return await latency(
        Math.max(1, positive(a ?? "2000", "COUNT")),
        positive(b ?? "200", "WARMUP"),
        Math.max(1, positive(c ?? "1", "ACTIVE")),
      );
    case "close":
      return closeAll();
    default:
      throw new TypeError(`unknown command '${line}'`);
  }
}

const encoder = new TextEncoder();
/**
 * Prints a line of the control protocol. The `@c10k ` mark lets the
 * orchestrator find it among other output on stdout (V8's `--trace-gc`
 * writes there, through a buffer that may end mid-line).
 */
function say(line: string): void {
  const bytes = encoder.encode(`@c10k ${line}\n`);
  let off = 0;
  while (off < bytes.length) off += Deno.stdout.writeSync(bytes.subarray(off));
}

const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
let pending = "";
outer: for await (const chunk of lines) {
  pending += chunk;
  let nl;
  while ((nl = pending.indexOf("\n")) >= 0) {
    const line = pending.slice(0, nl).trim();
    pending = pending.slice(nl + 1);
    if (line === "") continue;
    if (line === "quit") break outer;
    try {
      say(`ok ${JSON.stringify(await run(line))}`);
    } catch (error) {
      say(`error ${String(error).replaceAll("\n", " ")}`);
    }
  }
}
closeAll();
Deno.exit(0);
