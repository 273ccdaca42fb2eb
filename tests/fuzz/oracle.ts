// Copyright 2026 the @corothread/evthread authors. MIT license.
// The expected-answer oracle: what a case's exchange must look like, by
// kind of case, and the outcome it gets.

import type { FuzzCase } from "./cases.ts";
import { describeProblem, type FuzzServer } from "./server.ts";
import { toText } from "./util.ts";
import { type Exchange, parseResponses } from "./wire.ts";

/** How a case ended, from the fuzzer's point of view. */
export type Outcome =
  | "ok"
  | "invalid-rejected"
  | "hang"
  | "2xx-for-invalid"
  | "handler-saw-invalid"
  | "response-after-rejection"
  | "malformed-response"
  | "wrong-answer"
  | "handler-problem";

/** The result of one case. */
export interface CaseResult {
  fuzzCase: FuzzCase;
  outcome: Outcome;
  failed: boolean;
  /** The final statuses received, in order. */
  statuses: number[];
  end: Exchange["end"];
  ms: number;
  /** What went wrong, for failures. */
  detail: string;
  /** What came back, as latin1. */
  received: string;
  /**
   * For failures: `known:ID` when a catalogue class with a known defect
   * (or that defect's symptom) explains it, else `other`.
   */
  cause: string;
}

export function judge(
  target: FuzzServer,
  c: FuzzCase,
  ex: Exchange,
): CaseResult {
  const { responses, error } = parseResponses(ex.bytes, ex.end === "reset");
  const finals = responses.filter((r) => r.status >= 200);
  const statuses = finals.map((r) => r.status);
  const result = (
    outcome: Outcome,
    failed: boolean,
    detail = "",
  ): CaseResult => ({
    fuzzCase: c,
    outcome,
    failed,
    statuses,
    end: ex.end,
    ms: ex.ms,
    detail,
    received: toText(ex.bytes),
    cause: !failed
      ? ""
      : c.mutation?.defect !== undefined
      ? `known:${c.mutation.id}`
      : outcome === "handler-problem" && /known defect: host-not/.test(detail)
      ? "known:host-not-a-url"
      : "other",
  });
  // Problems the handler met with this case's requests.
  const mine = target.problems.filter((p) => p.id.startsWith(`${c.key}.`));
  if (mine.length > 0) {
    for (const p of mine) target.problems.splice(target.problems.indexOf(p), 1);
    return result(
      "handler-problem",
      true,
      mine.map(describeProblem).join("\n") +
        (c.mutation?.defect ? `\nknown defect: ${c.mutation.defect}` : ""),
    );
  }
  if (ex.end === "safety") {
    return result(
      "hang",
      true,
      `the server neither answered in full nor closed within ${
        Math.round(ex.ms)
      } ms`,
    );
  }
  if (error !== undefined) return result("malformed-response", true, error);
  if (c.spec.kind === "valid") {
    const got = finals.map((r) =>
      r.status === 200 ? `200 ${r.fields.get("x-digest")}` : `${r.status}`
    );
    const want = c.expected.map((e) =>
      e.status === 200 ? `200 ${e.digest}` : `${e.status}`
    );
    const onError = finals.every((r) =>
      r.status !== 500 || r.fields.get("x-fuzz") === "on-error"
    );
    if (got.join("|") !== want.join("|") || ex.end !== "eof" || !onError) {
      return result(
        "wrong-answer",
        true,
        `expected [${want.join(", ")}] then end of stream, got [${
          got.join(", ")
        }] then ${ex.end}`,
      );
    }
    return result("ok", false);
  }
  if (c.spec.kind === "random") return result("ok", false);
  // Invalid: the requests before it answered (unless a reset lost them),
  // the mutated one never 2xx, nothing after a rejection.
  const m = c.mutation!;
  const defect = m.defect ? `\nknown defect: ${m.defect}` : "";
  const victim = finals[c.before];
  if (victim !== undefined && victim.status < 300) {
    return result(
      "2xx-for-invalid",
      true,
      `${m.title}: the mutated request (#${
        c.before + 1
      }) got ${victim.status}${defect}`,
    );
  }
  if (m.where === "head" && target.seen.has(`${c.key}.${c.before}`)) {
    return result(
      "handler-saw-invalid",
      true,
      `${m.title}: the handler got the mutated request (#${
        c.before + 1
      })${defect}`,
    );
  }
  if (finals.length > c.before + 1) {
    return result(
      "response-after-rejection",
      true,
      `${finals.length - c.before - 1} response(s) after the rejection`,
    );
  }
  if (
    ex.end === "eof" &&
    (finals.length < c.before ||
      finals.slice(0, c.before).some((r) =>
        r.status !== 200 && r.status !== 500
      ))
  ) {
    return result(
      "wrong-answer",
      true,
      `the ${c.before} valid request(s) before the mutated one got [${
        statuses.join(", ")
      }]`,
    );
  }
  return result("invalid-rejected", false);
}
