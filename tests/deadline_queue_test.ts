// Copyright 2026 the @corothread/evthread authors. MIT license.
// Unit tests of the shared deadline queue (src/_deadline_queue.ts): entries
// added while JavaScript runs enter the heap together at the end of that run
// of microtasks, with one clock read.

import { assert, assertEquals } from "@std/assert";
import { type DeadlineEntry, DeadlineQueue } from "../src/_deadline_queue.ts";

function entry(fired: string[], name: string): DeadlineEntry {
  return { at: 0, index: -1, fire: () => fired.push(name) };
}

/** Resolves once `queue` has nothing pending, or rejects after `ms`. */
async function drained(queue: DeadlineQueue, ms = 5000): Promise<void> {
  const start = performance.now();
  while (queue.size > 0) {
    if (performance.now() - start > ms) throw new Error("not drained");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

Deno.test("DeadlineQueue: an entry cancelled in the turn it was added never fires and leaves no timer", async () => {
  const queue = new DeadlineQueue();
  const fired: string[] = [];
  const a = entry(fired, "a");
  queue.add(a, 10);
  assertEquals(queue.size, 1);
  queue.cancel(a);
  assertEquals(queue.size, 0);
  queue.settle();
  await new Promise((resolve) => setTimeout(resolve, 30));
  assertEquals(fired, []);
  assertEquals(a.index, -1);
});

Deno.test("DeadlineQueue: an entry cancelled and added again in one turn fires once", async () => {
  const queue = new DeadlineQueue();
  const fired: string[] = [];
  const a = entry(fired, "a");
  queue.add(a, 5);
  queue.cancel(a);
  queue.add(a, 10);
  assertEquals(queue.size, 1);
  await drained(queue);
  assertEquals(fired, ["a"]);
  queue.settle();
});

Deno.test("DeadlineQueue: entries fire in deadline order, never before their time", async () => {
  const queue = new DeadlineQueue();
  const fired: string[] = [];
  const times: number[] = [];
  const start = performance.now();
  for (const [name, ms] of [["c", 60], ["a", 20], ["b", 40]] as const) {
    queue.add({
      at: 0,
      index: -1,
      fire: () => {
        fired.push(name);
        times.push(performance.now() - start);
      },
    }, ms);
  }
  // A long run of JavaScript after the adds: the deadlines count from its
  // end at the latest, never from before the adds.
  while (performance.now() - start < 15) { /* busy */ }
  await drained(queue);
  assertEquals(fired, ["a", "b", "c"]);
  assert(times[0]! >= 20, `a fired after ${times[0]} ms`);
  assert(times[1]! >= 40, `b fired after ${times[1]} ms`);
  assert(times[2]! >= 60, `c fired after ${times[2]} ms`);
  queue.settle();
});

Deno.test("DeadlineQueue: entries added by a firing entry are scheduled too", async () => {
  const queue = new DeadlineQueue();
  const fired: string[] = [];
  queue.add({
    at: 0,
    index: -1,
    fire: () => {
      fired.push("first");
      queue.add(entry(fired, "second"), 5);
    },
  }, 5);
  await drained(queue);
  assertEquals(fired, ["first", "second"]);
  queue.settle();
});
