// Copyright 2026 the @corothread/evthread authors. MIT license.
// A pool that one address cannot monopolize. Slow connections from one
// address (a slowloris: a request head that never completes) fill a small
// pool; a well-behaved client from another address must still be answered
// at once: the server evicts a connection still in its header phase, from
// the address that holds the most slots. And a per-address limit closes a
// connection beyond it before it takes a slot.
//
// Clients on other loopback addresses (127.0.0.2, ...) connect through
// node:net, whose connect takes a local address (Deno.connect does not).
// The servers use header and idle timeouts of a minute, so a client answered
// within the tests' bounds was answered because of the eviction.

import {
  assert,
  assertEquals,
  assertGreater,
  assertGreaterOrEqual,
  assertInstanceOf,
  assertLess,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import net from "node:net";
import { EvictedError, EvLoop, type EvSocket } from "../mod.ts";
import { serve } from "../http.ts";
import { addressGroup } from "../src/_ip_address.ts";
import { V2_SIGNATURE } from "../src/_proxy_protocol.ts";
import { eventually, HOST, within } from "./_helpers.ts";

/** Long enough that no header or idle timeout frees a slot in a test. */
const MINUTE = 60_000;
/** The latency under test: a well-behaved client is answered within it. */
const PROMPT_MS = 1_000;
/** Safety net for any one wait (never the behaviour under test). */
const SAFETY_MS = 15_000;
/** The start of a request head that never completes. */
const SLOW_HEAD = "GET / HTTP/1.1\r\nHost: a\r\n";
const GET = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";

/**
 * A client connection on node:net, so that it can come from any loopback
 * address: records what the server sends and when the server ends it.
 */
class Peer implements AsyncDisposable {
  readonly socket: net.Socket;
  /** Everything received, as latin1. */
  text = "";
  /** Whether the server ended the connection (end of stream or reset). */
  ended = false;
  #changed: (() => void)[] = [];
  #closed: Promise<void>;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    const change = () => {
      for (const wake of this.#changed.splice(0)) wake();
    };
    socket.on("data", (chunk: Uint8Array) => {
      for (const byte of chunk) this.text += String.fromCharCode(byte);
      change();
    });
    const end = () => {
      this.ended = true;
      change();
    };
    socket.on("end", end);
    socket.on("error", end);
    this.#closed = new Promise((resolve) =>
      socket.on("close", () => {
        end();
        resolve();
      })
    );
  }

  /** Connects to `port` on `host`, from `localAddress` if given. */
  static connect(
    port: number,
    options: { localAddress?: string; host?: string } = {},
  ): Promise<Peer> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({
        host: options.host ?? HOST,
        port,
        ...(options.localAddress ? { localAddress: options.localAddress } : {}),
      });
      const peer = new Peer(socket);
      socket.once("connect", () => resolve(peer));
      socket.once("error", reject);
    });
  }

  /** Writes `data` (strings as latin1); resolves once it is handed over. */
  write(data: string | Uint8Array): Promise<void> {
    const bytes = typeof data === "string"
      ? Uint8Array.from(data, (c) => c.charCodeAt(0))
      : data;
    return new Promise((resolve, reject) =>
      this.socket.write(bytes, (error) => error ? reject(error) : resolve())
    );
  }

  /**
   * Resolves once `done()` holds; fails if the connection ends first, or
   * after `ms`.
   */
  async until(
    done: () => boolean,
    what: string,
    ms = SAFETY_MS,
  ): Promise<void> {
    const deadline = performance.now() + ms;
    while (!done()) {
      if (this.ended) {
        throw new Error(
          `The connection ended before ${what}; got ${
            JSON.stringify(this.text)
          }`,
        );
      }
      await within(
        new Promise<void>((resolve) => this.#changed.push(resolve)),
        what,
        Math.max(1, Math.ceil(deadline - performance.now())),
      );
    }
  }

  /**
   * Waits for one whole response (a `content-length` body), at most `ms`,
   * and takes it.
   */
  async response(ms = SAFETY_MS): Promise<{ status: number; body: string }> {
    let status = 0;
    let body = "";
    await this.until(
      () => {
        const end = this.text.indexOf("\r\n\r\n");
        if (end < 0) return false;
        const head = this.text.slice(0, end);
        const length = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        if (this.text.length < end + 4 + length) return false;
        status = Number(head.slice(9, 12));
        body = this.text.slice(end + 4, end + 4 + length);
        this.text = this.text.slice(end + 4 + length);
        return true;
      },
      "a response",
      ms,
    );
    return { status, body };
  }

  /** Resolves once the server has ended the connection. */
  async endOfStream(): Promise<void> {
    while (!this.ended) {
      await within(
        new Promise<void>((resolve) => this.#changed.push(resolve)),
        "the server to close the connection",
        SAFETY_MS,
      );
    }
  }

  /** Closes the connection and waits until node:net has released it. */
  async close(): Promise<void> {
    this.socket.destroy();
    await this.#closed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** Connects `n` peers one after the other, each sending `first`. */
async function peers(
  n: number,
  port: number,
  first: string,
  localAddress?: string,
): Promise<Peer[]> {
  const list: Peer[] = [];
  for (let i = 0; i < n; i++) {
    const peer = await Peer.connect(
      port,
      localAddress === undefined ? {} : { localAddress },
    );
    list.push(peer);
    if (first !== "") await peer.write(first);
  }
  return list;
}

async function closeAll(list: Peer[]): Promise<void> {
  await Promise.all(list.map((p) => p.close()));
}

/**
 * One request on a new connection from `localAddress`; its latency. Fails
 * if no answer comes within 5 s.
 */
async function timedRequest(
  port: number,
  localAddress: string,
): Promise<{ ms: number; status: number; body: string }> {
  const started = performance.now();
  await using client = await Peer.connect(port, { localAddress });
  await client.write(GET);
  const { status, body } = await client.response(5 * PROMPT_MS);
  return { ms: performance.now() - started, status, body };
}

/** Whether `promise` settles within `ms` (its timer cleared either way). */
async function settledWithin(
  promise: Promise<unknown>,
  ms: number,
): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise.then(() => true, () => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** A hello-world server with a small pool and timeouts of a minute. */
function helloServer(
  loop: EvLoop,
  options: { evictUnderPressure?: boolean; policy?: "wait" | "refuse" } = {},
) {
  return serve({
    hostname: HOST,
    port: 0,
    loop,
    headerTimeout: MINUTE,
    idleTimeout: MINUTE,
    onListen() {},
    ...options,
  }, () => new Response("ok"));
}

// ------------------------------------------------------------- eviction

Deno.test("serve() answers a client of another address within 1 s while 40 slow heads from one address hold a pool of 16", async () => {
  await using loop = new EvLoop({ capacity: 16, onError: () => {} });
  await using server = helloServer(loop);
  const port = server.addr.port;
  const slow = await peers(40, port, SLOW_HEAD);
  try {
    await eventually(
      () => loop.stats.active === 16 && loop.stats.held > 0,
      "the slow connections to fill the pool",
    );
    // Behind the 40 in the listen queue: the 24 beyond the pool are taken
    // in first, each evicting the slow connection that has waited longest
    // for its head; then this one.
    const answer = await timedRequest(port, "127.0.0.2");
    assertEquals([answer.status, answer.body], [200, "ok"]);
    assertLess(answer.ms, PROMPT_MS);
    // Answered while the attackers still held the rest of the pool: 25
    // evictions, no header timeout.
    const stats = loop.stats;
    assertEquals(stats.accepted, 41);
    assertEquals(stats.evicted, 25);
    assertEquals(stats.timeouts, 0);
    await Promise.all(slow.slice(0, 25).map((p) => p.endOfStream()));
    assertEquals(slow.filter((p) => p.ended).length, 25);
    // Evicted oldest first, each with a 408 (its head had begun).
    for (const p of slow.slice(0, 25)) {
      assert(p.text.startsWith("HTTP/1.1 408 "), p.text);
    }
  } finally {
    await closeAll(slow);
  }
});

Deno.test("serve() answers a client of another address within 1 s, 5 times over, while 40 slow heads from one address reconnect whenever they are cut", async () => {
  await using loop = new EvLoop({ capacity: 16, onError: () => {} });
  await using server = helloServer(loop);
  const port = server.addr.port;
  const stop = new AbortController();
  let reconnects = 0;
  /** A slow head that comes back whenever the server cuts it. */
  const attacker = async () => {
    for (let i = 0; i < 1000 && !stop.signal.aborted; i++) {
      const peer = await Peer.connect(port);
      try {
        if (i > 0) reconnects++;
        await peer.write(SLOW_HEAD).catch(() => {});
        if (stop.signal.aborted) break;
        await Promise.race([
          peer.endOfStream(),
          new Promise((resolve) =>
            stop.signal.addEventListener("abort", resolve, { once: true })
          ),
        ]);
      } finally {
        await peer.close();
      }
    }
  };
  const attackers = Array.from({ length: 40 }, attacker);
  try {
    await eventually(
      () => loop.stats.active === 16 && loop.stats.held > 0,
      "the attackers to fill the pool",
    );
    for (let i = 0; i < 5; i++) {
      const before = reconnects;
      const answer = await timedRequest(port, "127.0.0.2");
      assertEquals([answer.status, answer.body], [200, "ok"]);
      assertLess(answer.ms, PROMPT_MS, `request ${i}`);
      // The attack went on meanwhile.
      assertGreater(reconnects, before);
    }
    assertEquals(loop.stats.timeouts, 0);
    assertEquals(loop.stats.peakActive, 16);
  } finally {
    stop.abort();
    await Promise.all(attackers);
  }
});

Deno.test("serve() with evictUnderPressure: false leaves a client of another address waiting while slow heads hold the pool", async () => {
  await using loop = new EvLoop({ capacity: 4, onError: () => {} });
  await using server = helloServer(loop, { evictUnderPressure: false });
  const port = server.addr.port;
  const slow = await peers(8, port, SLOW_HEAD);
  try {
    await eventually(
      () => loop.stats.active === 4 && loop.stats.held === 1,
      "the pool to fill",
    );
    await using client = await Peer.connect(port, {
      localAddress: "127.0.0.2",
    });
    await client.write(GET);
    // Not answered within the bound the defence gives...
    const response = client.response();
    assertEquals(await settledWithin(response, 1.5 * PROMPT_MS), false);
    assertEquals(loop.stats.evicted, 0);
    // ...and answered once the slow connections go.
    await closeAll(slow);
    assertEquals((await response).body, "ok");
  } finally {
    await closeAll(slow);
  }
});

Deno.test("serve() evicts from the address that holds the most slots, not the head that has waited longest overall", async () => {
  await using loop = new EvLoop({ capacity: 4, onError: () => {} });
  await using server = helloServer(loop);
  const port = server.addr.port;
  // The oldest slow head is 127.0.0.2's; 127.0.0.1 holds three slots.
  const lone = await peers(1, port, SLOW_HEAD, "127.0.0.2");
  await eventually(() => loop.stats.active === 1, "the first connection");
  const many = await peers(3, port, SLOW_HEAD);
  try {
    await eventually(() => loop.stats.active === 4, "the pool to fill");
    const answer = await timedRequest(port, "127.0.0.3");
    assertEquals(answer.body, "ok");
    assertEquals(loop.stats.evicted, 1);
    await many[0]!.endOfStream();
    assertStringIncludes(many[0]!.text, "408");
    assertEquals([lone[0]!.ended, many[1]!.ended, many[2]!.ended], [
      false,
      false,
      false,
    ]);
  } finally {
    await closeAll([...lone, ...many]);
  }
});

Deno.test("serve() evicts a slow head of the address holding the most slots before it closes another client's idle keep-alive connection", async () => {
  await using loop = new EvLoop({ capacity: 4, onError: () => {} });
  await using server = helloServer(loop);
  const port = server.addr.port;
  // A keep-alive client of 127.0.0.2, idle after its first request; then
  // three slow heads of 127.0.0.1.
  await using kept = await Peer.connect(port, { localAddress: "127.0.0.2" });
  await kept.write(GET);
  assertEquals((await kept.response()).body, "ok");
  const slow = await peers(3, port, SLOW_HEAD);
  try {
    await eventually(() => loop.stats.active === 4, "the pool to fill");
    const answer = await timedRequest(port, "127.0.0.3");
    assertEquals(answer.body, "ok");
    assertEquals([loop.stats.evicted, loop.stats.reclaimed], [1, 0]);
    await slow[0]!.endOfStream();
    // The keep-alive connection still works.
    await kept.write(GET);
    assertEquals((await kept.response()).body, "ok");
  } finally {
    await closeAll(slow);
  }
});

Deno.test("serve() never evicts a connection whose head is complete or whose response is under way", async () => {
  await using loop = new EvLoop({ capacity: 3, onError: () => {} });
  const release = Promise.withResolvers<void>();
  let inHandler = 0;
  await using server = serve({
    hostname: HOST,
    port: 0,
    loop,
    headerTimeout: MINUTE,
    idleTimeout: MINUTE,
    onListen() {},
  }, async (request) => {
    if (new URL(request.url).pathname === "/slow") {
      inHandler++;
      await release.promise;
    }
    return new Response("done");
  });
  const port = server.addr.port;
  // Two requests in their handlers, and one slow head: a full pool.
  const busy = await peers(2, port, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n");
  await eventually(() => inHandler === 2, "the handlers to start");
  const slow = await peers(1, port, SLOW_HEAD);
  const waiting: Peer[] = [];
  try {
    await eventually(() => loop.stats.active === 3, "the pool to fill");
    // A fourth client evicts the slow head, not a busy connection.
    const answer = await timedRequest(port, "127.0.0.2");
    assertEquals(answer.body, "done");
    await slow[0]!.endOfStream();
    assertEquals(loop.stats.evicted, 1);
    // A fifth finds only busy connections (and the idle one, already
    // gone with the fourth client): it waits, and nothing is evicted.
    waiting.push(...await peers(1, port, GET, "127.0.0.3"));
    await eventually(() => loop.stats.held === 2, "the fifth to be held");
    assertEquals(loop.stats.evicted, 1);
    assertEquals(busy.some((p) => p.ended), false);
    release.resolve();
    for (const p of busy) assertEquals((await p.response()).body, "done");
    assertEquals((await waiting[0]!.response()).body, "done");
  } finally {
    release.resolve();
    await closeAll([...busy, ...slow, ...waiting]);
  }
});

Deno.test('serve() with policy "refuse" evicts a slow head when it refuses a client, for the next one', async () => {
  await using loop = new EvLoop({ capacity: 2, onError: () => {} });
  await using server = helloServer(loop, { policy: "refuse" });
  const port = server.addr.port;
  const slow = await peers(2, port, SLOW_HEAD);
  try {
    await eventually(() => loop.stats.active === 2, "the pool to fill");
    await using refused = await Peer.connect(port, {
      localAddress: "127.0.0.2",
    });
    await refused.endOfStream();
    assertEquals(refused.text, "");
    assertEquals(loop.stats.evicted, 1);
    await slow[0]!.endOfStream();
    await eventually(() => loop.stats.active === 1, "the evicted task to end");
    const answer = await timedRequest(port, "127.0.0.2");
    assertEquals(answer.body, "ok");
  } finally {
    await closeAll(slow);
  }
});

Deno.test("serve() evicts a connection that has sent nothing only once it is 250 ms old, and closes it without a response", async () => {
  await using loop = new EvLoop({ capacity: 2, onError: () => {} });
  await using server = helloServer(loop);
  const port = server.addr.port;
  const silent = await peers(2, port, "");
  try {
    await eventually(() => loop.stats.active === 2, "the pool to fill");
    const answer = await timedRequest(port, "127.0.0.2");
    assertEquals(answer.body, "ok");
    assertLess(answer.ms, PROMPT_MS);
    assertEquals(loop.stats.evicted, 1);
    await silent[0]!.endOfStream();
    assertEquals(silent[0]!.text, "");
  } finally {
    await closeAll(silent);
  }
});

Deno.test("serve() evicts by the client's address from the PROXY header, never the proxy's", async () => {
  await using loop = new EvLoop({ capacity: 4, onError: () => {} });
  await using server = serve({
    hostname: HOST,
    port: 0,
    loop,
    headerTimeout: MINUTE,
    proxyProtocol: { trusted: ["127.0.0.0/8"] },
    onListen() {},
  }, () => new Response("ok"));
  const port = server.addr.port;
  const from = (client: string) =>
    `PROXY TCP4 ${client} 192.0.2.1 40000 80\r\n${SLOW_HEAD}`;
  // All four come through the proxy at 127.0.0.1; the oldest is from
  // 203.0.113.1, the three others from 203.0.113.2.
  const lone = await peers(1, port, from("203.0.113.1"));
  await eventually(() => loop.stats.active === 1, "the first connection");
  const many = await peers(3, port, from("203.0.113.2"));
  try {
    await eventually(() => loop.stats.active === 4, "the pool to fill");
    await using client = await Peer.connect(port);
    await client.write(`PROXY TCP4 203.0.113.3 192.0.2.1 40000 80\r\n${GET}`);
    assertEquals((await client.response()).body, "ok");
    await many[0]!.endOfStream();
    assertEquals([lone[0]!.ended, many[1]!.ended, many[2]!.ended], [
      false,
      false,
      false,
    ]);
    assertEquals(loop.stats.evicted, 1);
  } finally {
    await closeAll([...lone, ...many]);
  }
});

// ------------------------------------------------- the per-address limit

Deno.test("serve() with maxConnectionsPerAddress: 16 closes the 17th connection of an address at once, while another address gets in", async () => {
  const limited: [string, string][] = [];
  await using server = serve({
    hostname: HOST,
    port: 0,
    maxConnections: 64,
    maxConnectionsPerAddress: 16,
    onAddressLimit: (addr, group) => limited.push([addr.hostname, group]),
    headerTimeout: MINUTE,
    onListen() {},
  }, () => new Response("ok"));
  const port = server.addr.port;
  const loop = server.loop;
  const slow = await peers(16, port, SLOW_HEAD);
  try {
    await eventually(() => loop.stats.active === 16, "16 connections");
    await using extra = await Peer.connect(port);
    await extra.endOfStream();
    assertEquals(extra.text, "");
    const stats = loop.stats;
    assertEquals(stats.addressLimited, 1);
    assertEquals(stats.active, 16);
    assertEquals(limited, [["127.0.0.1", "127.0.0.1"]]);
    // Another address is served.
    assertEquals((await timedRequest(port, "127.0.0.2")).body, "ok");
    // Once one of the 16 goes, the address may connect again.
    await slow.shift()!.close();
    await eventually(() => loop.stats.active === 15, "a slot of the address");
    slow.push(...await peers(1, port, SLOW_HEAD));
    await eventually(() => loop.stats.active === 16, "the new connection");
    assertEquals(loop.stats.addressLimited, 1);
  } finally {
    await closeAll(slow);
  }
});

Deno.test("EvLoop.listen() with maxConnectionsPerAddress does not run the factory for a connection beyond the limit, nor give it a slot", async () => {
  await using loop = new EvLoop({ capacity: 8, onError: () => {} });
  let factories = 0;
  const gate = Promise.withResolvers<void>();
  const acceptor = loop.listen(
    { hostname: HOST, port: 0, maxConnectionsPerAddress: 2 },
    () => {
      factories++;
      return async () => await gate.promise;
    },
  );
  const held = await peers(2, acceptor.port, "");
  try {
    await eventually(() => factories === 2, "two tasks");
    await using third = await Peer.connect(acceptor.port);
    await third.endOfStream();
    assertEquals(factories, 2);
    assertEquals(acceptor.addressLimited, 1);
    assertEquals(loop.stats.active, 2);
    assertEquals(loop.stats.refused, 1);
  } finally {
    gate.resolve();
    await closeAll(held);
  }
});

Deno.test("EvLoop.listen() on ::1 counts IPv6 clients by their /64 (or the prefix given)", async () => {
  for (const [prefix, group] of [[64, "::/64"], [128, "::1"]] as const) {
    await using loop = new EvLoop({ onError: () => {} });
    const groups: string[] = [];
    const acceptor = loop.listen({
      hostname: "::1",
      port: 0,
      maxConnectionsPerAddress: 2,
      ipv6PrefixLength: prefix,
      onAddressLimit: (_, g) => groups.push(g),
    }, () => (socket) => socket.readLine());
    const held: Peer[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        held.push(await Peer.connect(acceptor.port, { host: "::1" }));
      }
      await eventually(() => loop.stats.active === 2, "two connections");
      await using third = await Peer.connect(acceptor.port, { host: "::1" });
      await third.endOfStream();
      assertEquals(groups, [group]);
      assertEquals(loop.stats.addressLimited, 1);
    } finally {
      await closeAll(held);
    }
  }
});

Deno.test("EvLoop.listen() on a dual-stack socket counts IPv4 clients (::ffff:a.b.c.d) by their IPv4 address", async () => {
  await using loop = new EvLoop({ onError: () => {} });
  const groups: string[] = [];
  const acceptor = loop.listen({
    hostname: "::",
    port: 0,
    maxConnectionsPerAddress: 1,
    onAddressLimit: (_, g) => groups.push(g),
  }, () => (socket) => socket.readLine());
  const held: Peer[] = [];
  try {
    held.push(await Peer.connect(acceptor.port));
    await eventually(() => loop.stats.active === 1, "the first connection");
    await using second = await Peer.connect(acceptor.port);
    await second.endOfStream();
    assertEquals(groups, ["127.0.0.1"]);
    // Another IPv4 address is another group, not the same ::/64.
    held.push(
      await Peer.connect(acceptor.port, { localAddress: "127.0.0.2" }),
    );
    await eventually(() => loop.stats.active === 2, "127.0.0.2's connection");
    assertEquals(loop.stats.addressLimited, 1);
  } finally {
    await closeAll(held);
  }
});

/** A PROXY v2 header (PROXY command, TCP over IPv6). */
function v2ipv6(src: string, dst: string): Uint8Array {
  const out = new Uint8Array(16 + 36);
  out.set([
    ...V2_SIGNATURE,
    0x21, // version 2, PROXY
    0x21, // AF_INET6, STREAM
    0,
    36,
  ]);
  const view = new DataView(out.buffer);
  const put = (text: string, at: number) => {
    const [head = "", tail = ""] = text.split("::");
    const h = head === "" ? [] : head.split(":");
    const t = tail === "" ? [] : tail.split(":");
    const groups = [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
    groups.forEach((g, i) => view.setUint16(at + 2 * i, parseInt(g, 16)));
  };
  put(src, 16);
  put(dst, 32);
  view.setUint16(48, 40000);
  view.setUint16(50, 443);
  return out;
}

Deno.test("EvLoop.listen() with proxyProtocol applies maxConnectionsPerAddress to the client's address from a v2 header (IPv6, by /64), never the proxy's", async () => {
  await using loop = new EvLoop({ onError: () => {} });
  const limited: [string, string][] = [];
  let factories = 0;
  const acceptor = loop.listen({
    hostname: HOST,
    port: 0,
    proxyProtocol: { trusted: ["127.0.0.1"] },
    maxConnectionsPerAddress: 2,
    onAddressLimit: (addr, group) => limited.push([addr.hostname, group]),
  }, () => {
    factories++;
    return (socket) => socket.readLine();
  });
  const held: Peer[] = [];
  const through = async (client: string) => {
    const peer = await Peer.connect(acceptor.port);
    await peer.write(v2ipv6(client, "2001:db8::80"));
    return peer;
  };
  try {
    // Four connections from the proxy at 127.0.0.1, a limit of 2.
    held.push(await through("2001:db8:1:2::a"));
    held.push(await through("2001:db8:1:2::b"));
    await eventually(() => factories === 2, "two clients of 2001:db8:1:2::/64");
    await using third = await through("2001:db8:1:2::c");
    await third.endOfStream();
    assertEquals(limited, [["2001:db8:1:2::c", "2001:db8:1:2::/64"]]);
    held.push(await through("2001:db8:1:3::1"));
    await eventually(() => factories === 3, "a client of another /64");
    assertEquals(loop.stats.addressLimited, 1);
    assertEquals(loop.stats.active, 3);
  } finally {
    await closeAll(held);
  }
});

Deno.test("EvLoop.listen() validates maxConnectionsPerAddress, ipv6PrefixLength and onAddressLimit", async () => {
  await using loop = new EvLoop();
  const listen = (options: Record<string, unknown>) =>
    loop.listen({ hostname: HOST, port: 0, ...options }, () => null);
  assertThrows(() => listen({ maxConnectionsPerAddress: 0 }), RangeError);
  assertThrows(() => listen({ maxConnectionsPerAddress: "2" }), TypeError);
  assertThrows(() => listen({ ipv6PrefixLength: 129 }), RangeError);
  assertThrows(() => listen({ onAddressLimit: 1 }), TypeError);
  assertThrows(
    () =>
      loop.listen({
        transport: "unix",
        path: "/tmp/x.sock",
        maxConnectionsPerAddress: 1,
      } as never, () => null),
    TypeError,
  );
  assertThrows(
    () =>
      serve(
        { port: 0, evictUnderPressure: "no" as never, onListen() {} },
        () => new Response(),
      ),
    TypeError,
  );
});

Deno.test("addressGroup() keeps IPv4 addresses, maps IPv4-mapped ones, and cuts IPv6 ones to their prefix", () => {
  assertEquals(addressGroup("192.0.2.7", 64), "192.0.2.7");
  assertEquals(addressGroup("::ffff:192.0.2.7", 64), "192.0.2.7");
  assertEquals(addressGroup("2001:db8:1:2:3:4:5:6", 64), "2001:db8:1:2::/64");
  assertEquals(addressGroup("2001:db8:1:2:3:4:5:6", 48), "2001:db8:1::/48");
  assertEquals(addressGroup("2001:db8:1:2:3:4:5:6", 56), "2001:db8:1::/56");
  assertEquals(addressGroup("2001:db8:1:2ff::1", 56), "2001:db8:1:200::/56");
  assertEquals(addressGroup("2001:db8::1", 128), "2001:db8::1");
  assertEquals(addressGroup("::1", 64), "::/64");
  assertEquals(addressGroup("fe80::1%eth0", 64), "fe80::1%eth0");
});

// --------------------------------------------- the core: EvThread API

const encoder = new TextEncoder();

/**
 * A line protocol on the core: a greeting line is its handshake; an
 * evicted connection is told so before it closes.
 */
function lineServer(loop: EvLoop) {
  return loop.listen(
    { hostname: HOST, port: 0 },
    () => async (socket: EvSocket, thread) => {
      let hello: string | null;
      thread.handshaking = true;
      try {
        hello = await socket.readLine({ timeout: MINUTE });
      } catch (error) {
        if (!(error instanceof EvictedError)) throw error;
        await socket.send(encoder.encode("421 too busy\n"), { timeout: 1000 });
        return;
      } finally {
        thread.handshaking = false;
      }
      if (hello === null) return;
      await socket.send(encoder.encode(`250 hello ${hello}\n`));
      // Past its handshake: waits for its next line as long as it likes.
      await socket.readLine({ timeout: MINUTE });
    },
  );
}

Deno.test("EvThread.handshaking lets a line protocol on the core evict a slow greeting from the address holding the pool", async () => {
  const errors: unknown[] = [];
  await using loop = new EvLoop({
    capacity: 4,
    onError: (error) => errors.push(error),
  });
  const acceptor = lineServer(loop);
  const slow = await peers(4, acceptor.port, "HEL");
  try {
    await eventually(() => loop.stats.active === 4, "the pool to fill");
    const started = performance.now();
    await using client = await Peer.connect(acceptor.port, {
      localAddress: "127.0.0.2",
    });
    await client.write("ada\n");
    await client.until(() => client.text.includes("\n"), "the greeting");
    assertLess(performance.now() - started, PROMPT_MS);
    assertEquals(client.text, "250 hello ada\n");
    await slow[0]!.endOfStream();
    assertEquals(slow[0]!.text, "421 too busy\n");
    assertEquals(loop.stats.evicted, 1);
    assertEquals(errors, []);
  } finally {
    await closeAll(slow);
  }
});

Deno.test("EvThread.handshaking: a task past its handshake is never evicted; a waiting client waits for its slot", async () => {
  await using loop = new EvLoop({ capacity: 1, onError: () => {} });
  const acceptor = lineServer(loop);
  await using first = await Peer.connect(acceptor.port);
  await first.write("first\n");
  await first.until(() => first.text.endsWith("\n"), "the first greeting");
  await using second = await Peer.connect(acceptor.port, {
    localAddress: "127.0.0.2",
  });
  await second.write("second\n");
  await eventually(() => loop.stats.held === 1, "the second to be held");
  assertEquals(loop.stats.evicted, 0);
  // The first ends its session: the second gets the slot.
  await first.write("bye\n");
  await second.until(() => second.text.endsWith("\n"), "the second greeting");
  assertEquals(second.text, "250 hello second\n");
  await first.endOfStream();
  assertEquals(loop.stats.evicted, 0);
});

Deno.test("EvThread.handshaking: an evicted task that does not end by itself is aborted after 1 s with the EvictedError, and nothing is reported", async () => {
  const errors: unknown[] = [];
  await using loop = new EvLoop({
    capacity: 1,
    onError: (error) => errors.push(error),
  });
  const outcomes: unknown[] = [];
  const acceptor = loop.listen(
    { hostname: HOST, port: 0 },
    () => async (socket, thread) => {
      thread.handshaking = true;
      try {
        await socket.readLine({ timeout: MINUTE });
      } catch (error) {
        outcomes.push(error);
        // Ignores the eviction, and waits on.
        await thread.delay(MINUTE).catch((e) => outcomes.push(e));
        assert(thread.evicted);
        throw error; // not reported either
      }
    },
  );
  await using stubborn = await Peer.connect(acceptor.port);
  await stubborn.write("par");
  await eventually(() => loop.stats.active === 1, "the first task");
  const started = performance.now();
  await using client = await Peer.connect(acceptor.port, {
    localAddress: "127.0.0.2",
  });
  await stubborn.endOfStream();
  const waited = performance.now() - started;
  assertGreaterOrEqual(waited, 900);
  assertLess(waited, 5000);
  assertEquals(outcomes.length, 2);
  assertInstanceOf(outcomes[0], EvictedError);
  assertEquals(outcomes[1], outcomes[0]); // the abort's reason
  await eventually(() => loop.stats.ended === 1, "the task to end");
  assertEquals(errors, []);
  assertEquals(loop.stats.evicted, 1);
  await client.close();
});

Deno.test("EvThread.handshaking is false by default, takes only booleans, and marks nothing on a task an acceptor did not start", async () => {
  await using loop = new EvLoop({ capacity: 1 });
  const task = loop.spawn(async (thread) => {
    assertEquals(thread.handshaking, false);
    thread.handshaking = true;
    assertEquals(thread.handshaking, true);
    assertThrows(
      () => (thread as { handshaking: unknown }).handshaking = 1,
      TypeError,
    );
    thread.handshaking = false;
    assertEquals(thread.evicted, false);
    await thread.delay(1);
  });
  await task.result;
});
