/**
 * One measurement of a server under load, and the simultaneous pair of
 * /work/shared/notes/measuring.md, as `ab.ts` (A/B of revisions) and
 * `http/http.ts` (servers against `Deno.serve`) both take them:
 *
 * - {@linkcode measureLoad}: runs a load client against one server (the
 *   client on the load core) and reads, around it, the CPU times of the
 *   server, of the machine and of the client itself (`cpu.ts`): the rate,
 *   the server's CPU per operation (user + system of `/proc/PID/stat` over
 *   the operations served), the latencies the client reports, and how the
 *   cores were shared;
 * - {@linkcode measurePair}: two servers on the same core, each driven by
 *   its own load client, both started at the same moment, so that host
 *   noise hits both alike: rps(other)/rps(a) is their relative cost per
 *   operation.
 *
 * @module
 */

import type { Placement } from "./pin.ts";
import { runLoad } from "./process.ts";
import { formatCores, formatRps } from "./report.ts";

/** A server under measurement (a `ServerProcess` is one). */
export interface LoadTarget {
  readonly name: string;
  readonly pid: number;
  readonly port: number;
  readonly exited: boolean;
}

/** What a load client reports, read from its stdout. */
export interface ClientFigures {
  /** Operations per second. */
  rate: number | null;
  /** Operations counted. */
  ops: number | null;
  p50Ms?: number | null;
  p99Ms?: number | null;
  errors?: number;
  non2xx?: number;
}

/** How a load client runs, and how its output reads. */
export interface LoadClient {
  /** The command for `seconds` of load on `port` (no warm-up of its own). */
  command(port: number, seconds: number): [string, string[]];
  /** Its figures, from its stdout; throws when it does not read. */
  parse(stdout: string): ClientFigures;
}

/** The figures of one measurement of one server. */
export interface LoadFigures {
  /** Operations (round trips, requests) per second. */
  rate: number | null;
  /** Operations counted. */
  ops: number | null;
  /** The server's user + system CPU seconds during the measurement. */
  serverCpu: number | null;
  /** Server CPU per operation, in microseconds. */
  cpuPerOpUs: number | null;
  /** Median latency in milliseconds (when the client reports it). */
  p50Ms: number | null;
  /** 99th percentile latency in milliseconds (when the client reports it). */
  p99Ms: number | null;
  /** Socket errors and non-2xx responses (HTTP clients). */
  errors: number;
  non2xx: number;
  /** Cores the server used (its CPU seconds over the wall time). */
  serverCores: number | null;
  /** Cores the load client used. */
  loadCores: number | null;
  /**
   * Cores other processes took on the server's core (pinned runs), the
   * partners of a simultaneous pair left out.
   */
  otherCores: number | null;
  /** Share of the server's core the hypervisor took (pinned runs). */
  stealCores: number | null;
  error?: string;
}

/** The figures of a measurement that failed or could not start. */
export function failedLoad(error: string): LoadFigures & { error: string } {
  return {
    rate: null,
    ops: null,
    serverCpu: null,
    cpuPerOpUs: null,
    p50Ms: null,
    p99Ms: null,
    errors: 0,
    non2xx: 0,
    serverCores: null,
    loadCores: null,
    otherCores: null,
    stealCores: null,
    error,
  };
}

/**
 * Runs `client` against `server` for `seconds` (the client on `pin.load`)
 * and takes the figures. `partners`: servers on the same core at the same
 * time (a simultaneous pair), whose CPU is not counted as others'. Never
 * throws: a failure is in the figures' `error`.
 */
export async function measureLoad(
  client: LoadClient,
  server: LoadTarget,
  seconds: number,
  pin: Placement,
  partners: readonly LoadTarget[] = [],
): Promise<LoadFigures> {
  if (server.exited) return failedLoad(`server ${server.name} has exited`);
  const [cmd, args] = client.command(server.port, seconds);
  let result;
  try {
    // The clients stop by themselves; this is the backstop.
    result = await runLoad(cmd, args, {
      core: pin.load,
      backstopSeconds: seconds + 30,
      watch: [server.pid, ...partners.map((p) => p.pid)],
    });
  } catch (error) {
    return failedLoad(String(error));
  }
  if (result.code !== 0 || result.stdout === "") {
    return failedLoad(
      `load exit ${result.code}: ${result.stderr || result.stdout}`,
    );
  }
  let figures: ClientFigures;
  try {
    figures = client.parse(result.stdout);
  } catch (error) {
    return failedLoad(`unreadable load output (${error}): ${result.stdout}`);
  }
  const { rate, ops } = figures;
  const cpu = result.cpu;
  const serverCpu = cpu?.process(server.pid) ?? null;
  const wall = cpu?.wall ?? 0;
  const core = pin.server === undefined ? null : cpu?.core(pin.server) ?? null;
  let partnerCpu = 0;
  for (const partner of partners) partnerCpu += cpu?.process(partner.pid) ?? 0;
  return {
    rate,
    ops,
    serverCpu,
    cpuPerOpUs: serverCpu !== null && ops !== null && ops > 0
      ? serverCpu / ops * 1e6
      : null,
    p50Ms: figures.p50Ms ?? null,
    p99Ms: figures.p99Ms ?? null,
    errors: figures.errors ?? 0,
    non2xx: figures.non2xx ?? 0,
    serverCores: serverCpu !== null && wall > 0 ? serverCpu / wall : null,
    loadCores: result.loadCpu !== null && wall > 0
      ? result.loadCpu / wall
      : null,
    otherCores: core !== null && serverCpu !== null && wall > 0
      ? Math.max(0, core.busy - serverCpu - partnerCpu) / wall
      : null,
    stealCores: core !== null && wall > 0 ? core.steal / wall : null,
    ...(rate === null
      ? { error: `no rate in the load output: ${result.stdout.slice(0, 200)}` }
      : {}),
  };
}

/** One pair of servers measured at the same moment. */
export interface PairFigures {
  /** The reference server's figures. */
  a: LoadFigures;
  /** The other server's. */
  other: LoadFigures;
}

/**
 * Drives `a` and `other` (on the same core) each with its own load client,
 * both started at the same moment; each client's figures count its own
 * server's CPU, with the partner's taken out of "others on the core".
 * `otherFirst` spawns the other's client first (the caller alternates it).
 */
export async function measurePair(
  client: LoadClient,
  a: LoadTarget,
  other: LoadTarget,
  seconds: number,
  pin: Placement,
  otherFirst: boolean,
): Promise<PairFigures> {
  const run = (x: LoadTarget, y: LoadTarget) =>
    measureLoad(client, x, seconds, pin, [y]);
  if (otherFirst) {
    const [fo, fa] = await Promise.all([run(other, a), run(a, other)]);
    return { a: fa, other: fo };
  }
  const [fa, fo] = await Promise.all([run(a, other), run(other, a)]);
  return { a: fa, other: fo };
}

/**
 * One measurement on one line: `12,345 req/s, 41.20 µs CPU/request, p99
 * 1.20 ms; cores: server 0.98, load 0.61, others on the servers' core 0.02`.
 */
export function describeLoad(
  f: LoadFigures,
  unit: string,
  op: string,
): string {
  if (f.rate === null) return `FAILED ${f.error}`;
  return `${formatRps(f.rate)} ${unit}, ${
    f.cpuPerOpUs === null ? "n/a" : f.cpuPerOpUs.toFixed(2)
  } µs CPU/${op}${
    f.p99Ms === null ? "" : `, p99 ${f.p99Ms.toFixed(2)} ms`
  }; cores: server ${formatCores(f.serverCores)}, load ${
    formatCores(f.loadCores)
  }` +
    (f.otherCores === null
      ? ""
      : `, others on the servers' core ${formatCores(f.otherCores)}`) +
    (f.errors + f.non2xx > 0
      ? ` (${f.errors} errors, ${f.non2xx} non-2xx)`
      : "");
}
