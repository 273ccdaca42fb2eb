/**
 * The one command-line parser of the benchmarks: every script (the
 * orchestrators, their servers and load clients) describes its flags as a
 * map from option name to {@linkcode Flag} and gets a typed object back.
 *
 * - `--name value` and `--name=value`; the flag of option `latencyCount` is
 *   `--latency-count`;
 * - a flag given twice: the last one counts;
 * - `-h` / `--help` prints the usage and exits with 0;
 * - anything else (an unknown flag, a bare word, a missing or bad value)
 *   throws a `TypeError` or `RangeError` that names the flag, what was
 *   expected and what was received.
 *
 * The common options mean the same in every script: `--rounds` (a positive
 * integer), `--seconds` (positive), `--warmup` (seconds, >= 0),
 * `--connections` (a positive integer), `--port` (0-65535, 0: any free
 * port), `--servers` (a comma-separated subset); see the constants below.
 *
 * @module
 */

/** How one `--flag` reads its value. */
export interface Flag<T> {
  /** The value's placeholder in the usage line: `N`, `S`, `auto|off`. */
  readonly value: string;
  /**
   * The value of `raw`, the text after the flag; throws a `TypeError` or a
   * `RangeError` that names `flag`.
   */
  parse(raw: string, flag: string): T;
}

/** The flags of a set of options, one per option. */
export type Flags<O> = { readonly [K in keyof O]-?: Flag<O[K]> };

/** What {@linkcode parseArgs} needs besides the flags and the defaults. */
export interface ParseOptions<O> {
  /** The first line of `--help` (the usage line is generated after it). */
  usage?: string;
  /** Options that must be given (their defaults are placeholders). */
  required?: readonly (keyof O & string)[];
}

/** `latencyCount` as a flag: `--latency-count`. */
export function flagName(key: string): string {
  return `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/** `a, b or c`. */
export function oneOf(items: readonly string[]): string {
  return items.length < 2
    ? items.join("")
    : `${items.slice(0, -1).join(", ")} or ${items.at(-1)}`;
}

/**
 * Splits `args` into `[flag, value]` pairs (`--name value` or
 * `--name=value`); throws on a bare word or a flag without a value.
 */
export function splitArgs(args: readonly string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (!arg.startsWith("--")) {
      throw new TypeError(
        `Expected an option starting with '--': received '${arg}'`,
      );
    }
    const eq = arg.indexOf("=");
    if (eq >= 0) {
      out.push([arg.slice(0, eq), arg.slice(eq + 1)]);
      continue;
    }
    const value = args[++i];
    if (value === undefined) {
      throw new TypeError(`'${arg}' needs a value`);
    }
    out.push([arg, value]);
  }
  return out;
}

/** The usage text of a set of flags. */
export function usageOf<O extends object>(
  flags: Flags<O>,
  defaults: O,
  options: ParseOptions<O> = {},
): string {
  const required = new Set<string>(options.required ?? []);
  const parts = Object.entries(flags as Record<string, Flag<unknown>>).map(
    ([key, flag]) => {
      const text = `${flagName(key)} ${flag.value}`;
      if (required.has(key)) return text;
      const value = (defaults as Record<string, unknown>)[key];
      const shown = Array.isArray(value) ? value.join(",") : String(value);
      return `[${text}] (${shown === "" ? "none" : shown})`;
    },
  );
  const head = options.usage === undefined ? [] : [options.usage];
  return [...head, `options: ${parts.join(" ")}`].join("\n");
}

/**
 * Parses `args` with `flags`, starting from `defaults`. Prints the usage and
 * exits on `-h` / `--help`.
 *
 * @throws {TypeError} An unknown flag, a bare word, a missing value or a
 * missing required option.
 * @throws {RangeError} A value out of its range.
 */
export function parseArgs<O extends object>(
  args: readonly string[],
  flags: Flags<O>,
  defaults: NoInfer<O>,
  options: ParseOptions<NoInfer<O>> = {},
): O {
  if (args.includes("-h") || args.includes("--help")) {
    console.log(usageOf(flags, defaults, options));
    Deno.exit(0);
  }
  const byFlag = new Map<string, string>();
  for (const key of Object.keys(flags)) byFlag.set(flagName(key), key);
  const out = { ...defaults } as Record<string, unknown>;
  const given = new Set<string>();
  for (const [flag, raw] of splitArgs(args)) {
    const key = byFlag.get(flag);
    if (key === undefined) {
      throw new TypeError(
        `Expected ${oneOf([...byFlag.keys()])}: received '${flag}'`,
      );
    }
    out[key] = (flags as Record<string, Flag<unknown>>)[key]!.parse(raw, flag);
    given.add(key);
  }
  for (const key of options.required ?? []) {
    if (!given.has(key)) {
      throw new TypeError(`Option '${flagName(key)}' is required`);
    }
  }
  return out as O;
}

// ------------------------------------------------------------ value kinds

/** An integer in `[min, max]`. */
export function integer(
  min = 0,
  max: number = Number.MAX_SAFE_INTEGER,
): Flag<number> {
  return {
    value: "N",
    parse(raw, flag) {
      const value = Number(raw);
      if (raw.trim() === "" || !Number.isInteger(value)) {
        throw new TypeError(`'${flag}' must be an integer: received '${raw}'`);
      }
      if (value < min || value > max) {
        const range = max === Number.MAX_SAFE_INTEGER
          ? `>= ${min}`
          : `in [${min}, ${max}]`;
        throw new RangeError(
          `'${flag}' must be an integer ${range}: received ${raw}`,
        );
      }
      return value;
    },
  };
}

/** A finite number `>= min` (`> min` when `exclusive`), at most `max`. */
export function number(
  min = 0,
  options: { exclusive?: boolean; max?: number; value?: string } = {},
): Flag<number> {
  const { exclusive = false, max = Infinity, value = "S" } = options;
  return {
    value,
    parse(raw, flag) {
      const value = Number(raw);
      if (raw.trim() === "" || !Number.isFinite(value)) {
        throw new TypeError(`'${flag}' must be a number: received '${raw}'`);
      }
      if ((exclusive ? value <= min : value < min) || value > max) {
        const low = exclusive
          ? min === 0 ? "positive" : `> ${min}`
          : min === 0
          ? "non-negative"
          : `>= ${min}`;
        const high = max === Infinity ? "" : ` and at most ${max}`;
        throw new RangeError(
          `'${flag}' must be ${low}${high}: received ${raw}`,
        );
      }
      return value;
    },
  };
}

/** One of `choices`. */
export function choice<C extends string>(choices: readonly C[]): Flag<C> {
  return {
    value: choices.join("|"),
    parse(raw, flag) {
      if (!(choices as readonly string[]).includes(raw)) {
        throw new TypeError(
          `'${flag}' must be ${oneOf(choices)}: received '${raw}'`,
        );
      }
      return raw as C;
    },
  };
}

/** A non-empty comma-separated list of `choices`. */
export function list<C extends string>(choices: readonly C[]): Flag<C[]> {
  return {
    value: choices.join(","),
    parse(raw, flag) {
      const names = raw.split(",").filter((n) => n !== "");
      for (const name of names) {
        if (!(choices as readonly string[]).includes(name)) {
          throw new TypeError(
            `'${flag}' must list ${oneOf(choices)}: received '${name}'`,
          );
        }
      }
      if (names.length === 0) {
        throw new TypeError(
          `'${flag}' must name at least one of ${oneOf(choices)}`,
        );
      }
      return names as C[];
    },
  };
}

/** Any text; `check` may reject it (it throws). */
export function text(
  value = "TEXT",
  check?: (raw: string, flag: string) => void,
): Flag<string> {
  return {
    value,
    parse(raw, flag) {
      check?.(raw, flag);
      return raw;
    },
  };
}

// ------------------------------------------------------- common options

/** `--rounds`: a positive integer. */
export const ROUNDS: Flag<number> = integer(1);
/** `--seconds`: a positive number of seconds. */
export const SECONDS: Flag<number> = number(0, { exclusive: true });
/** `--seconds` where wrk takes it (`-d`): a positive integer. */
export const WHOLE_SECONDS: Flag<number> = integer(1);
/** `--warmup`: seconds, >= 0. */
export const WARMUP: Flag<number> = number(0);
/** `--connections`: a positive integer. */
export const CONNECTIONS: Flag<number> = integer(1);
/** `--port`: 0-65535 (0: any free port). */
export const PORT: Flag<number> = integer(0, 65535);
/** `--pin`: `auto` (as measuring.md says, when `taskset` runs) or `off`. */
export const PIN: Flag<"auto" | "off"> = choice(["auto", "off"] as const);
