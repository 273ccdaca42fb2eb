/**
 * What every report starts with: the version lines (Deno, the git revision
 * measured, the date, the CPU), and the machine description saved in the
 * JSON results.
 *
 * @module
 */

/** The repository's root: two directories above this file. */
const REPO_DIR = new URL("../../", import.meta.url);

/**
 * Trimmed stdout of a short command, or `fallback` when it cannot run, fails
 * or prints nothing.
 */
export async function commandOutput(
  cmd: string,
  args: string[],
  fallback: string,
  cwd?: string | URL,
): Promise<string> {
  try {
    const { success, stdout } = await new Deno.Command(cmd, {
      args,
      ...(cwd === undefined ? {} : { cwd }),
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

/** The git revision of a checkout: `0b77201` or `0b77201+` (uncommitted). */
export async function gitRevision(dir: string | URL = REPO_DIR): Promise<
  string
> {
  const rev = await commandOutput(
    "git",
    ["rev-parse", "--short", "HEAD"],
    "",
    dir,
  );
  if (rev === "") return "unknown";
  const changes = await commandOutput(
    "git",
    ["status", "--porcelain", "--untracked-files=no"],
    "",
    dir,
  );
  return changes === "" ? rev : `${rev}+`;
}

/** The machine a benchmark ran on, and the code it measured. */
export interface MachineInfo {
  os: string;
  arch: string;
  osRelease: string;
  cpuModel: string;
  cores: number;
  deno: string;
  v8: string;
  typescript: string;
  /** The git revision of this checkout (`+`: with uncommitted changes). */
  revision: string;
  /** When the benchmark started (ISO 8601, UTC). */
  date: string;
  loadavgAtStart: string;
}

/** Describes the machine; `extra` fields are added to it. */
export async function machineInfo<T extends Record<string, unknown>>(
  extra: T = {} as T,
): Promise<MachineInfo & T> {
  const cpuinfo = await commandOutput("cat", ["/proc/cpuinfo"], "");
  const cpuModel = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? "unknown";
  return {
    os: Deno.build.os,
    arch: Deno.build.arch,
    osRelease: await osRelease(),
    cpuModel,
    cores: navigator.hardwareConcurrency,
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    typescript: Deno.version.typescript,
    revision: await gitRevision(),
    date: new Date().toISOString(),
    loadavgAtStart: await loadavg(),
    ...extra,
  };
}

/**
 * The lines every report starts with:
 * ```text
 * deno 2.9.6 (v8 15.0.245.2-rusty, typescript 6.0.3)
 * git 0b77201+ (uncommitted changes)
 * date 2026-12-02T05:40:12.345Z
 * cpu Intel(R) Xeon(R) Processor, 2 cores; Linux 6.18.44 x86_64; load 3.80 1.77 0.72
 * ```
 */
export function versionLines(machine: MachineInfo): string[] {
  const dirty = machine.revision.endsWith("+");
  return [
    `deno ${machine.deno} (v8 ${machine.v8}, typescript ${machine.typescript})`,
    `git ${machine.revision}${dirty ? " (uncommitted changes)" : ""}`,
    `date ${machine.date}`,
    `cpu ${machine.cpuModel}, ${machine.cores} cores; ${
      machine.os === "linux" ? "Linux" : machine.os
    } ${machine.osRelease} ${machine.arch}; load ${machine.loadavgAtStart}`,
  ];
}
