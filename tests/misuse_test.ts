// Copyright 2026 the @corothread/evthread authors. MIT license.
// Misuse: every public async call of EvSocket, EvThread, EvLoop and the
// acceptor made without `await` inside a task, then the task returns, is
// aborted, the call times out, or the peer resets. The process survives (no
// unhandled rejection), the loop shuts down cleanly, the leak sanitizers
// pass, and what the rules promise holds: queued sends are written for up to
// `linger` ms when a procedure returns, an abort writes nothing more and
// reports the bytes it cut short once; an error is reported once, to
// whoever handles it; `await loop.shutdown()` works from inside a task;
// connect errors name the address.

import {
  assert,
  assertEquals,
  assertGreaterOrEqual,
  assertInstanceOf,
  assertLess,
  assertRejects,
  assertStrictEquals,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import {
  EvLoop,
  type EvLoopOptions,
  type EvLoopStats,
  type EvSocket,
  type EvTcpAcceptor,
  EvThread,
  PoolFullError,
  UnsentDataError,
} from "../mod.ts";
import {
  assertBytes,
  closedPort,
  closeQuietly,
  concat,
  connect,
  encoder,
  type Ending,
  eventually,
  Gate,
  HOST,
  payload,
  readToEnd,
  readUntilClosed,
  type Report,
  UnhandledRejectionSpy,
  withTimeout,
  writeAll,
} from "./_helpers.ts";

// ------------------------------------------------------------- constants

/** The per-call timeout of the "times out" cases, in ms. */
const SHORT = 20;
/** A send that the kernel takes at once, but not in one write. */
const MB = payload(1, 1_000_000);
/**
 * A send far larger than what the kernel buffers for a peer that does not
 * read (about 4 MB on Linux loopback): it stays queued in the socket.
 */
const BIG = payload(2, 16 * 1024 * 1024);
/** One byte: left unread by the peer, it makes the peer's close a reset. */
const ONE = new Uint8Array([0x2a]);
/** What the peer sends before it resets: part of a line, of a record. */
const PART = encoder.encode("part");
/** The safety net for anything a case awaits. */
const SAFETY = 10_000;

// --------------------------------------------------------------- helpers

function noop(): void {}

/** Resolves (never rejects) once `signal` aborts. */
function aborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) =>
    signal.addEventListener("abort", () => resolve(), { once: true })
  );
}

/** A loop whose reports are collected; other options as given. */
function reportingLoop(
  options: EvLoopOptions = {},
): { loop: EvLoop; reports: Report[] } {
  const reports: Report[] = [];
  const loop = new EvLoop({
    ...options,
    onError: (error, source) => reports.push({ error, source }),
  });
  return { loop, reports };
}

/** `Name: message` of an error, for readable assertion failures. */
function describe(error: unknown): string {
  return error instanceof Error || error instanceof DOMException
    ? `${error.name}: ${error.message}`
    : String(error);
}

/** The reports that are not UnsentDataErrors, described. */
function otherReports(reports: Report[]): string[] {
  return reports.filter((r) => !(r.error instanceof UnsentDataError)).map((
    r,
  ) => describe(r.error));
}

/** The UnsentDataErrors reported. */
function unsentReports(reports: Report[]): UnsentDataError[] {
  return reports.map((r) => r.error).filter((e): e is UnsentDataError =>
    e instanceof UnsentDataError
  );
}

/**
 * Runs `body` with an unhandled-rejection spy installed, and fails if any
 * rejection went unhandled (the spy is flushed even when `body` fails, so
 * that no rejection outlives it).
 */
async function noUnhandledRejection(body: () => Promise<void>): Promise<void> {
  const spy = new UnhandledRejectionSpy();
  try {
    await body();
  } finally {
    try {
      await spy.flush();
    } finally {
      spy[Symbol.dispose]();
    }
  }
  assertEquals(spy.reasons.map(describe), [], "unhandled rejections");
}

/** Waits (a safety net bounds it) for `loop.finished`. */
function untilFinished(loop: EvLoop): Promise<void> {
  return withTimeout(loop.finished, SAFETY, "loop.finished");
}

/** Waits for `loop` to finish by itself, then checks that it is clean. */
async function finishedCleanly(loop: EvLoop): Promise<void> {
  await untilFinished(loop);
  await shutdownCleanly(loop);
}

/** Spawns a task on `loop` that returns "other done" once the drain starts. */
function spawnUntilDrain(loop: EvLoop): EvThread<string> {
  return loop.spawn(async (thread) => {
    await aborted(thread.draining);
    return "other done";
  });
}

/** Shuts `loop` down (a safety net bounds it) and checks that it is clean. */
async function shutdownCleanly(loop: EvLoop, grace = 2000): Promise<void> {
  await withTimeout(loop.shutdown({ grace }), SAFETY, "the loop's shutdown");
  await untilFinished(loop);
  assertEquals(loop.state, "closed");
  const stats = loop.stats;
  assertEquals(stats.active, 0, "pool slots still in use");
  assertEquals(stats.ended, stats.spawned, "tasks that never ended");
}

/**
 * How many bytes a report may count beyond those the peer never got: the
 * write in flight when the socket was aborted, which the kernel may already
 * have taken (one staged chunk at most, 256 KiB). The test "UnsentDataError
 * counts no byte the peer received" holds the library to the exact count;
 * the others allow this much, so that each fails for one reason only.
 */
const IN_FLIGHT_SLACK = 262_144;

/**
 * Checks one UnsentDataError against the socket's peer and what it got:
 * `total` bytes were queued, the peer `received` a prefix of them.
 */
function assertUnsent(
  error: unknown,
  expected: {
    peer: Deno.Conn;
    total: number;
    received: number;
    sends: number | number[];
    method: string | string[];
    cause?: unknown;
    slack?: number;
  },
): asserts error is UnsentDataError {
  assertInstanceOf(error, UnsentDataError);
  assertEquals(error.name, "UnsentDataError");
  const methods = [expected.method].flat();
  assert(
    methods.includes(error.method),
    `method: expected ${methods.join(" or ")}, got ${error.method}`,
  );
  const missing = expected.total - expected.received;
  const slack = expected.slack ?? IN_FLIGHT_SLACK;
  assert(
    error.bytesUnsent >= missing && error.bytesUnsent <= missing + slack,
    `bytesUnsent: expected ${missing} (${expected.total} queued, ${expected.received} received)${
      slack > 0 ? ` up to ${missing + slack}` : ""
    }, got ${error.bytesUnsent}`,
  );
  const sends = [expected.sends].flat();
  assert(
    sends.includes(error.sends),
    `sends: expected ${sends.join(" or ")}, got ${error.sends}`,
  );
  assertEquals(error.localAddr, expected.peer.remoteAddr, "localAddr");
  assertEquals(error.remoteAddr, expected.peer.localAddr, "remoteAddr");
  if ("cause" in expected) assertStrictEquals(error.cause, expected.cause);
}

/**
 * The misuse under test: a call whose promise is dropped, neither awaited
 * nor given a handler.
 */
function unawaited(_promise: Promise<unknown>): void {}

// ------------------------------------------------- un-awaited calls: table

/** Where the task that makes the call runs. */
type Side = "acceptor" | "spawn";

/**
 * What happens after the un-awaited call: the procedure returns at once; the
 * task is aborted (`thread.abort()`); the call times out; the peer resets
 * the connection; for `connect`, the peer refuses it.
 */
type Scenario = "end" | "abort" | "timeout" | "reset" | "refused";

const SCENARIO_PHRASES: Record<Scenario, string> = {
  end: "at a task's end",
  abort: "when its task is aborted",
  timeout: "past its timeout",
  reset: "when the peer resets the connection mid-message",
  refused: "when the peer refuses the connection",
};

const SIDE_PHRASES: Record<Side, string> = {
  acceptor: "in an acceptor's connection task",
  spawn: "in a spawned client task",
};

/** What the procedure of a case has at hand. */
interface Env {
  loop: EvLoop;
  thread: EvThread<unknown>;
  /** The task's connection to the test's raw peer. */
  socket: EvSocket;
  /**
   * An acceptor of the loop: the one that serves `socket` in an acceptor's
   * task, an idle one in a spawned task.
   */
  acceptor: EvTcpAcceptor<Deno.NetAddr>;
  /** A port a raw listener listens on (it never accepts). */
  target: number;
  /** A port nothing listens on. */
  closedPort: number;
  /** Resolves once the procedure has returned. */
  returned: Promise<void>;
}

/** What a case's check gets. */
interface Outcome {
  scenario: Scenario;
  env: Env;
  /** The test's end of the task's connection. */
  peer: Deno.TcpConn;
  reports: Report[];
  /** The loop's counters after its shutdown. */
  stats: EvLoopStats;
  /** The reason the test aborted the task with (scenario "abort"). */
  reason: Error;
  /** What the case's `peer` step returned. */
  got: unknown;
  /** Whether the "timeout" scenario is a call's timeout (not a grace). */
  timedOut: boolean;
}

/** One public async method, called without await. */
interface MethodCase {
  /** As in the test names: `EvSocket.recv()`. */
  name: string;
  scenarios: readonly Scenario[];
  /** How the test name says what happens; "harms nothing" by default. */
  outcome?: Partial<Record<Scenario, string>>;
  /** Scenario phrases that differ from `SCENARIO_PHRASES`. */
  phrase?: Partial<Record<Scenario, string>>;
  /** The loop's `linger` for a scenario (the default when absent). */
  linger?: Partial<Record<Scenario, number>>;
  /** Makes the call (or calls) and drops the promise. */
  call(env: Env, scenario: Scenario): void;
  /**
   * How the procedure waits, after the call, for the scenario to have
   * happened, where the default does not fit.
   */
  waitFor?: Partial<Record<Scenario, (env: Env) => Promise<void>>>;
  /** What the peer does meanwhile (default: expects EOF, no bytes). */
  peer?(peer: Deno.TcpConn, scenario: Scenario, env: Env): Promise<unknown>;
  /** Checks after the loop has shut down (default: nothing reported). */
  check?(outcome: Outcome): void;
}

/** `{ timeout: SHORT }` in the "timeout" scenario, else nothing. */
function opts(scenario: Scenario): { timeout?: number } {
  return scenario === "timeout" ? { timeout: SHORT } : {};
}

/**
 * Reads (after any read already queued) until the end of stream or an
 * error: the peer's reset has then arrived. Never rejects.
 */
async function untilEnd(socket: EvSocket): Promise<void> {
  const buf = new Uint8Array(64);
  try {
    while (await socket.recv(buf) !== null);
  } catch {
    // A reset, or the socket closed: the end either way.
  }
}

/** How the procedure waits for each scenario unless the case says. */
const DEFAULT_WAITS: Record<Scenario, (env: Env) => Promise<void>> = {
  end: () => Promise.resolve(),
  abort: (env) => aborted(env.thread.signal),
  timeout: (env) =>
    eventually(
      () => env.loop.stats.timeouts >= 1,
      "the call to time out",
      SAFETY,
    ),
  reset: (env) => untilEnd(env.socket),
  refused: () => Promise.reject(new Error("no default for 'refused'")),
};

/** The default peer: the task's end closes the connection, nothing sent. */
async function peerSeesEnd(peer: Deno.TcpConn): Promise<Ending> {
  const ending = await readUntilClosed(peer);
  assertEquals(
    { bytes: ending.bytes.byteLength, reset: ending.reset },
    { bytes: 0, reset: false },
    "what the peer saw",
  );
  return ending;
}

/** The peer of a task that shut its loop down: the loop drains. */
function peerSeesShutdown(
  peer: Deno.TcpConn,
  _scenario: Scenario,
  { loop }: Env,
): Promise<Ending> {
  assert(loop.state !== "running", "the loop is not shutting down");
  return peerSeesEnd(peer);
}

/** The default check: nothing reported, nothing cut short. */
function nothingReported(o: Outcome): void {
  assertEquals(o.reports.map((r) => describe(r.error)), [], "reports");
  assertEquals(o.stats.sendsCutShort, 0, "stats.sendsCutShort");
  assertEquals(o.stats.bytesUnsent, 0, "stats.bytesUnsent");
  assertEquals(o.stats.errors, 0, "stats.errors");
  if (o.scenario === "timeout" && o.timedOut) {
    assertGreaterOrEqual(o.stats.timeouts, 1, "stats.timeouts");
  }
}

/** Runs one case: `m` called without await, on `side`, then `scenario`. */
async function runCase(
  m: MethodCase,
  side: Side,
  scenario: Scenario,
): Promise<void> {
  await noUnhandledRejection(async () => {
    const linger = m.linger?.[scenario];
    const { loop, reports } = reportingLoop(
      linger === undefined ? {} : { linger },
    );
    const reason = new Error(`${m.name}: aborted by the test`);
    const called = Promise.withResolvers<Env>();
    const returned = new Gate();
    const target = Deno.listen({ hostname: HOST, port: 0 });
    const closed = closedPort();
    let acceptor: EvTcpAcceptor<Deno.NetAddr> | undefined;
    const body = async (thread: EvThread<unknown>, socket: EvSocket) => {
      try {
        const env: Env = {
          loop,
          thread,
          socket,
          acceptor: acceptor!,
          target: target.addr.port,
          closedPort: closed,
          returned: returned.opened,
        };
        // Unread by the peer, this byte makes the peer's close a reset.
        if (scenario === "reset") await socket.send(ONE);
        m.call(env, scenario);
        called.resolve(env);
        await (m.waitFor?.[scenario] ?? DEFAULT_WAITS[scenario])(env);
      } catch (error) {
        called.reject(error);
        throw error;
      } finally {
        returned.open();
      }
    };
    let peer: Deno.TcpConn | undefined;
    try {
      if (side === "acceptor") {
        acceptor = loop.listen(
          { hostname: HOST, port: 0 },
          () => (socket, thread) => body(thread, socket),
        );
        peer = await connect(acceptor.port);
      } else {
        acceptor = loop.listen({ hostname: HOST, port: 0 }, () => null);
        using listener = Deno.listen({ hostname: HOST, port: 0 });
        loop.spawn(async (thread) =>
          body(
            thread,
            await thread.connect({ hostname: HOST, port: listener.addr.port }),
          )
        );
        peer = await withTimeout(listener.accept(), SAFETY, "the connect");
      }
      const env = await withTimeout(called.promise, SAFETY, "the call");
      if (scenario === "abort") env.thread.abort(reason);
      if (scenario === "reset") {
        // Part of a message, then a reset (the peer left a byte unread):
        // reads waiting for more see an early end of stream.
        await writeAll(peer, PART);
        closeQuietly(peer);
      }
      const got = scenario === "reset"
        ? undefined
        : await (m.peer ?? peerSeesEnd)(peer, scenario, env);
      await withTimeout(returned.opened, SAFETY, "the procedure to return");
      await shutdownCleanly(loop);
      (m.check ?? nothingReported)({
        scenario,
        env,
        peer,
        reports,
        stats: loop.stats,
        reason,
        got,
        timedOut: m.waitFor?.timeout === undefined,
      });
    } finally {
      if (peer !== undefined) closeQuietly(peer);
      target.close();
      if (loop.state !== "closed") {
        await withTimeout(loop.shutdown({ grace: 0 }), SAFETY, "cleanup");
      }
    }
  });
}

const ALL: readonly Scenario[] = ["end", "abort", "timeout", "reset"];

/**
 * A send (or half-close) case's peer: it reads everything until the
 * connection ends; when the call is to time out, only once the procedure
 * has returned (reading earlier could let the send finish in time).
 */
async function peerReadsAll(
  peer: Deno.TcpConn,
  scenario: Scenario,
  env: Env,
): Promise<Ending> {
  if (scenario === "timeout") await env.returned;
  return await readUntilClosed(peer);
}

/**
 * The check of a send (or of a half-close queued behind one): written in
 * full when the procedure returns, even past the call's timeout; cut short
 * by an abort and reported once, with the bytes the peer did not get
 * (`assertUnsent`); after a reset, nothing reported.
 */
function checkSent(
  first: Uint8Array,
  methods: string[],
  sends: number[],
): (o: Outcome) => void {
  return (o) => {
    // A send that a reset ends rejects with the runtime's error, and is
    // not reported (UnsentDataError is for what an abort or close cut).
    if (o.scenario === "reset") return nothingReported(o);
    const got = o.got as Ending;
    assertEquals(got.reset, false, "the peer saw a reset");
    if (o.scenario !== "abort") {
      assertBytes(got.bytes, first, "what the peer received");
      return nothingReported(o);
    }
    // Nothing is written after the abort: the peer got what the kernel
    // held, a prefix, and the rest is reported unsent, once.
    const received = got.bytes.byteLength;
    assertLess(received, first.byteLength, "the abort cut nothing short");
    assertBytes(got.bytes, first.subarray(0, received), "the prefix received");
    assertEquals(o.reports.length, 1, "one report");
    const report = o.reports[0]!;
    assertUnsent(report.error, {
      peer: o.peer,
      total: first.byteLength,
      received,
      sends,
      method: methods,
      cause: o.reason,
    });
    assertStrictEquals(report.source, o.env.thread, "the report's source");
    assertEquals(
      {
        sendsCutShort: o.stats.sendsCutShort,
        bytesUnsent: o.stats.bytesUnsent,
        errors: o.stats.errors,
      },
      {
        sendsCutShort: report.error.sends,
        bytesUnsent: report.error.bytesUnsent,
        errors: 1,
      },
      "stats",
    );
  };
}

const METHODS: MethodCase[] = [
  {
    name: "EvSocket.recv()",
    scenarios: ALL,
    call: ({ socket }, s) =>
      unawaited(socket.recv(new Uint8Array(16), opts(s))),
  },
  {
    name: "EvSocket.readFull()",
    scenarios: ALL,
    call: ({ socket }, s) =>
      unawaited(socket.readFull(new Uint8Array(16), opts(s))),
  },
  {
    name: "EvSocket.readLine()",
    scenarios: ALL,
    call: ({ socket }, s) => unawaited(socket.readLine(opts(s))),
  },
  {
    name: "EvSocket.readUntil()",
    scenarios: ALL,
    call: ({ socket }, s) =>
      unawaited(socket.readUntil(encoder.encode("\r\n\r\n"), opts(s))),
  },
  {
    name: "EvSocket.peek()",
    scenarios: ALL,
    call: ({ socket }, s) => unawaited(socket.peek(4, opts(s))),
  },
  {
    name: "EvSocket.send()",
    scenarios: ALL,
    outcome: {
      end: "is written in full",
      abort: "is cut short and reported once as an UnsentDataError",
      timeout: "stays queued and is written in full",
    },
    linger: { timeout: SAFETY },
    call: ({ socket }, s) =>
      unawaited(socket.send(s === "end" ? MB : BIG, opts(s))),
    peer: peerReadsAll,
    check: (o) => checkSent(o.scenario === "end" ? MB : BIG, ["send"], [1])(o),
  },
  {
    name: "EvSocket.closeWrite()",
    scenarios: ALL,
    outcome: {
      end: "after an un-awaited send: every byte, then the end of stream",
      abort: "after an un-awaited send: both cut short, reported once",
      timeout:
        "after an un-awaited send stays queued: every byte, then the end",
    },
    linger: { timeout: SAFETY },
    call: ({ socket }, s) => {
      unawaited(socket.send(s === "end" ? MB : BIG));
      unawaited(socket.closeWrite(opts(s)));
    },
    peer: peerReadsAll,
    // The report names the first call cut short, and counts the half-close
    // among the calls (UnsentDataError's documentation).
    check: (o) => checkSent(o.scenario === "end" ? MB : BIG, ["send"], [2])(o),
  },
  {
    name: "EvSocket.startTls()",
    scenarios: ALL,
    outcome: {
      end: "on a plain connection to a TLS-less peer harms nothing",
      abort: "on a plain connection to a TLS-less peer harms nothing",
      timeout: "on a plain connection to a TLS-less peer harms nothing",
      reset: "on a plain connection to a TLS-less peer harms nothing",
    },
    call: ({ socket }, s) =>
      unawaited(socket.startTls({ hostname: "localhost", ...opts(s) })),
    // The failed handshake closes the socket.
    waitFor: {
      reset: ({ socket }) =>
        eventually(() => socket.closed, "the handshake to fail", SAFETY),
    },
    // Deno 2.9.6 shuts a TLS connection down only once its handshake is
    // over: the peer sees the end only when it gives up itself (it closes
    // when the case ends).
    peer: () => Promise.resolve(undefined),
  },
  {
    name: "EvSocket[Symbol.asyncDispose]()",
    scenarios: ["end", "abort"],
    outcome: {
      end: "with a recv() pending harms nothing",
      abort: "with a recv() pending harms nothing",
    },
    call: ({ socket }) => {
      unawaited(socket.recv(new Uint8Array(16)));
      unawaited(socket[Symbol.asyncDispose]());
    },
  },
  {
    name: "EvThread.delay()",
    scenarios: ALL,
    phrase: { timeout: "past its deadline" },
    call: ({ thread }, s) =>
      unawaited(
        thread.delay(
          60_000,
          s === "timeout" ? { deadline: Date.now() + SHORT } : {},
        ),
      ),
  },
  {
    name: "EvThread.connect()",
    scenarios: ["end", "abort", "timeout", "refused"],
    phrase: { timeout: "past its deadline" },
    call: ({ thread, target, closedPort }, s) =>
      unawaited(
        thread.connect(
          { hostname: HOST, port: s === "refused" ? closedPort : target },
          s === "timeout" ? { deadline: Date.now() - 1 } : {},
        ),
      ),
    waitFor: {
      // A second connect, awaited, to the same closed port.
      refused: ({ thread, closedPort }) =>
        thread.connect({ hostname: HOST, port: closedPort }).then(noop, noop),
    },
  },
  {
    name: "EvLoop.shutdown()",
    scenarios: ALL,
    phrase: { timeout: "past its grace period" },
    call: ({ loop }, s) =>
      unawaited(loop.shutdown(s === "timeout" ? { grace: SHORT } : {})),
    // The grace period ends by aborting the task.
    waitFor: { timeout: ({ thread }) => aborted(thread.signal) },
    peer: peerSeesShutdown,
  },
  {
    name: "EvLoop[Symbol.asyncDispose]()",
    scenarios: ["end", "abort", "reset"],
    call: ({ loop }) => unawaited(loop[Symbol.asyncDispose]()),
    peer: peerSeesShutdown,
  },
  {
    name: "EvTcpAcceptor.close()",
    scenarios: ["end", "abort", "reset"],
    call: ({ acceptor }) => unawaited(acceptor.close()),
    peer: async (peer, _scenario, { acceptor }) => {
      assert(acceptor.closed, "the acceptor was not closed");
      // Once its accept loop is over, the port refuses connections.
      await withTimeout(acceptor.close(), SAFETY, "the accept loop's end");
      await assertRejects(
        () => connect(acceptor.port),
        Deno.errors.ConnectionRefused,
      );
      return await peerSeesEnd(peer);
    },
  },
];

for (const m of METHODS) {
  for (const scenario of m.scenarios) {
    for (const side of ["acceptor", "spawn"] as const) {
      const phrase = m.phrase?.[scenario] ?? SCENARIO_PHRASES[scenario];
      const outcome = m.outcome?.[scenario] ?? "harms nothing";
      Deno.test(
        `${m.name} un-awaited ${phrase} ${outcome} (${SIDE_PHRASES[side]})`,
        () => runCase(m, side, scenario),
      );
    }
  }
}

// ------------------------------------------------ awaited calls still see

/** One call, awaited, that a timeout or the task's abort rejects. */
interface AwaitedCase {
  name: string;
  /** Makes the call; `limit` is what makes it time out. */
  call(
    env: { thread: EvThread<unknown>; socket: EvSocket; target: number },
    limit: { timeout?: number; deadline?: number },
  ): Promise<unknown>;
  /** How it is made to time out (default: `{ timeout: SHORT }`). */
  limit?: () => { timeout?: number; deadline?: number };
}

const AWAITED: AwaitedCase[] = [
  {
    name: "EvSocket.recv()",
    call: ({ socket }, limit) => socket.recv(new Uint8Array(16), limit),
  },
  {
    name: "EvSocket.readFull()",
    call: ({ socket }, limit) => socket.readFull(new Uint8Array(16), limit),
  },
  {
    name: "EvSocket.readLine()",
    call: ({ socket }, limit) => socket.readLine(limit),
  },
  {
    name: "EvSocket.readUntil()",
    call: ({ socket }, limit) =>
      socket.readUntil(encoder.encode("\r\n\r\n"), limit),
  },
  {
    name: "EvSocket.peek()",
    call: ({ socket }, limit) => socket.peek(4, limit),
  },
  {
    name: "EvSocket.send()",
    call: ({ socket }, limit) => socket.send(BIG, limit),
  },
  {
    name: "EvSocket.closeWrite()",
    call: ({ socket }, limit) => {
      // The send it waits behind is the test's own, handled here.
      socket.send(BIG).catch(noop);
      return socket.closeWrite(limit);
    },
  },
  {
    name: "EvSocket.startTls()",
    call: ({ socket }, limit) =>
      socket.startTls({ hostname: "localhost", ...limit }),
  },
  {
    name: "EvThread.delay()",
    call: ({ thread }, limit) => thread.delay(60_000, limit),
    limit: () => ({ deadline: Date.now() + SHORT }),
  },
  {
    name: "EvThread.connect()",
    call: ({ thread, target }, limit) =>
      thread.connect({ hostname: HOST, port: target }, limit),
    limit: () => ({ deadline: Date.now() - 1 }),
  },
];

for (const c of AWAITED) {
  for (const scenario of ["timeout", "abort"] as const) {
    const what = scenario === "timeout"
      ? "rejects with a TimeoutError past its timeout"
      : "rejects with the reason when its task is aborted";
    Deno.test(`${c.name} awaited still ${what}`, async () => {
      await noUnhandledRejection(async () => {
        // No lingering: the sends a timeout leaves queued are dropped at once.
        const { loop, reports } = reportingLoop({ linger: 0 });
        using listener = Deno.listen({ hostname: HOST, port: 0 });
        using target = Deno.listen({ hostname: HOST, port: 0 });
        const reason = new Error(`${c.name}: aborted by the test`);
        const called = new Gate();
        const task = loop.spawn(async (thread) => {
          const socket = await thread.connect({
            hostname: HOST,
            port: listener.addr.port,
          });
          const env = { thread, socket, target: target.addr.port };
          const limit = scenario === "timeout"
            ? (c.limit?.() ?? { timeout: SHORT })
            : {};
          const call = c.call(env, limit);
          // A connect is aborted before it can complete; the other calls
          // wait for the test to abort the task.
          if (scenario === "abort" && c.name === "EvThread.connect()") {
            thread.abort(reason);
          }
          called.open();
          try {
            return { value: await call };
          } catch (error) {
            return { error };
          }
        });
        const peer = await withTimeout(listener.accept(), SAFETY, "accept");
        try {
          await withTimeout(called.opened, SAFETY, "the call");
          if (scenario === "abort") task.abort(reason);
          const outcome = await withTimeout(task.result, SAFETY, "the task");
          assert("error" in outcome, `it resolved: ${outcome.value}`);
          if (scenario === "abort") {
            assertStrictEquals(outcome.error, reason);
          } else {
            assertInstanceOf(outcome.error, DOMException);
            assertEquals(outcome.error.name, "TimeoutError");
            assertGreaterOrEqual(loop.stats.timeouts, 1);
            if (c.name === "EvSocket.send()") {
              // How much of it the kernel took before the timeout.
              const { bytesWritten } = outcome.error as {
                bytesWritten?: unknown;
              };
              assertEquals(typeof bytesWritten, "number");
            }
          }
        } finally {
          closeQuietly(peer);
        }
        await shutdownCleanly(loop);
        // What the sends cut short report is tested above.
        assertEquals(otherReports(reports), []);
      });
    });
  }
}

// ------------------------------------------------ rule 1: sends and linger

/**
 * Spawns a task connected to a raw peer; `proc` gets the socket. Returns
 * the task and the peer.
 */
async function spawnConnected<T>(
  loop: EvLoop,
  proc: (socket: EvSocket, thread: EvThread<unknown>) => T | Promise<T>,
): Promise<{ task: EvThread<T>; peer: Deno.TcpConn }> {
  using listener = Deno.listen({ hostname: HOST, port: 0 });
  const task = loop.spawn(async (thread) =>
    proc(
      await thread.connect({ hostname: HOST, port: listener.addr.port }),
      thread,
    )
  );
  const peer = await withTimeout(listener.accept(), SAFETY, "accept");
  return { task, peer };
}

Deno.test("EvSocket.send() un-awaited: a fire-and-forget broadcast at a task's end reaches every peer in full", async () => {
  await noUnhandledRejection(async () => {
    const { loop, reports } = reportingLoop();
    using listener = Deno.listen({ hostname: HOST, port: 0 });
    const PEERS = 3;
    const ROUNDS = 4;
    const messages = Array.from(
      { length: PEERS },
      (_, p) =>
        Array.from(
          { length: ROUNDS },
          (_, r) => payload(100 + 10 * p + r, 150_000 + 7_919 * r),
        ),
    );
    const task = loop.spawn(async (thread) => {
      const sockets: EvSocket[] = [];
      for (let p = 0; p < PEERS; p++) {
        sockets.push(
          await thread.connect({ hostname: HOST, port: listener.addr.port }),
        );
      }
      // Round by round, to every peer, and never awaited.
      for (let r = 0; r < ROUNDS; r++) {
        for (let p = 0; p < PEERS; p++) {
          unawaited(sockets[p]!.send(messages[p]![r]!));
        }
      }
    });
    const peers: Deno.TcpConn[] = [];
    try {
      // The task connects one peer after the other: they are accepted in
      // that order.
      for (let p = 0; p < PEERS; p++) {
        peers.push(await withTimeout(listener.accept(), SAFETY, "accept"));
      }
      const received = await Promise.all(peers.map(readToEnd));
      received.forEach((bytes, p) =>
        assertBytes(bytes, concat(messages[p]!), `peer ${p}`)
      );
    } finally {
      for (const peer of peers) closeQuietly(peer);
    }
    await withTimeout(task.result, SAFETY, "the task");
    await shutdownCleanly(loop);
    assertEquals(reports.map((r) => describe(r.error)), []);
    assertEquals(loop.stats.sendsCutShort, 0);
  });
});

Deno.test("EvSocket.send() un-awaited before the procedure throws is written in full, and the error reported once", async () => {
  await noUnhandledRejection(async () => {
    const reported = new Gate();
    const reports: Report[] = [];
    const loop = new EvLoop({
      onError: (error, source) => {
        reports.push({ error, source });
        reported.open();
      },
    });
    const boom = new Error("boom after an un-awaited send");
    const { task, peer } = await spawnConnected(loop, (socket) => {
      unawaited(socket.send(MB));
      throw boom;
    });
    try {
      assertBytes(await readToEnd(peer), MB, "what the peer received");
    } finally {
      closeQuietly(peer);
    }
    await withTimeout(reported.opened, SAFETY, "the report");
    await shutdownCleanly(loop);
    assertEquals(reports.length, 1);
    assertStrictEquals(reports[0]!.error, boom);
    assertStrictEquals(reports[0]!.source, task);
    assertEquals(loop.stats.errors, 1);
    assertEquals(loop.stats.sendsCutShort, 0);
    // Read only after it ended: it still rejects with the error.
    assertStrictEquals(await task.result.then(() => null, (e) => e), boom);
    assertEquals(reports.length, 1);
  });
});

/** Three sends: the first far beyond what the kernel takes. */
const THREE = [BIG, payload(3, 1_000), payload(4, 2_000)];
const THREE_BYTES = concat(THREE);

/** Queues THREE without awaiting any. */
function sendThree(socket: EvSocket): void {
  for (const bytes of THREE) unawaited(socket.send(bytes));
}

/** One way for a task to be aborted with sends queued. */
interface CutShort {
  what: string;
  /**
   * Starts the task(s): the one owning the socket queues THREE (with
   * `sendThree`), then is aborted. Returns that task, the peer, and the
   * abort's reason once known.
   */
  start(loop: EvLoop): Promise<{
    owner: () => EvThread<unknown>;
    peer: Deno.TcpConn;
    cause: () => unknown;
  }>;
}

const CUTS: CutShort[] = [
  {
    what: "its task is aborted",
    async start(loop) {
      const queued = new Gate();
      const reason = new Error("aborted by the test");
      const { task, peer } = await spawnConnected(
        loop,
        async (socket, thread) => {
          sendThree(socket);
          queued.open();
          await aborted(thread.signal);
        },
      );
      await withTimeout(queued.opened, SAFETY, "the sends");
      task.abort(reason);
      return { owner: () => task, peer, cause: () => reason };
    },
  },
  {
    what: "its parent task ends",
    async start(loop) {
      using listener = Deno.listen({ hostname: HOST, port: 0 });
      const queued = new Gate();
      let child: EvThread<unknown> | undefined;
      const parent = loop.spawn(async (thread) => {
        child = thread.spawn(async (t) => {
          sendThree(
            await t.connect({ hostname: HOST, port: listener.addr.port }),
          );
          queued.open();
          await aborted(t.signal);
        });
        await queued.opened;
        // Returns: its child is aborted.
      });
      const peer = await withTimeout(listener.accept(), SAFETY, "accept");
      return {
        owner: () => child!,
        peer,
        cause: () => parent.signal.reason,
      };
    },
  },
  {
    what: "its task's deadline passes",
    async start(loop) {
      const { task, peer } = await spawnConnected(
        loop,
        async (socket, thread) => {
          sendThree(socket);
          thread.deadline = Date.now() + SHORT;
          await aborted(thread.signal);
        },
      );
      return { owner: () => task, peer, cause: () => task.signal.reason };
    },
  },
  {
    what: "the loop's shutdown runs out of grace",
    async start(loop) {
      const queued = new Gate();
      const { task, peer } = await spawnConnected(
        loop,
        async (socket, thread) => {
          sendThree(socket);
          queued.open();
          await aborted(thread.signal); // it ignores the drain
        },
      );
      await withTimeout(queued.opened, SAFETY, "the sends");
      unawaited(loop.shutdown({ grace: SHORT }));
      return { owner: () => task, peer, cause: () => task.signal.reason };
    },
  },
];

for (const cut of CUTS) {
  Deno.test(`EvSocket.send() un-awaited is not flushed when ${cut.what}: reported once as an UnsentDataError`, async () => {
    await noUnhandledRejection(async () => {
      const { loop, reports } = reportingLoop();
      const { owner, peer, cause } = await cut.start(loop);
      let ending: Ending;
      try {
        // Read only once aborted: reading earlier lets the sends through.
        await withTimeout(aborted(owner().signal), SAFETY, "the abort");
        ending = await readUntilClosed(peer);
      } finally {
        closeQuietly(peer);
      }
      await shutdownCleanly(loop);
      const received = ending.bytes.byteLength;
      assertEquals(ending.reset, false);
      assertLess(received, BIG.byteLength, "the first send was written");
      assertBytes(ending.bytes, THREE_BYTES.subarray(0, received), "prefix");
      assertEquals(otherReports(reports), []);
      assertEquals(reports.length, 1, "one report");
      const error = reports[0]!.error;
      assertUnsent(error, {
        peer,
        total: THREE_BYTES.byteLength,
        received,
        sends: 3,
        method: "send",
        cause: cause(),
      });
      assertStrictEquals(reports[0]!.source, owner());
      assertEquals(
        {
          sendsCutShort: loop.stats.sendsCutShort,
          bytesUnsent: loop.stats.bytesUnsent,
          errors: loop.stats.errors,
        },
        { sendsCutShort: 3, bytesUnsent: error.bytesUnsent, errors: 1 },
      );
    });
  });
}

Deno.test("UnsentDataError counts no byte the peer received: not the write in flight at the abort", async () => {
  await noUnhandledRejection(async () => {
    const { loop, reports } = reportingLoop();
    const reason = new Error("aborted right after the send");
    const { peer } = await spawnConnected(loop, (socket, thread) => {
      unawaited(socket.send(MB));
      // The send's first write has started, and the kernel, with room for
      // it, has taken it already: the peer gets those bytes.
      thread.abort(reason);
    });
    let ending: Ending;
    try {
      ending = await readUntilClosed(peer);
    } finally {
      closeQuietly(peer);
    }
    await shutdownCleanly(loop);
    const unsent = unsentReports(reports);
    assertEquals(unsent.length, 1);
    assertUnsent(unsent[0], {
      peer,
      total: MB.byteLength,
      received: ending.bytes.byteLength,
      sends: 1,
      method: "send",
      cause: reason,
      slack: 0,
    });
    assertEquals(
      loop.stats.bytesUnsent,
      MB.byteLength - ending.bytes.byteLength,
    );
  });
});

Deno.test("EvSocket.send() un-awaited on two sockets of an aborted task: one UnsentDataError per socket", async () => {
  await noUnhandledRejection(async () => {
    const { loop, reports } = reportingLoop();
    using listener = Deno.listen({ hostname: HOST, port: 0 });
    const queued = new Gate();
    const task = loop.spawn(async (thread) => {
      for (let i = 0; i < 2; i++) {
        const socket = await thread.connect({
          hostname: HOST,
          port: listener.addr.port,
        });
        sendThree(socket);
      }
      queued.open();
      await aborted(thread.signal);
    });
    const peers: Deno.TcpConn[] = [];
    const received: number[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        peers.push(await withTimeout(listener.accept(), SAFETY, "accept"));
      }
      await withTimeout(queued.opened, SAFETY, "the sends");
      task.abort();
      for (const peer of peers) {
        const ending = await readUntilClosed(peer);
        assertBytes(
          ending.bytes,
          THREE_BYTES.subarray(0, ending.bytes.byteLength),
          "prefix",
        );
        received.push(ending.bytes.byteLength);
      }
    } finally {
      for (const peer of peers) closeQuietly(peer);
    }
    await shutdownCleanly(loop);
    assertEquals(otherReports(reports), []);
    assertEquals(reports.length, 2, "one report per socket");
    // Told apart by their addresses, in either order.
    for (const [i, peer] of peers.entries()) {
      const report = reports.find((r) =>
        (r.error as UnsentDataError).localAddr.transport === "tcp" &&
        ((r.error as UnsentDataError).localAddr as Deno.NetAddr).port ===
          (peer.remoteAddr as Deno.NetAddr).port
      );
      assert(report !== undefined, `no report for socket ${i}`);
      assertUnsent(report.error, {
        peer,
        total: THREE_BYTES.byteLength,
        received: received[i]!,
        sends: 3,
        method: "send",
        cause: task.signal.reason,
      });
      assertStrictEquals(report.source, task);
    }
    assertEquals(loop.stats.sendsCutShort, 6);
    assertEquals(
      loop.stats.bytesUnsent,
      unsentReports(reports).reduce((sum, e) => sum + e.bytesUnsent, 0),
    );
  });
});

Deno.test("EvSocket.writable: a write cut short by its task's abort is reported as an UnsentDataError of method writable", async () => {
  await noUnhandledRejection(async () => {
    const { loop, reports } = reportingLoop();
    const queued = new Gate();
    const { task, peer } = await spawnConnected(
      loop,
      async (socket, thread) => {
        const writer = socket.writable.getWriter();
        // The stream's own promise, not the library's: handled here.
        writer.write(BIG).catch(noop);
        queued.open();
        await aborted(thread.signal);
      },
    );
    let ending: Ending;
    try {
      await withTimeout(queued.opened, SAFETY, "the write");
      task.abort();
      ending = await readUntilClosed(peer);
    } finally {
      closeQuietly(peer);
    }
    await shutdownCleanly(loop);
    assertEquals(otherReports(reports), []);
    assertEquals(reports.length, 1);
    assertUnsent(reports[0]!.error, {
      peer,
      total: BIG.byteLength,
      received: ending.bytes.byteLength,
      sends: 1,
      method: "writable",
      cause: task.signal.reason,
    });
  });
});

Deno.test("EvLoop linger: a task that returns with sends its peer never reads keeps its slot for linger ms, then reports them unsent", async () => {
  await noUnhandledRejection(async () => {
    const LINGER = 100;
    const reports: Report[] = [];
    let atReport: { active: number; at: number } | undefined;
    const loop: EvLoop = new EvLoop({
      capacity: 1,
      linger: LINGER,
      onError: (error, source) => {
        reports.push({ error, source });
        atReport ??= { active: loop.stats.active, at: performance.now() };
      },
    });
    const returned = new Gate();
    let returnedAt = 0;
    let abortedAt = 0;
    const { task, peer } = await spawnConnected(loop, (socket, thread) => {
      thread.signal.addEventListener("abort", () => {
        abortedAt = performance.now();
      });
      unawaited(socket.send(BIG));
      returnedAt = performance.now();
      returned.open();
    });
    let ending: Ending;
    try {
      await withTimeout(returned.opened, SAFETY, "the procedure's return");
      // Lingering: the task has not ended and holds its pool slot.
      assertEquals(loop.stats.active, 1);
      assertThrows(() => loop.spawn(() => {}), PoolFullError);
      assert(!task.done);
      assert(!task.signal.aborted);
      await withTimeout(task.result, SAFETY, "the task's end");
      // The peer reads only now: it gets what the kernel held.
      ending = await readUntilClosed(peer);
    } finally {
      closeQuietly(peer);
    }
    await shutdownCleanly(loop);
    assert(atReport !== undefined, "nothing was reported");
    assertEquals(atReport.active, 1, "the slot was given up before the report");
    // The deadline queue fires up to 1 ms early.
    assertGreaterOrEqual(abortedAt - returnedAt, LINGER - 2, "signal aborted");
    assertGreaterOrEqual(atReport.at - returnedAt, LINGER - 2, "reported");
    assertLess(atReport.at - returnedAt, 1000, "not the default linger");
    assertEquals(reports.length, 1);
    const error = reports[0]!.error;
    assertUnsent(error, {
      peer,
      total: BIG.byteLength,
      received: ending.bytes.byteLength,
      sends: 1,
      method: "send",
    });
    assertStrictEquals(reports[0]!.source, task);
    assertEquals(loop.stats.sendsCutShort, 1);
    assertEquals(loop.stats.bytesUnsent, error.bytesUnsent);
  });
});

Deno.test("EvLoop linger: 0 closes a returning task's sockets at once and reports the sends cut short", async () => {
  await noUnhandledRejection(async () => {
    const reports: Report[] = [];
    let reportedAt = 0;
    const loop = new EvLoop({
      linger: 0,
      onError: (error, source) => {
        reports.push({ error, source });
        reportedAt ||= performance.now();
      },
    });
    let returnedAt = 0;
    const { task, peer } = await spawnConnected(loop, (socket) => {
      unawaited(socket.send(BIG));
      returnedAt = performance.now();
    });
    let ending: Ending;
    try {
      ending = await readUntilClosed(peer);
    } finally {
      closeQuietly(peer);
    }
    await withTimeout(task.result, SAFETY, "the task's end");
    await shutdownCleanly(loop);
    assertEquals(reports.length, 1);
    // No waiting: far less than the default linger (1000 ms).
    assertLess(reportedAt - returnedAt, 500);
    assertUnsent(reports[0]!.error, {
      peer,
      total: BIG.byteLength,
      received: ending.bytes.byteLength,
      sends: 1,
      method: "send",
    });
    assertStrictEquals(reports[0]!.source, task);
  });
});

for (const debug of [true, false]) {
  const name = debug
    ? "EvLoop debug: an UnsentDataError's stack shows where the un-awaited send was called"
    : "EvLoop without debug: an UnsentDataError's stack does not show the send's caller";
  Deno.test(name, async () => {
    await noUnhandledRejection(async () => {
      const { loop, reports } = reportingLoop({ debug });
      const { task, peer } = await spawnConnected(
        loop,
        async (socket, thread) => {
          unawaited(socket.send(BIG));
          // Aborted from a timer: no frame of this file is on the stack then.
          thread.deadline = Date.now() + SHORT;
          await aborted(thread.signal);
        },
      );
      try {
        // Read only once aborted: reading earlier lets the send through.
        await withTimeout(aborted(task.signal), SAFETY, "the deadline");
        await readUntilClosed(peer);
      } finally {
        closeQuietly(peer);
      }
      await shutdownCleanly(loop);
      const unsent = unsentReports(reports);
      assertEquals(unsent.length, 1);
      const stack = unsent[0]!.stack ?? "";
      if (debug) assertStringIncludes(stack, "misuse_test.ts");
      else assert(!stack.includes("misuse_test.ts"), stack);
    });
  });
}

// ------------------------------------ rule 2: an error is reported once

Deno.test("EvLoop onError gets a failing task's error once when nobody reads its result", async () => {
  await noUnhandledRejection(async () => {
    const { loop, reports } = reportingLoop();
    const go = new Gate();
    const boom = new Error("nobody reads this");
    const task = loop.spawn(async () => {
      await go.opened;
      throw boom;
    });
    go.open();
    await shutdownCleanly(loop);
    assertEquals(reports.length, 1);
    assertStrictEquals(reports[0]!.error, boom);
    assertStrictEquals(reports[0]!.source, task);
    assertEquals(loop.stats.errors, 1);
    // Read after it ended: it rejects with the error, reported no more.
    assertStrictEquals(await task.result.then(() => null, (e) => e), boom);
    assertStrictEquals(await task.result.then(() => null, (e) => e), boom);
    assertEquals(reports.length, 1);
  });
});

Deno.test("EvLoop onError is not called for a failing task whose result was read, not yet awaited, while it ran", async () => {
  await noUnhandledRejection(async () => {
    const { loop, reports } = reportingLoop();
    const go = new Gate();
    const boom = new Error("the reader handles this");
    const task = loop.spawn(async () => {
      await go.opened;
      throw boom;
    });
    const result = task.result; // read, awaited only after the shutdown
    go.open();
    await shutdownCleanly(loop);
    assertEquals(reports, []);
    assertEquals(loop.stats.errors, 0);
    assertStrictEquals(await result.then(() => null, (e) => e), boom);
  });
});

Deno.test("EvLoop onError: a failing child task whose parent awaits it is not reported; the parent that rethrows is, once", async () => {
  await noUnhandledRejection(async () => {
    const { loop, reports } = reportingLoop();
    const go = new Gate();
    const boom = new Error("child failed");
    const parent = loop.spawn(async (thread) => {
      const child = thread.spawn(async () => {
        await go.opened;
        throw boom;
      });
      try {
        await child.result;
      } catch (error) {
        throw new Error("parent failed", { cause: error });
      }
    });
    go.open();
    await shutdownCleanly(loop);
    assertEquals(reports.map((r) => describe(r.error)), [
      "Error: parent failed",
    ]);
    assertStrictEquals(reports[0]!.source, parent);
    assertStrictEquals((reports[0]!.error as Error).cause, boom);
    assertEquals(loop.stats.errors, 1);
  });
});

Deno.test("EvLoop onError gets a failing acceptor task's error once, with the task as source", async () => {
  await noUnhandledRejection(async () => {
    const { loop, reports } = reportingLoop();
    const acceptor = loop.listen(
      { hostname: HOST, port: 0 },
      () => async (socket) => {
        const line = await socket.readLine({ timeout: SAFETY });
        throw new Error(`cannot serve ${line}`);
      },
    );
    const conn = await connect(acceptor.port);
    try {
      await writeAll(conn, encoder.encode("hello\n"));
      // The task's end closes the connection.
      assertEquals((await readUntilClosed(conn)).bytes.byteLength, 0);
    } finally {
      closeQuietly(conn);
    }
    await shutdownCleanly(loop);
    assertEquals(reports.map((r) => describe(r.error)), [
      "Error: cannot serve hello",
    ]);
    assertInstanceOf(reports[0]!.source, EvThread);
    assertEquals(loop.stats.errors, 1);
  });
});

// ------------------------ rule 3: await loop.shutdown() inside a task

Deno.test("EvLoop.shutdown() awaited inside a spawned task resolves once every other task has ended", async () => {
  await noUnhandledRejection(async () => {
    const { loop, reports } = reportingLoop();
    const order: string[] = [];
    const other = loop.spawn(async (thread) => {
      // Finishes its unit of work once the drain starts, within the grace.
      await aborted(thread.draining);
      await Promise.resolve();
      order.push("other task ends");
      return "other done";
    });
    let seen:
      | { otherDone: boolean; callerAborted: boolean; waited: number }
      | undefined;
    const command = new Gate();
    const caller = loop.spawn(async (thread) => {
      await command.opened; // an admin command: "stop"
      const started = performance.now();
      await loop.shutdown({ grace: 5000 });
      order.push("shutdown() resolves");
      seen = {
        otherDone: other.done,
        callerAborted: thread.signal.aborted,
        waited: performance.now() - started,
      };
    });
    command.open();
    await untilFinished(loop);
    assert(caller.done, "loop.finished resolved before the caller ended");
    assertEquals(order, ["other task ends", "shutdown() resolves"]);
    assert(seen !== undefined);
    // The other task ended by itself: the grace period was not waited out,
    // and the caller's task was aborted with the rest.
    assertEquals(
      { otherDone: seen.otherDone, callerAborted: seen.callerAborted },
      { otherDone: true, callerAborted: true },
    );
    assertLess(seen.waited, 4000);
    assertEquals(await other.result, "other done");
    await shutdownCleanly(loop);
    assertEquals(reports, []);
  });
});

Deno.test("EvLoop.shutdown() awaited inside an acceptor's connection task resolves once the other connections have ended", async () => {
  await noUnhandledRejection(async () => {
    const { loop, reports } = reportingLoop();
    const idleServed = new Gate();
    let seen: { otherEnded: number; callerAborted: boolean } | undefined;
    const acceptor = loop.listen(
      { hostname: HOST, port: 0 },
      () => async (socket, thread) => {
        idleServed.open();
        let line: string | null;
        try {
          // Waiting for a request ends when the drain starts.
          line = await socket.readLine({ signal: thread.draining });
        } catch {
          return;
        }
        if (line === "stop") {
          await loop.shutdown({ grace: 5000 });
          seen = {
            otherEnded: loop.stats.ended,
            callerAborted: thread.signal.aborted,
          };
        }
      },
    );
    const idle = await connect(acceptor.port);
    const admin = await connect(acceptor.port);
    try {
      await withTimeout(idleServed.opened, SAFETY, "the idle connection");
      await writeAll(admin, encoder.encode("stop\n"));
      await untilFinished(loop);
      assertEquals(seen, { otherEnded: 1, callerAborted: true });
      assertEquals((await readUntilClosed(idle)).bytes.byteLength, 0);
      assertEquals((await readUntilClosed(admin)).bytes.byteLength, 0);
    } finally {
      closeQuietly(idle);
      closeQuietly(admin);
    }
    await shutdownCleanly(loop);
    assertEquals(loop.stats.ended, 2);
    assertEquals(reports, []);
  });
});

Deno.test("EvLoop.shutdown() awaited inside a task waits for a task that ignores its abort for a while", async () => {
  await noUnhandledRejection(async () => {
    const { loop, reports } = reportingLoop();
    const abortSeen = new Gate();
    const release = new Gate();
    const stubborn = loop.spawn(async (thread) => {
      thread.signal.addEventListener("abort", () => abortSeen.open());
      // Ignores the drain and its abort until the test releases it.
      await release.opened;
      return "stubborn done";
    });
    let stubbornDoneAtResolve: boolean | undefined;
    const command = new Gate();
    const caller = loop.spawn(async () => {
      await command.opened;
      await loop.shutdown({ grace: SHORT });
      stubbornDoneAtResolve = stubborn.done;
    });
    command.open();
    // The grace period has run out: every task was aborted...
    await withTimeout(abortSeen.opened, SAFETY, "the abort");
    assert(caller.signal.aborted, "the caller's task was not aborted");
    // ...but one still runs, so the caller still waits.
    assertEquals(stubbornDoneAtResolve, undefined);
    assertEquals(loop.state, "draining");
    release.open();
    await withTimeout(caller.result, SAFETY, "the caller's task");
    assertEquals(stubbornDoneAtResolve, true);
    assertEquals(await stubborn.result, "stubborn done");
    await finishedCleanly(loop);
    assertEquals(reports, []);
  });
});

/**
 * Awaits `stop(loop)` inside a task (inside a child task when `inChild`),
 * once commanded, beside a task that ends when the drain starts; checks that
 * it resolved only once that task had ended, and that the loop finished
 * cleanly.
 */
async function checkStopAwaitedInside(
  stop: (loop: EvLoop) => Promise<void>,
  inChild: boolean,
): Promise<void> {
  await noUnhandledRejection(async () => {
    const { loop, reports } = reportingLoop();
    const other = spawnUntilDrain(loop);
    const command = new Gate();
    const body = async () => {
      await command.opened;
      await stop(loop);
      return other.done;
    };
    const caller = inChild
      ? loop.spawn(async (thread) => {
        const child = thread.spawn(body);
        return await child.result;
      })
      : loop.spawn(body);
    command.open();
    const what = inChild ? "the parent" : "the caller";
    assertEquals(await withTimeout(caller.result, SAFETY, what), true);
    await finishedCleanly(loop);
    assertEquals(reports, []);
  });
}

Deno.test("EvLoop.shutdown() awaited inside a child task resolves once every other task has ended", async () => {
  await checkStopAwaitedInside((loop) => loop.shutdown({ grace: 5000 }), true);
});

Deno.test("EvLoop[Symbol.asyncDispose]() awaited inside a task resolves once every other task has ended", async () => {
  await checkStopAwaitedInside((loop) => loop[Symbol.asyncDispose](), false);
});

Deno.test("EvLoop.shutdown() un-awaited inside a task drains the loop, which finishes once the task returns", async () => {
  await noUnhandledRejection(async () => {
    const { loop, reports } = reportingLoop();
    const task = loop.spawn(async (thread) => {
      unawaited(loop.shutdown());
      await aborted(thread.draining);
      return loop.state;
    });
    assertEquals(
      await withTimeout(task.result, SAFETY, "the task"),
      "draining",
    );
    await finishedCleanly(loop);
    assertEquals(reports, []);
  });
});

Deno.test("EvLoop.shutdown() awaited before the task's first await resolves too", async () => {
  await noUnhandledRejection(async () => {
    const { loop, reports } = reportingLoop();
    // The procedure runs at once, up to its first await, inside spawn().
    const caller = loop.spawn(async () => {
      await loop.shutdown({ grace: 0 });
      return "resolved";
    });
    try {
      assertEquals(
        await withTimeout(caller.result, 2000, "the caller's shutdown()"),
        "resolved",
      );
      await untilFinished(loop);
    } finally {
      // Safety net for the failure: end the wait, so no promise outlives
      // the test.
      caller.abort();
    }
    assertEquals(reports, []);
  });
});

// --------------------------------- rule 4: connect errors name the address

Deno.test("EvThread.connect() refused rejects with ConnectionRefused naming the address", async () => {
  await noUnhandledRejection(async () => {
    const { loop, reports } = reportingLoop();
    const port = closedPort();
    const explicit = loop.spawn((thread) =>
      thread.connect({ hostname: HOST, port })
    );
    const defaulted = loop.spawn((thread) => thread.connect({ port }));
    // Both read before either ends: their errors are left to this reader.
    const results = [explicit.result, defaulted.result];
    for (const result of results) {
      const error = await result.then(() => null, (e) => e);
      assertInstanceOf(error, Deno.errors.ConnectionRefused);
      assertEquals(error.name, "ConnectionRefused");
      assertEquals(
        error.message,
        `connect 127.0.0.1:${port}: Connection refused`,
      );
      assertInstanceOf(error.cause, Deno.errors.ConnectionRefused);
    }
    await shutdownCleanly(loop);
    // Both results were read before the tasks ended.
    assertEquals(reports, []);
  });
});

Deno.test("EvThread.connect() timed out rejects with a TimeoutError naming the address", async () => {
  await noUnhandledRejection(async () => {
    const { loop, reports } = reportingLoop();
    // A listener that never accepts: once its queue (backlog 1: two
    // entries on Linux) is full, the kernel drops further SYNs and
    // connects wait.
    const listener = Deno.listen({ hostname: HOST, port: 0, tcpBacklog: 1 });
    const port = listener.addr.port;
    const stopFill = new AbortController();
    const fill: Promise<Deno.TcpConn | null>[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const attempt = Deno.connect({
          hostname: HOST,
          port,
          signal: stopFill.signal,
        });
        fill.push(attempt.catch(() => null));
        if (i < 2) await withTimeout(attempt, SAFETY, "filling the queue");
      }
      const task = loop.spawn((thread) =>
        thread.connect({ hostname: HOST, port }, { timeout: 500 })
      );
      const error = await withTimeout(
        task.result.then(() => null, (e) => e),
        SAFETY,
        "the connect to time out",
      );
      if (error === null) {
        console.log(
          "  skipped: connects to a full accept queue do not hang on this kernel",
        );
        return;
      }
      assertInstanceOf(error, DOMException);
      assertEquals(error.name, "TimeoutError");
      assertEquals(
        error.message,
        `connect 127.0.0.1:${port}: timed out after 500 ms`,
      );
    } finally {
      stopFill.abort();
      for (const conn of await Promise.all(fill)) conn?.close();
      listener.close();
      await shutdownCleanly(loop);
    }
    assertEquals(reports, []);
  });
});

Deno.test("EvThread.connect() past its deadline rejects with a TimeoutError naming the address", async () => {
  await noUnhandledRejection(async () => {
    const { loop } = reportingLoop();
    using listener = Deno.listen({ hostname: HOST, port: 0 });
    const port = listener.addr.port;
    const task = loop.spawn((thread) =>
      thread.connect({ hostname: HOST, port }, { deadline: Date.now() - 1 })
    );
    const error = await task.result.then(() => null, (e) => e);
    assertInstanceOf(error, DOMException);
    assertEquals(error.name, "TimeoutError");
    assertStringIncludes(error.message, `connect 127.0.0.1:${port}: `);
    await shutdownCleanly(loop);
  });
});
