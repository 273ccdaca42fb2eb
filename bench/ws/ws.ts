/**
 * WebSocket echo benchmark: four servers, each in its own process, driven
 * by one load client (`_load.ts`, raw sockets, a fresh process per
 * measurement):
 *
 * 1. `evthread`: `serve()` + `upgradeWebSocket()` of this library, event
 *    mode (`onmessage` + `send()`, the `Deno.upgradeWebSocket` shape);
 * 2. `evthread-pull`: the same server, pull mode (`for await` + `await
 *    write()`);
 * 3. `ws`: npm:ws's `WebSocketServer` on `node:http`, as Deno runs it;
 * 4. `native`: `Deno.serve` + `Deno.upgradeWebSocket` (in Rust).
 *
 * Scenarios: 32 B messages on 1 and on 100 connections (messages/s), and
 * 1 MiB messages on 1 connection (MB/s); each connection keeps one message
 * in flight. Binary messages by default (`--type text` for text).
 *
 * Every server is warmed up first (each scenario for `--warmup` seconds,
 * not counted). Then rounds are interleaved: every round measures every
 * scenario on every server, the server order rotating each round. Around
 * each measurement the server's CPU time is read from `/proc` (see
 * `../_common/cpu.ts`): CPU per message is the server's CPU seconds over
 * all the messages the run echoed. The report gives medians over rounds,
 * and the medians (with ranges) of the per-round ratios of this library's
 * servers to ws and to the native server. By default the servers run on the
 * last core and the load client on core 0 (`--pin auto`, when `taskset`
 * works), as /work/shared/notes/measuring.md says.
 *
 * Usage:
 * ```sh
 * deno task bench:ws [--rounds 5] [--seconds 3] [--warmup 1] \
 *   [--servers evthread,evthread-pull,ws,native] [--type binary|text] \
 *   [--pin auto|off]
 * # which is
 * deno run --allow-net --allow-run --allow-read --allow-env \
 *   --allow-write=bench/results bench/ws/ws.ts [options]
 * ```
 * Writes `bench/results/ws.json` (needs `--allow-write=bench/results`).
 * Defaults take about 4 minutes.
 *
 * @module
 */

import { type LoadResult, type Scenario, SCENARIOS } from "./_load.ts";
import {
  choice,
  denoRun,
  formatRatio,
  list,
  loadavg,
  machineInfo,
  median,
  noteFailures,
  parseArgs,
  PIN,
  type Placement,
  placement,
  rotated,
  ROUNDS,
  runLoad,
  saveResults,
  SECONDS,
  type ServerProcess,
  type Spread,
  spread,
  toJson,
  versionLines,
  WARMUP,
  withServers,
} from "../_common/mod.ts";

type ServerName = "evthread" | "evthread-pull" | "ws" | "native";
type MessageType = "binary" | "text";

const SERVERS: readonly ServerName[] = [
  "evthread",
  "evthread-pull",
  "ws",
  "native",
];
/** Ours, and what each is compared with. */
const OURS: readonly ServerName[] = ["evthread", "evthread-pull"];
const OTHERS: readonly ServerName[] = ["ws", "native"];
const LABELS: Record<ServerName, string> = {
  evthread: "evthread (event)",
  "evthread-pull": "evthread (pull)",
  ws: "npm:ws",
  native: "Deno.serve (native)",
};
const SCENARIO_LABELS: Record<Scenario, string> = {
  "small-1": "32 B, 1 connection (msg/s)",
  "small-100": "32 B, 100 connections (msg/s)",
  "large": "1 MiB, 1 connection (MB/s)",
};
const LOAD_CLIENT = new URL("./_load.ts", import.meta.url);
const REPO_DIR = new URL("../../", import.meta.url);

/** `deno run` arguments of each server. */
function serverArgs(name: ServerName): string[] {
  const file = (path: string) => new URL(path, import.meta.url);
  switch (name) {
    case "evthread":
      return denoRun(file("./_evthread_server.ts"), ["--mode", "event"]);
    case "evthread-pull":
      return denoRun(file("./_evthread_server.ts"), ["--mode", "pull"]);
    case "ws":
      // ws looks for its optional native helpers under these two names.
      return denoRun(file("./_ws_server.ts"), [], [
        "--allow-env=WS_NO_BUFFER_UTIL,WS_NO_UTF_8_VALIDATE",
      ]);
    case "native":
      return denoRun(file("./_native_server.ts"));
  }
}

/** One measurement. */
interface Sample {
  round: number;
  scenario: Scenario;
  server: ServerName;
  /** Position of this server in the round's order (0-based). */
  position: number;
  value: number | null;
  /** Messages echoed in the whole run (its warm-up included). */
  total: number | null;
  /** Server CPU per echoed message, in microseconds. */
  cpuPerMessageUs: number | null;
  /** Cores the load client used over the run. */
  loadCores: number | null;
  error?: string;
}

interface Options {
  rounds: number;
  seconds: number;
  warmup: number;
  servers: ServerName[];
  type: MessageType;
  pin: "auto" | "off";
}

function parseOptions(args: string[]): Options {
  return parseArgs(args, {
    rounds: ROUNDS,
    seconds: SECONDS,
    warmup: WARMUP,
    servers: list(SERVERS),
    type: choice(["binary", "text"] as const),
    pin: PIN,
  }, {
    rounds: 5,
    seconds: 3,
    warmup: 1,
    servers: [...SERVERS],
    type: "binary",
    pin: "auto",
  }, { usage: "deno task bench:ws [options]" });
}

type Measurement = Omit<Sample, "round" | "scenario" | "server" | "position">;

async function measure(
  server: ServerProcess<ServerName>,
  scenario: Scenario,
  seconds: number,
  type: MessageType,
  pin: Placement,
): Promise<Measurement> {
  const failed = (error: string): Measurement => ({
    value: null,
    total: null,
    cpuPerMessageUs: null,
    loadCores: null,
    error,
  });
  if (server.exited) return failed(`${server.name} server has exited`);
  let run;
  try {
    run = await runLoad(
      Deno.execPath(),
      denoRun(LOAD_CLIENT, [
        "--port",
        String(server.port),
        "--scenario",
        scenario,
        "--seconds",
        String(seconds),
        "--type",
        type,
      ]),
      {
        core: pin.load,
        backstopSeconds: seconds + 20,
        watch: [server.pid],
      },
    );
  } catch (error) {
    return failed(String(error));
  }
  const line = run.stdout.split("\n").at(-1) ?? "";
  if (run.code !== 0 || line === "") {
    return failed(`exit ${run.code}: ${run.stderr || run.stdout}`);
  }
  const result = JSON.parse(line) as LoadResult;
  const own = run.cpu?.process(server.pid) ?? null;
  const wall = run.cpu?.wall ?? 0;
  return {
    value: result.value,
    total: result.total,
    cpuPerMessageUs: own === null || result.total === 0
      ? null
      : own / result.total * 1e6,
    loadCores: run.loadCpu === null || wall <= 0 ? null : run.loadCpu / wall,
  };
}

function formatValue(value: number | null, scenario: Scenario): string {
  if (value === null) return "n/a";
  return scenario === "large"
    ? value.toFixed(0)
    : Math.round(value).toLocaleString("en-US");
}

function formatUs(value: number | null): string {
  return value === null
    ? "n/a"
    : value < 100
    ? `${value.toFixed(1)} µs`
    : `${Math.round(value).toLocaleString("en-US")} µs`;
}

/** `1.23x (1.10-1.31)`: a median ratio and its range. */
function formatSpread(s: Spread): string {
  if (s.n === 0) return "n/a";
  const range = s.n > 1 ? ` (${s.min!.toFixed(2)}-${s.max!.toFixed(2)})` : "";
  return `${formatRatio(s.median)}${range}`;
}

/** Per round, the ratio `pick(a) / pick(b)` of two servers' samples. */
function roundRatios(
  samples: readonly Sample[],
  scenario: Scenario,
  a: ServerName,
  b: ServerName,
  pick: (s: Sample) => number | null,
): Spread {
  const rounds = [...new Set(samples.map((s) => s.round))];
  return spread(rounds.map((round) => {
    const of = (server: ServerName) =>
      samples.find((s) =>
        s.round === round && s.scenario === scenario && s.server === server
      );
    const x = of(a);
    const y = of(b);
    const vx = x === undefined ? null : pick(x);
    const vy = y === undefined ? null : pick(y);
    return vx === null || vy === null || vy === 0 ? null : vx / vy;
  }));
}

/** The version of npm:ws that deno.lock pins, or `unknown`. */
async function wsVersion(): Promise<string> {
  try {
    const lock = JSON.parse(
      await Deno.readTextFile(new URL("deno.lock", REPO_DIR)),
    ) as { specifiers?: Record<string, string> };
    const entry = Object.entries(lock.specifiers ?? {}).find(([k]) =>
      k.startsWith("npm:ws@")
    );
    return entry?.[1] ?? "unknown";
  } catch {
    return "unknown";
  }
}

async function main(): Promise<void> {
  const opts = parseOptions(Deno.args);
  const { rounds, seconds, warmup, servers: names, type } = opts;
  const machine = await machineInfo({ ws: await wsVersion() });
  const pin = await placement(opts.pin);
  const estimate = names.length * SCENARIOS.length *
    (warmup + rounds * (seconds + 0.7));
  console.error(
    `ws bench: ${rounds} rounds x ${SCENARIOS.length} scenarios x ${names.length} servers x ${seconds} s ` +
      `(after ${warmup} s of warm-up per scenario and server), about ${
        Math.ceil(estimate)
      } s; ${type} messages; ${pin.note}`,
  );

  const samples: Sample[] = [];
  await withServers(names, serverArgs, pin.server, async (servers) => {
    if (warmup > 0) {
      for (const server of servers) {
        for (const scenario of SCENARIOS) {
          const m = await measure(server, scenario, warmup, type, pin);
          console.error(
            `warm-up ${scenario.padEnd(9)} ${server.name.padEnd(13)} ` +
              (m.value === null
                ? `FAILED ${m.error}`
                : formatValue(m.value, scenario)),
          );
        }
      }
    }
    for (let round = 0; round < rounds; round++) {
      const order = rotated(servers, round);
      for (const scenario of SCENARIOS) {
        for (const [position, server] of order.entries()) {
          const m = await measure(server, scenario, seconds, type, pin);
          samples.push({
            round: round + 1,
            scenario,
            server: server.name,
            position,
            ...m,
          });
          console.error(
            `round ${round + 1}/${rounds} ${scenario.padEnd(9)} ${
              server.name.padEnd(13)
            } ` +
              (m.value === null
                ? `FAILED ${m.error}`
                : `${formatValue(m.value, scenario)}; server ${
                  formatUs(m.cpuPerMessageUs)
                }/msg; load client ${m.loadCores?.toFixed(2) ?? "n/a"} cores`),
          );
        }
      }
    }
  });

  const ok = samples.filter((s) => s.value !== null);
  const cells = SCENARIOS.map((scenario) => {
    const of = (server: ServerName) =>
      ok.filter((s) => s.scenario === scenario && s.server === server);
    const values = Object.fromEntries(names.map((server) => [server, {
      value: median(of(server).map((s) => s.value!)),
      cpuPerMessageUs: median(
        of(server).filter((s) => s.cpuPerMessageUs !== null).map((s) =>
          s.cpuPerMessageUs!
        ),
      ),
      loadCores: median(
        of(server).filter((s) => s.loadCores !== null).map((s) => s.loadCores!),
      ),
    }])) as Record<
      ServerName,
      {
        value: number | null;
        cpuPerMessageUs: number | null;
        loadCores: number | null;
      }
    >;
    const ratios: Record<string, { rate: Spread; cpu: Spread }> = {};
    for (const a of OURS.filter((n) => names.includes(n))) {
      for (const b of OTHERS.filter((n) => names.includes(n))) {
        ratios[`${a}/${b}`] = {
          rate: roundRatios(ok, scenario, a, b, (s) => s.value),
          cpu: roundRatios(ok, scenario, a, b, (s) => s.cpuPerMessageUs),
        };
      }
    }
    return { scenario, values, ratios };
  });

  const pairs = OURS.filter((n) => names.includes(n)).flatMap((a) =>
    OTHERS.filter((n) => names.includes(n)).map((b) => [a, b] as const)
  );
  const short = (n: ServerName) =>
    n === "evthread" ? "event" : n === "evthread-pull" ? "pull" : n;
  const loadAtEnd = await loadavg();
  const lines = [
    ...versionLines(machine),
    `npm:ws ${machine.ws}; load average at the end ${loadAtEnd}`,
    "",
    `Echo of ${type} messages, one in flight per connection. Medians of ${rounds} interleaved rounds x ${seconds} s ` +
    `after ${warmup} s of warm-up per scenario and server; each server in its own process, ` +
    `one load client (raw sockets) in another, on 127.0.0.1; ${pin.note}.`,
    "",
    `| scenario | ${names.map((n) => LABELS[n]).join(" | ")} |`,
    `| --- | ${names.map(() => "---:").join(" | ")} |`,
    ...cells.map((c) =>
      `| ${SCENARIO_LABELS[c.scenario]} | ${
        names.map((n) => formatValue(c.values[n].value, c.scenario)).join(
          " | ",
        )
      } |`
    ),
    "",
    "Server CPU per message (median):",
    "",
    `| scenario | ${names.map((n) => LABELS[n]).join(" | ")} |`,
    `| --- | ${names.map(() => "---:").join(" | ")} |`,
    ...cells.map((c) =>
      `| ${SCENARIO_LABELS[c.scenario]} | ${
        names.map((n) => formatUs(c.values[n].cpuPerMessageUs)).join(" | ")
      } |`
    ),
  ];
  if (pairs.length > 0) {
    lines.push(
      "",
      "Per-round ratios, median (range): rate (higher is better for evthread), then CPU per message (lower is better):",
      "",
      `| scenario | ${
        pairs.map(([a, b]) => `${short(a)} / ${short(b)}`).join(" | ")
      } | ${
        pairs.map(([a, b]) => `CPU ${short(a)} / ${short(b)}`).join(" | ")
      } |`,
      `| --- | ${[...pairs, ...pairs].map(() => "---:").join(" | ")} |`,
      ...cells.map((c) =>
        `| ${SCENARIO_LABELS[c.scenario]} | ${
          pairs.map(([a, b]) => formatSpread(c.ratios[`${a}/${b}`]!.rate))
            .join(" | ")
        } | ${
          pairs.map(([a, b]) => formatSpread(c.ratios[`${a}/${b}`]!.cpu))
            .join(" | ")
        } |`
      ),
    );
  }
  console.log(lines.join("\n"));

  const failures = samples.filter((s) => s.value === null);
  noteFailures(failures.length, samples.length);
  await saveResults({
    "ws.json": toJson({
      machine: { ...machine, loadavgAtEnd: loadAtEnd },
      config: { rounds, seconds, warmup, type, pin: pin.note },
      finishedAt: new Date().toISOString(),
      cells,
      samples,
    }),
  });
  if (failures.length > 0) Deno.exitCode = 1;
}

if (import.meta.main) {
  await main();
}
