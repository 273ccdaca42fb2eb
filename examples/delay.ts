// Copyright 2026 the @corothread/evthread authors. MIT license.

/**
 * `EvThread.delay`, the seed's `EVTHREAD_delay`: while one task waits, the
 * others run. Three tasks tick at different rates and their lines
 * interleave; a fourth starts a 10 second sleep and is aborted 400 ms in,
 * so the whole run takes about half a second, not ten.
 *
 * ```sh
 * deno run examples/delay.ts
 * ```
 *
 * It takes no arguments and needs no permissions (`--allow-net` does no
 * harm). The expected output (times vary by a few ms):
 *
 * ```text
 *     0 ms  fast     starts: 3 steps of 100 ms
 *     0 ms  slow     starts: 2 steps of 250 ms
 *     0 ms  sleeper  starts: sleeps for 10 s
 *     0 ms  waker    starts: will wake the sleeper in 400 ms
 *   100 ms  fast     step 1
 *   200 ms  fast     step 2
 *   250 ms  slow     step 1
 *   300 ms  fast     step 3, done
 *   400 ms  waker    aborts the sleeper
 *   400 ms  sleeper  woken early: Error: time to get up
 *   500 ms  slow     step 2, done
 * ```
 *
 * then a summary, and it exits 0.
 *
 * @module
 */

import { EvLoop, type EvThread } from "../mod.ts";

if (Deno.args.length > 0) {
  if (Deno.args[0] === "-h" || Deno.args[0] === "--help") {
    console.log("usage: deno run examples/delay.ts");
    Deno.exit(0);
  }
  console.error(`delay: unexpected argument: ${JSON.stringify(Deno.args[0])}`);
  console.error("usage: deno run examples/delay.ts");
  Deno.exit(2);
}

const start = performance.now();
function log(who: string, what: string): void {
  const ms = String(Math.round(performance.now() - start)).padStart(5);
  console.log(`${ms} ms  ${who.padEnd(7)}  ${what}`);
}

const loop = new EvLoop({ capacity: 10 });

/** A task that wakes up `steps` times, `ms` apart. */
function ticker(
  name: string,
  steps: number,
  ms: number,
): (thread: EvThread) => Promise<void> {
  return async (thread: EvThread): Promise<void> => {
    log(name, `starts: ${steps} steps of ${ms} ms`);
    for (let i = 1; i <= steps; i++) {
      await thread.delay(ms); // the other tasks run meanwhile
      log(name, i < steps ? `step ${i}` : `step ${i}, done`);
    }
  };
}

const fast = loop.spawn(ticker("fast", 3, 100));
const slow = loop.spawn(ticker("slow", 2, 250));

const sleeper = loop.spawn(async (thread) => {
  log("sleeper", "starts: sleeps for 10 s");
  try {
    await thread.delay(10_000);
    log("sleeper", "slept the full 10 s");
  } catch (error) {
    // An abort rejects the pending delay with the abort's reason.
    log("sleeper", `woken early: ${error}`);
    throw error;
  }
});

const waker = loop.spawn(async (thread) => {
  log("waker", "starts: will wake the sleeper in 400 ms");
  await thread.delay(400);
  log("waker", "aborts the sleeper");
  sleeper.abort(new Error("time to get up"));
});

await Promise.all([fast.result, slow.result, waker.result]);
// The sleeper's result rejects with the reason it was aborted with. An
// abort is not a failure: the loop does not report it to onError.
const outcome = await sleeper.result.then(
  () => "finished",
  (reason) => `aborted (${reason})`,
);
const elapsed = Math.round(performance.now() - start);
console.log(`all tasks ended after ${elapsed} ms; the sleeper was ${outcome}`);
await loop.shutdown();
const { spawned, ended, errors } = loop.stats;
console.log(`stats: spawned=${spawned} ended=${ended} errors=${errors}`);
