/**
 * Child processes of the benchmarks: server subprocesses (spawn, read the
 * `listening <port>` line, stop with SIGTERM then SIGKILL, clean up on
 * SIGINT), load client commands with a backstop, and the hard stop of the
 * load clients themselves.
 *
 * @module
 */

import {
  clockTicks,
  cpuSnapshot,
  type CpuUsage,
  cpuUsage,
  parseProcessStat,
} from "./cpu.ts";
import { pinned } from "./pin.ts";

const STARTUP_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 5_000;

/** Aborted on SIGINT: kills the load client that is running. */
export const interrupted: AbortController = new AbortController();

/** A path for a command line: file URLs become paths. */
export function pathOf(file: string | URL): string {
  return file instanceof URL ? decodeURIComponent(file.pathname) : file;
}

/**
 * `deno run` arguments for a script that needs only the net (plus
 * `extra` flags before the script).
 */
export function denoRun(
  script: string | URL,
  args: readonly string[] = [],
  extra: readonly string[] = [],
): string[] {
  return [
    "run",
    "--no-prompt",
    "--allow-net",
    ...extra,
    pathOf(script),
    ...args,
  ];
}

/** A server subprocess that printed `listening <port>` first. */
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
   * Spawns `deno` with `args` (on `core` when set) and waits for its first
   * line: `listening <port>`. `register` gets the child at once, so that a
   * caller can kill it on SIGINT.
   */
  static async start<N extends string>(
    name: N,
    args: readonly string[],
    core: number | undefined,
    register: (child: Deno.ChildProcess) => void,
  ): Promise<ServerProcess<N>> {
    const [cmd, cmdArgs] = pinned(core, Deno.execPath(), args);
    const child = new Deno.Command(cmd, {
      args: cmdArgs,
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

/** SIGTERM, then SIGKILL when it has not exited within 5 s. */
export async function stopChild(
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
 * Starts one server per name (`deno` with `args[name]`, on `core` when
 * set), runs `body` with them and stops them all, whatever happens. On
 * SIGINT it aborts `interrupted`, sends SIGTERM to every server and exits
 * with 130.
 */
export async function withServers<N extends string>(
  names: readonly N[],
  args: (name: N) => readonly string[],
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
          args(name),
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

/**
 * Runs `run` and prints its result as one JSON line on stdout. Whatever
 * happens, the process exits with 3 after `limitSeconds`, saying `message`
 * on stderr.
 */
export async function printWithHardStop(
  limitSeconds: number,
  message: string,
  run: () => Promise<unknown>,
): Promise<void> {
  const hardStop = setTimeout(() => {
    console.error(message);
    Deno.exit(3);
  }, limitSeconds * 1000);
  try {
    console.log(JSON.stringify(await run()));
  } finally {
    clearTimeout(hardStop);
  }
}

/** What {@linkcode runLoad} gives. */
export interface LoadRun {
  /** The load client's exit code. */
  code: number;
  /** Its stdout, trimmed. */
  stdout: string;
  /** Its stderr, trimmed. */
  stderr: string;
  /** CPU time between just before and just after it (null: unknown). */
  cpu: CpuUsage | null;
  /** CPU seconds of the load client itself (null: unknown). */
  loadCpu: number | null;
}

/**
 * Runs a load client to its end (on `core` when set) and reads the CPU
 * times of `watch` (server process ids) and of the machine just before and
 * just after it. The client runs under a shell that prints its own
 * `/proc/PID/stat` line on stderr once the client has exited: that line's
 * children time is the client's own CPU time (`loadCpu`), and it is taken
 * out of `stderr`. Throws when the client cannot be spawned or is aborted
 * (backstop or SIGINT).
 */
export async function runLoad(
  cmd: string,
  args: readonly string[],
  options: {
    core?: number | undefined;
    backstopSeconds: number;
    watch?: readonly number[];
  },
): Promise<LoadRun> {
  const [shell, shellArgs] = pinned(options.core, "sh", [
    "-c",
    `"$@"; c=$?; cat /proc/$$/stat >&2; exit $c`,
    "sh",
    cmd,
    ...args,
  ]);
  const command = loadCommand(shell, shellArgs, options.backstopSeconds);
  const watch = options.watch ?? [];
  const before = await cpuSnapshot(watch);
  const output = await command.output();
  const after = await cpuSnapshot(watch);
  let stderr = new TextDecoder().decode(output.stderr);
  const statLine = /^\d+ \(sh\) .*$/m.exec(stderr);
  stderr = stderr.replace(/^\d+ \(sh\) .*$/m, "").trim();
  const shellTimes = statLine === null
    ? null
    : parseProcessStat(statLine[0], await clockTicks());
  return {
    code: output.code,
    stdout: new TextDecoder().decode(output.stdout).trim(),
    stderr,
    cpu: before === null || after === null ? null : cpuUsage(before, after),
    loadCpu: shellTimes?.children ?? null,
  };
}
