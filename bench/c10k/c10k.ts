/**
 * C10k: memory per idle connection, and per-call latency with 10,000 idle
 * connections, of this library's echo server against a raw `Deno.Conn` one.
 *
 * Each server (`_server.ts --kind evthread|raw`) and the client
 * (`_client.ts`) run in their own process, on 127.0.0.1 only. Per run:
 *
 * 1. start the server; a warm-up (200 connections opened, one round trip
 *    each, closed; then one latency run as in 2, not counted) so that the
 *    accept and echo paths are compiled and one-time allocations are made
 *    before anything is measured;
 * 2. latency with 0 idle connections: on each count of `--active` extra
 *    connections (default 1, then 10 at once), each doing 200 warm-up then
 *    2,000 sequential 64-byte round trips (ping-pong); median and p99 over
 *    all of them; twice in a row, the first as an A/A control of the
 *    latency ratio (first / second);
 * 3. baseline: the server's RSS, heap and external memory after forced GC,
 *    with 0 connections;
 * 4. open N connections (batches of 200 connects), each proved alive by one
 *    64-byte round trip, and left idle;
 * 5. the server's memory after forced GC with N connections; per connection
 *    = (with N - baseline) / N;
 * 6. latency with N idle connections, as in 2; the target is on p99:
 *    with N idle / with none, per run, then the median over rounds;
 * 7. one more round trip on each idle connection (all must still be alive);
 *    close all; stop the server.
 *
 * Rounds interleave the kinds (evthread, raw, evthread, raw, ...); the table
 * reports medians over rounds, and where the bytes per connection go (V8's
 * heap, used and resident, its young generation, ArrayBuffer backing stores,
 * the rest).
 *
 * Bytes per idle connection are counted with V8's young generation
 * excluded: ((RSS - young) with N idle - (RSS - young) with 0) / N, both
 * after forced GC, where young = resident `new_space` +
 * `new_large_object_space` (V8's heap space statistics). The young
 * generation is a size V8 picks from the allocation rate, not a
 * per-connection cost; both servers run under the same V8 flags, a fixed
 * semi-space (`--min-semi-space-size=1 --max-semi-space-size=1`, MB;
 * `--semi-space MB`, 0 for V8's own sizing), so that it cannot grow much
 * between the two states, and what it grows is subtracted (as `../ab.ts`
 * does). RSS alone is reported beside it. The targets of issue 12: at most
 * 2 KiB per idle connection above the raw server, and latency with N idle
 * within 1.2x of that with none.
 *
 * By default both processes are pinned (`taskset`) to the last core: a round
 * trip is then two context switches and the two processes' work. Unpinned,
 * or on two cores, the wake-up of the other core (about 50 µs on this VM,
 * and erratic) dominates and hides the server's own per-call cost.
 *
 * `--breakdown N` runs, instead, one server of each kind with 0 and then N
 * idle connections, takes a heap snapshot of each state (after forced GC,
 * through `node:v8`'s `writeHeapSnapshot`, into `bench/results/`, deleted
 * afterwards) and prints what one connection adds, by object kind
 * (constructor, closure, ...), for each server and evthread minus raw.
 * Writes `bench/results/c10k_breakdown.json`.
 *
 * Usage (10,000 connections need a soft fd limit above 10,000 in both
 * processes: `bash bench/c10k/c10k.sh [options]` raises it first):
 * ```sh
 * deno run --allow-net --allow-run --allow-read --allow-env \
 *   --allow-write=bench/results bench/c10k/c10k.ts [--connections 10000] \
 *   [--rounds 3] [--buffer 4096] [--batch 200] [--latency-count 2000] \
 *   [--latency-warmup 200] [--kinds evthread,raw] [--active 1,10] \
 *   [--semi-space 1] [--pin none|S,C] [--io-timeout 30000] [--cap 900] \
 *   [--breakdown N]
 * ```
 * `--cap` bounds the whole run, in seconds: when it passes, the children are
 * killed and the runs left are skipped. Writes `bench/results/c10k.json`.
 *
 * @module
 */

import type { LatencyResult, OpenResult, VerifyResult } from "./_client.ts";
import type { ServerStats } from "./_server.ts";
import {
  benchPath,
  commandOutput,
  type Flag,
  formatRatio,
  formatSpread,
  integer,
  list,
  loadavg,
  machineInfo,
  median,
  parseArgs,
  pinned,
  ROUNDS,
  saveResults,
  type Spread,
  spread,
  tasksetWorks,
  toJson,
  versionLines,
} from "../_common/mod.ts";

/** A server kind: this library's echo server, or a raw `Deno.Conn` one. */
export type Kind = "evthread" | "raw";
const KINDS: readonly Kind[] = ["evthread", "raw"];
const TARGET_BYTES = 2048;
const TARGET_RATIO = 1.2;
const WARMUP_CONNECTIONS = 200;
const STARTUP_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 5_000;

/** The options of a C10K run (`--connections`, `--rounds`, ...). */
export interface Options {
  connections: number;
  rounds: number;
  buffer: number;
  batch: number;
  latencyCount: number;
  latencyWarmup: number;
  kinds: Kind[];
  /** Active connections of the latency runs, one run per count. */
  active: number[];
  /** Total time cap, in seconds. */
  cap: number;
  /** The server's recv/send timeout (evthread), in ms. */
  ioTimeout: number;
  /**
   * Both servers' V8 semi-space, in MB (`--min-semi-space-size` and
   * `--max-semi-space-size`); 0: V8's own sizing, no flags.
   */
  semiSpace: number;
  /**
   * Instead of the benchmark: heap snapshots of each server with 0 and
   * with this many idle connections, diffed by object kind. 0: off.
   */
  breakdown: number;
  /**
   * Cores to pin the server and the client to (`taskset`), or none;
   * undefined: both on the last core when `taskset` is there.
   */
  pin: [number, number] | null | undefined;
}

/** The defaults of {@linkcode Options}. */
export const DEFAULT_OPTIONS: Readonly<Options> = {
  connections: 10_000,
  rounds: 3,
  buffer: 4096,
  batch: 200,
  latencyCount: 2000,
  latencyWarmup: 200,
  kinds: [...KINDS],
  active: [1, 10],
  cap: 900,
  ioTimeout: 30_000,
  semiSpace: 1,
  breakdown: 0,
  pin: undefined,
};

/** `--active 1,10`: a comma-separated list of positive integers. */
const COUNTS: Flag<number[]> = {
  value: "N,N",
  parse(raw, flag) {
    const counts = raw.split(",").map(Number);
    if (!counts.every((c) => Number.isInteger(c) && c >= 1 && c <= 1000)) {
      throw new RangeError(
        `'${flag}' must list integers in [1, 1000]: received '${raw}'`,
      );
    }
    return [...new Set(counts)];
  },
};

/** `--pin none|SERVER,CLIENT`. */
const PIN_CORES: Flag<[number, number] | null | undefined> = {
  value: "none|S,C",
  parse(raw, flag) {
    if (raw === "none") return null;
    const cores = raw.split(",").map(Number);
    if (
      cores.length !== 2 || !cores.every((c) => Number.isInteger(c) && c >= 0)
    ) {
      throw new TypeError(
        `'${flag}' must be none or SERVER,CLIENT: received '${raw}'`,
      );
    }
    return [cores[0]!, cores[1]!];
  },
};

function parseOptions(args: string[]): Options {
  return parseArgs(
    args,
    {
      connections: integer(1),
      rounds: ROUNDS,
      buffer: integer(1),
      batch: integer(1),
      latencyCount: integer(1),
      latencyWarmup: integer(0),
      kinds: list(KINDS),
      active: COUNTS,
      cap: integer(1),
      ioTimeout: integer(1),
      semiSpace: integer(0, 1024),
      breakdown: integer(0),
      pin: PIN_CORES,
    },
    {
      ...DEFAULT_OPTIONS,
      kinds: [...DEFAULT_OPTIONS.kinds],
      active: [...DEFAULT_OPTIONS.active],
    },
    {
      usage: "deno task bench:c10k [options]   (bash bench/c10k/c10k.sh)",
    },
  );
}

/**
 * Both processes on the last core when `--pin` is not given and `taskset`
 * runs (see main()); the pin otherwise.
 */
export async function defaultPin(
  pin: Options["pin"],
): Promise<[number, number] | null> {
  if (pin !== undefined) return pin;
  const last = navigator.hardwareConcurrency - 1;
  if (await tasksetWorks()) return [last, last];
  console.error(
    "not pinned: taskset is missing or fails; install util-linux to pin",
  );
  return null;
}

/** The V8 flags that fix the semi-space at `mb` MB (none for 0). */
export function semiSpaceFlags(mb: number): string[] {
  return mb === 0
    ? []
    : [`--min-semi-space-size=${mb}`, `--max-semi-space-size=${mb}`];
}

/** What runs a server: another copy of `_server.ts`, more V8 flags. */
export interface ServerSpec {
  /** The server script (default: `_server.ts` beside this file). */
  script?: string;
  /**
   * V8 flags besides `--expose-gc` (default: the semi-space flags of
   * `opts.semiSpace`).
   */
  v8Flags?: readonly string[];
  /** A label for messages (default: the kind). */
  label?: string;
}

// ------------------------------------------------------------ processes

/** Every child spawned; killed on error, on SIGINT and at the time cap. */
const children = new Set<Deno.ChildProcess>();

/** Kills (SIGKILL) every server and client this module has started. */
export function killChildren(): void {
  for (const child of children) kill(child, "SIGKILL");
}

function kill(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    child.kill(signal);
  } catch {
    // Already exited.
  }
}

const SERVER_SCRIPT = benchPath("./c10k/_server.ts");
const CLIENT_SCRIPT = benchPath("./c10k/_client.ts");

/** What starts the children's protocol lines on stdout. */
const PROTOCOL_MARK = "@c10k ";

/** A child process spoken to in lines over stdin/stdout. */
class Controlled {
  readonly name: string;
  readonly #child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #reader: ReadableStreamDefaultReader<string>;
  #buffered = "";
  #status: Promise<Deno.CommandStatus>;
  #exited = false;

  constructor(name: string, core: number | undefined, args: string[]) {
    this.name = name;
    const [cmd, cmdArgs] = pinned(core, Deno.execPath(), args);
    this.#child = new Deno.Command(cmd, {
      args: cmdArgs,
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    children.add(this.#child);
    this.#status = this.#child.status;
    this.#status.then(() => {
      this.#exited = true;
      children.delete(this.#child);
    });
    this.#writer = this.#child.stdin.getWriter();
    this.#reader = this.#child.stdout.pipeThrough(new TextDecoderStream())
      .getReader();
  }

  /** The next stdout line, within `ms`. */
  async line(ms: number, what: string): Promise<string> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(new Error(`${this.name}: no answer to ${what} in ${ms} ms`)),
        ms,
      );
    });
    try {
      while (true) {
        const nl = this.#buffered.indexOf("\n");
        if (nl >= 0) {
          const line = this.#buffered.slice(0, nl).trim();
          this.#buffered = this.#buffered.slice(nl + 1);
          const at = line.indexOf(PROTOCOL_MARK);
          if (at >= 0) {
            const before = line.slice(0, at).trim();
            if (before !== "") console.error(`[${this.name}] ${before}`);
            return line.slice(at + PROTOCOL_MARK.length);
          }
          // Not ours (V8's --trace-gc, say, writes to stdout): pass it on.
          if (line !== "") console.error(`[${this.name}] ${line}`);
          continue;
        }
        const chunk = await Promise.race([this.#reader.read(), timeout]);
        if (chunk.done) {
          throw new Error(`${this.name} exited (waiting for ${what})`);
        }
        this.#buffered += chunk.value;
      }
    } finally {
      clearTimeout(timer);
    }
  }

  async send(line: string): Promise<void> {
    await this.#writer.write(new TextEncoder().encode(line + "\n"));
  }

  /** Sends a command and returns its answer line, within `ms`. */
  async ask(line: string, ms: number): Promise<string> {
    await this.send(line);
    return await this.line(ms, `'${line}'`);
  }

  /**
   * Asks to quit (and closes stdin, which makes the child exit too); then
   * SIGTERM, then SIGKILL if it still runs.
   */
  async stop(): Promise<void> {
    if (!this.#exited) {
      try {
        await this.send("quit");
      } catch {
        // Its stdin is gone: it is exiting.
      }
    }
    try {
      await this.#writer.close();
    } catch {
      // Already closed.
    }
    for (const next of ["SIGTERM", "SIGKILL", undefined] as const) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timedOut = new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), STOP_TIMEOUT_MS);
      });
      const first = await Promise.race([this.#status, timedOut]);
      clearTimeout(timer);
      if (first !== "timeout" || next === undefined) break;
      console.error(`${this.name}: still running; sending ${next}`);
      kill(this.#child, next);
    }
    try {
      await this.#reader.cancel();
    } catch {
      // Already closed.
    }
  }
}

class ServerChild extends Controlled {
  port = 0;

  static async start(
    kind: Kind,
    opts: Options,
    allowWrite?: string,
    spec: ServerSpec = {},
  ): Promise<ServerChild> {
    const label = spec.label ?? kind;
    const v8Flags = [
      "--expose-gc",
      ...(spec.v8Flags ?? semiSpaceFlags(opts.semiSpace)),
    ];
    const server = new ServerChild(`${label} server`, opts.pin?.[0], [
      "run",
      "--no-prompt",
      "--allow-net",
      ...(allowWrite === undefined ? [] : [`--allow-write=${allowWrite}`]),
      `--v8-flags=${v8Flags.join(",")}`,
      spec.script ?? SERVER_SCRIPT,
      "--kind",
      kind,
      "--buffer",
      String(opts.buffer),
      "--capacity",
      String(opts.connections + WARMUP_CONNECTIONS + 64),
      "--timeout",
      String(opts.ioTimeout),
    ]);
    try {
      const line = await server.line(STARTUP_TIMEOUT_MS, "its port");
      const match = /^listening (\d+)$/.exec(line);
      if (match === null) {
        throw new Error(
          `${label} server: expected 'listening <port>': ${line}`,
        );
      }
      server.port = Number(match[1]);
      return server;
    } catch (error) {
      await server.stop();
      throw error;
    }
  }

  /** Writes a heap snapshot to `path`; answers the stats from just before. */
  async snapshot(path: string): Promise<ServerStats> {
    const line = await this.ask(`snapshot ${path}`, 300_000);
    if (!line.startsWith("snapshot {")) {
      throw new Error(`${this.name}: snapshot failed: ${line}`);
    }
    return JSON.parse(line.slice("snapshot ".length)) as ServerStats;
  }

  async stats(): Promise<ServerStats> {
    const line = await this.ask("stats", 30_000);
    if (!line.startsWith("stats ")) {
      throw new Error(`${this.name}: bad stats answer: ${line}`);
    }
    const stats = JSON.parse(line.slice("stats ".length)) as ServerStats;
    if (!stats.gc) {
      throw new Error(`${this.name}: gc() is missing (needs --expose-gc)`);
    }
    return stats;
  }

  /** Stats once the server has seen `count` connections close. */
  async statsWhen(count: number, what: string): Promise<ServerStats> {
    const until = performance.now() + 10_000;
    while (true) {
      const stats = await this.stats();
      if (stats.connections === count) return stats;
      if (performance.now() > until) {
        throw new Error(
          `${this.name}: ${stats.connections} connections, expected ${count} ${what}`,
        );
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

class ClientChild extends Controlled {
  static start(port: number, opts: Options): ClientChild {
    return new ClientChild("client", opts.pin?.[1], [
      "run",
      "--no-prompt",
      "--allow-net",
      CLIENT_SCRIPT,
      "--port",
      String(port),
    ]);
  }

  async command<T>(line: string, ms: number): Promise<T> {
    const answer = await this.ask(line, ms);
    if (answer.startsWith("ok ")) return JSON.parse(answer.slice(3)) as T;
    throw new Error(`client: '${line}' failed: ${answer}`);
  }
}

// ---------------------------------------------------------------- runs

/** Memory of one state, from the server's stats. */
export interface Memory {
  connections: number;
  rss: number;
  heapUsed: number;
  heapTotal: number;
  /** Resident bytes of all of V8's heap spaces. */
  heapResident: number;
  /**
   * Resident bytes of the young generation (`new_space` and
   * `new_large_object_space`), which V8 sizes by itself.
   */
  newSpace: number;
  external: number;
}

/**
 * What one connection adds: (with N - baseline) / N, in bytes. `native` is
 * the rest of the RSS: `rss - heapResident - external` (Rust and tokio's
 * per-connection state, malloc's overhead, and whatever else).
 */
export interface PerConnection {
  rss: number;
  /** RSS without V8's young generation: `rss - newSpace`. */
  rssNoYoung: number;
  heapUsed: number;
  heapResident: number;
  newSpace: number;
  external: number;
  native: number;
}

const PER_CONNECTION_KEYS = [
  "rss",
  "rssNoYoung",
  "heapUsed",
  "heapResident",
  "newSpace",
  "external",
  "native",
] as const;

function perConnection(base: Memory, loaded: Memory, n: number): PerConnection {
  const d = (f: (m: Memory) => number) => (f(loaded) - f(base)) / n;
  return {
    rss: d((m) => m.rss),
    rssNoYoung: d((m) => m.rss - m.newSpace),
    heapUsed: d((m) => m.heapUsed),
    heapResident: d((m) => m.heapResident),
    newSpace: d((m) => m.newSpace),
    external: d((m) => m.external),
    native: d((m) => m.rss - m.heapResident - m.external),
  };
}

/** Latency on `active` connections at once, with 0 and with N idle. */
export interface ActiveLatency {
  active: number;
  idle0: LatencyResult;
  /** The same with 0 idle just before: the A/A control of the ratio. */
  idle0Control: LatencyResult;
  idleN: LatencyResult;
}

/** One run: one server kind, one round. */
export interface Run {
  kind: Kind;
  round: number;
  /** Fresh server, before the warm-up. */
  start: Memory;
  /** After warm-up and the 0-idle latency run, 0 connections. */
  baseline: Memory;
  /** With N idle connections. */
  loaded: Memory;
  /** After closing them all. */
  closed: Memory;
  /** (loaded - baseline) / connections, in bytes. */
  perConnection: PerConnection;
  /** Latency on the first count of `--active` connections, 0 idle. */
  latencyIdle0: LatencyResult;
  /** The same with N idle. */
  latencyIdleN: LatencyResult;
  /** Per count of active connections: latency with 0 and with N idle. */
  latency: ActiveLatency[];
  open: OpenResult;
  verify: VerifyResult;
  /** Timed-out calls in the server (evthread) by the end of the run. */
  serverTimeouts: number;
  /** Deadlines pending in the library's queue with N idle (evthread). */
  pendingDeadlines: number;
  serverErrors: number;
  seconds: number;
}

function memory(stats: ServerStats): Memory {
  return {
    connections: stats.connections,
    rss: stats.rss,
    heapUsed: stats.heapUsed,
    heapTotal: stats.heapTotal,
    heapResident: Object.values(stats.spaces).reduce(
      (sum, space) => sum + space.physical,
      0,
    ),
    newSpace: (stats.spaces["new_space"]?.physical ?? 0) +
      (stats.spaces["new_large_object_space"]?.physical ?? 0),
    external: stats.external,
  };
}

/**
 * One run (steps 1-7 of the module's description) of a fresh server of
 * `kind`; `spec` says which server script and V8 flags.
 */
export async function runOnce(
  kind: Kind,
  round: number,
  opts: Options,
  spec: ServerSpec = {},
): Promise<Run> {
  const t0 = performance.now();
  const n = opts.connections;
  let server: ServerChild | undefined;
  let client: ClientChild | undefined;
  try {
    server = await ServerChild.start(kind, opts, undefined, spec);
    const start = memory(await server.stats());
    client = ClientChild.start(server.port, opts);
    const openMs = (count: number) => 60_000 + count * 10;
    // One latency run per count of active connections, in --active order.
    const latencies = () =>
      opts.active.reduce<Promise<LatencyResult[]>>(
        async (done, active) => [
          ...await done,
          await client!.command<LatencyResult>(
            `latency ${opts.latencyCount} ${opts.latencyWarmup} ${active}`,
            60_000 + (opts.latencyCount + opts.latencyWarmup) * active * 10,
          ),
        ],
        Promise.resolve([]),
      );

    // Warm-up: compile the accept, task and echo paths.
    const warm = await client.command<OpenResult>(
      `open ${WARMUP_CONNECTIONS} ${opts.batch}`,
      openMs(WARMUP_CONNECTIONS),
    );
    if (warm.failed > 0) {
      throw new Error(`warm-up: ${warm.failed} failed: ${warm.firstError}`);
    }
    await client.command("close", 30_000);
    // And one latency run, not counted: the client's and the server's
    // round-trip paths reach optimized code before the counted runs.
    await latencies();
    await server.statsWhen(0, "after the warm-up");

    // Twice with 0 idle: the second is the reference of the with-N ratio,
    // the first / second the A/A control (the noise of the ratio).
    const idle0Control = await latencies();
    const idle0 = await latencies();
    const baseline = memory(await server.statsWhen(0, "at the baseline"));

    const open = await client.command<OpenResult>(
      `open ${n} ${opts.batch}`,
      openMs(n),
    );
    if (open.opened !== n) {
      throw new Error(
        `opened ${open.opened} of ${n} connections: ${open.firstError}`,
      );
    }
    const loadedStats = await server.statsWhen(n, "with all open");
    const loaded = memory(loadedStats);
    const idleN = await latencies();
    const verify = await client.command<VerifyResult>(
      `verify ${opts.batch}`,
      openMs(n),
    );
    if (verify.dead > 0) {
      throw new Error(
        `${verify.dead} idle connections died: ${verify.firstError}`,
      );
    }
    await client.command("close", 30_000);
    const last = await server.statsWhen(0, "after closing");
    return {
      kind,
      round,
      start,
      baseline,
      loaded,
      closed: memory(last),
      perConnection: perConnection(baseline, loaded, n),
      latencyIdle0: idle0[0]!,
      latencyIdleN: idleN[0]!,
      latency: opts.active.map((active, i) => ({
        active,
        idle0: idle0[i]!,
        idle0Control: idle0Control[i]!,
        idleN: idleN[i]!,
      })),
      open,
      verify,
      serverTimeouts: last.timeouts,
      pendingDeadlines: loadedStats.deadlines,
      serverErrors: last.errors,
      seconds: Math.round(performance.now() - t0) / 1000,
    };
  } finally {
    await client?.stop();
    await server?.stop();
  }
}

// -------------------------------------------------------------- checks

// Deno 2.9.6 reads /proc files only under --allow-all: ask `cat` (as
// `../_common/` does), which also reads the limits of a child of this
// process, the same as the server's and the client's.

/** The soft and hard limits on open files, from /proc (Linux). */
export async function fdLimits(): Promise<
  { soft: number; hard: number } | null
> {
  const text = await commandOutput("cat", ["/proc/self/limits"], "");
  const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(text);
  if (m === null) return null;
  const num = (s: string) => s === "unlimited" ? Infinity : Number(s);
  return { soft: num(m[1]!), hard: num(m[2]!) };
}

/** The ephemeral port range, from /proc (Linux). */
export async function portRange(): Promise<[number, number] | null> {
  const text = await commandOutput(
    "cat",
    ["/proc/sys/net/ipv4/ip_local_port_range"],
    "",
  );
  const [lo, hi] = text.split(/\s+/).map(Number);
  return Number.isInteger(lo) && Number.isInteger(hi) ? [lo!, hi!] : null;
}

// ------------------------------------------------------------- report

function kib(bytes: number | null): string {
  if (bytes === null) return "n/a";
  return `${(bytes / 1024).toFixed(1)} KiB`;
}

function mib(bytes: number | null): string {
  if (bytes === null) return "n/a";
  return `${(bytes / 1048576).toFixed(1)} MiB`;
}

/** Bytes as `1,234 B`, or `n/a`. */
export function bytesPer(value: number | null): string {
  return value === null
    ? "n/a"
    : `${Math.round(value).toLocaleString("en-US")} B`;
}

/** Microseconds as `12.3 µs` (`4.65 ms` from 1 ms on), or `n/a`. */
export function us(value: number | null): string {
  if (value === null) return "n/a";
  return value < 1000
    ? `${value.toFixed(1)} µs`
    : `${(value / 1000).toFixed(2)} ms`;
}

/** Medians over rounds of one count of active connections. */
interface LatencySummary {
  active: number;
  idle0: { p50: number | null; p99: number | null };
  idleN: { p50: number | null; p99: number | null };
  /** Each run's with-N / with-0 ratio: median and range over rounds. */
  ratioP50: Spread;
  ratioP99: Spread;
  /** Each run's 0-idle p99, measured twice: first / second. */
  controlP99: Spread;
}

interface KindSummary {
  rounds: number;
  /** Per count of active connections. */
  active: LatencySummary[];
  rssBaseline: number | null;
  rssLoaded: number | null;
  /** Medians, field by field. */
  perConnection: Record<keyof PerConnection, number | null>;
  latency: {
    idle0: { p50: number | null; p99: number | null };
    idleN: { p50: number | null; p99: number | null };
    ratioP50: number | null;
    ratioP99: number | null;
  };
}

function summarize(runs: Run[], active: readonly number[]): KindSummary {
  const m = (f: (r: Run) => number) => median(runs.map(f));
  const at = (r: Run, a: number) => r.latency.find((l) => l.active === a);
  const la = (a: number, f: (l: ActiveLatency) => number) =>
    median(
      runs.map((r) => at(r, a)).filter((l) => l !== undefined).map((l) =>
        f(l!)
      ),
    );
  const activeSummary = active.map((a): LatencySummary => ({
    active: a,
    idle0: { p50: la(a, (l) => l.idle0.p50), p99: la(a, (l) => l.idle0.p99) },
    idleN: { p50: la(a, (l) => l.idleN.p50), p99: la(a, (l) => l.idleN.p99) },
    // The runs' own ratios: a run measures both within seconds, so drift
    // of the machine between runs cancels.
    ratioP50: spread(runs.map((r) => {
      const l = at(r, a);
      return l === undefined ? null : l.idleN.p50 / l.idle0.p50;
    })),
    controlP99: spread(runs.map((r) => {
      const l = at(r, a);
      return l === undefined ? null : l.idle0Control.p99 / l.idle0.p99;
    })),
    ratioP99: spread(runs.map((r) => {
      const l = at(r, a);
      return l === undefined ? null : l.idleN.p99 / l.idle0.p99;
    })),
  }));
  const l0p50 = m((r) => r.latencyIdle0.p50);
  const l0p99 = m((r) => r.latencyIdle0.p99);
  const lNp50 = m((r) => r.latencyIdleN.p50);
  const lNp99 = m((r) => r.latencyIdleN.p99);
  return {
    rounds: runs.length,
    active: activeSummary,
    rssBaseline: m((r) => r.baseline.rss),
    rssLoaded: m((r) => r.loaded.rss),
    perConnection: Object.fromEntries(
      PER_CONNECTION_KEYS.map((k) => [k, m((r) => r.perConnection[k])]),
    ) as KindSummary["perConnection"],
    latency: {
      idle0: { p50: l0p50, p99: l0p99 },
      idleN: { p50: lNp50, p99: lNp99 },
      // The median of the runs' own ratios: a run measures both within
      // seconds, so drift of the machine between runs cancels.
      ratioP50: m((r) => r.latencyIdleN.p50 / r.latencyIdle0.p50),
      ratioP99: m((r) => r.latencyIdleN.p99 / r.latencyIdle0.p99),
    },
  };
}

function verdict(ok: boolean | null): string {
  return ok === null ? "n/a" : ok ? "met" : "**missed**";
}

// ---------------------------------------------------------- breakdown

/** Self sizes and counts of a heap snapshot's nodes, by kind of node. */
type Census = Map<string, { count: number; size: number }>;

interface HeapSnapshotFile {
  snapshot: { meta: { node_fields: string[]; node_types: unknown[] } };
  nodes: number[];
  strings: string[];
}

/**
 * Reads a `.heapsnapshot` and sums its nodes' self sizes by key: the node
 * type and name (an object's constructor, a closure's function, a hidden
 * node's kind), strings lumped by type. `native` nodes (ArrayBuffer
 * backing stores) are outside the JS heap.
 */
async function census(path: string): Promise<Census> {
  const snap = JSON.parse(await Deno.readTextFile(path)) as HeapSnapshotFile;
  const fields = snap.snapshot.meta.node_fields;
  const width = fields.length;
  const typeAt = fields.indexOf("type");
  const nameAt = fields.indexOf("name");
  const sizeAt = fields.indexOf("self_size");
  const types = snap.snapshot.meta.node_types[0] as string[];
  const { nodes, strings } = snap;
  const out: Census = new Map();
  for (let i = 0; i < nodes.length; i += width) {
    const type = types[nodes[i + typeAt]!] ?? "?";
    let key = type;
    if (!type.includes("string") && type !== "number") {
      const name = strings[nodes[i + nameAt]!] ?? "";
      // Contexts are named by their scope's id: lump them together.
      const short = name.replace(/ @\d+$/, "");
      key = `${type}: ${
        short.length > 60 ? short.slice(0, 57) + "..." : short
      }`;
    }
    const entry = out.get(key);
    const size = nodes[i + sizeAt]!;
    if (entry === undefined) out.set(key, { count: 1, size });
    else {
      entry.count++;
      entry.size += size;
    }
  }
  return out;
}

/** One line of a breakdown: what one connection adds, on average. */
interface CensusRow {
  key: string;
  /** Nodes per connection. */
  count: number;
  /** Bytes per connection. */
  bytes: number;
}

function censusDiff(before: Census, after: Census, n: number): CensusRow[] {
  const rows: CensusRow[] = [];
  for (const [key, a] of after) {
    const b = before.get(key) ?? { count: 0, size: 0 };
    rows.push({
      key,
      count: (a.count - b.count) / n,
      bytes: (a.size - b.size) / n,
    });
  }
  return rows.sort((x, y) => y.bytes - x.bytes);
}

interface Breakdown {
  kind: Kind;
  connections: number;
  baseline: Memory;
  loaded: Memory;
  /** Per connection, from the stats. */
  perConnection: PerConnection;
  /** Per connection, from the snapshots, largest first. */
  rows: CensusRow[];
}

async function breakdownOnce(kind: Kind, opts: Options): Promise<Breakdown> {
  const dir = benchPath("./results");
  await Deno.mkdir(dir, { recursive: true });
  const n = opts.breakdown;
  const paths = [0, n].map((c) => `${dir}/c10k-${kind}-${c}.heapsnapshot`);
  let server: ServerChild | undefined;
  let client: ClientChild | undefined;
  try {
    server = await ServerChild.start(kind, opts, dir);
    client = ClientChild.start(server.port, opts);
    await client.command(`open ${WARMUP_CONNECTIONS} ${opts.batch}`, 60_000);
    await client.command("close", 30_000);
    await client.command(`latency ${opts.latencyCount} 0`, 60_000);
    await server.statsWhen(0, "after the warm-up");
    const baseline = memory(await server.snapshot(paths[0]!));
    const open = await client.command<OpenResult>(
      `open ${n} ${opts.batch}`,
      60_000 + n * 10,
    );
    if (open.opened !== n) {
      throw new Error(`opened ${open.opened} of ${n}: ${open.firstError}`);
    }
    await server.statsWhen(n, "with all open");
    const loaded = memory(await server.snapshot(paths[1]!));
    await client.command("close", 30_000);
    const rows = censusDiff(
      await census(paths[0]!),
      await census(paths[1]!),
      n,
    );
    return {
      kind,
      connections: n,
      baseline,
      loaded,
      perConnection: perConnection(baseline, loaded, n),
      rows,
    };
  } finally {
    await client?.stop();
    await server?.stop();
    for (const path of paths) {
      await Deno.remove(path).catch(() => {});
    }
  }
}

function breakdownTable(b: Breakdown, limit: number): string[] {
  const lines = [
    `${b.kind}: ${b.connections} idle connections; per connection, from ` +
    `Deno.memoryUsage(): JS heap ${bytesPer(b.perConnection.heapUsed)}, ` +
    `external ${bytesPer(b.perConnection.external)} (RSS is not shown: ` +
    `taking a snapshot grows it)`,
    "",
    "| heap snapshot node (type: name) | per connection | bytes per connection |",
    "| --- | ---: | ---: |",
  ];
  let shown = 0;
  let rest = 0;
  let total = 0;
  for (const row of b.rows) {
    total += row.bytes;
    if (shown < limit && row.bytes >= 8) {
      lines.push(
        `| ${row.key.replaceAll("|", "\\|")} | ${row.count.toFixed(2)} | ${
          Math.round(row.bytes)
        } |`,
      );
      shown++;
    } else {
      rest += row.bytes;
    }
  }
  lines.push(`| (everything else) | | ${Math.round(rest)} |`);
  lines.push(`| **total** | | **${Math.round(total)}** |`);
  return lines;
}

async function breakdownMain(opts: Options): Promise<void> {
  const results: Breakdown[] = [];
  for (const kind of opts.kinds) {
    console.error(`breakdown: ${kind}, ${opts.breakdown} connections`);
    results.push(await breakdownOnce(kind, opts));
  }
  const lines: string[] = [
    ...versionLines(await machineInfo()),
    "",
    "Heap snapshot (after forced GC) with N idle connections minus one with " +
    "0, per connection. Self sizes; `native: system / JSArrayBufferData` " +
    "nodes are ArrayBuffer backing stores (outside the JS heap).",
  ];
  for (const b of results) {
    lines.push("", ...breakdownTable(b, 40));
  }
  const ev = results.find((b) => b.kind === "evthread");
  const raw = results.find((b) => b.kind === "raw");
  if (ev !== undefined && raw !== undefined) {
    const rawBy = new Map(raw.rows.map((r) => [r.key, r]));
    const diff = ev.rows.map((r) => ({
      key: r.key,
      count: r.count - (rawBy.get(r.key)?.count ?? 0),
      bytes: r.bytes - (rawBy.get(r.key)?.bytes ?? 0),
    })).sort((a, b) => b.bytes - a.bytes);
    lines.push(
      "",
      ...breakdownTable({ ...ev, kind: "evthread", rows: diff }, 40)
        .slice(2)
        .map((l, i) =>
          i === 0
            ? "| evthread minus raw (type: name) | per connection | bytes per connection |"
            : l
        ),
    );
  }
  console.log(lines.join("\n"));
  // The 100 largest kinds of node per server; the rest summed.
  const saved = results.map((b) => ({
    ...b,
    rows: b.rows.slice(0, 100),
    restBytes: b.rows.slice(100).reduce((sum, r) => sum + r.bytes, 0),
  }));
  await saveResults({
    "c10k_breakdown.json": toJson({ opts, results: saved }),
  });
}

// --------------------------------------------------------------- main

async function main(): Promise<void> {
  const opts = parseOptions(Deno.args);
  // By default both processes on one core: a round trip is then two context
  // switches and the two processes' work, with no cross-core wake-up, whose
  // delay on a VM is both large (about 50 us here) and erratic, and would
  // hide the server's own per-call cost.
  opts.pin = await defaultPin(opts.pin);
  const n = opts.connections;
  const limits = await fdLimits();
  // Each process needs N sockets plus the warm-up, the latency connection,
  // the listener and Deno's own descriptors.
  const need = n + WARMUP_CONNECTIONS + 100;
  if (limits !== null && limits.soft < need) {
    throw new Error(
      `the soft limit on open files is ${limits.soft}; ${n} connections ` +
        `need ${need}: ` +
        (limits.hard >= need
          ? `run 'bash bench/c10k/c10k.sh' (or 'ulimit -n ${
            Math.min(20_000, limits.hard)
          }' first)`
          : `the hard limit is ${limits.hard}: use --connections ${
            Math.max(0, limits.hard - WARMUP_CONNECTIONS - 100)
          } or less, or raise the hard limit`),
    );
  }
  const range = await portRange();
  if (range !== null && range[1] - range[0] + 1 < n + 1000) {
    throw new Error(
      `the ephemeral port range ${range[0]}-${range[1]} is too small for ` +
        `${n} client connections`,
    );
  }

  if (opts.breakdown > 0) {
    await breakdownMain(opts);
    return;
  }
  const machine = await machineInfo({
    fdLimits: limits,
    ephemeralPorts: range,
  });
  const startedAt = machine.date;
  console.error(
    `c10k: ${opts.rounds} rounds x ${opts.kinds.join(", ")}; ` +
      `${n} idle connections, ${opts.buffer} B buffer per connection; ` +
      `cap ${opts.cap} s`,
  );

  let capped = false;
  const killAll = () => {
    for (const child of children) kill(child, "SIGKILL");
  };
  const capTimer = setTimeout(() => {
    capped = true;
    console.error(`c10k: the total time cap of ${opts.cap} s was reached`);
    killAll();
  }, opts.cap * 1000);
  const onInterrupt = () => {
    killAll();
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", onInterrupt);

  const runs: Run[] = [];
  const failures: { kind: Kind; round: number; error: string }[] = [];
  try {
    for (let round = 1; round <= opts.rounds && !capped; round++) {
      for (const kind of opts.kinds) {
        if (capped) break;
        try {
          const run = await runOnce(kind, round, opts);
          runs.push(run);
          console.error(
            `round ${round}/${opts.rounds} ${kind.padEnd(8)} ` +
              `RSS ${mib(run.baseline.rss)} -> ${mib(run.loaded.rss)}, ` +
              `${bytesPer(run.perConnection.rss)}/conn ` +
              `(heap ${bytesPer(run.perConnection.heapUsed)}, ` +
              `external ${bytesPer(run.perConnection.external)}); ` +
              `p50 ${us(run.latencyIdle0.p50)} -> ${
                us(run.latencyIdleN.p50)
              }, ` +
              `p99 ${
                run.latency.map((l) =>
                  `${l.active} active ${us(l.idle0.p99)} -> ${us(l.idleN.p99)}`
                ).join(", ")
              }; ` +
              `open ${(run.open.ms / 1000).toFixed(1)} s; ${run.seconds} s`,
          );
        } catch (error) {
          const message = error instanceof Error
            ? error.message
            : String(error);
          failures.push({ kind, round, error: message });
          console.error(
            `round ${round}/${opts.rounds} ${kind} FAILED: ${message}`,
          );
        }
      }
    }
  } finally {
    clearTimeout(capTimer);
    killAll();
    Deno.removeSignalListener("SIGINT", onInterrupt);
  }

  const summary = {} as Partial<Record<Kind, KindSummary>>;
  for (const kind of opts.kinds) {
    const mine = runs.filter((r) => r.kind === kind);
    if (mine.length > 0) summary[kind] = summarize(mine, opts.active);
  }
  const ev = summary.evthread;
  const raw = summary.raw;
  const minus = (f: (s: KindSummary) => number | null) => {
    const a = ev === undefined ? null : f(ev);
    const b = raw === undefined ? null : f(raw);
    return a === null || b === null ? null : a - b;
  };
  const overRaw = Object.fromEntries(
    PER_CONNECTION_KEYS.map((k) => [k, minus((s) => s.perConnection[k])]),
  ) as Record<keyof PerConnection, number | null>;
  // The same difference round by round (each round's two runs are adjacent).
  const paired = (key: keyof PerConnection) =>
    spread(
      runs.filter((r) => r.kind === "evthread").map((r) => {
        const other = runs.find((o) => o.kind === "raw" && o.round === r.round);
        return other === undefined
          ? null
          : r.perConnection[key] - other.perConnection[key];
      }),
    );
  const pairedNoYoung = paired("rssNoYoung");
  const pairedOverRaw = paired("rss").median;

  const nText = n.toLocaleString("en-US");
  const pin = opts.pin === null || opts.pin === undefined
    ? "not pinned"
    : opts.pin[0] === opts.pin[1]
    ? `both pinned to core ${opts.pin[0]}`
    : `server on core ${opts.pin[0]}, client on core ${opts.pin[1]}`;
  const v8 = opts.semiSpace === 0
    ? "V8's own semi-space sizing"
    : `the same V8 flags (${semiSpaceFlags(opts.semiSpace).join(" ")})`;
  const lines = [
    ...versionLines(machine),
    "",
    `Median of ${opts.rounds} rounds; server and client in separate ` +
    `processes on 127.0.0.1, ${pin}; ${opts.buffer} B buffer per ` +
    `connection in both servers (evthread: plus the EvSocket's own read ` +
    `buffer); both servers under ${v8}; memory after ` +
    `forced GC. Per conn: (with N idle - with 0) / N; "- young": V8's ` +
    `young generation (resident new_space + new_large_object_space) ` +
    `subtracted from the RSS of both states.`,
    "",
    `| server | RSS, 0 conns | RSS, ${nText} idle | RSS / conn | young / conn | RSS - young / conn |`,
    "| --- | ---: | ---: | ---: | ---: | ---: |",
  ];
  const label: Record<Kind, string> = {
    evthread: "evthread (`EvLoop`, `recv`/`send` with 30 s timeouts)",
    raw: "raw `Deno.Conn` (`read`/`write`, no timeouts)",
  };
  for (const kind of opts.kinds) {
    const s = summary[kind];
    if (s === undefined) continue;
    lines.push(
      `| ${label[kind]} | ${mib(s.rssBaseline)} | ${mib(s.rssLoaded)} | ` +
        `${bytesPer(s.perConnection.rss)} | ` +
        `${bytesPer(s.perConnection.newSpace)} | ` +
        `${bytesPer(s.perConnection.rssNoYoung)} |`,
    );
  }
  lines.push(
    "",
    "Where the RSS per connection goes (medians; bytes per idle " +
      "connection; rest = RSS - JS heap resident - external, which comes out " +
      "low, even negative, when ArrayBuffer pages were never touched):",
    "",
    "| server | RSS | RSS - young | JS heap used | JS heap resident | of which young generation | external (ArrayBuffers) | rest (native) |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  );
  const breakdownRow = (name: string, v: Record<string, number | null>) =>
    `| ${name} | ${bytesPer(v.rss ?? null)} | ${
      bytesPer(v.rssNoYoung ?? null)
    } | ${bytesPer(v.heapUsed ?? null)} | ${
      bytesPer(v.heapResident ?? null)
    } | ${bytesPer(v.newSpace ?? null)} | ${bytesPer(v.external ?? null)} | ${
      bytesPer(v.native ?? null)
    } |`;
  for (const kind of opts.kinds) {
    const s = summary[kind];
    if (s !== undefined) lines.push(breakdownRow(kind, s.perConnection));
  }
  if (ev !== undefined && raw !== undefined) {
    lines.push(breakdownRow("evthread minus raw", overRaw));
  }
  lines.push("");
  lines.push(
    `- evthread above raw, bytes per idle connection with the young ` +
      `generation excluded: ${bytesPer(overRaw.rssNoYoung)} (${
        kib(overRaw.rssNoYoung)
      }; per-round differences ${
        formatSpread(pairedNoYoung, (v) => bytesPer(v))
      }); target <= ${TARGET_BYTES} B: ${
        verdict(
          overRaw.rssNoYoung === null
            ? null
            : overRaw.rssNoYoung <= TARGET_BYTES,
        )
      }.`,
    `- for reference, RSS alone (young generation included), evthread above ` +
      `raw: ${bytesPer(overRaw.rss)} (median of per-round differences ${
        bytesPer(pairedOverRaw)
      }); the young generation's growth per connection: evthread ${
        bytesPer(ev?.perConnection.newSpace ?? null)
      }, raw ${bytesPer(raw?.perConnection.newSpace ?? null)}.`,
  );
  if (ev !== undefined) {
    const pending = median(
      runs.filter((r) => r.kind === "evthread").map((r) => r.pendingDeadlines),
    );
    lines.push(
      `- evthread with ${nText} idle: ${
        pending?.toLocaleString("en-US") ?? "n/a"
      } deadlines pending in the library's shared deadline queue (one timer)`,
    );
  }
  lines.push(
    "",
    `p99 latency of ping-pong on a few active connections with ${nText} ` +
      `idle open vs with none (${opts.latencyCount} sequential 64 B round ` +
      `trips per active connection, all active connections at once; ` +
      `ratio: each run's with-${nText} / with-0, median (range) over ` +
      `rounds; target <= ${TARGET_RATIO}x. A/A control: each run measures ` +
      `0 idle twice in a row, first / second: how far it strays from 1.00x ` +
      `is the noise of the ratio):`,
    "",
    `| server | active conns | p50, 0 idle | p50, ${nText} idle | p99, 0 idle | p99, ${nText} idle | p99 ratio | A/A control | target |`,
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
  );
  for (const kind of opts.kinds) {
    for (const l of summary[kind]?.active ?? []) {
      const r = l.ratioP99;
      const range = (x: Spread) =>
        x.n === 0
          ? "n/a"
          : `${formatRatio(x.median)} (${formatRatio(x.min)}-${
            formatRatio(x.max)
          })`;
      lines.push(
        `| ${kind} | ${l.active} | ${us(l.idle0.p50)} | ${us(l.idleN.p50)} | ` +
          `${us(l.idle0.p99)} | ${us(l.idleN.p99)} | ${range(r)} | ${
            range(l.controlP99)
          } | ${
            verdict(r.median === null ? null : r.median <= TARGET_RATIO)
          } |`,
      );
    }
  }
  const timeouts = runs.reduce((sum, r) => sum + r.serverTimeouts, 0);
  if (timeouts > 0) {
    lines.push(
      `- note: ${timeouts} server calls timed out during the runs (idle recvs re-armed)`,
    );
  }
  if (failures.length > 0) {
    lines.push(`- ${failures.length} runs failed (see stderr and the JSON)`);
  }
  console.log(lines.join("\n"));

  const report = {
    machine: { ...machine, loadavgAtEnd: await loadavg() },
    config: { ...opts, warmupConnections: WARMUP_CONNECTIONS },
    startedAt,
    finishedAt: new Date().toISOString(),
    targets: { bytesOverRaw: TARGET_BYTES, latencyRatio: TARGET_RATIO },
    summary,
    evthreadMinusRawPerConnection: {
      ...overRaw,
      rssPairedMedian: pairedOverRaw,
      rssNoYoungPaired: pairedNoYoung,
    },
    failures,
    runs,
  };
  await saveResults({ "c10k.json": toJson(report) });
  if (failures.length > 0 || capped) Deno.exitCode = 1;
}

if (import.meta.main) {
  try {
    await main();
  } catch (error) {
    for (const child of children) kill(child, "SIGKILL");
    console.error(`c10k: ${error instanceof Error ? error.message : error}`);
    Deno.exit(1);
  }
}
