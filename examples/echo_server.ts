// Copyright 2026 the @corothread/evthread authors. MIT license.

/**
 * The seed's echo server (2011), in Deno: a task pool of 100, one task per
 * connection running straight-line `recv` / `send` code with 3 second
 * timeouts, and a graceful drain on Ctrl-C (SIGINT) or SIGTERM.
 *
 * ```sh
 * deno run --allow-net examples/echo_server.ts [PORT] [--hostname HOST]
 * ```
 *
 * - `PORT`: the port to listen on, default 9999; `0` picks a free one.
 * - `--hostname HOST`: the address to listen on, default `127.0.0.1`.
 *
 * Prints `echo server listening on HOST:PORT` (with the real port) once it
 * accepts connections. On SIGINT or SIGTERM it stops accepting, ends idle
 * connections at once (their wait for the next bytes is tied to
 * `thread.draining`), gives echoes in flight up to 5 seconds to finish,
 * prints its counters and exits 0. A second signal during the drain kills
 * the process at once. Try it with `examples/echo_client.ts`, or
 * `nc 127.0.0.1 9999`.
 *
 * The seed's procedure, for comparison:
 *
 * ```c
 * while ((rt = EVSOCKET_recv(socket, buffer, BF_SIZE, 0, TIME_OUT)) > 0) {
 *   if (EVSOCKET_send(socket, buffer, rt, 0, TIME_OUT) != rt) break;
 * }
 * ```
 *
 * @module
 */

import { EvLoop, type EvSocket, type EvThread } from "../mod.ts";

const USAGE =
  "usage: deno run --allow-net examples/echo_server.ts [PORT] [--hostname HOST]";

/** Size of each connection's buffer (the seed's `BF_SIZE`). */
const BF_SIZE = 8192;
/** The seed's `TIME_OUT`: 3 seconds for each recv and each send. */
const TIME_OUT = 3000;
/** How long a drain waits for echoes in flight. */
const GRACE = 5000;

function usage(message: string): never {
  console.error(`echo_server: ${message}`);
  console.error(USAGE);
  Deno.exit(2);
}

function parseArgs(args: string[]): { hostname: string; port: number } {
  let hostname = "127.0.0.1";
  let port: number | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "-h" || arg === "--help") {
      console.log(USAGE);
      Deno.exit(0);
    } else if (arg === "--hostname") {
      const value = args[++i];
      if (value === undefined || value === "") {
        usage("--hostname needs a value");
      }
      hostname = value;
    } else if (arg.startsWith("--hostname=")) {
      hostname = arg.slice("--hostname=".length);
      if (hostname === "") usage("--hostname needs a value");
    } else if (port === undefined && /^\d{1,5}$/.test(arg)) {
      port = Number(arg);
      if (port > 65_535) usage(`PORT must be 0 to 65535: received ${arg}`);
    } else {
      usage(`unexpected argument: ${JSON.stringify(arg)}`);
    }
  }
  return { hostname, port: port ?? 9999 };
}

const { hostname, port } = parseArgs(Deno.args);

const loop = new EvLoop({ capacity: 100 });
let bytesEchoed = 0;

/** Whether `error` means the peer timed out, reset or went away. */
function peerGone(error: unknown): boolean {
  return (error instanceof DOMException && error.name === "TimeoutError") ||
    error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.ConnectionAborted ||
    error instanceof Deno.errors.BrokenPipe;
}

/** One connection's task: the seed's `echo_thread`. */
async function echoThread(
  socket: EvSocket,
  thread: EvThread,
): Promise<void> {
  const buffer = new Uint8Array(BF_SIZE);
  try {
    let rt;
    // Waiting for the next bytes is where a drain may stop us: pass
    // `thread.draining` as its signal. An echo in flight is finished first.
    while (
      (rt = await socket.recv(buffer, {
        timeout: TIME_OUT,
        signal: thread.draining,
      })) !== null
    ) {
      await socket.send(buffer.subarray(0, rt), { timeout: TIME_OUT });
      bytesEchoed += rt;
    }
  } catch (error) {
    // The peer went silent (a timeout, which loop.stats counts) or away:
    // the seed's loop just ends, and so does ours. The rest is rethrown:
    // the drain's abort ends the task quietly, anything else is reported.
    if (!peerGone(error)) throw error;
  }
  // Returning ends the task, which closes the socket.
}

let acceptor;
try {
  acceptor = loop.listen({ hostname, port }, () => echoThread);
} catch (error) {
  console.error(
    `echo_server: cannot listen on ${hostname}:${port}: ${
      error instanceof Error ? error.message : error
    }`,
  );
  Deno.exit(1);
}

const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
function onSignal(): void {
  // Removed at once, so that a second signal kills the process.
  for (const signal of signals) Deno.removeSignalListener(signal, onSignal);
  console.log(`draining (up to ${GRACE} ms) ...`);
  loop.shutdown({ grace: GRACE });
}
for (const signal of signals) Deno.addSignalListener(signal, onSignal);
// Printed once the signals are handled: whoever waits for this line may
// send one.
console.log(
  `echo server listening on ${acceptor.addr.hostname}:${acceptor.port}`,
);

await loop.finished;
const stats = Object.entries(loop.stats).map(([k, v]) => `${k}=${v}`);
console.log(`echo server stopped: echoed ${bytesEchoed} bytes`);
console.log(`stats: ${stats.join(" ")}`);
