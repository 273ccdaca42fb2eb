// Copyright 2026 the @corothread/evthread authors. MIT license.
// Tests of absolute deadlines: the `deadline` option of every blocking call,
// EvSocket.setDeadline / setReadDeadline / setWriteDeadline, and
// EvThread.deadline; and of EvSocket.setIdleTimeout(), a deadline in the same
// queue that bytes moving push back. Deadlines of 20-150 ms are the thing
// under test (the idle timeout's test takes 1.3 s of real time); the
// order in which two deadlines fire (one shared queue) is used as a clock;
// `SAFETY` timeouts are only safety nets.

import {
  assert,
  assertEquals,
  assertGreater,
  assertLess,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import { EvLoop, EvSocket } from "../mod.ts";
import {
  assertBytes,
  closedPort,
  decoder,
  encoder,
  HOST,
  payload,
  within,
  withTimeout,
} from "./_helpers.ts";

const SAFETY = 15_000;

interface Pair extends AsyncDisposable {
  a: EvSocket;
  b: EvSocket;
}

async function pair(): Promise<Pair> {
  using listener = Deno.listen({ hostname: HOST, port: 0 });
  const [client, server] = await Promise.all([
    Deno.connect({ hostname: HOST, port: listener.addr.port }),
    listener.accept(),
  ]);
  const a = new EvSocket(client);
  const b = new EvSocket(server);
  return {
    a,
    b,
    async [Symbol.asyncDispose]() {
      await Promise.all([a[Symbol.asyncDispose](), b[Symbol.asyncDispose]()]);
    },
  };
}

function assertTimeout(error: unknown, text?: string): void {
  assert(error instanceof DOMException, `expected a DOMException: ${error}`);
  assertEquals(error.name, "TimeoutError");
  if (text !== undefined) assertStringIncludes(error.message, text);
}

/** Resolves once `socket` has at least `n` bytes buffered. */
async function buffered(socket: EvSocket, n: number): Promise<void> {
  const bytes = await socket.peek(n, { timeout: SAFETY });
  assertEquals(bytes?.byteLength, n);
}

// ------------------------------------------------------ per-call deadline

Deno.test("EvSocket deadline option cuts a trickling peer at the deadline, where per-call timeouts do not", async () => {
  await using p = await pair();
  const TOTAL = 60;
  const message = payload(7, TOTAL);
  // The peer sends one byte, then the next each time the reader has taken
  // one: a trickle as fast as the reader allows, which never lets a 200 ms
  // per-call timeout expire.
  const got: number[] = [];
  let sent = 0;
  const trickle = async () => {
    while (sent < TOTAL) {
      await p.a.send(message.subarray(sent, sent + 1));
      sent++;
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  const trickling = trickle();
  const deadline = Date.now() + 100;
  const one = new Uint8Array(1);
  const error = await assertRejects(async () => {
    while (got.length < TOTAL) {
      const n = await p.b.recv(one, { timeout: 200, deadline });
      if (n === null) break;
      got.push(one[0]!);
    }
  });
  assertTimeout(error, "deadline");
  // 100 ms into a 600 ms trickle: cut well before the end.
  assertLess(got.length, TOTAL);
  // Nothing lost: the rest arrives in order once the deadline is gone.
  await trickling;
  while (got.length < TOTAL) {
    const n = await p.b.recv(one, { timeout: SAFETY });
    assertEquals(n, 1);
    got.push(one[0]!);
  }
  assertBytes(new Uint8Array(got), message);
});

Deno.test("EvSocket.recv() with only a per-call timeout reads a whole trickle (the case deadlines fix)", async () => {
  await using p = await pair();
  const TOTAL = 20;
  let sent = 0;
  const trickling = (async () => {
    while (sent < TOTAL) {
      await p.a.send(new Uint8Array([sent]));
      sent++;
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  const one = new Uint8Array(1);
  let got = 0;
  while (got < TOTAL) {
    assertEquals(await p.b.recv(one, { timeout: 1000 }), 1);
    assertEquals(one[0], got);
    got++;
  }
  await trickling;
});

Deno.test("EvSocket read calls reject at once after their deadline, even with bytes buffered, and take none", async () => {
  await using p = await pair();
  await p.a.send(encoder.encode("line\nrest"));
  await buffered(p.b, 9);
  const past = Date.now() - 1;
  const buf = new Uint8Array(4);
  assertTimeout(await assertRejects(() => p.b.recv(buf, { deadline: past })));
  assertTimeout(
    await assertRejects(() => p.b.readFull(buf, { deadline: new Date(past) })),
  );
  assertTimeout(await assertRejects(() => p.b.readLine({ deadline: past })));
  assertTimeout(
    await assertRejects(() =>
      p.b.readUntil(encoder.encode("\n"), { deadline: past })
    ),
  );
  assertTimeout(await assertRejects(() => p.b.peek(1, { deadline: past })));
  assertEquals(buf, new Uint8Array(4));
  assertEquals(p.b.buffered, 9);
  assertEquals(await p.b.readLine({ deadline: Date.now() + SAFETY }), "line");
});

Deno.test("EvSocket readFull() that passes its deadline part way keeps the bytes it had seen", async () => {
  await using p = await pair();
  await p.a.send(encoder.encode("abc"));
  const buf = new Uint8Array(6);
  assertTimeout(
    await assertRejects(() => p.b.readFull(buf, { deadline: Date.now() + 30 })),
    "deadline",
  );
  await p.a.send(encoder.encode("def"));
  assertEquals(
    decoder.decode((await p.b.readFull(buf, { timeout: SAFETY }))!),
    "abcdef",
  );
});

Deno.test("EvSocket call options: the earlier of timeout and deadline wins", async () => {
  await using p = await pair();
  const buf = new Uint8Array(1);
  assertTimeout(
    await assertRejects(() =>
      p.b.recv(buf, { timeout: 20, deadline: Date.now() + SAFETY })
    ),
    "timed out after 20 ms",
  );
  assertTimeout(
    await assertRejects(() =>
      p.b.recv(buf, { timeout: SAFETY, deadline: Date.now() + 20 })
    ),
    "deadline",
  );
});

Deno.test("EvSocket deadline option rejects bad values with TypeError / RangeError", async () => {
  await using p = await pair();
  const buf = new Uint8Array(1);
  for (const bad of ["soon", null, {}, 10n]) {
    await assertRejects(
      // deno-lint-ignore no-explicit-any
      () => p.b.recv(buf, { deadline: bad as any }),
      TypeError,
      "'deadline' must be a Date or epoch milliseconds",
    );
    await assertRejects(
      // deno-lint-ignore no-explicit-any
      () => p.a.send(buf, { deadline: bad as any }),
      TypeError,
    );
  }
  for (const bad of [NaN, -Infinity, new Date("not a date")]) {
    await assertRejects(() => p.b.recv(buf, { deadline: bad }), RangeError);
    await assertRejects(() => p.a.send(buf, { deadline: bad }), RangeError);
    assertThrows(() => p.b.setDeadline(bad), RangeError);
  }
  // deno-lint-ignore no-explicit-any
  assertThrows(() => p.b.setReadDeadline("soon" as any), TypeError);
  // Infinity means no deadline.
  await p.a.send(encoder.encode("x"), { deadline: Infinity });
  assertEquals(await p.b.recv(buf, { deadline: Infinity }), 1);
});

Deno.test("EvSocket.send() with a passed deadline rejects at once, sending nothing", async () => {
  await using p = await pair();
  const error = await assertRejects(() =>
    p.a.send(encoder.encode("never"), { deadline: Date.now() - 1 })
  );
  assertTimeout(error);
  assertEquals((error as { bytesWritten?: number }).bytesWritten, 0);
  await p.a.send(encoder.encode("sent"));
  await p.a.closeWrite();
  assertEquals(await p.b.readLine({ timeout: SAFETY }), "sent");
});

// ---------------------------------------------------- socket-wide deadline

Deno.test("EvSocket.setReadDeadline() applies to a recv that was already waiting", async () => {
  await using p = await pair();
  const buf = new Uint8Array(8);
  const pending = p.b.recv(buf); // no timeout of its own
  p.b.setReadDeadline(Date.now() + 30);
  assertTimeout(await assertRejects(() => pending), "read deadline");
  assertEquals(buf, new Uint8Array(8)); // left alone after rejecting
  // The deadline stays passed: the next call rejects at once.
  assertTimeout(await assertRejects(() => p.b.recv(buf)));
  // Moving it into the future makes the socket usable again, and the bytes
  // the expired read would have brought are not lost.
  p.b.setReadDeadline(Date.now() + SAFETY);
  await p.a.send(encoder.encode("later"));
  assertEquals(await p.b.recv(buf), 5);
  assertEquals(decoder.decode(buf.subarray(0, 5)), "later");
});

Deno.test("EvSocket.setReadDeadline() rejects every queued read and keeps their bytes", async () => {
  await using p = await pair();
  await p.a.send(encoder.encode("par"));
  await buffered(p.b, 3);
  const line = p.b.readLine();
  const full = p.b.readFull(new Uint8Array(100));
  const peek = p.b.peek(50);
  p.b.setReadDeadline(new Date(Date.now() + 20));
  for (const call of [line, full, peek]) {
    assertTimeout(await assertRejects(() => call));
  }
  p.b.setReadDeadline(undefined);
  await p.a.send(encoder.encode("tial\n"));
  assertEquals(await p.b.readLine({ timeout: SAFETY }), "partial");
});

Deno.test("EvSocket.setReadDeadline() moved later keeps a pending read waiting", async () => {
  await using p = await pair();
  await using q = await pair();
  const buf = new Uint8Array(8);
  const pending = p.b.recv(buf);
  let settled = false;
  pending.finally(() => settled = true).catch(() => {});
  p.b.setReadDeadline(Date.now() + 20);
  p.b.setReadDeadline(Date.now() + SAFETY); // moved before it fired
  // A second socket's deadline 80 ms out fires after the first one's
  // original 20 ms would have: the shared queue fires in time order.
  q.b.setReadDeadline(Date.now() + 80);
  assertTimeout(await assertRejects(() => q.b.recv(new Uint8Array(1))));
  assert(!settled, "the read must still be waiting");
  await p.a.send(encoder.encode("ok"));
  assertEquals(await pending, 2);
});

Deno.test("EvSocket.setReadDeadline() moved earlier applies at the new time", async () => {
  await using p = await pair();
  p.b.setReadDeadline(Date.now() + SAFETY);
  const pending = p.b.readLine();
  p.b.setReadDeadline(Date.now() + 20);
  assertTimeout(await within(assertRejects(() => pending), "expiry", SAFETY));
});

Deno.test("EvSocket.setReadDeadline() in the past rejects pending reads at once; undefined clears it", async () => {
  await using p = await pair();
  const pending = p.b.recv(new Uint8Array(1));
  p.b.setReadDeadline(0); // epoch: long past
  assertTimeout(await assertRejects(() => pending));
  p.b.setReadDeadline(undefined);
  await p.a.send(new Uint8Array([42]));
  const buf = new Uint8Array(1);
  assertEquals(await p.b.recv(buf, { timeout: SAFETY }), 1);
  assertEquals(buf[0], 42);
});

Deno.test("EvSocket.recv() cut by setReadDeadline() never writes into the caller's buffer; the bytes go to the next read", async () => {
  await using p = await pair();
  const mine = new Uint8Array(16);
  const pending = p.b.recv(mine);
  p.b.setReadDeadline(Date.now() - 1);
  await assertRejects(() => pending);
  p.b.setReadDeadline(undefined);
  await p.a.send(new Uint8Array([1, 2, 3]));
  const next = new Uint8Array(16);
  assertEquals(await p.b.recv(next, { timeout: SAFETY }), 3);
  assertEquals(next.subarray(0, 3), new Uint8Array([1, 2, 3]));
  assertEquals(mine, new Uint8Array(16));
});

Deno.test("EvSocket.setWriteDeadline() expires a send already waiting on a peer that does not read; nothing is lost", async () => {
  await using p = await pair();
  const data = payload(3, 32 << 20);
  const pending = p.a.send(data); // more than the kernel buffers hold
  p.a.setWriteDeadline(Date.now() + 50);
  const error = await assertRejects(() => pending);
  assertTimeout(error, "send deadline");
  const written = (error as { bytesWritten: number }).bytesWritten;
  assertLess(written, data.byteLength);
  // Later sends reject until the deadline moves; then they queue behind the
  // unwritten rest, which is still written.
  assertTimeout(await assertRejects(() => p.a.send(encoder.encode("!"))));
  p.a.setWriteDeadline(undefined);
  const tail = encoder.encode("tail");
  const after = p.a.send(tail);
  const closing = after.then(() => p.a.closeWrite());
  const received: Uint8Array[] = [];
  let total = 0;
  const buf = new Uint8Array(1 << 20);
  while (true) {
    const n = await p.b.recv(buf, { timeout: SAFETY });
    if (n === null) break;
    received.push(buf.slice(0, n));
    total += n;
  }
  await closing;
  const all = new Uint8Array(total);
  let at = 0;
  for (const chunk of received) {
    all.set(chunk, at);
    at += chunk.byteLength;
  }
  assertEquals(total, data.byteLength + tail.byteLength);
  assertBytes(all.subarray(0, data.byteLength), data);
  assertEquals(decoder.decode(all.subarray(data.byteLength)), "tail");
});

Deno.test("EvSocket.send() cut by a write deadline never reads the caller's buffer afterwards: the peer gets the original bytes", async () => {
  await using p = await pair();
  const size = 8 << 20;
  const original = payload(7, size);
  const mine = original.slice();
  p.a.setWriteDeadline(Date.now() + 30);
  const error = await assertRejects(() => p.a.send(mine));
  assertTimeout(error);
  const written = (error as { bytesWritten: number }).bytesWritten;
  assertLess(written, size);
  mine.fill(0xee); // the caller reuses its buffer
  p.a.setWriteDeadline(undefined);
  const flushed = p.a.closeWrite();
  const got = await withTimeout(
    p.b.readFull(new Uint8Array(size), { timeout: SAFETY }),
    SAFETY * 2,
    "reading the whole send",
  );
  await flushed;
  assertBytes(got!, original, "received");
});

Deno.test("EvSocket.setDeadline() sets both directions; the write side alone does not touch reads", async () => {
  await using p = await pair();
  p.b.setWriteDeadline(Date.now() - 1);
  await assertRejects(() => p.b.send(new Uint8Array(1)));
  // Reads are unaffected.
  await p.a.send(encoder.encode("r\n"));
  assertEquals(await p.b.readLine({ timeout: SAFETY }), "r");
  p.b.setDeadline(Date.now() - 1);
  await assertRejects(() => p.b.readLine());
  await assertRejects(() => p.b.send(new Uint8Array(1)));
  p.b.setDeadline(undefined);
  await p.b.send(encoder.encode("w\n"));
  assertEquals(await p.a.readLine({ timeout: SAFETY }), "w");
});

Deno.test("EvSocket.setReadDeadline() errors a readable stream that is waiting", async () => {
  await using p = await pair();
  const reader = p.b.readable.getReader();
  const pending = reader.read();
  p.b.setReadDeadline(Date.now() + 20);
  assertTimeout(await assertRejects(() => pending));
  reader.releaseLock();
});

Deno.test("EvSocket.readable is usable again once a passed read deadline is moved (as the socket is)", async () => {
  await using p = await pair();
  const reader = p.b.readable.getReader();
  const pending = reader.read();
  p.b.setReadDeadline(Date.now() - 1);
  assertTimeout(await assertRejects(() => pending));
  reader.releaseLock();
  p.b.setReadDeadline(undefined);
  // recv works again...
  await p.a.send(encoder.encode("x"));
  assertEquals(await p.b.recv(new Uint8Array(1), { timeout: SAFETY }), 1);
  // ...and so must the stream.
  await p.a.send(encoder.encode("y"));
  const again = p.b.readable.getReader();
  const chunk = await withTimeout(again.read(), SAFETY, "stream read");
  assertEquals(decoder.decode(chunk.value), "y");
  again.releaseLock();
});

Deno.test("EvSocket deadlines hold no timer once the socket is closed", async () => {
  const p = await pair();
  p.a.setDeadline(Date.now() + 600_000);
  p.b.setReadDeadline(new Date(Date.now() + 600_000));
  p.b.setWriteDeadline(Date.now() + 600_000);
  await p[Symbol.asyncDispose]();
  // Setting one on a closed socket arms nothing either (the op sanitizer
  // would report a timer left behind).
  p.b.setDeadline(Date.now() + 600_000);
});

Deno.test("EvSocket deadlines count as timeouts in the loop's stats", async () => {
  await using loop = new EvLoop({ onError: () => {} });
  using listener = Deno.listen({ hostname: HOST, port: 0 });
  const accepted = listener.accept();
  const task = loop.spawn(async (thread) => {
    const socket = await thread.connect({ port: listener.addr.port });
    socket.setReadDeadline(Date.now() + 20);
    await assertRejects(() => socket.recv(new Uint8Array(1)));
    await assertRejects(() => socket.recv(new Uint8Array(1)));
    await assertRejects(() => socket.readLine({ deadline: Date.now() - 1 }));
  });
  using _peer = await accepted;
  await task.result;
  assertEquals(loop.stats.timeouts, 3);
});

// ------------------------------------------------------------ idle timeout
// A socket-wide deadline that bytes moving push back.

Deno.test("EvSocket.setIdleTimeout() starts over from the bytes a pending recv() receives", async () => {
  await using p = await pair();
  const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const buf = new Uint8Array(8);
  const pending = p.b.recv(buf); // no per-call timeout
  p.b.setIdleTimeout(1000);
  // Time passing is what is tested here: 800 ms of silence, then bytes.
  await pause(800);
  await p.a.send(encoder.encode("ping"));
  assertEquals(await pending, 4);
  // Those bytes were activity: the idle timer restarts from them, so a
  // call made now survives past the original 1000 ms mark.
  const next = p.b.recv(buf);
  await pause(500);
  await p.a.send(encoder.encode("pong"));
  assertEquals(await next, 4);
  assertEquals(decoder.decode(buf.subarray(0, 4)), "pong");
  p.b.setIdleTimeout(undefined);
});

// ------------------------------------------------------ EvThread deadlines

Deno.test("EvThread.deadline aborts the task with a TimeoutError and closes its sockets", async () => {
  await using loop = new EvLoop({ onError: () => {} });
  using listener = Deno.listen({ hostname: HOST, port: 0 });
  const accepted = listener.accept();
  let socket: EvSocket | undefined;
  const task = loop.spawn(async (thread) => {
    socket = await thread.connect({ port: listener.addr.port });
    thread.deadline = Date.now() + 30;
    assertGreater(thread.deadline, 0);
    await socket.readLine(); // the peer never speaks
  });
  using _peer = await accepted;
  const error = await assertRejects(() => task.result);
  assertTimeout(error, "task's deadline");
  assert(socket!.closed);
  assertEquals(loop.stats.timeouts, 1);
});

Deno.test("EvThread.deadline bounds child tasks too", async () => {
  await using loop = new EvLoop({ onError: () => {} });
  let childReason: unknown;
  const task = loop.spawn(async (thread) => {
    const child = thread.spawn(async (c) => {
      try {
        await c.delay(60_000);
      } catch (error) {
        childReason = error;
        throw error;
      }
    });
    thread.deadline = new Date(Date.now() + 20);
    await child.result;
  });
  assertTimeout(await assertRejects(() => task.result));
  assertTimeout(childReason);
});

Deno.test("EvThread.deadline can be moved later or removed before it passes", async () => {
  await using loop = new EvLoop({ onError: () => {} });
  const gate = Promise.withResolvers<void>();
  const task = loop.spawn(async (thread) => {
    thread.deadline = Date.now() + 20;
    thread.deadline = Date.now() + SAFETY;
    thread.deadline = Date.now() + 20;
    thread.deadline = undefined;
    assertEquals(thread.deadline, undefined);
    // Outlive the 20 ms deadlines: wait on a later one elsewhere.
    await loop.spawn(async (other) => {
      await assertRejects(() =>
        other.delay(60_000, { deadline: Date.now() + 80 })
      );
    }).result;
    gate.resolve();
    return "done";
  });
  assertEquals(await task.result, "done");
  await gate.promise;
});

Deno.test("EvThread.deadline in the past aborts at once; bad values throw", async () => {
  await using loop = new EvLoop({ onError: () => {} });
  const task = loop.spawn(async (thread) => {
    assertThrows(() => {
      // deno-lint-ignore no-explicit-any
      thread.deadline = "soon" as any;
    }, TypeError);
    assertThrows(() => {
      thread.deadline = NaN;
    }, RangeError);
    thread.deadline = Date.now() - 1;
    assert(thread.signal.aborted);
    await thread.delay(60_000);
  });
  assertTimeout(await assertRejects(() => task.result));
});

Deno.test("EvThread.delay() rejects with a TimeoutError when its deadline comes first", async () => {
  await using loop = new EvLoop({ onError: () => {} });
  const task = loop.spawn(async (thread) => {
    await thread.delay(1, { deadline: Date.now() + SAFETY }); // ms first
    const error = await assertRejects(() =>
      thread.delay(60_000, { deadline: Date.now() + 20 })
    );
    assertTimeout(error, "deadline");
    assertTimeout(
      await assertRejects(() => thread.delay(1, { deadline: 0 })),
    );
    await assertRejects(
      // deno-lint-ignore no-explicit-any
      () => thread.delay(1, { deadline: "x" as any }),
      TypeError,
    );
    return "ok";
  });
  assertEquals(await task.result, "ok");
});

Deno.test("EvThread.delay(Infinity, { deadline }) does not reject before a deadline more than 2^31-1 ms away", async () => {
  // setTimeout takes at most 2^31-1 ms (about 24.8 days). Time is not faked:
  // a wrapper records what the delay asks of setTimeout and fires a
  // clamped timer at once, standing in for 24.8 days passing.
  const original = globalThis.setTimeout;
  const asked: number[] = [];
  // deno-lint-ignore no-explicit-any
  (globalThis as any).setTimeout = (fn: () => void, ms?: number) => {
    if (ms !== undefined && ms >= 2 ** 31 - 1) {
      asked.push(ms);
      return original(fn, 0);
    }
    return original(fn, ms);
  };
  await using loop = new EvLoop({ onError: () => {} });
  const deadline = Date.now() + 30 * 86_400_000; // 30 days away
  const task = loop.spawn(async (thread) => {
    try {
      await thread.delay(Infinity, { deadline });
      return "resolved";
    } catch (error) {
      return `${(error as Error).name} at ${
        Date.now() < deadline ? "before" : "after"
      } the deadline`;
    } finally {
      globalThis.setTimeout = original;
    }
  });
  // The task must still be waiting once the clamped (24.8-day) timer has
  // fired: the deadline is 5 days later.
  let timer: ReturnType<typeof setTimeout> | undefined;
  const outcome = await Promise.race([
    task.result,
    new Promise<string>((resolve) => {
      timer = original(() => resolve("waiting"), 50);
    }),
  ]);
  clearTimeout(timer);
  globalThis.setTimeout = original;
  task.abort();
  await task.result;
  assertEquals(asked.length > 0, true);
  assertEquals(outcome, "waiting");
});

Deno.test("EvThread.connect() takes a deadline; a passed one rejects before connecting", async () => {
  await using loop = new EvLoop({ onError: () => {} });
  using listener = Deno.listen({ hostname: HOST, port: 0 });
  const task = loop.spawn(async (thread) => {
    assertTimeout(
      await assertRejects(() =>
        thread.connect({ port: listener.addr.port }, {
          deadline: Date.now() - 1,
        })
      ),
      "deadline",
    );
    await assertRejects(
      () =>
        thread.connect({ port: closedPort() }, {
          deadline: Date.now() + SAFETY,
        }),
      Deno.errors.ConnectionRefused,
    );
    const accepted = listener.accept();
    const socket = await thread.connect({ port: listener.addr.port }, {
      deadline: new Date(Date.now() + SAFETY),
    });
    (await accepted).close();
    assertEquals(
      await socket.recv(new Uint8Array(1), { timeout: SAFETY }),
      null,
    );
  });
  await task.result;
});
