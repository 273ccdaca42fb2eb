/**
 * Load benchmark of three echo servers, each in its own process:
 *
 * 1. `_evthread_echo_server.ts`: this library (`EvLoop.listen`, `recv` / `send`),
 * 2. `_raw_echo_server.ts`: a hand-rolled `Deno.listen` + `conn.read` / `conn.write` loop,
 * 3. `_node_echo_server.ts`: `node:net` `createServer` with `data` callbacks.
 *
 * Each measurement runs `_echo_load.ts` as a fresh subprocess against one server.
 * Rounds are interleaved (every round runs every scenario on every server, the
 * server order rotating each round) so that drift in machine load spreads over
 * all servers; the table reports medians over rounds.
 *
 * Usage:
 * ```sh
 * deno run --allow-net --allow-run --allow-read --allow-env --allow-write=bench/results \
 *   bench/echo.ts [--rounds 5] [--seconds 3] [--warmup 0.25] [--servers evthread,raw,node]
 * ```
 * Without `--allow-write` the JSON results are not saved (a warning says so);
 * everything else is printed.
 *
 * @module
 */

import type { LoadResult } from "./_echo_load.ts";

type ServerName = "evthread" | "raw" | "node";
type ScenarioName = "pingpong-1" | "pingpong-100" | "stream";

const SERVERS: readonly ServerName[] = ["evthread", "raw", "node"];
const SCENARIOS: readonly ScenarioName[] = [
  "pingpong-1",
  "pingpong-100",
  "stream",
];
const SERVER_FILES: Record<ServerName, string> = {
  evthread: "./_evthread_echo_server.ts",
  raw: "./_raw_echo_server.ts",
  node: "./_node_echo_server.ts",
};
const SCENARIO_LABELS: Record<ScenarioName, string> = {
  "pingpong-1": "ping-pong 64 B, 1 conn (round trips/s)",
  "pingpong-100": "ping-pong 64 B, 100 conns (round trips/s)",
  "stream": "stream 64 KiB writes both ways, 1 conn (MB/s)",
};
const STARTUP_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 5_000;
/** Aborted on SIGINT: kills the load client that is running. */
const interrupted = new AbortController();

/** One measurement. */
interface Sample {
  round: number;
  scenario: ScenarioName;
  server: ServerName;
  /** Position of this server in the round's order (0-based). */
  position: number;
  value: number | null;
  unit: string | null;
  count: number | null;
  error?: string;
}

function scriptPath(relative: string): string {
  return decodeURIComponent(new URL(relative, import.meta.url).pathname);
}

interface Options {
  rounds: number;
  seconds: number;
  warmup: number;
  servers: ServerName[];
}

function parseOptions(args: string[]): Options {
  const opts: Options = {
    rounds: 5,
    seconds: 3,
    warmup: 0.25,
    servers: [...SERVERS],
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const eq = arg.indexOf("=");
    const flag = eq >= 0 ? arg.slice(0, eq) : arg;
    const raw = eq >= 0 ? arg.slice(eq + 1) : args[++i];
    if (raw === undefined) {
      throw new TypeError(`Option '${flag}' needs a value`);
    }
    if (flag === "--servers") {
      const names = raw.split(",").filter((n) => n !== "");
      for (const name of names) {
        if (!(SERVERS as readonly string[]).includes(name)) {
          throw new TypeError(
            `'--servers' must list evthread, raw or node: received '${name}'`,
          );
        }
      }
      if (names.length === 0) {
        throw new TypeError("'--servers' must name at least one server");
      }
      opts.servers = names as ServerName[];
      continue;
    }
    if (flag !== "--rounds" && flag !== "--seconds" && flag !== "--warmup") {
      throw new TypeError(
        `Expected --rounds, --seconds, --warmup or --servers: received '${arg}'`,
      );
    }
    const value = Number(raw);
    if (!Number.isFinite(value) || value < 0) {
      throw new RangeError(
        `'${flag}' must be a non-negative number: received ${raw}`,
      );
    }
    opts[flag.slice(2) as "rounds" | "seconds" | "warmup"] = value;
  }
  if (!Number.isInteger(opts.rounds) || opts.rounds < 1) {
    throw new RangeError(
      `'--rounds' must be a positive integer: received ${opts.rounds}`,
    );
  }
  if (opts.seconds <= 0) {
    throw new RangeError(
      `'--seconds' must be positive: received ${opts.seconds}`,
    );
  }
  return opts;
}

/** Output of a short command, or `fallback` if it cannot run. */
async function commandOutput(
  cmd: string,
  args: string[],
  fallback: string,
): Promise<string> {
  try {
    const { success, stdout } = await new Deno.Command(cmd, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "null",
      signal: AbortSignal.timeout(5_000),
    }).output();
    return success ? new TextDecoder().decode(stdout).trim() : fallback;
  } catch {
    return fallback;
  }
}

/**
 * `Deno.osRelease()` and `Deno.loadavg()` need `--allow-sys`, and Deno 2.9.6
 * reads /proc files only under `--allow-all`; the bench is run with
 * `--allow-run`, so fall back to `uname` and `cat`.
 */
async function osRelease(): Promise<string> {
  try {
    return Deno.osRelease();
  } catch {
    return await commandOutput("uname", ["-r"], "unknown");
  }
}

async function loadavg(): Promise<string> {
  try {
    return Deno.loadavg().map((n) => n.toFixed(2)).join(" ");
  } catch {
    const text = await commandOutput("cat", ["/proc/loadavg"], "unknown");
    return text.split(" ").slice(0, 3).join(" ");
  }
}

async function machineInfo(): Promise<Record<string, unknown>> {
  const cpuinfo = await commandOutput("cat", ["/proc/cpuinfo"], "");
  const cpuModel = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? "unknown";
  return {
    os: Deno.build.os,
    arch: Deno.build.arch,
    osRelease: await osRelease(),
    cpuModel,
    hardwareConcurrency: navigator.hardwareConcurrency,
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    loadavgAtStart: await loadavg(),
  };
}

/** An echo server subprocess. */
class ServerProcess {
  readonly name: ServerName;
  readonly port: number;
  readonly #child: Deno.ChildProcess;
  readonly #drained: Promise<void>;
  #exited = false;
  #stopped: Promise<Deno.CommandStatus> | undefined;

  constructor(
    name: ServerName,
    port: number,
    child: Deno.ChildProcess,
    drained: Promise<void>,
  ) {
    this.name = name;
    this.port = port;
    this.#child = child;
    this.#drained = drained;
    child.status.then(() => this.#exited = true);
  }

  get exited(): boolean {
    return this.#exited;
  }

  /** Spawns the server and waits for its `listening <port>` line. */
  static async start(
    name: ServerName,
    register: (child: Deno.ChildProcess) => void,
  ) {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-prompt",
        "--allow-net",
        scriptPath(SERVER_FILES[name]),
        "0",
      ],
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
              `${name} server printed no port in ${STARTUP_TIMEOUT_MS} ms`,
            ),
          ),
        STARTUP_TIMEOUT_MS,
      );
    });
    let line: string;
    try {
      while (true) {
        const nl = text.indexOf("\n");
        if (nl >= 0) {
          line = text.slice(0, nl).trim();
          text = text.slice(nl + 1);
          break;
        }
        const chunk = await Promise.race([reader.read(), timeout]);
        if (chunk.done) {
          throw new Error(`${name} server exited before printing its port`);
        }
        text += chunk.value;
      }
    } finally {
      clearTimeout(timer);
    }
    const match = /^listening (\d+)$/.exec(line);
    if (match === null) {
      throw new Error(
        `${name} server's first line is not 'listening <port>': '${line}'`,
      );
    }
    // Keep draining stdout so a chatty server never blocks on a full pipe.
    const drained = (async () => {
      if (text.trim() !== "") console.error(`[${name}] ${text.trimEnd()}`);
      try {
        while (true) {
          const chunk = await reader.read();
          if (chunk.done) break;
          console.error(`[${name}] ${chunk.value.trimEnd()}`);
        }
      } catch {
        // The pipe broke with the process: nothing left to show.
      }
    })();
    return new ServerProcess(name, Number(match[1]), child, drained);
  }

  /** Sends SIGTERM, waits for the exit (SIGKILL after a timeout). */
  stop(): Promise<Deno.CommandStatus> {
    this.#stopped ??= stopChild(this.#child, this.name).then(async (status) => {
      await this.#drained;
      return status;
    });
    return this.#stopped;
  }
}

async function stopChild(
  child: Deno.ChildProcess,
  name: string,
): Promise<Deno.CommandStatus> {
  try {
    child.kill("SIGTERM");
  } catch {
    // Already exited.
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), STOP_TIMEOUT_MS);
  });
  const first = await Promise.race([child.status, timedOut]);
  clearTimeout(timer);
  if (first !== "timeout") return first;
  console.error(
    `${name}: no exit ${STOP_TIMEOUT_MS} ms after SIGTERM; sending SIGKILL`,
  );
  try {
    child.kill("SIGKILL");
  } catch {
    // Exited in between.
  }
  return await child.status;
}

async function measure(
  server: ServerProcess,
  scenario: ScenarioName,
  seconds: number,
  warmup: number,
): Promise<Pick<Sample, "value" | "unit" | "count" | "error">> {
  if (server.exited) {
    return {
      value: null,
      unit: null,
      count: null,
      error: `${server.name} server has exited`,
    };
  }
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      "--allow-net",
      scriptPath("./_echo_load.ts"),
      "--port",
      String(server.port),
      "--scenario",
      scenario,
      "--seconds",
      String(seconds),
      "--warmup",
      String(warmup),
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    // The client stops itself after seconds + warmup + 10; this is the backstop.
    signal: AbortSignal.any([
      AbortSignal.timeout((seconds + warmup + 20) * 1000),
      interrupted.signal,
    ]),
  }).output();
  const out = new TextDecoder().decode(stdout).trim().split("\n").at(-1) ?? "";
  const err = new TextDecoder().decode(stderr).trim();
  if (code !== 0 || out === "") {
    return {
      value: null,
      unit: null,
      count: null,
      error: `exit ${code}: ${err || out}`,
    };
  }
  const result = JSON.parse(out) as LoadResult;
  return { value: result.value, unit: result.unit, count: result.count };
}

function median(values: number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? sorted[mid]!
    : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function formatValue(value: number | null, scenario: ScenarioName): string {
  if (value === null) return "n/a";
  return scenario === "stream"
    ? value.toFixed(0)
    : Math.round(value).toLocaleString("en-US");
}

function formatRatio(a: number | null, b: number | null): string {
  return a === null || b === null || b === 0 ? "n/a" : `${(a / b).toFixed(2)}x`;
}

async function main(): Promise<void> {
  const { rounds, seconds, warmup, servers: serverNames } = parseOptions(
    Deno.args,
  );
  const machine = await machineInfo();
  const startedAt = new Date().toISOString();
  const estimate = rounds * SCENARIOS.length * serverNames.length *
    (seconds + warmup + 0.4);
  console.error(
    `echo bench: ${rounds} rounds x ${SCENARIOS.length} scenarios x ${serverNames.length} servers ` +
      `x ${seconds} s (+${warmup} s warm-up), about ${Math.ceil(estimate)} s`,
  );

  const children: Deno.ChildProcess[] = [];
  const servers: ServerProcess[] = [];
  const samples: Sample[] = [];
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
  try {
    for (const name of serverNames) {
      servers.push(
        await ServerProcess.start(name, (child) => children.push(child)),
      );
    }
    console.error(servers.map((s) => `${s.name} on port ${s.port}`).join(", "));
    for (let round = 0; round < rounds; round++) {
      const order = servers.map((_, i) =>
        servers[(i + round) % servers.length]!
      );
      for (const scenario of SCENARIOS) {
        for (const [position, server] of order.entries()) {
          const result = await measure(server, scenario, seconds, warmup);
          samples.push({
            round: round + 1,
            scenario,
            server: server.name,
            position,
            ...result,
          });
          console.error(
            `round ${round + 1}/${rounds} ${scenario.padEnd(12)} ${
              server.name.padEnd(8)
            } ` +
              (result.value === null
                ? `FAILED ${result.error}`
                : `${formatValue(result.value, scenario)} ${result.unit}`),
          );
        }
      }
    }
  } finally {
    const statuses = await Promise.all(servers.map((s) => s.stop()));
    for (const [i, status] of statuses.entries()) {
      if (!status.success && status.signal !== "SIGTERM") {
        console.error(
          `${servers[i]!.name} server exited with code ${status.code}`,
        );
      }
    }
    // Children that were spawned but never reported a port.
    await Promise.all(
      children.slice(servers.length).map((c) => stopChild(c, "server")),
    );
    Deno.removeSignalListener("SIGINT", onInterrupt);
  }

  const medians = {} as Record<ScenarioName, Record<ServerName, number | null>>;
  const ratios = {} as Record<
    ScenarioName,
    { evthreadOverRaw: number | null; evthreadOverNode: number | null }
  >;
  for (const scenario of SCENARIOS) {
    medians[scenario] = {} as Record<ServerName, number | null>;
    for (const server of SERVERS) {
      const values = samples
        .filter((s) =>
          s.scenario === scenario && s.server === server && s.value !== null
        )
        .map((s) => s.value!);
      medians[scenario][server] = median(values);
    }
    const m = medians[scenario];
    ratios[scenario] = {
      evthreadOverRaw: m.evthread !== null && m.raw ? m.evthread / m.raw : null,
      evthreadOverNode: m.evthread !== null && m.node
        ? m.evthread / m.node
        : null,
    };
  }

  const loadavgAtEnd = await loadavg();
  const lines = [
    `Machine: ${machine.cpuModel}, ${machine.hardwareConcurrency} cores, ` +
    `Linux ${machine.osRelease}, Deno ${machine.deno} (V8 ${machine.v8}); ` +
    `median of ${rounds} rounds x ${seconds} s, servers and load client in separate processes ` +
    `on 127.0.0.1.`,
    "",
    "| scenario | evthread | raw Deno.Conn | node:net | evthread / raw | evthread / node |",
    "| --- | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const scenario of SCENARIOS) {
    const m = medians[scenario];
    lines.push(
      `| ${SCENARIO_LABELS[scenario]} | ${
        formatValue(m.evthread, scenario)
      } | ` +
        `${formatValue(m.raw, scenario)} | ${
          formatValue(m.node, scenario)
        } | ` +
        `${formatRatio(m.evthread, m.raw)} | ${
          formatRatio(m.evthread, m.node)
        } |`,
    );
  }
  console.log(lines.join("\n"));

  const failures = samples.filter((s) => s.value === null);
  if (failures.length > 0) {
    console.log(
      `\n${failures.length} of ${samples.length} measurements failed (see stderr).`,
    );
  }

  const report = {
    machine: { ...machine, loadavgAtEnd },
    config: { rounds, seconds, warmup },
    startedAt,
    finishedAt: new Date().toISOString(),
    medians,
    ratios,
    samples,
  };
  const resultsDir = scriptPath("./results");
  const resultsFile = `${resultsDir}/echo.json`;
  const write = await Deno.permissions.query({
    name: "write",
    path: resultsFile,
  });
  if (write.state === "granted") {
    await Deno.mkdir(resultsDir, { recursive: true });
    await Deno.writeTextFile(
      resultsFile,
      JSON.stringify(report, null, 2) + "\n",
    );
    console.error(`results written to ${resultsFile}`);
  } else {
    console.error(
      `results not written: add --allow-write=bench/results to save ${resultsFile}`,
    );
  }
  if (failures.length > 0) Deno.exitCode = 1;
}

if (import.meta.main) {
  await main();
}
