/**
 * The assertions our tests use, with the names and call shapes of
 * `@std/assert`, written over `node:assert` because JSR cannot be reached from
 * the machines this project is built on.
 *
 * `deno.json` maps `@std/assert` to this file. To use the real package, change
 * that one line to `"@std/assert": "jsr:@std/assert@^1"`; the tests need no
 * other change. This file is not published (see `publish.exclude`).
 *
 * @module
 */
import nodeAssert from "node:assert/strict";

/** Thrown when an assertion fails. */
export const AssertionError = nodeAssert.AssertionError;

/** Asserts that `expr` is truthy. */
export function assert(expr: unknown, msg?: string): asserts expr {
  nodeAssert.ok(expr, msg);
}

/** Asserts deep equality (structural, strict types). */
export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  nodeAssert.deepStrictEqual(actual, expected, msg);
}

/** Asserts deep inequality. */
export function assertNotEquals<T>(actual: T, expected: T, msg?: string): void {
  nodeAssert.notDeepStrictEqual(actual, expected, msg);
}

/** Asserts `Object.is(actual, expected)`. */
export function assertStrictEquals<T>(
  actual: unknown,
  expected: T,
  msg?: string,
): asserts actual is T {
  nodeAssert.strictEqual(actual, expected, msg);
}

/** Asserts that `actual` is neither `null` nor `undefined`. */
export function assertExists<T>(
  actual: T,
  msg?: string,
): asserts actual is NonNullable<T> {
  nodeAssert.ok(
    actual !== null && actual !== undefined,
    msg ?? `Expected a value, got ${actual}`,
  );
}

/** Asserts `actual > expected`. */
export function assertGreater<T>(actual: T, expected: T, msg?: string): void {
  nodeAssert.ok(actual > expected, msg ?? `Expected ${actual} > ${expected}`);
}

/** Asserts `actual >= expected`. */
export function assertGreaterOrEqual<T>(
  actual: T,
  expected: T,
  msg?: string,
): void {
  nodeAssert.ok(
    actual >= expected,
    msg ?? `Expected ${actual} >= ${expected}`,
  );
}

/** Asserts `actual < expected`. */
export function assertLess<T>(actual: T, expected: T, msg?: string): void {
  nodeAssert.ok(actual < expected, msg ?? `Expected ${actual} < ${expected}`);
}

/** Asserts `actual <= expected`. */
export function assertLessOrEqual<T>(
  actual: T,
  expected: T,
  msg?: string,
): void {
  nodeAssert.ok(
    actual <= expected,
    msg ?? `Expected ${actual} <= ${expected}`,
  );
}

/** Asserts that `actual` matches `expected`. */
export function assertMatch(
  actual: string,
  expected: RegExp,
  msg?: string,
): void {
  nodeAssert.match(actual, expected, msg);
}

/** Asserts that `actual` contains `expected`. */
export function assertStringIncludes(
  actual: string,
  expected: string,
  msg?: string,
): void {
  nodeAssert.ok(
    actual.includes(expected),
    msg ??
      `Expected ${JSON.stringify(actual)} to include ${
        JSON.stringify(expected)
      }`,
  );
}

// deno-lint-ignore no-explicit-any
type Constructor = abstract new (...args: any[]) => unknown;

/** Asserts that `actual` is an instance of `expectedType`. */
export function assertInstanceOf<T extends Constructor>(
  actual: unknown,
  expectedType: T,
  msg?: string,
): asserts actual is InstanceType<T> {
  nodeAssert.ok(
    actual instanceof expectedType,
    msg ??
      `Expected an instance of ${expectedType.name}, got ${
        (actual as { constructor?: { name?: string } })?.constructor?.name ??
          typeof actual
      }`,
  );
}

/** Fails the test with `msg`. */
export function fail(msg?: string): never {
  nodeAssert.fail(msg ?? "Failed assertion");
}

function checkError(
  error: unknown,
  ErrorClass: Constructor | undefined,
  msgIncludes: string | undefined,
  msg: string | undefined,
): void {
  if (ErrorClass !== undefined) {
    assertInstanceOf(error, ErrorClass, msg);
  }
  if (msgIncludes !== undefined) {
    assertStringIncludes(
      error instanceof Error ? error.message : String(error),
      msgIncludes,
      msg,
    );
  }
}

/**
 * Asserts that `fn` throws; returns what it threw. Optionally checks its class
 * and that its message includes a string.
 */
export function assertThrows(
  fn: () => unknown,
  ErrorClass?: Constructor,
  msgIncludes?: string,
  msg?: string,
): unknown {
  try {
    fn();
  } catch (error) {
    checkError(error, ErrorClass, msgIncludes, msg);
    return error;
  }
  nodeAssert.fail(msg ?? "Expected function to throw");
}

/**
 * Asserts that the promise `fn` returns rejects; resolves with the rejection
 * reason. Optionally checks its class and that its message includes a string.
 */
export async function assertRejects(
  fn: () => PromiseLike<unknown>,
  ErrorClass?: Constructor,
  msgIncludes?: string,
  msg?: string,
): Promise<unknown> {
  try {
    await fn();
  } catch (error) {
    checkError(error, ErrorClass, msgIncludes, msg);
    return error;
  }
  nodeAssert.fail(msg ?? "Expected promise to reject");
}
