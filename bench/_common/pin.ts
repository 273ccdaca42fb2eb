/**
 * Pinning processes to cores with `taskset` (util-linux), with one fallback
 * everywhere: when `taskset` is missing or fails, or the machine has one
 * core, processes run where the scheduler puts them, and the benchmark says
 * so on stderr and in its report ({@linkcode Placement.note}).
 *
 * The layout that /work/shared/notes/measuring.md prescribes for load
 * benchmarks on a 2-core machine: the servers on the last core, the load
 * client on core 0 ({@linkcode placement}).
 *
 * @module
 */

let works: Promise<boolean> | undefined;

/** Whether `taskset -c 0 true` runs here (asked once). */
export function tasksetWorks(): Promise<boolean> {
  works ??= new Deno.Command("taskset", {
    args: ["-c", "0", "true"],
    stdin: "null",
    stdout: "null",
    stderr: "null",
    signal: AbortSignal.timeout(5_000),
  }).output().then((o) => o.success, () => false);
  return works;
}

/** `cmd args` as a command, under `taskset -c core` when `core` is set. */
export function pinned(
  core: number | undefined,
  cmd: string,
  args: readonly string[],
): [string, string[]] {
  return core === undefined
    ? [cmd, [...args]]
    : ["taskset", ["-c", String(core), cmd, ...args]];
}

/** Where the servers and the load client of a benchmark run. */
export interface Placement {
  /** The servers' core, or undefined: not pinned. */
  server: number | undefined;
  /** The load client's core, or undefined: not pinned. */
  load: number | undefined;
  /** How they run, for the report: `servers on core 1, load on core 0`. */
  note: string;
}

/**
 * The servers on the last core and the load client on core 0 (`mode`
 * `"auto"`), or both unpinned (`"off"`, one core, or no working `taskset`:
 * the reason is printed on stderr once and kept in `note`).
 * `sameCore` puts the load client on the servers' core too.
 */
export async function placement(
  mode: "auto" | "off",
  options: { sameCore?: boolean } = {},
): Promise<Placement> {
  const cores = navigator.hardwareConcurrency;
  const off = (why: string): Placement => {
    if (mode !== "off") console.error(`not pinned: ${why}`);
    return { server: undefined, load: undefined, note: `not pinned (${why})` };
  };
  if (mode === "off") return off("--pin off");
  if (!options.sameCore && cores < 2) return off("one core");
  if (!await tasksetWorks()) {
    return off("taskset is missing or fails; install util-linux to pin");
  }
  const server = cores - 1;
  const load = options.sameCore ? server : 0;
  return {
    server,
    load,
    note: load === server
      ? `server and load client both on core ${server}`
      : `servers on core ${server}, load client on core ${load}`,
  };
}
