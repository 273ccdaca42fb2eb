// Copyright 2026 the @corothread/evthread authors. MIT license.
// Interoperability: real WebSocket clients against upgradeWebSocket(), in
// event and pull mode. Today the client is Deno's built-in `WebSocket`.
//
// Hooks for the clients to come (npm:ws, Python's websockets, Chromium):
// each is a `Client` below: something that opens a connection to a URL and
// exposes send / next message / close / the close event. A client in
// another runtime would run as a child process speaking a line protocol on
// stdin/stdout (one JSON command or event per line: {"send": ...},
// {"message": ...}, {"close": [code, reason]}, {"closed": [code, reason,
// wasClean]}), so the cases below run unchanged; add it to CLIENTS when its
// runtime is installed (they are not here: no network).
//
// deno test --allow-net --sanitize-ops --sanitize-resources \
//   tests/websocket_interop_test.ts

import { assertEquals } from "@std/assert";
import {
  type Mode,
  randomBytes,
  randomText,
  startWsServer,
  within,
} from "./_websocket_client.ts";

type Data = string | Uint8Array;

/** One client connection, whatever the client. */
interface Connection {
  /** The subprotocol the server selected. */
  protocol: string;
  send(data: Data): void;
  /** The next message (binary as a Uint8Array). */
  next(): Promise<Data>;
  close(code?: number, reason?: string): void;
  /** The client's close event. */
  closed: Promise<{ code: number; reason: string; wasClean: boolean }>;
}

interface Client {
  name: string;
  open(url: string, protocols?: string[]): Promise<Connection>;
}

/** Deno's built-in WebSocket. */
const denoClient: Client = {
  name: "Deno WebSocket",
  async open(url, protocols) {
    const ws = new WebSocket(url, protocols);
    ws.binaryType = "arraybuffer";
    const inbox: Data[] = [];
    const waiting: ((data: Data) => void)[] = [];
    ws.onmessage = (event) => {
      const data = typeof event.data === "string"
        ? event.data
        : new Uint8Array(event.data as ArrayBuffer);
      const waiter = waiting.shift();
      if (waiter !== undefined) waiter(data);
      else inbox.push(data);
    };
    const closed = new Promise<
      { code: number; reason: string; wasClean: boolean }
    >((resolve) => {
      ws.onclose = (event) =>
        resolve({
          code: event.code,
          reason: event.reason,
          wasClean: event.wasClean,
        });
    });
    await within(
      new Promise((resolve, reject) => {
        ws.onopen = resolve;
        ws.onerror = (event) =>
          reject(new Error(`${(event as ErrorEvent).message}`));
      }),
      "the client to open",
    );
    return {
      get protocol() {
        return ws.protocol;
      },
      send: (data) => ws.send(data),
      next: () =>
        within(
          inbox.length > 0
            ? Promise.resolve(inbox.shift()!)
            : new Promise<Data>((resolve) => waiting.push(resolve)),
          "a message",
          30_000,
        ),
      close: (code, reason) => ws.close(code, reason),
      closed,
    };
  },
};

const CLIENTS: Client[] = [denoClient];
const MODES: Mode[] = ["event", "pull"];

for (const client of CLIENTS) {
  for (const mode of MODES) {
    const tag = `[${client.name}, ${mode}]`;

    Deno.test(`${tag} text and binary messages are echoed`, async () => {
      await using server = startWsServer(mode);
      const conn = await client.open(`ws://127.0.0.1:${server.port}/`);
      conn.send("hello");
      assertEquals(await conn.next(), "hello");
      conn.send(randomBytes(300, 1));
      assertEquals(await conn.next(), randomBytes(300, 1));
      conn.send("");
      assertEquals(await conn.next(), "");
      conn.send(new Uint8Array(0));
      assertEquals(await conn.next(), new Uint8Array(0));
      conn.send("😀 é €");
      assertEquals(await conn.next(), "😀 é €");
      conn.close(1000);
      assertEquals((await conn.closed).wasClean, true);
    });

    Deno.test(`${tag} messages of 1 MiB, text and binary, both ways`, async () => {
      await using server = startWsServer(mode);
      const conn = await client.open(`ws://127.0.0.1:${server.port}/`);
      const text = randomText(1_048_576, 2);
      const bytes = randomBytes(1_048_576, 3);
      conn.send(text);
      conn.send(bytes);
      assertEquals(await conn.next(), text);
      assertEquals(await conn.next(), bytes);
      conn.close(1000);
      await conn.closed;
    });

    Deno.test(`${tag} 1000 messages keep their order`, async () => {
      await using server = startWsServer(mode);
      const conn = await client.open(`ws://127.0.0.1:${server.port}/`);
      for (let i = 0; i < 1000; i++) conn.send(`message ${i}`);
      for (let i = 0; i < 1000; i++) {
        assertEquals(await conn.next(), `message ${i}`);
      }
      conn.close(1000);
      await conn.closed;
    });

    Deno.test(`${tag} the client's close code and reason reach the server`, async () => {
      await using server = startWsServer(mode);
      const conn = await client.open(`ws://127.0.0.1:${server.port}/`);
      conn.close(4000, "client bye");
      const seen = await within(conn.closed, "the client's close event");
      assertEquals([seen.code, seen.wasClean], [4000, true]);
      const event = await within(server.closed[0]!, "the server's close event");
      assertEquals([event.code, event.reason, event.wasClean], [
        4000,
        "client bye",
        true,
      ]);
    });

    for (
      const [code, reason] of [
        [1000, ""],
        [1001, "going away"],
        [
          1008,
          "policy",
        ],
        [1011, "oops"],
        [4999, "custom"],
      ] as const
    ) {
      Deno.test(`${tag} the server's close ${code} reaches the client`, async () => {
        await using server = startWsServer(mode, {
          use(socket) {
            socket.onopen = () => socket.close(code, reason);
          },
        });
        const conn = await client.open(`ws://127.0.0.1:${server.port}/`);
        const seen = await within(conn.closed, "the client's close event");
        assertEquals([seen.code, seen.reason, seen.wasClean], [
          code,
          reason,
          true,
        ]);
        const event = await within(
          server.closed[0]!,
          "the server's close event",
        );
        assertEquals([event.code, event.wasClean], [code, true]);
      });
    }

    Deno.test(`${tag} a subprotocol is negotiated`, async () => {
      await using server = startWsServer(mode, { ws: { protocol: "chat.v2" } });
      const conn = await client.open(`ws://127.0.0.1:${server.port}/`, [
        "chat.v1",
        "chat.v2",
      ]);
      assertEquals(conn.protocol, "chat.v2");
      assertEquals(server.sockets[0]!.protocol, "chat.v2");
      conn.send("x");
      assertEquals(await conn.next(), "x");
      conn.close(1000);
      await conn.closed;
    });

    Deno.test(`${tag} the client answers idle pings: the connection outlives idleTimeout`, async () => {
      await using server = startWsServer(mode, {
        ws: { idleTimeout: 0.2 },
        use(socket) {
          // Speaks once, after three idle periods.
          let timer: ReturnType<typeof setTimeout> | undefined;
          socket.onopen = () => {
            timer = setTimeout(() => socket.send("still here"), 600);
          };
          socket.onclose = () => clearTimeout(timer);
        },
      });
      const conn = await client.open(`ws://127.0.0.1:${server.port}/`);
      assertEquals(await conn.next(), "still here");
      assertEquals(server.errors, []);
      conn.close(1000);
      await conn.closed;
    });
  }
}

Deno.test("[Deno WebSocket] a server mixing send() and write() keeps their order", async () => {
  await using server = startWsServer("pull", {
    use(socket) {
      socket.onopen = async () => {
        socket.send("1");
        const written = socket.write("2");
        socket.send(new Blob(["3"]));
        socket.send("4");
        await written;
        await socket.write("5");
        for await (const _ of socket); // until the close
      };
    },
  });
  const conn = await denoClient.open(`ws://127.0.0.1:${server.port}/`);
  const got: Data[] = [];
  for (let i = 0; i < 5; i++) got.push(await conn.next());
  assertEquals(got, ["1", "2", new TextEncoder().encode("3"), "4", "5"]);
  conn.close(1000);
  await conn.closed;
});
