// Copyright 2026 the @corothread/evthread authors. MIT license.

/**
 * A full-duplex TCP proxy: what the seed's design could not express ("we
 * can't do both at the same time"). Each connection's task connects to the
 * target, then copies both directions at once, client to target in a child
 * task and target to client in its own, with straight-line `recv` / `send`
 * loops.
 *
 * ```sh
 * deno run --allow-net examples/tcp_proxy.ts LISTEN_PORT TARGET_HOST:PORT \
 *   [--hostname HOST] [--idle-timeout MS]
 * # e.g. in front of the echo server:
 * deno run --allow-net examples/echo_server.ts 9999 &
 * deno run --allow-net examples/tcp_proxy.ts 8888 127.0.0.1:9999
 * deno run --allow-net examples/echo_client.ts 8888 hello
 * ```
 *
 * - `LISTEN_PORT`: the port to listen on; `0` picks a free one.
 * - `TARGET_HOST:PORT`: where to forward to (`[::1]:PORT` for IPv6).
 * - `--hostname HOST`: the address to listen on, default `127.0.0.1`.
 * - `--idle-timeout MS`: close a pair once no byte has moved either way for
 *   this long, default 60000.
 *
 * Prints `tcp proxy listening on HOST:PORT -> TARGET_HOST:PORT`, then a line
 * per connection as it opens and closes. It shows:
 *
 * - **Half-close**: end of stream one way becomes `closeWrite()` on the
 *   other side, and the other direction goes on: a client that sends a
 *   request then shuts its write side still gets the whole reply.
 * - **Idle timeout**: `socket.setIdleTimeout(ms)` on both sockets, so a
 *   dead pair (peer gone without a FIN, both sides silent, or a peer that
 *   stopped reading) is cleaned up instead of holding a slot forever.
 * - **One failure ends the pair**: when either direction fails, the other
 *   is woken with the same error and both sockets close.
 * - **Drain**: on SIGINT or SIGTERM it stops accepting and gives open pairs
 *   up to 5 seconds (a proxy cannot tell where a unit of work ends in an
 *   opaque byte stream), then cuts the rest, prints its counters and exits
 *   0. A second signal kills it at once.
 *
 * The same pump could be written with Web streams,
 * `client.readable.pipeTo(target.writable)`, which also half-closes on end
 * of stream; the loops below make each step and error visible.
 *
 * @module
 */

import { EvLoop, type EvSocket, type EvThread } from "../mod.ts";

const USAGE =
  "usage: deno run --allow-net examples/tcp_proxy.ts LISTEN_PORT TARGET_HOST:PORT [--hostname HOST] [--idle-timeout MS]";

const BUFFER_SIZE = 64 * 1024;
const CONNECT_TIMEOUT = 5000;
const GRACE = 5000;

function usage(message: string): never {
  console.error(`tcp_proxy: ${message}`);
  console.error(USAGE);
  Deno.exit(2);
}

interface Config {
  hostname: string;
  port: number;
  target: { hostname: string; port: number };
  idleTimeout: number;
}

function parsePort(text: string, what: string, min: number): number {
  const port = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(port >= min && port <= 65_535)) {
    usage(`${what} must be ${min} to 65535: received ${JSON.stringify(text)}`);
  }
  return port;
}

function parseArgs(args: string[]): Config {
  let hostname = "127.0.0.1";
  let idleTimeout = 60_000;
  const positional: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const [flag, inline] = arg.startsWith("--") && arg.includes("=")
      ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)]
      : [arg, undefined];
    if (flag === "-h" || flag === "--help") {
      console.log(USAGE);
      Deno.exit(0);
    } else if (flag === "--hostname" || flag === "--idle-timeout") {
      const value = inline ?? args[++i];
      if (value === undefined || value === "") usage(`${flag} needs a value`);
      if (flag === "--hostname") {
        hostname = value;
      } else {
        idleTimeout = /^\d+$/.test(value) ? Number(value) : NaN;
        if (!(idleTimeout > 0)) {
          usage(`--idle-timeout must be a positive number of ms: ${value}`);
        }
      }
    } else if (arg.startsWith("-") && arg.length > 1) {
      usage(`unknown option: ${arg}`);
    } else {
      positional.push(arg);
    }
  }
  if (positional.length !== 2) {
    usage(
      `expected LISTEN_PORT and TARGET_HOST:PORT, got ${
        positional.length === 0 ? "nothing" : positional.join(" ")
      }`,
    );
  }
  const port = parsePort(positional[0]!, "LISTEN_PORT", 0);
  const spec = positional[1]!;
  const colon = spec.lastIndexOf(":");
  let targetHost = colon > 0 ? spec.slice(0, colon) : "";
  if (targetHost.startsWith("[") && targetHost.endsWith("]")) {
    targetHost = targetHost.slice(1, -1);
  }
  if (targetHost === "") {
    usage(`TARGET_HOST:PORT expected: received ${JSON.stringify(spec)}`);
  }
  const targetPort = parsePort(spec.slice(colon + 1), "the target's PORT", 1);
  return {
    hostname,
    port,
    target: { hostname: targetHost, port: targetPort },
    idleTimeout,
  };
}

const config = parseArgs(Deno.args);
const { target, idleTimeout } = config;
const targetName = target.hostname.includes(":")
  ? `[${target.hostname}]:${target.port}`
  : `${target.hostname}:${target.port}`;

function describe(error: unknown): string {
  return error instanceof Error
    ? `${error.name}: ${error.message}`
    : `${error}`;
}

function addr(a: Deno.Addr): string {
  return "hostname" in a ? `${a.hostname}:${a.port}` : a.transport;
}

let nextId = 1;
const totals = { pairs: 0, up: 0, down: 0 };

/**
 * Copies `from` to `to` until end of stream, then passes the end on as a
 * half-close. `count` is told of every chunk. No per-call timeouts: the
 * sockets' idle timeout ends a pair where nothing moves.
 */
async function pump(
  from: EvSocket,
  to: EvSocket,
  count: (n: number) => void,
): Promise<void> {
  const buf = new Uint8Array(BUFFER_SIZE);
  let n;
  while ((n = await from.recv(buf)) !== null) {
    await to.send(buf.subarray(0, n));
    count(n);
  }
  await to.closeWrite();
}

/** One client connection's task. */
async function proxy(client: EvSocket, thread: EvThread): Promise<void> {
  const id = nextId++;
  const peer = addr(client.remoteAddr);
  let upstream: EvSocket;
  try {
    // A drain stops a connect in progress: no new pair starts then.
    upstream = await thread.connect(target, {
      timeout: CONNECT_TIMEOUT,
      signal: thread.draining,
    });
  } catch (error) {
    console.log(
      `#${id} ${peer}: cannot reach ${targetName}: ${describe(error)}`,
    );
    return; // Ending the task closes the client's socket.
  }
  totals.pairs++;
  console.log(`#${id} ${peer} -> ${targetName}: open`);
  for (const socket of [client, upstream]) {
    socket.setNoDelay(true);
    socket.setIdleTimeout(idleTimeout);
  }

  let up = 0;
  let down = 0;
  // Client to target in a child task (it shares this task's pool slot and
  // ends with it). If it fails, it aborts this task with its error, which
  // wakes the other direction's pending call with that same error.
  const upload = thread.spawn(async () => {
    try {
      await pump(client, upstream, (n) => {
        up += n;
        totals.up += n;
      });
    } catch (error) {
      thread.abort(error);
    }
  });
  try {
    // Target to client, here, at the same time.
    await pump(upstream, client, (n) => {
      down += n;
      totals.down += n;
    });
    await upload.result;
    if (thread.signal.aborted) throw thread.signal.reason;
    console.log(`#${id} ${peer}: closed, ${up} bytes up, ${down} down`);
  } catch (error) {
    console.log(
      `#${id} ${peer}: dropped after ${up} bytes up, ${down} down: ${
        describe(error)
      }`,
    );
  }
  // Returning ends the task: the child is done, both sockets close.
}

const loop = new EvLoop({ capacity: 256 });
let acceptor;
try {
  acceptor = loop.listen(
    { hostname: config.hostname, port: config.port },
    () => proxy,
  );
} catch (error) {
  console.error(
    `tcp_proxy: cannot listen on ${config.hostname}:${config.port}: ${
      describe(error)
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
  `tcp proxy listening on ${acceptor.addr.hostname}:${acceptor.port} -> ${targetName}`,
);

await loop.finished;
const stats = Object.entries(loop.stats).map(([k, v]) => `${k}=${v}`);
console.log(
  `tcp proxy stopped: ${totals.pairs} pairs, ${totals.up} bytes up, ${totals.down} down`,
);
console.log(`stats: ${stats.join(" ")}`);
