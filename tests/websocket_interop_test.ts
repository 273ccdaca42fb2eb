// Copyright 2026 the @corothread/evthread authors. MIT license.
// Interoperability: real WebSocket clients against upgradeWebSocket(), in
// event and pull mode: Deno's built-in WebSocket, npm:ws, Python's
// websockets and headless Chromium (tests/testdata/ws/clients.ts has them;
// each opens one connection per test, so the same cases run for all).
//
// A client that is not installed is skipped with a printed reason, unless
// its flag is set to 1 (.ci/run sets the flag of each client it installed):
// EVTHREAD_REQUIRE_NPM_WS, EVTHREAD_REQUIRE_PYTHON_WEBSOCKETS,
// EVTHREAD_REQUIRE_CHROMIUM; then its cases fail instead.
//
// deno test --allow-net --allow-read --allow-run --allow-env --allow-write \
//   --sanitize-ops --sanitize-resources tests/websocket_interop_test.ts

import { assert, assertEquals, fail } from "@std/assert";
import {
  type Mode,
  randomBytes,
  randomText,
  startWsServer,
  within,
} from "./_websocket_client.ts";
import {
  type Client,
  CLIENTS,
  type Connection,
  type Data,
  denoClient,
} from "./testdata/ws/clients.ts";

const encoder = new TextEncoder();

const MODES: Mode[] = ["event", "pull"];

/** The client's flag, when it is set: a missing client then fails. */
function requiredBy(client: Client): string | undefined {
  const flag = client.requiredBy;
  if (flag === undefined) return undefined;
  try {
    return Deno.env.get(flag) === "1" ? flag : undefined;
  } catch {
    return undefined; // no --allow-env
  }
}

for (const client of CLIENTS) {
  if (client.absent === undefined) continue;
  const flag = requiredBy(client);
  console.log(
    flag === undefined
      ? `${client.name} skipped: ${client.absent}`
      : `${client.name} is required (${flag}=1), but ${client.absent}`,
  );
}
for (const client of CLIENTS) {
  if (client.version !== undefined) {
    console.log(`${client.name}: ${client.version}`);
  }
}

/**
 * A case for `client`: ignored when the client is missing, failed at once
 * when it is missing but required.
 */
function test(client: Client, name: string, fn: () => Promise<void>): void {
  const flag = requiredBy(client);
  const { absent } = client;
  Deno.test({
    name,
    ignore: absent !== undefined && flag === undefined,
    fn: absent === undefined ? fn : () => {
      fail(`${client.name} is required (${flag}=1), but ${absent}`);
    },
  });
}

for (const client of CLIENTS) {
  for (const mode of MODES) {
    const tag = `[${client.name}, ${mode}]`;

    test(client, `${tag} text and binary messages are echoed`, async () => {
      await using server = startWsServer(mode);
      await using conn = await client.open(server);
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

    test(
      client,
      `${tag} messages of 1 MiB, text and binary, both ways`,
      async () => {
        await using server = startWsServer(mode);
        await using conn = await client.open(server);
        const text = randomText(1_048_576, 2);
        const bytes = randomBytes(1_048_576, 3);
        conn.send(text);
        conn.send(bytes);
        conn.send("");
        assertEquals(await conn.next(), text);
        assertEquals(await conn.next(), bytes);
        assertEquals(await conn.next(), "");
        conn.close(1000);
        assertEquals((await conn.closed).wasClean, true);
      },
    );

    test(client, `${tag} 1000 messages keep their order`, async () => {
      await using server = startWsServer(mode);
      await using conn = await client.open(server);
      for (let i = 0; i < 1000; i++) conn.send(`message ${i}`);
      for (let i = 0; i < 1000; i++) {
        assertEquals(await conn.next(), `message ${i}`);
      }
      conn.close(1000);
      await conn.closed;
    });

    for (
      const [code, reason] of [[1000, "done"], [4000, "client bye"]] as const
    ) {
      test(
        client,
        `${tag} the client's close ${code} and its reason reach the server`,
        async () => {
          await using server = startWsServer(mode);
          await using conn = await client.open(server);
          conn.close(code, reason);
          const seen = await within(conn.closed, "the client's close event");
          assertEquals([seen.code, seen.wasClean], [code, true]);
          const event = await within(
            server.closed[0]!,
            "the server's close event",
          );
          assertEquals([event.code, event.reason, event.wasClean], [
            code,
            reason,
            true,
          ]);
        },
      );
    }

    if (client.canGoAway) {
      test(
        client,
        `${tag} a client going away (1001) is seen by the server`,
        async () => {
          await using server = startWsServer(mode);
          await using conn = await client.open(server);
          conn.send("before");
          assertEquals(await conn.next(), "before");
          conn.goAway();
          const event = await within(
            server.closed[0]!,
            "the server's close event",
          );
          assertEquals([event.code, event.wasClean], [1001, true]);
          assertEquals(server.errors, []);
        },
      );
    }

    for (
      const [code, reason] of [
        [1000, ""],
        [1000, "bye"],
        [1001, "going away"],
        [1008, "policy"],
        [1011, "oops"],
        [4999, "custom"],
      ] as const
    ) {
      test(
        client,
        `${tag} the server's close ${code} ${
          JSON.stringify(reason)
        } reaches the client`,
        async () => {
          await using server = startWsServer(mode, {
            use(socket) {
              socket.onopen = () => socket.close(code, reason);
            },
          });
          await using conn = await client.open(server);
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
        },
      );
    }

    test(
      client,
      `${tag} the server's shutdown closes with 1001 "going away"`,
      async () => {
        await using server = startWsServer(mode);
        await using conn = await client.open(server);
        conn.send("x");
        assertEquals(await conn.next(), "x");
        conn.quiet();
        await within(
          server.server.shutdown({ grace: 5000 }),
          "the server's shutdown",
        );
        const event = await within(
          server.closed[0]!,
          "the server's close event",
        );
        // The client answered the close: the closing handshake completed.
        assertEquals([event.code, event.wasClean], [1001, true]);
        if (!client.reportsThroughServer) {
          const seen = await within(conn.closed, "the client's close event");
          assertEquals([seen.code, seen.reason, seen.wasClean], [
            1001,
            "going away",
            true,
          ]);
        }
      },
    );

    test(client, `${tag} a subprotocol is negotiated`, async () => {
      await using server = startWsServer(mode, { ws: { protocol: "chat.v2" } });
      await using conn = await client.open(server, ["chat.v1", "chat.v2"]);
      assertEquals(conn.protocol, "chat.v2");
      assertEquals(server.sockets[0]!.protocol, "chat.v2");
      const offered = server.handshakes[0]!.get("sec-websocket-protocol");
      assertEquals(offered?.split(",").map((p) => p.trim()), [
        "chat.v1",
        "chat.v2",
      ]);
      conn.send("x");
      assertEquals(await conn.next(), "x");
      conn.close(1000);
      await conn.closed;
    });

    test(
      client,
      `${tag} offered subprotocols and none selected: the client ${
        client.acceptsNoProtocol ? "opens anyway" : "fails the connection"
      }`,
      async () => {
        await using server = startWsServer(mode);
        if (client.acceptsNoProtocol) {
          await using conn = await client.open(server, ["chat.v1"]);
          assertEquals(conn.protocol, "");
          conn.send("x");
          assertEquals(await conn.next(), "x");
          conn.close(1000);
          await conn.closed;
          return;
        }
        let opened: Connection | undefined;
        try {
          opened = await client.open(server, ["chat.v1"]);
        } catch {
          // As expected.
        }
        if (opened !== undefined) {
          await opened[Symbol.asyncDispose]();
          fail(`${client.name} opened without the subprotocol it offered`);
        }
      },
    );

    test(
      client,
      `${tag} permessage-deflate ${
        client.offersDeflate ? "offered is declined" : "is not offered"
      }; compressible messages still pass`,
      async () => {
        await using server = startWsServer(mode);
        await using conn = await client.open(server);
        const offered = server.handshakes[0]!.get("sec-websocket-extensions");
        if (client.offersDeflate) {
          assert(
            offered?.includes("permessage-deflate"),
            `offered: ${offered}`,
          );
        } else {
          assertEquals(offered, null);
        }
        assertEquals(conn.extensions, "");
        assertEquals(server.sockets[0]!.extensions, "");
        const text = "all work and no play ".repeat(4000);
        const bytes = new Uint8Array(65_536).fill(7);
        conn.send(text);
        conn.send(bytes);
        assertEquals(await conn.next(), text);
        assertEquals(await conn.next(), bytes);
        conn.close(1000);
        assertEquals((await conn.closed).wasClean, true);
      },
    );

    test(
      client,
      `${tag} the client answers idle pings: the connection outlives idleTimeout`,
      async () => {
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
        await using conn = await client.open(server);
        assertEquals(await conn.next(), "still here");
        assertEquals(server.errors, []);
        conn.close(1000);
        await conn.closed;
      },
    );
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
  await using conn = await denoClient.open(server);
  const got: Data[] = [];
  for (let i = 0; i < 5; i++) got.push(await conn.next());
  assertEquals(got, ["1", "2", encoder.encode("3"), "4", "5"]);
  conn.close(1000);
  await conn.closed;
});
