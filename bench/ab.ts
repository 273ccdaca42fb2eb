/**
 * A/B of two revisions in one run: echo and HTTP throughput and server CPU
 * per operation, and C10K memory per idle connection, of revision A against
 * revision B, with an A/A control so that the noise is visible.
 *
 * ```sh
 * deno task bench:ab --a HEAD~1 --b HEAD [--what echo,http,c10k] \
 *   [--rounds 5] [--seconds 3] [--warmup 3] [--connections 100] \
 *   [--idle 10000] [--load auto|wrk|deno] [--pin auto|off] \
 *   [--method interleaved|simultaneous|both]
 * ```
 *
 * How (after /work/shared/notes/measuring.md):
 *
 * 1. Each revision is checked out into a temporary `git worktree`
 *    (detached; removed at the end, also on Ctrl-C). The revision's own
 *    bench/ is replaced by a copy of this checkout's `bench/_common`,
 *    `bench/echo`, `bench/http` and `bench/c10k` (uncommitted changes
 *    included), so that both revisions run the SAME server scripts, each
 *    importing the library of the revision it sits in (`../../mod.ts`).
 *    Older revisions had a flat bench/; their own scripts are not used.
 * 2. Three servers per family, each in its own process: A, B, and A2 (a
 *    second server of A: the A/A control). With `--pin auto` (the default,
 *    when `taskset` runs) the servers are pinned to the last core and the
 *    load client to core 0; the load client is this checkout's, the same
 *    for all: `echo/_load.ts` (ping-pong of 64 B on 100 connections) for
 *    echo, `wrk` or `http/_load.ts` (`--connections`, hello world) for HTTP.
 * 3. Every server is warmed up (`--warmup` seconds of the same load, not
 *    counted); then `--rounds` interleaved rounds of `--seconds` each, the
 *    order A, B, A2 rotating each round. Per measurement: operations per
 *    second, and the server's CPU per operation (user + system time of
 *    /proc/PID/stat over the operations served; `_common/cpu.ts`); for
 *    HTTP also the load client's p99 latency (`--connections 1` measures
 *    one connection's).
 * 4. Per round, B/A and A2/A of each figure; the report gives each round,
 *    the median and the range. The A/A range is the noise of this run: a
 *    B/A median inside it is no difference.
 * 5. `--method simultaneous` (or `both`: the interleaved rounds, then
 *    these) measures echo and HTTP the other way of measuring.md: per
 *    round, the pairs (A, B) and (A, A2), one after the other, the pair
 *    that goes first alternating each round. The two servers of a pair are
 *    on the same core (the servers' core) and each is driven by its own
 *    load client, both clients started at the same moment (on the load
 *    client's core; which is spawned first alternates every second round),
 *    so that host noise hits both alike; rps(B)/rps(A) is
 *    their relative cost per operation, rps(A2)/rps(A) the A/A control, and
 *    server CPU per operation comes from /proc as above. When the load
 *    clients, not the servers, are the bottleneck, the ratio is pulled
 *    toward 1.00x: the report gives the load clients' CPU.
 * 6. C10K (`c10k/c10k.ts`'s runs, evthread echo server): per round, one
 *    fresh server of each of A, B, A2, `--idle` idle connections; bytes per
 *    idle connection with V8's young generation excluded, i.e.
 *    ((RSS - young) with N idle - (RSS - young) with 0) / N, after forced
 *    GC, where young = resident `new_space` + `new_large_object_space`
 *    (V8's heap space statistics). Both servers also run with a fixed
 *    semi-space (`--min-semi-space-size=1 --max-semi-space-size=1`, MB), so
 *    that V8 cannot grow the young generation much between the two states;
 *    what it does grow is subtracted. B - A and A2 - A per round, median and
 *    range.
 *
 * The issues ask for "echo and HTTP medians within 3%, C10K within 256 B per
 * idle connection"; the report says whether the medians are, and whether
 * the control is narrow enough to tell. It is a report, not a gate: the
 * exit code is 0 whatever the figures, 1 only when a revision cannot be
 * checked out or no measurement at all succeeded. Results go to
 * `bench/results/ab.json` (with `--allow-write=bench/results`).
 *
 * @module
 */

import {
  benchPath,
  choice,
  chooseHttpTool,
  CONNECTIONS,
  denoRun,
  describeLoad,
  formatCores,
  formatRatio,
  formatRatio3,
  formatRps,
  formatSpread,
  gitRevision,
  httpClient,
  type HttpTool,
  integer,
  interrupted,
  list,
  type LoadClient,
  type LoadFigures,
  machineInfo,
  measureLoad,
  measurePair,
  median,
  type PairFigures,
  parseArgs,
  PIN,
  type Placement,
  placement,
  ratio,
  rotated,
  ROUNDS,
  saveResults,
  SECONDS,
  type ServerProcess,
  type Spread,
  spread,
  text,
  toJson,
  versionLines,
  WARMUP,
  withServers,
} from "./_common/mod.ts";
import type { LoadResult } from "./echo/_load.ts";
import {
  bytesPer,
  DEFAULT_OPTIONS as C10K_DEFAULTS,
  defaultPin,
  fdLimits,
  killChildren,
  type Options as C10kOptions,
  portRange,
  type Run as C10kRun,
  runOnce,
  semiSpaceFlags,
} from "./c10k/c10k.ts";

type Family = "echo" | "http" | "c10k";
type Side = "A" | "B" | "A2";
type Method = "interleaved" | "simultaneous" | "both";

const FAMILIES: readonly Family[] = ["echo", "http", "c10k"];
const SIDES: readonly Side[] = ["A", "B", "A2"];
/** The bench/ folders each revision's worktree gets from this checkout. */
const COPIED = ["_common", "echo", "http", "c10k"];
const REPO_DIR = benchPath("../");
const ECHO_CLIENT = new URL("./echo/_load.ts", import.meta.url);
const ECHO_SCENARIO = "pingpong-100";
/** The semi-space of both C10K servers, in MB (V8's unit for the flag). */
const SEMI_SPACE_MB = C10K_DEFAULTS.semiSpace;
const SEMI_SPACE_FLAGS = semiSpaceFlags(SEMI_SPACE_MB);
/** What the issues ask for. */
const THROUGHPUT_TOLERANCE = 0.03;
const BYTES_TOLERANCE = 256;

interface Options {
  a: string;
  b: string;
  what: Family[];
  rounds: number;
  seconds: number;
  warmup: number;
  connections: number;
  idle: number;
  load: "auto" | HttpTool;
  pin: "auto" | "off";
  method: Method;
}

function parseOptions(args: string[]): Options {
  const rev = text("REV", (raw, flag) => {
    if (raw === "" || raw.startsWith("-")) {
      throw new TypeError(`'${flag}' must name a revision: received '${raw}'`);
    }
  });
  return parseArgs(args, {
    a: rev,
    b: rev,
    what: list(FAMILIES),
    rounds: ROUNDS,
    seconds: SECONDS,
    warmup: WARMUP,
    connections: CONNECTIONS,
    idle: integer(1),
    load: choice(["auto", "wrk", "deno"] as const),
    pin: PIN,
    method: choice(["interleaved", "simultaneous", "both"] as const),
  }, {
    a: "",
    b: "",
    what: [...FAMILIES],
    rounds: 5,
    seconds: 3,
    warmup: 3,
    connections: 100,
    idle: 10_000,
    load: "auto",
    pin: "auto",
    method: "interleaved",
  }, {
    usage: "deno task bench:ab --a REV --b REV [options]",
    required: ["a", "b"],
  });
}

// ------------------------------------------------------------- worktrees

/** Runs a command to its end; its trimmed stdout, or throws with stderr. */
async function run(cmd: string, args: string[], cwd = REPO_DIR) {
  const { success, stdout, stderr } = await new Deno.Command(cmd, {
    args,
    cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(stdout).trim();
  if (!success) {
    const err = new TextDecoder().decode(stderr).trim();
    throw new Error(`${cmd} ${args.join(" ")}: ${err || out || "failed"}`);
  }
  return out;
}

/** A revision checked out for the run. */
interface Revision {
  /** As given: `HEAD~3`. */
  rev: string;
  sha: string;
  short: string;
  subject: string;
  /** The temporary worktree. */
  dir: string;
}

/** Temporary worktrees made by this run, removed by {@linkcode cleanUp}. */
const worktrees: string[] = [];
let tempDir: string | undefined;

/**
 * Checks `rev` out into `dir` (a detached worktree) and puts this
 * checkout's server scripts in its bench/.
 */
async function checkOut(rev: string, dir: string): Promise<Revision> {
  let sha: string;
  try {
    sha = await run("git", ["rev-parse", "--verify", `${rev}^{commit}`]);
  } catch {
    throw new Error(`'${rev}' is not a commit of this repository`);
  }
  const [short, subject] = (await run("git", [
    "log",
    "-1",
    "--format=%h%n%s",
    sha,
  ])).split("\n");
  await run("git", ["worktree", "add", "--detach", "--quiet", dir, sha]);
  worktrees.push(dir);
  await run("rm", ["-rf", `${dir}/bench`]);
  await run("mkdir", [`${dir}/bench`]);
  await run("cp", [
    "-R",
    ...COPIED.map((name) => benchPath(`./${name}`)),
    `${dir}/bench/`,
  ]);
  return { rev, sha, short: short ?? sha, subject: subject ?? "", dir };
}

/**
 * Removes this run's worktrees and temporary directory. Synchronous, so
 * that it can run on `unload` (Ctrl-C ends the process through
 * `Deno.exit`); runs once.
 */
function cleanUp(): void {
  const git = (args: string[]) => {
    try {
      new Deno.Command("git", {
        args,
        cwd: REPO_DIR,
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).outputSync();
    } catch {
      // Nothing more to do here: prune below.
    }
  };
  for (const dir of worktrees.splice(0)) {
    git(["worktree", "remove", "--force", dir]);
  }
  if (tempDir !== undefined) {
    try {
      new Deno.Command("rm", { args: ["-rf", tempDir] }).outputSync();
    } catch {
      // Left in the temporary directory.
    }
    tempDir = undefined;
    git(["worktree", "prune"]);
  }
}

// ------------------------------------------------------- echo and HTTP

/** One measurement of one server. */
interface Sample extends LoadFigures {
  family: "echo" | "http";
  round: number;
  side: Side;
  /** Position of the server in the round's order (0-based). */
  position: number;
}

type Figures = LoadFigures;

/** How a family is measured. */
interface LoadSpec extends LoadClient {
  family: "echo" | "http";
  /** The server script, relative to a worktree. */
  server: string;
  /** The unit of `rate`. */
  unit: string;
  /** What an operation is, for "CPU per ...". */
  op: string;
  /** The load, for the report. */
  describe: string;
}

function echoSpec(): LoadSpec {
  return {
    family: "echo",
    server: "bench/echo/_evthread_server.ts",
    unit: "rt/s",
    op: "round trip",
    describe: "ping-pong of 64 B on 100 connections (bench/echo/_load.ts)",
    command: (port, seconds) => [
      Deno.execPath(),
      denoRun(ECHO_CLIENT, [
        "--port",
        String(port),
        "--scenario",
        ECHO_SCENARIO,
        "--seconds",
        String(seconds),
        "--warmup",
        "0",
      ]),
    ],
    parse(stdout) {
      const result = JSON.parse(stdout.split("\n").at(-1)!) as LoadResult;
      return { rate: result.value, ops: result.count };
    },
  };
}

function httpSpec(tool: HttpTool, connections: number): LoadSpec {
  return {
    family: "http",
    server: "bench/http/_evthread_server.ts",
    unit: "req/s",
    op: "request",
    describe: `hello world on ${connections} keep-alive connections (${
      tool === "wrk" ? "wrk -t1" : "bench/http/_load.ts"
    })`,
    ...httpClient(tool, connections),
  };
}

function describeFigures(spec: LoadSpec, f: Figures): string {
  return describeLoad(f, spec.unit, spec.op);
}

/** One simultaneous round: the pairs (A, B) and (A, A2). */
interface SimRound {
  round: number;
  /** Which pair ran first. */
  first: "A,B" | "A,A2";
  ab: PairFigures;
  aa: PairFigures;
}

/** The simultaneous rounds of one family (servers already warm). */
async function runSimultaneous(
  spec: LoadSpec,
  servers: ServerProcess<Side>[],
  opts: Options,
  pin: Placement,
): Promise<SimRound[]> {
  const by = new Map(servers.map((s) => [s.name, s]));
  const [a, b, a2] = [by.get("A")!, by.get("B")!, by.get("A2")!];
  const rounds: SimRound[] = [];
  for (let round = 0; round < opts.rounds; round++) {
    if (interrupted.signal.aborted) break;
    const abFirst = round % 2 === 0;
    let ab: PairFigures | undefined;
    let aa: PairFigures | undefined;
    for (const which of abFirst ? ["A,B", "A,A2"] : ["A,A2", "A,B"]) {
      const other = which === "A,B" ? b : a2;
      const pair = await measurePair(
        spec,
        a,
        other,
        opts.seconds,
        pin,
        Math.floor(round / 2) % 2 === 1,
      );
      if (which === "A,B") ab = pair;
      else aa = pair;
      console.error(
        `${spec.family} simultaneous ${round + 1}/${opts.rounds} ` +
          `A  ${describeFigures(spec, pair.a)}\n` +
          `${spec.family} simultaneous ${round + 1}/${opts.rounds} ` +
          `${other.name.padEnd(2)} ${describeFigures(spec, pair.other)}`,
      );
    }
    rounds.push({
      round: round + 1,
      first: abFirst ? "A,B" : "A,A2",
      ab: ab!,
      aa: aa!,
    });
  }
  return rounds;
}

/**
 * Runs one family's servers, warm-up and rounds: the interleaved samples
 * and the simultaneous rounds, each empty when `--method` leaves it out.
 */
async function runFamily(
  spec: LoadSpec,
  revisions: Record<Side, Revision>,
  opts: Options,
  pin: Placement,
): Promise<{ samples: Sample[]; simultaneous: SimRound[] }> {
  const samples: Sample[] = [];
  let simultaneous: SimRound[] = [];
  await withServers(
    SIDES,
    (side) => denoRun(`${revisions[side].dir}/${spec.server}`, ["--port", "0"]),
    pin.server,
    async (servers) => {
      if (opts.warmup > 0) {
        for (const server of servers) {
          const w = await measureLoad(spec, server, opts.warmup, pin);
          console.error(
            `${spec.family} warm-up  ${server.name.padEnd(2)} ${
              describeFigures(spec, w)
            }`,
          );
        }
      }
      const interleaved = opts.method !== "simultaneous";
      for (let round = 0; interleaved && round < opts.rounds; round++) {
        if (interrupted.signal.aborted) break;
        for (const [position, server] of rotated(servers, round).entries()) {
          const f = await measureLoad(spec, server, opts.seconds, pin);
          samples.push({
            family: spec.family,
            round: round + 1,
            side: server.name,
            position,
            ...f,
          });
          console.error(
            `${spec.family} round ${round + 1}/${opts.rounds} ${
              server.name.padEnd(2)
            } ${describeFigures(spec, f)}`,
          );
        }
      }
      if (opts.method !== "interleaved") {
        simultaneous = await runSimultaneous(spec, servers, opts, pin);
      }
    },
  );
  return { samples, simultaneous };
}

/** Per round: each side's sample. */
function byRound<T extends { round: number; side: Side }>(
  samples: T[],
  rounds: number,
): Map<Side, T>[] {
  const out: Map<Side, T>[] = [];
  for (let r = 1; r <= rounds; r++) {
    out.push(
      new Map(samples.filter((s) => s.round === r).map((s) => [s.side, s])),
    );
  }
  return out;
}

/** The summary of one load family, for the JSON. */
interface LoadSummary extends RatioSummary {
  serverCores: Spread;
  loadCores: Spread;
  otherCores: Spread;
  /** p99 latency B/A and A2/A (HTTP); no rounds when not measured. */
  p99BOverA: Spread;
  p99A2OverA: Spread;
}

function loadReport(
  spec: LoadSpec,
  samples: Sample[],
  opts: Options,
): { lines: string[]; summary: LoadSummary } {
  const rounds = byRound(samples, opts.rounds);
  const rate = (s: Sample | undefined) => s?.rate ?? null;
  const cpu = (s: Sample | undefined) => s?.cpuPerOpUs ?? null;
  const p99 = (s: Sample | undefined) => s?.p99Ms ?? null;
  const us = (v: number | null) => v === null ? "n/a" : v.toFixed(2);
  const lines = [
    `| round | order | A ${spec.unit} | B ${spec.unit} | A2 ${spec.unit} | B/A | A2/A | A µs CPU/${spec.op} | B | A2 | B/A | A2/A |`,
    "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  const ratios = {
    rateB: [] as (number | null)[],
    rateA2: [] as (number | null)[],
    cpuB: [] as (number | null)[],
    cpuA2: [] as (number | null)[],
  };
  for (const [i, round] of rounds.entries()) {
    const a = round.get("A");
    const b = round.get("B");
    const a2 = round.get("A2");
    const order = [...round.values()].sort((x, y) => x.position - y.position)
      .map((s) => s.side).join(" ");
    const rb = ratio(rate(b), rate(a));
    const ra2 = ratio(rate(a2), rate(a));
    const cb = ratio(cpu(b), cpu(a));
    const ca2 = ratio(cpu(a2), cpu(a));
    ratios.rateB.push(rb);
    ratios.rateA2.push(ra2);
    ratios.cpuB.push(cb);
    ratios.cpuA2.push(ca2);
    lines.push(
      `| ${i + 1} | ${order} | ${formatRps(rate(a))} | ${
        formatRps(rate(b))
      } | ${formatRps(rate(a2))} | ${formatRatio(rb)} | ${formatRatio(ra2)} | ${
        us(cpu(a))
      } | ${us(cpu(b))} | ${us(cpu(a2))} | ${formatRatio(cb)} | ${
        formatRatio(ca2)
      } |`,
    );
  }
  const summary: LoadSummary = {
    rateBOverA: spread(ratios.rateB),
    rateA2OverA: spread(ratios.rateA2),
    cpuBOverA: spread(ratios.cpuB),
    cpuA2OverA: spread(ratios.cpuA2),
    serverCores: spread(samples.map((s) => s.serverCores)),
    loadCores: spread(samples.map((s) => s.loadCores)),
    otherCores: spread(samples.map((s) => s.otherCores)),
    p99BOverA: spread(
      rounds.map((r) => ratio(p99(r.get("B")), p99(r.get("A")))),
    ),
    p99A2OverA: spread(
      rounds.map((r) => ratio(p99(r.get("A2")), p99(r.get("A")))),
    ),
  };
  const side = (name: Side, pick: (s: Sample) => number | null) =>
    median(
      samples.filter((s) => s.side === name).map(pick).filter((
        v,
      ): v is number => v !== null),
    );
  lines.push(
    `| median | | ${formatRps(side("A", (s) => s.rate))} | ${
      formatRps(side("B", (s) => s.rate))
    } | ${formatRps(side("A2", (s) => s.rate))} | **${
      formatRatio(summary.rateBOverA.median)
    }** | ${formatRatio(summary.rateA2OverA.median)} | ${
      us(side("A", (s) => s.cpuPerOpUs))
    } | ${us(side("B", (s) => s.cpuPerOpUs))} | ${
      us(side("A2", (s) => s.cpuPerOpUs))
    } | **${formatRatio(summary.cpuBOverA.median)}** | ${
      formatRatio(summary.cpuA2OverA.median)
    } |`,
    "",
    ...ratioLines(spec, summary, formatRatio),
    `- cores used (medians): server ${
      formatCores(summary.serverCores.median)
    }, load client ${formatCores(summary.loadCores.median)}` +
      (summary.otherCores.n === 0
        ? ""
        : `, other processes on the servers' core ${
          formatCores(summary.otherCores.median)
        } (at most ${formatCores(summary.otherCores.max)})`) +
      ((summary.loadCores.median ?? 0) > 0.9
        ? ". The load client is near a full core and may be the bottleneck, " +
          "which pulls throughput ratios toward 1.00x; read the CPU per " +
          `${spec.op} instead.`
        : (summary.otherCores.max ?? 0) > 0.1
        ? ". Other processes took time on the servers' core: throughput " +
          `suffers most; the server CPU per ${spec.op} is the steadier figure.`
        : "."),
  );
  if (summary.p99BOverA.n > 0) lines.push("", ...p99Lines(rounds));
  return { lines, summary };
}

/**
 * The p99 latency table of a load family: per round, each side's p99 in
 * milliseconds and the ratios B/A and A2/A; then medians and ranges.
 */
function p99Lines(rounds: Map<Side, Sample>[]): string[] {
  const p99 = (s: Sample | undefined) => s?.p99Ms ?? null;
  const ms = (v: number | null) => v === null ? "n/a" : v.toFixed(2);
  const lines = [
    "| round | A p99 ms | B p99 ms | A2 p99 ms | B/A | A2/A |",
    "| ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  const b: (number | null)[] = [];
  const a2: (number | null)[] = [];
  const each: Record<Side, number[]> = { A: [], B: [], A2: [] };
  for (const [i, round] of rounds.entries()) {
    for (const side of SIDES) {
      const v = p99(round.get(side));
      if (v !== null) each[side].push(v);
    }
    const rb = ratio(p99(round.get("B")), p99(round.get("A")));
    const ra2 = ratio(p99(round.get("A2")), p99(round.get("A")));
    b.push(rb);
    a2.push(ra2);
    lines.push(
      `| ${i + 1} | ${ms(p99(round.get("A")))} | ${ms(p99(round.get("B")))} | ${
        ms(p99(round.get("A2")))
      } | ${formatRatio(rb)} | ${formatRatio(ra2)} |`,
    );
  }
  lines.push(
    `| median | ${ms(median(each.A))} | ${ms(median(each.B))} | ${
      ms(median(each.A2))
    } | **${formatRatio(spread(b).median)}** | ${
      formatRatio(spread(a2).median)
    } |`,
    "",
    `- p99 latency, B/A: ${formatSpread(spread(b), formatRatio)}; A/A ` +
      `control (A2/A): ${formatSpread(spread(a2), formatRatio)}.`,
  );
  return lines;
}

/**
 * Whether the median of B/A is within 3%, and whether the A/A control is
 * narrow enough to tell; `higherIsBetter` names the direction.
 */
function verdictRatio(
  b: Spread,
  control: Spread,
  what: string,
  higherIsBetter: boolean,
): string {
  if (b.median === null) return `${what}: no B/A figure.`;
  const off = b.median - 1;
  const within = Math.abs(off) <= THROUGHPUT_TOLERANCE;
  const better = higherIsBetter ? off >= 0 : off <= 0;
  const noise = control.min === null || control.max === null
    ? null
    : Math.max(Math.abs(control.min - 1), Math.abs(control.max - 1));
  return `${what}, median within 3%: ${within ? "yes" : "**no**"} (B ${
    Math.abs(off * 100).toFixed(1)
  }% ${off >= 0 ? "higher" : "lower"} than A: ${
    off === 0 ? "the same" : better ? "better" : "worse"
  }). ` +
    (noise === null
      ? "No A/A control figure."
      : `The A/A control strays up to ${(noise * 100).toFixed(1)}% from ` +
        "1.00x" +
        (noise > THROUGHPUT_TOLERANCE
          ? ": more than 3%, so this run cannot resolve 3%; use more rounds or a quieter machine."
          : "."));
}

/** The B/A and A/A ratios of rate and CPU per operation, both methods. */
interface RatioSummary {
  rateBOverA: Spread;
  rateA2OverA: Spread;
  cpuBOverA: Spread;
  cpuA2OverA: Spread;
}

/**
 * The lines under a load family's table, both methods: the B/A and A/A
 * spreads of rate and CPU per operation (in `format`), and their verdicts.
 */
function ratioLines(
  spec: LoadSpec,
  summary: RatioSummary,
  format: (v: number | null) => string,
): string[] {
  return [
    `- ${spec.unit}, B/A: ${
      formatSpread(summary.rateBOverA, format)
    }; A/A control (A2/A): ${formatSpread(summary.rateA2OverA, format)}.`,
    `- server CPU per ${spec.op}, B/A: ${
      formatSpread(summary.cpuBOverA, format)
    }; A/A control: ${formatSpread(summary.cpuA2OverA, format)}.`,
    `- ${
      verdictRatio(summary.rateBOverA, summary.rateA2OverA, spec.unit, true)
    }`,
    `- ${
      verdictRatio(
        summary.cpuBOverA,
        summary.cpuA2OverA,
        `server CPU per ${spec.op}`,
        false,
      )
    }`,
  ];
}

/** The summary of one family's simultaneous rounds, for the JSON. */
interface SimSummary extends RatioSummary {
  /** Cores of both servers of a pair together (1.00: their core is full). */
  serverCores: Spread;
  /** Cores of both load clients of a pair together. */
  loadCores: Spread;
  otherCores: Spread;
}

function simReport(
  spec: LoadSpec,
  rounds: SimRound[],
): { lines: string[]; summary: SimSummary } {
  const us = (v: number | null) => v === null ? "n/a" : v.toFixed(2);
  const sum = (x: number | null, y: number | null) =>
    x === null || y === null ? null : x + y;
  const lines = [
    "Simultaneous: per round, the pairs (A, B) and (A, A2) one after the " +
    "other (the first alternating); the two servers of a pair on the same " +
    "core, each driven by its own load client, both started at the same " +
    "moment. rps(B)/rps(A) is their relative cost per " +
    `${spec.op}; A2/A is the A/A control. Load cores: both load clients of ` +
    "the pair together, (A, B) / (A, A2).",
    "",
    `| round | first | A ${spec.unit} | B ${spec.unit} | B/A | A ${spec.unit} | A2 ${spec.unit} | A2/A | A µs CPU/${spec.op} | B | B/A | A | A2 | A2/A | load cores |`,
    "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  const r = {
    rateB: [] as (number | null)[],
    rateA2: [] as (number | null)[],
    cpuB: [] as (number | null)[],
    cpuA2: [] as (number | null)[],
    server: [] as (number | null)[],
    load: [] as (number | null)[],
    other: [] as (number | null)[],
  };
  for (const { round, first, ab, aa } of rounds) {
    const rb = ratio(ab.other.rate, ab.a.rate);
    const ra2 = ratio(aa.other.rate, aa.a.rate);
    const cb = ratio(ab.other.cpuPerOpUs, ab.a.cpuPerOpUs);
    const ca2 = ratio(aa.other.cpuPerOpUs, aa.a.cpuPerOpUs);
    r.rateB.push(rb);
    r.rateA2.push(ra2);
    r.cpuB.push(cb);
    r.cpuA2.push(ca2);
    const loadAb = sum(ab.a.loadCores, ab.other.loadCores);
    const loadAa = sum(aa.a.loadCores, aa.other.loadCores);
    for (const pair of [ab, aa]) {
      r.server.push(sum(pair.a.serverCores, pair.other.serverCores));
      r.load.push(sum(pair.a.loadCores, pair.other.loadCores));
      // Both clients measured the same core over nearly the same time.
      r.other.push(pair.a.otherCores);
    }
    lines.push(
      `| ${round} | ${first} | ${formatRps(ab.a.rate)} | ${
        formatRps(ab.other.rate)
      } | ${formatRatio3(rb)} | ${formatRps(aa.a.rate)} | ${
        formatRps(aa.other.rate)
      } | ${formatRatio3(ra2)} | ${us(ab.a.cpuPerOpUs)} | ${
        us(ab.other.cpuPerOpUs)
      } | ${formatRatio3(cb)} | ${us(aa.a.cpuPerOpUs)} | ${
        us(aa.other.cpuPerOpUs)
      } | ${formatRatio3(ca2)} | ${formatCores(loadAb)} / ${
        formatCores(loadAa)
      } |`,
    );
  }
  const summary: SimSummary = {
    rateBOverA: spread(r.rateB),
    rateA2OverA: spread(r.rateA2),
    cpuBOverA: spread(r.cpuB),
    cpuA2OverA: spread(r.cpuA2),
    serverCores: spread(r.server),
    loadCores: spread(r.load),
    otherCores: spread(r.other),
  };
  const pick = (f: (round: SimRound) => number | null) =>
    median(
      rounds.map(f).filter((v): v is number => v !== null),
    );
  lines.push(
    `| median | | ${formatRps(pick((x) => x.ab.a.rate))} | ${
      formatRps(pick((x) => x.ab.other.rate))
    } | **${formatRatio3(summary.rateBOverA.median)}** | ${
      formatRps(pick((x) => x.aa.a.rate))
    } | ${formatRps(pick((x) => x.aa.other.rate))} | ${
      formatRatio3(summary.rateA2OverA.median)
    } | ${us(pick((x) => x.ab.a.cpuPerOpUs))} | ${
      us(pick((x) => x.ab.other.cpuPerOpUs))
    } | **${formatRatio3(summary.cpuBOverA.median)}** | ${
      us(pick((x) => x.aa.a.cpuPerOpUs))
    } | ${us(pick((x) => x.aa.other.cpuPerOpUs))} | ${
      formatRatio3(summary.cpuA2OverA.median)
    } | ${formatCores(summary.loadCores.median)} |`,
    "",
    ...ratioLines(spec, summary, formatRatio3),
    `- cores used per pair (medians): both servers ${
      formatCores(summary.serverCores.median)
    }, both load clients ${formatCores(summary.loadCores.median)} (at most ${
      formatCores(summary.loadCores.max)
    })` +
      (summary.otherCores.n === 0
        ? ""
        : `, other processes on the servers' core ${
          formatCores(summary.otherCores.median)
        }`) +
      ". Caveat: when the load clients, not the servers, are the " +
      "bottleneck (both clients near a full core together, or the servers' " +
      "core well short of full), each server gets what its client can send " +
      "and the ratios are pulled toward 1.00x" +
      ((summary.loadCores.median ?? 0) > 0.9 ||
          (summary.serverCores.median ?? 1) < 0.9
        ? ": that is the case in this run; read the server CPU per " +
          `${spec.op} rather than the ${spec.unit}.`
        : "."),
  );
  const failed = rounds.flatMap((x) => [x.ab.a, x.ab.other, x.aa.a, x.aa.other])
    .filter((f) => f.error !== undefined);
  if (failed.length > 0) {
    lines.push(
      `- ${failed.length} measurements failed: ${
        failed.slice(0, 2).map((f) => f.error).join("; ")
      }`,
    );
  }
  return { lines, summary };
}

// ----------------------------------------------------------------- C10K

/** One C10K run, reduced to what the A/B needs. */
interface C10kSample {
  round: number;
  side: Side;
  position: number;
  /** Bytes per idle connection, young generation excluded. */
  bytesNoYoung: number | null;
  /** Bytes per idle connection of RSS alone (for reference). */
  bytesRss: number | null;
  /** Young-generation growth per idle connection (subtracted above). */
  bytesYoung: number | null;
  run?: C10kRun;
  error?: string;
}

async function runC10k(
  revisions: Record<Side, Revision>,
  opts: Options,
): Promise<{ samples: C10kSample[]; setup: string }> {
  const n = opts.idle;
  const need = n + 400;
  let limits = await fdLimits();
  if (limits !== null && limits.soft < need && limits.hard >= need) {
    // Children inherit the soft limit: raise ours (prlimit, util-linux).
    const want = Math.min(Math.max(need, 20_000), limits.hard);
    try {
      await run("prlimit", [`--pid=${Deno.pid}`, `--nofile=${want}:`]);
    } catch (error) {
      console.error(`c10k: could not raise the open files limit: ${error}`);
    }
    limits = await fdLimits();
  }
  if (limits !== null && limits.soft < need) {
    throw new Error(
      `the soft limit on open files is ${limits.soft} (hard ${limits.hard}); ` +
        `${n} idle connections need ${need}: 'ulimit -n ${need}' first, or --idle ${
          Math.max(1, limits.soft - 400)
        }`,
    );
  }
  const range = await portRange();
  if (range !== null && range[1] - range[0] + 1 < n + 1000) {
    throw new Error(
      `the ephemeral port range ${range[0]}-${
        range[1]
      } is too small for ${n} connections`,
    );
  }
  const cores = await defaultPin(undefined);
  const c10kOpts: C10kOptions = {
    ...C10K_DEFAULTS,
    connections: n,
    rounds: opts.rounds,
    kinds: ["evthread"],
    // Latency is not reported here: one connection, as before.
    active: [1],
    pin: cores,
  };
  const setup = cores === null
    ? "not pinned"
    : `server and client on core ${cores[0]}`;
  const samples: C10kSample[] = [];
  for (let round = 0; round < opts.rounds; round++) {
    if (interrupted.signal.aborted) break;
    for (const [position, side] of rotated(SIDES, round).entries()) {
      const base = { round: round + 1, side, position };
      try {
        const r = await runOnce("evthread", round + 1, c10kOpts, {
          script: `${revisions[side].dir}/bench/c10k/_server.ts`,
          v8Flags: SEMI_SPACE_FLAGS,
          label: side,
        });
        const young = (r.loaded.newSpace - r.baseline.newSpace) / n;
        const rss = (r.loaded.rss - r.baseline.rss) / n;
        samples.push({
          ...base,
          bytesNoYoung: rss - young,
          bytesRss: rss,
          bytesYoung: young,
          run: r,
        });
        console.error(
          `c10k round ${round + 1}/${opts.rounds} ${side.padEnd(2)} ${
            bytesPer(rss - young)
          }/conn without the young generation (RSS ${bytesPer(rss)}, young ${
            bytesPer(young)
          }); ${r.seconds} s`,
        );
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        samples.push({
          ...base,
          bytesNoYoung: null,
          bytesRss: null,
          bytesYoung: null,
          error: message,
        });
        console.error(
          `c10k round ${round + 1}/${opts.rounds} ${side} FAILED: ${message}`,
        );
      }
    }
  }
  return { samples, setup };
}

interface C10kSummary {
  bMinusA: Spread;
  a2MinusA: Spread;
  rssBMinusA: Spread;
}

function c10kReport(
  samples: C10kSample[],
  opts: Options,
): { lines: string[]; summary: C10kSummary } {
  const signed = (v: number | null) =>
    v === null ? "n/a" : `${v >= 0 ? "+" : "-"}${bytesPer(Math.abs(v))}`;
  const lines = [
    "| round | order | A, bytes/conn | B | A2 | B - A | A2 - A | young/conn, A | B | A2 |",
    "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  const diffB: (number | null)[] = [];
  const diffA2: (number | null)[] = [];
  const diffRss: (number | null)[] = [];
  const minus = (x: number | null | undefined, y: number | null | undefined) =>
    x === null || x === undefined || y === null || y === undefined
      ? null
      : x - y;
  for (const [i, round] of byRound(samples, opts.rounds).entries()) {
    const a = round.get("A");
    const b = round.get("B");
    const a2 = round.get("A2");
    const order = [...round.values()].sort((x, y) => x.position - y.position)
      .map((s) => s.side).join(" ");
    const db = minus(b?.bytesNoYoung, a?.bytesNoYoung);
    const da2 = minus(a2?.bytesNoYoung, a?.bytesNoYoung);
    diffB.push(db);
    diffA2.push(da2);
    diffRss.push(minus(b?.bytesRss, a?.bytesRss));
    lines.push(
      `| ${i + 1} | ${order} | ${bytesPer(a?.bytesNoYoung ?? null)} | ${
        bytesPer(b?.bytesNoYoung ?? null)
      } | ${bytesPer(a2?.bytesNoYoung ?? null)} | ${signed(db)} | ${
        signed(da2)
      } | ${bytesPer(a?.bytesYoung ?? null)} | ${
        bytesPer(b?.bytesYoung ?? null)
      } | ${bytesPer(a2?.bytesYoung ?? null)} |`,
    );
  }
  const summary: C10kSummary = {
    bMinusA: spread(diffB),
    a2MinusA: spread(diffA2),
    rssBMinusA: spread(diffRss),
  };
  const side = (name: Side, pick: (s: C10kSample) => number | null) =>
    median(
      samples.filter((s) => s.side === name).map(pick).filter((
        v,
      ): v is number => v !== null),
    );
  const med = summary.bMinusA.median;
  const noise = summary.a2MinusA.n === 0 ? null : Math.max(
    Math.abs(summary.a2MinusA.min!),
    Math.abs(summary.a2MinusA.max!),
  );
  lines.push(
    `| median | | ${bytesPer(side("A", (s) => s.bytesNoYoung))} | ${
      bytesPer(side("B", (s) => s.bytesNoYoung))
    } | ${bytesPer(side("A2", (s) => s.bytesNoYoung))} | **${signed(med)}** | ${
      signed(summary.a2MinusA.median)
    } | ${bytesPer(side("A", (s) => s.bytesYoung))} | ${
      bytesPer(side("B", (s) => s.bytesYoung))
    } | ${bytesPer(side("A2", (s) => s.bytesYoung))} |`,
    "",
    `- B - A, bytes per idle connection without the young generation: ${
      formatSpread(summary.bMinusA, signed)
    }; A/A control (A2 - A): ${formatSpread(summary.a2MinusA, signed)}.`,
    `- within ${BYTES_TOLERANCE} B: ${
      med === null
        ? "n/a"
        : `${Math.abs(med) <= BYTES_TOLERANCE ? "yes" : "**no**"} (B uses ${
          bytesPer(Math.abs(med))
        } ${med <= 0 ? "less" : "more"} per idle connection than A${
          med === 0 ? "" : med < 0 ? ": better" : ": worse"
        })`
    }` +
      (noise === null
        ? "."
        : `; the A/A control strays up to ${bytesPer(noise)}` +
          (noise > BYTES_TOLERANCE
            ? `: more than ${BYTES_TOLERANCE} B, so this run cannot resolve it; use more rounds or more idle connections.`
            : ".")),
    `- for reference, RSS alone (young generation included), B - A: ${
      formatSpread(summary.rssBMinusA, signed)
    }.`,
  );
  const failed = samples.filter((s) => s.error !== undefined);
  if (failed.length > 0) {
    lines.push(
      `- ${failed.length} runs failed: ${
        failed.slice(0, 3).map((s) => `${s.side} round ${s.round}: ${s.error}`)
          .join("; ")
      }`,
    );
  }
  return { lines, summary };
}

// ----------------------------------------------------------------- main

async function main(): Promise<number> {
  const opts = parseOptions(Deno.args);
  const machine = await machineInfo();
  const pin = await placement(opts.pin);
  const tool = opts.what.includes("http")
    ? await chooseHttpTool(opts.load)
    : null;

  const onInterrupt = () => {
    interrupted.abort();
    killChildren();
    cleanUp();
  };
  // Before withServers' own listener, which exits.
  Deno.addSignalListener("SIGINT", onInterrupt);
  globalThis.addEventListener("unload", cleanUp);

  const out: string[] = [...versionLines(machine), ""];
  const report: Record<string, unknown> = {
    machine,
    config: { ...opts, pin: pin.note, tool: tool?.tool ?? null },
  };
  let measured = 0;
  try {
    tempDir = await run("mktemp", ["-d", "-t", "evthread-ab.XXXXXX"]);
    const a = await checkOut(opts.a, `${tempDir}/a`);
    const b = await checkOut(opts.b, `${tempDir}/b`);
    const revisions: Record<Side, Revision> = { A: a, B: b, A2: a };
    const width = Math.max(opts.a.length, opts.b.length);
    const estimate = (opts.what.includes("echo") ? 1 : 0) +
      (opts.what.includes("http") ? 1 : 0);
    // Rounds of --seconds per family: 3 interleaved, 2 simultaneous pairs.
    const perRound = { interleaved: 3, simultaneous: 2, both: 5 }[opts.method];
    console.error(
      `ab: A = ${a.short}, B = ${b.short}; ${opts.what.join(", ")}; ` +
        `${opts.rounds} rounds (${opts.method}) x ${opts.seconds} s; load ` +
        `families about ${
          Math.ceil(
            estimate *
              (3 * opts.warmup + perRound * opts.rounds * opts.seconds),
          )
        } s` +
        (opts.what.includes("c10k")
          ? `, C10K ${opts.rounds * 3} runs of ${opts.idle} idle connections`
          : ""),
    );
    out.push(
      "A/B of two revisions in one run (bench/ab.ts)",
      "",
      `- A:  ${opts.a.padEnd(width)} = ${a.short} ${a.subject}`,
      `- B:  ${opts.b.padEnd(width)} = ${b.short} ${b.subject}`,
      "- A2: a second server of A, the A/A control: its figures against A " +
        "show the noise of this run.",
      `- Servers: this checkout's bench/echo, bench/http and bench/c10k ` +
        `scripts (git ${await gitRevision()}), copied into a temporary git ` +
        "worktree of each revision so that they import that revision's " +
        "library; one process each. The load client is this checkout's, the " +
        `same for all. Pinning: ${pin.note}. Every server warmed up for ` +
        `${opts.warmup} s, ` +
        `then ${opts.rounds} rounds of ${opts.seconds} s` +
        (opts.method === "simultaneous"
          ? ", simultaneous (below)"
          : `, the order of A, B, A2 rotating each round` +
            (opts.method === "both"
              ? "; then as many simultaneous ones"
              : "")) +
        ". Server CPU: user + system time of /proc/PID/stat.",
    );
    report.revisions = { A: a, B: b };

    const specs: LoadSpec[] = [];
    if (opts.what.includes("echo")) specs.push(echoSpec());
    if (opts.what.includes("http") && tool !== null) {
      specs.push(httpSpec(tool.tool, opts.connections));
    }
    for (const spec of specs) {
      out.push("", `## ${spec.family}: ${spec.describe}`, "");
      try {
        const { samples, simultaneous } = await runFamily(
          spec,
          revisions,
          opts,
          pin,
        );
        const entry: Record<string, unknown> = {};
        if (opts.method !== "simultaneous") {
          const { lines, summary } = loadReport(spec, samples, opts);
          out.push(...lines);
          Object.assign(entry, { summary, samples });
          measured += samples.filter((s) => s.rate !== null).length;
        }
        if (opts.method !== "interleaved") {
          const { lines, summary } = simReport(spec, simultaneous);
          if (opts.method === "both") out.push("");
          out.push(...lines);
          entry.simultaneous = { summary, rounds: simultaneous };
          measured += simultaneous.filter((r) =>
            r.ab.a.rate !== null && r.ab.other.rate !== null
          ).length;
        }
        report[spec.family] = entry;
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        out.push(`FAILED: ${message}`);
        report[spec.family] = { error: message };
      }
    }
    if (opts.what.includes("c10k") && !interrupted.signal.aborted) {
      out.push(
        "",
        `## c10k: ${opts.idle.toLocaleString("en-US")} idle connections ` +
          `(bench/c10k: evthread echo server, ${C10K_DEFAULTS.buffer} B buffer)`,
        "",
      );
      try {
        const { samples, setup } = await runC10k(revisions, opts);
        out.push(
          "Bytes per idle connection with V8's young generation excluded: " +
            "((RSS - young) with N idle - (RSS - young) with 0) / N, both " +
            "after forced GC; young = resident new_space + " +
            "new_large_object_space (V8's heap space statistics). Both servers " +
            `also run with --min-semi-space-size=${SEMI_SPACE_MB} ` +
            `--max-semi-space-size=${SEMI_SPACE_MB} (MB), so that V8 cannot ` +
            "grow the young generation much between the two states; what it " +
            "grows is subtracted (the young/conn columns). A fresh server per " +
            `run, warmed up by c10k's own warm-up; ${setup}.`,
          "",
        );
        const { lines, summary } = c10kReport(samples, opts);
        out.push(...lines);
        report.c10k = {
          method: "(rss - young)(N) - (rss - young)(0), per connection",
          semiSpaceMB: SEMI_SPACE_MB,
          summary,
          samples,
        };
        measured += samples.filter((s) => s.bytesNoYoung !== null).length;
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        out.push(`FAILED: ${message}`);
        report.c10k = { error: message };
      }
    }
  } catch (error) {
    console.log(out.join("\n"));
    console.error(`ab: ${error instanceof Error ? error.message : error}`);
    return 1;
  } finally {
    cleanUp();
    Deno.removeSignalListener("SIGINT", onInterrupt);
  }
  console.log(out.join("\n"));
  await saveResults({ "ab.json": toJson(report) });
  return measured > 0 ? 0 : 1;
}

if (import.meta.main) {
  Deno.exitCode = await main();
}
