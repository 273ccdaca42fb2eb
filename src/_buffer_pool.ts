// Copyright 2026 the @corothread/evthread authors. MIT license.
// Buffers shared by all sockets of a process. A socket needs a full-size
// read buffer only while bytes stream in, and a staging buffer only while
// sends are queued: an idle socket gives them back here, so 10,000 idle
// connections do not hold 10,000 buffers (bench/c10k/c10k.ts), and a socket that
// streams does not allocate a buffer per burst (bench/echo/echo.ts).

/**
 * Free byte buffers in power-of-two size classes, from `min` to `max`
 * bytes, each class bounded (fewer of the larger ones).
 */
export class BufferPool {
  /** The smallest size handed out. */
  readonly min: number;
  /** The largest size handed out. */
  readonly max: number;
  #classes: Uint8Array[][] = [];
  #limits: number[] = [];

  /**
   * @param min Smallest class, a power of two.
   * @param max Largest class, a power of two.
   * @param bytesPerClass Most bytes kept free in each class.
   */
  constructor(min: number, max: number, bytesPerClass: number) {
    this.min = min;
    this.max = max;
    for (let size = min; size <= max; size *= 2) {
      this.#classes.push([]);
      this.#limits.push(Math.max(2, Math.floor(bytesPerClass / size)));
    }
  }

  /**
   * A buffer of at least `size` bytes (at most `max`), rounded up to its
   * class; its old contents are not cleared.
   */
  get(size: number): Uint8Array {
    const index = this.#classOf(size);
    return this.#classes[index]?.pop() ?? new Uint8Array(this.min * 2 ** index);
  }

  /**
   * Like {@linkcode BufferPool.get}, but takes a free buffer of a bigger
   * class before making a new one: for a buffer held briefly whose size
   * only has to suffice (a staged send), so that a send of 20 KiB reuses
   * the 64 KiB buffer a read just gave back rather than allocating 32 KiB.
   */
  getAny(size: number): Uint8Array {
    const index = this.#classOf(size);
    const classes = this.#classes;
    for (let i = index; i < classes.length; i++) {
      const free = classes[i]!;
      if (free.length > 0) return free.pop()!;
    }
    return new Uint8Array(this.min * 2 ** index);
  }

  /**
   * Returns a buffer taken with {@linkcode BufferPool.get} or
   * {@linkcode BufferPool.getAny}. The caller must
   * not use it afterwards, and no read or write may still be working in it.
   */
  put(buffer: Uint8Array): void {
    const index = this.#classOf(buffer.byteLength);
    const bytes = this.min * 2 ** index;
    if (bytes !== buffer.byteLength || bytes > this.max) return;
    const free = this.#classes[index]!;
    if (free.length < this.#limits[index]!) free.push(buffer);
  }

  /** The index of the smallest class of at least `size` bytes. */
  #classOf(size: number): number {
    let index = 0;
    while (this.min * 2 ** index < size) index++;
    return index;
  }
}

/**
 * The process's buffers for socket reads and staged sends: 16 KiB-1 MiB,
 * at most 8 MiB free per class: 128 of 64 KiB, so that 100 streaming
 * sockets, whose reads complete (and give their buffers back) in one batch
 * before their sends take them again, do not overflow it.
 */
export const buffers: BufferPool = new BufferPool(16_384, 1 << 20, 8 << 20);
