/**
 * Load benchmark of three echo servers, each in its own process:
 *
 * 1. `_evthread_server.ts`: this library (`EvLoop.listen`, `recv` / `send`),
 * 2. `_raw_server.ts`: a hand-rolled `Deno.listen` + `conn.read` / `conn.write` loop,
 * 3. `_node_server.ts`: `node:net` `createServer` with `data` callbacks.
 *
 * Each measurement runs `_load.ts` as a fresh subprocess against one server.
 * By default nothing is pinned (`--pin auto`: the servers on the last core,
 * the load client on core 0, when `taskset` runs). Rounds are interleaved (every round runs every scenario on every server, the
 * server order rotating each round) so that drift in machine load spreads over
 * all servers; the table reports medians over rounds.
 *
 * Usage:
 * ```sh
 * deno task bench:echo [--rounds 5] [--seconds 3] [--warmup 0.25] \
 *   [--servers evthread,raw,node] [--pin off|auto]
 * # which is
 * deno run --allow-net --allow-run --allow-read --allow-env --allow-write=bench/results \
 *   bench/echo/echo.ts [options]
 * ```
 * Without `--allow-write` the JSON results are not saved (a warning says so);
 * everything else is printed.
 *
 * @module
 */

import { type LoadResult, SCENARIOS } from "./_load.ts";
import {
  denoRun,
  formatRatio,
  list,
  loadavg,
  loadCommand,
  machineInfo,
  median,
  noteFailures,
  parseArgs,
  PIN,
  pinned,
  placement,
  ratio,
  rotated,
  ROUNDS,
  saveResults,
  SECONDS,
  type ServerProcess,
  toJson,
  versionLines,
  WARMUP,
  withServers,
} from "../_common/mod.ts";

type ServerName = "evthread" | "raw" | "node";
type ScenarioName = typeof SCENARIOS[number];

const SERVERS: readonly ServerName[] = ["evthread", "raw", "node"];
const SERVER_FILES: Record<ServerName, URL> = {
  evthread: new URL("./_evthread_server.ts", import.meta.url),
  raw: new URL("./_raw_server.ts", import.meta.url),
  node: new URL("./_node_server.ts", import.meta.url),
};
const LOAD_CLIENT = new URL("./_load.ts", import.meta.url);
const SCENARIO_LABELS: Record<ScenarioName, string> = {
  "pingpong-1": "ping-pong 64 B, 1 conn (round trips/s)",
  "pingpong-100": "ping-pong 64 B, 100 conns (round trips/s)",
  "stream": "stream 64 KiB writes both ways, 1 conn (MB/s)",
};

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

interface Options {
  rounds: number;
  seconds: number;
  warmup: number;
  servers: ServerName[];
  pin: "auto" | "off";
}

function parseOptions(args: string[]): Options {
  return parseArgs(args, {
    rounds: ROUNDS,
    seconds: SECONDS,
    warmup: WARMUP,
    servers: list(SERVERS),
    pin: PIN,
  }, {
    rounds: 5,
    seconds: 3,
    warmup: 0.25,
    servers: [...SERVERS],
    pin: "off",
  }, { usage: "deno task bench:echo [options]" });
}

async function measure(
  server: ServerProcess<ServerName>,
  scenario: ScenarioName,
  seconds: number,
  warmup: number,
  loadCore: number | undefined,
): Promise<Pick<Sample, "value" | "unit" | "count" | "error">> {
  if (server.exited) {
    return {
      value: null,
      unit: null,
      count: null,
      error: `${server.name} server has exited`,
    };
  }
  // The client stops itself after seconds + warmup + 10; this is the backstop.
  const { code, stdout, stderr } = await loadCommand(
    ...pinned(
      loadCore,
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
    ),
    seconds + warmup + 20,
  ).output();
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

function formatValue(value: number | null, scenario: ScenarioName): string {
  if (value === null) return "n/a";
  return scenario === "stream"
    ? value.toFixed(0)
    : Math.round(value).toLocaleString("en-US");
}

async function main(): Promise<void> {
  const { rounds, seconds, warmup, servers: serverNames, pin: pinMode } =
    parseOptions(Deno.args);
  const machine = await machineInfo();
  const pin = await placement(pinMode);
  const startedAt = machine.date;
  const estimate = rounds * SCENARIOS.length * serverNames.length *
    (seconds + warmup + 0.4);
  console.error(
    `echo bench: ${rounds} rounds x ${SCENARIOS.length} scenarios x ${serverNames.length} servers ` +
      `x ${seconds} s (+${warmup} s warm-up), about ${
        Math.ceil(estimate)
      } s; ${pin.note}`,
  );

  const samples: Sample[] = [];
  const serverArgs = (name: ServerName) =>
    denoRun(SERVER_FILES[name], ["--port", "0"]);
  await withServers(serverNames, serverArgs, pin.server, async (servers) => {
    for (let round = 0; round < rounds; round++) {
      const order = rotated(servers, round);
      for (const scenario of SCENARIOS) {
        for (const [position, server] of order.entries()) {
          const result = await measure(
            server,
            scenario,
            seconds,
            warmup,
            pin.load,
          );
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
  });

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
      evthreadOverRaw: ratio(m.evthread, m.raw),
      evthreadOverNode: ratio(m.evthread, m.node),
    };
  }

  const loadavgAtEnd = await loadavg();
  const lines = [
    ...versionLines(machine),
    "",
    `Median of ${rounds} rounds x ${seconds} s, servers and load client in ` +
    `separate processes on 127.0.0.1, ${pin.note}.`,
    "",
    "| scenario | evthread | raw Deno.Conn | node:net | evthread / raw | evthread / node |",
    "| --- | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const scenario of SCENARIOS) {
    const m = medians[scenario];
    const r = ratios[scenario];
    lines.push(
      `| ${SCENARIO_LABELS[scenario]} | ${
        formatValue(m.evthread, scenario)
      } | ` +
        `${formatValue(m.raw, scenario)} | ${
          formatValue(m.node, scenario)
        } | ` +
        `${formatRatio(r.evthreadOverRaw)} | ${
          formatRatio(r.evthreadOverNode)
        } |`,
    );
  }
  console.log(lines.join("\n"));

  const failures = samples.filter((s) => s.value === null);
  noteFailures(failures.length, samples.length);

  const report = {
    machine: { ...machine, loadavgAtEnd },
    config: { rounds, seconds, warmup, pin: pin.note },
    startedAt,
    finishedAt: new Date().toISOString(),
    medians,
    ratios,
    samples,
  };
  await saveResults({ "echo.json": toJson(report) });
  if (failures.length > 0) Deno.exitCode = 1;
}

if (import.meta.main) {
  await main();
}
