// Copyright 2026 the @corothread/evthread authors. MIT license.
// Which task's code is running, across its awaits: `EvLoop.shutdown()`
// awaited from inside one of the loop's tasks must not wait for that task.
// Deno carries an AsyncLocalStorage's store through every continuation of
// the code it runs; entering one costs well under a microsecond, once per
// task (not per call), and reading it is done only by `shutdown()`.

import { AsyncLocalStorage } from "node:async_hooks";
import type { EvThread } from "./ev_thread.ts";

/** The task whose procedure (or a continuation of it) is running. */
export const taskContext: AsyncLocalStorage<EvThread<unknown>> =
  new AsyncLocalStorage();
