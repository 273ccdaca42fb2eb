// Copyright 2026 the @corothread/evthread authors. MIT license.

import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertLess,
  assertRejects,
  assertStrictEquals,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import { EvLoop, type EvSocket, type EvThread, PoolFullError } from "../mod.ts";
import {
  assertBytes,
  closeQuietly,
  connect,
  decoder,
  echo,
  encoder,
  Gate,
  HOST,
  payload,
  quietLoop,
  readLine,
  readToEnd,
  readUntilClosed,
  withTimeout,
  writeAll,
} from "./_helpers.ts";

Deno.test("EvLoop echoes distinct payloads byte-exactly to 200 concurrent clients", async () => {
  const { loop, reports } = quietLoop(256);
  const acceptor = loop.listen({ hostname: HOST, port: 0 }, () => echo);
  const clients = Array.from({ length: 200 }, async (_, i) => {
    const sent = payload(i, 3000 + 37 * i); // 3 KB to 10 KB, all different
    const conn = await connect(acceptor.port);
    try {
      const reading = readToEnd(conn);
      for (let off = 0; off < sent.byteLength; off += 700) {
        await writeAll(conn, sent.subarray(off, off + 700));
      }
      await conn.closeWrite();
      assertBytes(await reading, sent, `client ${i}`);
    } finally {
      closeQuietly(conn);
    }
  });
  const settled = await withTimeout(
    Promise.allSettled(clients),
    30_000,
    "200 echo clients",
  );
  await loop.shutdown({ grace: 5000 });
  const failures = settled.filter((s) => s.status === "rejected");
  assertEquals(failures, []);
  assertEquals(reports, []);
  assertEquals(loop.stats.accepted, 200);
  assertEquals(loop.stats.ended, 200);
});

Deno.test("EvLoop() throws RangeError when capacity is 0", () => {
  assertThrows(
    () => new EvLoop({ capacity: 0 }),
    RangeError,
    "'capacity' must be an integer >= 1: received 0",
  );
});

Deno.test("EvLoop() throws RangeError when capacity is not an integer", () => {
  assertThrows(
    () => new EvLoop({ capacity: 2.5 }),
    RangeError,
    "'capacity' must be an integer >= 1: received 2.5",
  );
});

Deno.test("EvLoop() throws TypeError when capacity is a string", () => {
  assertThrows(
    () => new EvLoop({ capacity: "3" as unknown as number }),
    TypeError,
    `'capacity' must be a number: received "3"`,
  );
});

Deno.test("EvLoop() throws TypeError when onError is not a function", () => {
  assertThrows(
    () => new EvLoop({ onError: 1 as unknown as () => void }),
    TypeError,
    "'onError' must be a function: received 1",
  );
});

Deno.test("EvLoop.spawn() throws PoolFullError when the pool is full", async () => {
  const { loop } = quietLoop(2);
  const gate = new Gate();
  const tasks = [
    loop.spawn(() => gate.opened),
    loop.spawn(() => gate.opened),
  ];
  const error = assertThrows(() => loop.spawn(() => "never"), PoolFullError);
  assertInstanceOf(error, PoolFullError);
  assertEquals(error.capacity, 2);
  assertEquals(error.name, "PoolFullError");
  assertStringIncludes(error.message, "all 2 slots are in use");
  assertEquals(loop.stats.spawned, 2);
  gate.open();
  await Promise.all(tasks.map((t) => t.result));
  await loop.shutdown({ grace: 0 });
});

Deno.test("EvLoop.spawn() succeeds again once a slot is released", async () => {
  const { loop } = quietLoop(1);
  const gate = new Gate();
  const first = loop.spawn(() => gate.opened);
  assertThrows(() => loop.spawn(() => "too early"), PoolFullError);
  gate.open();
  await first.result;
  const second = loop.spawn(() => "second");
  assertEquals(await second.result, "second");
  assertEquals(loop.stats.peakActive, 1);
  await loop.shutdown({ grace: 0 });
});

Deno.test("EvLoop.spawn() reports stats.active while tasks run", async () => {
  const { loop } = quietLoop(4);
  const gate = new Gate();
  const tasks = [1, 2, 3].map(() => loop.spawn(() => gate.opened));
  assertEquals(loop.stats.active, 3);
  assertEquals(loop.stats.capacity, 4);
  gate.open();
  await Promise.all(tasks.map((t) => t.result));
  assertEquals(loop.stats.active, 0);
  assertEquals(loop.stats.ended, 3);
  await loop.shutdown({ grace: 0 });
});

/**
 * A request/response server proc: one line in, `reply(line)` out, until end
 * of stream or the loop drains (it then stops waiting for the next request).
 */
function requestLoop(
  handle: (line: string, socket: EvSocket) => Promise<void>,
): (socket: EvSocket, thread: EvThread<unknown>) => Promise<string> {
  return async (socket, thread) => {
    while (true) {
      let line: string | null;
      try {
        line = await socket.readLine({ signal: thread.draining });
      } catch (error) {
        if (thread.draining.aborted) return "drained";
        throw error;
      }
      if (line === null) return "eof";
      await handle(line, socket);
    }
  };
}

Deno.test("EvLoop.shutdown() with grace lets an in-flight request finish its reply", async () => {
  const { loop, reports } = quietLoop();
  const reply = payload(7, 256 * 1024);
  const gotRequest = new Gate();
  const work = new Gate();
  let endedAs: Promise<unknown> | undefined;
  const acceptor = loop.listen({ hostname: HOST, port: 0 }, () => {
    const proc = requestLoop(async (_line, socket) => {
      gotRequest.open();
      await work.opened; // the request is being worked on
      await socket.send(reply);
    });
    return (socket, thread) => {
      endedAs = proc(socket, thread);
      return endedAs;
    };
  });
  const conn = await connect(acceptor.port);
  try {
    await writeAll(conn, encoder.encode("GET\n"));
    const reading = readToEnd(conn);
    await gotRequest.opened;
    const stopping = loop.shutdown({ grace: 20_000 });
    assertEquals(loop.state, "draining");
    work.open();
    await withTimeout(stopping, 10_000, "graceful shutdown");
    assertBytes(await reading, reply, "reply");
    assertEquals(await endedAs, "drained");
    assertEquals(reports, []);
  } finally {
    closeQuietly(conn);
  }
});

Deno.test("EvLoop.shutdown() with grace ends tasks that watch thread.draining", async () => {
  const { loop, reports } = quietLoop();
  const waiting = new Gate();
  const idle = loop.spawn(async (thread) => {
    try {
      waiting.open();
      await thread.delay(Infinity, { signal: thread.draining });
      return "slept";
    } catch (error) {
      assertStrictEquals(error, loop.draining.reason);
      return "stopped";
    }
  });
  let served: Promise<unknown> | undefined;
  const proc = requestLoop(async () => {});
  const acceptor = loop.listen({ hostname: HOST, port: 0 }, () => {
    return (socket, thread) => {
      served = proc(socket, thread);
      return served;
    };
  });
  const conn = await connect(acceptor.port);
  try {
    // The connection's task is waiting for its next request.
    await writeAll(conn, encoder.encode("first\n"));
    await waiting.opened;
    // A grace far longer than the safety timeout: ending in time proves the
    // tasks stopped by themselves rather than being aborted.
    await withTimeout(
      loop.shutdown({ grace: 120_000 }),
      20_000,
      "draining tasks to end",
    );
    assertEquals(await idle.result, "stopped");
    assertEquals(await served, "drained");
    assertEquals(idle.signal.reason.message, "The task ended");
    assertEquals((await readUntilClosed(conn)).bytes.byteLength, 0);
    assertEquals(reports, []);
  } finally {
    closeQuietly(conn);
  }
});

Deno.test("EvLoop.shutdown({ grace: 0 }) aborts a task blocked in recv and closes its socket", async () => {
  const { loop, reports } = quietLoop();
  const inRecv = new Gate();
  let serverSocket: EvSocket | undefined;
  let recvError: unknown;
  const acceptor = loop.listen({ hostname: HOST, port: 0 }, () => {
    return async (socket) => {
      serverSocket = socket;
      const pending = socket.recv(new Uint8Array(64));
      inRecv.open();
      try {
        await pending;
      } catch (error) {
        recvError = error;
        throw error;
      }
    };
  });
  const conn = await connect(acceptor.port);
  try {
    await inRecv.opened;
    await loop.shutdown({ grace: 0 });
    assertInstanceOf(recvError, DOMException);
    assertEquals(recvError.name, "AbortError");
    assertStrictEquals(recvError, loop.signal.reason);
    assert(serverSocket?.closed);
    const end = await readUntilClosed(conn);
    assertEquals(end.bytes.byteLength, 0);
    assertEquals(reports, []); // an abort is not an error
  } finally {
    closeQuietly(conn);
  }
});

Deno.test("EvLoop.shutdown() returns the same promise when called twice", async () => {
  const { loop } = quietLoop();
  const first = loop.shutdown({ grace: 0 });
  const second = loop.shutdown({ grace: 5000 });
  assertStrictEquals(second, first);
  await first;
  assertStrictEquals(loop.shutdown(), first);
});

Deno.test("EvLoop.shutdown() with a shorter grace cuts one in progress short", async () => {
  const loop = new EvLoop({ onError: () => {} });
  loop.spawn((thread) => thread.delay(60_000));
  const started = performance.now();
  const first = loop.shutdown({ grace: 30_000 });
  const second = loop.shutdown({ grace: 0 });
  assertStrictEquals(first, second);
  await first;
  assertLess(performance.now() - started, 10_000);
  assertEquals(loop.state, "closed");
});

Deno.test("EvLoop.finished resolves once shutdown has finished", async () => {
  const { loop } = quietLoop();
  const gate = new Gate();
  const task = loop.spawn(() => gate.opened);
  const order: string[] = [];
  const ended = task.result.then(() => order.push("task ended"));
  const finished = loop.finished.then(() =>
    order.push(`finished (${loop.state})`)
  );
  const stopping = loop.shutdown({ grace: 20_000 });
  gate.open();
  await Promise.all([ended, finished, stopping]);
  assertEquals(order, ["task ended", "finished (closed)"]);
});

Deno.test("EvLoop.state goes from running to draining to closed", async () => {
  const { loop } = quietLoop();
  const gate = new Gate();
  loop.spawn(() => gate.opened);
  assertEquals(loop.state, "running");
  assert(!loop.draining.aborted);
  const stopping = loop.shutdown({ grace: 20_000 });
  assertEquals(loop.state, "draining");
  assert(loop.draining.aborted);
  gate.open();
  await stopping;
  assertEquals(loop.state, "closed");
});

Deno.test("EvLoop.spawn() throws BadResource after shutdown", async () => {
  const { loop } = quietLoop();
  const stopping = loop.shutdown({ grace: 0 });
  assertThrows(() => loop.spawn(() => 1), Deno.errors.BadResource);
  await stopping;
  assertThrows(() => loop.spawn(() => 1), Deno.errors.BadResource);
});

Deno.test("EvLoop.listen() throws BadResource after shutdown", async () => {
  const { loop } = quietLoop();
  await loop.shutdown({ grace: 0 });
  assertThrows(
    () => loop.listen({ hostname: HOST, port: 0 }, () => echo),
    Deno.errors.BadResource,
  );
});

Deno.test("EvLoop is shut down by await using at the end of its block", async () => {
  let outer: EvLoop | undefined;
  let port = 0;
  let task: EvThread<string> | undefined;
  {
    await using loop = new EvLoop();
    outer = loop;
    port = loop.listen({ hostname: HOST, port: 0 }, () => echo).port;
    task = loop.spawn(async (thread) => {
      await thread.delay(Infinity, { signal: thread.draining }).catch(() => {});
      return "drained";
    });
  }
  assertEquals(outer.state, "closed");
  assertEquals(await task.result, "drained");
  await assertRejects(() => connect(port), Deno.errors.ConnectionRefused);
});

Deno.test("EvLoop.listen() serves line requests through readLine", async () => {
  const { loop } = quietLoop();
  const acceptor = loop.listen(
    { hostname: HOST, port: 0 },
    () =>
      requestLoop(async (line, socket) => {
        await socket.send(encoder.encode(`${line.toUpperCase()}\n`));
      }),
  );
  const conn = await connect(acceptor.port);
  try {
    await writeAll(conn, encoder.encode("hello\n"));
    assertEquals(await readLine(conn), "HELLO");
    await writeAll(conn, encoder.encode("again\n"));
    assertEquals(await readLine(conn), "AGAIN");
    await conn.closeWrite();
    assertEquals(decoder.decode(await readToEnd(conn)), "");
  } finally {
    closeQuietly(conn);
  }
  await loop.shutdown({ grace: 5000 });
});
