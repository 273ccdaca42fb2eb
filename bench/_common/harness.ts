/**
 * What the load benchmarks (`echo/echo.ts`, `http/http.ts`) share: option parsing,
 * server subprocesses (spawn, read the `listening <port>` line, stop with
 * SIGTERM then SIGKILL, clean up on SIGINT), the load client command, the
 * machine description, medians and ratios, and saving results.
 *
 * @module
 */

const STARTUP_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 5_000;

/** Aborted on SIGINT: kills the load client that is running. */
export const interrupted: AbortController = new AbortController();

/** `bench/`, the directory above this one. */
const BENCH_DIR = new URL("../", import.meta.url);

/** The path of a file relative to `bench/` (`./echo/echo.ts`). */
export function scriptPath(relative: string): string {
  return decodeURIComponent(new URL(relative, BENCH_DIR).pathname);
}

/** `deno run` arguments for a script in `bench/` that needs only the net. */
export function denoRun(script: string, ...args: string[]): string[] {
  return ["run", "--no-prompt", "--allow-net", scriptPath(script), ...args];
}

/** Options every load benchmark takes. */
export interface BenchOptions<N extends string> {
  rounds: number;
  seconds: number;
  warmup: number;
  servers: N[];
}

/** `a, b or c`. */
function oneOf(items: readonly string[]): string {
  return items.length < 2
    ? items.join("")
    : `${items.slice(0, -1).join(", ")} or ${items.at(-1)}`;
}

/**
 * Parses `--flag value` / `--flag=value` options: `--rounds`, `--seconds`,
 * `--warmup` (non-negative numbers; rounds a positive integer), `--servers`
 * (a comma-separated list of `all`), and the flags of `extra`, each of which
 * checks its value and sets it on the options. Starts from `defaults`.
 */
export function parseBenchOptions<N extends string, O extends BenchOptions<N>>(
  args: string[],
  defaults: O,
  all: readonly N[],
  extra: Record<string, (raw: string, opts: O) => void> = {},
): O {
  const opts = { ...defaults, servers: [...defaults.servers] };
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
        if (!(all as readonly string[]).includes(name)) {
          throw new TypeError(
            `'--servers' must list ${oneOf(all)}: received '${name}'`,
          );
        }
      }
      if (names.length === 0) {
        throw new TypeError("'--servers' must name at least one server");
      }
      opts.servers = names as N[];
      continue;
    }
    const handler = Object.hasOwn(extra, flag) ? extra[flag] : undefined;
    if (handler !== undefined) {
      handler(raw, opts);
      continue;
    }
    if (flag !== "--rounds" && flag !== "--seconds" && flag !== "--warmup") {
      const flags = [
        "--rounds",
        "--seconds",
        "--warmup",
        ...Object.keys(extra),
        "--servers",
      ];
      throw new TypeError(`Expected ${oneOf(flags)}: received '${arg}'`);
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
  return opts;
}

/**
 * Trimmed stdout of a short command, or `fallback` when it cannot run, fails
 * or prints nothing.
 */
export async function commandOutput(
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
    const text = new TextDecoder().decode(stdout).trim();
    return success && text !== "" ? text : fallback;
  } catch {
    return fallback;
  }
}

/**
 * `Deno.osRelease()` and `Deno.loadavg()` need `--allow-sys`, and Deno 2.9.6
 * reads /proc files only under `--allow-all`; the benches are run with
 * `--allow-run`, so fall back to `uname` and `cat`.
 */
async function osRelease(): Promise<string> {
  try {
    return Deno.osRelease();
  } catch {
    return await commandOutput("uname", ["-r"], "unknown");
  }
}

/** The 1, 5 and 15 minute load averages, as `0.52 0.58 0.59`. */
export async function loadavg(): Promise<string> {
  try {
    return Deno.loadavg().map((n) => n.toFixed(2)).join(" ");
  } catch {
    const text = await commandOutput("cat", ["/proc/loadavg"], "unknown");
    return text.split(" ").slice(0, 3).join(" ");
  }
}

/** The machine a benchmark ran on. */
export interface MachineInfo {
  os: string;
  arch: string;
  osRelease: string;
  cpuModel: string;
  deno: string;
  v8: string;
  loadavgAtStart: string;
}

/** Describes the machine; `extra` fields follow `cpuModel`. */
export async function machineInfo<T extends Record<string, unknown>>(
  extra: T,
): Promise<MachineInfo & T> {
  const cpuinfo = await commandOutput("cat", ["/proc/cpuinfo"], "");
  const cpuModel = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? "unknown";
  return {
    os: Deno.build.os,
    arch: Deno.build.arch,
    osRelease: await osRelease(),
    cpuModel,
    ...extra,
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    loadavgAtStart: await loadavg(),
  };
}

/** `cmd args` as a command, under `taskset -c core` when `core` is set. */
export function pinned(
  core: number | undefined,
  cmd: string,
  args: string[],
): [string, string[]] {
  return core === undefined
    ? [cmd, args]
    : ["taskset", ["-c", String(core), cmd, ...args]];
}

/** A server subprocess. */
export class ServerProcess<N extends string = string> {
  readonly name: N;
  readonly port: number;
  /** The server's process id (deno's own: `taskset` execs it). */
  readonly pid: number;
  readonly #child: Deno.ChildProcess;
  readonly #drained: Promise<void>;
  #exited = false;
  #stopped: Promise<Deno.CommandStatus> | undefined;

  constructor(
    name: N,
    port: number,
    child: Deno.ChildProcess,
    drained: Promise<void>,
  ) {
    this.name = name;
    this.port = port;
    this.pid = child.pid;
    this.#child = child;
    this.#drained = drained;
    child.status.then(() => this.#exited = true);
  }

  get exited(): boolean {
    return this.#exited;
  }

  /**
   * Spawns `bench/<file> 0` (on `core` when set) and waits for its first
   * line: `listening <port>`.
   */
  static async start<N extends string>(
    name: N,
    file: string,
    core: number | undefined,
    register: (child: Deno.ChildProcess) => void,
  ): Promise<ServerProcess<N>> {
    const [cmd, args] = pinned(core, Deno.execPath(), denoRun(file, "0"));
    const child = new Deno.Command(cmd, {
      args,
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

/**
 * Starts one server per name (`files[name]`, on `core` when set), runs
 * `body` with them and stops them all, whatever happens. On SIGINT it
 * aborts `interrupted`, sends SIGTERM to every server and exits with 130.
 */
export async function withServers<N extends string>(
  names: readonly N[],
  files: Record<N, string>,
  core: number | undefined,
  body: (servers: ServerProcess<N>[]) => Promise<void>,
): Promise<void> {
  const children: Deno.ChildProcess[] = [];
  const servers: ServerProcess<N>[] = [];
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
    for (const name of names) {
      servers.push(
        await ServerProcess.start(
          name,
          files[name],
          core,
          (child) => children.push(child),
        ),
      );
    }
    console.error(servers.map((s) => `${s.name} on port ${s.port}`).join(", "));
    await body(servers);
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
}

/** `items` rotated left by `round`: the server order of that round. */
export function rotated<T>(items: readonly T[], round: number): T[] {
  return items.map((_, i) => items[(i + round) % items.length]!);
}

/**
 * A load client command with piped output. The clients stop by themselves;
 * this adds the backstop (`backstopSeconds`) and the abort on SIGINT.
 */
export function loadCommand(
  cmd: string,
  args: string[],
  backstopSeconds: number,
): Deno.Command {
  return new Deno.Command(cmd, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.any([
      AbortSignal.timeout(backstopSeconds * 1000),
      interrupted.signal,
    ]),
  });
}

/** The median, or null for no values. */
export function median(values: number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? sorted[mid]!
    : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** `a / b`, or null when either is missing or `b` is 0. */
export function ratio(a: number | null, b: number | null): number | null {
  return a === null || b === null || b === 0 ? null : a / b;
}

/** A ratio as `1.23x`, or `n/a`. */
export function formatRatio(value: number | null): string {
  return value === null ? "n/a" : `${value.toFixed(2)}x`;
}

/** Says on stdout how many measurements failed, if any did. */
export function noteFailures(failed: number, total: number): void {
  if (failed > 0) {
    console.log(`\n${failed} of ${total} measurements failed (see stderr).`);
  }
}

/** Whether this process may write `path`. */
export async function canWrite(path: string): Promise<boolean> {
  const status = await Deno.permissions.query({ name: "write", path });
  return status.state === "granted";
}

/**
 * Writes `files` (name to text) into `bench/results` when allowed, and says
 * on stderr what it did.
 */
export async function saveResults(
  files: Record<string, string>,
): Promise<void> {
  const dir = scriptPath("./results");
  const paths = Object.keys(files).map((name) => `${dir}/${name}`);
  if (await canWrite(dir)) {
    await Deno.mkdir(dir, { recursive: true });
    for (const [name, text] of Object.entries(files)) {
      await Deno.writeTextFile(`${dir}/${name}`, text);
    }
    console.error(`results written to ${paths.join(" and ")}`);
  } else {
    console.error(
      `results not written: add --allow-write=bench/results to save ${
        paths[0]
      }`,
    );
  }
}

/** A report as pretty JSON with a final newline. */
export function toJson(report: unknown): string {
  return JSON.stringify(report, null, 2) + "\n";
}

/** Requests per second for a table: rounded, with thousands separators. */
export function formatRps(value: number | null): string {
  return value === null ? "n/a" : Math.round(value).toLocaleString("en-US");
}

/** A latency in milliseconds for a table: µs below 1 ms. */
export function formatMs(value: number | null): string {
  if (value === null) return "n/a";
  return value < 1
    ? `${Math.round(value * 1000)} µs`
    : `${value.toFixed(2)} ms`;
}
