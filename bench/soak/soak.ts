/**
 * Soak test: for N seconds, well-behaved clients beside hostile ones against
 * this library's echo server and its HTTP server (pool 256, policy "wait"),
 * then checks that nothing failed and nothing leaked.
 *
 * ```sh
 * deno run -A bench/soak/soak.ts [--seconds 60] [--target echo|http|both] [--seed N] \
 *   [--flood N] [--evict on|off|both]
 * ```
 *
 * `--flood N` adds the pool flood of `_clients.ts` (N slow heads from one
 * other address, 127.0.0.3, each reconnecting whenever it is cut: one
 * address trying to hold every slot), and the report gives the
 * well-behaved clients' wait for a slot (fresh connection: connect to
 * first response byte). `--evict both` runs the HTTP target twice, with
 * the defence (`evictUnderPressure`, the default) and without it
 * (`--evict off` alone: only without), side by side.
 *
 * Each target runs in turn for `--seconds` (so `both` takes twice as long,
 * plus a few seconds each), with three processes: the server
 * (`_server.ts`), the load (`_clients.ts`) and this orchestrator,
 * which talks to the server over its stdin/stdout (JSON lines) and counts the
 * server's open fds by listing `/proc/<pid>/fd` with `ls`.
 *
 * Per target:
 * 1. start the server; one warm-up exchange; wait for 0 active tasks; take
 *    the baseline: the server's counters and its open fds;
 * 2. run the load for `--seconds`: 32 well-behaved clients (30 s timeouts,
 *    every response checked byte for byte) and at most 64 hostile clients at
 *    once (abrupt resets, half-closes, readers that never read, slowloris
 *    trickles, silent connections, connect-and-vanish, bursts of 300
 *    connections beyond the pool); the server's counters are sampled every
 *    second;
 * 3. stop the load (the clients' process exits, so all its sockets close),
 *    wait up to 20 s for the server's active tasks to reach 0, then up to 5 s
 *    for its open fds to return to the baseline;
 * 4. stop the server.
 *
 * It prints a table per target (requests served, failures, retries, latency,
 * hostile connections by kind, peak tasks vs pool, the server's timeouts,
 * refusals, held and reclaimed connections, errors, fds and memory before and
 * after) and the checks, writes `bench/results/soak.json`, and exits with 1
 * if a check fails:
 * - well-behaved failures = 0, and some requests were served;
 * - peak tasks <= 256 (the pool);
 * - active tasks back to 0 after the load, and open fds back to the baseline;
 * - every slowloris, silent and never-reading client was cut by the server
 *   (none reached the clients' 15 s cap);
 * - every burst connection that waited for its response got it, and no
 *   hostile client failed to connect;
 * - no error reported by the server's loop (`stats.errors`: a task that
 *   failed with something other than a timeout or a peer's disconnect);
 * - the load process and the server ran to the end.
 *
 * The hostile mix is drawn from `--seed` (printed, and random by default):
 * the same seed gives the same sequence of attacks per hostile client, though
 * not the same interleaving.
 *
 * **Why 0 failures are expected** (under these settings; see
 * `_server.ts` and `_clients.ts` for the exact limits):
 * - Nothing is dropped. With policy `"wait"`, a connection that finds the
 *   pool full waits in the listen backlog (511, or `net.core.somaxconn` if
 *   lower: 4096 by default since Linux 5.4; recorded in the JSON) and is
 *   served in order when a slot frees. At most 32 + 64 + 300 = 396
 *   connections exist at once, fewer than pool + backlog, so no connect is
 *   refused or dropped (with a small somaxconn, a dropped SYN is sent again
 *   after 1 s, 3 s...: a delay, well within 30 s).
 * - The wait is short. Every hostile connection frees its slot within a
 *   bound: a reset, a half-close or a vanished client at once (end of stream
 *   or reset); a slowloris or silent one within the line or header timeout
 *   (5 s / 4 s); a reader that never reads within the send or idle timeout
 *   (5 s / 3 s); a burst connection after one small exchange. So a
 *   well-behaved client waits seconds at most, far under its 30 s timeout.
 * - A slot, once held, is not taken from a well-behaved client mid-request:
 *   it sends each request in one write and reads its response at once, so
 *   the server never waits on it for 3 s or more (its shortest timeout) while
 *   a request is in flight; and the HTTP server reclaims connections only
 *   between requests. (This assumes no process stalls for seconds: the
 *   largest well-behaved latency, queueing included, is in the table.)
 * - Between requests it can be: the HTTP server closes a keep-alive
 *   connection after a response when a client waits for a slot, or the idle
 *   one that has waited longest (and either server closes a connection idle
 *   past its timeout). A request sent on such a connection sees end of
 *   stream or a reset before any byte of its response; as HTTP clients do
 *   (RFC 9112, 9.3.1), the client retries it once on a fresh connection, and
 *   the retries are counted apart. A retry that fails, or any error on a
 *   fresh connection, is a failure.
 *
 * A failure is therefore a defect: a wrong or missing byte, a connection
 * closed mid-response or before the response on a fresh connection, or a
 * wait over 30 s.
 *
 * @module
 */

import {
  benchPath,
  commandOutput,
  type Flag,
  integer,
  loadavg,
  machineInfo,
  number,
  parseArgs,
  saveResults,
  toJson,
  versionLines,
} from "../_common/mod.ts";
import {
  BURST_SIZE,
  CLIENT_TIMEOUT_MS,
  type ClientsProgress,
  type ClientsReport,
  FLOOD_ADDRESS,
  HOSTILE_CAP_MS,
  HOSTILE_KINDS,
  HOSTILE_MAX,
  type HostileKind,
  WELL_BEHAVED,
} from "./_clients.ts";
import {
  ECHO_LIMITS,
  HTTP_LIMITS,
  POOL,
  type SoakTarget,
  type StatsReply,
} from "./_server.ts";

const STARTUP_TIMEOUT_MS = 20_000;
const STATS_TIMEOUT_MS = 5_000;
const SAMPLE_EVERY_MS = 1_000;
const DRAIN_TIMEOUT_MS = 20_000;
const FD_SETTLE_TIMEOUT_MS = 5_000;
const STOP_TIMEOUT_MS = 5_000;
const STDERR_KEPT = 40;
/** The load stops by itself; this is the backstop past `seconds`. */
const LOAD_BACKSTOP_S = CLIENT_TIMEOUT_MS / 1000 + 30;

const USAGE =
  "usage: deno task bench:soak [options]   (deno run -A bench/soak/soak.ts)";

interface Options {
  seconds: number;
  targets: SoakTarget[];
  seed: number;
  flood: number;
  evict: ("on" | "off")[];
}

/** One run: a target, and for HTTP whether it evicts. */
interface RunSpec {
  target: SoakTarget;
  evict: boolean;
  /** The column and check label: `echo`, `http`, `http (no eviction)`. */
  label: string;
}

/** The runs that the options ask for, in order. */
function runSpecs(opts: Options): RunSpec[] {
  const specs: RunSpec[] = [];
  for (const target of opts.targets) {
    if (target === "echo") {
      specs.push({ target, evict: true, label: "echo" });
      continue;
    }
    for (const e of opts.evict) {
      specs.push({
        target,
        evict: e === "on",
        label: e === "on" ? "http" : "http (no eviction)",
      });
    }
  }
  return specs;
}

/** `--evict on|off|both`. */
const EVICT: Flag<("on" | "off")[]> = {
  value: "on|off|both",
  parse(raw, flag) {
    if (raw === "both") return ["on", "off"];
    if (raw === "on" || raw === "off") return [raw];
    throw new TypeError(
      `'${flag}' must be on, off or both: received '${raw}'`,
    );
  },
};

/** `--target echo|http|both`. */
const TARGET: Flag<SoakTarget[]> = {
  value: "echo|http|both",
  parse(raw, flag) {
    if (raw === "both") return ["echo", "http"];
    if (raw === "echo" || raw === "http") return [raw];
    throw new TypeError(
      `'${flag}' must be echo, http or both: received '${raw}'`,
    );
  },
};

function parseOptions(args: string[]): Options {
  const { seconds, target, seed, flood, evict } = parseArgs(args, {
    seconds: number(0, { exclusive: true, max: 24 * 3600 }),
    target: TARGET,
    seed: integer(0, 2 ** 32 - 1),
    flood: integer(0, 100_000),
    evict: EVICT,
  }, {
    seconds: 60,
    target: ["echo", "http"],
    seed: Math.floor(Math.random() * 2 ** 31),
    flood: 0,
    evict: ["on"],
  }, { usage: USAGE });
  return { seconds, targets: target, seed, flood, evict };
}

/** Children started, killed on SIGINT and at the end whatever happens. */
const children = new Set<JsonChild>();

/** A `deno` child whose stdout is JSON lines. */
class JsonChild {
  readonly name: string;
  readonly pid: number;
  /** Its first stderr lines (all are forwarded to ours, prefixed). */
  readonly stderrLines: string[] = [];
  readonly status: Promise<Deno.CommandStatus>;
  exited = false;
  #child: Deno.ChildProcess;
  #waiters: {
    match: (event: Record<string, unknown>) => boolean;
    resolve: (event: Record<string, unknown>) => void;
    reject: (error: Error) => void;
  }[] = [];
  #onEvent: ((event: Record<string, unknown>) => void) | undefined;
  #writer: WritableStreamDefaultWriter<Uint8Array> | undefined;
  #done: Promise<unknown>;
  #ended = false;

  constructor(name: string, args: string[], stdin: boolean) {
    this.name = name;
    this.#child = new Deno.Command(Deno.execPath(), {
      args,
      stdin: stdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    this.pid = this.#child.pid;
    children.add(this);
    if (stdin) this.#writer = this.#child.stdin.getWriter();
    this.status = this.#child.status.then((status) => {
      this.exited = true;
      return status;
    });
    this.#done = Promise.all([
      this.#readStdout().finally(() => {
        // No event can come any more.
        this.#ended = true;
        for (const waiter of this.#waiters.splice(0)) {
          waiter.reject(new Error(`${this.name} closed its output`));
        }
      }),
      this.#readStderr(),
    ]);
  }

  /** Called with every event that no waiter takes. */
  set onEvent(handler: ((event: Record<string, unknown>) => void) | undefined) {
    this.#onEvent = handler;
  }

  async #readStdout(): Promise<void> {
    let rest = "";
    const lines = this.#child.stdout.pipeThrough(new TextDecoderStream());
    for await (const text of lines) {
      rest += text;
      let eol;
      while ((eol = rest.indexOf("\n")) >= 0) {
        const line = rest.slice(0, eol).trim();
        rest = rest.slice(eol + 1);
        if (line !== "") this.#dispatch(line);
      }
    }
    if (rest.trim() !== "") this.#dispatch(rest.trim());
  }

  #dispatch(line: string): void {
    let event: Record<string, unknown>;
    try {
      event = JSON.parse(line);
    } catch {
      console.error(`[${this.name}] ${line}`);
      return;
    }
    const i = this.#waiters.findIndex((w) => w.match(event));
    if (i >= 0) this.#waiters.splice(i, 1)[0]!.resolve(event);
    else this.#onEvent?.(event);
  }

  async #readStderr(): Promise<void> {
    let rest = "";
    const chunks = this.#child.stderr.pipeThrough(new TextDecoderStream());
    for await (const text of chunks) {
      rest += text;
      let eol;
      while ((eol = rest.indexOf("\n")) >= 0) {
        this.#stderrLine(rest.slice(0, eol));
        rest = rest.slice(eol + 1);
      }
    }
    if (rest !== "") this.#stderrLine(rest);
  }

  #stderrLine(line: string): void {
    if (this.stderrLines.length < STDERR_KEPT) this.stderrLines.push(line);
    console.error(`[${this.name}] ${line}`);
  }

  /** The next event that `match`es, within `ms`. */
  next<T>(
    match: (event: Record<string, unknown>) => boolean,
    ms: number,
    what: string,
  ): Promise<T> {
    if (this.#ended) {
      return Promise.reject(new Error(`${this.name} ended before ${what}`));
    }
    return new Promise<T>((resolve, reject) => {
      const waiter = {
        match,
        resolve: (event: Record<string, unknown>) => {
          clearTimeout(timer);
          resolve(event as T);
        },
        reject: (error: Error) => {
          clearTimeout(timer);
          reject(new Error(`${error.message} before ${what}`));
        },
      };
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(new Error(`${this.name}: no ${what} within ${ms} ms`));
      }, ms);
      this.#waiters.push(waiter);
    });
  }

  /** Writes one JSON line to its stdin. */
  async send(message: unknown): Promise<void> {
    await this.#writer!.write(
      new TextEncoder().encode(JSON.stringify(message) + "\n"),
    );
  }

  /** SIGTERM (or a quit message first), then SIGKILL; waits for the exit. */
  async stop(quit?: unknown): Promise<Deno.CommandStatus> {
    if (!this.exited) {
      try {
        if (quit !== undefined) await this.send(quit);
        else this.#child.kill("SIGTERM");
      } catch {
        // Exited meanwhile, or its stdin is gone.
      }
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((resolve) => {
      timer = setTimeout(() => resolve("late"), STOP_TIMEOUT_MS);
    });
    let status = await Promise.race([this.status, late]);
    clearTimeout(timer);
    if (status === "late") {
      console.error(`${this.name}: no exit within ${STOP_TIMEOUT_MS} ms`);
      this.kill("SIGKILL");
      status = await this.status;
    }
    try {
      await this.#writer?.close();
    } catch {
      // The pipe is broken: the process is gone.
    }
    await this.#done;
    children.delete(this);
    return status;
  }

  kill(signal: Deno.Signal): void {
    if (this.exited) return;
    try {
      this.#child.kill(signal);
    } catch {
      // Exited meanwhile.
    }
  }
}

/** The open fds of process `pid`, by kind (`socket`, `pipe`, ...). */
async function openFds(
  pid: number,
): Promise<{ count: number; kinds: Record<string, number> }> {
  const { success, stdout, stderr } = await new Deno.Command("ls", {
    args: ["-l", `/proc/${pid}/fd`],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(stdout);
  if (!success && text === "") {
    throw new Error(
      `ls /proc/${pid}/fd failed: ${new TextDecoder().decode(stderr)}`,
    );
  }
  const kinds: Record<string, number> = {};
  let count = 0;
  for (const line of text.split("\n")) {
    const target = line.split(" -> ")[1];
    if (target === undefined) continue;
    const kind = target.replace(/:?\[\d+\]$/, "");
    kinds[kind] = (kinds[kind] ?? 0) + 1;
    count++;
  }
  return { count, kinds };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Waits for `promise`, at most `ms`; clears its timer either way. */
async function within(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      promise,
      new Promise((resolve) => timer = setTimeout(resolve, ms)),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** One exchange with the server: lazy set-up is done before the baseline. */
async function warmUp(target: SoakTarget, port: number): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const timer = setTimeout(() => conn.close(), 10_000);
  try {
    const request = target === "echo"
      ? "warm-up\n"
      : "GET /gen?o=0&n=16 HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n";
    await conn.write(new TextEncoder().encode(request));
    if (target === "echo") await conn.closeWrite();
    const buf = new Uint8Array(4096);
    while (await conn.read(buf) !== null) {
      // Until the server closes.
    }
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // Closed by the timer.
    }
  }
}

/** A sample of the server's state during the load. */
interface Sample {
  t: number;
  active: number;
  held: number;
  reclaimed: number;
  timeouts: number;
  accepted: number;
  fds: number;
  rssMB: number;
}

/** What one target's run gives. */
interface TargetReport {
  target: SoakTarget;
  /** As {@linkcode RunSpec}. */
  label: string;
  evict: boolean;
  limits: typeof ECHO_LIMITS | typeof HTTP_LIMITS;
  before: StatsReply & { lsFds: number; fdKinds: Record<string, number> };
  after:
    | (StatsReply & { lsFds: number; fdKinds: Record<string, number> })
    | null;
  /** Milliseconds from the end of the load to 0 active tasks (null: never). */
  drainMs: number | null;
  clients: ClientsReport | null;
  clientsExit: number | null;
  clientsStderr: string[];
  serverExit: number | null;
  serverStderr: string[];
  serverDiedDuringLoad: boolean;
  samples: Sample[];
  error?: string;
}

interface Check {
  /** The run's label. */
  target: string;
  name: string;
  ok: boolean;
  detail: string;
}

function denoArgs(
  script: string,
  v8Flags: string[],
  ...args: string[]
): string[] {
  return [
    "run",
    "--no-prompt",
    "--allow-net",
    ...(v8Flags.length > 0 ? [`--v8-flags=${v8Flags.join(",")}`] : []),
    benchPath(script),
    ...args,
  ];
}

async function runTarget(
  spec: RunSpec,
  opts: Options,
): Promise<TargetReport> {
  const { target, label } = spec;
  const server = new JsonChild(
    `${label} server`,
    denoArgs(
      "./soak/_server.ts",
      ["--expose-gc"],
      "--target",
      target,
      "--evict",
      spec.evict ? "on" : "off",
    ),
    true,
  );
  let clients: JsonChild | undefined;
  try {
    const listening = await server.next<{ port: number }>(
      (e) => e.event === "listening",
      STARTUP_TIMEOUT_MS,
      "'listening' line",
    );
    let nextId = 1;
    const stats = async (gc = false) => {
      const id = nextId++;
      const reply = server.next<StatsReply>(
        (e) => e.event === "stats" && e.id === id,
        STATS_TIMEOUT_MS,
        "stats reply",
      );
      await server.send({ op: "stats", id, gc });
      return await reply;
    };
    const snapshot = async () => {
      const reply = await stats(true);
      const fds = await openFds(server.pid);
      return { ...reply, lsFds: fds.count, fdKinds: fds.kinds };
    };
    const waitIdle = async (ms: number): Promise<number | null> => {
      const start = performance.now();
      while ((await stats()).stats.active > 0) {
        if (performance.now() - start > ms) return null;
        await sleep(50);
      }
      return performance.now() - start;
    };

    await warmUp(target, listening.port);
    if (await waitIdle(5_000) === null) {
      throw new Error("the server did not go idle after the warm-up");
    }
    const before = await snapshot();
    console.error(
      `${target}: server pid ${server.pid} on port ${listening.port}; ` +
        `baseline ${before.lsFds} fds; load for ${opts.seconds} s (seed ${opts.seed})`,
    );

    clients = new JsonChild(
      `${label} clients`,
      denoArgs(
        "./soak/_clients.ts",
        [],
        "--target",
        target,
        "--port",
        String(listening.port),
        "--seconds",
        String(opts.seconds),
        "--seed",
        String(opts.seed),
        "--flood",
        String(opts.flood),
      ),
      false,
    );
    const started = performance.now();
    const samples: Sample[] = [];
    let last: StatsReply | undefined;
    clients.onEvent = (event) => {
      if (event.event !== "progress") return;
      const p = event as unknown as ClientsProgress;
      const s = last?.stats;
      console.error(
        `${target} t=${p.t}s served=${p.served} failed=${p.failed} ` +
          `retries=${p.retries} hostile=${p.hostileActive}/${p.hostileConnections} conns` +
          (s === undefined
            ? ""
            : ` | server active=${s.active} peak=${s.peakActive} ` +
              `held=${s.held} reclaimed=${s.reclaimed} timeouts=${s.timeouts} errors=${s.errors}`),
      );
    };
    const result = clients.next<ClientsReport>(
      (e) => e.event === "result",
      (opts.seconds + LOAD_BACKSTOP_S) * 1000,
      "result",
    );
    result.catch(() => {}); // awaited below
    let serverDiedDuringLoad = false;
    const sampling = (async () => {
      const most = opts.seconds + LOAD_BACKSTOP_S + 10;
      for (let i = 0; i < most && !clients!.exited; i++) {
        if (server.exited) {
          serverDiedDuringLoad = true;
          return;
        }
        try {
          last = await stats();
          const fds = await openFds(server.pid);
          samples.push({
            t: Math.round(performance.now() - started) / 1000,
            active: last.stats.active,
            held: last.stats.held,
            reclaimed: last.stats.reclaimed,
            timeouts: last.stats.timeouts,
            accepted: last.stats.accepted,
            fds: fds.count,
            rssMB: Math.round(last.rss / 1e5) / 10,
          });
        } catch (error) {
          if (server.exited) {
            serverDiedDuringLoad = true;
            return;
          }
          console.error(`${target}: sampling failed: ${error}`);
        }
        await within(clients!.status, SAMPLE_EVERY_MS);
      }
    })();

    let report: ClientsReport | null = null;
    let error: string | undefined;
    try {
      report = await result;
    } catch (e) {
      error = `load: ${e instanceof Error ? e.message : String(e)}`;
    }
    // It exits by itself after its result; a stuck one is stopped.
    await within(clients.status, STOP_TIMEOUT_MS);
    const clientsStatus = await clients.stop();
    await sampling;
    const loadEnded = performance.now();

    let drainMs: number | null = null;
    let after: TargetReport["after"] = null;
    if (!server.exited) {
      drainMs = await waitIdle(DRAIN_TIMEOUT_MS);
      if (drainMs !== null) drainMs = Math.round(performance.now() - loadEnded);
      // Closed sockets leave the fd table as their last pending op ends.
      const settleFrom = performance.now();
      after = await snapshot();
      while (
        after.lsFds !== before.lsFds &&
        performance.now() - settleFrom < FD_SETTLE_TIMEOUT_MS
      ) {
        await sleep(100);
        after = await snapshot();
      }
    } else {
      serverDiedDuringLoad = true;
    }
    const serverStatus = await server.stop({ op: "quit" });
    return {
      target,
      label,
      evict: spec.evict,
      limits: target === "echo" ? ECHO_LIMITS : HTTP_LIMITS,
      before,
      after,
      drainMs,
      clients: report,
      clientsExit: clientsStatus.code,
      clientsStderr: clients.stderrLines,
      serverExit: serverStatus.code,
      serverStderr: server.stderrLines,
      serverDiedDuringLoad,
      samples,
      ...(error === undefined ? {} : { error }),
    };
  } finally {
    await clients?.stop();
    await server.stop();
  }
}

function checksOf(r: TargetReport): Check[] {
  const checks: Check[] = [];
  const add = (name: string, ok: boolean, detail: string) =>
    checks.push({ target: r.label, name, ok, detail });
  const c = r.clients;
  add(
    "load ran to the end",
    c !== null && r.clientsExit === 0,
    c === null ? (r.error ?? "no result") : `exit ${r.clientsExit}`,
  );
  add(
    "server ran to the end",
    !r.serverDiedDuringLoad,
    r.serverDiedDuringLoad ? `exit ${r.serverExit}` : "alive",
  );
  if (c !== null) {
    add(
      "well-behaved failures = 0",
      c.wellBehaved.failed === 0,
      `${c.wellBehaved.failed} failed`,
    );
    add(
      "well-behaved requests served > 0",
      c.wellBehaved.served > 0,
      `${c.wellBehaved.served} served`,
    );
    let capped = 0;
    for (const k of ["slowloris", "silent", "neverread"] as const) {
      capped += c.hostile[k].capped;
    }
    let unanswered = 0;
    let errors = 0;
    for (const k of HOSTILE_KINDS) {
      unanswered += c.hostile[k].unanswered;
      errors += c.hostile[k].errors;
    }
    add(
      "burst connections that waited for a response got it",
      unanswered === 0,
      `${c.hostile.burst.answered} of ${
        c.hostile.burst.answered + unanswered
      } answered`,
    );
    add(
      "hostile clients: no failed connect or unexpected error",
      errors === 0,
      `${errors} errors`,
    );
    add(
      `stalling hostile clients cut by the server (none reached the ${
        HOSTILE_CAP_MS / 1000
      } s cap)`,
      capped === 0,
      `${capped} reached it`,
    );
  }
  const a = r.after;
  if (a !== null) {
    add(
      `peak tasks <= pool (${POOL})`,
      a.stats.peakActive <= POOL && a.stats.capacity === POOL,
      `${a.stats.peakActive} of ${a.stats.capacity}`,
    );
    add(
      "active tasks back to 0",
      r.drainMs !== null && a.stats.active === 0,
      r.drainMs === null
        ? `${a.stats.active} still active after ${DRAIN_TIMEOUT_MS} ms`
        : `0 after ${r.drainMs} ms`,
    );
    add(
      "open fds back to the baseline",
      a.lsFds === r.before.lsFds,
      `${r.before.lsFds} before, ${a.lsFds} after` +
        (a.lsFds === r.before.lsFds
          ? ""
          : ` (${JSON.stringify(r.before.fdKinds)} -> ${
            JSON.stringify(a.fdKinds)
          })`),
    );
    add(
      "no errors reported by the server's loop",
      a.stats.errors === 0,
      `${a.stats.errors} errors${
        a.errorSamples.length > 0
          ? `: ${a.errorSamples.slice(0, 3).join("; ")}`
          : ""
      }`,
    );
  } else {
    add("server state after the load", false, "the server is gone");
  }
  return checks;
}

function ms(value: number | null): string {
  if (value === null) return "n/a";
  return value >= 1000
    ? `${(value / 1000).toFixed(2)} s`
    : `${value.toFixed(1)} ms`;
}

function mb(bytes: number): string {
  return (bytes / 1e6).toFixed(1);
}

function n(value: number): string {
  return value.toLocaleString("en-US");
}

function table(reports: TargetReport[]): string {
  const rows: [string, (r: TargetReport) => string][] = [
    [
      "seconds of load (+ wind-down)",
      (r) =>
        r.clients === null
          ? "n/a"
          : `${r.clients.loadSeconds.toFixed(1)} (+${
            r.clients.windDownSeconds.toFixed(1)
          })`,
    ],
    [
      "well-behaved clients",
      (r) => String(r.clients?.wellBehaved.clients ?? "n/a"),
    ],
    [
      "well-behaved requests served",
      (r) => r.clients ? n(r.clients.wellBehaved.served) : "n/a",
    ],
    ["well-behaved failures (must be 0)", (r) => {
      const wb = r.clients?.wellBehaved;
      if (wb === undefined) return "n/a";
      const reasons = Object.entries(wb.failures).map(([k, v]) => `${k}: ${v}`);
      return reasons.length === 0
        ? "0"
        : `${wb.failed} (${reasons.join(", ")})`;
    }],
    ["retried after a keep-alive close", (r) => {
      const wb = r.clients?.wellBehaved;
      if (wb === undefined) return "n/a";
      const reasons = Object.entries(wb.retryReasons).map(([k, v]) =>
        `${k} ${v}`
      );
      return reasons.length === 0
        ? "0"
        : `${n(wb.retries)} (${reasons.join(", ")})`;
    }],
    [
      "well-behaved connections",
      (r) => r.clients ? n(r.clients.wellBehaved.connections) : "n/a",
    ],
    ["latency p50 / p99 / max", (r) => {
      const wb = r.clients?.wellBehaved;
      return wb === undefined
        ? "n/a"
        : `${ms(wb.p50Ms)} / ${ms(wb.p99Ms)} / ${ms(wb.maxMs)}`;
    }],
    ["wait for a slot p50 / p99 / max", (r) => {
      const wb = r.clients?.wellBehaved;
      return wb === undefined
        ? "n/a"
        : `${ms(wb.slotWaitP50Ms)} / ${ms(wb.slotWaitP99Ms)} / ${
          ms(wb.slotWaitMaxMs)
        }`;
    }],
    ["pool flood: clients, connections (cut, 408)", (r) => {
      const f = r.clients?.flood;
      return f === undefined || f.clients === 0
        ? "none"
        : `${f.clients}, ${n(f.connections)} (${n(f.cut)}, ${n(f.got408)})`;
    }],
    ...HOSTILE_KINDS.map((k): [string, (r: TargetReport) => string] => [
      `hostile ${k}: connections (cut/capped)`,
      (r) => hostileCell(r, k),
    ]),
    [
      "hostile connections, peak open at once",
      (r) =>
        r.clients === null
          ? "n/a"
          : `${
            n(r.clients.hostileConnections)
          }, ${r.clients.hostileConnectionsPeak} (${r.clients.hostilePeak} clients)`,
    ],
    [
      "peak tasks / pool",
      (r) =>
        r.after === null
          ? "n/a"
          : `${r.after.stats.peakActive} / ${r.after.stats.capacity}`,
    ],
    ["server accepted", (r) => delta(r, "accepted")],
    ["server timeouts", (r) => delta(r, "timeouts")],
    [
      "server refused / held / reclaimed / evicted",
      (r) =>
        `${delta(r, "refused")} / ${delta(r, "held")} / ${
          delta(r, "reclaimed")
        } / ${delta(r, "evicted")}`,
    ],
    ["server errors", (r) => delta(r, "errors")],
    ["echo server: how connections ended", (r) => endings(r)],
    [
      "active tasks 0 after the load",
      (r) => r.drainMs === null ? "no" : `after ${ms(r.drainMs)}`,
    ],
    [
      "open fds before / after",
      (r) => `${r.before.lsFds} / ${r.after?.lsFds ?? "n/a"}`,
    ],
    [
      "server heap after GC before / after (MB)",
      (r) =>
        `${mb(r.before.heapUsed)} / ${
          r.after === null ? "n/a" : mb(r.after.heapUsed)
        }`,
    ],
    [
      "server RSS before / after (MB)",
      (r) =>
        `${mb(r.before.rss)} / ${r.after === null ? "n/a" : mb(r.after.rss)}`,
    ],
  ];
  const lines = [
    `| | ${reports.map((r) => r.label).join(" | ")} |`,
    `| --- | ${reports.map(() => "---:").join(" | ")} |`,
  ];
  for (const [label, cell] of rows) {
    lines.push(`| ${label} | ${reports.map(cell).join(" | ")} |`);
  }
  return lines.join("\n");
}

function hostileCell(r: TargetReport, kind: HostileKind): string {
  const h = r.clients?.hostile[kind];
  if (h === undefined) return "n/a";
  if (kind === "burst") {
    return `${n(h.connections)} in ${h.runs} (answered ${h.answered}/${
      h.answered + h.unanswered
    })`;
  }
  if (kind === "neverread" || kind === "slowloris" || kind === "silent") {
    return `${n(h.connections)} (${h.cut}/${h.capped})`;
  }
  return n(h.connections);
}

function endings(r: TargetReport): string {
  if (r.target !== "echo" || r.after === null) return "n/a";
  const parts = Object.entries(r.after.endings).map(([cause, count]) =>
    `${cause} ${n(count - (r.before.endings[cause] ?? 0))}`
  );
  return parts.join(", ");
}

function delta(r: TargetReport, key: keyof StatsReply["stats"]): string {
  if (r.after === null) return "n/a";
  return n(r.after.stats[key] - r.before.stats[key]);
}

async function main(): Promise<void> {
  const opts = parseOptions(Deno.args);
  const onInterrupt = () => {
    for (const child of children) child.kill("SIGTERM");
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", onInterrupt);
  const machine = await machineInfo({
    somaxconn: await commandOutput(
      "cat",
      ["/proc/sys/net/core/somaxconn"],
      "unknown",
    ),
  });
  const startedAt = machine.date;
  const began = performance.now();
  console.error(
    `soak: ${
      runSpecs(opts).map((s) => s.label).join(" then ")
    } for ${opts.seconds} s each, seed ${opts.seed}; ` +
      `pool ${POOL} (policy "wait"), ${WELL_BEHAVED} well-behaved clients, ` +
      `at most ${HOSTILE_MAX} hostile ones, bursts of ${BURST_SIZE}` +
      (opts.flood > 0
        ? `, a pool flood of ${opts.flood} from ${FLOOD_ADDRESS}`
        : ""),
  );
  const reports: TargetReport[] = [];
  const failedRuns: { target: string; error: string }[] = [];
  try {
    for (const spec of runSpecs(opts)) {
      try {
        reports.push(await runTarget(spec, opts));
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        console.error(`${spec.label}: the run failed: ${message}`);
        failedRuns.push({ target: spec.label, error: message });
      }
    }
  } finally {
    await Promise.all([...children].map((c) => c.stop()));
    Deno.removeSignalListener("SIGINT", onInterrupt);
  }

  const checks = reports.flatMap(checksOf);
  for (const f of failedRuns) {
    checks.push({
      target: f.target,
      name: "the run completed",
      ok: false,
      detail: f.error,
    });
  }
  const passed = checks.every((c) => c.ok);
  const totalSeconds = (performance.now() - began) / 1000;
  const lines = [
    ...versionLines(machine),
    "",
    `Soak, seed ${opts.seed}: pool ${POOL}, policy "wait"; ${WELL_BEHAVED} well-behaved clients ` +
    `(${
      CLIENT_TIMEOUT_MS / 1000
    } s timeouts), at most ${HOSTILE_MAX} hostile ones, ` +
    `bursts of ${BURST_SIZE}` +
    (opts.flood > 0
      ? `, a pool flood of ${opts.flood} slow heads from ${FLOOD_ADDRESS} (the rest from 127.0.0.1)`
      : "") +
    `; ${totalSeconds.toFixed(0)} s in all.`,
    "",
  ];
  if (reports.length > 0) lines.push(table(reports), "");
  for (const c of checks) {
    lines.push(`${c.ok ? "ok  " : "FAIL"} ${c.target}: ${c.name}: ${c.detail}`);
  }
  lines.push("", passed ? "soak passed" : "soak FAILED");
  console.log(lines.join("\n"));
  for (const r of reports) {
    const samples = r.clients?.wellBehaved.failureSamples ?? [];
    if (samples.length > 0) {
      console.log(
        `\n${r.label}: first well-behaved failures:\n  ${samples.join("\n  ")}`,
      );
    }
    const hostile = r.clients?.hostileErrorSamples ?? [];
    if (hostile.length > 0) {
      console.log(
        `\n${r.label}: first unexpected hostile errors:\n  ${
          hostile.join("\n  ")
        }`,
      );
    }
  }

  await saveResults({
    "soak.json": toJson({
      machine: { ...machine, loadavgAtEnd: await loadavg() },
      config: {
        seconds: opts.seconds,
        targets: opts.targets,
        runs: runSpecs(opts).map((s) => s.label),
        flood: opts.flood,
        seed: opts.seed,
        pool: POOL,
        policy: "wait",
        wellBehaved: WELL_BEHAVED,
        hostileMax: HOSTILE_MAX,
        burstSize: BURST_SIZE,
        clientTimeoutMs: CLIENT_TIMEOUT_MS,
        hostileCapMs: HOSTILE_CAP_MS,
        echoLimits: ECHO_LIMITS,
        httpLimits: HTTP_LIMITS,
      },
      startedAt,
      finishedAt: new Date().toISOString(),
      passed,
      checks,
      targets: Object.fromEntries(reports.map((r) => [r.label, r])),
      failedRuns,
    }),
  });
  if (!passed) Deno.exitCode = 1;
}

if (import.meta.main) {
  await main();
}
