// Copyright 2026 the @corothread/evthread authors. MIT license.
import { assert, assertEquals } from "@std/assert";
import { BufferPool } from "../src/_buffer_pool.ts";

Deno.test("BufferPool.get() rounds up to its class and reuses a freed buffer of that class only", () => {
  const pool = new BufferPool(1024, 8192, 65_536);
  const big = pool.get(5000);
  assertEquals(big.byteLength, 8192);
  pool.put(big);
  const small = pool.get(1000);
  assertEquals(small.byteLength, 1024, "a new buffer of its own class");
  assert(pool.get(8000) === big);
});

Deno.test("BufferPool.getAny() takes a free buffer of a bigger class before making one", () => {
  const pool = new BufferPool(1024, 8192, 65_536);
  const big = pool.get(8192);
  pool.put(big);
  assert(pool.getAny(1000) === big);
  const fresh = pool.getAny(1000);
  assertEquals(fresh.byteLength, 1024, "none free: a new one of its class");
  pool.put(big); // back to its own class
  assert(pool.get(8192) === big);
});
