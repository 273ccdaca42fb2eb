/**
 * Load benchmark of echo servers, each in its own process:
 *
 * 1. `_evthread_server.ts`: this library (`EvLoop.listen`, `recv` / `send`),
 * 2. `_raw_server.ts`: a hand-rolled `Deno.listen` + `conn.read` / `conn.write` loop,
 *    run twice (`raw` and `raw2`): the second is the A/A control,
 * 3. `_node_server.ts`: `node:net` `createServer` with `data` callbacks.
 *
 * Each measurement runs `_load.ts` as a fresh subprocess against one server,
 * and reads the server's CPU time (user + system, `/proc/PID/stat`) before
 * and after it: CPU per round trip is the steadiest figure on a noisy host.
 * By default the servers run on the last core and the load clients on core 0
 * (`--pin auto`, when `taskset` runs). Every server is warmed up first.
 *
 * Methods (`--method`, default `both`):
 * - `interleaved`: every round runs every scenario on every server, one at a
 *   time, the server order rotating each round; the table reports medians.
 * - `simultaneous`: per round and ping-pong scenario, the pairs (raw,
 *   evthread) and (raw, raw2), one after the other (the first alternating):
 *   the two servers of a pair on the same core, each driven by its own load
 *   client, both started at the same moment. rt/s(evthread)/rt/s(raw) is
 *   their relative cost per round trip; raw2/raw is the A/A control.
 *
 * `--memory on` (the default) adds the memory under load (`only`: nothing
 * else): fresh evthread
 * and raw servers, pinned as above, each driven at the same moment by its own
 * client streaming 64 KiB writes both ways on 100 connections for
 * `--memory-seconds`; it reports each server's RSS at start, at its peak
 * (VmHWM) and 2 s after the load ended, then the same for raw and raw2 (the
 * A/A control).
 *
 * Usage:
 * ```sh
 * deno task bench:echo [--rounds 5] [--seconds 3] [--warmup 0.25] \
 *   [--servers evthread,raw,raw2,node] [--pin auto|off] \
 *   [--method interleaved|simultaneous|both] [--memory on|off|only] [--memory-seconds 5]
 * # which is
 * deno run --allow-net --allow-run --allow-read --allow-env --allow-write=bench/results \
 *   bench/echo/echo.ts [options]
 * ```
 * Without `--allow-write` the JSON results are not saved (a warning says so);
 * everything else is printed.
 *
 * @module
 */

import type { LoadResult } from "./_load.ts";
import {
  choice,
  commandOutput,
  denoRun,
  formatCores,
  formatRatio,
  formatRatio3,
  list,
  loadavg,
  machineInfo,
  median,
  noteFailures,
  number,
  parseArgs,
  PIN,
  type Placement,
  placement,
  ratio,
  rotated,
  ROUNDS,
  runLoad,
  saveResults,
  SECONDS,
  type ServerProcess,
  toJson,
  versionLines,
  WARMUP,
  withServers,
} from "../_common/mod.ts";

type ServerName = "evthread" | "raw" | "raw2" | "node";
type Method = "interleaved" | "simultaneous" | "both";
/** The scenarios of the interleaved rounds. */
const SCENARIOS = ["pingpong-1", "pingpong-100", "stream"] as const;
type ScenarioName = typeof SCENARIOS[number] | "stream-100";
/** The scenarios of the simultaneous rounds. */
const SIM_SCENARIOS = ["pingpong-1", "pingpong-100"] as const;

const SERVERS: readonly ServerName[] = ["evthread", "raw", "raw2", "node"];
const RAW_SERVER = new URL("./_raw_server.ts", import.meta.url);
const SERVER_FILES: Record<ServerName, URL> = {
  evthread: new URL("./_evthread_server.ts", import.meta.url),
  raw: RAW_SERVER,
  raw2: RAW_SERVER,
  node: new URL("./_node_server.ts", import.meta.url),
};
const LOAD_CLIENT = new URL("./_load.ts", import.meta.url);
const SCENARIO_LABELS: Record<ScenarioName, string> = {
  "pingpong-1": "ping-pong 64 B, 1 conn (round trips/s)",
  "pingpong-100": "ping-pong 64 B, 100 conns (round trips/s)",
  "stream": "stream 64 KiB writes both ways, 1 conn (MB/s)",
  "stream-100": "stream 64 KiB writes both ways, 100 conns (MB/s)",
};
/** Seconds of ping-pong-100 load each server gets before the first round. */
const WARM_SECONDS = 2;
/** Seconds after the memory load ends before the "after" RSS is read. */
const SETTLE_SECONDS = 2;
const RSS_SAMPLE_MS = 200;

/** What one load run measured on one server. */
interface Figures {
  value: number | null;
  unit: string | null;
  count: number | null;
  /** Server CPU (user + system) per round trip or per MB, in µs. */
  cpuPerOpUs: number | null;
  /** Cores the server used (its CPU seconds over the wall time). */
  serverCores: number | null;
  /** Cores its load client used. */
  loadCores: number | null;
  error?: string;
}

/** One interleaved measurement. */
interface Sample extends Figures {
  round: number;
  scenario: ScenarioName;
  server: ServerName;
  /** Position of this server in the round's order (0-based). */
  position: number;
}

/** One simultaneous round of one scenario: (raw, evthread) and (raw, raw2). */
interface SimRound {
  round: number;
  scenario: ScenarioName;
  first: "raw,evthread" | "raw,raw2";
  ab: { raw: Figures; other: Figures };
  aa: { raw: Figures; other: Figures };
}

/** RSS of one server in the memory run, in bytes. */
interface MemoryFigures {
  server: ServerName;
  start: number | null;
  peak: number | null;
  after: number | null;
  load: Figures;
}

interface Options {
  rounds: number;
  seconds: number;
  warmup: number;
  servers: ServerName[];
  pin: "auto" | "off";
  method: Method;
  memory: "on" | "off" | "only";
  memorySeconds: number;
}

function parseOptions(args: string[]): Options {
  return parseArgs(args, {
    rounds: ROUNDS,
    seconds: SECONDS,
    warmup: WARMUP,
    servers: list(SERVERS),
    pin: PIN,
    method: choice(["interleaved", "simultaneous", "both"] as const),
    memory: choice(["on", "off", "only"] as const),
    memorySeconds: number(0, { exclusive: true }),
  }, {
    rounds: 5,
    seconds: 3,
    warmup: 0.25,
    servers: [...SERVERS],
    pin: "auto",
    method: "both",
    memory: "on",
    memorySeconds: 5,
  }, { usage: "deno task bench:echo [options]" });
}

function failed(error: string): Figures {
  return {
    value: null,
    unit: null,
    count: null,
    cpuPerOpUs: null,
    serverCores: null,
    loadCores: null,
    error,
  };
}

/**
 * Runs one load client against `server` and reads the CPU time of the
 * server (and of `partners`, servers loaded at the same moment).
 */
async function measure(
  server: ServerProcess<ServerName>,
  scenario: ScenarioName,
  seconds: number,
  warmup: number,
  pin: Placement,
  partners: readonly ServerProcess<ServerName>[] = [],
): Promise<Figures> {
  if (server.exited) return failed(`${server.name} server has exited`);
  let result;
  try {
    // The client stops itself after seconds + warmup + 10; this is the
    // backstop.
    result = await runLoad(
      Deno.execPath(),
      denoRun(LOAD_CLIENT, [
        "--port",
        String(server.port),
        "--scenario",
        scenario,
        "--seconds",
        String(seconds),
        "--warmup",
        String(warmup),
      ]),
      {
        core: pin.load,
        backstopSeconds: seconds + warmup + 20,
        watch: [server.pid, ...partners.map((p) => p.pid)],
      },
    );
  } catch (error) {
    return failed(String(error));
  }
  const out = result.stdout.split("\n").at(-1) ?? "";
  if (result.code !== 0 || out === "") {
    return failed(`exit ${result.code}: ${result.stderr || out}`);
  }
  const load = JSON.parse(out) as LoadResult;
  const cpu = result.cpu?.process(server.pid) ?? null;
  const wall = result.cpu?.wall ?? 0;
  // Per round trip, or per MB streamed.
  const ops = load.unit === "MB/s" ? load.count / 1e6 : load.count;
  return {
    value: load.value,
    unit: load.unit,
    count: load.count,
    cpuPerOpUs: cpu !== null && ops > 0
      ? cpu * seconds / (seconds + warmup) / ops * 1e6
      : null,
    serverCores: cpu !== null && wall > 0 ? cpu / wall : null,
    loadCores: result.loadCpu !== null && wall > 0
      ? result.loadCpu / wall
      : null,
  };
}

function formatValue(value: number | null, scenario: ScenarioName): string {
  if (value === null) return "n/a";
  return scenario.startsWith("stream")
    ? value.toFixed(0)
    : Math.round(value).toLocaleString("en-US");
}

function formatUs(value: number | null): string {
  return value === null ? "n/a" : value.toFixed(2);
}

function describe(scenario: ScenarioName, f: Figures): string {
  return f.value === null
    ? `FAILED ${f.error}`
    : `${formatValue(f.value, scenario)} ${f.unit}, ${
      formatUs(f.cpuPerOpUs)
    } µs CPU/op, server ${formatCores(f.serverCores)}, load ${
      formatCores(f.loadCores)
    }`;
}

/** The median and range of the non-null values, as `0.98x (0.95-1.01)`. */
function spread(values: (number | null)[]): string {
  const v = values.filter((x): x is number => x !== null);
  if (v.length === 0) return "n/a";
  return `${formatRatio3(median(v))} (${formatRatio3(Math.min(...v))}-${
    formatRatio3(Math.max(...v))
  })`;
}

/** 2 s of ping-pong on 100 connections on each server, not counted. */
async function warmUp(
  servers: ServerProcess<ServerName>[],
  pin: Placement,
): Promise<void> {
  for (const server of servers) {
    const f = await measure(server, "pingpong-100", WARM_SECONDS, 0, pin);
    console.error(
      `warm-up ${server.name.padEnd(8)} ${describe("pingpong-100", f)}`,
    );
  }
}

async function runInterleaved(
  servers: ServerProcess<ServerName>[],
  opts: Options,
  pin: Placement,
): Promise<Sample[]> {
  const samples: Sample[] = [];
  for (let round = 0; round < opts.rounds; round++) {
    const order = rotated(servers, round);
    for (const scenario of SCENARIOS) {
      for (const [position, server] of order.entries()) {
        const f = await measure(
          server,
          scenario,
          opts.seconds,
          opts.warmup,
          pin,
        );
        samples.push({
          round: round + 1,
          scenario,
          server: server.name,
          position,
          ...f,
        });
        console.error(
          `round ${round + 1}/${opts.rounds} ${scenario.padEnd(12)} ${
            server.name.padEnd(8)
          } ${describe(scenario, f)}`,
        );
      }
    }
  }
  return samples;
}

async function runSimultaneous(
  servers: ServerProcess<ServerName>[],
  opts: Options,
  pin: Placement,
): Promise<SimRound[]> {
  const by = new Map(servers.map((s) => [s.name, s]));
  const raw = by.get("raw");
  const evthread = by.get("evthread");
  const raw2 = by.get("raw2");
  if (raw === undefined || evthread === undefined || raw2 === undefined) {
    console.error("simultaneous rounds need the servers evthread, raw, raw2");
    return [];
  }
  const rounds: SimRound[] = [];
  for (let round = 0; round < opts.rounds; round++) {
    for (const scenario of SIM_SCENARIOS) {
      const abFirst = round % 2 === 0;
      const pairs = abFirst ? [evthread, raw2] : [raw2, evthread];
      const result = {} as Record<"ab" | "aa", SimRound["ab"]>;
      for (const other of pairs) {
        // Which client is spawned first alternates every other round.
        const otherFirst = Math.floor(round / 2) % 2 === 1;
        const run = (x: ServerProcess<ServerName>, y: typeof x) =>
          measure(x, scenario, opts.seconds, opts.warmup, pin, [y]);
        const [fr, fo] = otherFirst
          ? (await Promise.all([run(other, raw), run(raw, other)])).reverse()
          : await Promise.all([run(raw, other), run(other, raw)]);
        result[other === evthread ? "ab" : "aa"] = { raw: fr!, other: fo! };
        console.error(
          `sim ${round + 1}/${opts.rounds} ${scenario.padEnd(12)} raw      ${
            describe(scenario, fr!)
          }\nsim ${round + 1}/${opts.rounds} ${scenario.padEnd(12)} ${
            other.name.padEnd(8)
          } ${describe(scenario, fo!)}`,
        );
      }
      rounds.push({
        round: round + 1,
        scenario,
        first: abFirst ? "raw,evthread" : "raw,raw2",
        ab: result.ab,
        aa: result.aa,
      });
    }
  }
  return rounds;
}

/** VmRSS and VmHWM of each process, in bytes (null: unknown). */
async function rss(
  pids: readonly number[],
): Promise<Map<number, { rss: number; hwm: number }>> {
  const found = new Map<number, { rss: number; hwm: number }>();
  for (const pid of pids) {
    const text = await commandOutput("cat", [`/proc/${pid}/status`], "");
    const kb = (field: string) =>
      Number(new RegExp(`^${field}:\\s*(\\d+) kB`, "m").exec(text)?.[1]);
    const r = kb("VmRSS");
    const h = kb("VmHWM");
    if (Number.isFinite(r) && Number.isFinite(h)) {
      found.set(pid, { rss: r * 1024, hwm: h * 1024 });
    }
  }
  return found;
}

/**
 * Fresh servers `names` (two), each driven at the same moment by its own
 * client streaming on 100 connections; their RSS at start, peak and after.
 */
async function runMemoryPair(
  names: [ServerName, ServerName],
  opts: Options,
  pin: Placement,
): Promise<MemoryFigures[]> {
  const figures: MemoryFigures[] = [];
  const serverArgs = (name: ServerName) =>
    denoRun(SERVER_FILES[name], ["--port", "0"]);
  await withServers(names, serverArgs, pin.server, async (servers) => {
    const pids = servers.map((s) => s.pid);
    const start = await rss(pids);
    const peakSeen = new Map<number, number>();
    let loading = true;
    const sampler = (async () => {
      while (loading) {
        for (const [pid, m] of await rss(pids)) {
          peakSeen.set(pid, Math.max(peakSeen.get(pid) ?? 0, m.rss));
        }
        await new Promise((r) => setTimeout(r, RSS_SAMPLE_MS));
      }
    })();
    const loads = await Promise.all(
      servers.map((s, i) =>
        measure(s, "stream-100", opts.memorySeconds, 0, pin, [servers[1 - i]!])
      ),
    );
    loading = false;
    await sampler;
    const atEnd = await rss(pids);
    for (const [pid, m] of atEnd) {
      peakSeen.set(pid, Math.max(peakSeen.get(pid) ?? 0, m.hwm));
    }
    await new Promise((r) => setTimeout(r, SETTLE_SECONDS * 1000));
    const after = await rss(pids);
    for (const [i, s] of servers.entries()) {
      figures.push({
        server: s.name,
        start: start.get(s.pid)?.rss ?? null,
        peak: peakSeen.get(s.pid) ?? null,
        after: after.get(s.pid)?.rss ?? null,
        load: loads[i]!,
      });
      console.error(
        `memory ${s.name.padEnd(8)} ${describe("stream-100", loads[i]!)}`,
      );
    }
  });
  return figures;
}

function mb(bytes: number | null): string {
  return bytes === null ? "n/a" : (bytes / 1e6).toFixed(1);
}

function memoryLines(pairs: MemoryFigures[][], opts: Options): string[] {
  const lines = [
    `Memory under load: fresh servers, two at a time on the same core, each ` +
    `driven at the same moment by its own client streaming 64 KiB writes ` +
    `both ways on 100 connections for ${opts.memorySeconds} s; RSS in MB ` +
    `(10^6 B) at start, at the peak (VmHWM) and ${SETTLE_SECONDS} s after ` +
    `the load ended; ratios over the raw loop of the same pair.`,
    "",
    "| pair | server | MB/s | start | peak | after | peak / raw | after / raw |",
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const pair of pairs) {
    const raw = pair.find((f) => f.server === "raw");
    const label = pair.map((f) => f.server).join(", ");
    for (const f of pair) {
      lines.push(
        `| ${label} | ${f.server} | ${
          formatValue(f.load.value, "stream-100")
        } | ${mb(f.start)} | ${mb(f.peak)} | ${mb(f.after)} | ${
          formatRatio(ratio(f.peak, raw?.peak ?? null))
        } | ${formatRatio(ratio(f.after, raw?.after ?? null))} |`,
      );
    }
  }
  return lines;
}

function interleavedLines(samples: Sample[], opts: Options, note: string) {
  const medians = {} as Record<string, Record<string, number | null>>;
  const cpu = {} as Record<string, Record<string, number | null>>;
  const pick = (
    scenario: string,
    server: string,
    f: (s: Sample) => number | null,
  ) =>
    median(
      samples.filter((s) => s.scenario === scenario && s.server === server)
        .map(f).filter((v): v is number => v !== null),
    );
  for (const scenario of SCENARIOS) {
    medians[scenario] = {};
    cpu[scenario] = {};
    for (const server of SERVERS) {
      medians[scenario][server] = pick(scenario, server, (s) => s.value);
      cpu[scenario][server] = pick(scenario, server, (s) => s.cpuPerOpUs);
    }
  }
  // Per-round ratios, for their range.
  const perRound = (scenario: string, a: ServerName, b: ServerName) => {
    const r: (number | null)[] = [];
    for (let round = 1; round <= opts.rounds; round++) {
      const of = (n: ServerName) =>
        samples.find((s) =>
          s.round === round && s.scenario === scenario && s.server === n
        )?.value ?? null;
      r.push(ratio(of(a), of(b)));
    }
    return spread(r);
  };
  const lines = [
    `Interleaved: median of ${opts.rounds} rounds x ${opts.seconds} s, one ` +
    `server at a time, ${note}. Ratios: median of the per-round ratios ` +
    `(range); raw2 / raw is the A/A control. CPU: server user + system µs ` +
    `per round trip (per MB for streams).`,
    "",
    "| scenario | evthread | raw | raw2 | node | evthread / raw | raw2 / raw | CPU evthread | CPU raw | CPU raw2 |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const scenario of SCENARIOS) {
    const m = medians[scenario]!;
    const c = cpu[scenario]!;
    lines.push(
      `| ${SCENARIO_LABELS[scenario]} | ${
        formatValue(m.evthread!, scenario)
      } | ${formatValue(m.raw!, scenario)} | ${
        formatValue(m.raw2!, scenario)
      } | ${formatValue(m.node!, scenario)} | ${
        perRound(scenario, "evthread", "raw")
      } | ${perRound(scenario, "raw2", "raw")} | ${formatUs(c.evthread!)} | ${
        formatUs(c.raw!)
      } | ${formatUs(c.raw2!)} |`,
    );
  }
  return { lines, medians, cpu };
}

function simultaneousLines(rounds: SimRound[], note: string): string[] {
  const lines = [
    `Simultaneous: per round, the pairs (raw, evthread) and (raw, raw2), the ` +
    `first alternating; both servers of a pair on the same core (${note}), ` +
    `each driven by its own load client, both started at the same moment. ` +
    `Median ratio (range) over rounds; raw2 / raw is the A/A control. When ` +
    `both load clients together use near a full core, the clients are the ` +
    `bottleneck and the rate ratio is pulled toward 1.00x: read the CPU ` +
    `per round trip then.`,
    "",
    "| scenario | evthread / raw rt/s | raw2 / raw rt/s | evthread / raw CPU/rt | raw2 / raw CPU/rt | µs CPU/rt evthread, raw, raw2 | load cores (pair) |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const scenario of SIM_SCENARIOS) {
    const rs = rounds.filter((r) => r.scenario === scenario);
    const med = (f: (r: SimRound) => number | null) =>
      median(rs.map(f).filter((v): v is number => v !== null));
    const load = med((r) =>
      r.ab.raw.loadCores === null || r.ab.other.loadCores === null
        ? null
        : r.ab.raw.loadCores + r.ab.other.loadCores
    );
    lines.push(
      `| ${SCENARIO_LABELS[scenario]} | ${
        spread(rs.map((r) => ratio(r.ab.other.value, r.ab.raw.value)))
      } | ${spread(rs.map((r) => ratio(r.aa.other.value, r.aa.raw.value)))} | ${
        spread(rs.map((r) => ratio(r.ab.other.cpuPerOpUs, r.ab.raw.cpuPerOpUs)))
      } | ${
        spread(rs.map((r) => ratio(r.aa.other.cpuPerOpUs, r.aa.raw.cpuPerOpUs)))
      } | ${formatUs(med((r) => r.ab.other.cpuPerOpUs))}, ${
        formatUs(med((r) => r.ab.raw.cpuPerOpUs))
      }, ${formatUs(med((r) => r.aa.other.cpuPerOpUs))} | ${
        formatCores(load)
      } |`,
    );
  }
  return lines;
}

async function main(): Promise<void> {
  const opts = parseOptions(Deno.args);
  const machine = await machineInfo();
  const pin = await placement(opts.pin);
  const only = opts.memory === "only";
  const interleaved = !only && opts.method !== "simultaneous";
  const simultaneous = !only && opts.method !== "interleaved";
  const names = opts.servers;
  const estimate = (only ? 0 : names.length * WARM_SECONDS) +
    (interleaved
      ? opts.rounds * SCENARIOS.length * names.length *
        (opts.seconds + opts.warmup + 0.5)
      : 0) +
    (simultaneous
      ? opts.rounds * SIM_SCENARIOS.length * 2 *
        (opts.seconds + opts.warmup + 0.5)
      : 0) +
    (opts.memory !== "off" ? 2 * (opts.memorySeconds + SETTLE_SECONDS + 2) : 0);
  console.error(
    `echo bench: method ${opts.method}, ${opts.rounds} rounds x ${opts.seconds} s, ` +
      `servers ${names.join(",")}, memory ${opts.memory}; about ${
        Math.ceil(estimate)
      } s; ${pin.note}`,
  );

  let samples: Sample[] = [];
  let simRounds: SimRound[] = [];
  const serverArgs = (name: ServerName) =>
    denoRun(SERVER_FILES[name], ["--port", "0"]);
  if (!only) {
    await withServers(names, serverArgs, pin.server, async (servers) => {
      await warmUp(servers, pin);
      if (interleaved) samples = await runInterleaved(servers, opts, pin);
      if (simultaneous) simRounds = await runSimultaneous(servers, opts, pin);
    });
  }
  const memory: MemoryFigures[][] = [];
  if (opts.memory !== "off") {
    memory.push(await runMemoryPair(["evthread", "raw"], opts, pin));
    memory.push(await runMemoryPair(["raw", "raw2"], opts, pin));
  }

  const lines = [...versionLines(machine), ""];
  let inter;
  if (interleaved) {
    inter = interleavedLines(samples, opts, pin.note);
    lines.push(...inter.lines, "");
  }
  if (simultaneous) lines.push(...simultaneousLines(simRounds, pin.note), "");
  if (memory.length > 0) lines.push(...memoryLines(memory, opts), "");
  console.log(lines.join("\n").trimEnd());

  const failures = [
    ...samples,
    ...simRounds.flatMap((r) => [r.ab.raw, r.ab.other, r.aa.raw, r.aa.other]),
    ...memory.flat().map((m) => m.load),
  ].filter((f) => f.value === null);
  const total = samples.length + simRounds.length * 4 + memory.flat().length;
  noteFailures(failures.length, total);

  const report = {
    machine: { ...machine, loadavgAtEnd: await loadavg() },
    config: { ...opts, pin: pin.note },
    finishedAt: new Date().toISOString(),
    interleaved: inter === undefined
      ? undefined
      : { medians: inter.medians, cpuPerOpUs: inter.cpu, samples },
    simultaneous: simRounds,
    memory,
  };
  await saveResults({ "echo.json": toJson(report) });
  if (failures.length > 0) Deno.exitCode = 1;
}

if (import.meta.main) {
  await main();
}
