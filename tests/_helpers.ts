// Copyright 2026 the @corothread/evthread authors. MIT license.
// Shared helpers for the tests: raw clients, byte checks, handshakes, safety
// timeouts, open-fd counts and an unhandled-rejection spy.

import { EvLoop, type EvSocket } from "../mod.ts";
import { fail } from "@std/assert";

/** The loopback address every test listens and connects on. */
export const HOST = "127.0.0.1";

export const encoder: TextEncoder = new TextEncoder();
export const decoder: TextDecoder = new TextDecoder();

/** What a loop reported to its `onError` hook. */
export interface Report {
  error: unknown;
  source: unknown;
}

/** A loop whose error reports are collected rather than printed. */
export function quietLoop(
  capacity?: number,
): { loop: EvLoop; reports: Report[] } {
  const reports: Report[] = [];
  const loop = new EvLoop({
    ...(capacity === undefined ? {} : { capacity }),
    onError: (error, source) => reports.push({ error, source }),
  });
  return { loop, reports };
}

/** `n` bytes, different for every `seed` (xorshift32). */
export function payload(seed: number, n: number): Uint8Array<ArrayBuffer> {
  return xorshiftBytes(n, (seed * 2_654_435_761 + 0x9e3779b9) >>> 0 || 1);
}

/** `n` bytes of xorshift32 from the state `x` (a non-zero uint32). */
export function xorshiftBytes(n: number, x: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    bytes[i] = x & 0xff;
  }
  return bytes;
}

/** Fails with the first differing offset rather than a huge diff. */
export function assertBytes(
  actual: Uint8Array,
  expected: Uint8Array,
  label = "bytes",
): void {
  if (actual.byteLength !== expected.byteLength) {
    fail(
      `${label}: expected ${expected.byteLength} bytes, got ${actual.byteLength}`,
    );
  }
  for (let i = 0; i < expected.byteLength; i++) {
    if (actual[i] !== expected[i]) {
      fail(
        `${label}: first difference at offset ${i} of ${expected.byteLength}: expected ${
          expected[i]
        }, got ${actual[i]}`,
      );
    }
  }
}

/** Connects a raw client to the loopback `port`. */
export function connect(port: number): Promise<Deno.TcpConn> {
  return Deno.connect({ hostname: HOST, port });
}

/** Writes all of `bytes` (`conn.write` may be partial). */
export async function writeAll(
  conn: Deno.Conn,
  bytes: Uint8Array,
): Promise<void> {
  let off = 0;
  while (off < bytes.byteLength) off += await conn.write(bytes.subarray(off));
}

/** Joins chunks into one array. */
export function concat(chunks: Uint8Array[]): Uint8Array<ArrayBuffer> {
  let n = 0;
  for (const c of chunks) n += c.byteLength;
  const out = new Uint8Array(n);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.byteLength;
  }
  return out;
}

/** How long a client read may wait before the helpers give up. */
export const SAFETY_MS = 15_000;

/**
 * Runs `read` on `conn` with a safety net: after `SAFETY_MS` the connection
 * is closed (so no read op outlives the test) and the call rejects with a
 * message naming what was awaited.
 */
async function guarded<T>(
  conn: Deno.Conn,
  what: string,
  read: () => Promise<T>,
): Promise<T> {
  let expired = false;
  const timer = setTimeout(() => {
    expired = true;
    closeQuietly(conn);
  }, SAFETY_MS);
  try {
    return await read();
  } catch (error) {
    if (expired) {
      throw new Error(`Safety timeout: ${what} after ${SAFETY_MS} ms`);
    }
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

/** Closes a connection unless it is closed already. */
export function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch (error) {
    if (!(error instanceof Deno.errors.BadResource)) throw error;
  }
}

/** Reads until end of stream. */
export function readToEnd(conn: Deno.Conn): Promise<Uint8Array> {
  return guarded(conn, "reading to end of stream", async () => {
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(65_536);
    let n: number | null;
    while ((n = await conn.read(buf)) !== null) chunks.push(buf.slice(0, n));
    return concat(chunks);
  });
}

/** What a client read before the server closed the connection. */
export interface Ending {
  /** Bytes read before end of stream or reset. */
  bytes: Uint8Array;
  /** Whether it ended in `ConnectionReset` rather than end of stream. */
  reset: boolean;
}

/** Reads until end of stream or a connection reset. */
export function readUntilClosed(conn: Deno.Conn): Promise<Ending> {
  return guarded(conn, "waiting for the peer to close", async () => {
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(65_536);
    try {
      let n: number | null;
      while ((n = await conn.read(buf)) !== null) {
        chunks.push(buf.slice(0, n));
      }
    } catch (error) {
      if (!(error instanceof Deno.errors.ConnectionReset)) throw error;
      return { bytes: concat(chunks), reset: true };
    }
    return { bytes: concat(chunks), reset: false };
  });
}

/** Reads one `\n`-terminated line (the peer sends nothing after it). */
export function readLine(conn: Deno.Conn): Promise<string | null> {
  return guarded(conn, "reading a line", async () => {
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(1024);
    while (true) {
      const n = await conn.read(buf);
      if (n === null) {
        if (chunks.length === 0) return null;
        fail(`end of stream inside a line: ${decoder.decode(concat(chunks))}`);
      }
      chunks.push(buf.slice(0, n));
      if (buf[n - 1] === 0x0a) {
        const line = decoder.decode(concat(chunks));
        return line.slice(0, -1);
      }
    }
  });
}

/** Echoes what it receives until end of stream. */
export async function echo(socket: EvSocket): Promise<void> {
  const buf = new Uint8Array(16_384);
  let n: number | null;
  while ((n = await socket.recv(buf)) !== null) {
    await socket.send(buf.subarray(0, n));
  }
}

/** A port that nothing listens on (it was free a moment ago). */
export function closedPort(): number {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const port = listener.addr.port;
  listener.close();
  return port;
}

/**
 * Resolves `reached` once `count()` has been called `target` times: a
 * handshake for "N tasks got this far".
 */
export class Latch {
  #count = 0;
  #target: number;
  #resolve: () => void;
  /** Resolves when the count reaches the target. */
  readonly reached: Promise<void>;

  constructor(target: number) {
    this.#target = target;
    const { promise, resolve } = Promise.withResolvers<void>();
    this.reached = promise;
    this.#resolve = resolve;
    if (target <= 0) resolve();
  }

  get value(): number {
    return this.#count;
  }

  count(): void {
    if (++this.#count === this.#target) this.#resolve();
  }
}

/** A promise the test opens by hand. */
export class Gate {
  #resolve: () => void;
  /** Resolves once `open()` was called. */
  readonly opened: Promise<void>;

  constructor() {
    const { promise, resolve } = Promise.withResolvers<void>();
    this.opened = promise;
    this.#resolve = resolve;
  }

  open(): void {
    this.#resolve();
  }
}

/** `promise`, or a rejection with `message` after `ms`; clears its timer. */
async function race<T>(
  promise: Promise<T>,
  ms: number,
  message: string,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A safety net: `promise`, or a failure after `ms` (a generous bound, never
 * the thing under test). The timer is cleared either way.
 */
export function withTimeout<T>(
  promise: Promise<T>,
  ms: number,
  what: string,
): Promise<T> {
  return race(promise, ms, `Safety timeout: ${what} after ${ms} ms`);
}

/**
 * Settles like `promise`, or rejects with "Timed out after `ms` ms: `what`"
 * (a safety net, never the thing under test); the timer is cleared either way.
 */
export function within<T>(
  promise: Promise<T>,
  what: string,
  ms: number,
): Promise<T> {
  return race(promise, ms, `Timed out after ${ms} ms: ${what}`);
}

/** Runs `fn(0..total-1)` with at most `size` calls in flight at a time. */
export async function inBatches(
  total: number,
  size: number,
  fn: (i: number) => Promise<void>,
): Promise<void> {
  for (let start = 0; start < total; start += size) {
    const batch: Promise<void>[] = [];
    for (let i = start; i < Math.min(total, start + size); i++) {
      batch.push(fn(i));
    }
    await Promise.all(batch);
  }
}

/**
 * Lists what this process's open file descriptors point to (`socket:[…]`,
 * `anon_inode:[eventpoll]`, paths). Reading `/proc/self/fd` directly needs
 * `--allow-all` in Deno 2.9.6, so `ls -l` lists it. The pipes, `/dev/null`
 * and pidfd that Deno opens to run that `ls` are left out: whether they are
 * still open when `ls` looks varies from run to run.
 */
export async function openFds(): Promise<string[]> {
  const out = await new Deno.Command("ls", {
    args: ["-l", `/proc/${Deno.pid}/fd`],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  // An fd closed between ls reading the directory and reading the link
  // (one of those pipes) makes ls exit with 1: that is not a failure.
  const problems = decoder.decode(out.stderr).split("\n").filter((line) =>
    line !== "" && !line.endsWith("No such file or directory")
  );
  if (problems.length > 0 || out.stdout.byteLength === 0) {
    fail(`ls /proc/${Deno.pid}/fd failed: ${problems.join("\n")}`);
  }
  return decoder.decode(out.stdout).split("\n")
    .map((line) => line.split(" -> ")[1])
    .filter((target): target is string =>
      target !== undefined && !target.startsWith("pipe:") &&
      target !== "/dev/null" && target !== "anon_inode:[pidfd]"
    )
    // The fd of the directory listing itself, if any.
    .filter((target) => !target.startsWith(`/proc/`))
    .map((target) => target.replace(/\[\d+\]$/, ""))
    .sort();
}

/** Counts the kinds of fds: `{ socket: 3, "anon_inode:[eventpoll]": 1 }`. */
export function tally(targets: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const t of targets) counts[t] = (counts[t] ?? 0) + 1;
  return counts;
}

/**
 * Records `unhandledrejection` events while installed. `flush()` makes a
 * rejection of its own and waits until the runtime reports it, so every
 * rejection left unhandled before the call has been reported too.
 */
export class UnhandledRejectionSpy implements Disposable {
  /** Reasons of the unhandled rejections seen, the spy's own excluded. */
  readonly reasons: unknown[] = [];
  #markers = new Map<unknown, () => void>();
  #listener = (event: PromiseRejectionEvent): void => {
    event.preventDefault();
    const marker = this.#markers.get(event.reason);
    if (marker !== undefined) {
      this.#markers.delete(event.reason);
      marker();
    } else {
      this.reasons.push(event.reason);
    }
  };

  constructor() {
    globalThis.addEventListener("unhandledrejection", this.#listener);
  }

  /** Resolves once every earlier unhandled rejection has been reported. */
  async flush(): Promise<void> {
    const marker = new Error("spy marker");
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#markers.set(marker, resolve);
    Promise.reject(marker);
    await withTimeout(promise, 5000, "the spy's own unhandled rejection");
  }

  [Symbol.dispose](): void {
    globalThis.removeEventListener("unhandledrejection", this.#listener);
  }
}

/**
 * Resolves once `condition()` holds, checking every few milliseconds; fails
 * after `ms` (a safety net). For states that nothing announces, such as a
 * counter of the loop.
 */
export async function eventually(
  condition: () => boolean,
  what: string,
  ms = SAFETY_MS,
): Promise<void> {
  const start = performance.now();
  while (!condition()) {
    if (performance.now() - start > ms) {
      throw new Error(`Timed out after ${ms} ms waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}
