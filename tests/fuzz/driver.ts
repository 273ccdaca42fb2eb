// Copyright 2026 the @corothread/evthread authors. MIT license.
// Running cases against a server: one at a time or in lanes, counted in a
// run's statistics, each failure described with the command that runs it
// again.

import { type FuzzCase, specName } from "./cases.ts";
import { type CaseResult, judge } from "./oracle.ts";
import { type FuzzServer, SAFETY_NET_MS } from "./server.ts";
import { bump, caseSeed, escape, hexSeed, Rng } from "./util.ts";
import { sendBytes } from "./wire.ts";

/** Sends one case to `target` and judges what came back. */
export async function runCase(
  target: FuzzServer,
  c: FuzzCase,
  safetyMs: number = SAFETY_NET_MS,
): Promise<CaseResult> {
  const pauses = c.pauses
    ? new Rng(caseSeed(c.seed, c.index, 0x9a05e))
    : undefined;
  const exchange = await sendBytes(target.port, c.text, {
    pieces: c.pieces,
    pauses,
    holdOpen: c.holdOpen,
    safetyMs,
  });
  const result = judge(target, c, exchange);
  // The ids of this case are no longer needed.
  for (let i = 0; i <= 3; i++) target.seen.delete(`${c.key}.${i}`);
  return result;
}

/** Counts of a run, the failures in full, and the slowest case. */
export class FuzzStats {
  cases = 0;
  readonly byOutcome: Map<string, number> = new Map();
  readonly byStatus: Map<string, number> = new Map();
  readonly byLabel: Map<string, number> = new Map();
  /** Invalid cases by mutation class. */
  readonly byClass: Map<string, number> = new Map();
  /** Failures by cause (see {@linkcode CaseResult.cause}). */
  readonly causes: Map<string, number> = new Map();
  readonly failures: CaseResult[] = [];
  slowest: CaseResult | undefined;

  /** Counts one result. */
  add(r: CaseResult): void {
    this.cases++;
    bump(this.byOutcome, r.outcome);
    if (r.statuses.length === 0) bump(this.byStatus, `none (${r.end})`);
    for (const s of r.statuses) bump(this.byStatus, String(s));
    bump(this.byLabel, r.fuzzCase.spec.kind);
    const m = r.fuzzCase.mutation;
    if (m !== undefined) bump(this.byClass, m.id);
    if (r.failed) {
      this.failures.push(r);
      bump(this.causes, r.cause);
    }
    if (this.slowest === undefined || r.ms > this.slowest.ms) this.slowest = r;
  }

  /** The counts, a few lines of text. */
  summary(): string {
    const list = (m: Map<string, number>) =>
      [...m].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k}: ${v}`).join(
        ", ",
      );
    const slow = this.slowest;
    return [
      `cases: ${this.cases} (${list(this.byLabel)})`,
      `by outcome: ${list(this.byOutcome)}`,
      `by status: ${list(this.byStatus)}`,
      slow === undefined
        ? "slowest: -"
        : `slowest: ${Math.round(slow.ms)} ms, case ${slow.fuzzCase.index} (${
          specName(slow.fuzzCase.spec)
        }, ${slow.fuzzCase.label}${
          slow.fuzzCase.holdOpen ? ", held open" : ""
        }) ended by ${slow.end}`,
      `invalid cases by class: ${list(this.byClass)}`,
      `failures: ${this.failures.length}${
        this.causes.size > 0 ? ` (${list(this.causes)})` : ""
      }`,
    ].join("\n");
  }
}

/** A failure, with what to run to see it again. */
export function describeFailure(r: CaseResult): string {
  const c = r.fuzzCase;
  return [
    `case ${c.index} (${specName(c.spec)}${
      c.label === specName(c.spec) || c.label === c.spec.kind
        ? ""
        : `, ${c.label}`
    }) seed ${hexSeed(c.seed)}: ${r.outcome}`,
    `  ${r.detail.split("\n").join("\n  ")}`,
    `  got [${r.statuses.join(", ")}] then ${r.end} after ${
      Math.round(r.ms)
    } ms`,
    `  sent (${c.text.length} bytes${c.holdOpen ? ", held open" : ""}): ${
      escape(c.text, 1500)
    }`,
    `  received: ${escape(r.received, 600)}`,
    `  again: deno task fuzz:http --seed ${
      hexSeed(c.seed)
    } --only ${c.index} --spec ${specName(c.spec)}`,
  ].join("\n");
}

/**
 * Runs `count` cases made by `make(i)` against `target`, `concurrency` at
 * a time, and counts them in `stats`.
 */
export async function runCases(
  target: FuzzServer,
  count: number,
  make: (i: number) => FuzzCase,
  options: {
    concurrency?: number;
    stats?: FuzzStats;
    onResult?: (r: CaseResult, done: number) => void;
  } = {},
): Promise<FuzzStats> {
  const stats = options.stats ?? new FuzzStats();
  let next = 0;
  let done = 0;
  const lane = async () => {
    while (next < count) {
      const c = make(next++);
      const r = await runCase(target, c);
      stats.add(r);
      options.onResult?.(r, ++done);
    }
  };
  const lanes: Promise<void>[] = [];
  for (let i = 0; i < Math.min(options.concurrency ?? 8, count); i++) {
    lanes.push(lane());
  }
  await Promise.all(lanes);
  return stats;
}
