/**
 * Only for `bench/http_fuzz.ts`, which moves to tests/fuzz/ in another
 * branch: its `--name value` options as a map, through the tokenizer of the
 * benchmarks' one parser (`_common/args.ts`). Delete this file when the
 * fuzzer no longer imports it.
 *
 * @module
 */

import { number, splitArgs } from "./_common/args.ts";

/** Parses `--name value` and `--name=value` options into a map by name. */
export function parseArgs(args: string[]): Map<string, string> {
  return new Map(
    splitArgs(args).map(([flag, value]) => [flag.slice(2), value]),
  );
}

/**
 * The non-negative number given as `--name`, or `fallback` when it is not
 * given (required when there is no fallback).
 */
export function numberOption(
  opts: Map<string, string>,
  name: string,
  fallback?: number,
): number {
  const raw = opts.get(name);
  if (raw === undefined) {
    if (fallback === undefined) {
      throw new TypeError(`Option '--${name}' is required`);
    }
    return fallback;
  }
  return number(0).parse(raw, `--${name}`);
}
