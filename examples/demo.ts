// Copyright 2026 the @corothread/evthread authors. MIT license.

/**
 * The whole idea on one screen: the seed's echo server and 100 client
 * tasks, in one process. Each client connects, sends a few messages of
 * different sizes, checks that every echo comes back byte for byte, and
 * half-closes; the server's tasks end on that end of stream. Then the demo
 * prints a report and shuts the server down gracefully.
 *
 * ```sh
 * deno run --allow-net examples/demo.ts [PORT]
 * ```
 *
 * `PORT` defaults to 9999; `0` picks a free one. It listens on 127.0.0.1
 * only. Exits 0 when every echo matched, 1 otherwise; Ctrl-C (SIGINT) or
 * SIGTERM stops it early (exit 1). It takes well under a second.
 *
 * Every connection is straight-line code with a timeout on each call; the
 * server and the clients are each bounded by a task pool of 100 slots.
 *
 * @module
 */

import {
  EvLoop,
  type EvLoopStats,
  type EvSocket,
  type EvTcpAcceptor,
  type EvThread,
} from "../mod.ts";

const USAGE = "usage: deno run --allow-net examples/demo.ts [PORT]";
const CLIENTS = 100;
const MESSAGES = 5;
const TIMEOUT = 3000;

const arg = Deno.args[0];
if (arg === "-h" || arg === "--help") {
  console.log(USAGE);
  Deno.exit(0);
}
const port = arg === undefined ? 9999 : /^\d{1,5}$/.test(arg) ? +arg : NaN;
if (Deno.args.length > 1 || !(port >= 0 && port <= 65_535)) {
  console.error(`demo: bad arguments: ${Deno.args.join(" ")}`);
  console.error(USAGE);
  Deno.exit(2);
}

const started = performance.now();

// Two loops, each with a task pool of 100: the server's and the clients'.
const server = new EvLoop({ capacity: 100 });
const clients = new EvLoop({ capacity: CLIENTS });

// Ctrl-C or SIGTERM: stop the clients at once, drain the server.
const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
let interrupted = false;
function onSignal(): void {
  interrupted = true;
  removeSignalListeners();
  clients.shutdown({ grace: 0 });
  server.shutdown({ grace: 1000 });
}
function removeSignalListeners(): void {
  for (const signal of signals) Deno.removeSignalListener(signal, onSignal);
}
for (const signal of signals) Deno.addSignalListener(signal, onSignal);

// ---- the server: the seed's echo server, one task per connection
async function echo(socket: EvSocket, thread: EvThread): Promise<void> {
  const buf = new Uint8Array(8192);
  while (true) {
    // Waiting for the next bytes ends at once when a drain starts.
    const n = await socket.recv(buf, {
      timeout: TIMEOUT,
      signal: thread.draining,
    });
    if (n === null) return; // end of stream: the client is done
    await socket.send(buf.subarray(0, n), { timeout: TIMEOUT });
  }
}

let acceptor: EvTcpAcceptor;
try {
  acceptor = server.listen({ hostname: "127.0.0.1", port }, () => echo);
} catch (error) {
  console.error(`demo: cannot listen on 127.0.0.1:${port}: ${error}`);
  Deno.exit(1);
}
const serverPort = acceptor.port;
console.log(`echo server listening on 127.0.0.1:${serverPort}`);

// ---- the clients: 100 tasks at once, each checking its echoes
const encoder = new TextEncoder();
let bytesEchoed = 0;
let mismatches = 0;

/** Message `m` of client `c`: from 1 byte to 40 KB, different for each. */
function message(c: number, m: number): Uint8Array {
  const size = 1 + ((c * 7919 + m * 104_729) % 40_000);
  const text = `client ${c} message ${m} `;
  return encoder.encode(text.repeat(Math.ceil(size / text.length)))
    .subarray(0, size);
}

async function client(thread: EvThread, c: number): Promise<void> {
  const socket = await thread.connect({ port: serverPort }, {
    timeout: TIMEOUT,
  });
  for (let m = 0; m < MESSAGES; m++) {
    const sent = message(c, m);
    await socket.send(sent, { timeout: TIMEOUT });
    const echo = await socket.readFull(new Uint8Array(sent.byteLength), {
      timeout: TIMEOUT,
    });
    if (echo === null || !equal(echo, sent)) {
      mismatches++;
      throw new Error(`client ${c}: echo ${m} does not match`);
    }
    bytesEchoed += sent.byteLength;
  }
  await socket.closeWrite({ timeout: TIMEOUT });
  // Our end of stream ends the server's task, which closes its socket: we
  // read end of stream in turn.
  if (await socket.recv(new Uint8Array(1), { timeout: TIMEOUT }) !== null) {
    mismatches++;
    throw new Error(`client ${c}: bytes after the last echo`);
  }
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

const tasks = Array.from(
  { length: CLIENTS },
  (_, c) => clients.spawn((thread) => client(thread, c)),
);

const results = await Promise.allSettled(tasks.map((t) => t.result));
const served = results.filter((r) => r.status === "fulfilled").length;
const elapsed = performance.now() - started;

// Every client is done, so the server's tasks are ending by themselves:
// shut down in order (no time needed) and stop listening for signals.
await clients.shutdown({ grace: 1000 });
await server.shutdown({ grace: 1000 });
removeSignalListeners();

function format(stats: EvLoopStats, first: keyof EvLoopStats): string {
  return `${first}=${stats[first]} ended=${stats.ended} ` +
    `peakActive=${stats.peakActive}/${stats.capacity} ` +
    `timeouts=${stats.timeouts} errors=${stats.errors}`;
}

console.log(`clients served: ${served}/${CLIENTS}, ${MESSAGES} messages each`);
console.log(`bytes echoed:   ${bytesEchoed}, every byte checked`);
console.log(`mismatches:     ${mismatches}`);
console.log(`server stats:   ${format(server.stats, "accepted")}`);
console.log(`client stats:   ${format(clients.stats, "spawned")}`);
console.log(`elapsed:        ${elapsed.toFixed(0)} ms`);
if (interrupted || served !== CLIENTS || mismatches > 0) {
  console.log(interrupted ? "interrupted" : "FAILED");
  Deno.exitCode = 1;
} else {
  console.log("ok: every echo matched; shut down gracefully");
}
