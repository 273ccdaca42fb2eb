/**
 * What the benchmarks share, in one module: the command-line parser
 * (`args.ts`), CPU time counted one way (`cpu.ts`), pinning with `taskset`
 * (`pin.ts`), the version lines every report starts with (`machine.ts`),
 * child processes and load runs (`process.ts`), one measurement of a server
 * and the simultaneous pair (`measure.ts`), the HTTP load generator
 * (`http_load.ts`), and figures and results (`report.ts`).
 *
 * ```ts ignore
 * import { parseArgs, ROUNDS, SECONDS } from "../_common/mod.ts";
 * const opts = parseArgs(Deno.args, { rounds: ROUNDS, seconds: SECONDS }, {
 *   rounds: 5,
 *   seconds: 3,
 * });
 * ```
 *
 * @module
 */

export * from "./args.ts";
export * from "./cpu.ts";
export * from "./http_load.ts";
export * from "./machine.ts";
export * from "./measure.ts";
export * from "./pin.ts";
export * from "./process.ts";
export * from "./report.ts";
export * from "./server.ts";
