/**
 * What the load clients (`_echo_load.ts`, `_http_load.ts`) share: their
 * `--name value` options and the hard stop that ends a stuck client.
 *
 * @module
 */

/** Parses `--name value` and `--name=value` options into a map by name. */
export function parseArgs(args: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (!arg.startsWith("--")) {
      throw new TypeError(
        `Expected an option starting with '--': received '${arg}'`,
      );
    }
    const eq = arg.indexOf("=");
    if (eq >= 0) {
      out.set(arg.slice(2, eq), arg.slice(eq + 1));
    } else {
      const value = args[++i];
      if (value === undefined) {
        throw new TypeError(`Option '${arg}' needs a value`);
      }
      out.set(arg.slice(2), value);
    }
  }
  return out;
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
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0) {
    throw new RangeError(
      `'--${name}' must be a non-negative number: received ${raw}`,
    );
  }
  return value;
}

/** Throws unless `--seconds` is positive. */
export function checkSeconds(seconds: number): void {
  if (seconds <= 0) {
    throw new RangeError(`'--seconds' must be positive: received ${seconds}`);
  }
}

/**
 * Runs `run` and prints its result as one JSON line on stdout. Whatever
 * happens, the process exits with 3 after `limitSeconds`, saying `message`
 * on stderr.
 */
export async function printWithHardStop(
  limitSeconds: number,
  message: string,
  run: () => Promise<unknown>,
): Promise<void> {
  const hardStop = setTimeout(() => {
    console.error(message);
    Deno.exit(3);
  }, limitSeconds * 1000);
  try {
    console.log(JSON.stringify(await run()));
  } finally {
    clearTimeout(hardStop);
  }
}
