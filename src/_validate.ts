// Copyright 2026 the @corothread/evthread authors. MIT license.
// Option checks shared by the public API. Messages follow Deno std's style:
// name the option, say what was expected and what was received.

/** Formats a received value for an error message. */
function show(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "symbol") return value.toString();
  if (value === null || typeof value !== "object") return String(value);
  return Object.prototype.toString.call(value);
}

/**
 * Checks a timeout in milliseconds. `undefined` and `Infinity` mean none.
 *
 * @throws {TypeError} if it is not a number.
 * @throws {RangeError} if it is negative or NaN.
 */
export function checkTimeout(
  value: unknown,
  name = "timeout",
): number | undefined {
  if (value === undefined || value === Infinity) return undefined;
  if (typeof value !== "number") {
    throw new TypeError(
      `'${name}' must be a number of milliseconds: received ${show(value)}`,
    );
  }
  if (!(value >= 0)) {
    throw new RangeError(
      `'${name}' must be a non-negative number of milliseconds: received ${
        show(value)
      }`,
    );
  }
  return value;
}

/**
 * Checks an integer option within `[min, max]`.
 *
 * @throws {TypeError} if it is not a number.
 * @throws {RangeError} if it is not an integer in range.
 */
export function checkInteger(
  value: unknown,
  name: string,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (typeof value !== "number") {
    throw new TypeError(`'${name}' must be a number: received ${show(value)}`);
  }
  if (!Number.isInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER
      ? `an integer >= ${min}`
      : `an integer from ${min} to ${max}`;
    throw new RangeError(`'${name}' must be ${range}: received ${show(value)}`);
  }
  return value;
}

/**
 * Checks an optional `AbortSignal`.
 *
 * @throws {TypeError} if it is given and is not an `AbortSignal`.
 */
export function checkSignal(
  value: unknown,
  name = "signal",
): AbortSignal | undefined {
  if (value === undefined) return undefined;
  if (!(value instanceof AbortSignal)) {
    throw new TypeError(
      `'${name}' must be an AbortSignal: received ${show(value)}`,
    );
  }
  return value;
}

/**
 * Checks that a value is a function.
 *
 * @throws {TypeError} if it is not.
 */
export function checkFunction(value: unknown, name: string): void {
  if (typeof value !== "function") {
    throw new TypeError(
      `'${name}' must be a function: received ${show(value)}`,
    );
  }
}

/**
 * Checks a byte buffer argument.
 *
 * @throws {TypeError} if it is not a `Uint8Array`.
 */
export function checkBytes(value: unknown, name: string): void {
  if (!(value instanceof Uint8Array)) {
    throw new TypeError(
      `'${name}' must be a Uint8Array: received ${show(value)}`,
    );
  }
}

/** Makes the `DOMException` that every timed-out call rejects with. */
export function timeoutError(message: string): DOMException {
  return new DOMException(message, "TimeoutError");
}

/** Makes an `AbortError` `DOMException`, used as a default abort reason. */
export function abortError(message: string): DOMException {
  return new DOMException(message, "AbortError");
}

/**
 * Reads the `grace` option of a shutdown: milliseconds, `Infinity` for no
 * limit, `fallback` when absent.
 *
 * @throws {TypeError} / {RangeError} as {@linkcode checkTimeout}.
 */
export function checkGrace(options: unknown, fallback: number): number {
  const grace = (options as { grace?: unknown } | undefined)?.grace;
  return checkTimeout(grace ?? fallback, "grace") ?? Infinity;
}

/**
 * Checks an absolute deadline: epoch milliseconds (as `Date.now()` gives) or
 * a `Date`. `undefined` and `Infinity` mean none.
 *
 * @throws {TypeError} if it is neither a number nor a `Date`.
 * @throws {RangeError} if it is NaN, -Infinity or an invalid `Date`.
 */
export function checkDeadline(
  value: unknown,
  name = "deadline",
): number | undefined {
  if (value === undefined || value === Infinity) return undefined;
  let at: number;
  if (typeof value === "number") at = value;
  else if (value instanceof Date) at = value.getTime();
  else {
    throw new TypeError(
      `'${name}' must be a Date or epoch milliseconds: received ${show(value)}`,
    );
  }
  if (!Number.isFinite(at)) {
    throw new RangeError(
      `'${name}' must be a valid time: received ${
        value instanceof Date ? "Invalid Date" : show(value)
      }`,
    );
  }
  return at;
}
