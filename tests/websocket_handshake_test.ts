// Copyright 2026 the @corothread/evthread authors. MIT license.
// upgradeWebSocket()'s opening handshake (RFC 6455 4.2), over raw loopback
// sockets: what it accepts, what it refuses (the test server answers a
// WebSocketHandshakeError with its status and headers, as serve() does
// by itself), Sec-WebSocket-Accept, subprotocols, declined extensions, and
// the socket's state before the 101.
//
// deno test --allow-net --sanitize-ops --sanitize-resources \
//   tests/websocket_handshake_test.ts

import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertMatch,
  assertStrictEquals,
  assertThrows,
} from "@std/assert";
import {
  type EvWebSocket,
  serve,
  upgradeWebSocket,
  WebSocketHandshakeError,
} from "../http.ts";
import { acceptKey } from "../src/_ws_handshake.ts";
import {
  ACCEPT,
  type HandshakeOptions,
  HOST,
  KEY,
  openClient,
  RawClient,
  startWsServer,
  text,
  within,
} from "./_websocket_client.ts";

/** Sends a handshake to an echo server; returns the response and errors. */
async function handshake(options: HandshakeOptions, protocol?: string) {
  await using server = startWsServer("event", {
    ws: protocol === undefined ? {} : { protocol },
  });
  const { client, response } = await RawClient.open(server.port, options);
  await using _client = client;
  if (response.status === 101) await client.closeNormally();
  return response;
}

Deno.test("upgradeWebSocket() answers 101 with the accept value of RFC 6455's sample key", async () => {
  const response = await handshake({});
  assertEquals(response.status, 101);
  assertEquals(response.headers["upgrade"]?.toLowerCase(), "websocket");
  assertEquals(response.headers["connection"]?.toLowerCase(), "upgrade");
  assertEquals(response.headers["sec-websocket-accept"], ACCEPT);
  assertEquals(response.headers["sec-websocket-protocol"], undefined);
});

Deno.test("acceptKey() matches SHA-1 from crypto.subtle for random keys", async () => {
  for (let i = 0; i < 50; i++) {
    const key = btoa(
      String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))),
    );
    const digest = await crypto.subtle.digest(
      "SHA-1",
      new TextEncoder().encode(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"),
    );
    assertEquals(
      acceptKey(key),
      btoa(String.fromCharCode(...new Uint8Array(digest))),
    );
  }
});

Deno.test("upgradeWebSocket() takes Upgrade and Connection case-insensitively, in token lists", async () => {
  const pairs: [string, string][] = [
    ["WebSocket", "Upgrade"],
    ["WEBSOCKET", "keep-alive, UPGRADE"],
    ["websocket", "upgrade"],
  ];
  for (const [upgrade, connection] of pairs) {
    const response = await handshake({ headers: { upgrade, connection } });
    assertEquals(response.status, 101, `${upgrade} / ${connection}`);
  }
});

Deno.test("upgradeWebSocket() declines permessage-deflate: no Sec-WebSocket-Extensions", async () => {
  await using server = startWsServer("event");
  const { client, response } = await RawClient.open(server.port, {
    headers: {
      "sec-websocket-extensions":
        "permessage-deflate; client_max_window_bits, x-webkit-deflate-frame",
    },
  });
  await using _client = client;
  assertEquals(response.status, 101);
  assertEquals(response.headers["sec-websocket-extensions"], undefined);
  assertEquals(server.sockets[0]!.extensions, "");
  // A compressed message (RSV1 set) is then a protocol error.
  await client.send(
    new Uint8Array([0xc1, 0x85, 0, 0, 0, 0, 0xf2, 0x48, 0xcd, 0xc9, 0xc9]),
  );
  await client.expectClose(1002);
});

const REFUSALS: [string, HandshakeOptions, number, RegExp][] = [
  [
    "POST",
    { method: "POST", headers: { "content-length": "0" } },
    400,
    /method must be GET/,
  ],
  ["HTTP/1.0", { httpVersion: "HTTP/1.0" }, 400, /HTTP\/1\.1/],
  ["no Upgrade", { headers: { upgrade: null } }, 400, /'upgrade' header/],
  [
    "Upgrade: h2c",
    { headers: { upgrade: "h2c" } },
    400,
    /'upgrade' header must contain "websocket": received "h2c"/,
  ],
  [
    "Connection without upgrade",
    { headers: { connection: "keep-alive" } },
    400,
    /'connection' header/,
  ],
  [
    "no Sec-WebSocket-Key",
    { headers: { "sec-websocket-key": null } },
    400,
    /'sec-websocket-key'.*received none/,
  ],
  [
    "a key of 15 bytes",
    { headers: { "sec-websocket-key": btoa("x".repeat(15)) } },
    400,
    /base64 of 16 bytes/,
  ],
  [
    "a key of 17 bytes",
    { headers: { "sec-websocket-key": btoa("x".repeat(17)) } },
    400,
    /base64 of 16 bytes/,
  ],
  [
    "a key that is not base64",
    { headers: { "sec-websocket-key": "!".repeat(22) + "==" } },
    400,
    /base64 of 16 bytes/,
  ],
  [
    "a key not in canonical base64",
    { headers: { "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZR==" } },
    400,
    /base64 of 16 bytes/,
  ],
  [
    "two keys",
    { headers: { "sec-websocket-key": `${KEY}, ${KEY}` } },
    400,
    /base64 of 16 bytes/,
  ],
  [
    "a body",
    {
      headers: { "content-length": "2" },
      after: new TextEncoder().encode("hi"),
    },
    400,
    /without a body/,
  ],
];

for (const [what, options, status, message] of REFUSALS) {
  Deno.test(`upgradeWebSocket() refuses a handshake with ${what}: ${status}`, async () => {
    let error: unknown;
    await using server = serve(
      { hostname: HOST, port: 0, onListen() {} },
      (req) => {
        try {
          return upgradeWebSocket(req).response;
        } catch (e) {
          error = e;
          return new Response(null, { status: 418 });
        }
      },
    );
    const { client, response } = await RawClient.open(
      server.addr.port,
      options,
    );
    client.close();
    assertEquals(response.status, 418); // the handler's answer
    assertInstanceOf(error, WebSocketHandshakeError);
    assertInstanceOf(error, TypeError);
    assertEquals(error.status, status);
    assertEquals(error.name, "WebSocketHandshakeError");
    assertMatch(error.message, /^Invalid WebSocket handshake: /);
    assertMatch(error.message, message);
  });
}

for (const version of ["8", null, "13, 8"]) {
  Deno.test(`upgradeWebSocket() answers Sec-WebSocket-Version ${version ?? "missing"} with 426 and the version it takes`, async () => {
    const response = await handshake({
      headers: { "sec-websocket-version": version },
    });
    assertEquals(response.status, 426);
    assertEquals(response.headers["sec-websocket-version"], "13");
  });
}

Deno.test("WebSocketHandshakeError carries the answer it calls for", () => {
  const bad = new WebSocketHandshakeError("Invalid WebSocket handshake: x");
  assertEquals([bad.status, bad.headers], [400, {}]);
  const version = new WebSocketHandshakeError("v", 426);
  assertEquals(version.status, 426);
  assertEquals(version.headers, { "sec-websocket-version": "13" });
  const response = new Response(version.message, version);
  assertEquals(response.status, 426);
  assertEquals(response.headers.get("sec-websocket-version"), "13");
});

Deno.test("upgradeWebSocket() selects an offered subprotocol and answers it", async () => {
  const response = await handshake({
    headers: { "sec-websocket-protocol": "chat.v1, chat.v2" },
  }, "chat.v2");
  assertEquals(response.status, 101);
  assertEquals(response.headers["sec-websocket-protocol"], "chat.v2");
});

Deno.test("upgradeWebSocket() refuses a subprotocol the client did not offer", async () => {
  for (const offered of ["chat.v1", null]) {
    const response = await handshake({
      headers: { "sec-websocket-protocol": offered },
    }, "chat.v2");
    assertEquals(response.status, 400);
  }
  let error: unknown;
  await using server = serve(
    { hostname: HOST, port: 0, onListen() {} },
    (req) => {
      try {
        return upgradeWebSocket(req, { protocol: "chat.v2" }).response;
      } catch (e) {
        error = e;
        return new Response(null, { status: 400 });
      }
    },
  );
  const { client } = await RawClient.open(server.addr.port, {
    headers: { "sec-websocket-protocol": "chat.v1, chat.v3" },
  });
  client.close();
  assertInstanceOf(error, WebSocketHandshakeError);
  assertEquals(
    error.message,
    'Invalid WebSocket handshake: the client did not offer the subprotocol "chat.v2": it offered "chat.v1", "chat.v3"',
  );
});

Deno.test("upgradeWebSocket() without a protocol option answers no subprotocol, even if offered", async () => {
  const response = await handshake({
    headers: { "sec-websocket-protocol": "chat" },
  });
  assertEquals(response.status, 101);
  assertEquals(response.headers["sec-websocket-protocol"], undefined);
});

Deno.test("upgradeWebSocket() throws TypeError and RangeError for bad options", async () => {
  const errors: unknown[] = [];
  await using server = serve(
    { hostname: HOST, port: 0, onListen() {} },
    (req) => {
      for (
        const options of [
          { protocol: "two words" },
          { protocol: 7 },
          { idleTimeout: -1 },
          { idleTimeout: Infinity },
          { idleTimeout: "30" },
          { maxMessageBytes: 0 },
          { maxMessageBytes: 1.5 },
          { closeTimeout: -5 },
          { closeTimeout: "1s" },
        ]
      ) {
        try {
          // deno-lint-ignore no-explicit-any
          upgradeWebSocket(req, options as any);
          errors.push(null);
        } catch (error) {
          errors.push(error);
        }
      }
      return new Response(null, { status: 204 });
    },
  );
  const { client } = await RawClient.open(server.addr.port);
  client.close();
  const kinds = errors.map((e) =>
    e instanceof WebSocketHandshakeError
      ? "handshake"
      : (e as Error | null)?.constructor.name ?? "none"
  );
  assertEquals(kinds, [
    "TypeError",
    "TypeError",
    "RangeError",
    "RangeError",
    "TypeError",
    "RangeError",
    "RangeError",
    "RangeError",
    "TypeError",
  ]);
  assertMatch(String(errors[0]), /'protocol' must be a subprotocol name/);
  assertMatch(String(errors[2]), /'idleTimeout' must be .*received -1/);
});

Deno.test("upgradeWebSocket() throws a plain TypeError for a request that serve() did not make", () => {
  const request = new Request("http://localhost/", {
    headers: {
      upgrade: "websocket",
      connection: "upgrade",
      "sec-websocket-key": KEY,
      "sec-websocket-version": "13",
    },
  });
  const error = assertThrows(() => upgradeWebSocket(request), TypeError);
  assert(!(error instanceof WebSocketHandshakeError));
  assertMatch((error as TypeError).message, /needs a request that serve\(\)/);
});

Deno.test("upgradeWebSocket()'s socket is CONNECTING until the 101 is sent", async () => {
  const seen: Record<string, unknown>[] = [];
  await using server = startWsServer("event", {
    ws: { protocol: "p" },
    use(socket) {
      const state = (s: EvWebSocket) => ({
        readyState: s.readyState,
        url: s.url,
        protocol: s.protocol,
        extensions: s.extensions,
        binaryType: s.binaryType,
        bufferedAmount: s.bufferedAmount,
      });
      seen.push(state(socket));
      const error = assertThrows(() => socket.send("early"), DOMException);
      assertEquals((error as DOMException).name, "InvalidStateError");
      socket.onopen = () => {
        seen.push(state(socket));
        socket.close(1000);
      };
    },
  });
  await using client = await openClient(server.port, {
    headers: { "sec-websocket-protocol": "p" },
  });
  await client.answerClose(1000);
  await within(server.closed[0]!, "the close");
  assertEquals(seen, [
    {
      readyState: 0,
      url: "",
      protocol: "",
      extensions: "",
      binaryType: "arraybuffer",
      bufferedAmount: 0,
    },
    {
      readyState: 1,
      url: "",
      protocol: "p",
      extensions: "",
      binaryType: "arraybuffer",
      bufferedAmount: 0,
    },
  ]);
});

Deno.test("upgradeWebSocket() reads frames the client sent right after its handshake", async () => {
  await using server = startWsServer("pull");
  await using client = await openClient(server.port, {
    after: new Uint8Array([...text("early"), ...text("bird")]),
  });
  await client.expectText("early");
  await client.expectText("bird");
  await client.closeNormally();
});

Deno.test("EvWebSocket is a WebSocket: it type-checks as one and has its constants", async () => {
  await using server = startWsServer("event", {
    use(socket) {
      const ws: WebSocket = socket; // the type check is the test
      assertEquals(
        [ws.CONNECTING, ws.OPEN, ws.CLOSING, ws.CLOSED],
        [0, 1, 2, 3],
      );
      assertEquals(
        [
          WebSocket.CONNECTING,
          WebSocket.OPEN,
          WebSocket.CLOSING,
          WebSocket.CLOSED,
        ],
        [ws.CONNECTING, ws.OPEN, ws.CLOSING, ws.CLOSED],
      );
      assertInstanceOf(ws, EventTarget);
      ws.onopen = () => ws.close();
    },
  });
  const { EvWebSocket } = await import("../http.ts");
  assertEquals(
    [
      EvWebSocket.CONNECTING,
      EvWebSocket.OPEN,
      EvWebSocket.CLOSING,
      EvWebSocket.CLOSED,
    ],
    [0, 1, 2, 3],
  );
  assertThrows(() => new EvWebSocket(), TypeError, "use upgradeWebSocket()");
  await using client = await openClient(server.port);
  await client.answerClose(null);
  const event = await within(server.closed[0]!, "the close");
  assertStrictEquals(event.wasClean, true);
  assertStrictEquals(event.code, 1005);
});
