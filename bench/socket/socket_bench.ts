/**
 * Micro benchmarks of one 64-byte round trip over loopback, against an echo
 * peer (a plain `Deno.Conn` read/write loop) in the same process.
 *
 * Run: `deno bench --allow-net bench/socket/socket_bench.ts`
 *
 * Groups:
 * - "recv+send 64B round trip": raw `conn.write` + `conn.read` (baseline);
 *   `EvSocket` `send` + `recv` without a timeout; the same with
 *   `{ timeout: 3000 }` on both calls (one shared deadline queue); and a raw
 *   conn with a per-call `AbortSignal.timeout(3000)` + `AbortSignal.any` raced
 *   against each call, which is what a `deadline()` wrapper costs. The
 *   timeout case runs twice: alone, and while another socket holds a long idle
 *   timeout, since the shared queue arms and clears its timer whenever it goes
 *   from empty to one deadline and back (once per call on a lone socket).
 * - "read path": raw `conn.read` (baseline) vs a `conn.readable` reader.
 * - "1 MiB round trip": 1 MiB sent and read back at once, raw (baseline)
 *   vs `EvSocket` `send` + `readFull` without and with a timeout: what the
 *   socket's copies (sends through its staging buffer, reads through its
 *   buffer) cost on bulk data.
 *
 * Every connection has its own echo peer, so the benchmarks do not share
 * buffers. Everything is closed on `unload`.
 *
 * @module
 */

import { EvLoop, type EvSocket } from "../../mod.ts";

const SIZE = 64;
const TIMEOUT_MS = 3000;
const PAIRS = 11;
const BULK = 1 << 20;

const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
const clients: Deno.TcpConn[] = [];
const peers: Deno.TcpConn[] = [];

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
}

/** Echoes until EOF or an error (the conn being closed at unload). */
async function echoPeer(conn: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(64 * 1024);
  try {
    while (true) {
      const n = await conn.read(buf);
      if (n === null) return;
      await writeAll(conn, buf.subarray(0, n));
    }
  } catch {
    // Closed at unload.
  }
}

/** A connected client whose peer echoes. */
async function echoPair(): Promise<Deno.TcpConn> {
  if (clients.length >= PAIRS) throw new RangeError(`At most ${PAIRS} pairs`);
  const accepted = listener.accept();
  const client = await Deno.connect({
    hostname: "127.0.0.1",
    port: listener.addr.port,
  });
  const peer = await accepted;
  client.setNoDelay(true);
  peer.setNoDelay(true);
  clients.push(client);
  peers.push(peer);
  echoPeer(peer);
  return client;
}

/** Reads exactly `buf.length` bytes with `conn.read`. */
async function readFull(conn: Deno.Conn, buf: Uint8Array): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const n = await conn.read(buf.subarray(off));
    if (n === null) throw new Deno.errors.UnexpectedEof("Echo peer closed");
    off += n;
  }
}

/**
 * Rejects with a `TimeoutError` if `promise` takes longer than `ms`: one
 * `AbortSignal.timeout` and one `AbortSignal.any` per call, as @std/async's
 * `deadline` does.
 */
function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T> {
  const signal = AbortSignal.any([AbortSignal.timeout(ms)]);
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}

const ping = new Uint8Array(SIZE).fill(7);

/** One round trip with `send` + `recv` on an EvSocket. */
async function evRoundTrip(
  socket: EvSocket,
  back: Uint8Array,
  options?: { timeout: number },
): Promise<void> {
  await socket.send(ping, options);
  let got = 0;
  while (got < SIZE) {
    const n = await socket.recv(back.subarray(got), options);
    if (n === null) throw new Deno.errors.UnexpectedEof("Echo peer closed");
    got += n;
  }
}

const rawConn = await echoPair();
const rawDeadlineConn = await echoPair();
const readRawConn = await echoPair();
const streamConn = await echoPair();
const streamReader = streamConn.readable.getReader();
const evPlainConn = await echoPair();
const evTimedConn = await echoPair();
const evBusyConn = await echoPair();
const idleConn = await echoPair();
const bulkRawConn = await echoPair();
const bulkPlainConn = await echoPair();
const bulkTimedConn = await echoPair();

const loop = new EvLoop({ capacity: 4 });
const { promise: released, resolve: release } = Promise.withResolvers<void>();
const { promise: adopted, resolve: handOver } = Promise.withResolvers<
  EvSocket[]
>();
loop.spawn(async (thread) => {
  const plain = thread.adopt(evPlainConn);
  const timed = thread.adopt(evTimedConn);
  const busy = thread.adopt(evBusyConn);
  const idle = thread.adopt(idleConn);
  const bulkPlain = thread.adopt(bulkPlainConn);
  const bulkTimed = thread.adopt(bulkTimedConn);
  handOver([plain, timed, busy, idle, bulkPlain, bulkTimed]);
  await released;
});
const sockets = await adopted;
const [evPlain, evTimed, evBusy, idle, bulkPlain, bulkTimed] = sockets as [
  EvSocket,
  EvSocket,
  EvSocket,
  EvSocket,
  EvSocket,
  EvSocket,
];

globalThis.addEventListener("unload", () => {
  release();
  for (const socket of sockets) socket.close();
  streamReader.releaseLock();
  for (const conn of [...clients, ...peers]) {
    try {
      conn.close();
    } catch {
      // Already closed (the EvSocket owned it).
    }
  }
  listener.close();
});

{
  const back = new Uint8Array(SIZE);
  Deno.bench({
    group: "recv+send 64B round trip",
    name: "raw conn.write + conn.read",
    baseline: true,
    async fn() {
      await writeAll(rawConn, ping);
      await readFull(rawConn, back);
    },
  });
}

{
  const back = new Uint8Array(SIZE);
  Deno.bench({
    group: "recv+send 64B round trip",
    name: "EvSocket send + recv, no timeout",
    // `Deno.bench` awaits only `async` functions, not ones returning a promise.
    async fn() {
      await evRoundTrip(evPlain, back);
    },
  });
}

{
  const back = new Uint8Array(SIZE);
  const options = { timeout: TIMEOUT_MS };
  Deno.bench({
    group: "recv+send 64B round trip",
    name: "EvSocket send + recv, { timeout: 3000 }",
    async fn() {
      await evRoundTrip(evTimed, back, options);
    },
  });
}

{
  const back = new Uint8Array(SIZE);
  const options = { timeout: TIMEOUT_MS };
  // A deadline far in the future keeps the process-wide queue non-empty. It
  // is set on the first call, not at setup, so that the benchmarks registered
  // before this one run with an empty queue.
  let armed = false;
  Deno.bench({
    group: "recv+send 64B round trip",
    name: "EvSocket { timeout: 3000 }, another deadline pending",
    async fn() {
      if (!armed) {
        idle.setIdleTimeout(600_000);
        armed = true;
      }
      await evRoundTrip(evBusy, back, options);
    },
  });
}

{
  const back = new Uint8Array(SIZE);
  Deno.bench({
    group: "recv+send 64B round trip",
    name: "raw conn + AbortSignal.timeout(3000) per call",
    async fn() {
      let off = 0;
      while (off < SIZE) {
        off += await withDeadline(
          rawDeadlineConn.write(ping.subarray(off)),
          TIMEOUT_MS,
        );
      }
      let got = 0;
      while (got < SIZE) {
        const n = await withDeadline(
          rawDeadlineConn.read(back.subarray(got)),
          TIMEOUT_MS,
        );
        if (n === null) throw new Deno.errors.UnexpectedEof("Echo peer closed");
        got += n;
      }
    },
  });
}

{
  const back = new Uint8Array(SIZE);
  Deno.bench({
    group: "read path",
    name: "conn.read into a reused buffer",
    baseline: true,
    async fn() {
      await writeAll(readRawConn, ping);
      await readFull(readRawConn, back);
    },
  });
}

Deno.bench({
  group: "read path",
  name: "conn.readable reader.read()",
  async fn() {
    await writeAll(streamConn, ping);
    let got = 0;
    while (got < SIZE) {
      const { value, done } = await streamReader.read();
      if (done) throw new Deno.errors.UnexpectedEof("Echo peer closed");
      got += value.byteLength;
    }
  },
});

{
  const out = new Uint8Array(BULK).fill(9);
  const back = new Uint8Array(BULK);
  Deno.bench({
    group: "1 MiB round trip",
    name: "raw conn.write + conn.read",
    baseline: true,
    async fn() {
      await Promise.all([
        writeAll(bulkRawConn, out),
        readFull(bulkRawConn, back),
      ]);
    },
  });
  Deno.bench({
    group: "1 MiB round trip",
    name: "EvSocket send + readFull, no timeout",
    async fn() {
      await Promise.all([bulkPlain.send(out), bulkPlain.readFull(back)]);
    },
  });
  const options = { timeout: TIMEOUT_MS };
  Deno.bench({
    group: "1 MiB round trip",
    name: "EvSocket send + readFull, { timeout: 3000 }",
    async fn() {
      await Promise.all([
        bulkTimed.send(out, options),
        bulkTimed.readFull(back, options),
      ]);
    },
  });
}
