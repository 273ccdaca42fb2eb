/**
 * HTTP load client for `bench/http/http.ts` when `wrk` is not installed: drives one
 * server on 127.0.0.1 for a fixed time and prints one JSON line with the
 * result.
 *
 * Usage:
 * `deno run --allow-net bench/http/_load.ts --port P [--connections N] [--seconds S] [--warmup W] [--path /]`
 *
 * Each of `--connections` keep-alive connections (raw `Deno.connect`
 * sockets, no `fetch`) does request/response ping-pong: it writes
 * `GET PATH HTTP/1.1`, reads the response head up to CRLFCRLF, then exactly
 * `content-length` body bytes, and sends the next request, recording each
 * request's latency. A response without `content-length`, or that closes
 * the connection, is an error (the client reconnects and goes on). The first
 * `--warmup` seconds (default 0.25) run but are not counted. A hard stop
 * fires after `seconds + warmup + 10` s whatever happens.
 *
 * Unlike `wrk` (C, one epoll thread) this client is itself a Deno process:
 * with many connections it may saturate before a fast server does, so its
 * figures are lower bounds; the ratios between servers are what to read.
 *
 * @module
 */

import {
  CONNECTIONS,
  parseArgs,
  PORT,
  SECONDS,
  text,
  WARMUP,
} from "../_common/args.ts";
import { printWithHardStop } from "../_common/process.ts";

/** The JSON line printed on stdout. */
export interface HttpLoadResult {
  /** Connections used. */
  connections: number;
  /** Measured window in seconds (warm-up excluded). */
  seconds: number;
  /** Responses completed in the window. */
  requests: number;
  /** `requests / seconds`. */
  requestsPerSecond: number;
  /** Median latency of the counted requests, in milliseconds. */
  p50Ms: number | null;
  /** 99th percentile latency, in milliseconds. */
  p99Ms: number | null;
  /** Responses whose status was not 2xx or 3xx. */
  non2xx: number;
  /** Connection errors and malformed responses (each followed by a reconnect). */
  errors: number;
}

const CRLFCRLF = [0x0d, 0x0a, 0x0d, 0x0a];
const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** The `p` quantile (0..1) of sorted values, nearest rank. */
export function quantile(sorted: Float64Array, p: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.ceil(p * sorted.length) - 1;
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank))]!;
}

class BadResponse extends Error {}

/** One keep-alive connection's reader: bytes in, whole responses out. */
class Client {
  readonly #port: number;
  #conn: Deno.TcpConn | undefined;
  #buf = new Uint8Array(64 * 1024);
  #start = 0;
  #end = 0;

  constructor(port: number) {
    this.#port = port;
  }

  async connect(): Promise<void> {
    this.close();
    this.#conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: this.#port,
    });
    this.#conn.setNoDelay(true);
    this.#start = this.#end = 0;
  }

  close(): void {
    try {
      this.#conn?.close();
    } catch {
      // Already closed.
    }
    this.#conn = undefined;
  }

  async write(bytes: Uint8Array): Promise<void> {
    let off = 0;
    while (off < bytes.byteLength) {
      off += await this.#conn!.write(bytes.subarray(off));
    }
  }

  /** Reads more bytes into the buffer; throws at end of stream. */
  async #fill(): Promise<void> {
    if (this.#start === this.#end) this.#start = this.#end = 0;
    if (this.#end === this.#buf.byteLength) {
      if (this.#start > 0) {
        this.#buf.copyWithin(0, this.#start, this.#end);
        this.#end -= this.#start;
        this.#start = 0;
      } else {
        const bigger = new Uint8Array(this.#buf.byteLength * 2);
        bigger.set(this.#buf);
        this.#buf = bigger;
      }
    }
    const n = await this.#conn!.read(this.#buf.subarray(this.#end));
    if (n === null) throw new BadResponse("The server closed the connection");
    this.#end += n;
  }

  /** Reads one response; returns its status. */
  async response(): Promise<number> {
    // Bytes from #start already searched: the buffer may move on a fill.
    let scanned = 0;
    let headEnd = -1;
    while (true) {
      const buf = this.#buf;
      for (let i = this.#start + scanned; i + 4 <= this.#end; i++) {
        if (
          buf[i] === CRLFCRLF[0] && buf[i + 1] === CRLFCRLF[1] &&
          buf[i + 2] === CRLFCRLF[2] && buf[i + 3] === CRLFCRLF[3]
        ) {
          headEnd = i;
          break;
        }
      }
      if (headEnd >= 0) break;
      scanned = Math.max(0, this.#end - this.#start - 3);
      await this.#fill();
    }
    const head = decoder.decode(this.#buf.subarray(this.#start, headEnd));
    this.#start = headEnd + 4;
    const status = Number(head.slice(9, 12));
    const match = /\r\ncontent-length:[ \t]*(\d+)/i.exec(head);
    if (!head.startsWith("HTTP/1.") || !(status >= 100) || match === null) {
      throw new BadResponse(`Unexpected response head: ${head.slice(0, 80)}`);
    }
    let remaining = Number(match[1]);
    while (remaining > 0) {
      if (this.#start === this.#end) await this.#fill();
      const n = Math.min(remaining, this.#end - this.#start);
      this.#start += n;
      remaining -= n;
    }
    if (/\r\nconnection:[ \t]*close/i.test(head)) {
      throw new BadResponse("The server closed the connection");
    }
    return status;
  }
}

/** Runs the load; resolves with the result. */
export async function run(
  port: number,
  connections: number,
  seconds: number,
  warmup: number,
  path = "/",
): Promise<HttpLoadResult> {
  const request = encoder.encode(
    `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUser-Agent: evthread-bench\r\n\r\n`,
  );
  const clients: Client[] = [];
  let latencies = new Float64Array(1 << 16);
  let counted = 0;
  let non2xx = 0;
  let errors = 0;
  try {
    for (let i = 0; i < connections; i++) {
      const client = new Client(port);
      await client.connect();
      clients.push(client);
    }
    const start = performance.now();
    const measureFrom = start + warmup * 1000;
    const end = measureFrom + seconds * 1000;
    const one = async (client: Client) => {
      while (true) {
        const t0 = performance.now();
        if (t0 >= end) return;
        try {
          await client.write(request);
          const status = await client.response();
          const t1 = performance.now();
          if (t0 >= measureFrom && t1 <= end) {
            if (counted === latencies.length) {
              const bigger = new Float64Array(latencies.length * 2);
              bigger.set(latencies);
              latencies = bigger;
            }
            latencies[counted++] = t1 - t0;
            if (status < 200 || status >= 400) non2xx++;
          }
        } catch (error) {
          errors++;
          if (errors > 1000) {
            throw new Error(`Too many errors; the last: ${error}`);
          }
          await client.connect();
        }
      }
    };
    await Promise.all(clients.map(one));
  } finally {
    for (const client of clients) client.close();
  }
  const sorted = latencies.subarray(0, counted).sort();
  return {
    connections,
    seconds,
    requests: counted,
    requestsPerSecond: counted / seconds,
    p50Ms: quantile(sorted, 0.5),
    p99Ms: quantile(sorted, 0.99),
    non2xx,
    errors,
  };
}

async function main(): Promise<void> {
  const { port, connections, seconds, warmup, path } = parseArgs(Deno.args, {
    port: PORT,
    connections: CONNECTIONS,
    seconds: SECONDS,
    warmup: WARMUP,
    path: text("/PATH", (raw, flag) => {
      if (!raw.startsWith("/")) {
        throw new TypeError(`'${flag}' must start with '/': received '${raw}'`);
      }
    }),
  }, {
    port: 0,
    connections: 100,
    seconds: 3,
    warmup: 0.25,
    path: "/",
  }, { required: ["port"] });
  const limit = seconds + warmup + 10;
  await printWithHardStop(
    limit,
    `http/_load: hard stop after ${limit} s`,
    () => run(port, connections, seconds, warmup, path),
  );
}

if (import.meta.main) {
  await main();
}
