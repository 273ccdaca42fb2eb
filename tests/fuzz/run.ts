/**
 * The large seeded fuzz of the HTTP request parser and chunked decoder
 * (tests/http_fuzz_test.ts runs a small one with the same engine,
 * tests/fuzz/mod.ts).
 *
 * Usage:
 * ```sh
 * deno task fuzz:http [--cases 20000] [--seed N] [--pure N]
 *   [--concurrency 8] [--hold-open 0.01]
 * deno task fuzz:http --seed N --only INDEX [--spec SPEC]
 * ```
 *
 * `--cases` socket cases go to one `serve()` on loopback, `--concurrency`
 * at a time: 20% valid pipelines (exact answers checked), 45% random
 * mutations, 35% known-invalid mutations spread over the catalogue; a
 * `--hold-open` fraction of them keep their write side open, so that only
 * the server's timeouts end them (those run in lanes of their own). Then
 * `--pure` cases (default 5 per socket case) drive parseHead(),
 * parseChunkSize(), checkFieldLine() and BodyReader without sockets. The
 * seed comes from `--seed`, else `FUZZ_SEED`, else the clock; the case
 * count from `--cases`, else `FUZZ_CASES`. Progress and a summary go to
 * stdout; the exit code is 1 on any failure.
 *
 * `--only INDEX` runs one case of the run (its spec as the run would pick
 * it, or `--spec valid|random|invalid:ID[+hold]`) and prints its bytes and
 * what came back: the `again:` line of every failure says how.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  type CaseSpec,
  causesOf,
  describeFailure,
  envVar,
  escape,
  fuzzBodies,
  fuzzChunkLines,
  fuzzHeads,
  FuzzServer,
  FuzzStats,
  hexSeed,
  makeCase,
  mixedSpec,
  parseSeed,
  parseSpec,
  type PureReport,
  runCase,
  runCases,
  specName,
} from "./mod.ts";

const option = { type: "string" } as const;
const { values: opts } = parseArgs({
  args: Deno.args,
  options: {
    cases: option,
    seed: option,
    pure: option,
    concurrency: option,
    "hold-open": option,
    only: option,
    spec: option,
  },
});

/**
 * The non-negative number given as `--name`, or `fallback` when it is not
 * given (required when there is no fallback).
 */
function numberOption(
  name: keyof typeof opts,
  fallback?: number,
): number {
  const raw = opts[name];
  if (raw === undefined) {
    if (fallback === undefined) {
      throw new TypeError(`Option '--${name}' is required`);
    }
    return fallback;
  }
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0) {
    throw new RangeError(
      `'--${name}' must be a non-negative number: received ${raw}`,
    );
  }
  return value;
}

const seedText = opts.seed ?? envVar("FUZZ_SEED");
const seed = seedText === undefined
  ? (Date.now() ^ (performance.now() * 1000)) >>> 0
  : parseSeed(seedText);
if (seed === undefined) {
  throw new RangeError(
    `'--seed' must be an integer from 0 to 0xffffffff: received ${seedText}`,
  );
}
const cases = Math.floor(
  numberOption("cases", Number(envVar("FUZZ_CASES") || 20_000)),
);
const pure = Math.floor(numberOption("pure", cases * 5));
const concurrency = Math.max(
  1,
  Math.floor(numberOption("concurrency", 8)),
);
const holdOpen = numberOption("hold-open", 0.01);

const specOf = (i: number): CaseSpec => mixedSpec(seed, i, holdOpen);

if (opts.only !== undefined) {
  const index = Math.floor(numberOption("only"));
  const spec = opts.spec !== undefined ? parseSpec(opts.spec) : specOf(index);
  const c = makeCase(seed, index, spec);
  console.log(
    `seed ${hexSeed(seed)}, case ${index} (${specName(spec)}${
      c.label === specName(spec) ? "" : `, ${c.label}`
    })`,
  );
  console.log(
    `sends ${c.text.length} bytes in writes of [${c.pieces.join(", ")}]${
      c.holdOpen ? ", then holds the connection open" : ", then half-closes"
    }:`,
  );
  console.log(escape(c.text, Infinity));
  const target = new FuzzServer();
  let failed = false;
  try {
    const r = await runCase(target, c);
    console.log(`\nreceived (${r.end} after ${Math.round(r.ms)} ms):`);
    console.log(escape(r.received, Infinity));
    console.log(`\noutcome: ${r.outcome}${r.failed ? " (FAILURE)" : ""}`);
    if (r.failed) console.log(describeFailure(r));
    const end = await target.finish();
    for (const f of end) console.log(f);
    failed = r.failed || end.length > 0;
  } finally {
    await target[Symbol.asyncDispose]();
  }
  Deno.exit(failed ? 1 : 0);
}

console.log(
  `http fuzz: seed ${
    hexSeed(seed)
  }, ${cases} socket cases (${concurrency} at a time, ${
    holdOpen * 100
  }% held open), ${pure} pure cases`,
);
console.log(
  `again: deno task fuzz:http --seed ${hexSeed(seed)} --cases ${cases}`,
);
const started = performance.now();
const seconds = () => ((performance.now() - started) / 1000).toFixed(1);

// Socket cases: the held-open ones (which wait on the server's timeouts)
// in lanes of their own, beside the rest.
const normal: number[] = [];
const held: number[] = [];
for (let i = 0; i < cases; i++) (specOf(i).holdOpen ? held : normal).push(i);
const stats = new FuzzStats();
let lastPrint = performance.now();
let endFailures: string[] = [];
{
  await using target = new FuzzServer();
  const progress = () => {
    const now = performance.now();
    if (now - lastPrint < 2000 && stats.cases < cases) return;
    lastPrint = now;
    console.log(
      `[${
        String(stats.cases).padStart(String(cases).length)
      }/${cases}] ${seconds()} s, ${stats.failures.length} failure(s)`,
    );
  };
  await Promise.all([
    runCases(
      target,
      normal.length,
      (i) => makeCase(seed, normal[i]!, specOf(normal[i]!)),
      {
        concurrency,
        stats,
        onResult: progress,
      },
    ),
    runCases(
      target,
      held.length,
      (i) => makeCase(seed, held[i]!, specOf(held[i]!)),
      {
        concurrency: Math.min(64, Math.max(1, held.length)),
        stats,
        onResult: progress,
      },
    ),
  ]);
  endFailures = await target.finish();
}
const socketSeconds = seconds();

// Pure cases.
const pureStart = performance.now();
const reports: [string, PureReport][] = [
  ["parseHead", fuzzHeads(seed, Math.round(pure * 0.45))],
  [
    "parseChunkSize/checkFieldLine",
    fuzzChunkLines(seed, Math.round(pure * 0.35)),
  ],
  ["BodyReader", await fuzzBodies(seed, Math.round(pure * 0.2))],
];
const pureSeconds = ((performance.now() - pureStart) / 1000).toFixed(1);

// The summary.
const shown = 20;
let failures = 0;
console.log("");
for (const r of stats.failures.slice(0, shown)) {
  console.log(`${describeFailure(r)}\n`);
}
if (stats.failures.length > shown) {
  console.log(
    `... and ${stats.failures.length - shown} more socket failure(s)\n`,
  );
}
failures += stats.failures.length;
for (const f of endFailures) console.log(`end of run: ${f}\n`);
failures += endFailures.length;
for (const [name, rep] of reports) {
  for (const f of rep.failures.slice(0, 5)) console.log(`${f}\n`);
  if (rep.failures.length > 5) {
    console.log(`... and ${rep.failures.length - 5} more ${name} failure(s)\n`);
  }
  failures += rep.failures.length;
}

console.log(`== summary (seed ${hexSeed(seed)})`);
console.log(`socket cases, ${socketSeconds} s:`);
console.log(stats.summary().split("\n").map((l) => `  ${l}`).join("\n"));
console.log(
  `  end of run (plain request, loop tasks, onError, unhandled rejections): ${
    endFailures.length === 0 ? "ok" : `${endFailures.length} failure(s)`
  }`,
);
console.log(`pure cases, ${pureSeconds} s:`);
for (const [name, rep] of reports) {
  console.log(
    `  ${name}: ${rep.cases} cases, ${rep.accepted} accepted, ${rep.rejected} rejected, ${rep.failures.length} failure(s)${
      rep.failures.length > 0 ? ` (${causesOf(rep)})` : ""
    }`,
  );
}
console.log(`total: ${seconds()} s, ${failures} failure(s)`);
Deno.exit(failures > 0 ? 1 : 0);
