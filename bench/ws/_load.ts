/**
 * Load client for `bench/ws/ws.ts`: one WebSocket client for every server.
 * It speaks the protocol on raw `Deno.Conn`s (the handshake, masked frames
 * built once, replies parsed in place), so that it costs little beside the
 * server it drives, and prints one JSON line with the result.
 *
 * Usage:
 * `deno run --allow-net bench/ws/_load.ts --port P --scenario S --seconds N
 * [--warmup W] [--type binary|text]`
 *
 * Scenarios (each connection has one message in flight: it sends, waits
 * for the whole echo, checks it, and sends again):
 * - `small-1`: 32 B messages on one connection (messages/s);
 * - `small-100`: the same on 100 connections at once;
 * - `large`: 1 MiB messages on one connection (MB/s: 10^6 bytes of echoed
 *   payload a second).
 *
 * The first `--warmup` seconds (default 0.25) are run but not counted; the
 * result says how many messages were echoed in all (`total`), for CPU per
 * message. A hard stop fires after `seconds + warmup + 10` s.
 *
 * @module
 */

import { choice, parseArgs, PORT, SECONDS, WARMUP } from "../_common/args.ts";
import { printWithHardStop } from "../_common/process.ts";

/** The JSON line printed on stdout. */
export interface LoadResult {
  scenario: Scenario;
  /** `msg/s` (messages echoed a second) or `MB/s` (echoed payload). */
  unit: "msg/s" | "MB/s";
  /** The measured rate. */
  value: number;
  /** Measured window in seconds (warm-up excluded). */
  seconds: number;
  /** Messages echoed in the window. */
  count: number;
  /** Messages echoed in all, warm-up included. */
  total: number;
  /** Payload bytes of one message. */
  size: number;
  connections: number;
}

/** The scenarios, as `--scenario` takes them. */
export const SCENARIOS = ["small-1", "small-100", "large"] as const;
export type Scenario = typeof SCENARIOS[number];

const SHAPES: Record<Scenario, { size: number; connections: number }> = {
  "small-1": { size: 32, connections: 1 },
  "small-100": { size: 32, connections: 100 },
  "large": { size: 1_048_576, connections: 1 },
};
const KEY = "dGhlIHNhbXBsZSBub25jZQ==";
const MASK = [0x37, 0xfa, 0x21, 0x3d] as const;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let at = 0;
  while (at < data.byteLength) at += await conn.write(data.subarray(at));
}

/** A masked client frame with `payload` (FIN set). */
function clientFrame(opcode: number, payload: Uint8Array): Uint8Array {
  const n = payload.byteLength;
  const head = n < 126 ? 2 : n < 65_536 ? 4 : 10;
  const out = new Uint8Array(head + 4 + n);
  out[0] = 0x80 | opcode;
  if (head === 2) {
    out[1] = 0x80 | n;
  } else if (head === 4) {
    out[1] = 0x80 | 126;
    out[2] = n >> 8;
    out[3] = n & 0xff;
  } else {
    out[1] = 0x80 | 127;
    new DataView(out.buffer).setBigUint64(2, BigInt(n));
  }
  out.set(MASK, head);
  for (let i = 0; i < n; i++) out[head + 4 + i] = payload[i]! ^ MASK[i & 3]!;
  return out;
}

/**
 * One client connection: the opening handshake, then echoes of one
 * prepared message. Replies are read into one buffer; each must be one
 * unfragmented, unmasked frame of the message's opcode and size, with the
 * message's first and last bytes (control frames in between are skipped).
 */
class Client {
  readonly conn: Deno.TcpConn;
  #frame: Uint8Array;
  #opcode: number;
  #payload: Uint8Array;
  #buf: Uint8Array;
  #start = 0;
  #end = 0;

  private constructor(
    conn: Deno.TcpConn,
    opcode: number,
    payload: Uint8Array,
  ) {
    this.conn = conn;
    this.#opcode = opcode;
    this.#payload = payload;
    this.#frame = clientFrame(opcode, payload);
    this.#buf = new Uint8Array(Math.max(65_536, payload.byteLength + 16));
  }

  static async open(
    port: number,
    opcode: number,
    payload: Uint8Array,
  ): Promise<Client> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.setNoDelay(true);
    const client = new Client(conn, opcode, payload);
    await writeAll(
      conn,
      encoder.encode(
        `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\n` +
          `Connection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\n` +
          `Sec-WebSocket-Version: 13\r\n\r\n`,
      ),
    );
    await client.#readHead();
    return client;
  }

  async #readHead(): Promise<void> {
    for (let i = 0; i < 64; i++) {
      const text = decoder.decode(this.#buf.subarray(0, this.#end));
      const end = text.indexOf("\r\n\r\n");
      if (end >= 0) {
        if (!text.startsWith("HTTP/1.1 101")) {
          throw new Error(`Handshake refused: ${text.split("\r\n")[0]}`);
        }
        this.#start = end + 4; // the head is ASCII: chars are bytes
        return;
      }
      if (!await this.#fill()) break;
    }
    throw new Error("No handshake response");
  }

  /** Reads more; false at end of stream. */
  async #fill(): Promise<boolean> {
    if (this.#start === this.#end) {
      this.#start = this.#end = 0;
    } else if (this.#buf.byteLength - this.#end < 4096) {
      this.#buf.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    const n = await this.conn.read(this.#buf.subarray(this.#end));
    if (n === null) return false;
    this.#end += n;
    return true;
  }

  /** Sends the message and waits for its echo. */
  async echo(): Promise<void> {
    await writeAll(this.conn, this.#frame);
    while (true) {
      const b = this.#buf;
      const have = this.#end - this.#start;
      if (have >= 2) {
        const s = this.#start;
        const len7 = b[s + 1]! & 0x7f;
        const head = len7 < 126 ? 2 : len7 === 126 ? 4 : 10;
        if (have >= head) {
          const n = head === 2
            ? len7
            : head === 4
            ? (b[s + 2]! << 8) | b[s + 3]!
            : Number(new DataView(b.buffer).getBigUint64(s + 2));
          if (have >= head + n) {
            const opcode = b[s]! & 0x0f;
            this.#start += head + n;
            if (opcode >= 8) continue; // a ping or pong: skip it
            const payload = b.subarray(s + head, s + head + n);
            const want = this.#payload;
            if (
              b[s]! !== (0x80 | this.#opcode) ||
              n !== want.byteLength ||
              (n > 0 &&
                (payload[0] !== want[0] || payload[n - 1] !== want[n - 1]))
            ) {
              throw new Error(
                `Not the echo: opcode ${opcode}, ${n} bytes for ${want.byteLength}`,
              );
            }
            return;
          }
        }
      }
      if (!await this.#fill()) throw new Error("The server closed");
    }
  }

  close(): void {
    try {
      this.conn.close();
    } catch {
      // Closed already.
    }
  }
}

async function run(
  port: number,
  scenario: Scenario,
  type: "binary" | "text",
  warmup: number,
  seconds: number,
): Promise<LoadResult> {
  const { size, connections } = SHAPES[scenario];
  const payload = new Uint8Array(size);
  // Printable ASCII, so that the text form is valid UTF-8 of the same size.
  for (let i = 0; i < size; i++) payload[i] = 0x21 + (i * 7 + (i >> 9)) % 94;
  const opcode = type === "text" ? 1 : 2;
  const clients: Client[] = [];
  try {
    for (let i = 0; i < connections; i++) {
      clients.push(await Client.open(port, opcode, payload));
    }
    const started = performance.now();
    const from = started + warmup * 1000;
    const until = from + seconds * 1000;
    let counted = 0;
    let total = 0;
    await Promise.all(clients.map(async (client) => {
      while (true) {
        const sent = performance.now();
        if (sent >= until) return;
        await client.echo();
        total++;
        if (sent >= from && performance.now() <= until) counted++;
      }
    }));
    return {
      scenario,
      unit: scenario === "large" ? "MB/s" : "msg/s",
      value: scenario === "large"
        ? counted * size / 1e6 / seconds
        : counted / seconds,
      seconds,
      count: counted,
      total,
      size,
      connections,
    };
  } finally {
    for (const client of clients) client.close();
  }
}

async function main(): Promise<void> {
  const { port, scenario, seconds, warmup, type } = parseArgs(Deno.args, {
    port: PORT,
    scenario: choice(SCENARIOS),
    seconds: SECONDS,
    warmup: WARMUP,
    type: choice(["binary", "text"] as const),
  }, {
    port: 0,
    scenario: "small-1",
    seconds: 3,
    warmup: 0.25,
    type: "binary",
  }, { required: ["port"] });
  const limit = seconds + warmup + 10;
  await printWithHardStop(
    limit,
    `ws/_load: hard stop after ${limit} s (${scenario})`,
    () => run(port, scenario, type, warmup, seconds),
  );
}

if (import.meta.main) {
  await main();
}
