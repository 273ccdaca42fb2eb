/**
 * Scaling out: the hello-world app of `../http/http.ts` behind HAProxy, with one back
 * end and with two. Three back-end processes on 127.0.0.1:
 *
 * - `b1` and `b2`: `_proxied_server.ts`, `serve()` with `proxyProtocol:
 *   { trusted: ["127.0.0.1"] }` (the header is required);
 * - `direct`: `../http/_evthread_server.ts`, the same app without
 *   `proxyProtocol`, for the baseline without HAProxy.
 *
 * And two HAProxy instances (mode tcp, `balance roundrobin`, `send-proxy-v2`,
 * one thread: `nbthread 1`), started once and kept for the whole run: `one`
 * with `b1` alone, `two` with `b1` and `b2`. Their configuration goes in on
 * stdin (`haproxy -f /dev/stdin -db`), so no file is written. In tcp mode a
 * keep-alive client connection maps to one back-end connection, so the
 * load's connections spread over the back ends and stay there.
 *
 * Each measurement is `wrk -t1 -c{connections} -d{seconds}s --latency`
 * (or `../http/_load.ts` when `wrk` is not on PATH, as in `../http/http.ts`) against
 * one of three scenarios: `direct` (wrk straight at `direct`), `one` and
 * `two` (wrk at the HAProxy instance). Every scenario is warmed up once
 * (`--warmup` seconds, not counted), then the rounds are interleaved, the
 * order rotating each round. The table gives medians over rounds of
 * requests/s, p50 and p99, the ratios two back ends / one back end and one
 * back end through HAProxy / direct, and how many cores each part used
 * (from `/proc`, read through `cat`).
 *
 * This machine has 2 cores, and HAProxy, wrk and the back ends share them:
 * the two back ends cannot get more CPU than one would, so the ratio two /
 * one is a figure, not a target (on a machine with a core per back end and
 * HAProxy and the load elsewhere it would approach 2). Pinning (`--pin auto`,
 * the default, when `taskset` runs and there are at least 2 cores): wrk and
 * HAProxy on core 0 (the "proxy tier"), the back ends on the last core (the
 * "app tier"), as `../http/http.ts` puts wrk on core 0 and the server on the other;
 * the direct baseline then measures exactly the `../http/http.ts` layout. In this
 * layout core 0 (wrk plus HAProxy, about 0.6 of a core for HAProxy alone)
 * is the bottleneck, so two back ends cannot beat one. Unpinned (`--pin
 * off`, HAProxy still on one thread) gave the same medians within the noise
 * in trial runs (two / one between 0.9x and 1.25x), the rounds no steadier.
 *
 * Usage:
 * ```sh
 * deno run --allow-net --allow-run --allow-read --allow-env \
 *   --allow-write=bench/results bench/scale_out/scale_out.ts \
 *   [--rounds 5] [--seconds 5] [--warmup 1] [--connections 100] \
 *   [--pin auto|off] [--servers direct,one,two]
 * ```
 * (`deno run -A bench/scale_out/scale_out.ts` works too.) HAProxy is looked up on PATH
 * and in /usr/sbin, /usr/local/sbin and /sbin; without it the script says so
 * and exits with 0. Writes `bench/results/scale_out.json` (needs
 * `--allow-write=bench/results`). Defaults take about 1.5 minutes.
 *
 * @module
 */

import {
  type BenchOptions,
  commandOutput,
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
  pinned,
  ratio,
  rotated,
  saveResults,
  type ServerProcess,
  toJson,
  withServers,
} from "../_common/harness.ts";
import { loadProgram, parseLoadOutput } from "../http/http.ts";

type Scenario = "direct" | "one" | "two";
type Backend = "b1" | "b2" | "direct";
type Tool = "wrk" | "deno";

const SCENARIOS: readonly Scenario[] = ["direct", "one", "two"];
const BACKENDS: readonly Backend[] = ["b1", "b2", "direct"];
const BACKEND_FILES: Record<Backend, string> = {
  b1: "./scale_out/_proxied_server.ts",
  b2: "./scale_out/_proxied_server.ts",
  direct: "./http/_evthread_server.ts",
};
const LABELS: Record<Scenario, string> = {
  direct: "direct: no HAProxy, no header (baseline)",
  one: "HAProxy, send-proxy-v2, 1 back end",
  two: "HAProxy, send-proxy-v2, 2 back ends (roundrobin)",
};
const BACKEND_COUNT: Record<Scenario, number> = { direct: 1, one: 1, two: 2 };
const HAPROXY_START_MS = 10_000;
const STOP_MS = 5_000;

/** Where each part runs, when pinned. */
interface Pinning {
  /** wrk and HAProxy. */
  proxyCore: number;
  /** The back ends. */
  backendCore: number;
}

interface Options extends BenchOptions<Scenario> {
  connections: number;
  pin: "auto" | "off";
}

/** One measurement. */
interface Sample {
  round: number;
  scenario: Scenario;
  /** Position of the scenario in the round's order (0-based). */
  position: number;
  tool: Tool;
  requestsPerSecond: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
  errors: number;
  non2xx: number;
  /** Cores HAProxy used (all threads), averaged over the measurement. */
  haproxyCores?: number;
  /** Cores the back ends of the scenario used, together. */
  backendCores?: number;
  /** Cores busy on the whole machine (user + nice + system + irq). */
  busyCores?: number;
  error?: string;
}

type Measurement = Omit<Sample, "round" | "scenario" | "position">;

function parseOptions(args: string[]): Options {
  const defaults: Options = {
    rounds: 5,
    seconds: 5,
    warmup: 1,
    connections: 100,
    pin: "auto",
    servers: [...SCENARIOS],
  };
  const opts = parseBenchOptions(args, defaults, SCENARIOS, {
    "--connections": (raw, opts) => {
      const value = Number(raw);
      if (!Number.isInteger(value) || value < 1) {
        throw new RangeError(
          `'--connections' must be a positive integer: received ${raw}`,
        );
      }
      opts.connections = value;
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

/** The first line `cmd -v` (or `-V`) prints, or null when it cannot run. */
async function versionLine(
  cmd: string,
  flag: string,
): Promise<string | null> {
  try {
    const { stdout, stderr } = await new Deno.Command(cmd, {
      args: [flag],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(5_000),
    }).output();
    const text = new TextDecoder().decode(stdout) +
      new TextDecoder().decode(stderr);
    return text.split("\n")[0]!.replace(/\s+Copyright.*$/, "").trim() ||
      `${cmd} (unknown version)`;
  } catch {
    return null;
  }
}

/** HAProxy on PATH or in the sbin directories, with its version line. */
async function findHaproxy(): Promise<
  { path: string; version: string } | null
> {
  let path: string[];
  try {
    path = (Deno.env.get("PATH") ?? "").split(":");
  } catch {
    path = [];
  }
  const dirs = [...path, "/usr/sbin", "/usr/local/sbin", "/sbin"];
  for (const dir of new Set(dirs.filter((d) => d !== ""))) {
    const candidate = `${dir}/haproxy`;
    try {
      if (!(await Deno.stat(candidate)).isFile) continue;
    } catch {
      continue;
    }
    const version = await versionLine(candidate, "-v");
    if (version !== null) return { path: candidate, version };
  }
  return null;
}

/** Pins to core 0 and the last core when `taskset` runs and cores >= 2. */
async function pinning(mode: "auto" | "off"): Promise<Pinning | null> {
  const cores = navigator.hardwareConcurrency;
  if (mode === "off" || cores < 2) return null;
  const ok = await commandOutput("taskset", ["-c", "0", "echo", "ok"], "");
  return ok === "ok" ? { proxyCore: 0, backendCore: cores - 1 } : null;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

function haproxyConfig(port: number, backends: ServerProcess[]): string {
  return [
    "global",
    "  maxconn 4096",
    "  nbthread 1",
    "defaults",
    "  mode tcp",
    "  timeout connect 2s",
    "  timeout client 30s",
    "  timeout server 30s",
    "frontend fe",
    `  bind 127.0.0.1:${port}`,
    "  default_backend be",
    "backend be",
    "  balance roundrobin",
    ...backends.map((b) =>
      `  server ${b.name} 127.0.0.1:${b.port} send-proxy-v2`
    ),
    "",
  ].join("\n");
}

/** Sends one `Connection: close` request; true on a 200 response. */
async function probe(port: number): Promise<boolean> {
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
  } catch {
    return false;
  }
  const timer = setTimeout(() => conn.close(), 2_000);
  try {
    await conn.write(
      new TextEncoder().encode(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
      ),
    );
    const buf = new Uint8Array(1024);
    const n = await conn.read(buf);
    return n !== null &&
      new TextDecoder().decode(buf.subarray(0, n)).startsWith(
        "HTTP/1.1 200 ",
      );
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // Closed by the timer.
    }
  }
}

/** A HAProxy process in the foreground, its output kept for errors. */
class Haproxy {
  readonly name: string;
  readonly port: number;
  readonly pid: number;
  readonly #child: Deno.ChildProcess;
  readonly #output: Promise<string>;
  #exited = false;
  #stopped: Promise<void> | undefined;

  constructor(name: string, port: number, child: Deno.ChildProcess) {
    this.name = name;
    this.port = port;
    this.pid = child.pid;
    this.#child = child;
    child.status.then(() => this.#exited = true);
    const text = (stream: ReadableStream<Uint8Array>) =>
      new Response(stream).text().catch(() => "");
    this.#output = Promise.all([text(child.stdout), text(child.stderr)])
      .then(([out, err]) => (out + err).trim());
  }

  get exited(): boolean {
    return this.#exited;
  }

  /**
   * Starts `haproxy -f /dev/stdin -db` with `backends` (on `core` when set)
   * and waits until a request through it gets a 200; tries 3 ports.
   */
  static async start(
    binary: string,
    name: string,
    backends: ServerProcess[],
    core: number | undefined,
    register: (proxy: Haproxy) => void,
  ): Promise<Haproxy> {
    let lastError = "";
    for (let attempt = 0; attempt < 3; attempt++) {
      const port = freePort();
      const config = haproxyConfig(port, backends);
      const [cmd, args] = pinned(core, binary, ["-f", "/dev/stdin", "-db"]);
      const child = new Deno.Command(cmd, {
        args,
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const proxy = new Haproxy(name, port, child);
      register(proxy);
      const writer = child.stdin.getWriter();
      await writer.write(new TextEncoder().encode(config)).catch(() => {});
      await writer.close().catch(() => {});
      const start = performance.now();
      while (!proxy.exited && performance.now() - start < HAPROXY_START_MS) {
        if (await probe(port)) return proxy;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      await proxy.stop();
      lastError = await proxy.#output;
    }
    throw new Error(
      `haproxy '${name}' did not serve within ${HAPROXY_START_MS} ms: ${lastError}`,
    );
  }

  /** SIGTERM, SIGKILL after a timeout; prints what it printed, if anything. */
  stop(): Promise<void> {
    this.#stopped ??= this.#stop();
    return this.#stopped;
  }

  async #stop(): Promise<void> {
    try {
      this.#child.kill("SIGTERM");
    } catch {
      // Already exited.
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((resolve) => {
      timer = setTimeout(() => resolve("late"), STOP_MS);
    });
    const first = await Promise.race([this.#child.status, late]);
    clearTimeout(timer);
    if (first === "late") {
      try {
        this.#child.kill("SIGKILL");
      } catch {
        // Exited meanwhile.
      }
    }
    await this.#child.status;
    const output = await this.#output;
    if (output !== "") console.error(`[haproxy ${this.name}] ${output}`);
  }

  /** Kills it at once (SIGINT). */
  kill(): void {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
  }
}

/** CPU ticks of the machine and of some processes, from /proc. */
interface CpuSnapshot {
  busy: number;
  total: number;
  processes: Map<number, number>;
}

async function cpuSnapshot(pids: number[]): Promise<CpuSnapshot | null> {
  const text = await commandOutput(
    "cat",
    ["/proc/stat", ...pids.map((pid) => `/proc/${pid}/stat`)],
    "",
  );
  const line = /^cpu (.*)$/m.exec(text);
  if (line === null) return null;
  const ticks = line[1]!.trim().split(/\s+/).map(Number);
  // user nice system idle iowait irq softirq steal
  const busy = ticks[0]! + ticks[1]! + ticks[2]! + ticks[5]! + ticks[6]!;
  const total = ticks.slice(0, 8).reduce((a, b) => a + b, 0);
  const processes = new Map<number, number>();
  for (const pid of pids) {
    const proc = new RegExp(`^${pid} \\(.*\\) (.*)$`, "m").exec(text);
    if (proc === null) return null;
    // After "(comm) ": utime is field 14 and stime 15.
    const fields = proc[1]!.split(" ");
    processes.set(pid, Number(fields[11]) + Number(fields[12]));
  }
  return { busy, total, processes };
}

async function measure(
  port: number,
  pids: { haproxy: number | null; backends: number[] },
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
  const [cmd, args] = pinned(
    pin?.proxyCore,
    ...loadProgram(tool, port, connections, seconds, warmup),
  );
  const command = loadCommand(cmd, args, seconds + warmup + 20);
  const watched = [
    ...(pids.haproxy === null ? [] : [pids.haproxy]),
    ...pids.backends,
  ];
  const before = await cpuSnapshot(watched);
  let output: Deno.CommandOutput;
  try {
    output = await command.output();
  } catch (error) {
    return failed(String(error));
  }
  const after = await cpuSnapshot(watched);
  const cpu: Pick<Sample, "haproxyCores" | "backendCores" | "busyCores"> = {};
  if (before !== null && after !== null && after.total > before.total) {
    const cores = navigator.hardwareConcurrency;
    const share = (ticks: number) =>
      ticks / (after.total - before.total) * cores;
    const used = (pid: number) =>
      after.processes.get(pid)! - before.processes.get(pid)!;
    if (pids.haproxy !== null) cpu.haproxyCores = share(used(pids.haproxy));
    cpu.backendCores = share(
      pids.backends.reduce((sum, pid) => sum + used(pid), 0),
    );
    cpu.busyCores = share(after.busy - before.busy);
  }
  const out = new TextDecoder().decode(output.stdout).trim();
  const err = new TextDecoder().decode(output.stderr).trim();
  if (output.code !== 0 || out === "") {
    return failed(`${tool} exit ${output.code}: ${err || out}`);
  }
  return { tool, ...parseLoadOutput(tool, out), ...cpu };
}

function formatCores(value: number | null): string {
  return value === null ? "n/a" : value.toFixed(2);
}

/** Medians of one scenario. */
interface Cell {
  scenario: Scenario;
  backends: number;
  requestsPerSecond: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
  /** Against the same through HAProxy with one back end. */
  vsOne: number | null;
  /** Against the direct baseline. */
  vsDirect: number | null;
  haproxyCores: number | null;
  backendCores: number | null;
  busyCores: number | null;
  samples: number;
  errors: number;
  non2xx: number;
}

function summarize(samples: Sample[], scenarios: Scenario[]): Cell[] {
  const of = (scenario: Scenario) =>
    samples.filter((s) =>
      s.scenario === scenario && s.requestsPerSecond !== null
    );
  const med = (ok: Sample[], pick: (s: Sample) => number | null | undefined) =>
    median(
      ok.map(pick).filter((v): v is number => v !== null && v !== undefined),
    );
  const rps = (scenario: Scenario) =>
    scenarios.includes(scenario)
      ? med(of(scenario), (s) => s.requestsPerSecond)
      : null;
  return scenarios.map((scenario) => {
    const ok = of(scenario);
    const value = rps(scenario);
    return {
      scenario,
      backends: BACKEND_COUNT[scenario],
      requestsPerSecond: value,
      p50Ms: med(ok, (s) => s.p50Ms),
      p99Ms: med(ok, (s) => s.p99Ms),
      vsOne: ratio(value, rps("one")),
      vsDirect: ratio(value, rps("direct")),
      haproxyCores: med(ok, (s) => s.haproxyCores),
      backendCores: med(ok, (s) => s.backendCores),
      busyCores: med(ok, (s) => s.busyCores),
      samples: ok.length,
      errors: ok.reduce((sum, s) => sum + s.errors, 0),
      non2xx: ok.reduce((sum, s) => sum + s.non2xx, 0),
    };
  });
}

function describe(result: Measurement): string {
  if (result.requestsPerSecond === null) return `FAILED ${result.error}`;
  return `${formatRps(result.requestsPerSecond)} req/s, p50 ${
    formatMs(result.p50Ms)
  }, p99 ${formatMs(result.p99Ms)}` +
    (result.busyCores === undefined
      ? ""
      : `; cores: haproxy ${formatCores(result.haproxyCores ?? null)}, ` +
        `back ends ${formatCores(result.backendCores ?? null)}, ` +
        `machine ${formatCores(result.busyCores)}`) +
    (result.errors + result.non2xx > 0
      ? ` (${result.errors} errors, ${result.non2xx} non-2xx)`
      : "");
}

async function main(): Promise<void> {
  const {
    rounds,
    seconds,
    warmup,
    connections,
    pin: pinMode,
    servers: scenarios,
  } = parseOptions(Deno.args);
  const haproxy = await findHaproxy();
  if (haproxy === null) {
    console.log(
      "haproxy not found: skipping the scale-out benchmark (install the Debian package haproxy)",
    );
    return;
  }
  const wrk = await versionLine("wrk", "-v");
  const tool: Tool = wrk === null ? "deno" : "wrk";
  if (tool === "deno") {
    console.error(
      "wrk not found: using bench/http/_load.ts as the load client",
    );
  }
  const machine = await machineInfo({
    cores: navigator.hardwareConcurrency,
    wrk,
    haproxy: haproxy.version,
  });
  const pin = await pinning(pinMode);
  const startedAt = new Date().toISOString();
  const estimate = scenarios.length *
      (warmup + rounds * (seconds + (tool === "deno" ? 0.65 : 0.15))) + 3;
  console.error(
    `scale-out bench (${tool}, ${connections} connections): ${rounds} rounds x ` +
      `${scenarios.length} scenarios x ${seconds} s (+${warmup} s warm-up each), ` +
      `about ${Math.ceil(estimate)} s; ` +
      (pin === null
        ? "not pinned"
        : `load and haproxy pinned to core ${pin.proxyCore}, back ends to core ${pin.backendCore}`),
  );

  const proxies: Haproxy[] = [];
  // Registered before withServers' own SIGINT listener, which exits.
  const onInterrupt = () => {
    for (const proxy of proxies) proxy.kill();
  };
  Deno.addSignalListener("SIGINT", onInterrupt);
  const samples: Sample[] = [];
  try {
    await withServers(
      BACKENDS,
      BACKEND_FILES,
      pin?.backendCore,
      async (servers) => {
        const byName = (name: Backend) => servers.find((s) => s.name === name)!;
        const b1 = byName("b1");
        const b2 = byName("b2");
        const direct = byName("direct");
        try {
          const register = (proxy: Haproxy) => proxies.push(proxy);
          const one = await Haproxy.start(
            haproxy.path,
            "one",
            [b1],
            pin?.proxyCore,
            register,
          );
          const two = await Haproxy.start(
            haproxy.path,
            "two",
            [b1, b2],
            pin?.proxyCore,
            register,
          );
          console.error(`haproxy one on port ${one.port}, two on ${two.port}`);
          const targets: Record<
            Scenario,
            {
              port: number;
              proxy: Haproxy | null;
              backends: ServerProcess[];
            }
          > = {
            direct: { port: direct.port, proxy: null, backends: [direct] },
            one: { port: one.port, proxy: one, backends: [b1] },
            two: { port: two.port, proxy: two, backends: [b1, b2] },
          };
          const run = (scenario: Scenario, secs: number, warm: number) => {
            const target = targets[scenario];
            const down = [target.proxy, ...target.backends].find((p) =>
              p?.exited
            );
            if (down) {
              return Promise.resolve<Measurement>({
                tool,
                requestsPerSecond: null,
                p50Ms: null,
                p99Ms: null,
                errors: 0,
                non2xx: 0,
                error: `${down.name} has exited`,
              });
            }
            return measure(
              target.port,
              {
                haproxy: target.proxy?.pid ?? null,
                backends: target.backends.map((b) => b.pid),
              },
              connections,
              secs,
              tool,
              warm,
              pin,
            );
          };
          if (warmup > 0) {
            for (const scenario of scenarios) {
              const w = await run(scenario, Math.ceil(warmup), 0);
              console.error(`warm-up  ${scenario.padEnd(6)} ${describe(w)}`);
            }
          }
          for (let round = 0; round < rounds; round++) {
            if (interrupted.signal.aborted) break;
            for (
              const [position, scenario] of rotated(scenarios, round)
                .entries()
            ) {
              const result = await run(scenario, seconds, 0.25);
              samples.push({ round: round + 1, scenario, position, ...result });
              console.error(
                `round ${round + 1}/${rounds} ${scenario.padEnd(6)} ${
                  describe(result)
                }`,
              );
            }
          }
        } finally {
          await Promise.all(proxies.map((proxy) => proxy.stop()));
        }
      },
    );
  } finally {
    Deno.removeSignalListener("SIGINT", onInterrupt);
  }

  const cells = summarize(samples, scenarios);
  const loadavgAtEnd = await loadavg();
  const loadText = tool === "wrk"
    ? `wrk -t1 -c${connections} -d${seconds}s`
    : `bench/http/_load.ts (Deno), ${connections} connections, ${seconds} s`;
  const lines = [
    `Machine: ${machine.cpuModel}, ${machine.cores} cores, Linux ${machine.osRelease}, ` +
    `Deno ${machine.deno} (V8 ${machine.v8}), ${haproxy.version}` +
    (tool === "wrk" ? `, ${machine.wrk}` : "") +
    `. Load: ${loadText} per measurement; median of ${rounds} interleaved rounds; ` +
    `HAProxy mode tcp, nbthread 1, send-proxy-v2; ` +
    (pin === null
      ? "not pinned"
      : `load and HAProxy pinned to core ${pin.proxyCore}, back ends to core ${pin.backendCore}`) +
    `; load average ${machine.loadavgAtStart} at start, ${loadavgAtEnd} at end.`,
    "",
    "| scenario | back ends | req/s (median) | p50 | p99 | vs 1 back end | vs direct | HAProxy cores | back-end cores | machine busy cores |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const cell of cells) {
    lines.push(
      `| ${LABELS[cell.scenario]} | ${cell.backends} | ${
        formatRps(cell.requestsPerSecond)
      } | ${formatMs(cell.p50Ms)} | ${formatMs(cell.p99Ms)} | ${
        cell.scenario === "direct" ? "" : formatRatio(cell.vsOne)
      } | ${formatRatio(cell.vsDirect)} | ${
        cell.scenario === "direct" ? "" : formatCores(cell.haproxyCores)
      } | ${formatCores(cell.backendCores)} | ${formatCores(cell.busyCores)} |`,
    );
  }
  const cell = (scenario: Scenario) =>
    cells.find((c) => c.scenario === scenario);
  const twoVsOne = cell("two")?.vsOne ?? null;
  const oneVsDirect = cell("one")?.vsDirect ?? null;
  const p99 = (scenario: Scenario) => cell(scenario)?.p99Ms ?? null;
  lines.push(
    "",
    `Two back ends / one back end: ${formatRatio(twoVsOne)} req/s, ` +
      `${formatRatio(ratio(p99("two"), p99("one")))} p99. ` +
      `One back end through HAProxy / direct: ${
        formatRatio(oneVsDirect)
      } req/s, ` +
      `${formatRatio(ratio(p99("one"), p99("direct")))} p99.`,
  );
  console.log(lines.join("\n"));

  const failures = samples.filter((s) => s.requestsPerSecond === null);
  noteFailures(failures.length, samples.length);
  for (const c of cells.filter((c) => c.errors + c.non2xx > 0)) {
    console.log(
      `${
        LABELS[c.scenario]
      }: ${c.errors} socket errors, ${c.non2xx} non-2xx responses in total.`,
    );
  }

  const report = {
    machine: { ...machine, loadavgAtEnd },
    config: { rounds, seconds, warmup, connections, tool, pin, scenarios },
    startedAt,
    finishedAt: new Date().toISOString(),
    table: cells,
    ratios: {
      twoVsOneRequestsPerSecond: twoVsOne,
      oneVsDirectRequestsPerSecond: oneVsDirect,
      twoVsOneP99: ratio(p99("two"), p99("one")),
      oneVsDirectP99: ratio(p99("one"), p99("direct")),
    },
    samples,
  };
  await saveResults({ "scale_out.json": toJson(report) });
  if (failures.length > 0) Deno.exitCode = 1;
}

if (import.meta.main) {
  await main();
}
