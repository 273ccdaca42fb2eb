// Copyright 2026 the @corothread/evthread authors. MIT license.
// Lifecycle regressions found in review, one test each.

import {
  assert,
  assertEquals,
  assertLess,
  assertRejects,
  assertStrictEquals,
} from "@std/assert";
import { EvLoop, type EvSocket } from "../mod.ts";

const HOST = "127.0.0.1";

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
    const pending = socket.recv(buf); // no options: reads in place
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
