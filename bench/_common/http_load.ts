/**
 * The HTTP load generator of every HTTP benchmark (`http/http.ts`,
 * `scale_out/`, `cores/`, `ab.ts`): `wrk -t1 -c{connections} -d{seconds}s
 * --latency` when `wrk` is on PATH, else the Deno client `http/_load.ts`
 * (raw keep-alive sockets, in its own process); and the figures of its
 * output.
 *
 * @module
 */

import type { HttpLoadResult } from "../http/_load.ts";
import type { LoadClient } from "./measure.ts";
import { denoRun } from "./process.ts";

/** Which load generator runs. */
export type HttpTool = "wrk" | "deno";

/** The Deno load client. */
export const DENO_HTTP_CLIENT: URL = new URL(
  "../http/_load.ts",
  import.meta.url,
);

/** `wrk`'s version line, or null when it cannot run. */
export async function wrkVersion(): Promise<string | null> {
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

/**
 * The tool for `--load auto|wrk|deno` (auto: wrk when on PATH, saying on
 * stderr when it is not), and wrk's version line.
 *
 * @throws {Error} `--load wrk` without wrk on PATH.
 */
export async function chooseHttpTool(
  mode: "auto" | HttpTool,
): Promise<{ tool: HttpTool; wrk: string | null }> {
  const wrk = await wrkVersion();
  if (mode === "wrk" && wrk === null) {
    throw new Error("'--load wrk': wrk is not on PATH");
  }
  const tool: HttpTool = mode === "auto"
    ? (wrk === null ? "deno" : "wrk")
    : mode;
  if (tool === "deno" && mode === "auto") {
    console.error(
      "wrk not found: using bench/http/_load.ts as the load client",
    );
  }
  return { tool, wrk };
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
 * or the Deno client (which also warms up for `warmup`).
 */
export function loadProgram(
  tool: HttpTool,
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
    denoRun(DENO_HTTP_CLIENT, [
      "--port",
      String(port),
      "--connections",
      String(connections),
      "--seconds",
      String(seconds),
      "--warmup",
      String(warmup),
    ]),
  ];
}

/** The figures of one load run. */
export interface HttpFigures {
  requestsPerSecond: number | null;
  /** Responses counted (wrk: all; the Deno client: after its warm-up). */
  requests: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
  /** Socket errors (wrk) or errors and reconnects (Deno client). */
  errors: number;
  non2xx: number;
  error?: string;
}

/** The figures of a load run that did not happen or failed: `error` says why. */
export function failedFigures(error: string): HttpFigures & { error: string } {
  return {
    requestsPerSecond: null,
    requests: null,
    p50Ms: null,
    p99Ms: null,
    errors: 0,
    non2xx: 0,
    error,
  };
}

/**
 * The load generator's figures from its output: wrk's text, or the JSON line
 * the Deno client ends with.
 */
export function parseLoadOutput(tool: HttpTool, out: string): HttpFigures {
  if (tool === "wrk") return parseWrk(out);
  const result = JSON.parse(out.split("\n").at(-1)!) as HttpLoadResult;
  return {
    requestsPerSecond: result.requestsPerSecond,
    requests: result.requests,
    p50Ms: result.p50Ms,
    p99Ms: result.p99Ms,
    errors: result.errors,
    non2xx: result.non2xx,
  };
}

/** Requests/s, p50, p99 and error counts from `wrk --latency` output. */
export function parseWrk(output: string): HttpFigures {
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(output);
  const requests = /^\s*(\d+) requests in /m.exec(output);
  const p50 = /^\s+50%\s+(\S+)/m.exec(output);
  const p99 = /^\s+99%\s+(\S+)/m.exec(output);
  const socket =
    /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/
      .exec(output);
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(output);
  const result: HttpFigures = {
    requestsPerSecond: rps === null ? null : Number(rps[1]),
    requests: requests === null ? null : Number(requests[1]),
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

/**
 * The HTTP load client on `connections` keep-alive connections, for
 * `measureLoad` and `measurePair`: wrk (whole seconds, at least 1) or the
 * Deno client with no warm-up of its own, so that every request served is
 * counted and the server's CPU per request is right.
 */
export function httpClient(tool: HttpTool, connections: number): LoadClient {
  return {
    command: (port, seconds) =>
      loadProgram(
        tool,
        port,
        connections,
        tool === "wrk" ? Math.max(1, Math.round(seconds)) : seconds,
        0,
      ),
    parse(stdout) {
      const f = parseLoadOutput(tool, stdout);
      return {
        rate: f.requestsPerSecond,
        ops: f.requests,
        p50Ms: f.p50Ms,
        p99Ms: f.p99Ms,
        errors: f.errors,
        non2xx: f.non2xx,
      };
    },
  };
}
