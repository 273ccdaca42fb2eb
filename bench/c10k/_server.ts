/**
 * Echo server for `bench/c10k/c10k.ts`, controlled over stdin/stdout lines.
 *
 * Usage:
 * ```sh
 * deno run --allow-net --v8-flags=--expose-gc bench/c10k/_server.ts \
 *   --kind evthread|raw [--buffer 4096] [--capacity 10100] [--timeout 30000]
 * ```
 *
 * - `evthread`: this library. `EvLoop.listen` with a pool of `--capacity`
 *   tasks; each connection's procedure allocates a `--buffer`-byte
 *   `Uint8Array` and loops `recv(buf, { timeout })` / `send(..., { timeout })`.
 *   A recv that times out is simply called again (the socket loses nothing on
 *   a timeout), so an idle connection stays open however long the run takes;
 *   the timeouts are counted in the stats. Besides the procedure's buffer,
 *   each `EvSocket` has its own read buffer (16 KiB in `src/ev_socket.ts`),
 *   which is where the kernel's bytes land first.
 * - `raw`: a plain `Deno.listen` accept loop; each connection allocates a
 *   `--buffer`-byte `Uint8Array` and loops `conn.read` / `conn.write`, with
 *   no timeouts. The kernel's bytes land in that buffer directly.
 *
 * Both listen on 127.0.0.1 with a backlog of 4096 and set TCP_NODELAY.
 *
 * Protocol (each stdout line of it starts with `@c10k `): the first is
 * `listening <port>`. Then, for each stdin line:
 * - `stats`: runs `gc()` a few times (it needs `--v8-flags=--expose-gc`),
 *   then prints `stats <json>` ({@linkcode ServerStats}).
 * - `snapshot <path>`: forced GC, then a heap snapshot written to `path`
 *   (needs `--allow-write` for it); prints `snapshot <json>`, the stats
 *   taken just before, or `snapshot error <message>`.
 * - `quit`: closes everything and exits.
 *
 * The server also exits when stdin ends (the orchestrator died) and on
 * SIGTERM, so it never outlives the benchmark.
 *
 * @module
 */

import { getHeapSpaceStatistics, writeHeapSnapshot } from "node:v8";
import { choice, integer, parseArgs } from "../_common/args.ts";
import { EvLoop } from "../../mod.ts";

/**
 * The library's shared deadline queue, for its size; undefined in a
 * revision without it (`bench/ab.ts` runs this file against others).
 */
const deadlines: { readonly size: number } | undefined = await import(
  "../../src/_deadline_queue.ts"
).then((m) => m.deadlines, () => undefined);

/** What `stats` prints, after the `stats ` prefix. */
export interface ServerStats {
  kind: "evthread" | "raw";
  /** Connections open now (evthread: tasks running). */
  connections: number;
  /** Connections accepted since the start. */
  accepted: number;
  /** `Deno.memoryUsage()` after forced GC, in bytes. */
  rss: number;
  heapUsed: number;
  heapTotal: number;
  /** Memory V8 knows is held outside its heap: ArrayBuffer backing stores. */
  external: number;
  /**
   * V8's heap spaces that hold anything: bytes reserved (`size`), used, and
   * resident (`physical`). `new_space` (the young generation) is sized by
   * V8 for the allocation rate, not per object.
   */
  spaces: Record<string, { size: number; used: number; physical: number }>;
  /** Whether `gc()` was available (the server ran with --expose-gc). */
  gc: boolean;
  /** Calls that timed out (evthread only; 0 for raw). */
  timeouts: number;
  /**
   * Deadlines pending in the library's shared deadline queue (one timer for
   * all of them): one per idle connection's recv (evthread; 0 for raw).
   */
  deadlines: number;
  /** Errors reported by the loop (evthread) or caught per connection (raw). */
  errors: number;
  /** Bytes each connection's procedure allocates for its reads. */
  buffer: number;
}

interface Options {
  kind: "evthread" | "raw";
  buffer: number;
  capacity: number;
  timeout: number;
}

function parseOptions(args: string[]): Options {
  return parseArgs(args, {
    kind: choice(["evthread", "raw"] as const),
    buffer: integer(1),
    capacity: integer(1),
    timeout: integer(1),
  }, {
    kind: "evthread",
    buffer: 4096,
    capacity: 10_100,
    timeout: 30_000,
  });
}

const opts = parseOptions(Deno.args);
const BACKLOG = 4096;
const forceGc = (globalThis as { gc?: () => void }).gc;

interface Server {
  port: number;
  connections(): number;
  accepted(): number;
  timeouts(): number;
  errors(): number;
  close(): Promise<void>;
}

function isTimeout(error: unknown): boolean {
  return error instanceof DOMException && error.name === "TimeoutError";
}

function startEvthread(): Server {
  const loop = new EvLoop({
    capacity: opts.capacity,
    onError: (error) => console.error("evthread server: task failed:", error),
  });
  const timeout = opts.timeout;
  const size = opts.buffer;
  const acceptor = loop.listen(
    { hostname: "127.0.0.1", port: 0, backlog: BACKLOG, policy: "wait" },
    () => async (socket) => {
      socket.setNoDelay(true);
      const buf = new Uint8Array(size);
      while (true) {
        let n: number | null;
        try {
          n = await socket.recv(buf, { timeout });
        } catch (error) {
          if (isTimeout(error)) continue; // idle: wait again, nothing lost
          throw error;
        }
        if (n === null) break;
        await socket.send(buf.subarray(0, n), { timeout });
      }
    },
  );
  return {
    port: acceptor.port,
    connections: () => loop.stats.active,
    accepted: () => loop.stats.accepted,
    timeouts: () => loop.stats.timeouts,
    errors: () => loop.stats.errors,
    close: () => loop.shutdown({ grace: 500 }),
  };
}

function startRaw(): Server {
  const listener = Deno.listen({
    hostname: "127.0.0.1",
    port: 0,
    tcpBacklog: BACKLOG,
  });
  const conns = new Set<Deno.TcpConn>();
  let accepted = 0;
  let errors = 0;
  const size = opts.buffer;

  async function echo(conn: Deno.TcpConn): Promise<void> {
    conns.add(conn);
    const buf = new Uint8Array(size);
    try {
      conn.setNoDelay(true);
      while (true) {
        const n = await conn.read(buf);
        if (n === null) break;
        let off = 0;
        while (off < n) off += await conn.write(buf.subarray(off, n));
      }
    } catch {
      errors++;
    } finally {
      conns.delete(conn);
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    }
  }

  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        accepted++;
        echo(conn);
      }
    } catch {
      // The listener was closed.
    }
  })();

  return {
    port: (listener.addr as Deno.NetAddr).port,
    connections: () => conns.size,
    accepted: () => accepted,
    timeouts: () => 0,
    errors: () => errors,
    close: async () => {
      try {
        listener.close();
      } catch {
        // Already closed.
      }
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // Already closed.
        }
      }
      conns.clear();
      await accepting;
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function stats(server: Server): Promise<ServerStats> {
  if (forceGc !== undefined) {
    // Several rounds, with turns of the event loop between them, so that
    // weak callbacks and the ArrayBuffer sweeper run and what they free is
    // collected too.
    for (let i = 0; i < 4; i++) {
      forceGc();
      await sleep(25);
    }
  }
  const mem = Deno.memoryUsage();
  const spaces: ServerStats["spaces"] = {};
  for (const space of getHeapSpaceStatistics()) {
    if (space.space_size === 0) continue;
    spaces[space.space_name] = {
      size: space.space_size,
      used: space.space_used_size,
      physical: space.physical_space_size,
    };
  }
  return {
    kind: opts.kind,
    connections: server.connections(),
    accepted: server.accepted(),
    rss: mem.rss,
    heapUsed: mem.heapUsed,
    heapTotal: mem.heapTotal,
    external: mem.external,
    spaces,
    gc: forceGc !== undefined,
    timeouts: server.timeouts(),
    deadlines: opts.kind === "evthread" ? deadlines?.size ?? 0 : 0,
    errors: server.errors(),
    buffer: opts.buffer,
  };
}

/**
 * Writes a heap snapshot (after forced GC) to `path` (it needs
 * `--allow-write` for it); answers the stats taken just before it.
 */
async function snapshot(server: Server, path: string): Promise<string> {
  const before = await stats(server);
  try {
    writeHeapSnapshot(path);
  } catch (error) {
    return `error ${String(error).replaceAll("\n", " ")}`;
  }
  return JSON.stringify(before);
}

const server = opts.kind === "evthread" ? startEvthread() : startRaw();
const encoder = new TextEncoder();
/**
 * Prints a line of the control protocol. The `@c10k ` mark lets the
 * orchestrator find it among other output on stdout (V8's `--trace-gc`
 * writes there, through a buffer that may end mid-line).
 */
function say(line: string): void {
  const bytes = encoder.encode(`@c10k ${line}\n`);
  let off = 0;
  while (off < bytes.length) off += Deno.stdout.writeSync(bytes.subarray(off));
}

let quitting: Promise<never> | undefined;
function quit(code: number): Promise<never> {
  quitting ??= (async () => {
    const timer = setTimeout(() => Deno.exit(code), 3000);
    try {
      await server.close();
    } finally {
      clearTimeout(timer);
    }
    Deno.exit(code);
  })();
  return quitting;
}

Deno.addSignalListener("SIGTERM", () => void quit(0));
say(`listening ${server.port}`);

const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
let pending = "";
try {
  for await (const chunk of lines) {
    pending += chunk;
    let nl;
    while ((nl = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, nl).trim();
      pending = pending.slice(nl + 1);
      if (line === "stats") say(`stats ${JSON.stringify(await stats(server))}`);
      else if (line.startsWith("snapshot ")) {
        say(`snapshot ${await snapshot(server, line.slice(9).trim())}`);
      } else if (line === "quit") await quit(0);
      else if (line !== "") say(`error unknown command '${line}'`);
    }
  }
} catch (error) {
  console.error("c10k server: control channel failed:", error);
}
// stdin ended: the orchestrator is gone.
await quit(0);
