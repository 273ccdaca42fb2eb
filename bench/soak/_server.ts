/**
 * The server under test for `bench/soak/soak.ts`, in its own process: this
 * library's line echo server or its HTTP server, with a pool of
 * {@linkcode POOL} tasks and policy `"wait"`, and the limits below.
 *
 * Usage (the orchestrator runs it; by hand for a reproduction):
 * ```sh
 * deno run --allow-net bench/soak/_server.ts --target echo|http [--port 0] \
 *   [--evict on|off]
 * ```
 *
 * Control channel, JSON lines:
 * - stdout, first line: `{"event":"listening","port":P,"pid":N,"target":T}`;
 * - stdin `{"op":"stats","id":N}` -> stdout `{"event":"stats","id":N,...}`
 *   ({@linkcode StatsReply}: the loop's counters, open fds, memory); with
 *   `"gc":true` and `--v8-flags=--expose-gc`, after a full garbage collection;
 * - stdin `{"op":"quit"}`, end of stdin, or SIGTERM: shuts down (1 s grace),
 *   prints `{"event":"stopped",...}` and exits.
 *
 * Open fds: counted from `/proc/self/fd`, which Deno 2.9.6 reads only under
 * `--allow-all`; without it `fds` is `null` and the orchestrator lists
 * `/proc/<pid>/fd` with `ls` instead.
 *
 * The echo server (`--target echo`): per connection, `readUntil("\n")` with
 * a {@linkcode ECHO_LIMITS}`.lineTimeoutMs` timeout per line (a whole line
 * must arrive within it, however it trickles in), `send` with a
 * `sendTimeout`, and an idle timeout on the socket (no byte either way for
 * `idleMs`); the bytes of each line go back exactly, `\n` included. A peer
 * that resets, half-closes, stalls or sends an over-long line ends its task
 * quietly (counted in `endings`); anything else is an error (`stats.errors`).
 *
 * The HTTP server (`--target http`): `serve()` with `maxConnections`
 * {@linkcode POOL}, policy `"wait"`, and {@linkcode HTTP_LIMITS} (header and
 * idle timeouts tighter than the defaults so that slowloris and silent
 * clients are cut within a short run); `--evict off` sets
 * `evictUnderPressure: false` (the defence against one address holding
 * the pool with slow heads, on by default). Routes:
 * - `GET /gen?o=OFFSET&n=N`: `N` bytes of {@linkcode pattern} from `OFFSET`
 *   (wrapping), as a fixed body with `content-length`;
 * - `POST /echo`: the request body back;
 * - anything else: `soak\n`.
 *
 * @module
 */

import {
  EvLoop,
  type EvLoopStats,
  EvThread,
  LimitExceededError,
} from "../../mod.ts";
import { serve } from "../../http.ts";
import { choice, parseArgs, PORT } from "../_common/args.ts";

/** The pool size of both servers (their loop's capacity). */
export const POOL = 256;

/** Limits of the echo server, in milliseconds and bytes. */
export const ECHO_LIMITS = {
  /** A whole line must arrive within this, from the moment it is awaited. */
  lineTimeoutMs: 5000,
  /** Each echo (one `send`) must be written within this. */
  sendTimeoutMs: 5000,
  /** No byte in either direction for this long ends the connection. */
  idleMs: 3000,
  /** Longest line, `\n` included (longer: the connection is closed). */
  maxLineBytes: 128 * 1024,
} as const;

/** The `serve()` limits of the HTTP server, in milliseconds. */
export const HTTP_LIMITS = {
  /** To receive a whole request head (default 10 000). */
  headerTimeout: 4000,
  /** Keep-alive wait for the next request (default 5000). */
  idleTimeout: 3000,
  /** Between bytes of a request body (default 30 000). */
  bodyTimeout: 5000,
  /** Each write of a response (default 30 000). */
  sendTimeout: 5000,
} as const;

/** Size of {@linkcode pattern}. */
export const PATTERN_BYTES = 2 * 1024 * 1024;

let patternCache: Uint8Array<ArrayBuffer> | undefined;

/**
 * The pseudo-random bytes both sides agree on (xorshift32 from a fixed
 * seed, {@linkcode PATTERN_BYTES} long): `/gen` serves slices of it and the
 * clients check what they get against it.
 */
export function pattern(): Uint8Array<ArrayBuffer> {
  if (patternCache !== undefined) return patternCache;
  const bytes = new Uint8Array(PATTERN_BYTES);
  let x = 0x9e3779b9;
  for (let i = 0; i < bytes.length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    bytes[i] = x & 0xff;
  }
  patternCache = bytes;
  return bytes;
}

/** `n` bytes of the pattern from `offset`, wrapping around its end. */
export function patternSlice(
  offset: number,
  n: number,
): Uint8Array<ArrayBuffer> {
  const p = pattern();
  const start = offset % p.length;
  if (start + n <= p.length) return p.subarray(start, start + n);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = p[(start + i) % p.length]!;
  return out;
}

/** Which server to run. */
export type SoakTarget = "echo" | "http";

/** The reply to `{"op":"stats"}`. */
export interface StatsReply {
  event: "stats";
  id: number;
  /** The loop's counters. */
  stats: EvLoopStats;
  /** Entries of `/proc/self/fd` (without the listing's own), or null. */
  fds: number | null;
  /** `Deno.memoryUsage()`: resident set and V8 heap, in bytes. */
  rss: number;
  heapUsed: number;
  /** Echo server: how connections ended, by cause. */
  endings: Record<string, number>;
  /** The first errors reported to the loop's `onError`, as text. */
  errorSamples: string[];
}

const ERROR_SAMPLES = 20;
const encoder = new TextEncoder();
const LF = encoder.encode("\n");

/** Open fds of this process, or null without the permission. */
function countFds(): number | null {
  try {
    let n = 0;
    for (const _ of Deno.readDirSync("/proc/self/fd")) n++;
    return n - 1; // the directory's own fd, open while it is listed
  } catch {
    return null;
  }
}

/** The cause a connection of the echo server ended with, or null (a bug). */
function peerCause(error: unknown): string | null {
  if (error instanceof DOMException && error.name === "TimeoutError") {
    return "timeout";
  }
  if (error instanceof LimitExceededError) return "line too long";
  if (error instanceof Deno.errors.UnexpectedEof) return "eof mid-line";
  if (error instanceof Deno.errors.ConnectionReset) return "reset";
  if (error instanceof Deno.errors.BrokenPipe) return "broken pipe";
  if (error instanceof Deno.errors.ConnectionAborted) return "aborted";
  return null;
}

interface Running {
  stats(): EvLoopStats;
  port: number;
  shutdown(): Promise<void>;
}

function startEcho(
  port: number,
  endings: Record<string, number>,
  errorSamples: string[],
): Running {
  const loop = new EvLoop({
    capacity: POOL,
    onError: (error, source) => {
      if (errorSamples.length < ERROR_SAMPLES) {
        errorSamples.push(String(error));
      }
      const what = source instanceof EvThread
        ? `task ${source.id}`
        : "acceptor";
      console.error(`soak echo server: ${what} failed:`, error);
    },
  });
  const count = (cause: string) => endings[cause] = (endings[cause] ?? 0) + 1;
  const acceptor = loop.listen(
    { hostname: "127.0.0.1", port, policy: "wait" },
    () => async (socket) => {
      socket.setNoDelay(true);
      socket.setIdleTimeout(ECHO_LIMITS.idleMs);
      try {
        while (true) {
          const line = await socket.readUntil(LF, {
            timeout: ECHO_LIMITS.lineTimeoutMs,
            maxLength: ECHO_LIMITS.maxLineBytes,
          });
          if (line === null) break;
          await socket.send(line, { timeout: ECHO_LIMITS.sendTimeoutMs });
        }
        count("eof");
      } catch (error) {
        const cause = peerCause(error);
        if (cause === null) throw error; // shutdown's abort, or a bug
        count(cause);
      }
    },
  );
  return {
    stats: () => loop.stats,
    port: acceptor.port,
    shutdown: () => loop.shutdown({ grace: 1000 }),
  };
}

function startHttp(
  port: number,
  errorSamples: string[],
  evict: boolean,
): Running {
  const server = serve(
    {
      hostname: "127.0.0.1",
      port,
      maxConnections: POOL,
      policy: "wait",
      evictUnderPressure: evict,
      ...HTTP_LIMITS,
      onListen() {},
      onError(error) {
        if (errorSamples.length < ERROR_SAMPLES) {
          errorSamples.push(`handler: ${String(error)}`);
        }
        console.error("soak http server: handler failed:", error);
        return new Response("handler failed\n", { status: 500 });
      },
    },
    async (request) => {
      const url = new URL(request.url);
      if (url.pathname === "/gen") {
        const offset = Number(url.searchParams.get("o") ?? 0);
        const n = Number(url.searchParams.get("n") ?? 0);
        if (
          !Number.isSafeInteger(offset) || offset < 0 ||
          !Number.isSafeInteger(n) || n < 0 || n > PATTERN_BYTES
        ) {
          return new Response("bad o or n\n", { status: 400 });
        }
        return new Response(patternSlice(offset, n));
      }
      if (url.pathname === "/echo" && request.method === "POST") {
        return new Response(await request.bytes());
      }
      return new Response("soak\n");
    },
  );
  return {
    stats: () => server.loop.stats,
    port: server.addr.port,
    shutdown: () => server.shutdown({ grace: 1000 }),
  };
}

function print(message: unknown): void {
  console.log(JSON.stringify(message));
}

async function main(): Promise<void> {
  const { target, port, evict } = parseArgs(
    Deno.args,
    {
      target: choice(["echo", "http"] as const),
      port: PORT,
      evict: choice(["on", "off"] as const),
    },
    { target: "echo", port: 0, evict: "on" },
    { required: ["target"] },
  );
  const endings: Record<string, number> = {};
  const errorSamples: string[] = [];
  pattern(); // made before the baseline, not during the load
  const running = target === "echo"
    ? startEcho(port, endings, errorSamples)
    : startHttp(port, errorSamples, evict === "on");

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      await running.shutdown();
      print({ event: "stopped", stats: running.stats() });
      Deno.exit(0);
    })();
    return stopping;
  };
  Deno.addSignalListener("SIGTERM", stop);
  print({ event: "listening", port: running.port, pid: Deno.pid, target });

  const statsReply = (id: number): StatsReply => {
    const memory = Deno.memoryUsage();
    return {
      event: "stats",
      id,
      stats: running.stats(),
      fds: countFds(),
      rss: memory.rss,
      heapUsed: memory.heapUsed,
      endings: { ...endings },
      errorSamples: [...errorSamples],
    };
  };

  let rest = "";
  for await (
    const text of Deno.stdin.readable.pipeThrough(new TextDecoderStream())
  ) {
    rest += text;
    let eol;
    while ((eol = rest.indexOf("\n")) >= 0) {
      const line = rest.slice(0, eol).trim();
      rest = rest.slice(eol + 1);
      if (line === "") continue;
      let request: { op?: unknown; id?: unknown; gc?: unknown };
      try {
        request = JSON.parse(line);
      } catch {
        print({ event: "error", message: `not JSON: ${line}` });
        continue;
      }
      if (request.op === "stats") {
        // With --v8-flags=--expose-gc: collect first, so heapUsed is live data.
        const gc = (globalThis as { gc?: () => void }).gc;
        if (request.gc === true && gc !== undefined) gc();
        print(statsReply(typeof request.id === "number" ? request.id : 0));
      } else if (request.op === "quit") {
        await stop();
      } else {
        print({ event: "error", message: `unknown op: ${line}` });
      }
    }
  }
  // End of stdin: the orchestrator is gone.
  await stop();
}

if (import.meta.main) {
  await main();
}
