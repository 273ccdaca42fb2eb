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
  CONNECTIONS,
  denoRun,
  failedFigures,
  formatCores,
  formatMs,
  formatRatio,
  formatRps,
  type HttpFigures,
  type HttpTool,
  interrupted,
  list,
  loadavg,
  loadProgram,
  machineInfo,
  median,
  noteFailures,
  parseArgs,
  parseLoadOutput,
  PIN,
  pinned,
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
  wrkVersion,
} from "../_common/mod.ts";

type Scenario = "direct" | "one" | "two";
type Backend = "b1" | "b2" | "direct";

const SCENARIOS: readonly Scenario[] = ["direct", "one", "two"];
const BACKENDS: readonly Backend[] = ["b1", "b2", "direct"];
const BACKEND_FILES: Record<Backend, URL> = {
  b1: new URL("./_proxied_server.ts", import.meta.url),
  b2: new URL("./_proxied_server.ts", import.meta.url),
  direct: new URL("../http/_evthread_server.ts", import.meta.url),
};
const LABELS: Record<Scenario, string> = {
  direct: "direct: no HAProxy, no header (baseline)",
  one: "HAProxy, send-proxy-v2, 1 back end",
  two: "HAProxy, send-proxy-v2, 2 back ends (roundrobin)",
};
const BACKEND_COUNT: Record<Scenario, number> = { direct: 1, one: 1, two: 2 };
const HAPROXY_START_MS = 10_000;
const STOP_MS = 5_000;

interface Options {
  rounds: number;
  seconds: number;
  warmup: number;
  connections: number;
  pin: "auto" | "off";
  servers: Scenario[];
}

/** One measurement. */
interface Sample extends HttpFigures {
  round: number;
  scenario: Scenario;
  /** Position of the scenario in the round's order (0-based). */
  position: number;
  tool: HttpTool;
  /** Cores HAProxy used (all threads), averaged over the measurement. */
  haproxyCores?: number;
  /** Cores the back ends of the scenario used, together. */
  backendCores?: number;
  /** Cores busy on the whole machine (user + nice + system + irq). */
  busyCores?: number;
}

type Measurement = Omit<Sample, "round" | "scenario" | "position">;

function parseOptions(args: string[]): Options {
  return parseArgs(args, {
    rounds: ROUNDS,
    seconds: WHOLE_SECONDS,
    warmup: WARMUP,
    connections: CONNECTIONS,
    pin: PIN,
    servers: list(SCENARIOS),
  }, {
    rounds: 5,
    seconds: 5,
    warmup: 1,
    connections: 100,
    pin: "auto",
    servers: [...SCENARIOS],
  }, { usage: "deno task bench:scale-out [options]" });
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

/** Where the parts run, for the report. */
function pinText(pin: Placement): string {
  return pin.server === undefined
    ? pin.note
    : `load and HAProxy pinned to core ${pin.load}, back ends to core ${pin.server}`;
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

async function measure(
  port: number,
  pids: { haproxy: number | null; backends: number[] },
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
  const [cmd, args] = loadProgram(tool, port, connections, seconds, warmup);
  const watched = [
    ...(pids.haproxy === null ? [] : [pids.haproxy]),
    ...pids.backends,
  ];
  let run;
  try {
    run = await runLoad(cmd, args, {
      core: pin.load,
      backstopSeconds: seconds + warmup + 20,
      watch: watched,
    });
  } catch (error) {
    return failed(String(error));
  }
  const cpu: Pick<Sample, "haproxyCores" | "backendCores" | "busyCores"> = {};
  const usage = run.cpu;
  if (usage !== null && usage.wall > 0) {
    const cores = (seconds: number | null) =>
      seconds === null ? null : seconds / usage.wall;
    if (pids.haproxy !== null) {
      const haproxy = cores(usage.process(pids.haproxy));
      if (haproxy !== null) cpu.haproxyCores = haproxy;
    }
    const backends = pids.backends.map((pid) => usage.process(pid));
    if (backends.every((b) => b !== null)) {
      cpu.backendCores = backends.reduce((sum, b) => sum + b!, 0) /
        usage.wall;
    }
    cpu.busyCores = usage.busy / usage.wall;
  }
  if (run.code !== 0 || run.stdout === "") {
    return failed(`${tool} exit ${run.code}: ${run.stderr || run.stdout}`);
  }
  return { tool, ...parseLoadOutput(tool, run.stdout), ...cpu };
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
  const wrk = await wrkVersion();
  const tool: HttpTool = wrk === null ? "deno" : "wrk";
  if (tool === "deno") {
    console.error(
      "wrk not found: using bench/http/_load.ts as the load client",
    );
  }
  const machine = await machineInfo({ wrk, haproxy: haproxy.version });
  // The load and HAProxy (the "proxy tier") on core 0, the back ends on the
  // last core.
  const pin = await placement(pinMode);
  const startedAt = machine.date;
  const estimate = scenarios.length *
      (warmup + rounds * (seconds + (tool === "deno" ? 0.65 : 0.15))) + 3;
  console.error(
    `scale-out bench (${tool}, ${connections} connections): ${rounds} rounds x ` +
      `${scenarios.length} scenarios x ${seconds} s (+${warmup} s warm-up each), ` +
      `about ${Math.ceil(estimate)} s; ${pinText(pin)}`,
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
      (name) => denoRun(BACKEND_FILES[name], ["--port", "0"]),
      pin.server,
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
            pin.load,
            register,
          );
          const two = await Haproxy.start(
            haproxy.path,
            "two",
            [b1, b2],
            pin.load,
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
                ...failedFigures(`${down.name} has exited`),
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
    ...versionLines(machine),
    "",
    `${haproxy.version}` + (tool === "wrk" ? `, ${machine.wrk}` : "") +
    `. Load: ${loadText} per measurement; median of ${rounds} interleaved rounds; ` +
    `HAProxy mode tcp, nbthread 1, send-proxy-v2; ${
      pinText(pin)
    }; load average ${machine.loadavgAtStart} at start, ${loadavgAtEnd} at end.`,
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
    config: {
      rounds,
      seconds,
      warmup,
      connections,
      tool,
      pin: pinText(pin),
      scenarios,
    },
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
