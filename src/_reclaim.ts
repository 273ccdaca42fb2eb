// Copyright 2026 the @corothread/evthread authors. MIT license.
// Slot reclaiming. With a loop's pool full, an acceptor holds one new
// connection until a slot frees (or refuses it, with policy "refuse"); the
// servers on the loop then give back slots that can be freed without harm:
// the HTTP server's idle keep-alive connections, the one idle longest
// first, and a connection that finishes a response while a client waits.
// One SlotReclaimer per loop keeps the count; the loop, its acceptors and
// its servers call into it.

import type { EvThread } from "./ev_thread.ts";

/** A task that can be ended without harm to free its pool slot. */
export interface ReclaimCandidate {
  /** Since when it has been idle (`performance.now()`): oldest goes first. */
  since: number;
  /** Ends it; returns its task. */
  reclaim: () => EvThread<unknown>;
}

/**
 * Offers the task that a server would end first to free a slot (its
 * keep-alive connection idle longest), or `undefined` if it has none.
 */
export type CandidateSource = () => ReclaimCandidate | undefined;

/** The loop's counters that reclaiming adds to. */
export interface ReclaimCounters {
  /** Connections held, with the pool full, until a slot freed. */
  held: number;
  /** Tasks ended (or made to end) to free a slot. */
  reclaimed: number;
}

/**
 * A loop's reclaiming bookkeeping: how many connections wait for a slot,
 * which tasks are ending to give theirs, and the servers that can offer
 * one.
 *
 * Each held connection needs one slot that no ending task has promised
 * yet; while any does, the sources are asked for their oldest candidate,
 * and the oldest across sources is ended.
 */
export class SlotReclaimer {
  #counters: ReclaimCounters;
  #owns: (thread: EvThread<unknown>) => boolean;
  /** Connections acceptors hold while they wait for a slot. */
  #holding = 0;
  /** Tasks ending to give their slot to a held connection. */
  #yielding = new Set<EvThread<unknown>>();
  #sources = new Set<CandidateSource>();

  /**
   * @param counters The loop's counters (`held`, `reclaimed`).
   * @param owns Whether a task is a running top-level task of the loop:
   * only those hold a slot.
   */
  constructor(
    counters: ReclaimCounters,
    owns: (thread: EvThread<unknown>) => boolean,
  ) {
    this.#counters = counters;
    this.#owns = owns;
  }

  /** Registers a server's candidates; returns what removes them. */
  addSource(source: CandidateSource): () => void {
    this.#sources.add(source);
    return () => this.#sources.delete(source);
  }

  /**
   * For an acceptor: the pool is full and it holds a connection until a
   * slot frees. Counts it and frees a slot for it, if a source can.
   */
  hold(): void {
    this.#counters.held++;
    this.#holding++;
    this.reclaim();
  }

  /** For an acceptor: the held connection got a slot, or was closed. */
  unhold(): void {
    this.#holding--;
  }

  /**
   * For an acceptor: a connection was refused for want of a slot. Frees
   * one for the next, unless a task is already ending to give one.
   */
  wanted(): void {
    if (this.#yielding.size === 0) this.#reclaimOne();
  }

  /**
   * For a server whose connection has just become idle: frees slots for
   * the held connections that no ending task serves yet, if any.
   */
  reclaim(): void {
    while (this.#holding > this.#yielding.size) {
      if (!this.#reclaimOne()) return;
    }
  }

  /**
   * For a server about to finish a response: whether a connection waits
   * for a slot that no ending task has promised yet. If so, `thread`
   * promises its slot (it must then end), it counts as reclaimed, and the
   * answer is true.
   */
  yieldSlot(thread: EvThread<unknown>): boolean {
    if (this.#holding <= this.#yielding.size || !this.#owns(thread)) {
      return false;
    }
    this.#yielding.add(thread);
    this.#counters.reclaimed++;
    return true;
  }

  /** For the loop: a top-level task has ended and released its slot. */
  ended(thread: EvThread<unknown>): void {
    this.#yielding.delete(thread);
  }

  /** Ends the oldest candidate the sources offer; true if there was one. */
  #reclaimOne(): boolean {
    let best: ReclaimCandidate | undefined;
    for (const source of this.#sources) {
      const candidate = source();
      if (
        candidate !== undefined &&
        (best === undefined || candidate.since < best.since)
      ) {
        best = candidate;
      }
    }
    if (best === undefined) return false;
    const thread = best.reclaim();
    if (this.#owns(thread)) this.#yielding.add(thread);
    this.#counters.reclaimed++;
    return true;
  }
}
