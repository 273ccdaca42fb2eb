/**
 * HTTP/1.1 load benchmark: the three paradigms, plus the native server. The
 * same hello-world app (every request gets 200 `Hello, World!`, text/plain)
 * runs on four servers, each in its own process:
 *
 * 1. `_evthread_server.ts`: `serve()` from `@corothread/evthread/http`,
 *    a task per connection (straight-line code on EvLoop / EvSocket);
 * 2. `_reactor_server.ts`: the same parser, lazy request and response
 *    serialization driven by `node:net` `data` callbacks and an explicit
 *    per-connection state machine (the reactor paradigm), so that 1 vs 2
 *    isolates the paradigm;
 * 3. `_node_server.ts`: `node:http` `createServer`, as Deno runs it;
 * 4. `_native_server.ts`: `Deno.serve` (hyper, in Rust).
 *
 * Load: `wrk -t1 -c100 -d{seconds}s --latency` and `-c1` when `wrk` is on
 * PATH, otherwise `_load.ts` (a Deno keep-alive client over raw
 * sockets, in its own process; `--load deno` forces it). Each server is
 * warmed up once (`--warmup` seconds at 100 connections, not counted). Then
 * rounds are interleaved: every round measures every server at every
 * connection count, the server order rotating each round, so drift in
 * machine load spreads over all servers; the table reports medians over
 * rounds of requests/s and of p50 / p99 latency, and the ratios of the
 * medians against `Deno.serve` and `node:http`.
 *
 * Pinning: when `taskset` is on PATH and there are at least 2 cores, each
 * server process (all its threads) runs on the last core and the load
 * generator on core 0 (`--pin off` lets the scheduler place them). On small
 * VMs this matters most at 1 connection, where a round trip is mostly
 * wake-up latency: a server that happens to share the load generator's core
 * answers about 3 times faster than one on the other core, so unpinned
 * figures jump between the two from one run to the next. When pinned, the
 * script also reads `/proc/stat` around each measurement and records how
 * much of the server's core the server used (`serverCpu`) and how much
 * other processes took (`foreignCpu`), so that measurements disturbed by
 * other work on the machine can be seen.
 *
 * Deno has no thread per connection: every server here runs its JavaScript
 * on one thread, and on a machine with few cores `wrk` takes one of them.
 * Running one server per core (workers with `reusePort`) is measured
 * separately, in the hardening issue.
 *
 * Usage:
 * ```sh
 * deno run --allow-net --allow-run --allow-read --allow-env \
 *   --allow-write=bench/results,bench/http/http.svg bench/http/http.ts \
 *   [--rounds 5] [--seconds 3] [--warmup 1] [--load auto|wrk|deno] \
 *   [--pin auto|off] [--servers evthread,reactor,node,native]
 * ```
 * Writes `bench/results/http.json` and `bench/results/http.svg` (needs
 * `--allow-write=bench/results`) and copies the chart to `bench/http/http.svg`,
 * which the README shows (needs `--allow-write=bench/http/http.svg`; without it
 * a note says so). Defaults take about 2.5 minutes.
 *
 * @module
 */

import type { HttpLoadResult } from "./_load.ts";
import {
  type BenchOptions,
  canWrite,
  commandOutput,
  denoRun,
  formatMs,
  formatRatio,
  formatRps,
  loadavg,
  loadCommand,
  machineInfo,
  median,
  noteFailures,
  parseBenchOptions,
  pinned,
  ratio,
  rotated,
  saveResults,
  scriptPath,
  type ServerProcess,
  toJson,
  withServers,
} from "../_common/harness.ts";

type ServerName = "evthread" | "reactor" | "node" | "native";
type Tool = "wrk" | "deno";

const SERVERS: readonly ServerName[] = [
  "evthread",
  "reactor",
  "node",
  "native",
];
const CONNECTIONS: readonly number[] = [100, 1];
const SERVER_FILES: Record<ServerName, string> = {
  evthread: "./http/_evthread_server.ts",
  reactor: "./http/_reactor_server.ts",
  node: "./http/_node_server.ts",
  native: "./http/_native_server.ts",
};
const SERVER_LABELS: Record<ServerName, string> = {
  evthread: "evthread serve() (task per connection)",
  reactor: "reactor: same parser on node:net callbacks",
  node: "node:http",
  native: "Deno.serve (native)",
};
const SHORT_LABELS: Record<ServerName, string> = {
  evthread: "evthread serve()",
  reactor: "reactor (node:net)",
  node: "node:http",
  native: "Deno.serve",
};
const COLORS: Record<ServerName, string> = {
  evthread: "#2f6fb0",
  reactor: "#7fa7d3",
  node: "#6a9f3a",
  native: "#8a8a8a",
};
/** One measurement. */
interface Sample {
  round: number;
  connections: number;
  server: ServerName;
  /** Position of this server in the round's order (0-based). */
  position: number;
  tool: Tool;
  requestsPerSecond: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
  /** Socket errors (wrk) or errors and reconnects (Deno client). */
  errors: number;
  non2xx: number;
  /** Share of the server's core the server used (pinned runs only). */
  serverCpu?: number;
  /** Share of the server's core other processes used (pinned runs only). */
  foreignCpu?: number;
  /** Share of the server's core the hypervisor took (steal; pinned runs). */
  stealCpu?: number;
  error?: string;
}

/** Where the servers and the load generator run, when pinned. */
interface Pinning {
  serverCore: number;
  loadCore: number;
}

type Measurement = Omit<
  Sample,
  "round" | "connections" | "server" | "position"
>;

interface Options extends BenchOptions<ServerName> {
  load: "auto" | Tool;
  pin: "auto" | "off";
}

function parseOptions(args: string[]): Options {
  const defaults: Options = {
    rounds: 5,
    seconds: 3,
    warmup: 1,
    load: "auto",
    pin: "auto",
    servers: [...SERVERS],
  };
  const opts = parseBenchOptions(args, defaults, SERVERS, {
    "--load": (raw, opts) => {
      if (raw !== "auto" && raw !== "wrk" && raw !== "deno") {
        throw new TypeError(
          `'--load' must be auto, wrk or deno: received '${raw}'`,
        );
      }
      opts.load = raw;
    },
    "--pin": (raw, opts) => {
      if (raw !== "auto" && raw !== "off") {
        throw new TypeError(`'--pin' must be auto or off: received '${raw}'`);
      }
      opts.pin = raw;
    },
  });
  if (!Number.isInteger(opts.seconds) || opts.seconds < 1) {
    throw new RangeError(
      `'--seconds' must be a positive integer (wrk's -d): received ${opts.seconds}`,
    );
  }
  return opts;
}

/** `wrk`'s version line, or null when it cannot run. */
async function wrkVersion(): Promise<string | null> {
  try {
    const { stdout } = await new Deno.Command("wrk", {
      args: ["-v"],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(5_000),
    }).output();
    const first = new TextDecoder().decode(stdout).split("\n")[0]!.trim();
    return first.startsWith("wrk")
      ? first.replace(/\s+Copyright.*$/, "")
      : "wrk (unknown version)";
  } catch {
    return null;
  }
}

/** Pins to the last core and core 0 when `taskset` runs and cores >= 2. */
async function pinning(mode: "auto" | "off"): Promise<Pinning | null> {
  const cores = navigator.hardwareConcurrency;
  if (mode === "off" || cores < 2) return null;
  try {
    const { success } = await new Deno.Command("taskset", {
      args: ["-c", "0", "true"],
      stdin: "null",
      stdout: "null",
      stderr: "null",
      signal: AbortSignal.timeout(5_000),
    }).output();
    return success ? { serverCore: cores - 1, loadCore: 0 } : null;
  } catch {
    return null;
  }
}

/** CPU ticks of one core and of one process, from /proc. */
interface CpuSnapshot {
  /** user + nice + system ticks of the core. */
  busy: number;
  /** All ticks of the core. */
  total: number;
  /** Ticks the hypervisor took from the core (steal). */
  steal: number;
  /** utime + stime ticks of the process (all its threads). */
  process: number;
}

/**
 * Reads `/proc/stat` and `/proc/PID/stat` through `cat` (Deno reads /proc
 * files only under `--allow-all`); null when that fails.
 */
async function cpuSnapshot(
  core: number,
  pid: number,
): Promise<CpuSnapshot | null> {
  const text = await commandOutput(
    "cat",
    ["/proc/stat", `/proc/${pid}/stat`],
    "",
  );
  const line = new RegExp(`^cpu${core} (.*)$`, "m").exec(text);
  const proc = new RegExp(`^${pid} \\(.*\\) (.*)$`, "m").exec(text);
  if (line === null || proc === null) return null;
  const ticks = line[1]!.trim().split(/\s+/).map(Number);
  // user nice system idle iowait irq softirq steal guest guest_nice
  const busy = ticks[0]! + ticks[1]! + ticks[2]!;
  const total = ticks.slice(0, 8).reduce((a, b) => a + b, 0);
  // After "(comm) ": state is field 3, utime 14 and stime 15.
  const fields = proc[1]!.split(" ");
  const process = Number(fields[11]) + Number(fields[12]);
  return { busy, total, process, steal: ticks[7] ?? 0 };
}

/** A wrk duration (`512.00us`, `1.20ms`, `2.00s`, `1.00m`) in milliseconds. */
export function wrkDuration(text: string): number | null {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(text.trim());
  if (m === null) return null;
  const scale = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[
    m[2] as "us" | "ms" | "s" | "m" | "h"
  ];
  return Number(m[1]) * scale;
}

/**
 * The load generator's command: `wrk` for `-c connections` over `seconds`,
 * or the Deno client `_load.ts` (which also warms up for `warmup`).
 */
export function loadProgram(
  tool: string,
  port: number,
  connections: number,
  seconds: number,
  warmup: number,
): [string, string[]] {
  if (tool === "wrk") {
    return ["wrk", [
      "-t1",
      `-c${connections}`,
      `-d${seconds}s`,
      "--latency",
      `http://127.0.0.1:${port}/`,
    ]];
  }
  return [
    Deno.execPath(),
    denoRun(
      "./http/_load.ts",
      "--port",
      String(port),
      "--connections",
      String(connections),
      "--seconds",
      String(seconds),
      "--warmup",
      String(warmup),
    ),
  ];
}

/**
 * The load generator's figures from its output: wrk's text, or the JSON line
 * `_load.ts` ends with.
 */
export function parseLoadOutput(
  tool: string,
  out: string,
): Omit<Measurement, "tool"> {
  if (tool === "wrk") return parseWrk(out);
  const result = JSON.parse(out.split("\n").at(-1)!) as HttpLoadResult;
  return {
    requestsPerSecond: result.requestsPerSecond,
    p50Ms: result.p50Ms,
    p99Ms: result.p99Ms,
    errors: result.errors,
    non2xx: result.non2xx,
  };
}

/** Requests/s, p50, p99 and error counts from `wrk --latency` output. */
export function parseWrk(output: string): Omit<Measurement, "tool"> {
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(output);
  const p50 = /^\s+50%\s+(\S+)/m.exec(output);
  const p99 = /^\s+99%\s+(\S+)/m.exec(output);
  const socket =
    /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/
      .exec(output);
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(output);
  const result = {
    requestsPerSecond: rps === null ? null : Number(rps[1]),
    p50Ms: p50 === null ? null : wrkDuration(p50[1]!),
    p99Ms: p99 === null ? null : wrkDuration(p99[1]!),
    errors: socket === null
      ? 0
      : socket.slice(1).reduce((sum, n) => sum + Number(n), 0),
    non2xx: non2xx === null ? 0 : Number(non2xx[1]),
  };
  if (result.requestsPerSecond === null) {
    return {
      ...result,
      error: `no Requests/sec in wrk output: ${output.slice(0, 200)}`,
    };
  }
  return result;
}

async function measure(
  server: ServerProcess<ServerName>,
  connections: number,
  seconds: number,
  tool: Tool,
  warmup: number,
  pin: Pinning | null,
): Promise<Measurement> {
  const failed = (error: string): Measurement => ({
    tool,
    requestsPerSecond: null,
    p50Ms: null,
    p99Ms: null,
    errors: 0,
    non2xx: 0,
    error,
  });
  if (server.exited) return failed(`${server.name} server has exited`);
  const [cmd, args] = pinned(
    pin?.loadCore,
    ...loadProgram(tool, server.port, connections, seconds, warmup),
  );
  // Both stop by themselves (the Deno client after seconds + warmup + 10
  // at the latest); this is the backstop.
  const command = loadCommand(cmd, args, seconds + warmup + 20);
  const before = pin === null
    ? null
    : await cpuSnapshot(pin.serverCore, server.pid);
  let output: Deno.CommandOutput;
  try {
    output = await command.output();
  } catch (error) {
    return failed(String(error));
  }
  const after = pin === null || before === null
    ? null
    : await cpuSnapshot(pin.serverCore, server.pid);
  const cpu: { serverCpu?: number; foreignCpu?: number; stealCpu?: number } =
    {};
  if (before !== null && after !== null && after.total > before.total) {
    const total = after.total - before.total;
    const own = after.process - before.process;
    cpu.serverCpu = own / total;
    cpu.foreignCpu = Math.max(0, after.busy - before.busy - own) / total;
    cpu.stealCpu = (after.steal - before.steal) / total;
  }
  const out = new TextDecoder().decode(output.stdout).trim();
  const err = new TextDecoder().decode(output.stderr).trim();
  if (output.code !== 0 || out === "") {
    return failed(`${tool} exit ${output.code}: ${err || out}`);
  }
  return { tool, ...parseLoadOutput(tool, out), ...cpu };
}

function formatPercent(value: number | null | undefined): string {
  return value === null || value === undefined
    ? "n/a"
    : `${Math.round(value * 100)}%`;
}

/** How the server's core was shared during a measurement (pinned runs). */
function cpuNote(m: Measurement): string {
  if (m.serverCpu === undefined) return "";
  return `; server core: ${formatPercent(m.serverCpu)} server, ` +
    `${formatPercent(m.foreignCpu)} others` +
    (m.stealCpu ? `, ${formatPercent(m.stealCpu)} steal` : "");
}

/** Medians of one (server, connections) cell. */
interface Cell {
  server: ServerName;
  connections: number;
  requestsPerSecond: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
  vsNative: number | null;
  vsNode: number | null;
  samples: number;
  errors: number;
  non2xx: number;
  /** Median share of the server's core the server used (pinned runs). */
  serverCpu: number | null;
  /** Median share of the server's core other processes used. */
  foreignCpu: number | null;
}

function summarize(
  samples: Sample[],
  servers: ServerName[],
): Cell[] {
  const cells: Cell[] = [];
  for (const connections of CONNECTIONS) {
    const of = (server: ServerName) =>
      samples.filter((s) =>
        s.server === server && s.connections === connections &&
        s.requestsPerSecond !== null
      );
    const rps = (server: ServerName) =>
      median(of(server).map((s) => s.requestsPerSecond!));
    const native = servers.includes("native") ? rps("native") : null;
    const node = servers.includes("node") ? rps("node") : null;
    for (const server of servers) {
      const ok = of(server);
      const value = rps(server);
      cells.push({
        server,
        connections,
        requestsPerSecond: value,
        p50Ms: median(
          ok.filter((s) => s.p50Ms !== null).map((s) => s.p50Ms!),
        ),
        p99Ms: median(
          ok.filter((s) => s.p99Ms !== null).map((s) => s.p99Ms!),
        ),
        vsNative: ratio(value, native),
        vsNode: ratio(value, node),
        samples: ok.length,
        errors: ok.reduce((sum, s) => sum + s.errors, 0),
        non2xx: ok.reduce((sum, s) => sum + s.non2xx, 0),
        serverCpu: median(
          ok.filter((s) => s.serverCpu !== undefined).map((s) => s.serverCpu!),
        ),
        foreignCpu: median(
          ok.filter((s) => s.foreignCpu !== undefined).map((s) =>
            s.foreignCpu!
          ),
        ),
      });
    }
  }
  return cells;
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

async function main(): Promise<void> {
  const {
    rounds,
    seconds,
    warmup,
    load,
    pin: pinMode,
    servers: serverNames,
  } = parseOptions(Deno.args);
  const wrk = await wrkVersion();
  let tool: Tool;
  if (load === "wrk") {
    if (wrk === null) throw new Error("'--load wrk': wrk is not on PATH");
    tool = "wrk";
  } else if (load === "deno") tool = "deno";
  else tool = wrk === null ? "deno" : "wrk";
  if (tool === "deno" && load === "auto") {
    console.error(
      "wrk not found: using bench/http/_load.ts as the load client",
    );
  }
  const machine = await machineInfo({
    cores: navigator.hardwareConcurrency,
    wrk,
  });
  const pin = await pinning(pinMode);
  const startedAt = new Date().toISOString();
  const estimate = serverNames.length *
    (warmup + rounds * CONNECTIONS.length *
        (seconds + (tool === "deno" ? 0.25 + 0.4 : 0.1)) +
      0.5);
  console.error(
    `http bench (${tool}): ${rounds} rounds x ${CONNECTIONS.length} loads x ` +
      `${serverNames.length} servers x ${seconds} s (+${warmup} s warm-up each), ` +
      `about ${Math.ceil(estimate)} s; ` +
      (pin === null
        ? "not pinned"
        : `servers pinned to core ${pin.serverCore}, load to core ${pin.loadCore}`),
  );

  const samples: Sample[] = [];
  await withServers(
    serverNames,
    SERVER_FILES,
    pin?.serverCore,
    async (servers) => {
      if (warmup > 0) {
        for (const server of servers) {
          const w = await measure(
            server,
            100,
            Math.ceil(warmup),
            tool,
            0,
            pin,
          );
          console.error(
            `warm-up  ${server.name.padEnd(8)} ` +
              (w.requestsPerSecond === null
                ? `FAILED ${w.error}`
                : `${formatRps(w.requestsPerSecond)} req/s`),
          );
        }
      }
      for (let round = 0; round < rounds; round++) {
        const order = rotated(servers, round);
        for (const connections of CONNECTIONS) {
          for (const [position, server] of order.entries()) {
            const result = await measure(
              server,
              connections,
              seconds,
              tool,
              0.25,
              pin,
            );
            samples.push({
              round: round + 1,
              connections,
              server: server.name,
              position,
              ...result,
            });
            console.error(
              `round ${round + 1}/${rounds} c=${
                String(connections).padEnd(3)
              } ${server.name.padEnd(8)} ` +
                (result.requestsPerSecond === null
                  ? `FAILED ${result.error}`
                  : `${formatRps(result.requestsPerSecond)} req/s, p50 ${
                    formatMs(result.p50Ms)
                  }, p99 ${formatMs(result.p99Ms)}` +
                    (result.errors + result.non2xx > 0
                      ? ` (${result.errors} errors, ${result.non2xx} non-2xx)`
                      : "") +
                    cpuNote(result)),
            );
          }
        }
      }
    },
  );

  const cells = summarize(samples, serverNames);
  const loadavgAtEnd = await loadavg();
  const loadText = tool === "wrk"
    ? `wrk -t1 -c{100,1} -d${seconds}s`
    : `bench/http/_load.ts (Deno, raw sockets), ${seconds} s`;
  const caption =
    `${machine.cpuModel}, ${machine.cores} cores, Deno ${machine.deno}; ${loadText}${
      pin === null ? "" : ", server and load on separate cores"
    }; median of ${rounds} rounds`;
  const lines = [
    `Machine: ${machine.cpuModel}, ${machine.cores} cores, Linux ${machine.osRelease}, ` +
    `Deno ${machine.deno} (V8 ${machine.v8})` +
    (tool === "wrk" ? `, ${machine.wrk}` : "") +
    `. Load: ${loadText} per measurement; median of ${rounds} interleaved rounds; ` +
    `servers and load generator in separate processes on 127.0.0.1` +
    (pin === null
      ? " (not pinned)"
      : `, servers pinned to core ${pin.serverCore} and the load generator to core ${pin.loadCore}`) +
    `; load average ` +
    `${machine.loadavgAtStart} at start, ${loadavgAtEnd} at end.`,
    "",
    "| server | conns | req/s (median) | p50 | p99 | vs Deno.serve | vs node:http |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const cell of cells) {
    lines.push(
      `| ${SERVER_LABELS[cell.server]} | ${cell.connections} | ${
        formatRps(cell.requestsPerSecond)
      } | ${formatMs(cell.p50Ms)} | ${formatMs(cell.p99Ms)} | ${
        formatRatio(cell.vsNative)
      } | ${formatRatio(cell.vsNode)} |`,
    );
  }
  console.log(lines.join("\n"));

  const failures = samples.filter((s) => s.requestsPerSecond === null);
  const dirty = cells.filter((c) => c.errors + c.non2xx > 0);
  noteFailures(failures.length, samples.length);
  if (pin !== null) {
    const busiest = cells.filter((c) =>
      c.foreignCpu !== null
    ).sort((a, b) => b.foreignCpu! - a.foreignCpu!)[0];
    if (busiest !== undefined) {
      console.log(
        `\nOther processes took at most ${
          formatPercent(busiest.foreignCpu)
        } of the server core (median, ${
          SERVER_LABELS[busiest.server]
        } at ${busiest.connections} conns)` +
          (busiest.foreignCpu! > 0.05
            ? ": the machine was not quiet; see foreignCpu in the JSON."
            : "."),
      );
    }
  }
  for (const cell of dirty) {
    console.log(
      `${SERVER_LABELS[cell.server]} at ${cell.connections} conns: ` +
        `${cell.errors} socket errors, ${cell.non2xx} non-2xx responses in total.`,
    );
  }

  const report = {
    machine: { ...machine, loadavgAtEnd },
    config: { rounds, seconds, warmup, tool, pin, servers: serverNames },
    startedAt,
    finishedAt: new Date().toISOString(),
    table: cells,
    samples,
  };
  const svgCopy = scriptPath("./http/http.svg");
  const svg = renderSvg(cells, caption);
  await saveResults({ "http.json": toJson(report), "http.svg": svg });
  if (await canWrite(svgCopy)) {
    await Deno.writeTextFile(svgCopy, svg);
    console.error(`chart copied to ${svgCopy}`);
  } else {
    console.error(
      `chart not copied: add --allow-write=bench/http/http.svg to update ${svgCopy}`,
    );
  }
  if (failures.length > 0) Deno.exitCode = 1;
}

if (import.meta.main) {
  await main();
}
