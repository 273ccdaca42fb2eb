/**
 * Figures and results: medians, ratios, table formatting, and saving the
 * JSON results in `bench/results/`.
 *
 * @module
 */

/** `bench/`, the directory above this one. */
const BENCH_DIR = new URL("../", import.meta.url);

/** The path of a file relative to `bench/` (`./results`). */
export function benchPath(relative: string): string {
  return decodeURIComponent(new URL(relative, BENCH_DIR).pathname);
}

/** `items` rotated left by `round`: the server order of that round. */
export function rotated<T>(items: readonly T[], round: number): T[] {
  return items.map((_, i) => items[(i + round) % items.length]!);
}

/** The median, or null for no values. */
export function median(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? sorted[mid]!
    : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** `a / b`, or null when either is missing or `b` is 0. */
export function ratio(a: number | null, b: number | null): number | null {
  return a === null || b === null || b === 0 ? null : a / b;
}

/** A ratio as `1.23x`, or `n/a`. */
export function formatRatio(value: number | null): string {
  return value === null ? "n/a" : `${value.toFixed(2)}x`;
}

/** Requests per second for a table: rounded, with thousands separators. */
export function formatRps(value: number | null): string {
  return value === null ? "n/a" : Math.round(value).toLocaleString("en-US");
}

/** A latency in milliseconds for a table: µs below 1 ms. */
export function formatMs(value: number | null): string {
  if (value === null) return "n/a";
  return value < 1
    ? `${Math.round(value * 1000)} µs`
    : `${value.toFixed(2)} ms`;
}

/** A share of one core (0.42) as `42%`, or `n/a`. */
export function formatPercent(value: number | null | undefined): string {
  return value === null || value === undefined
    ? "n/a"
    : `${Math.round(value * 100)}%`;
}

/** Cores used (0.42) as `0.42`, or `n/a`. */
export function formatCores(value: number | null | undefined): string {
  return value === null || value === undefined ? "n/a" : value.toFixed(2);
}

/** Says on stdout how many measurements failed, if any did. */
export function noteFailures(failed: number, total: number): void {
  if (failed > 0) {
    console.log(`\n${failed} of ${total} measurements failed (see stderr).`);
  }
}

/** Whether this process may write `path`. */
export async function canWrite(path: string): Promise<boolean> {
  const status = await Deno.permissions.query({ name: "write", path });
  return status.state === "granted";
}

/**
 * Writes `files` (name to text) into `bench/results` when allowed, and says
 * on stderr what it did.
 */
export async function saveResults(
  files: Record<string, string>,
): Promise<void> {
  const dir = benchPath("./results");
  const paths = Object.keys(files).map((name) => `${dir}/${name}`);
  if (await canWrite(dir)) {
    await Deno.mkdir(dir, { recursive: true });
    for (const [name, text] of Object.entries(files)) {
      await Deno.writeTextFile(`${dir}/${name}`, text);
    }
    console.error(`results written to ${paths.join(" and ")}`);
  } else {
    console.error(
      `results not written: add --allow-write=bench/results to save ${
        paths[0]
      }`,
    );
  }
}

/** A report as pretty JSON with a final newline. */
export function toJson(report: unknown): string {
  return JSON.stringify(report, null, 2) + "\n";
}

/** A ratio with three decimals (an A/A control should read 0.99-1.01). */
export function formatRatio3(value: number | null): string {
  return value === null ? "n/a" : `${value.toFixed(3)}x`;
}

/** Median and range of some values (one per round). */
export interface Spread {
  median: number | null;
  min: number | null;
  max: number | null;
  /** How many values were not null. */
  n: number;
}

/** The median and range of the values that are not null. */
export function spread(values: readonly (number | null)[]): Spread {
  const ok = values.filter((v): v is number => v !== null);
  return {
    median: median(ok),
    min: ok.length === 0 ? null : Math.min(...ok),
    max: ok.length === 0 ? null : Math.max(...ok),
    n: ok.length,
  };
}

/** `median 0.98x, range 0.95x to 1.01x (5 rounds)`, or `n/a`. */
export function formatSpread(
  s: Spread,
  format: (v: number | null) => string,
): string {
  return s.n === 0
    ? "n/a"
    : `median ${format(s.median)}, range ${format(s.min)} to ${
      format(s.max)
    } (${s.n} rounds)`;
}
