// Copyright 2026 the @corothread/evthread authors. MIT license.

import {
  assert,
  assertEquals,
  assertGreaterOrEqual,
  assertInstanceOf,
  assertRejects,
  assertStrictEquals,
  assertThrows,
} from "@std/assert";
import {
  EvLoop,
  type EvSocket,
  EvThread,
  type EvThreadProc,
  PoolFullError,
} from "../mod.ts";
import {
  closedPort,
  closeQuietly,
  Gate,
  HOST,
  quietLoop,
  readUntilClosed,
  UnhandledRejectionSpy,
  withTimeout,
} from "./_helpers.ts";

/**
 * A plain listener whose accepted connections stand for the peers of a
 * task's sockets. `accept()` gives the next peer.
 */
class Peers implements Disposable {
  readonly listener: Deno.TcpListener = Deno.listen({
    hostname: HOST,
    port: 0,
  });
  readonly conns: Deno.TcpConn[] = [];

  get port(): number {
    return this.listener.addr.port;
  }

  async accept(): Promise<Deno.TcpConn> {
    const conn = await this.listener.accept();
    this.conns.push(conn);
    return conn;
  }

  [Symbol.dispose](): void {
    for (const conn of this.conns) closeQuietly(conn);
    this.listener.close();
  }
}

/**
 * Runs a task that connects two sockets to `peers`, then ends as `finish`
 * says; returns the task, its sockets and what each peer read until closed.
 */
async function twoSocketTask(
  loop: EvLoop,
  peers: Peers,
  finish: (thread: EvThread<unknown>, sockets: EvSocket[]) => Promise<unknown>,
): Promise<{
  task: EvThread<unknown>;
  sockets: EvSocket[];
  ends: { bytes: Uint8Array; reset: boolean }[];
}> {
  const sockets: EvSocket[] = [];
  const connected = new Gate();
  const task = loop.spawn(async (thread) => {
    sockets.push(await thread.connect({ hostname: HOST, port: peers.port }));
    sockets.push(await thread.connect({ hostname: HOST, port: peers.port }));
    connected.open();
    return await finish(thread, sockets);
  });
  const a = await peers.accept();
  const b = await peers.accept();
  await connected.opened;
  assert(sockets.every((s) => !s.closed));
  const ends = await withTimeout(
    Promise.all([readUntilClosed(a), readUntilClosed(b)]),
    10_000,
    "the peers to see the task's sockets close",
  );
  await task.result.catch(() => {});
  return { task, sockets, ends };
}

Deno.test("EvThread closes every socket it owns when its procedure returns", async () => {
  const { loop } = quietLoop();
  using peers = new Peers();
  const { task, sockets, ends } = await twoSocketTask(
    loop,
    peers,
    () => Promise.resolve("returned"),
  );
  assertEquals(await task.result, "returned");
  assertEquals(ends, [{ bytes: new Uint8Array(0), reset: false }, {
    bytes: new Uint8Array(0),
    reset: false,
  }]);
  assert(sockets.every((s) => s.closed));
  await loop.shutdown({ grace: 0 });
});

Deno.test("EvThread closes every socket it owns when its procedure throws", async () => {
  const { loop, reports } = quietLoop();
  using peers = new Peers();
  const boom = new Error("boom");
  const { task, sockets, ends } = await twoSocketTask(
    loop,
    peers,
    () => Promise.reject(boom),
  );
  await assertRejects(() => task.result, Error, "boom");
  assertEquals(ends.map((e) => e.bytes.byteLength), [0, 0]);
  assert(sockets.every((s) => s.closed));
  assertEquals(reports.length, 1);
  await loop.shutdown({ grace: 0 });
});

Deno.test("EvThread closes every socket it owns when it is aborted", async () => {
  const { loop, reports } = quietLoop();
  using peers = new Peers();
  const reason = new Error("stop");
  const { task, sockets, ends } = await twoSocketTask(
    loop,
    peers,
    async (thread, sockets) => {
      const [first] = sockets;
      const pending = first!.recv(new Uint8Array(16));
      queueMicrotask(() => thread.abort(reason));
      return await pending; // rejects with the reason
    },
  );
  const error = await assertRejects(() => task.result);
  assertStrictEquals(error, reason);
  assertEquals(ends.map((e) => e.bytes.byteLength), [0, 0]);
  assert(sockets.every((s) => s.closed));
  assertEquals(reports, []); // an aborted task is not an error
  await loop.shutdown({ grace: 0 });
});

Deno.test("EvThread aborts its children and settles after them when its procedure returns", async () => {
  const { loop } = quietLoop();
  const order: string[] = [];
  let child: EvThread<string> | undefined;
  const childStarted = new Gate();
  const parent = loop.spawn((thread) => {
    child = thread.spawn(async (self) => {
      childStarted.open();
      try {
        await self.delay(Infinity);
      } catch {
        // Slow clean-up after the abort: the parent must wait for it.
        await new Promise((resolve) => setTimeout(resolve, 20));
        order.push("child cleaned up");
      }
      return "child";
    });
    child.result.then(() => order.push("child settled"));
    return childStarted.opened.then(() => "parent");
  });
  const settled = parent.result.then((value) => {
    order.push("parent settled");
    return value;
  });
  assertEquals(await settled, "parent");
  assert(child!.signal.aborted);
  assertEquals(child!.signal.reason.name, "AbortError");
  assert(child!.done);
  assertEquals(await child!.result, "child");
  assertEquals(order, ["child cleaned up", "child settled", "parent settled"]);
  await loop.shutdown({ grace: 0 });
});

Deno.test("EvThread aborts and awaits its children when its procedure throws", async () => {
  const { loop } = quietLoop();
  let child: EvThread<void> | undefined;
  const parent = loop.spawn((thread) => {
    child = thread.spawn((self) => self.delay(Infinity));
    throw new Error("parent failed");
  });
  await assertRejects(() => parent.result, Error, "parent failed");
  assert(child!.signal.aborted);
  assert(child!.done);
  await assertRejects(() => child!.result, DOMException);
  await loop.shutdown({ grace: 0 });
});

Deno.test("EvThread.abort() aborts its children with the same reason and settles after them", async () => {
  const { loop, reports } = quietLoop();
  const reason = new Error("cancelled");
  const order: string[] = [];
  let child: EvThread<void> | undefined;
  const parent = loop.spawn(async (thread) => {
    child = thread.spawn(async (self) => {
      try {
        await self.delay(Infinity);
      } finally {
        // Slow clean-up after the abort: the parent must wait for it.
        await new Promise((resolve) => setTimeout(resolve, 20));
        order.push("child cleaned up");
      }
    });
    child.result.catch(() => order.push("child settled"));
    await thread.delay(Infinity);
  });
  parent.result.catch(() => order.push("parent settled"));
  parent.abort(reason);
  assertStrictEquals(child!.signal.reason, reason);
  assertStrictEquals(await assertRejects(() => parent.result), reason);
  assertStrictEquals(await assertRejects(() => child!.result), reason);
  assertEquals(order, ["child cleaned up", "child settled", "parent settled"]);
  assertEquals(reports, []);
  await loop.shutdown({ grace: 0 });
});

Deno.test("EvThread awaits a child spawned while it winds down", async () => {
  const loop = new EvLoop({ onError: () => {} });
  let lateDone = false;
  const parent = loop.spawn(async (thread) => {
    thread.spawn(async (child) => {
      try {
        await child.delay(Infinity);
      } catch {
        // Winding down, the child starts one more task.
        child.spawn(async () => {
          await new Promise((resolve) => setTimeout(resolve, 50));
          lateDone = true;
        });
      }
    });
    await thread.delay(Infinity);
  });
  parent.abort(new Error("stop"));
  await assertRejects(() => parent.result);
  assert(lateDone, "the parent settled before its grandchild ended");
  await loop.shutdown({ grace: 0 });
  const { spawned, ended } = loop.stats;
  assertEquals(spawned, ended);
});

Deno.test("EvThread.signal aborts when the task ends", async () => {
  const { loop } = quietLoop();
  let abortedWhileRunning: boolean | undefined;
  const task = loop.spawn(async (thread) => {
    await Promise.resolve();
    abortedWhileRunning = thread.signal.aborted;
    return 1;
  });
  assertEquals(await task.result, 1);
  assertEquals(abortedWhileRunning, false);
  assert(task.signal.aborted);
  assert(task.done);
  await loop.shutdown({ grace: 0 });
});

Deno.test("EvThread.delay() resolves after about the given milliseconds", async () => {
  const { loop } = quietLoop();
  const task = loop.spawn(async (thread) => {
    const start = performance.now();
    await thread.delay(50);
    return performance.now() - start;
  });
  // Timers may fire up to a millisecond early; never assert an upper bound.
  assertGreaterOrEqual(await task.result, 49);
  await loop.shutdown({ grace: 0 });
});

Deno.test("EvThread.delay() rejects with the reason given to thread.abort()", async () => {
  const { loop } = quietLoop();
  const reason = new Error("enough");
  const task = loop.spawn((thread) => thread.delay(60_000));
  task.abort(reason);
  assertStrictEquals(await assertRejects(() => task.result), reason);
  await loop.shutdown({ grace: 0 });
});

Deno.test("EvThread.delay() rejects with the reason of options.signal", async () => {
  const { loop } = quietLoop();
  const controller = new AbortController();
  const reason = new Error("caller gave up");
  const task = loop.spawn(async (thread) => {
    const waiting = thread.delay(60_000, { signal: controller.signal });
    controller.abort(reason);
    try {
      await waiting;
      return "resolved";
    } catch (error) {
      return error;
    }
  });
  assertStrictEquals(await task.result, reason);
  await loop.shutdown({ grace: 0 });
});

Deno.test("EvThread.abort() makes pending socket calls reject with the reason", async () => {
  const { loop } = quietLoop();
  using peers = new Peers();
  const reason = new Error("abort the calls");
  const pending = new Gate();
  const task = loop.spawn(async (thread) => {
    const socket = await thread.connect({ hostname: HOST, port: peers.port });
    // The peer never reads nor writes: both calls stay pending.
    const calls = [
      socket.recv(new Uint8Array(16)),
      socket.readLine(),
      socket.send(new Uint8Array(32 * 1024 * 1024)),
    ];
    pending.open();
    return await Promise.allSettled(calls);
  });
  const peer = await peers.accept();
  await pending.opened;
  task.abort(reason);
  const results = await task.result;
  assertEquals(results.length, 3);
  for (const result of results) {
    assertEquals(result.status, "rejected");
    assertStrictEquals((result as PromiseRejectedResult).reason, reason);
  }
  assertEquals((await readUntilClosed(peer)).reset, false);
  await loop.shutdown({ grace: 0 });
});

Deno.test("EvThread.abort() leaves the buffer of a rejected recv untouched", async () => {
  const loop = new EvLoop({ onError: () => {} });
  using listener = Deno.listen({ hostname: HOST, port: 0 });
  const buf = new Uint8Array(4);
  const started = Promise.withResolvers<void>();
  const rejected = Promise.withResolvers<unknown>();
  const finish = Promise.withResolvers<void>();
  const task = loop.spawn(async (thread) => {
    const socket: EvSocket = await thread.connect({
      hostname: HOST,
      port: listener.addr.port,
    });
    const pending = socket.recv(buf); // no per-call options
    started.resolve();
    try {
      await pending;
    } catch (error) {
      rejected.resolve(error);
    }
    await finish.promise; // the task lives on after the rejection
  });
  const peer = await listener.accept();
  await started.promise;
  const reason = new Error("stop");
  task.abort(reason);
  assertStrictEquals(await rejected.promise, reason);
  // The peer writes after the rejection; the caller's buffer must not
  // change (the socket closed with the abort). Absence takes a wait.
  await peer.write(new Uint8Array([9, 9, 9, 9])).catch(() => 0);
  for (let i = 0; i < 20 && buf[0] === 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assertEquals(buf, new Uint8Array(4));
  finish.resolve();
  await task.result;
  peer.close();
  await loop.shutdown({ grace: 0 });
});

Deno.test("EvThread.spawn() shares the parent's slot and never throws PoolFullError", async () => {
  const { loop } = quietLoop(1);
  const task = loop.spawn(async (thread) => {
    assertThrows(() => loop.spawn(() => 0), PoolFullError);
    const children = [1, 2, 3].map((n) =>
      thread.spawn(async (self) => {
        await self.delay(1);
        return n;
      })
    );
    const active = loop.stats.active;
    const values = await Promise.all(children.map((c) => c.result));
    return { active, values };
  });
  assertEquals(await task.result, { active: 1, values: [1, 2, 3] });
  assertEquals(loop.stats.peakActive, 1);
  await loop.shutdown({ grace: 0 });
});

Deno.test("EvLoop.stats.spawned counts child tasks like stats.ended does", async () => {
  const { loop } = quietLoop();
  const task = loop.spawn(async (thread) => {
    const children = [1, 2, 3].map((n) => thread.spawn(() => n));
    await Promise.all(children.map((c) => c.result));
  });
  await task.result;
  // Both counters are documented as "children included".
  assertEquals(loop.stats.ended, 4);
  assertEquals(loop.stats.spawned, 4);
  await loop.shutdown({ grace: 0 });
});

Deno.test("EvThread.spawn() lets a parent await its child with capacity 1", async () => {
  const { loop } = quietLoop(1);
  const task = loop.spawn(async (thread) => {
    const child = thread.spawn(async (self) => {
      await self.delay(1);
      return "from child";
    });
    return `parent got ${await child.result}`;
  });
  assertEquals(
    await withTimeout(task.result, 10_000, "parent awaiting child"),
    "parent got from child",
  );
  await loop.shutdown({ grace: 0 });
});

Deno.test("EvThread.spawn() reports a failing child to onError when nobody reads its result", async () => {
  const { loop, reports } = quietLoop();
  const boom = new Error("child failed");
  let child: EvThread<never> | undefined;
  const parent = loop.spawn(async (thread) => {
    child = thread.spawn(() => {
      throw boom;
    });
    await thread.delay(1);
    return child.done;
  });
  assertEquals(await parent.result, true);
  assertEquals(reports.length, 1);
  assertStrictEquals(reports[0]!.error, boom);
  assertStrictEquals(reports[0]!.source, child);
  await loop.shutdown({ grace: 0 });
});

Deno.test("EvThread.spawn() leaves a failing child's error to the parent that reads its result", async () => {
  const { loop, reports } = quietLoop();
  const boom = new Error("child failed");
  const parent = loop.spawn(async (thread) => {
    const child = thread.spawn(async () => {
      await thread.delay(1);
      throw boom;
    });
    return await child.result.catch((error) => error);
  });
  assertStrictEquals(await parent.result, boom);
  assertEquals(reports.length, 0);
  assertEquals(loop.stats.errors, 0);
  await loop.shutdown({ grace: 0 });
});

Deno.test("EvThread cannot be constructed directly", () => {
  assertThrows(() => new EvThread(), TypeError, "use EvLoop.spawn()");
});

const failing: EvThreadProc<never> = async () => {
  await Promise.resolve();
  throw new Error("task failed");
};

Deno.test("EvLoop onError is called exactly once with the error and the thread of a failing task nobody awaits", async () => {
  const { loop, reports } = quietLoop();
  const task = loop.spawn(failing);
  await loop.shutdown({ grace: 5000 });
  assertEquals(reports.length, 1);
  assertEquals((reports[0]!.error as Error).message, "task failed");
  assertStrictEquals(reports[0]!.source, task);
  assertInstanceOf(reports[0]!.source, EvThread);
  const error = await assertRejects(() => task.result, Error, "task failed");
  assertStrictEquals(reports[0]!.error, error);
  assertEquals(reports.length, 1);
});

Deno.test("EvLoop onError is not called for a task whose result was read before it ended", async () => {
  const { loop, reports } = quietLoop();
  const task = loop.spawn(failing);
  await assertRejects(() => task.result, Error, "task failed");
  await loop.shutdown({ grace: 0 });
  assertEquals(reports.length, 0);
  assertEquals(loop.stats.errors, 0);
});

Deno.test("EvLoop.stats.errors counts failing tasks that nobody awaits", async () => {
  const { loop } = quietLoop();
  assertEquals(loop.stats.errors, 0);
  loop.spawn(failing);
  loop.spawn(failing);
  await loop.shutdown({ grace: 5000 });
  assertEquals(loop.stats.errors, 2);
});

Deno.test("EvThread.result rejects with the very error the procedure threw", async () => {
  const { loop } = quietLoop();
  const boom = new RangeError("out of range");
  const task = loop.spawn(() => {
    throw boom;
  });
  assertStrictEquals(await assertRejects(() => task.result), boom);
  // Every await sees the same rejection.
  assertStrictEquals(await assertRejects(() => task.result), boom);
  await loop.shutdown({ grace: 0 });
});

Deno.test("EvLoop.spawn() of an unawaited failing task causes no unhandled rejection", async () => {
  using spy = new UnhandledRejectionSpy();
  const reported = new Gate();
  const loop = new EvLoop({ onError: () => reported.open() });
  loop.spawn(failing); // result never awaited
  loop.spawn(() => {
    throw new Error("sync failure");
  });
  await reported.opened;
  await loop.shutdown({ grace: 0 });
  await spy.flush();
  assertEquals(spy.reasons, []);
  assertEquals(loop.stats.errors, 2);
});

Deno.test("EvLoop onError is not called for an aborted task", async () => {
  const { loop, reports } = quietLoop();
  const task = loop.spawn((thread) => thread.delay(Infinity));
  task.abort();
  const error = await assertRejects(() => task.result, DOMException);
  assertEquals((error as DOMException).name, "AbortError");
  assertEquals(reports, []);
  assertEquals(loop.stats.errors, 0);
  await loop.shutdown({ grace: 0 });
});

Deno.test("EvThread.connect() rejects with ConnectionRefused on a closed port", async () => {
  const { loop } = quietLoop();
  const port = closedPort();
  const task = loop.spawn((thread) => thread.connect({ hostname: HOST, port }));
  await assertRejects(() => task.result, Deno.errors.ConnectionRefused);
  await loop.shutdown({ grace: 0 });
});

Deno.test("EvThread.connect() rejects with TimeoutError when the connect hangs", async () => {
  const { loop } = quietLoop();
  // A listener that never accepts: once its queue (backlog 1: two entries
  // on Linux) is full, the kernel drops further SYNs and connects wait.
  const listener = Deno.listen({ hostname: HOST, port: 0, tcpBacklog: 1 });
  const port = listener.addr.port;
  const stopFill = new AbortController();
  const fill: Promise<Deno.TcpConn | null>[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      const attempt = Deno.connect({
        hostname: HOST,
        port,
        signal: stopFill.signal,
      });
      fill.push(attempt.catch(() => null));
      await withTimeout(attempt, 10_000, "filling the accept queue");
    }
    // One more raw connect to be sure the queue is full.
    fill.push(
      Deno.connect({ hostname: HOST, port, signal: stopFill.signal }).catch(
        () => null,
      ),
    );
    const task = loop.spawn((thread) =>
      thread.connect({ hostname: HOST, port }, { timeout: 200 })
    );
    const outcome = await withTimeout(
      task.result.then(() => null, (error) => error),
      10_000,
      "the library's connect to time out",
    );
    if (outcome === null) {
      console.log(
        "  skipped: connects to a full accept queue do not hang on this kernel",
      );
      return;
    }
    assertInstanceOf(outcome, DOMException);
    assertEquals(outcome.name, "TimeoutError");
    assertEquals(loop.stats.timeouts, 1);
  } finally {
    stopFill.abort();
    for (const conn of await Promise.all(fill)) conn?.close();
    listener.close();
    await loop.shutdown({ grace: 0 });
  }
});

Deno.test("EvThread.adopt() makes the task own a connection and close it at the end", async () => {
  const { loop } = quietLoop();
  using peers = new Peers();
  const conn = await Deno.connect({ hostname: HOST, port: peers.port });
  const peer = await peers.accept();
  const task = loop.spawn((thread) => thread.adopt(conn));
  const socket = await task.result;
  assert(socket.closed);
  assertEquals((await readUntilClosed(peer)).bytes.byteLength, 0);
  await loop.shutdown({ grace: 0 });
});
