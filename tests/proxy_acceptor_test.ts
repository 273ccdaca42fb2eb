// Copyright 2026 the @corothread/evthread authors. MIT license.
// The PROXY protocol on the acceptor and the HTTP server, over real loopback
// connections; the headers are written by hand here (tests/haproxy_test.ts
// runs a real HAProxy). Parsing itself is covered by proxy_protocol_test.ts.

import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import {
  EvLoop,
  type EvProxyInfo,
  type EvSocket,
  ProxyProtocolError,
} from "../mod.ts";
import { V2_SIGNATURE } from "../src/_proxy_protocol.ts";
import { serve } from "../http.ts";
import {
  closeQuietly,
  decoder,
  encoder,
  HOST,
  readUntilClosed,
} from "./_helpers.ts";
import { head, RawClient } from "./_http_helpers.ts";

const SAFETY = 15_000;

interface Seen {
  remoteAddr: Deno.NetAddr;
  localAddr: Deno.NetAddr;
  proxy: EvProxyInfo | undefined;
  socketRemote: Deno.Addr;
  line: string | null;
}

/**
 * A loop whose acceptor reads PROXY headers and answers one line per
 * connection with what it saw; failures go to `errors`.
 */
function proxiedLoop(
  proxyProtocol: {
    trusted: string[];
    required?: boolean;
    timeout?: number;
  },
) {
  const errors: unknown[] = [];
  const seen: Seen[] = [];
  const loop = new EvLoop({ onError: (error) => errors.push(error) });
  const acceptor = loop.listen(
    { hostname: HOST, port: 0, proxyProtocol },
    (info) => async (socket: EvSocket) => {
      const line = await socket.readLine({ timeout: SAFETY });
      seen.push({
        remoteAddr: info.remoteAddr,
        localAddr: info.localAddr,
        proxy: info.proxy,
        socketRemote: socket.remoteAddr,
        line,
      });
      await socket.send(encoder.encode(`got ${line}\n`));
    },
  );
  return { loop, acceptor, errors, seen };
}

/**
 * Connects, writes `pieces` one write each, half-closes, and reads until the
 * server closes.
 */
async function exchange(
  port: number,
  ...pieces: (string | Uint8Array)[]
): Promise<{ reply: string; localPort: number }> {
  const conn = await Deno.connect({ hostname: HOST, port });
  const localPort = conn.localAddr.port;
  try {
    for (const piece of pieces) {
      const bytes = typeof piece === "string" ? encoder.encode(piece) : piece;
      let off = 0;
      while (off < bytes.byteLength) {
        off += await conn.write(bytes.subarray(off));
      }
    }
    await conn.closeWrite();
    const reply = decoder.decode((await readUntilClosed(conn)).bytes);
    return { reply, localPort };
  } finally {
    closeQuietly(conn);
  }
}

/** A version 2 header for TCP over IPv4, with optional TLVs. */
function v2(
  command: 0 | 1,
  src: [number, number, number, number, number],
  dst: [number, number, number, number, number],
  tlvs: { type: number; value: Uint8Array }[] = [],
): Uint8Array {
  const tlvBytes = tlvs.reduce((n, t) => n + 3 + t.value.byteLength, 0);
  const out = new Uint8Array(16 + 12 + tlvBytes);
  out.set(V2_SIGNATURE);
  out[12] = 0x20 | command;
  out[13] = 0x11; // AF_INET, STREAM
  const view = new DataView(out.buffer);
  view.setUint16(14, 12 + tlvBytes);
  out.set(src.slice(0, 4), 16);
  out.set(dst.slice(0, 4), 20);
  view.setUint16(24, src[4]);
  view.setUint16(26, dst[4]);
  let at = 28;
  for (const tlv of tlvs) {
    out[at] = tlv.type;
    view.setUint16(at + 1, tlv.value.byteLength);
    out.set(tlv.value, at + 3);
    at += 3 + tlv.value.byteLength;
  }
  return out;
}

Deno.test("EvLoop.listen() with proxyProtocol gives the factory and socket the client's address from a v1 header", async () => {
  const { loop, acceptor, errors, seen } = proxiedLoop({
    trusted: ["127.0.0.1"],
  });
  await using _ = loop;
  const { reply, localPort } = await exchange(
    acceptor.port,
    "PROXY TCP4 203.0.113.7 198.51.100.1 40000 443\r\nhello\n",
  );
  assertEquals(reply, "got hello\n");
  assertEquals(seen.length, 1);
  const s = seen[0]!;
  assertEquals(s.remoteAddr, {
    transport: "tcp",
    hostname: "203.0.113.7",
    port: 40000,
  });
  assertEquals(s.localAddr, {
    transport: "tcp",
    hostname: "198.51.100.1",
    port: 443,
  });
  assertEquals(s.socketRemote, s.remoteAddr);
  assertEquals(s.proxy?.version, 1);
  assertEquals(s.proxy?.command, "proxy");
  assertEquals(s.proxy?.proxyAddr.hostname, HOST);
  assertEquals(s.proxy?.proxyAddr.port, localPort);
  assertEquals(errors, []);
});

Deno.test("EvLoop.listen() with proxyProtocol reads a header that arrives a byte at a time, and leaves the data after it", async () => {
  const { loop, acceptor, errors, seen } = proxiedLoop({
    trusted: ["127.0.0.0/8"],
  });
  await using _ = loop;
  const header = "PROXY TCP6 2001:db8::1 ::1 5555 80\r\n";
  const pieces = [...header].map((c) => c);
  pieces.push("da", "ta\n");
  const { reply } = await exchange(acceptor.port, ...pieces);
  assertEquals(reply, "got data\n");
  assertEquals(seen[0]!.remoteAddr.hostname, "2001:db8::1");
  assertEquals(seen[0]!.remoteAddr.port, 5555);
  assertEquals(errors, []);
});

Deno.test("EvLoop.listen() with proxyProtocol takes v2 headers with TLVs, and LOCAL keeps the real addresses", async () => {
  const { loop, acceptor, errors, seen } = proxiedLoop({
    trusted: ["127.0.0.1"],
  });
  await using _ = loop;
  const authority = encoder.encode("example.com");
  const proxied = await exchange(
    acceptor.port,
    v2(1, [192, 0, 2, 9, 1234], [192, 0, 2, 1, 80], [
      { type: 0x02, value: authority },
    ]),
    "one\n",
  );
  assertEquals(proxied.reply, "got one\n");
  const local = await exchange(
    acceptor.port,
    v2(0, [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]),
    "two\n",
  );
  assertEquals(local.reply, "got two\n");
  const [a, b] = seen;
  assertEquals(a!.remoteAddr, {
    transport: "tcp",
    hostname: "192.0.2.9",
    port: 1234,
  });
  assertEquals(a!.proxy?.version, 2);
  assertEquals(a!.proxy?.tlvs, [{ type: 0x02, value: authority }]);
  assertEquals(b!.proxy?.command, "local");
  assertEquals(b!.remoteAddr.hostname, HOST);
  assertEquals(b!.remoteAddr.port, local.localPort);
  assertEquals(errors, []);
});

/** Expects the connection to be closed unanswered and one error reported. */
async function assertRefused(
  options: { trusted: string[]; required?: boolean; timeout?: number },
  message: string,
  ...pieces: (string | Uint8Array)[]
): Promise<void> {
  const { loop, acceptor, errors, seen } = proxiedLoop(options);
  await using _ = loop;
  const { reply } = await exchange(acceptor.port, ...pieces);
  assertEquals(reply, "");
  assertEquals(seen, []); // the procedure never ran
  await loop.shutdown({ grace: SAFETY });
  assertEquals(errors.length, 1);
  assertInstanceOf(errors[0], ProxyProtocolError);
  assertStringIncludes((errors[0] as Error).message, message);
  assertEquals(loop.stats.refused, 1);
}

Deno.test("EvLoop.listen() with proxyProtocol closes a connection whose header is malformed", async () => {
  await assertRefused(
    { trusted: ["127.0.0.1"] },
    "Invalid PROXY v1 header",
    "PROXY TCP4 1.2.3.4 5.6.7.8 70000 80\r\nhello\n",
  );
});

Deno.test("EvLoop.listen() with proxyProtocol closes a connection without the required header", async () => {
  await assertRefused(
    { trusted: ["127.0.0.1"] },
    "Expected a PROXY header from 127.0.0.1:",
    "GET / HTTP/1.1\r\n\r\n",
  );
});

Deno.test("EvLoop.listen() with proxyProtocol never reads a header from an untrusted peer", async () => {
  // Required: the connection is refused before any byte is read.
  await assertRefused(
    { trusted: ["10.0.0.0/8", "::1"] },
    "not a trusted proxy",
    "PROXY TCP4 6.6.6.6 1.1.1.1 1 2\r\nspoof\n",
  );
  // Not required: served as it is; the forged header is just data.
  const { loop, acceptor, errors, seen } = proxiedLoop({
    trusted: ["10.0.0.0/8"],
    required: false,
  });
  await using _ = loop;
  const { reply, localPort } = await exchange(
    acceptor.port,
    "PROXY TCP4 6.6.6.6 1.1.1.1 1 2\r\nspoof\n",
  );
  assertEquals(reply, "got PROXY TCP4 6.6.6.6 1.1.1.1 1 2\n");
  assertEquals(seen[0]!.remoteAddr.hostname, HOST);
  assertEquals(seen[0]!.remoteAddr.port, localPort);
  assertEquals(seen[0]!.proxy, undefined);
  assertEquals(errors, []);
});

Deno.test("EvLoop.listen() with proxyProtocol not required serves a trusted peer without a header as it is", async () => {
  const { loop, acceptor, errors, seen } = proxiedLoop({
    trusted: ["127.0.0.1"],
    required: false,
  });
  await using _ = loop;
  // "P" could begin "PROXY ": the acceptor waits for the byte that decides.
  const { reply } = await exchange(acceptor.port, "P", "ING\n");
  assertEquals(reply, "got PING\n");
  assertEquals(seen[0]!.proxy, undefined);
  const second = await exchange(
    acceptor.port,
    "PROXY TCP4 192.0.2.1 192.0.2.2 1000 2000\r\nhi\n",
  );
  assertEquals(second.reply, "got hi\n");
  assertEquals(seen[1]!.remoteAddr.hostname, "192.0.2.1");
  assertEquals(errors, []);
});

Deno.test("EvLoop.listen() with proxyProtocol closes a connection whose header does not complete in time", async () => {
  const { loop, acceptor, errors, seen } = proxiedLoop({
    trusted: ["127.0.0.1"],
    timeout: 50,
  });
  await using _ = loop;
  using conn = await Deno.connect({ hostname: HOST, port: acceptor.port });
  await conn.write(encoder.encode("PROXY TCP4 "));
  // The server closes it at the timeout: the read ends.
  const buf = new Uint8Array(16);
  assertEquals(await conn.read(buf), null);
  await loop.shutdown({ grace: SAFETY });
  assertEquals(seen, []);
  assertEquals(errors.length, 1);
  assertStringIncludes((errors[0] as Error).message, "within 50 ms");
});

Deno.test("EvLoop.listen() with proxyProtocol reports a stream that ends inside the header", async () => {
  await assertRefused(
    { trusted: ["127.0.0.1"] },
    "ended before its PROXY header was complete",
    "PROXY TCP4 1.2.3.4",
  );
});

Deno.test("EvLoop.listen() rejects bad proxyProtocol options", async () => {
  await using loop = new EvLoop();
  const listen = (proxyProtocol: unknown) =>
    loop.listen(
      // deno-lint-ignore no-explicit-any
      { hostname: HOST, port: 0, proxyProtocol: proxyProtocol as any },
      () => null,
    );
  assertThrows(() => listen(null), TypeError);
  assertThrows(() => listen({}), TypeError, "'proxyProtocol.trusted'");
  assertThrows(() => listen({ trusted: [] }), TypeError);
  assertThrows(() => listen({ trusted: ["not an address"] }), SyntaxError);
  assertThrows(() => listen({ trusted: ["10.0.0.0/33"] }), RangeError);
  assertThrows(
    () => listen({ trusted: ["127.0.0.1"], required: "yes" }),
    TypeError,
    "'proxyProtocol.required'",
  );
  assertThrows(
    () => listen({ trusted: ["127.0.0.1"], timeout: -1 }),
    RangeError,
    "'proxyProtocol.timeout'",
  );
  // No listener was left open by the failed calls (the sanitizer checks).
});

Deno.test("serve() with proxyProtocol gives handlers the client's address, and closes connections without a header", async () => {
  const errors: unknown[] = [];
  await using loop = new EvLoop({ onError: (e) => errors.push(e) });
  await using server = serve({
    hostname: HOST,
    port: 0,
    loop,
    proxyProtocol: { trusted: ["127.0.0.1"] },
    onListen() {},
  }, (_request, info) =>
    new Response(
      `${info.remoteAddr.hostname}:${info.remoteAddr.port} via ${info.proxy?.proxyAddr.hostname}`,
    ));
  const port = server.addr.port;
  await using client = await RawClient.connect(port);
  await client.write(
    "PROXY TCP4 198.51.100.20 192.0.2.80 51000 80\r\n" +
      head("GET / HTTP/1.1", "Host: x"),
  );
  const response = await client.readResponse({ timeout: SAFETY });
  assertEquals(response.status, 200);
  assertEquals(response.text, `198.51.100.20:51000 via ${HOST}`);
  // A second request on the same connection keeps the same client.
  await client.write(head("GET / HTTP/1.1", "Host: x"));
  assertEquals(
    (await client.readResponse({ timeout: SAFETY })).text,
    `198.51.100.20:51000 via ${HOST}`,
  );

  await using bare = await RawClient.connect(port);
  await bare.write(head("GET / HTTP/1.1", "Host: x"));
  const ending = await bare.readToEnd(SAFETY);
  assertEquals(ending.rest, "");
  await client.close();
  await bare.close();
  await server.shutdown();
  assertEquals(errors.length, 1);
  assert(errors[0] instanceof ProxyProtocolError);
});

Deno.test("EvLoop.listen() with proxyProtocol closes a connection that sends nothing (a TCP health check) without reporting it", async () => {
  const { loop, acceptor, errors, seen } = proxiedLoop({
    trusted: ["127.0.0.1"],
  });
  await using _ = loop;
  for (let i = 0; i < 3; i++) {
    const { reply } = await exchange(acceptor.port);
    assertEquals(reply, "");
  }
  await loop.shutdown({ grace: SAFETY });
  assertEquals(seen, []);
  assertEquals(errors, []);
  assertEquals(loop.stats.refused, 3);
});
