// Copyright 2026 the @corothread/evthread authors. MIT license.
/**
 * An echo server for the EMFILE tests of ev_tcp_acceptor_test.ts, run under a
 * low `ulimit -n`. Prints `port <n>` on stdout once it listens, and one
 * `accept-error <name>: <message>` line on stderr per distinct kind of failed
 * accept (task errors print `task-error ...`).
 *
 * Modes (first argument):
 * - `clients` (default): the test's clients use up the descriptors. On
 *   SIGTERM it shuts the loop down, prints `stopped` and exits with code 0.
 *   A timer keeps the process alive apart from the acceptor, so that this
 *   mode tests only the accept loop's recovery.
 * - `fill`: the server itself opens /dev/null until it runs out of
 *   descriptors (needs --allow-read), and closes those files at its third
 *   failed accept, printing `released`. It has no signal listener, no
 *   connection and no other pending operation while it backs off: only the
 *   acceptor keeps it alive.
 *
 * @module
 */

import { EvLoop, type EvSocket, EvThread } from "../../mod.ts";

const mode = Deno.args[0] ?? "clients";

// Deno 2.9.6 sets up its signal machinery lazily, and panics when that
// happens with no descriptor left ("ext/signals/lib.rs:58: Too many open
// files"): set it up now, while descriptors are free.
const noop = () => {};
Deno.addSignalListener("SIGUSR2", noop);
Deno.removeSignalListener("SIGUSR2", noop);
const kinds = new Set<string>();
const fillers: Deno.FsFile[] = [];
let acceptErrors = 0;

async function echo(socket: EvSocket): Promise<void> {
  const buf = new Uint8Array(4096);
  let n: number | null;
  while ((n = await socket.recv(buf)) !== null) {
    await socket.send(buf.subarray(0, n));
  }
}

const loop = new EvLoop({
  capacity: 10_000,
  onError(error, source) {
    if (source instanceof EvThread) {
      console.error(`task-error ${String(error)}`);
      return;
    }
    acceptErrors++;
    const kind = error instanceof Error
      ? `${error.name}: ${error.message}`
      : String(error);
    if (!kinds.has(kind)) {
      kinds.add(kind);
      console.error(`accept-error ${kind}`);
    }
    if (mode === "fill" && acceptErrors === 3) {
      for (const file of fillers.splice(0)) file.close();
      console.error("released");
    }
  },
});
const acceptor = loop.listen({ hostname: "127.0.0.1", port: 0 }, () => echo);

if (mode === "fill") {
  try {
    while (fillers.length < 100_000) fillers.push(Deno.openSync("/dev/null"));
  } catch (error) {
    console.error(`filled ${fillers.length}: ${String(error)}`);
  }
}
console.log(`port ${acceptor.port}`);

if (mode === "clients") {
  const keepAlive = setInterval(() => {}, 60_000);
  const onTerm = () => {
    Deno.removeSignalListener("SIGTERM", onTerm);
    clearInterval(keepAlive);
    loop.shutdown({ grace: 0 }).then(() => console.error("stopped"));
  };
  Deno.addSignalListener("SIGTERM", onTerm);
}
