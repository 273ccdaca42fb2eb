/**
 * CPU time, counted one way in every benchmark: the user + system clock
 * ticks of a process (`utime` + `stime` of `/proc/PID/stat`, all its
 * threads), converted to seconds with the tick rate (`getconf CLK_TCK`),
 * read before and after a measurement. "Cores used" is those seconds over
 * the wall time between the two reads.
 *
 * The machine's (or one core's) busy time, to see what other processes
 * took, is counted the same way from `/proc/stat`: user + nice + system +
 * irq + softirq ticks (idle, iowait and steal are not busy; steal, the time
 * the hypervisor took, is reported apart).
 *
 * Deno 2.9.6 reads /proc files only under `--allow-all`, so the files are
 * read through `cat` (the benchmarks run with `--allow-run`), all of them
 * in one call so that they are read at the same moment.
 *
 * @module
 */

let ticksPerSecond: Promise<number> | undefined;

/** Clock ticks per second (`getconf CLK_TCK`); 100 when it cannot run. */
export function clockTicks(): Promise<number> {
  ticksPerSecond ??= (async () => {
    try {
      const { success, stdout } = await new Deno.Command("getconf", {
        args: ["CLK_TCK"],
        stdin: "null",
        stdout: "piped",
        stderr: "null",
        signal: AbortSignal.timeout(5_000),
      }).output();
      const value = Number(new TextDecoder().decode(stdout).trim());
      return success && Number.isInteger(value) && value > 0 ? value : 100;
    } catch {
      return 100;
    }
  })();
  return ticksPerSecond;
}

/** Times of one process, in seconds, from its `/proc/PID/stat` line. */
export interface ProcessTimes {
  /** `utime + stime`: the process itself, all its threads. */
  self: number;
  /** `cutime + cstime`: its children that have exited and been waited for. */
  children: number;
}

/**
 * The times of a `/proc/PID/stat` line, in seconds, or null when it does
 * not parse.
 */
export function parseProcessStat(
  line: string,
  ticks: number,
): ProcessTimes | null {
  // The command name, in parentheses, may hold spaces and parentheses.
  const close = line.lastIndexOf(")");
  if (close < 0) return null;
  // After "(comm) ": state is field 3; utime 14, stime 15, cutime 16,
  // cstime 17 (proc(5)).
  const fields = line.slice(close + 2).split(" ");
  const [utime, stime, cutime, cstime] = [11, 12, 13, 14].map((i) =>
    Number(fields[i])
  );
  if (![utime, stime, cutime, cstime].every(Number.isFinite)) return null;
  return {
    self: (utime! + stime!) / ticks,
    children: (cutime! + cstime!) / ticks,
  };
}

/** Busy and stolen time of a CPU line of `/proc/stat`, in seconds. */
export interface CpuTimes {
  /** user + nice + system + irq + softirq. */
  busy: number;
  /** steal: taken by the hypervisor. */
  steal: number;
}

/** The times of a `cpu` / `cpuN` line of `/proc/stat` (after the name). */
export function parseCpuLine(rest: string, ticks: number): CpuTimes {
  // user nice system idle iowait irq softirq steal guest guest_nice
  const t = rest.trim().split(/\s+/).map(Number);
  const at = (i: number) => t[i] ?? 0;
  return {
    busy: (at(0) + at(1) + at(2) + at(5) + at(6)) / ticks,
    steal: at(7) / ticks,
  };
}

/** CPU times of some processes and of the machine at one moment. */
export interface CpuSnapshot {
  /** `performance.now()` when the files were read. */
  at: number;
  /** Per process id; a process that is gone is missing. */
  processes: Map<number, ProcessTimes>;
  /** The whole machine (the `cpu` line). */
  machine: CpuTimes;
  /** Each core (`cpu0`, `cpu1`, ...), by number. */
  cores: Map<number, CpuTimes>;
}

/**
 * Reads `/proc/stat` and `/proc/PID/stat` of each of `pids` (through one
 * `cat`); null when `/proc/stat` cannot be read.
 */
export async function cpuSnapshot(
  pids: readonly number[],
): Promise<CpuSnapshot | null> {
  const ticks = await clockTicks();
  let text: string;
  try {
    const { stdout } = await new Deno.Command("cat", {
      args: ["/proc/stat", ...pids.map((pid) => `/proc/${pid}/stat`)],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
      signal: AbortSignal.timeout(5_000),
    }).output();
    // A process that has exited makes cat fail; the others are still read.
    text = new TextDecoder().decode(stdout);
  } catch {
    return null;
  }
  const at = performance.now();
  const machineLine = /^cpu (.*)$/m.exec(text);
  if (machineLine === null) return null;
  const cores = new Map<number, CpuTimes>();
  for (const m of text.matchAll(/^cpu(\d+) (.*)$/gm)) {
    cores.set(Number(m[1]), parseCpuLine(m[2]!, ticks));
  }
  const processes = new Map<number, ProcessTimes>();
  for (const pid of pids) {
    const line = new RegExp(`^${pid} \\(.*$`, "m").exec(text);
    const times = line === null ? null : parseProcessStat(line[0], ticks);
    if (times !== null) processes.set(pid, times);
  }
  return {
    at,
    processes,
    machine: parseCpuLine(machineLine[1]!, ticks),
    cores,
  };
}

/** What happened between two snapshots. */
export interface CpuUsage {
  /** Wall time between the two reads, in seconds. */
  wall: number;
  /** CPU seconds of one process (`utime + stime`), or null if unknown. */
  process(pid: number): number | null;
  /** CPU seconds of the exited children of one process, or null. */
  children(pid: number): number | null;
  /** Busy seconds of the machine (all cores). */
  busy: number;
  /** Stolen seconds of the machine. */
  steal: number;
  /** Busy and stolen seconds of one core, or null if unknown. */
  core(core: number): CpuTimes | null;
}

/** The CPU time spent between `before` and `after`. */
export function cpuUsage(before: CpuSnapshot, after: CpuSnapshot): CpuUsage {
  const delta = (
    pid: number,
    pick: (t: ProcessTimes) => number,
  ): number | null => {
    const a = before.processes.get(pid);
    const b = after.processes.get(pid);
    return a === undefined || b === undefined ? null : pick(b) - pick(a);
  };
  return {
    wall: (after.at - before.at) / 1000,
    process: (pid) => delta(pid, (t) => t.self),
    children: (pid) => delta(pid, (t) => t.children),
    busy: after.machine.busy - before.machine.busy,
    steal: after.machine.steal - before.machine.steal,
    core(core) {
      const a = before.cores.get(core);
      const b = after.cores.get(core);
      return a === undefined || b === undefined
        ? null
        : { busy: b.busy - a.busy, steal: b.steal - a.steal };
    },
  };
}
