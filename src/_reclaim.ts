// Copyright 2026 the @corothread/evthread authors. MIT license.
// Slot reclaiming. With a loop's pool full, an acceptor holds one new
// connection until a slot frees (or refuses it, with policy "refuse"); the
// servers on the loop then give back slots that can be freed without harm:
// the HTTP server's idle keep-alive connections, the one idle longest
// first, and a connection that finishes a response while a client waits.
// When no idle connection can go (or the idle one's address holds fewer
// slots), a connection still in its handshake (an HTTP head not yet
// complete, a task marked `handshaking`) is evicted: from the address that
// holds the most slots, the one whose handshake began first. One
// SlotReclaimer per loop keeps the count and the slots each address holds;
// the loop, its acceptors and its servers call into it.

import { type DeadlineEntry, deadlines } from "./_deadline_queue.ts";
import { threadInternals } from "./_internal.ts";
import { EvictedError } from "./errors.ts";
import type { EvThread } from "./ev_thread.ts";

/** A task that can be ended without harm to free its pool slot. */
export interface ReclaimCandidate {
  /** The task. */
  thread: EvThread<unknown>;
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
  /** Tasks in their handshake evicted to free a slot. */
  evicted: number;
}

/**
 * How many connections each address group holds (see `addressGroup` in
 * `_ip_address.ts`): the loop's, for eviction, and an acceptor's, for its
 * `maxConnectionsPerAddress`.
 */
export class AddressCounts {
  #counts = new Map<string, number>();

  /** Connections that `group` holds. */
  get(group: string): number {
    return this.#counts.get(group) ?? 0;
  }

  add(group: string): void {
    this.#counts.set(group, (this.#counts.get(group) ?? 0) + 1);
  }

  remove(group: string): void {
    const n = (this.#counts.get(group) ?? 0) - 1;
    if (n > 0) this.#counts.set(group, n);
    else this.#counts.delete(group);
  }
}

/**
 * A connection younger than this (ms since its task started) from which
 * nothing has been received yet is not evicted: a client's request follows
 * its connect at once, and may be on its way.
 */
export const EVICT_MIN_AGE = 250;
/**
 * While a client waits and the only connections in their handshake are too
 * young, the next look comes this soon (ms), doubling up to RECHECK_MAX:
 * their first bytes come within a turn or two of the event loop, and then
 * they may go.
 */
const RECHECK_MIN = 1;
const RECHECK_MAX = 64;

/**
 * A connection task an acceptor started: where its slot is counted. Kept
 * on its task (`threadInternals.slot`): a field there costs less memory per
 * idle connection than an entry in a map here.
 */
export interface SlotHolder {
  /** When its task started (`performance.now()`, whole ms: a small int). */
  readonly since: number;
  /** Its address group. */
  group: string;
  /** The acceptor's counts it also adds to (a per-address limit), if any. */
  limit: AddressCounts | undefined;
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
  /** The loop's top-level tasks (the acceptors' among them). */
  #threads: Iterable<EvThread<unknown>>;
  /** Slots held per address group, over all the loop's acceptors. */
  #groups = new AddressCounts();
  /**
   * A second look for a connection to evict, when the only ones were too
   * young (see EVICT_MIN_AGE) while a client waited.
   */
  #recheck: DeadlineEntry | undefined;
  /** The wait before the next such look. */
  #recheckDelay = RECHECK_MIN;

  /**
   * @param counters The loop's counters (`held`, `reclaimed`, `evicted`).
   * @param owns Whether a task is a running top-level task of the loop:
   * only those hold a slot.
   * @param threads The loop's running top-level tasks.
   */
  constructor(
    counters: ReclaimCounters,
    owns: (thread: EvThread<unknown>) => boolean,
    threads: Iterable<EvThread<unknown>>,
  ) {
    this.#counters = counters;
    this.#owns = owns;
    this.#threads = threads;
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
    if (this.#holding === 0 && this.#recheck !== undefined) {
      deadlines.cancel(this.#recheck);
      this.#recheck = undefined;
      deadlines.settle();
    }
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
    const holder = threadInternals.slot(thread);
    if (holder === undefined) return;
    this.#groups.remove(holder.group);
    holder.limit?.remove(holder.group);
  }

  /**
   * For an acceptor: `thread` serves a connection from address `group`
   * (for now: behind a proxy, the proxy's, until its header says the
   * client's). Returns its record, for `regroup`.
   */
  admit(thread: EvThread<unknown>, group: string): SlotHolder {
    const holder: SlotHolder = {
      since: Math.floor(performance.now()),
      group,
      limit: undefined,
    };
    threadInternals.setSlot(thread, holder);
    this.#groups.add(group);
    return holder;
  }

  /** For an acceptor: the connection's address group is now `group`. */
  regroup(holder: SlotHolder, group: string): void {
    if (holder.group === group) return;
    this.#groups.remove(holder.group);
    holder.group = group;
    this.#groups.add(group);
  }

  /**
   * Frees one slot, from the address group that holds the most slots: an
   * idle keep-alive connection (the one idle longest), else an eviction.
   * An idle connection goes first unless a connection in its handshake
   * belongs to a group that holds more slots than the idle one's: with one
   * address holding most of the pool with slow handshakes, its connections
   * go before the other clients' keep-alive connections. True if a slot
   * will come free.
   */
  #reclaimOne(): boolean {
    const idle = this.#oldestIdle();
    const now = performance.now();
    const evictee = this.#evictee(now);
    if (
      idle !== undefined &&
      (evictee.thread === undefined ||
        this.#slotsOf(idle.thread) >= evictee.slots)
    ) {
      const thread = idle.reclaim();
      if (this.#owns(thread)) this.#yielding.add(thread);
      this.#counters.reclaimed++;
      return true;
    }
    if (evictee.thread !== undefined) {
      this.#evict(evictee.thread, evictee.slots);
      return true;
    }
    if (evictee.soonest !== Infinity) {
      this.#lookAgain(
        Math.min(this.#recheckDelay, evictee.soonest + EVICT_MIN_AGE - now),
      );
    }
    return false;
  }

  /** The slots that the address group of `thread` holds. */
  #slotsOf(thread: EvThread<unknown>): number {
    const holder = threadInternals.slot(thread);
    return holder === undefined ? 0 : this.#groups.get(holder.group);
  }

  /**
   * The connection task to evict, if any: in its handshake, waiting for
   * its peer (and EVICT_MIN_AGE old, or with bytes received), of the
   * address group that holds the most slots, the one whose handshake began
   * first. `soonest`: when the youngest that were passed over started.
   */
  #evictee(
    now: number,
  ): { thread: EvThread<unknown> | undefined; slots: number; soonest: number } {
    let chosen: EvThread<unknown> | undefined;
    let chosenSlots = 0;
    let chosenSince = 0;
    let soonest = Infinity;
    for (const thread of this.#threads) {
      const holder = threadInternals.slot(thread);
      if (holder === undefined) continue;
      const since = threadInternals.evictable(thread);
      if (since === 0) continue;
      if (
        now - holder.since < EVICT_MIN_AGE && !threadInternals.buffered(thread)
      ) {
        if (holder.since < soonest) soonest = holder.since;
        continue;
      }
      const slots = this.#groups.get(holder.group);
      if (
        slots > chosenSlots || (slots === chosenSlots && since < chosenSince)
      ) {
        chosen = thread;
        chosenSlots = slots;
        chosenSince = since;
      }
    }
    return { thread: chosen, slots: chosenSlots, soonest };
  }

  /** Evicts `thread`, whose address group holds `slots`. */
  #evict(thread: EvThread<unknown>, slots: number): void {
    this.#recheckDelay = RECHECK_MIN;
    const group = threadInternals.slot(thread)!.group;
    threadInternals.evict(
      thread,
      new EvictedError(
        `Evicted in its handshake to free a slot of the full pool for a waiting client (address ${group} held ${slots})`,
      ),
    );
    this.#yielding.add(thread);
    this.#counters.evicted++;
  }

  /** Runs `reclaim` again in `ms` (once), for the clients still waiting. */
  #lookAgain(ms: number): void {
    if (this.#recheck !== undefined || this.#holding === 0) return;
    this.#recheckDelay = Math.min(2 * this.#recheckDelay, RECHECK_MAX);
    this.#recheck = deadlines.schedule(Math.max(1, ms), () => {
      this.#recheck = undefined;
      this.reclaim();
      deadlines.settle();
    });
  }

  /** The oldest candidate the sources offer, if any. */
  #oldestIdle(): ReclaimCandidate | undefined {
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
    return best;
  }
}
