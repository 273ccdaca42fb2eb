// Copyright 2026 the @corothread/evthread authors. MIT license.

import {
  assert,
  assertEquals,
  assertGreater,
  assertInstanceOf,
  assertLess,
  assertLessOrEqual,
  assertRejects,
  assertStrictEquals,
  assertStringIncludes,
  assertThrows,
  fail,
} from "@std/assert";
import {
  type EvConnectionFactory,
  type EvConnectionInfo,
  type EvListenOptions,
  EvLoop,
  EvThread,
} from "../mod.ts";
import {
  assertBytes,
  closeQuietly,
  connect,
  decoder,
  echo,
  encoder,
  eventually,
  Gate,
  HOST,
  inBatches,
  Latch,
  openFds,
  payload,
  quietLoop,
  readLine,
  readToEnd,
  readUntilClosed,
  tally,
  withTimeout,
  writeAll,
} from "./_helpers.ts";

/** Sends `bytes`, half-closes, and returns all the server sent back. */
async function roundTrip(port: number, bytes: Uint8Array): Promise<Uint8Array> {
  const conn = await connect(port);
  try {
    const reading = readToEnd(conn);
    await writeAll(conn, bytes);
    await conn.closeWrite();
    return await reading;
  } finally {
    closeQuietly(conn);
  }
}

// ------------------------------------------------------------ pool policy

Deno.test('EvLoop.listen() with policy "wait" never runs more tasks than the capacity and serves every client', async () => {
  const { loop, reports } = quietLoop(5);
  let running = 0;
  let mostRunning = 0;
  const fiveRunning = new Latch(5);
  const gate = new Gate();
  const acceptor = loop.listen(
    { hostname: HOST, port: 0, policy: "wait" },
    () => async (socket) => {
      running++;
      mostRunning = Math.max(mostRunning, running);
      fiveRunning.count();
      try {
        await gate.opened;
        const line = await socket.readLine();
        await socket.send(encoder.encode(`served ${line}\n`));
        // Hold the slot until the client hangs up.
        await socket.recv(new Uint8Array(1));
      } finally {
        running--;
      }
    },
  );
  const connected = new Latch(30);
  const clients = Array.from({ length: 30 }, async (_, i) => {
    const conn = await connect(acceptor.port);
    try {
      connected.count();
      await writeAll(conn, encoder.encode(`client ${i}\n`));
      return await readLine(conn);
    } finally {
      closeQuietly(conn);
    }
  });
  await withTimeout(
    Promise.all([connected.reached, fiveRunning.reached]),
    10_000,
    "30 connects and 5 running tasks",
  );
  // One more is accepted and held (no task, factory not run) until a slot
  // frees; the other 24 wait in the kernel's backlog.
  await eventually(() => acceptor.held === 1, "the sixth connection held");
  assertEquals(loop.stats.active, 5);
  assertEquals(acceptor.accepted, 6);
  assertEquals(loop.stats.held, 1);
  assertEquals(running, 5);
  gate.open();
  const replies = await withTimeout(
    Promise.all(clients),
    20_000,
    "30 clients served",
  );
  assertEquals(replies, replies.map((_, i) => `served client ${i}`));
  assertEquals(mostRunning, 5);
  assertLessOrEqual(loop.stats.peakActive, 5);
  assertEquals(loop.stats.accepted, 30);
  assertEquals(loop.stats.refused, 0);
  assertEquals(reports, []);
  await loop.shutdown({ grace: 5000 });
});

/**
 * Starts a loop with capacity 5 and policy "refuse", with all five slots
 * held by clients whose tasks wait on `gate`.
 */
async function fullRefusingLoop(
  onRefuse?: EvListenOptions["onRefuse"],
): Promise<{
  loop: EvLoop;
  port: number;
  factoryCalls: () => number;
  release: () => Promise<string[]>;
}> {
  const { loop } = quietLoop(5);
  let calls = 0;
  const held = new Latch(5);
  const gate = new Gate();
  const acceptor = loop.listen(
    {
      hostname: HOST,
      port: 0,
      policy: "refuse",
      ...(onRefuse === undefined ? {} : { onRefuse }),
    },
    () => {
      calls++;
      return async (socket) => {
        held.count();
        await gate.opened;
        await socket.send(encoder.encode("bye\n"));
      };
    },
  );
  const holders = await Promise.all(
    Array.from({ length: 5 }, () => connect(acceptor.port)),
  );
  await withTimeout(held.reached, 10_000, "5 held tasks");
  return {
    loop,
    port: acceptor.port,
    factoryCalls: () => calls,
    release: async () => {
      gate.open();
      const lines = await Promise.all(holders.map((c) => readToEnd(c)));
      for (const conn of holders) closeQuietly(conn);
      await loop.shutdown({ grace: 5000 });
      return lines.map((l) => decoder.decode(l));
    },
  };
}

Deno.test('EvLoop.listen() with policy "refuse" closes excess connections at once without calling the factory', async () => {
  const { loop, port, factoryCalls, release } = await fullRefusingLoop();
  const excess = await withTimeout(
    Promise.all(Array.from({ length: 25 }, async () => {
      const conn = await connect(port);
      try {
        return await readUntilClosed(conn);
      } finally {
        closeQuietly(conn);
      }
    })),
    10_000,
    "25 refused clients to be closed while the pool is full",
  );
  for (const end of excess) assertEquals(end.bytes.byteLength, 0);
  assertEquals(factoryCalls(), 5);
  assertEquals(loop.stats.refused, 25);
  assertEquals(loop.stats.accepted, 30);
  assertEquals(loop.stats.active, 5);
  assertEquals(await release(), Array(5).fill("bye\n"));
  assertEquals(loop.stats.peakActive, 5);
});

Deno.test('EvLoop.listen() with policy "refuse" lets onRefuse write a message the client reads before EOF', async () => {
  const refusedConns: Deno.Conn[] = [];
  const { loop, port, factoryCalls, release } = await fullRefusingLoop(
    async (conn) => {
      refusedConns.push(conn);
      await writeAll(conn, encoder.encode("busy, try later\n"));
    },
  );
  const excess = await withTimeout(
    Promise.all(Array.from({ length: 3 }, async () => {
      const conn = await connect(port);
      try {
        return await readUntilClosed(conn);
      } finally {
        closeQuietly(conn);
      }
    })),
    10_000,
    "3 refused clients",
  );
  for (const end of excess) {
    assertEquals(decoder.decode(end.bytes), "busy, try later\n");
    assertEquals(end.reset, false);
  }
  assertEquals(refusedConns.length, 3);
  assertEquals(factoryCalls(), 5);
  assertEquals(loop.stats.refused, 3);
  await release();
});

Deno.test("EvTcpAcceptor counts a held connection it closes as refused", async () => {
  const loop = new EvLoop({ capacity: 1, onError: () => {} });
  const acceptor = loop.listen({ hostname: HOST, port: 0 }, () => () => {});
  // The acceptor now waits in accept (a slot is free); take the slot.
  const release = Promise.withResolvers<void>();
  const holder = loop.spawn(() => release.promise);
  const conn = await Deno.connect({ hostname: HOST, port: acceptor.port });
  // The acceptor accepted and holds the connection, waiting for the slot.
  for (let i = 0; i < 200 && loop.stats.accepted === 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  assertEquals(loop.stats.accepted, 1);
  await acceptor.close();
  assertEquals(await conn.read(new Uint8Array(1)), null);
  assertEquals(loop.stats.refused, 1);
  conn.close();
  release.resolve();
  await holder.result;
  await loop.shutdown({ grace: 0 });
});

// --------------------------------------------------------------- factory

Deno.test("EvLoop.listen() closes the connection when the factory returns null", async () => {
  const { loop, reports } = quietLoop();
  const acceptor = loop.listen({ hostname: HOST, port: 0 }, () => null);
  const conn = await connect(acceptor.port);
  try {
    const end = await readUntilClosed(conn);
    assertEquals(end.bytes.byteLength, 0);
  } finally {
    closeQuietly(conn);
  }
  await loop.shutdown({ grace: 5000 });
  assertEquals(loop.stats.refused, 1);
  assertEquals(acceptor.refused, 1);
  assertEquals(loop.stats.accepted, 1);
  assertEquals(reports, []);
});

Deno.test("EvLoop.listen() closes the connection and reports to onError when the factory throws", async () => {
  const { loop, reports } = quietLoop();
  const boom = new Error("factory failed");
  const acceptor = loop.listen({ hostname: HOST, port: 0 }, () => {
    throw boom;
  });
  const conn = await connect(acceptor.port);
  try {
    assertEquals((await readUntilClosed(conn)).bytes.byteLength, 0);
  } finally {
    closeQuietly(conn);
  }
  await loop.shutdown({ grace: 5000 });
  assertEquals(reports.length, 1);
  assertStrictEquals(reports[0]!.error, boom);
  assertInstanceOf(reports[0]!.source, EvThread);
  assertEquals(loop.stats.errors, 1);
});

Deno.test("EvLoop.listen() reports a TypeError when the factory returns a non-function", async () => {
  const { loop, reports } = quietLoop();
  const acceptor = loop.listen(
    { hostname: HOST, port: 0 },
    (() => 42) as unknown as EvConnectionFactory,
  );
  const conn = await connect(acceptor.port);
  try {
    assertEquals((await readUntilClosed(conn)).bytes.byteLength, 0);
  } finally {
    closeQuietly(conn);
  }
  await loop.shutdown({ grace: 5000 });
  assertEquals(reports.length, 1);
  assertInstanceOf(reports[0]!.error, TypeError);
  assertStringIncludes(
    (reports[0]!.error as Error).message,
    "must return a function or null: received number",
  );
});

Deno.test("EvLoop.listen() accepts an async factory", async () => {
  const { loop, reports } = quietLoop();
  const acceptor = loop.listen({ hostname: HOST, port: 0 }, async () => {
    await Promise.resolve();
    return echo;
  });
  const sent = payload(1, 10_000);
  assertBytes(await roundTrip(acceptor.port, sent), sent);
  await loop.shutdown({ grace: 5000 });
  assertEquals(reports, []);
});

Deno.test("EvTcpAcceptor does not run the procedure when the task was aborted during an async factory", async () => {
  const loop = new EvLoop({ onError: () => {} });
  let procRan = false;
  let factorySignal: AbortSignal | undefined;
  const entered = Promise.withResolvers<void>();
  const acceptor = loop.listen({ hostname: HOST, port: 0 }, async (info) => {
    factorySignal = info.signal;
    entered.resolve();
    await new Promise<void>((resolve) =>
      info.signal.addEventListener("abort", () => resolve(), { once: true })
    );
    return () => {
      procRan = true;
    };
  });
  const conn = await Deno.connect({ hostname: HOST, port: acceptor.port });
  await entered.promise;
  await loop.shutdown({ grace: 0 });
  assert(factorySignal?.aborted);
  assertEquals(procRan, false);
  assertEquals(await conn.read(new Uint8Array(1)), null);
  conn.close();
});

Deno.test("EvLoop.listen() passes the connection's addresses and the acceptor to the factory", async () => {
  const { loop } = quietLoop();
  const infos: EvConnectionInfo[] = [];
  const acceptor = loop.listen({ hostname: HOST, port: 0 }, (info) => {
    infos.push(info);
    return null;
  });
  const conn = await connect(acceptor.port);
  try {
    await readUntilClosed(conn);
  } finally {
    closeQuietly(conn);
  }
  await loop.shutdown({ grace: 5000 });
  assertEquals(infos.length, 1);
  const info = infos[0]!;
  assertEquals(info.localAddr.hostname, HOST);
  assertEquals(info.localAddr.port, acceptor.port);
  assertEquals(info.remoteAddr.hostname, HOST);
  assertEquals(info.remoteAddr.port, conn.localAddr.port);
  assertStrictEquals(info.acceptor, acceptor);
});

// -------------------------------------------------------- the listener

Deno.test("EvLoop.listen() on port 0 listens on an ephemeral port given by acceptor.port", async () => {
  const { loop } = quietLoop();
  const acceptor = loop.listen({ hostname: HOST, port: 0 }, () => echo);
  assertGreater(acceptor.port, 0);
  assertEquals(acceptor.addr.port, acceptor.port);
  assertEquals(acceptor.addr.hostname, HOST);
  assertEquals(acceptor.policy, "wait");
  assertEquals(
    decoder.decode(await roundTrip(acceptor.port, encoder.encode("hi"))),
    "hi",
  );
  await loop.shutdown({ grace: 5000 });
});

Deno.test("EvTcpAcceptor.close() stops listening but leaves live connections working", async () => {
  const { loop } = quietLoop();
  const acceptor = loop.listen({ hostname: HOST, port: 0 }, () => echo);
  const live = await connect(acceptor.port);
  try {
    await writeAll(live, encoder.encode("before\n"));
    assertEquals(await readLine(live), "before");
    await acceptor.close();
    assert(acceptor.closed);
    await assertRejects(
      () => connect(acceptor.port),
      Deno.errors.ConnectionRefused,
    );
    await writeAll(live, encoder.encode("after\n"));
    assertEquals(await readLine(live), "after");
    await acceptor.close(); // a second close is a no-op
  } finally {
    closeQuietly(live);
  }
  await loop.shutdown({ grace: 5000 });
  assertEquals(loop.stats.accepted, 1);
});

Deno.test("EvLoop.listen() throws AddrInUse when the port is taken", async () => {
  const { loop } = quietLoop();
  using taken = Deno.listen({ hostname: HOST, port: 0 });
  assertThrows(
    () => loop.listen({ hostname: HOST, port: taken.addr.port }, () => echo),
    Deno.errors.AddrInUse,
  );
  await loop.shutdown({ grace: 0 });
});

const badListenOptions: {
  what: string;
  options: unknown;
  factory?: unknown;
  error: typeof RangeError | typeof TypeError;
  message: string;
}[] = [
  {
    what: "port is -1",
    options: { port: -1 },
    error: RangeError,
    message: "'port' must be an integer from 0 to 65535: received -1",
  },
  {
    what: "port is 1.5",
    options: { port: 1.5 },
    error: RangeError,
    message: "'port' must be an integer from 0 to 65535: received 1.5",
  },
  {
    what: "port is 65536",
    options: { port: 65_536 },
    error: RangeError,
    message: "'port' must be an integer from 0 to 65535: received 65536",
  },
  {
    what: "port is a string",
    options: { port: "80" },
    error: TypeError,
    message: `'port' must be a number: received "80"`,
  },
  {
    what: "backlog is 0",
    options: { port: 0, backlog: 0 },
    error: RangeError,
    message: "'backlog' must be an integer >= 1: received 0",
  },
  {
    what: 'policy is "bogus"',
    options: { port: 0, policy: "bogus" },
    error: TypeError,
    message: `'policy' must be "wait" or "refuse": received "bogus"`,
  },
  {
    what: "onRefuse is not a function",
    options: { port: 0, policy: "refuse", onRefuse: "no" },
    error: TypeError,
    message: `'onRefuse' must be a function: received "no"`,
  },
  {
    what: "the factory is not a function",
    options: { port: 0 },
    factory: { handler: true },
    error: TypeError,
    message: "'factory' must be a function: received [object Object]",
  },
  {
    what: "options is null",
    options: null,
    error: TypeError,
    message: "'options' must be an object",
  },
];

for (const bad of badListenOptions) {
  Deno.test(`EvLoop.listen() throws ${bad.error.name} when ${bad.what}`, async () => {
    const { loop } = quietLoop();
    const factory = "factory" in bad ? bad.factory : () => echo;
    assertThrows(
      () =>
        loop.listen(
          bad.options as EvListenOptions,
          factory as EvConnectionFactory,
        ),
      bad.error,
      bad.message,
    );
    await loop.shutdown({ grace: 0 });
  });
}

// ------------------------------------------------------------ resources

Deno.test("EvLoop.listen() leaks no file descriptor over 1,000 connections", async () => {
  async function serve(count: number): Promise<EvLoop> {
    const { loop, reports } = quietLoop(100);
    const acceptor = loop.listen({ hostname: HOST, port: 0 }, () => echo);
    await inBatches(count, 50, async (i) => {
      const sent = payload(i, 1024);
      assertBytes(await roundTrip(acceptor.port, sent), sent, `conn ${i}`);
    });
    await loop.shutdown({ grace: 5000 });
    assertEquals(reports, []);
    return loop;
  }
  await openFds(); // the first child process may create lazy fds
  await serve(50); // warm-up: lets the runtime create what it makes lazily
  const before = await openFds();
  const loop = await serve(1000);
  const after = await openFds();
  assertEquals(loop.stats.accepted, 1000);
  assertEquals(loop.stats.ended, 1000);
  assertGreater(before.length, 0);
  assertEquals(tally(after), tally(before), "open fds by kind");
});

/** A child process running tests/testdata/emfile_server.ts. */
class EmfileServer implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  readonly port: Promise<number>;
  #stderr = "";
  #stderrDone: Promise<void>;
  #stdoutDone: Promise<void>;
  #watchers: { text: string; resolve: () => void }[] = [];

  constructor(fdLimit: number, mode: "clients" | "fill") {
    const script = new URL("./testdata/emfile_server.ts", import.meta.url);
    const child = new Deno.Command("bash", {
      args: [
        "-c",
        'ulimit -n "$1" && exec "$2" run --no-config --allow-net --allow-read "$3" "$4"',
        "bash",
        String(fdLimit),
        Deno.execPath(),
        script.pathname,
        mode,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.child = child;
    const port = Promise.withResolvers<number>();
    this.port = port.promise;
    this.#stdoutDone = (async () => {
      let out = "";
      for await (
        const text of child.stdout.pipeThrough(new TextDecoderStream())
      ) {
        out += text;
        const match = out.match(/^port (\d+)\n/m);
        if (match !== null) port.resolve(Number(match[1]));
      }
      port.reject(new Error(`The server printed no port: ${out}`));
    })();
    this.#stderrDone = (async () => {
      for await (
        const text of child.stderr.pipeThrough(new TextDecoderStream())
      ) {
        this.#stderr += text;
        this.#check();
      }
    })();
  }

  get stderr(): string {
    return this.#stderr;
  }

  /** Resolves once the server has written `text` to stderr. */
  printed(text: string): Promise<void> {
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#watchers.push({ text, resolve });
    this.#check();
    return promise;
  }

  #check(): void {
    this.#watchers = this.#watchers.filter((w) => {
      if (!this.#stderr.includes(w.text)) return true;
      w.resolve();
      return false;
    });
  }

  #kill(signal: Deno.Signal): void {
    try {
      this.child.kill(signal);
    } catch {
      // It has exited already.
    }
  }

  /** Stops the server (SIGTERM, then SIGKILL) and waits for its exit. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.port.catch(() => {});
    this.#kill("SIGTERM");
    try {
      await withTimeout(this.child.status, 10_000, "the server to exit");
    } catch (error) {
      this.#kill("SIGKILL");
      await this.child.status;
      throw error;
    } finally {
      await Promise.all([this.#stdoutDone, this.#stderrDone]);
    }
  }
}

Deno.test("EvTcpAcceptor goes on accepting after accept fails with EMFILE", async () => {
  // The child starts with about 23 fds open: some 40 remain for clients.
  const clientCount = 80;
  await using server = new EmfileServer(64, "clients");
  const port = await withTimeout(server.port, 20_000, "the server's port");
  const release = new Gate();
  let served = 0;
  const clients = Array.from({ length: clientCount }, async (_, i) => {
    const conn = await connect(port);
    try {
      await writeAll(conn, encoder.encode(`ping ${i}\n`));
      const line = await readLine(conn);
      served++;
      // Keep the connection (and the server's fd) until the server ran out.
      await release.opened;
      return line;
    } finally {
      closeQuietly(conn);
    }
  });
  await withTimeout(
    server.printed("accept-error"),
    20_000,
    `an accept error (stderr: ${server.stderr})`,
  );
  // Clients beyond the limit wait in the backlog: not all are served yet.
  assertLess(served, clientCount);
  release.open();
  const exited = server.child.status.then((status) => {
    throw new Error(
      `The server exited (code ${status.code}) before serving every client: ${server.stderr}`,
    );
  });
  const lines = await withTimeout(
    Promise.race([Promise.all(clients), exited]),
    30_000,
    "every client to be served after fds were freed",
  );
  assertEquals(lines, lines.map((_, i) => `ping ${i}`));
  assertStringIncludes(server.stderr, "Too many open files");
  assert(!server.stderr.includes("task-error"), server.stderr);
  // And a new client, long after the errors, is served too.
  const late = await connect(port);
  try {
    await writeAll(late, encoder.encode("late\n"));
    assertEquals(await withTimeout(readLine(late), 10_000, "late"), "late");
  } finally {
    closeQuietly(late);
  }
  // SIGTERM makes it shut down cleanly: it was alive and well until then.
  server.child.kill("SIGTERM");
  const status = await withTimeout(server.child.status, 10_000, "exit");
  assertEquals(status.code, 0, server.stderr);
  await withTimeout(server.printed("stopped"), 10_000, "stopped");
});

Deno.test("EvTcpAcceptor keeps the process alive while it backs off after a failed accept", async () => {
  // The server fills its own fd table with files: the accept of our client
  // fails with EMFILE while the server has nothing else pending. After its
  // third failed accept it frees the files and must then serve the client.
  await using server = new EmfileServer(64, "fill");
  const port = await withTimeout(server.port, 20_000, "the server's port");
  const conn = await connect(port);
  try {
    await writeAll(conn, encoder.encode("ping\n"));
    const outcome = await withTimeout(
      Promise.race([
        readLine(conn).catch((error) => error),
        server.child.status.then((status) => ({ exited: status })),
      ]),
      20_000,
      "an echo or the server's exit",
    );
    if (typeof outcome !== "string") {
      const status = await withTimeout(
        server.child.status,
        10_000,
        `the server's exit after ${String(outcome)}`,
      );
      fail(
        `The server exited (code ${status.code}) instead of serving the client ` +
          `after its failed accept. stderr:\n${server.stderr}`,
      );
    }
    assertEquals(outcome, "ping");
    assertStringIncludes(server.stderr, "released");
  } finally {
    closeQuietly(conn);
  }
});
