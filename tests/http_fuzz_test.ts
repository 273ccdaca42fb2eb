// Copyright 2026 the @corothread/evthread authors. MIT license.
// A seeded fuzz of the HTTP request parser and chunked decoder, small enough
// for every `deno test` (`deno task fuzz:http`, tests/fuzz/run.ts, runs a
// large one with the same engine, tests/fuzz/). FUZZ_SEED and FUZZ_CASES
// override the seed and the number of socket cases; the seed is always
// printed.

import { assert, fail } from "@std/assert";
import {
  type CaseSpec,
  causesOf,
  describeFailure,
  envVar,
  fuzzBodies,
  type FuzzCase,
  fuzzChunkLines,
  fuzzHeads,
  FuzzServer,
  type FuzzStats,
  hexSeed,
  INVALID,
  makeCase,
  parseSeed,
  type PureReport,
  runCases,
} from "./fuzz/mod.ts";

const SEED = parseSeed(envVar("FUZZ_SEED")) ?? 0x5eed_2026;
const CASES = Math.max(
  1,
  Number.parseInt(envVar("FUZZ_CASES") ?? "", 10) || 300,
);
/** Pure-function cases: 5000 for the default 300 socket cases. */
const PURE = Math.round(CASES * 50 / 3);
console.log(
  `http fuzz: seed ${
    hexSeed(SEED)
  }, ${CASES} socket cases, ${PURE} pure cases (FUZZ_SEED / FUZZ_CASES override)`,
);

// How the socket cases are shared out (about CASES in all): 20% valid,
// 30% random mutations, 46% known-invalid (the same number per class), 4%
// held open.
const VALID = Math.round(CASES * 0.2);
const RANDOM = Math.round(CASES * 0.3);
const PER_CLASS = Math.max(1, Math.round(CASES * 0.46 / INVALID.length));
const HELD = Math.max(4, Math.round(CASES * 0.04));

/**
 * Fails with every failure described, the run's seed and the count of
 * failures by cause first (`known:ID` for a catalogue class with a known
 * server defect).
 */
function assertNoFailures(
  what: string,
  failures: string[],
  causes: string,
): void {
  if (failures.length === 0) return;
  const shown = failures.slice(0, 8).join("\n\n");
  const more = failures.length > 8
    ? `\n\n... and ${failures.length - 8} more`
    : "";
  fail(
    `${what}: ${failures.length} failure(s) [${causes}] with FUZZ_SEED=${
      hexSeed(SEED)
    }\n\n${shown}${more}`,
  );
}

/**
 * Runs `count` cases of `spec` on a fresh server, then the end-of-run
 * checks; fails with every failure.
 */
async function fuzzServer(
  what: string,
  count: number,
  spec: (i: number) => CaseSpec,
  concurrency = 8,
): Promise<FuzzStats> {
  await using target = new FuzzServer();
  const stats = await runCases(
    target,
    count,
    (i): FuzzCase => makeCase(SEED, i, spec(i)),
    { concurrency },
  );
  const failures = stats.failures.map(describeFailure);
  const end = await target.finish();
  failures.push(...end);
  const causes = [...stats.causes].map(([k, v]) => `${v} ${k}`);
  if (end.length > 0) causes.push(`${end.length} at the end of the run`);
  assertNoFailures(what, failures, causes.join(", "));
  return stats;
}

function assertPure(what: string, report: PureReport): void {
  assertNoFailures(what, report.failures, causesOf(report));
  // The generators reach both sides of the function.
  assert(report.accepted > 0, `${what}: nothing was accepted`);
  assert(report.rejected > 0, `${what}: nothing was rejected`);
}

Deno.test("serve() answers every fuzzed valid request with 200 and the digest of its body", async () => {
  const stats = await fuzzServer(
    "valid requests",
    VALID,
    () => ({ kind: "valid" }),
  );
  assert(stats.byStatus.get("200")! > 0);
});

Deno.test("serve() answers random mutations well-formed or closes, within its timeouts", async () => {
  await fuzzServer("random mutations", RANDOM, () => ({ kind: "random" }));
});

Deno.test("serve() closes connections left open within its timeouts", async () => {
  // Cases whose write side stays open: only the server's timeouts end
  // them, so they all run at once.
  await fuzzServer(
    "connections held open",
    HELD,
    (i) =>
      i % 2 === 0
        ? { kind: "random", holdOpen: true }
        : i % 4 === 1
        ? { kind: "valid", holdOpen: true }
        : {
          kind: "invalid",
          mutation: INVALID[i % INVALID.length]!.id,
          holdOpen: true,
        },
    HELD,
  );
});

Deno.test("serve() never answers 2xx to a known-invalid request", async (t) => {
  for (const m of INVALID) {
    const name = m.defect === undefined
      ? `${m.id}: ${m.title}`
      : `${m.id}: ${m.title} [KNOWN SERVER DEFECT, see the failure]`;
    await t.step(name, async () => {
      await fuzzServer(
        `${m.id} (${m.title})`,
        PER_CLASS,
        () => ({ kind: "invalid", mutation: m.id }),
      );
    });
  }
});

Deno.test("parseHead() returns or throws HttpError for fuzzed heads, and rejects known-invalid ones", () => {
  assertPure("parseHead", fuzzHeads(SEED, Math.round(PURE * 0.45)));
});

Deno.test("parseChunkSize() and checkFieldLine() return or throw HttpError for fuzzed lines", () => {
  assertPure("chunk lines", fuzzChunkLines(SEED, Math.round(PURE * 0.35)));
});

Deno.test("BodyReader reads fuzzed bodies or fails with HttpError or UnexpectedEof", async () => {
  assertPure("BodyReader", await fuzzBodies(SEED, Math.round(PURE * 0.2)));
});
