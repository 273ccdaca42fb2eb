// Copyright 2026 the @corothread/evthread authors. MIT license.
// Buffers shared by all sockets of a process. A socket needs a full-size
// read buffer only while bytes stream in, and a staging buffer only while
// sends are queued: an idle socket gives them back here, so 10,000 idle
// connections do not hold 10,000 buffers (bench/c10k.ts).

/** A bounded free list of same-size byte buffers. */
export class BufferPool {
  /** The size of every buffer in the pool. */
  readonly size: number;
  #max: number;
  #free: Uint8Array[] = [];

  /**
   * @param size Bytes per buffer.
   * @param max Most free buffers kept; more are left to the GC.
   */
  constructor(size: number, max: number) {
    this.size = size;
    this.#max = max;
  }

  /** A buffer of `size` bytes (its old contents are not cleared). */
  get(): Uint8Array {
    return this.#free.pop() ?? new Uint8Array(this.size);
  }

  /**
   * Returns a buffer taken with {@linkcode BufferPool.get}. The caller must
   * not use it afterwards, and no read or write may still be working in it.
   */
  put(buffer: Uint8Array): void {
    if (buffer.byteLength === this.size && this.#free.length < this.#max) {
      this.#free.push(buffer);
    }
  }
}

/** The process's 16 KiB buffers: socket reads and staged sends. */
export const buffers: BufferPool = new BufferPool(16_384, 256);
