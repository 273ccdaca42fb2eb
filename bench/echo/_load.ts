/**
 * Load client for `bench/echo/echo.ts`: drives one echo server on 127.0.0.1 for a
 * fixed time and prints one JSON line with the result.
 *
 * Usage:
 * `deno run --allow-net bench/echo/_load.ts --port P --scenario S --seconds N [--warmup W]`
 *
 * Scenarios:
 * - `pingpong-1`: one connection; write 64 B, read until 64 B are back, repeat.
 * - `pingpong-100`: the same on 100 connections at once.
 * - `stream`: one connection; one task writes 64 KiB chunks continuously while
 *   another reads continuously; reports MB/s (10^6 bytes) of echoed bytes.
 * - `stream-100`: the same on 100 connections at once (the memory-under-load
 *   load of `echo.ts --memory`).
 *
 * The first `--warmup` seconds (default 0.25) are run but not counted. The
 * client stops after `--seconds`, closes its connections and exits; a hard stop
 * fires after `seconds + 10` s whatever happens.
 *
 * @module
 */

import { choice, parseArgs, PORT, SECONDS, WARMUP } from "../_common/args.ts";
import { printWithHardStop } from "../_common/process.ts";

const PING_SIZE = 64;
const PING_CONNS = 100;
const CHUNK_SIZE = 64 * 1024;

/** The JSON line printed on stdout. */
export interface LoadResult {
  /** Which scenario ran. */
  scenario: string;
  /** `rt/s` (round trips per second) or `MB/s` (echoed MB received per second). */
  unit: "rt/s" | "MB/s";
  /** The measured rate. */
  value: number;
  /** Measured window in seconds (warm-up excluded). */
  seconds: number;
  /** Round trips completed, or bytes received, in the window. */
  count: number;
  /** Connections used. */
  connections: number;
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) {
    off += await conn.write(data.subarray(off));
  }
}

/** Reads exactly `buf.length` bytes; false on EOF. */
async function readFull(conn: Deno.Conn, buf: Uint8Array): Promise<boolean> {
  let off = 0;
  while (off < buf.length) {
    const n = await conn.read(buf.subarray(off));
    if (n === null) return false;
    off += n;
  }
  return true;
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

/** Timing window shared by the tasks of one run. */
class Window {
  readonly start: number;
  readonly measureFrom: number;
  readonly end: number;
  constructor(warmup: number, seconds: number) {
    this.start = performance.now();
    this.measureFrom = this.start + warmup * 1000;
    this.end = this.measureFrom + seconds * 1000;
  }
}

/**
 * Opens `connections` connections to the server (Nagle off), runs `body`
 * with them and closes them all, those already open too when one fails.
 */
async function withConnections<T>(
  port: number,
  connections: number,
  body: (conns: Deno.Conn[]) => Promise<T>,
): Promise<T> {
  const conns: Deno.Conn[] = [];
  try {
    for (let i = 0; i < connections; i++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.setNoDelay(true);
      conns.push(conn);
    }
    return await body(conns);
  } finally {
    for (const conn of conns) closeQuietly(conn);
  }
}

function pingPong(
  port: number,
  connections: number,
  warmup: number,
  seconds: number,
): Promise<LoadResult> {
  return withConnections(port, connections, async (conns) => {
    const win = new Window(warmup, seconds);
    let counted = 0;
    const one = async (conn: Deno.Conn, id: number) => {
      const out = new Uint8Array(PING_SIZE).fill(id & 0xff);
      const back = new Uint8Array(PING_SIZE);
      while (true) {
        const now = performance.now();
        if (now >= win.end) return;
        await writeAll(conn, out);
        if (!await readFull(conn, back)) {
          throw new Error(
            `Connection ${id} closed by the server mid round trip`,
          );
        }
        if (back[0] !== out[0] || back[PING_SIZE - 1] !== out[PING_SIZE - 1]) {
          throw new Error(
            `Connection ${id} got bytes that are not its own echo`,
          );
        }
        if (now >= win.measureFrom && performance.now() <= win.end) counted++;
      }
    };
    await Promise.all(conns.map((c, i) => one(c, i)));
    return {
      scenario: connections === 1 ? "pingpong-1" : `pingpong-${connections}`,
      unit: "rt/s",
      value: counted / seconds,
      seconds,
      count: counted,
      connections,
    };
  });
}

function stream(
  port: number,
  connections: number,
  warmup: number,
  seconds: number,
): Promise<LoadResult> {
  return withConnections(port, connections, async (conns) => {
    const win = new Window(warmup, seconds);
    let counted = 0;
    await Promise.all(conns.map(async (conn) => {
      // Not `counted += await ...`: that reads `counted` before the await.
      const n = await streamOne(conn, win);
      counted += n;
    }));
    return {
      scenario: connections === 1 ? "stream" : `stream-${connections}`,
      unit: "MB/s",
      value: counted / 1e6 / seconds,
      seconds,
      count: counted,
      connections,
    };
  });
}

/** Streams on one connection; returns the echoed bytes counted. */
async function streamOne(conn: Deno.Conn, win: Window): Promise<number> {
  let sent = 0;
  let counted = 0;
  let received = 0;
  const writer = async () => {
    const chunk = new Uint8Array(CHUNK_SIZE).fill(0x5a);
    while (performance.now() < win.end) {
      await writeAll(conn, chunk);
      sent += CHUNK_SIZE;
    }
    // The server sees EOF, echoes what is left, and closes: the reader ends.
    await conn.closeWrite();
  };
  const reader = async () => {
    const buf = new Uint8Array(CHUNK_SIZE);
    while (true) {
      const n = await conn.read(buf);
      if (n === null) return;
      received += n;
      const now = performance.now();
      if (now >= win.measureFrom && now <= win.end) counted += n;
    }
  };
  await Promise.all([writer(), reader()]);
  if (received !== sent) {
    throw new Error(`Echoed ${received} bytes of the ${sent} sent`);
  }
  return counted;
}

/** The scenarios, as `--scenario` takes them. */
export const SCENARIOS = [
  "pingpong-1",
  "pingpong-100",
  "stream",
  "stream-100",
] as const;

async function main(): Promise<void> {
  const { port, scenario, seconds, warmup } = parseArgs(Deno.args, {
    port: PORT,
    scenario: choice(SCENARIOS),
    seconds: SECONDS,
    warmup: WARMUP,
  }, {
    port: 0,
    scenario: "pingpong-1",
    seconds: 3,
    warmup: 0.25,
  }, { required: ["port"] });

  const limit = seconds + warmup + 10;
  await printWithHardStop(
    limit,
    `echo/_load: hard stop after ${limit} s (${scenario})`,
    ({
      "pingpong-1": () => pingPong(port, 1, warmup, seconds),
      "pingpong-100": () => pingPong(port, PING_CONNS, warmup, seconds),
      "stream": () => stream(port, 1, warmup, seconds),
      "stream-100": () => stream(port, PING_CONNS, warmup, seconds),
    })[scenario],
  );
}

if (import.meta.main) {
  await main();
}
