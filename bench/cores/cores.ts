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
  type BenchOptions,
  commandOutput,
  denoRun,
  formatMs,
  formatRatio,
  formatRps,
  interrupted,
  loadavg,
  loadCommand,
  machineInfo,
  median,
  noteFailures,
  parseBenchOptions,
  ratio,
  rotated,
  saveResults,
  scriptPath,
  ServerProcess,
  toJson,
} from "../_common/harness.ts";
import { loadProgram, parseLoadOutput } from "../http/http.ts";
import { EvCluster } from "../../mod.ts";

type ServerName = "plain" | "1" | "2";
type Tool = "wrk" | "deno";

const SERVERS: readonly ServerName[] = ["plain", "1", "2"];
const LABELS: Record<ServerName, string> = {
  plain: "serve() in the main thread, no workers (reference)",
  "1": "EvCluster, 1 worker, reusePort",
  "2": "EvCluster, 2 workers, reusePort",
};
const STARTUP_TIMEOUT_MS = 20_000;
/** The worker module of the cluster servers. */
const WORKER_MODULE = "../../examples/_http_cluster_worker.ts";

interface Options extends BenchOptions<ServerName> {
  connections: number;
  load: "auto" | Tool;
}

/** One measurement. */
interface Sample {
  round: number;
  server: ServerName;
  /** Position of the server in the round's order (0-based). */
  position: number;
  tool: Tool;
  requestsPerSecond: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
  errors: number;
  non2xx: number;
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
  error?: string;
}

type Measurement = Omit<Sample, "round" | "server" | "position">;

function parseOptions(args: string[]): Options {
  const defaults: Options = {
    rounds: 5,
    seconds: 5,
    warmup: 1,
    connections: 100,
    load: "auto",
    servers: ["1", "2"],
  };
  const opts = parseBenchOptions(args, defaults, SERVERS, {
    "--connections": (raw, opts) => {
      const value = Number(raw);
      if (!Number.isInteger(value) || value < 1) {
        throw new RangeError(
          `'--connections' must be a positive integer: received ${raw}`,
        );
      }
      opts.connections = value;
    },
    "--load": (raw, opts) => {
      if (raw !== "auto" && raw !== "wrk" && raw !== "deno") {
        throw new TypeError(
          `'--load' must be auto, wrk or deno: received '${raw}'`,
        );
      }
      opts.load = raw;
    },
  });
  if (!Number.isInteger(opts.seconds) || opts.seconds < 1) {
    throw new RangeError(
      `'--seconds' must be a positive integer (wrk's -d): received ${opts.seconds}`,
    );
  }
  return opts;
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
  if (name === "plain") return denoRun("./http/_evthread_server.ts", "0");
  return [
    "run",
    "--no-prompt",
    "--unstable-net",
    "--allow-net",
    "--allow-read",
    scriptPath("./cores/cores.ts"),
    "--serve",
    name,
  ];
}

/** Spawns a server and waits for its first line, `listening <port>`. */
async function startServer(
  name: ServerName,
  register: (child: Deno.ChildProcess) => void,
): Promise<ServerProcess<ServerName>> {
  const child = new Deno.Command(Deno.execPath(), {
    args: serverArgs(name),
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  register(child);
  const reader = child.stdout.pipeThrough(new TextDecoderStream())
    .getReader();
  let text = "";
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new Error(
            `server ${name} printed no port in ${STARTUP_TIMEOUT_MS} ms`,
          ),
        ),
      STARTUP_TIMEOUT_MS,
    );
  });
  try {
    while (!text.includes("\n")) {
      const chunk = await Promise.race([reader.read(), timeout]);
      if (chunk.done) {
        throw new Error(`server ${name} exited before printing its port`);
      }
      text += chunk.value;
    }
  } finally {
    clearTimeout(timer);
  }
  const nl = text.indexOf("\n");
  const line = text.slice(0, nl).trim();
  const match = /^listening (\d+)$/.exec(line);
  if (match === null) {
    throw new Error(`server ${name}'s first line is not 'listening <port>'`);
  }
  const rest = text.slice(nl + 1);
  const drained = (async () => {
    if (rest.trim() !== "") console.error(`[${name}] ${rest.trimEnd()}`);
    try {
      while (true) {
        const chunk = await reader.read();
        if (chunk.done) break;
        console.error(`[${name}] ${chunk.value.trimEnd()}`);
      }
    } catch {
      // The pipe broke with the process.
    }
  })();
  return new ServerProcess(name, Number(match[1]), child, drained);
}

/** CPU ticks of the machine and of one process, from /proc. */
interface CpuSnapshot {
  busy: number;
  total: number;
  steal: number;
  process: number;
}

async function cpuSnapshot(pid: number): Promise<CpuSnapshot | null> {
  const text = await commandOutput(
    "cat",
    ["/proc/stat", `/proc/${pid}/stat`],
    "",
  );
  const line = /^cpu (.*)$/m.exec(text);
  const proc = new RegExp(`^${pid} \\(.*\\) (.*)$`, "m").exec(text);
  if (line === null || proc === null) return null;
  const ticks = line[1]!.trim().split(/\s+/).map(Number);
  // user nice system idle iowait irq softirq steal
  const busy = ticks[0]! + ticks[1]! + ticks[2]! + ticks[5]! + ticks[6]!;
  const total = ticks.slice(0, 8).reduce((a, b) => a + b, 0);
  // After "(comm) ": utime is field 14 and stime 15.
  const fields = proc[1]!.split(" ");
  return {
    busy,
    total,
    steal: ticks[7] ?? 0,
    process: Number(fields[11]) + Number(fields[12]),
  };
}

async function measure(
  server: ServerProcess<ServerName>,
  connections: number,
  seconds: number,
  tool: Tool,
  warmup: number,
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
  if (server.exited) return failed(`server ${server.name} has exited`);
  const [cmd, args] = loadProgram(
    tool,
    server.port,
    connections,
    seconds,
    warmup,
  );
  // Through a shell that prints its own /proc stat on stderr once the load
  // generator has exited: the children's CPU time in it is the load's.
  const command = loadCommand(
    "sh",
    ["-c", `"$@"; c=$?; cat /proc/$$/stat >&2; exit $c`, "sh", cmd, ...args],
    seconds + warmup + 20,
  );
  const before = await cpuSnapshot(server.pid);
  let output: Deno.CommandOutput;
  try {
    output = await command.output();
  } catch (error) {
    return failed(String(error));
  }
  const after = await cpuSnapshot(server.pid);
  let err = new TextDecoder().decode(output.stderr).trim();
  const shellStat = /^\d+ \(sh\) (.*)$/m.exec(err);
  err = err.replace(/^\d+ \(sh\) .*$/m, "").trim();
  const cpu: Pick<
    Sample,
    "serverCores" | "loadCores" | "otherCores" | "busyCores" | "stealCores"
  > = {};
  if (before !== null && after !== null && after.total > before.total) {
    const cores = navigator.hardwareConcurrency;
    const share = (ticks: number) =>
      ticks / (after.total - before.total) * cores;
    const server = after.process - before.process;
    cpu.serverCores = share(server);
    cpu.busyCores = share(after.busy - before.busy);
    cpu.stealCores = share(after.steal - before.steal);
    if (shellStat !== null) {
      // After "(comm) ": cutime is field 16 and cstime 17.
      const fields = shellStat[1]!.split(" ");
      const load = Number(fields[13]) + Number(fields[14]);
      cpu.loadCores = share(load);
      cpu.otherCores = Math.max(
        0,
        share(after.busy - before.busy - server - load),
      );
    }
  }
  const out = new TextDecoder().decode(output.stdout).trim();
  if (output.code !== 0 || out === "") {
    return failed(`${tool} exit ${output.code}: ${err || out}`);
  }
  return { tool, ...parseLoadOutput(tool, out), ...cpu };
}

function formatCores(value: number | null | undefined): string {
  return value === null || value === undefined ? "n/a" : value.toFixed(2);
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

async function main(): Promise<void> {
  const opts = parseOptions(Deno.args);
  const { rounds, seconds, warmup, connections, servers: names } = opts;
  const wrk = await wrkVersion();
  let tool: Tool;
  if (opts.load === "wrk") {
    if (wrk === null) throw new Error("'--load wrk': wrk is not on PATH");
    tool = "wrk";
  } else if (opts.load === "deno") tool = "deno";
  else tool = wrk === null ? "deno" : "wrk";
  if (tool === "deno" && opts.load === "auto") {
    console.error(
      "wrk not found: using bench/http/_load.ts as the load client",
    );
  }
  const machine = await machineInfo({
    cores: navigator.hardwareConcurrency,
    wrk,
  });
  const startedAt = new Date().toISOString();
  console.error(
    `cores bench (${tool}): ${rounds} rounds x ${names.length} servers x ` +
      `${seconds} s at ${connections} connections (+${warmup} s warm-up each), ` +
      `about ${
        Math.ceil(names.length * (warmup + rounds * (seconds + 0.2) + 1))
      } s; not pinned; load average ${machine.loadavgAtStart}`,
  );

  const children: Deno.ChildProcess[] = [];
  const servers: ServerProcess<ServerName>[] = [];
  const onInterrupt = () => {
    interrupted.abort();
    for (const child of children) {
      try {
        child.kill("SIGTERM");
      } catch {
        // Already exited.
      }
    }
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", onInterrupt);
  const samples: Sample[] = [];
  try {
    for (const name of names) {
      servers.push(await startServer(name, (c) => children.push(c)));
    }
    console.error(servers.map((s) => `${s.name} on port ${s.port}`).join(", "));
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
  } finally {
    const statuses = await Promise.all(servers.map((s) => s.stop()));
    for (const [i, status] of statuses.entries()) {
      if (!status.success && status.signal !== "SIGTERM") {
        console.error(`server ${servers[i]!.name} exited with ${status.code}`);
      }
    }
    for (const child of children.slice(servers.length)) {
      try {
        child.kill("SIGKILL");
      } catch {
        // Already exited.
      }
      await child.status;
    }
    Deno.removeSignalListener("SIGINT", onInterrupt);
  }

  const cells = summarize(samples, names);
  const loadavgAtEnd = await loadavg();
  const loadText = tool === "wrk"
    ? `wrk -t1 -c${connections} -d${seconds}s`
    : `bench/http/_load.ts (Deno, raw sockets), ${connections} connections, ${seconds} s`;
  const lines = [
    `Machine: ${machine.cpuModel}, ${machine.cores} cores, Linux ${machine.osRelease}, ` +
    `Deno ${machine.deno} (V8 ${machine.v8})` +
    (tool === "wrk" ? `, ${machine.wrk}` : "") +
    `. Load: ${loadText} per measurement; median of ${rounds} interleaved rounds; ` +
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
  if (Deno.args[0] === "--serve") {
    const workers = Number(Deno.args[1]);
    if (!Number.isInteger(workers) || workers < 1) {
      console.error(
        `'--serve' needs a worker count: received ${Deno.args[1]}`,
      );
      Deno.exit(2);
    }
    await serveCluster(workers);
  } else {
    await main();
  }
}
