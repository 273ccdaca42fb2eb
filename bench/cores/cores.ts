/**
 * One loop per core: the hello-world HTTP app of `../http/http.ts` (`serve()`, every
 * request gets 200 `Hello, World!`) on an `EvCluster` of 1 worker and of 2
 * workers, each worker running `examples/_http_cluster_worker.ts` (its own
 * `EvLoop`, listening with `reusePort: true`). Both servers go through
 * `EvCluster` and `reusePort`, so the worker count is the only difference.
 * Each server is its own process (`bench/cores/cores.ts --serve N`, run with
 * `--unstable-net --allow-net --allow-read`), started once and kept for the
 * whole run. `--servers plain,1,2` adds `../http/_evthread_server.ts`, the same
 * app on `serve()` in the main thread, without workers, as a reference.
 *
 * Load: `wrk -t1 -c{connections} -d{seconds}s --latency` (or `../http/_load.ts`
 * when `wrk` is not on PATH, as in `../http/http.ts`). Every server is warmed up
 * once (`--warmup` seconds, not counted), then rounds are interleaved, the
 * order rotating each round; the table gives medians over rounds of
 * requests/s, p50 and p99, the ratio against 1 worker, and how many cores
 * were used during the measurement by the server process (all its
 * threads), by the load generator, and by everything else (from
 * `/proc/stat`, `/proc/PID/stat`, and the stat of a shell that waited for
 * the load generator, read through `cat`). "Others" above 0.1 core means
 * another process disturbed the run: the script says so; rerun when the
 * machine is quiet.
 *
 * No pinning. wrk shares the cores with the server either way, and every
 * layout favours one side: pinning the server to one core (as `../http/http.ts`
 * does) would cap 2 workers at the 1 worker's core; pinning wrk to core 0
 * and leaving the server free puts one of 2 workers beside wrk and the
 * other alone, so the kernel's even split of connections meets an uneven
 * split of CPU. Unpinned, the scheduler balances wrk and the workers'
 * threads across both cores, which is what a server sharing its machine
 * gets. On a 2-core machine the expected ratio is therefore well under 2:
 * 1 worker gets a core while wrk takes the other; 2 workers share the
 * machine with wrk. The ratio is a figure, not a target; on a machine with
 * a core per worker and the load elsewhere it would approach the worker
 * count.
 *
 * Usage:
 * ```sh
 * deno run -A bench/cores/cores.ts [--rounds 5] [--seconds 5] [--warmup 1] \
 *   [--connections 100] [--servers 1,2] [--load auto|wrk|deno]
 * ```
 * or with exact permissions: `--allow-net --allow-run --allow-read
 * --allow-env --allow-write=bench/results`. The children get
 * `--unstable-net` whatever this process has. Writes
 * `bench/results/cores.json`. Defaults take about a minute.
 *
 * @module
 */

import {
  benchPath,
  choice,
  chooseHttpTool,
  CONNECTIONS,
  denoRun,
  failedFigures,
  formatCores,
  formatMs,
  formatRatio,
  formatRps,
  type HttpFigures,
  type HttpTool,
  integer,
  interrupted,
  list,
  loadavg,
  loadProgram,
  machineInfo,
  median,
  noteFailures,
  parseArgs,
  parseLoadOutput,
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
import { EvCluster } from "../../mod.ts";

type ServerName = "plain" | "1" | "2";

const SERVERS: readonly ServerName[] = ["plain", "1", "2"];
const LABELS: Record<ServerName, string> = {
  plain: "serve() in the main thread, no workers (reference)",
  "1": "EvCluster, 1 worker, reusePort",
  "2": "EvCluster, 2 workers, reusePort",
};
/** The worker module of the cluster servers. */
const WORKER_MODULE = "../../examples/_http_cluster_worker.ts";

interface Options {
  rounds: number;
  seconds: number;
  warmup: number;
  connections: number;
  servers: ServerName[];
  load: "auto" | HttpTool;
  /** Not the benchmark: serve with an EvCluster of this many workers. */
  serve: number;
}

/** One measurement. */
interface Sample extends HttpFigures {
  round: number;
  server: ServerName;
  /** Position of the server in the round's order (0-based). */
  position: number;
  tool: HttpTool;
  /** Cores the server process used (all its threads), on average. */
  serverCores?: number;
  /** Cores the load generator used. */
  loadCores?: number;
  /**
   * Cores other processes used: the machine's busy time less the server's
   * and the load generator's. Above 0.1 the measurement was disturbed.
   */
  otherCores?: number;
  /** Cores busy on the whole machine (user + nice + system + irq). */
  busyCores?: number;
  /** Cores the hypervisor took (steal). */
  stealCores?: number;
}

type Measurement = Omit<Sample, "round" | "server" | "position">;

function parseOptions(args: string[]): Options {
  return parseArgs(args, {
    rounds: ROUNDS,
    seconds: WHOLE_SECONDS,
    warmup: WARMUP,
    connections: CONNECTIONS,
    servers: list(SERVERS),
    load: choice(["auto", "wrk", "deno"] as const),
    serve: integer(0),
  }, {
    rounds: 5,
    seconds: 5,
    warmup: 1,
    connections: 100,
    servers: ["1", "2"],
    load: "auto",
    serve: 0,
  }, { usage: "deno task bench:cores [options]" });
}

// ---------------------------------------------------------------------------
// The server process: `bench/cores/cores.ts --serve N`.

/**
 * Runs an EvCluster of `workers` on a free port of 127.0.0.1, prints
 * `listening <port>`, and shuts down on SIGTERM (grace 1 s).
 */
async function serveCluster(workers: number): Promise<void> {
  // Each worker listening on port 0 would get a port of its own: pick one.
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = probe.addr.port;
  probe.close();
  const cluster = await EvCluster.start(
    new URL(WORKER_MODULE, import.meta.url),
    { workers, data: { hostname: "127.0.0.1", port } },
  );
  const onTerm = () => {
    Deno.removeSignalListener("SIGTERM", onTerm);
    cluster.shutdown({ grace: 1000 });
  };
  Deno.addSignalListener("SIGTERM", onTerm);
  console.log(`listening ${port}`);
  await cluster.finished;
}

// ---------------------------------------------------------------------------
// The benchmark.

/** `deno run` arguments of a server. */
function serverArgs(name: ServerName): string[] {
  if (name === "plain") {
    return denoRun(new URL("../http/_evthread_server.ts", import.meta.url), [
      "--port",
      "0",
    ]);
  }
  return [
    "run",
    "--no-prompt",
    "--unstable-net",
    "--allow-net",
    "--allow-read",
    benchPath("./cores/cores.ts"),
    "--serve",
    name,
  ];
}

async function measure(
  server: ServerProcess<ServerName>,
  connections: number,
  seconds: number,
  tool: HttpTool,
  warmup: number,
): Promise<Measurement> {
  const failed = (error: string): Measurement => ({
    tool,
    ...failedFigures(error),
  });
  if (server.exited) return failed(`server ${server.name} has exited`);
  const [cmd, args] = loadProgram(
    tool,
    server.port,
    connections,
    seconds,
    warmup,
  );
  let run;
  try {
    run = await runLoad(cmd, args, {
      backstopSeconds: seconds + warmup + 20,
      watch: [server.pid],
    });
  } catch (error) {
    return failed(String(error));
  }
  const cpu: Pick<
    Sample,
    "serverCores" | "loadCores" | "otherCores" | "busyCores" | "stealCores"
  > = {};
  const usage = run.cpu;
  const own = usage?.process(server.pid) ?? null;
  if (usage !== null && own !== null && usage.wall > 0) {
    cpu.serverCores = own / usage.wall;
    cpu.busyCores = usage.busy / usage.wall;
    cpu.stealCores = usage.steal / usage.wall;
    if (run.loadCpu !== null) {
      cpu.loadCores = run.loadCpu / usage.wall;
      cpu.otherCores = Math.max(
        0,
        (usage.busy - own - run.loadCpu) / usage.wall,
      );
    }
  }
  if (run.code !== 0 || run.stdout === "") {
    return failed(`${tool} exit ${run.code}: ${run.stderr || run.stdout}`);
  }
  return { tool, ...parseLoadOutput(tool, run.stdout), ...cpu };
}

function describe(result: Measurement): string {
  if (result.requestsPerSecond === null) return `FAILED ${result.error}`;
  return `${formatRps(result.requestsPerSecond)} req/s, p50 ${
    formatMs(result.p50Ms)
  }, p99 ${formatMs(result.p99Ms)}; cores: server ${
    formatCores(result.serverCores)
  }, load ${formatCores(result.loadCores)}, others ${
    formatCores(result.otherCores)
  }` +
    (result.stealCores ? `, ${formatCores(result.stealCores)} steal` : "") +
    (result.errors + result.non2xx > 0
      ? ` (${result.errors} errors, ${result.non2xx} non-2xx)`
      : "");
}

/** Medians of one server's rounds. */
interface Cell {
  server: ServerName;
  requestsPerSecond: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
  /** Median requests/s against the 1-worker cluster's. */
  vsOneWorker: number | null;
  serverCores: number | null;
  loadCores: number | null;
  otherCores: number | null;
  samples: number;
  errors: number;
  non2xx: number;
}

function summarize(samples: Sample[], servers: ServerName[]): Cell[] {
  const ok = (server: ServerName) =>
    samples.filter((s) => s.server === server && s.requestsPerSecond !== null);
  const values = (server: ServerName, key: keyof Sample) =>
    ok(server).map((s) => s[key]).filter((v): v is number =>
      typeof v === "number"
    );
  const rps = (server: ServerName) =>
    median(values(server, "requestsPerSecond"));
  const one = servers.includes("1") ? rps("1") : null;
  return servers.map((server) => ({
    server,
    requestsPerSecond: rps(server),
    p50Ms: median(values(server, "p50Ms")),
    p99Ms: median(values(server, "p99Ms")),
    vsOneWorker: ratio(rps(server), one),
    serverCores: median(values(server, "serverCores")),
    loadCores: median(values(server, "loadCores")),
    otherCores: median(values(server, "otherCores")),
    samples: ok(server).length,
    errors: ok(server).reduce((sum, s) => sum + s.errors, 0),
    non2xx: ok(server).reduce((sum, s) => sum + s.non2xx, 0),
  }));
}

async function main(): Promise<void> {
  const opts = parseOptions(Deno.args);
  const { rounds, seconds, warmup, connections, servers: names } = opts;
  const { tool, wrk } = await chooseHttpTool(opts.load);
  const machine = await machineInfo({ wrk });
  const startedAt = machine.date;
  console.error(
    `cores bench (${tool}): ${rounds} rounds x ${names.length} servers x ` +
      `${seconds} s at ${connections} connections (+${warmup} s warm-up each), ` +
      `about ${
        Math.ceil(names.length * (warmup + rounds * (seconds + 0.2) + 1))
      } s; not pinned; load average ${machine.loadavgAtStart}`,
  );

  const samples: Sample[] = [];
  await withServers(names, serverArgs, undefined, async (servers) => {
    if (warmup > 0) {
      for (const server of servers) {
        const w = await measure(
          server,
          connections,
          Math.ceil(warmup),
          tool,
          0,
        );
        console.error(`warm-up  ${server.name.padEnd(5)} ${describe(w)}`);
      }
    }
    for (let round = 0; round < rounds; round++) {
      if (interrupted.signal.aborted) break;
      for (const [position, server] of rotated(servers, round).entries()) {
        const result = await measure(server, connections, seconds, tool, 0.25);
        samples.push({
          round: round + 1,
          server: server.name,
          position,
          ...result,
        });
        console.error(
          `round ${round + 1}/${rounds} ${server.name.padEnd(5)} ${
            describe(result)
          }`,
        );
      }
    }
  });

  const cells = summarize(samples, names);
  const loadavgAtEnd = await loadavg();
  const loadText = tool === "wrk"
    ? `wrk -t1 -c${connections} -d${seconds}s`
    : `bench/http/_load.ts (Deno, raw sockets), ${connections} connections, ${seconds} s`;
  const lines = [
    ...versionLines(machine),
    "",
    (tool === "wrk" ? `${machine.wrk}. ` : "") +
    `Load: ${loadText} per measurement; median of ${rounds} interleaved rounds; ` +
    `each server and the load generator in its own process on 127.0.0.1, not pinned ` +
    `(the load generator shares the cores with the workers); load average ` +
    `${machine.loadavgAtStart} at start, ${loadavgAtEnd} at end.`,
    "",
    "| server | req/s (median) | p50 | p99 | vs 1 worker | cores: server | load | others |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const cell of cells) {
    lines.push(
      `| ${LABELS[cell.server]} | ${formatRps(cell.requestsPerSecond)} | ${
        formatMs(cell.p50Ms)
      } | ${formatMs(cell.p99Ms)} | ${formatRatio(cell.vsOneWorker)} | ${
        formatCores(cell.serverCores)
      } | ${formatCores(cell.loadCores)} | ${formatCores(cell.otherCores)} |`,
    );
  }
  const one = cells.find((c) => c.server === "1");
  const two = cells.find((c) => c.server === "2");
  if (one !== undefined && two !== undefined) {
    lines.push(
      "",
      `2 workers / 1 worker: ${
        formatRatio(ratio(two.requestsPerSecond, one.requestsPerSecond))
      } requests/s, p99 ${formatRatio(ratio(two.p99Ms, one.p99Ms))}.`,
    );
  }
  const busiest = Math.max(0, ...cells.map((c) => c.otherCores ?? 0));
  lines.push(
    "",
    `Other processes used at most ${
      formatCores(busiest)
    } cores (median per server)` +
      (busiest > 0.1
        ? ": the machine was not quiet; rerun when it is (see otherCores in the JSON)."
        : "."),
  );
  console.log(lines.join("\n"));
  const failures = samples.filter((s) => s.requestsPerSecond === null);
  noteFailures(failures.length, samples.length);
  for (const cell of cells.filter((c) => c.errors + c.non2xx > 0)) {
    console.log(
      `${LABELS[cell.server]}: ${cell.errors} socket errors, ` +
        `${cell.non2xx} non-2xx responses in total.`,
    );
  }

  const report = {
    machine: { ...machine, loadavgAtEnd },
    config: {
      rounds,
      seconds,
      warmup,
      connections,
      tool,
      pin: null,
      servers: names,
    },
    startedAt,
    finishedAt: new Date().toISOString(),
    table: cells,
    samples,
  };
  await saveResults({ "cores.json": toJson(report) });
  if (failures.length > 0) Deno.exitCode = 1;
}

if (import.meta.main) {
  const { serve } = parseOptions(Deno.args);
  if (serve > 0) await serveCluster(serve);
  else await main();
}
