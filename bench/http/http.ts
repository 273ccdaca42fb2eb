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
 * 4. `_native_server.ts`: `Deno.serve` (hyper, in Rust);
 * 5. `_raw_server.ts`: no HTTP code, a bare keep-alive loop on `Deno.Conn`
 *    (find the end of each head, write a fixed response: the bytes
 *    `serve()` sends), the transport's own cost;
 * 6. `_evsocket_server.ts`: the same loop on `EvSocket` (`readUntil` and
 *    `send` with `serve()`'s default timeouts), the socket layer's cost.
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
 * figures jump between the two from one run to the next. Around each
 * measurement the script reads the server's CPU time (user + system ticks
 * of `/proc/PID/stat`, as every benchmark here counts it: see
 * `../_common/cpu.ts`) and records the server's CPU per request
 * (`serverCpuPerRequestUs`, when no warm-up request went uncounted); when
 * pinned, also how much of its core the server used (`serverCpu`) and how
 * much other processes took (`foreignCpu`, from `/proc/stat`), so that
 * measurements disturbed by other work on the machine can be seen.
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
 *   [--pin auto|off] [--servers evthread,reactor,node,native,raw,evsocket]
 * ```
 * Writes `bench/results/http.json` and `bench/results/http.svg` (needs
 * `--allow-write=bench/results`) and copies the chart to `bench/http/http.svg`,
 * which the README shows (needs `--allow-write=bench/http/http.svg`; without it
 * a note says so). Defaults take about 2.5 minutes.
 *
 * @module
 */

import {
  canWrite,
  choice,
  chooseHttpTool,
  denoRun,
  failedFigures,
  formatMs,
  formatPercent,
  formatRatio,
  formatRps,
  type HttpFigures,
  type HttpTool,
  list,
  loadavg,
  loadProgram,
  machineInfo,
  median,
  noteFailures,
  parseArgs,
  parseLoadOutput,
  PIN,
  type Placement,
  placement,
  ratio,
  rotated,
  ROUNDS,
  runLoad,
  saveResults,
  type ServerProcess,
  toJson,
  versionLines,
  WARMUP,
  WHOLE_SECONDS,
  withServers,
} from "../_common/mod.ts";

type ServerName =
  | "evthread"
  | "reactor"
  | "node"
  | "native"
  | "raw"
  | "evsocket";

const SERVERS: readonly ServerName[] = [
  "evthread",
  "reactor",
  "node",
  "native",
  "raw",
  "evsocket",
];
const CONNECTIONS: readonly number[] = [100, 1];
const SERVER_FILES: Record<ServerName, URL> = {
  evthread: new URL("./_evthread_server.ts", import.meta.url),
  reactor: new URL("./_reactor_server.ts", import.meta.url),
  node: new URL("./_node_server.ts", import.meta.url),
  native: new URL("./_native_server.ts", import.meta.url),
  raw: new URL("./_raw_server.ts", import.meta.url),
  evsocket: new URL("./_evsocket_server.ts", import.meta.url),
};
/** The chart the README shows. */
const SVG_COPY = new URL("./http.svg", import.meta.url);
const SERVER_LABELS: Record<ServerName, string> = {
  evthread: "evthread serve() (task per connection)",
  reactor: "reactor: same parser on node:net callbacks",
  node: "node:http",
  native: "Deno.serve (native)",
  raw: "raw loop on Deno.Conn (no HTTP code)",
  evsocket: "the raw loop on EvSocket (serve()'s timeouts)",
};
const SHORT_LABELS: Record<ServerName, string> = {
  evthread: "evthread serve()",
  reactor: "reactor (node:net)",
  node: "node:http",
  native: "Deno.serve",
  raw: "raw Deno.Conn loop",
  evsocket: "EvSocket loop",
};
const COLORS: Record<ServerName, string> = {
  evthread: "#2f6fb0",
  reactor: "#7fa7d3",
  node: "#6a9f3a",
  native: "#8a8a8a",
  raw: "#c9a227",
  evsocket: "#b5651d",
};
/** One measurement. */
interface Sample extends HttpFigures {
  round: number;
  connections: number;
  server: ServerName;
  /** Position of this server in the round's order (0-based). */
  position: number;
  tool: HttpTool;
  /** Cores the server used (its CPU seconds over the wall time; pinned). */
  serverCpu?: number;
  /** Cores other processes took on the server's core (pinned runs only). */
  foreignCpu?: number;
  /** Share of the server's core the hypervisor took (steal; pinned runs). */
  stealCpu?: number;
  /** Server CPU per request, in microseconds. */
  serverCpuPerRequestUs?: number;
}

type Measurement = Omit<
  Sample,
  "round" | "connections" | "server" | "position"
>;

interface Options {
  rounds: number;
  seconds: number;
  warmup: number;
  load: "auto" | HttpTool;
  pin: "auto" | "off";
  servers: ServerName[];
}

function parseOptions(args: string[]): Options {
  return parseArgs(args, {
    rounds: ROUNDS,
    seconds: WHOLE_SECONDS,
    warmup: WARMUP,
    load: choice(["auto", "wrk", "deno"] as const),
    pin: PIN,
    servers: list(SERVERS),
  }, {
    rounds: 5,
    seconds: 3,
    warmup: 1,
    load: "auto",
    pin: "auto",
    servers: [...SERVERS],
  }, { usage: "deno task bench:http [options]" });
}

async function measure(
  server: ServerProcess<ServerName>,
  connections: number,
  seconds: number,
  tool: HttpTool,
  warmup: number,
  pin: Placement,
): Promise<Measurement> {
  const failed = (error: string): Measurement => ({
    tool,
    ...failedFigures(error),
  });
  if (server.exited) return failed(`${server.name} server has exited`);
  const [cmd, args] = loadProgram(
    tool,
    server.port,
    connections,
    seconds,
    warmup,
  );
  let run;
  try {
    // Both stop by themselves (the Deno client after seconds + warmup + 10
    // at the latest); this is the backstop.
    run = await runLoad(cmd, args, {
      core: pin.load,
      backstopSeconds: seconds + warmup + 20,
      watch: [server.pid],
    });
  } catch (error) {
    return failed(String(error));
  }
  if (run.code !== 0 || run.stdout === "") {
    return failed(`${tool} exit ${run.code}: ${run.stderr || run.stdout}`);
  }
  const figures = parseLoadOutput(tool, run.stdout);
  const cpu: Pick<
    Sample,
    "serverCpu" | "foreignCpu" | "stealCpu" | "serverCpuPerRequestUs"
  > = {};
  const own = run.cpu?.process(server.pid) ?? null;
  if (run.cpu !== null && own !== null && run.cpu.wall > 0) {
    // The Deno client counts no request of its warm-up: CPU per request
    // only when there was none.
    if (
      (tool === "wrk" || warmup === 0) &&
      figures.requests !== null && figures.requests > 0
    ) {
      cpu.serverCpuPerRequestUs = own / figures.requests * 1e6;
    }
    const core = pin.server === undefined ? null : run.cpu.core(pin.server);
    if (core !== null) {
      cpu.serverCpu = own / run.cpu.wall;
      cpu.foreignCpu = Math.max(0, core.busy - own) / run.cpu.wall;
      cpu.stealCpu = core.steal / run.cpu.wall;
    }
  }
  return { tool, ...figures, ...cpu };
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
  const { tool, wrk } = await chooseHttpTool(load);
  const machine = await machineInfo({ wrk });
  const pin = await placement(pinMode);
  const startedAt = machine.date;
  const estimate = serverNames.length *
    (warmup + rounds * CONNECTIONS.length *
        (seconds + (tool === "deno" ? 0.25 + 0.4 : 0.1)) +
      0.5);
  console.error(
    `http bench (${tool}): ${rounds} rounds x ${CONNECTIONS.length} loads x ` +
      `${serverNames.length} servers x ${seconds} s (+${warmup} s warm-up each), ` +
      `about ${Math.ceil(estimate)} s; ${pin.note}`,
  );

  const samples: Sample[] = [];
  await withServers(
    serverNames,
    (name) => denoRun(SERVER_FILES[name], ["--port", "0"]),
    pin.server,
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
      pin.server === undefined ? "" : ", server and load on separate cores"
    }; median of ${rounds} rounds`;
  const lines = [
    ...versionLines(machine),
    "",
    (tool === "wrk" ? `${machine.wrk}. ` : "") +
    `Load: ${loadText} per measurement; median of ${rounds} interleaved rounds; ` +
    `servers and load generator in separate processes on 127.0.0.1, ` +
    `${pin.note}; load average ${machine.loadavgAtStart} at start, ` +
    `${loadavgAtEnd} at end.`,
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
  if (pin.server !== undefined) {
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
    config: {
      rounds,
      seconds,
      warmup,
      tool,
      pin: pin.note,
      servers: serverNames,
    },
    startedAt,
    finishedAt: new Date().toISOString(),
    table: cells,
    samples,
  };
  const svgCopy = decodeURIComponent(SVG_COPY.pathname);
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
