// Copyright 2026 the @corothread/evthread authors. MIT license.
// The engine of the HTTP request fuzzer, shared by tests/http_fuzz_test.ts (a
// small seeded run inside `deno test`) and tests/fuzz/run.ts (a large one,
// `deno task fuzz:http`). By concern:
//
// - util.ts: the seeded PRNG, bytes as latin1 text, digests and seeds;
// - requests.ts: a generator of valid HTTP/1.1 requests;
// - mutations.ts: random mutations, and the catalogue of mutations known to
//   make a request invalid;
// - cases.ts: a case's bytes and expected answers from (seed, spec, index);
// - server.ts and wire.ts: the live serve() under test, and the raw-socket
//   client that sends a case and parses what comes back;
// - oracle.ts: what a case's exchange must look like, and its outcome;
// - driver.ts: running cases, their statistics and failure reports;
// - pure.ts: drivers of the pure parsing functions (no sockets).
//
// Every case is made from (seed, spec, index) alone, so a failure is
// reproduced by its seed and index whatever ran before or beside it.

export {
  type CaseSpec,
  type FuzzCase,
  makeCase,
  mixedSpec,
  parseSpec,
  specName,
} from "./cases.ts";
export { describeFailure, FuzzStats, runCase, runCases } from "./driver.ts";
export { INVALID, type InvalidMutation } from "./mutations.ts";
export { type CaseResult } from "./oracle.ts";
export {
  causesOf,
  fuzzBodies,
  fuzzChunkLines,
  fuzzHeads,
  type PureReport,
} from "./pure.ts";
export { FuzzServer } from "./server.ts";
export { envVar, escape, hexSeed, parseSeed } from "./util.ts";
