/**
 * HTTP/1.1 load benchmark: this library's `serve()` against `Deno.serve`,
 * with the references that price each layer (issue 12). The same
 * hello-world app (every request gets 200 `Hello, World!`, text/plain)
 * runs on each server, each in its own process:
 *
 * - `evthread`, `_evthread_server.ts`: `serve()` from
 *   `@corothread/evthread/http`, a task per connection (straight-line code
 *   on EvLoop / EvSocket), every timeout on;
 * - `raw`, `_raw_server.ts`: no HTTP code, a bare keep-alive loop on
 *   `Deno.Conn` (find the end of each head without rescanning, write a
 *   fixed response: the bytes `serve()` sends), the transport's own cost;
 * - `evsocket`, `_evsocket_server.ts`: the same loop on `EvSocket`
 *   (`readUntil` and `send` with `serve()`'s default timeouts), the socket
 *   layer's cost;
 * - `floor`, `_floor_server.ts`: the raw loop plus what a Fetch handler's
 *   `Response` costs on public APIs (the `Response`, `headers.forEach`,
 *   the body through its stream): the best any `Request -> Response`
 *   server on public APIs can do;
 * - `native`, `_native_server.ts`: `Deno.serve` (hyper, in Rust), the
 *   reference of every ratio; `native2`: a second `Deno.serve` process,
 *   the A/A control (native2 / native should read 1.00x; how far it strays
 *   is the noise of the run);
 * - not run by default (`--servers`): `reactor`, `_reactor_server.ts`, the
 *   same parser as `serve()` on `node:net` `data` callbacks and an explicit
 *   state machine (the reactor paradigm: evthread vs reactor isolates the
 *   paradigm); `node`, `_node_server.ts`: `node:http` as Deno runs it.
 *
 * Load: `wrk -t1 -c100 -d{seconds}s --latency` and `-c1` when `wrk` is on
 * PATH, otherwise `_load.ts` (a Deno keep-alive client over raw sockets,
 * in its own process; `--load deno` forces it). Every server is warmed up
 * first (`--warmup` seconds at 100 connections, not counted: the first
 * rounds after start drift upward as the JIT settles). Then, after
 * /work/shared/notes/measuring.md, one method or both (`--method`):
 *
 * - `interleaved` (the default; the issue's targets are judged on it):
 *   every round measures every server at every connection count, one at a
 *   time, the order rotating each round; per round, rps(X)/rps(Deno.serve)
 *   of that round; the report gives the median and range of those ratios.
 * - `simultaneous`: per round and connection count, each server X paired
 *   with `Deno.serve`: both on the same core, each driven by its own load
 *   client, both clients started at the same moment (which is spawned
 *   first alternates), so that host noise hits both alike;
 *   rps(X)/rps(Deno.serve) is their relative cost per request. It is
 *   pulled toward 1.00x when a load client, not its server, is the
 *   bottleneck: the report gives the load clients' CPU.
 * - `both`: the interleaved rounds, then the simultaneous ones.
 *
 * Around each measurement the script reads the server's CPU time (user +
 * system ticks of `/proc/PID/stat`: `../_common/cpu.ts`) and reports the
 * server's CPU per request (every request wrk counts was served in the
 * window; the Deno client runs with no warm-up of its own here), the
 * steadiest figure on a noisy host; and p50 / p99 latency from the client.
 * Pinned (the default when `taskset` runs and there are 2 cores): the
 * servers on the last core, the load clients on core 0; the report says
 * how much of the servers' core other processes took.
 *
 * Deno has no thread per connection: every server here runs its JavaScript
 * on one thread, and on a machine with few cores `wrk` takes one of them.
 *
 * Usage:
 * ```sh
 * deno run --allow-net --allow-run --allow-read --allow-env \
 *   --allow-write=bench/results,bench/http/http.svg bench/http/http.ts \
 *   [--rounds 5] [--seconds 3] [--warmup 2] [--load auto|wrk|deno] \
 *   [--pin auto|off] [--method interleaved|simultaneous|both] \
 *   [--servers evthread,raw,evsocket,floor,native,native2,reactor,node]
 * ```
 * Writes `bench/results/http.json` and, after interleaved rounds,
 * `bench/results/http.svg` (needs `--allow-write=bench/results`), and copies
 * the chart to `bench/http/http.svg`, which the README shows (needs
 * `--allow-write=bench/http/http.svg`; without it a note says so). Defaults
 * (interleaved) take about 3.4 minutes; `--method both` about 6.
 *
 * @module
 */

import {
  canWrite,
  choice,
  chooseHttpTool,
  denoRun,
  describeLoad,
  formatCores,
  formatMs,
  formatPercent,
  formatRatio,
  formatRps,
  formatSpread,
  httpClient,
  type HttpTool,
  interrupted,
  list,
  loadavg,
  type LoadClient,
  type LoadFigures,
  machineInfo,
  measureLoad,
  measurePair,
  median,
  noteFailures,
  parseArgs,
  PIN,
  type Placement,
  placement,
  ratio,
  rotated,
  ROUNDS,
  saveResults,
  type Spread,
  spread,
  toJson,
  versionLines,
  WARMUP,
  WHOLE_SECONDS,
  withServers,
} from "../_common/mod.ts";

type ServerName =
  | "evthread"
  | "raw"
  | "evsocket"
  | "floor"
  | "native"
  | "native2"
  | "reactor"
  | "node";
type Method = "interleaved" | "simultaneous" | "both";

const SERVERS: readonly ServerName[] = [
  "evthread",
  "raw",
  "evsocket",
  "floor",
  "native",
  "native2",
  "reactor",
  "node",
];
/** About 3.4 minutes with the default rounds (issue 12's layers). */
const DEFAULT_SERVERS: readonly ServerName[] = [
  "evthread",
  "raw",
  "evsocket",
  "floor",
  "native",
  "native2",
];
/** The reference of every ratio. */
const REFERENCE: ServerName = "native";
const CONNECTIONS: readonly number[] = [100, 1];
const SERVER_FILES: Record<ServerName, URL> = {
  evthread: new URL("./_evthread_server.ts", import.meta.url),
  raw: new URL("./_raw_server.ts", import.meta.url),
  evsocket: new URL("./_evsocket_server.ts", import.meta.url),
  floor: new URL("./_floor_server.ts", import.meta.url),
  native: new URL("./_native_server.ts", import.meta.url),
  native2: new URL("./_native_server.ts", import.meta.url),
  reactor: new URL("./_reactor_server.ts", import.meta.url),
  node: new URL("./_node_server.ts", import.meta.url),
};
/** The chart the README shows. */
const SVG_COPY = new URL("./http.svg", import.meta.url);
const SERVER_LABELS: Record<ServerName, string> = {
  evthread: "evthread serve() (task per connection)",
  raw: "raw loop on Deno.Conn (no HTTP code)",
  evsocket: "the raw loop on EvSocket (serve()'s timeouts)",
  floor: "the raw loop + a Response's public-API cost (the floor)",
  native: "Deno.serve (native)",
  native2: "Deno.serve, 2nd process (A/A control)",
  reactor: "reactor: same parser on node:net callbacks",
  node: "node:http",
};
const SHORT_LABELS: Record<ServerName, string> = {
  evthread: "evthread serve()",
  raw: "raw Deno.Conn loop",
  evsocket: "EvSocket loop",
  floor: "Fetch API floor",
  native: "Deno.serve",
  native2: "Deno.serve #2",
  reactor: "reactor (node:net)",
  node: "node:http",
};
const COLORS: Record<ServerName, string> = {
  evthread: "#2f6fb0",
  raw: "#c9a227",
  evsocket: "#b5651d",
  floor: "#9b59b6",
  native: "#8a8a8a",
  native2: "#b0b0b0",
  reactor: "#7fa7d3",
  node: "#6a9f3a",
};

/** One interleaved measurement. */
interface Sample extends LoadFigures {
  round: number;
  connections: number;
  server: ServerName;
  /** Position of this server in the round's order (0-based). */
  position: number;
}

/** One simultaneous measurement: server X beside Deno.serve. */
interface PairSample {
  round: number;
  connections: number;
  server: ServerName;
  /** Whose load client was spawned first. */
  first: ServerName;
  /** Deno.serve's figures, measured at the same moment. */
  reference: LoadFigures;
  /** X's figures. */
  figures: LoadFigures;
}

interface Options {
  rounds: number;
  seconds: number;
  warmup: number;
  load: "auto" | HttpTool;
  pin: "auto" | "off";
  method: Method;
  servers: ServerName[];
}

function parseOptions(args: string[]): Options {
  return parseArgs(args, {
    rounds: ROUNDS,
    seconds: WHOLE_SECONDS,
    warmup: WARMUP,
    load: choice(["auto", "wrk", "deno"] as const),
    pin: PIN,
    method: choice(["interleaved", "simultaneous", "both"] as const),
    servers: list(SERVERS),
  }, {
    rounds: 5,
    seconds: 3,
    warmup: 2,
    load: "auto",
    pin: "auto",
    method: "interleaved",
    servers: [...DEFAULT_SERVERS],
  }, { usage: "deno task bench:http [options]" });
}

/** One point of a cell: X's figures and the reference's of the same round. */
interface Point {
  round: number;
  figures: LoadFigures;
  /** Deno.serve's figures of the same round (or the same moment). */
  reference: LoadFigures | undefined;
}

/** The figures of one (server, connections) cell of one method. */
interface Cell {
  server: ServerName;
  connections: number;
  /** Medians over rounds. */
  requestsPerSecond: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
  cpuPerRequestUs: number | null;
  /** rps(X)/rps(Deno.serve), per round: median and range. */
  vsNativeRounds: Spread;
  /** Its median, for the chart. */
  vsNative: number | null;
  /** CPU per request of X over Deno.serve's, per round. */
  cpuVsNative: Spread;
  /** Ratio of the medians against node:http (interleaved, when run). */
  vsNode: number | null;
  /** Median cores: the server, its load client, others on its core. */
  serverCores: number | null;
  loadCores: number | null;
  otherCores: number | null;
  /** The per-round ratios, in round order. */
  roundRatios: (number | null)[];
  samples: number;
  errors: number;
  non2xx: number;
}

function cellOf(
  server: ServerName,
  connections: number,
  points: Point[],
  node: number | null,
): Cell {
  const ok = points.filter((p) => p.figures.rate !== null);
  const pick = (f: (x: LoadFigures) => number | null) =>
    median(
      ok.map((p) => f(p.figures)).filter((v): v is number => v !== null),
    );
  const roundRatios = points.map((p) =>
    ratio(p.figures.rate, p.reference?.rate ?? null)
  );
  const vsNativeRounds = spread(roundRatios);
  const rate = pick((f) => f.rate);
  return {
    server,
    connections,
    requestsPerSecond: rate,
    p50Ms: pick((f) => f.p50Ms),
    p99Ms: pick((f) => f.p99Ms),
    cpuPerRequestUs: pick((f) => f.cpuPerOpUs),
    vsNativeRounds,
    vsNative: vsNativeRounds.median,
    cpuVsNative: spread(
      points.map((p) =>
        ratio(p.figures.cpuPerOpUs, p.reference?.cpuPerOpUs ?? null)
      ),
    ),
    vsNode: ratio(rate, node),
    serverCores: pick((f) => f.serverCores),
    loadCores: pick((f) => f.loadCores),
    otherCores: pick((f) => f.otherCores),
    roundRatios,
    samples: ok.length,
    errors: ok.reduce((sum, p) => sum + p.figures.errors, 0),
    non2xx: ok.reduce((sum, p) => sum + p.figures.non2xx, 0),
  };
}

/** The cells of the interleaved rounds. */
function summarizeInterleaved(
  samples: Sample[],
  servers: readonly ServerName[],
): Cell[] {
  const cells: Cell[] = [];
  for (const connections of CONNECTIONS) {
    const at = samples.filter((s) => s.connections === connections);
    const reference = (round: number) =>
      at.find((s) => s.server === REFERENCE && s.round === round);
    const node = servers.includes("node")
      ? median(
        at.filter((s) => s.server === "node" && s.rate !== null).map((s) =>
          s.rate!
        ),
      )
      : null;
    for (const server of servers) {
      const points = at.filter((s) => s.server === server).map((s) => ({
        round: s.round,
        figures: s,
        reference: reference(s.round),
      }));
      cells.push(cellOf(server, connections, points, node));
    }
  }
  return cells;
}

/**
 * The cells of the simultaneous rounds; Deno.serve's row gathers its
 * figures from every pair (its ratio is 1 by construction).
 */
function summarizeSimultaneous(
  pairs: PairSample[],
  servers: readonly ServerName[],
): Cell[] {
  const cells: Cell[] = [];
  for (const connections of CONNECTIONS) {
    const at = pairs.filter((p) => p.connections === connections);
    for (const server of servers) {
      const points: Point[] = server === REFERENCE
        ? at.map((p) => ({
          round: p.round,
          figures: p.reference,
          reference: p.reference,
        }))
        : at.filter((p) => p.server === server).map((p) => ({
          round: p.round,
          figures: p.figures,
          reference: p.reference,
        }));
      const cell = cellOf(server, connections, points, null);
      if (server === REFERENCE) cell.roundRatios = [];
      cells.push(cell);
    }
  }
  return cells;
}

/** `0.61x (0.55x to 0.66x)`, or `n/a`. */
function medianRange(s: Spread): string {
  return s.n === 0
    ? "n/a"
    : `${formatRatio(s.median)} (${formatRatio(s.min)}-${formatRatio(s.max)})`;
}

function us(value: number | null): string {
  return value === null ? "n/a" : `${value.toFixed(1)} µs`;
}

/** The report table of one method, then the per-round ratios. */
function table(cells: Cell[], method: "interleaved" | "simultaneous") {
  const withNode = cells.some((c) => c.vsNode !== null);
  const lines = [
    `| server | conns | req/s (median) | vs Deno.serve: median (range) | CPU/request | CPU vs Deno.serve | p50 | p99 | ${
      method === "simultaneous" ? "load client cores" : "others on the core"
    }${withNode ? " | vs node:http" : ""} |`,
    `| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |${
      withNode ? " ---: |" : ""
    }`,
  ];
  for (const c of cells) {
    const ref = c.server === REFERENCE;
    lines.push(
      `| ${SERVER_LABELS[c.server]} | ${c.connections} | ${
        formatRps(c.requestsPerSecond)
      } | ${ref ? "1 (reference)" : medianRange(c.vsNativeRounds)} | ${
        us(c.cpuPerRequestUs)
      } | ${ref ? "" : medianRange(c.cpuVsNative)} | ${formatMs(c.p50Ms)} | ${
        formatMs(c.p99Ms)
      } | ${
        formatCores(method === "simultaneous" ? c.loadCores : c.otherCores)
      }${withNode ? ` | ${formatRatio(c.vsNode)}` : ""} |`,
    );
  }
  lines.push(
    "",
    `Per round, rps(X)/rps(Deno.serve) (${
      method === "simultaneous" ? "measured at the same moment" : "same round"
    }):`,
    "",
  );
  for (const c of cells) {
    if (c.server === REFERENCE) continue;
    lines.push(
      `- ${SHORT_LABELS[c.server]}, c=${c.connections}: ${
        c.roundRatios.map((r) => formatRatio(r)).join(" ")
      }`,
    );
  }
  return lines;
}

/** What the A/A control says about the run's noise. */
function controlLines(cells: Cell[], method: string): string[] {
  const out: string[] = [];
  for (const c of cells) {
    if (c.server !== "native2") continue;
    const s = c.vsNativeRounds;
    if (s.n === 0) continue;
    const stray = Math.max(Math.abs(s.min! - 1), Math.abs(s.max! - 1));
    out.push(
      `- A/A control (${method}, c=${c.connections}): Deno.serve / Deno.serve ${
        formatSpread(s, formatRatio)
      }: this run's noise is up to ${
        (stray * 100).toFixed(1)
      }%, so differences smaller than that are not resolved.`,
    );
  }
  return out;
}

/** How the server's core was shared during a measurement (pinned runs). */
function cpuNote(m: LoadFigures): string {
  if (m.otherCores === null) return "";
  return `; steal ${formatPercent(m.stealCores)}`;
}

async function main(): Promise<void> {
  const opts = parseOptions(Deno.args);
  const { rounds, seconds, warmup, method, servers: serverNames } = opts;
  const { tool, wrk } = await chooseHttpTool(opts.load);
  const machine = await machineInfo({ wrk });
  const pin: Placement = await placement(opts.pin);
  const startedAt = machine.date;
  const interleaved = method !== "simultaneous";
  const simultaneous = method !== "interleaved" &&
    serverNames.includes(REFERENCE);
  if (method !== "interleaved" && !simultaneous) {
    console.error(
      "simultaneous: needs 'native' among --servers (the reference)",
    );
  }
  const others = serverNames.filter((s) => s !== REFERENCE);
  const perMeasurement = seconds + (tool === "deno" ? 0.7 : 0.15);
  const estimate = serverNames.length * (warmup + 0.5) +
    (interleaved ? serverNames.length : 0) * rounds * CONNECTIONS.length *
      perMeasurement +
    (simultaneous ? others.length : 0) * rounds * CONNECTIONS.length *
      perMeasurement;
  console.error(
    `http bench (${tool}, ${method}): ${rounds} rounds x ${CONNECTIONS.length} loads x ` +
      `${serverNames.length} servers x ${seconds} s (+${warmup} s warm-up each), ` +
      `about ${Math.ceil(estimate)} s; ${pin.note}`,
  );

  const clients = new Map<number, LoadClient>(
    [...CONNECTIONS, 100].map((c) => [c, httpClient(tool, c)]),
  );
  const samples: Sample[] = [];
  const pairs: PairSample[] = [];
  await withServers(
    serverNames,
    (name) => denoRun(SERVER_FILES[name], ["--port", "0"]),
    pin.server,
    async (servers) => {
      for (const server of warmup > 0 ? servers : []) {
        const w = await measureLoad(
          clients.get(100)!,
          server,
          Math.max(1, Math.round(warmup)),
          pin,
        );
        console.error(
          `warm-up  ${server.name.padEnd(8)} ` +
            (w.rate === null
              ? `FAILED ${w.error}`
              : `${formatRps(w.rate)} req/s`),
        );
      }
      for (let round = 0; interleaved && round < rounds; round++) {
        if (interrupted.signal.aborted) break;
        const order = rotated(servers, round);
        for (const connections of CONNECTIONS) {
          for (const [position, server] of order.entries()) {
            const f = await measureLoad(
              clients.get(connections)!,
              server,
              seconds,
              pin,
            );
            samples.push({
              ...f,
              round: round + 1,
              connections,
              server: server.name,
              position,
            });
            console.error(
              `round ${round + 1}/${rounds} c=${
                String(connections).padEnd(3)
              } ${server.name.padEnd(8)} ${describeFigures(f)}`,
            );
          }
        }
      }
      const ref = servers.find((s) => s.name === REFERENCE);
      const paired = servers.filter((s) => s.name !== REFERENCE);
      for (let round = 0; simultaneous && round < rounds; round++) {
        if (interrupted.signal.aborted) break;
        for (const connections of CONNECTIONS) {
          for (const server of rotated(paired, round)) {
            const otherFirst = (round + paired.indexOf(server)) % 2 === 1;
            const pair = await measurePair(
              clients.get(connections)!,
              ref!,
              server,
              seconds,
              pin,
              otherFirst,
            );
            pairs.push({
              round: round + 1,
              connections,
              server: server.name,
              first: otherFirst ? server.name : REFERENCE,
              reference: pair.a,
              figures: pair.other,
            });
            console.error(
              `simultaneous ${round + 1}/${rounds} c=${
                String(connections).padEnd(3)
              } ${server.name.padEnd(8)} ${describeFigures(pair.other)}\n` +
                `simultaneous ${round + 1}/${rounds} c=${
                  String(connections).padEnd(3)
                } ${"native".padEnd(8)} ${describeFigures(pair.a)}; ratio ${
                  formatRatio(ratio(pair.other.rate, pair.a.rate))
                }`,
            );
          }
        }
      }
    },
  );

  const interleavedCells = interleaved
    ? summarizeInterleaved(samples, serverNames)
    : [];
  const simultaneousCells = simultaneous
    ? summarizeSimultaneous(pairs, serverNames)
    : [];
  const loadavgAtEnd = await loadavg();
  const loadText = tool === "wrk"
    ? `wrk -t1 -c{100,1} -d${seconds}s`
    : `bench/http/_load.ts (Deno, raw sockets), ${seconds} s`;
  const caption =
    `${machine.cpuModel}, ${machine.cores} cores, Deno ${machine.deno}; ${loadText}${
      pin.server === undefined ? "" : ", server and load on separate cores"
    }; median of ${rounds} interleaved rounds`;
  const lines = [
    ...versionLines(machine),
    "",
    (tool === "wrk" ? `${machine.wrk}. ` : "") +
    `Load: ${loadText} per measurement; servers and load clients in ` +
    `separate processes on 127.0.0.1, ${pin.note}; every server warmed up ` +
    `${warmup} s first; load average ${machine.loadavgAtStart} at start, ` +
    `${loadavgAtEnd} at end. CPU/request: the server's user + system time ` +
    `(/proc/PID/stat) over the requests served. Ratios: per round against ` +
    `Deno.serve, median (range).`,
  ];
  if (interleaved) {
    lines.push(
      "",
      `### Interleaved: ${rounds} rounds, one server at a time, the order rotating`,
      "",
      ...table(interleavedCells, "interleaved"),
      "",
      ...controlLines(interleavedCells, "interleaved"),
    );
  }
  if (simultaneous) {
    lines.push(
      "",
      `### Simultaneous: ${rounds} rounds, each server beside Deno.serve on ` +
        "one core, each driven by its own load client at the same moment",
      "",
      ...table(simultaneousCells, "simultaneous"),
      "",
      ...controlLines(simultaneousCells, "simultaneous"),
    );
    const busyClients = simultaneousCells.filter((c) =>
      c.server !== REFERENCE && (c.loadCores ?? 0) > 0.45
    );
    lines.push(
      "- Caveat: when a load client, not its server, is the bottleneck " +
        "(the two clients share the load core), the ratio is pulled toward " +
        "1.00x; the CPU per request is the cross-check" +
        (busyClients.length > 0
          ? `. Load clients above 0.45 cores here: ${
            busyClients.map((c) => `${c.server} c=${c.connections}`).join(
              ", ",
            )
          }.`
          : "."),
    );
  }

  const failures = [
    ...samples,
    ...pairs.flatMap((p) => [p.figures, p.reference]),
  ].filter((s) => s.rate === null);
  const total = samples.length + pairs.length * 2;
  const all = [...interleavedCells, ...simultaneousCells];
  const busiest =
    all.filter((c) => c.otherCores !== null).sort((a, b) =>
      b.otherCores! - a.otherCores!
    )[0];
  if (busiest !== undefined) {
    lines.push(
      `- Other processes took at most ${
        formatPercent(busiest.otherCores)
      } of the servers' core (median, ${
        SHORT_LABELS[busiest.server]
      } at ${busiest.connections} conns)` +
        (busiest.otherCores! > 0.05
          ? ": the machine was not quiet; read the ratios and CPU per request, not the req/s."
          : "."),
    );
  }
  for (const cell of all.filter((c) => c.errors + c.non2xx > 0)) {
    lines.push(
      `- ${SERVER_LABELS[cell.server]} at ${cell.connections} conns: ` +
        `${cell.errors} socket errors, ${cell.non2xx} non-2xx responses in total.`,
    );
  }
  console.log(lines.join("\n"));
  noteFailures(failures.length, total);

  const report = {
    machine: { ...machine, loadavgAtEnd },
    config: {
      rounds,
      seconds,
      warmup,
      method,
      tool,
      pin: pin.note,
      servers: serverNames,
    },
    startedAt,
    finishedAt: new Date().toISOString(),
    table: interleavedCells,
    simultaneousTable: simultaneousCells,
    samples,
    pairs,
  };
  const files: Record<string, string> = { "http.json": toJson(report) };
  const svg = interleaved
    ? renderSvg(
      interleavedCells.filter((c) => c.server !== "native2"),
      caption,
    )
    : undefined;
  if (svg !== undefined) files["http.svg"] = svg;
  await saveResults(files);
  const svgCopy = decodeURIComponent(SVG_COPY.pathname);
  if (svg === undefined) {
    // No interleaved rounds: the chart stays as it is.
  } else if (await canWrite(svgCopy)) {
    await Deno.writeTextFile(svgCopy, svg);
    console.error(`chart copied to ${svgCopy}`);
  } else {
    console.error(
      `chart not copied: add --allow-write=bench/http/http.svg to update ${svgCopy}`,
    );
  }
  if (failures.length > 0) Deno.exitCode = 1;
}

function describeFigures(f: LoadFigures): string {
  return describeLoad(f, "req/s", "request") + cpuNote(f);
}

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A hand-written SVG bar chart: req/s per server, one panel per load. */
export function renderSvg(cells: Cell[], caption: string): string {
  const width = 1040;
  const height = 440;
  const panelWidth = 470;
  const top = 70;
  const plotHeight = 250;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, 'Segoe UI', sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${
      width / 2
    }" y="26" text-anchor="middle" font-size="17" font-weight="600">HTTP/1.1 hello world: requests per second (median; higher is better)</text>`,
    `<text x="${width / 2}" y="46" text-anchor="middle" fill="#555">${
      escapeXml(caption)
    }</text>`,
  ];
  CONNECTIONS.forEach((connections, panel) => {
    const row = cells.filter((c) => c.connections === connections);
    const max = Math.max(1, ...row.map((c) => c.requestsPerSecond ?? 0));
    const x0 = 30 + panel * (panelWidth + 40);
    const baseline = top + plotHeight;
    out.push(
      `<text x="${x0 + panelWidth / 2}" y="${
        top - 4
      }" text-anchor="middle" font-size="14" font-weight="600">${connections} connection${
        connections === 1 ? "" : "s"
      }</text>`,
      `<line x1="${x0}" y1="${baseline}" x2="${
        x0 + panelWidth
      }" y2="${baseline}" stroke="#333"/>`,
    );
    const slot = panelWidth / Math.max(1, row.length);
    const barWidth = Math.min(70, slot * 0.6);
    row.forEach((cell, i) => {
      const value = cell.requestsPerSecond ?? 0;
      const h = Math.round((value / max) * (plotHeight - 40));
      const cx = x0 + slot * i + slot / 2;
      const y = baseline - h;
      out.push(
        `<rect x="${(cx - barWidth / 2).toFixed(1)}" y="${y}" width="${
          barWidth.toFixed(1)
        }" height="${h}" fill="${COLORS[cell.server]}"><title>${
          escapeXml(
            `${SERVER_LABELS[cell.server]}: ${
              formatRps(cell.requestsPerSecond)
            } req/s, p50 ${formatMs(cell.p50Ms)}, p99 ${formatMs(cell.p99Ms)}`,
          )
        }</title></rect>`,
        `<text x="${cx}" y="${y - 6}" text-anchor="middle" font-weight="600">${
          formatRps(cell.requestsPerSecond)
        }</text>`,
        `<text x="${cx}" y="${baseline + 16}" text-anchor="middle">${
          escapeXml(SHORT_LABELS[cell.server])
        }</text>`,
      );
      if (cell.server !== "native" && cell.vsNative !== null) {
        out.push(
          `<text x="${cx}" y="${
            baseline + 31
          }" text-anchor="middle" font-size="11" fill="#555">${
            formatRatio(cell.vsNative)
          } Deno.serve</text>`,
        );
      }
      if (cell.server !== "node" && cell.vsNode !== null) {
        out.push(
          `<text x="${cx}" y="${
            baseline + 45
          }" text-anchor="middle" font-size="11" fill="#555">${
            formatRatio(cell.vsNode)
          } node:http</text>`,
        );
      }
    });
  });
  out.push(
    `<text x="${width / 2}" y="${
      height - 12
    }" text-anchor="middle" fill="#777">Deno has no thread per connection: each server runs its JavaScript on one thread. Workers per core are measured separately.</text>`,
    "</svg>",
  );
  return out.join("\n") + "\n";
}

if (import.meta.main) {
  await main();
}
