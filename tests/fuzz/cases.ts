// Copyright 2026 the @corothread/evthread authors. MIT license.
// Cases: what each is (a spec), and the bytes it sends with the answers
// they must get, all made from (seed, spec, index) alone.

import {
  INVALID,
  INVALID_BY_ID,
  type InvalidMutation,
  mutateRandomly,
} from "./mutations.ts";
import {
  clone,
  type FuzzRequest,
  generateRequest,
  type RequestNeeds,
  textOf,
} from "./requests.ts";
import { caseSeed, digestOf, fnv1a, Rng } from "./util.ts";

/** What a case is: a kind, and for invalid ones the mutation class. */
export type CaseSpec =
  | { kind: "valid"; holdOpen?: boolean }
  | { kind: "random"; holdOpen?: boolean }
  | { kind: "invalid"; mutation: string; holdOpen?: boolean };

/** A spec as text: `valid`, `random+hold`, `invalid:chunk-no-crlf`. */
export function specName(spec: CaseSpec): string {
  const base = spec.kind === "invalid" ? `invalid:${spec.mutation}` : spec.kind;
  return spec.holdOpen ? `${base}+hold` : base;
}

/** Parses {@linkcode specName}'s text. */
export function parseSpec(text: string): CaseSpec {
  const holdOpen = text.endsWith("+hold");
  const base = holdOpen ? text.slice(0, -5) : text;
  if (base === "valid" || base === "random") return { kind: base, holdOpen };
  if (base.startsWith("invalid:") && INVALID_BY_ID.has(base.slice(8))) {
    return { kind: "invalid", mutation: base.slice(8), holdOpen };
  }
  throw new TypeError(`Unknown case spec: received ${JSON.stringify(text)}`);
}

/** The spec of case `index` in a mixed run (the bench). */
export function mixedSpec(
  seed: number,
  index: number,
  holdOpenRate: number,
): CaseSpec {
  const rng = new Rng(caseSeed(seed, index, 0x5bec));
  const r = rng.below(100);
  const holdOpen = rng.chance(holdOpenRate);
  if (r < 20) return { kind: "valid", holdOpen };
  if (r < 65) return { kind: "random", holdOpen };
  return { kind: "invalid", mutation: rng.pick(INVALID).id, holdOpen };
}

/** An answer a valid request must get. */
export interface Expected {
  /** 200, or 500 when the handler throws on purpose. */
  status: number;
  /** The digest of the body the handler must have read (for 200). */
  digest: string;
}

/** One case: bytes to send over one connection, and how to judge. */
export interface FuzzCase {
  seed: number;
  index: number;
  spec: CaseSpec;
  /** `spec/index`, the prefix of its requests' `X-Fuzz-Id`. */
  key: string;
  /** What was done to it: `valid`, `random:flip+truncate`, `invalid:...`. */
  label: string;
  /** The bytes, as latin1. */
  text: string;
  /** Sizes of the writes, in order. */
  pieces: number[];
  /** Whether to pause a little between writes. */
  pauses: boolean;
  /** Keep the write side open: the server's timeouts must end it. */
  holdOpen: boolean;
  /** Valid cases: the final responses, in order. */
  expected: Expected[];
  /** Invalid cases: how many valid requests precede the mutated one. */
  before: number;
  /** Invalid cases: the mutation class. */
  mutation: InvalidMutation | undefined;
}

function pipeline(
  rng: Rng,
  key: string,
  count: number,
  needs: RequestNeeds,
): FuzzRequest[] {
  const out: FuzzRequest[] = [];
  for (let i = 0; i < count; i++) {
    out.push(
      generateRequest(rng, `${key}.${i}`, {
        ...needs,
        ...(i < count - 1 ? { keepAlive: true } : {}),
      }),
    );
  }
  return out;
}

function pipelineLength(rng: Rng): number {
  const r = rng.below(100);
  return r < 60 ? 1 : r < 85 ? 2 : 3;
}

/** Makes case `index` of `spec` for the run's `seed`. */
export function makeCase(
  seed: number,
  index: number,
  spec: CaseSpec,
): FuzzCase {
  const name = specName(spec);
  const rng = new Rng(caseSeed(seed, index, fnv1a(name)));
  const key = `${name}/${index}`;
  let text = "";
  let label: string = spec.kind;
  let expected: Expected[] = [];
  let before = 0;
  let mutation: InvalidMutation | undefined;
  if (spec.kind === "valid") {
    const requests = pipeline(rng, key, pipelineLength(rng), {
      mayThrow: true,
    });
    text = requests.map(textOf).join("");
    expected = requests.map((r) => ({
      status: r.throws ? 500 : 200,
      digest: digestOf(r.payload),
    }));
  } else if (spec.kind === "random") {
    const requests = pipeline(rng, key, pipelineLength(rng), {
      mayThrow: true,
    });
    const mutated = mutateRandomly(
      rng,
      requests.map(textOf).join(""),
      () =>
        pipeline(rng, `${key}.b`, pipelineLength(rng), {}).map(textOf).join(""),
    );
    text = mutated.text;
    label = `random:${mutated.label}`;
  } else {
    mutation = INVALID_BY_ID.get(spec.mutation);
    if (mutation === undefined) {
      throw new TypeError(`Unknown mutation: received ${spec.mutation}`);
    }
    label = `invalid:${mutation.id}`;
    const r = rng.below(100);
    before = r < 50 ? 0 : r < 85 ? 1 : 2;
    // Valid requests first, each leaving the connection open for the next.
    const prior: FuzzRequest[] = [];
    for (let i = 0; i < before; i++) {
      prior.push(
        generateRequest(rng, `${key}.${i}`, {
          keepAlive: true,
          mayThrow: true,
        }),
      );
    }
    const victim = generateRequest(rng, `${key}.${before}`, {
      ...(rng.chance(0.5) ? { keepAlive: true } : {}),
      ...mutation.needs,
    });
    const bad = mutation.apply(clone(victim), rng);
    text = prior.map(textOf).join("") + bad.head + bad.body;
    if (rng.chance(0.4)) {
      text += textOf(generateRequest(rng, `${key}.${before + 1}`, {}));
    }
  }
  const pieces: number[] = [];
  if (text.length > 1 && rng.chance(0.5)) {
    let left = text.length;
    const parts = rng.between(2, 8);
    for (let i = 0; i < parts - 1 && left > 1; i++) {
      const n = rng.between(1, Math.max(1, Math.floor(left / 2)));
      pieces.push(n);
      left -= n;
    }
    pieces.push(left);
  } else pieces.push(text.length);
  return {
    seed,
    index,
    spec,
    key,
    label,
    text,
    pieces,
    pauses: rng.chance(0.3),
    holdOpen: spec.holdOpen === true,
    expected,
    before,
    mutation,
  };
}
