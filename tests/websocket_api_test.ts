// Copyright 2026 the @corothread/evthread authors. MIT license.
// EvWebSocket's API: the WebSocket events and properties (event mode), and
// receive() / write() / for await (pull mode), with raw clients over
// loopback.
//
// deno test --allow-net --sanitize-ops --sanitize-resources \
//   tests/websocket_api_test.ts

import {
  assertEquals,
  assertInstanceOf,
  assertLessOrEqual,
  assertRejects,
  assertThrows,
} from "@std/assert";
import type { EvWebSocket, WebSocketMessage } from "../http.ts";
import {
  binary,
  bytes,
  close,
  openClient,
  ping,
  randomBytes,
  startWsServer,
  text,
  within,
} from "./_websocket_client.ts";

/** A promise with its resolvers, for app code running in the server. */
function later<T = void>() {
  return Promise.withResolvers<T>();
}

// ------------------------------------------------------------ event mode

Deno.test("EvWebSocket dispatches open, message and close to on* handlers and listeners", async () => {
  const seen: string[] = [];
  let self: unknown;
  let socketSeen: EvWebSocket | undefined;
  await using server = startWsServer("event", {
    use(socket) {
      socketSeen = socket;
      socket.onopen = function (event) {
        self = this;
        seen.push(`onopen ${event.type}`);
      };
      socket.addEventListener("open", () => seen.push("listener open"));
      socket.onmessage = (event) => seen.push(`onmessage ${event.data}`);
      socket.addEventListener(
        "message",
        (event) => seen.push(`listener ${event.data}`),
      );
      socket.onclose = (event) =>
        seen.push(`onclose ${event.code} ${event.reason} ${event.wasClean}`);
      socket.addEventListener("close", () => seen.push("listener close"));
    },
  });
  await using client = await openClient(server.port);
  await client.send(text("hi"), close(1000, "done"));
  await client.expectClose(1000);
  await within(server.closed[0]!, "the close");
  assertEquals(self, socketSeen);
  assertEquals(seen, [
    "onopen open",
    "listener open",
    "onmessage hi",
    "listener hi",
    "onclose 1000 done true",
    "listener close",
  ]);
});

Deno.test("EvWebSocket: setting onmessage to null removes the handler, a new one is called", async () => {
  const seen: string[] = [];
  await using server = startWsServer("event", {
    use(socket) {
      socket.onmessage = () => seen.push("first");
      assertEquals(typeof socket.onmessage, "function");
      socket.onmessage = null;
      assertEquals(socket.onmessage, null);
      socket.onmessage = (event) => {
        seen.push(`second ${event.data}`);
        socket.send("ok");
      };
    },
  });
  await using client = await openClient(server.port);
  await client.send(text("x"));
  await client.expectText("ok");
  await client.closeNormally();
  assertEquals(seen, ["second x"]);
});

Deno.test("EvWebSocket: binaryType gives ArrayBuffer by default, Blob when set; other values are ignored", async () => {
  const got: unknown[] = [];
  const done = later();
  await using server = startWsServer("event", {
    use(socket) {
      socket.onmessage = (event) => {
        got.push(event.data);
        if (got.length === 1) {
          socket.binaryType = "nonsense" as BinaryType;
          assertEquals(socket.binaryType, "arraybuffer");
          socket.binaryType = "blob";
        } else done.resolve();
      };
    },
  });
  await using client = await openClient(server.port);
  await client.send(binary(bytes(1, 2, 3)), binary(bytes(4, 5)));
  await within(done.promise, "two messages");
  await client.closeNormally();
  assertInstanceOf(got[0], ArrayBuffer);
  assertEquals(new Uint8Array(got[0] as ArrayBuffer), bytes(1, 2, 3));
  assertInstanceOf(got[1], Blob);
  assertEquals(
    new Uint8Array(await (got[1] as Blob).arrayBuffer()),
    bytes(4, 5),
  );
});

Deno.test("EvWebSocket.send() takes strings, buffers, views (only their bytes) and Blobs, in call order", async () => {
  await using server = startWsServer("event", {
    use(socket) {
      socket.onopen = () => {
        const buffer = new Uint8Array([9, 1, 2, 3, 9]);
        socket.send("text");
        socket.send(new Blob([bytes(7, 7)])); // read asynchronously...
        socket.send("after the blob"); // ...and still before this
        socket.send(buffer.buffer);
        socket.send(buffer.subarray(1, 4));
        socket.send(new DataView(buffer.buffer, 2, 2));
        socket.send(new Uint16Array([0x0102]));
      };
    },
  });
  await using client = await openClient(server.port);
  await client.expectText("text");
  await client.expectBinary(bytes(7, 7));
  await client.expectText("after the blob");
  await client.expectBinary(bytes(9, 1, 2, 3, 9));
  await client.expectBinary(bytes(1, 2, 3));
  await client.expectBinary(bytes(2, 3));
  await client.expectBinary(new Uint8Array(new Uint16Array([0x0102]).buffer));
  await client.closeNormally();
});

Deno.test("EvWebSocket.bufferedAmount counts bytes not yet written, and only grows after close()", async () => {
  const amounts: number[] = [];
  const written = later();
  await using server = startWsServer("event", {
    use(socket) {
      socket.onopen = async () => {
        socket.send("four");
        socket.send(bytes(1, 2, 3));
        amounts.push(socket.bufferedAmount);
        await socket.write("é"); // 2 bytes; resolves when all before are written
        amounts.push(socket.bufferedAmount);
        socket.close(1000);
        socket.send("discarded");
        amounts.push(socket.bufferedAmount);
        written.resolve();
      };
    },
  });
  await using client = await openClient(server.port);
  await client.expectText("four");
  await client.expectBinary(bytes(1, 2, 3));
  await client.expectText("é");
  await client.answerClose(1000);
  await within(written.promise, "the app");
  assertEquals(amounts, [7, 0, 9]);
});

Deno.test("EvWebSocket.close() checks its code and reason as the WebSocket API does", async () => {
  const errors: string[] = [];
  await using server = startWsServer("event", {
    use(socket) {
      socket.onopen = () => {
        for (
          const code of [999, 1004, 1005, 1006, 1015, 2000, 2999, 5000, 1000.5]
        ) {
          const error = assertThrows(() => socket.close(code), DOMException);
          errors.push(`${code} ${(error as DOMException).name}`);
        }
        const error = assertThrows(
          () => socket.close(1000, "é".repeat(62)),
          DOMException,
        );
        errors.push(`reason ${(error as DOMException).name}`);
        assertEquals(socket.readyState, socket.OPEN);
        socket.close(1000, "é".repeat(61) + "x"); // 123 bytes
        assertEquals(socket.readyState, socket.CLOSING);
        socket.close(4000, "ignored: closing already");
      };
    },
  });
  await using client = await openClient(server.port);
  await client.answerClose(1000, "é".repeat(61) + "x");
  assertEquals(errors, [
    "999 InvalidAccessError",
    "1004 InvalidAccessError",
    "1005 InvalidAccessError",
    "1006 InvalidAccessError",
    "1015 InvalidAccessError",
    "2000 InvalidAccessError",
    "2999 InvalidAccessError",
    "5000 InvalidAccessError",
    "1000.5 InvalidAccessError",
    "reason SyntaxError",
  ]);
  assertEquals((await server.closed[0]!).wasClean, true);
});

Deno.test("EvWebSocket.close() takes the codes a server sends: 1001, 1008, 1011, 3000-4999", async () => {
  for (const code of [1001, 1003, 1008, 1011, 1012, 1013, 1014, 3000, 4999]) {
    await using server = startWsServer("event", {
      use(socket) {
        socket.onopen = () => socket.close(code, `code ${code}`);
      },
    });
    await using client = await openClient(server.port);
    await client.answerClose(code, `code ${code}`);
    const event = await within(server.closed[0]!, "the close");
    assertEquals([event.code, event.wasClean], [code, true]);
  }
});

Deno.test("EvWebSocket.close() with a reason and no code sends 1000", async () => {
  await using server = startWsServer("event", {
    use(socket) {
      socket.onopen = () => socket.close(undefined, "why");
    },
  });
  await using client = await openClient(server.port);
  await client.answerClose(1000, "why");
});

Deno.test("EvWebSocket.close() before the 101 sends the close right after it, with no open event", async () => {
  const seen: string[] = [];
  await using server = startWsServer("event", {
    use(socket) {
      socket.onopen = () => seen.push("open");
      socket.onclose = (event) => seen.push(`close ${event.code}`);
      socket.close(4000, "changed my mind");
      assertEquals(socket.readyState, socket.CLOSING);
      socket.send("discarded, as once closing");
    },
  });
  await using client = await openClient(server.port);
  await client.answerClose(4000, "changed my mind");
  await within(server.closed[0]!, "the close");
  assertEquals(seen, ["close 4000"]);
});

Deno.test("EvWebSocket: messages that arrive after close() are not dispatched", async () => {
  const seen: string[] = [];
  await using server = startWsServer("event", {
    use(socket) {
      socket.onmessage = (event) => {
        seen.push(event.data);
        socket.close(1000);
      };
    },
  });
  await using client = await openClient(server.port);
  await client.send(text("first"));
  await client.readClose(1000);
  await client.send(text("too late"), close(1000));
  await client.expectEnd();
  await within(server.closed[0]!, "the close");
  assertEquals(seen, ["first"]);
});

Deno.test("EvWebSocket.closed resolves with the CloseEvent that was dispatched", async () => {
  let dispatched: CloseEvent | undefined;
  await using server = startWsServer("event", {
    use(socket) {
      socket.onclose = (event) => dispatched = event;
    },
  });
  await using client = await openClient(server.port);
  await client.send(close(3003, "reason"));
  await client.expectClose(3003);
  const event = await within(server.closed[0]!, "the close");
  assertEquals(event, dispatched);
  assertEquals(server.sockets[0]!.readyState, 3);
});

Deno.test("EvWebSocket: reading pauses while more than 1 MiB of sends wait for a slow client", async () => {
  // The client sends 12 MiB of messages and reads nothing until the server
  // has backed up; the echo server's send() queue must stay near 1 MiB, as
  // the server stops reading (TCP pushes back on the client) rather than
  // queueing all 12 MiB.
  const MESSAGE = 65_536;
  const COUNT = 192;
  let most = 0;
  const backedUp = later();
  await using server = startWsServer("event", {
    use(socket) {
      socket.onmessage = (event) => {
        socket.send(event.data);
        most = Math.max(most, socket.bufferedAmount);
        // 15 messages waiting: the kernel's buffers are full.
        if (socket.bufferedAmount >= 1_048_576 - MESSAGE) backedUp.resolve();
      };
    },
  });
  await using client = await openClient(server.port);
  const payloads = Array.from(
    { length: COUNT },
    (_, i) => randomBytes(MESSAGE, i),
  );
  const sending = (async () => {
    for (const p of payloads) await client.write(binary(p));
  })();
  sending.catch(() => {}); // awaited below
  await within(backedUp.promise, "the server's sends to back up");
  for (const p of payloads) await client.expectBinary(p);
  await within(sending, "the client's writes");
  await client.closeNormally();
  // At most one message beyond the mark: the one read before the pause.
  assertLessOrEqual(most, 1_048_576 + MESSAGE);
});

// ------------------------------------------------------------- pull mode

Deno.test("EvWebSocket.receive() gives messages in order: strings and Uint8Arrays", async () => {
  const got: WebSocketMessage[] = [];
  const done = later();
  await using server = startWsServer("pull", {
    use(socket) {
      (async () => {
        for (let i = 0; i < 3; i++) got.push((await socket.receive())!);
        done.resolve();
        for await (const _ of socket); // until the close
      })();
    },
  });
  await using client = await openClient(server.port);
  await client.send(text("one"), binary(bytes(2)), text("three"));
  await within(done.promise, "three messages");
  await client.closeNormally();
  assertEquals(got, ["one", bytes(2), "three"]);
  assertInstanceOf(got[1], Uint8Array);
});

Deno.test("EvWebSocket.receive(): a timed-out call loses no message", async () => {
  const results: string[] = [];
  const timedOut = later();
  await using server = startWsServer("pull", {
    use(socket) {
      (async () => {
        const error = await assertRejects(() =>
          socket.receive({ timeout: 30 })
        );
        results.push((error as DOMException).name);
        timedOut.resolve();
        results.push(`${await socket.receive({ timeout: 5000 })}`);
        await socket.write("thanks");
        for await (const _ of socket); // until the close
      })();
    },
  });
  await using client = await openClient(server.port);
  await within(timedOut.promise, "the timeout");
  await client.send(text("late but kept"));
  await client.expectText("thanks");
  await client.closeNormally();
  assertEquals(results, ["TimeoutError", "late but kept"]);
});

Deno.test("EvWebSocket.receive(): a deadline, and an aborted signal, lose nothing either", async () => {
  const results: string[] = [];
  const stopped = later();
  await using server = startWsServer("pull", {
    use(socket) {
      (async () => {
        const deadline = await assertRejects(() =>
          socket.receive({ deadline: Date.now() + 20 })
        );
        results.push((deadline as DOMException).name);
        const controller = new AbortController();
        const waiting = socket.receive({ signal: controller.signal });
        controller.abort(new Error("stop"));
        const aborted = await assertRejects(() => waiting);
        results.push((aborted as Error).message);
        stopped.resolve();
        results.push(`${await socket.receive()}`);
        await socket.write("done");
        for await (const _ of socket); // until the close
      })();
    },
  });
  await using client = await openClient(server.port);
  await within(stopped.promise, "the app to stop waiting twice");
  await client.send(text("kept"));
  await client.expectText("done");
  await client.closeNormally();
  assertEquals(results, ["TimeoutError", "stop", "kept"]);
});

Deno.test("EvWebSocket.receive({ timeout: 0 }) gives a message already received, else rejects at once", async () => {
  const results: string[] = [];
  const received = later();
  await using server = startWsServer("pull", {
    use(socket) {
      (async () => {
        const error = await assertRejects(() => socket.receive({ timeout: 0 }));
        results.push((error as DOMException).name);
        await received.promise;
        results.push(`${await socket.receive({ timeout: 0 })}`);
        for await (const _ of socket); // until the close
      })();
    },
  });
  await using client = await openClient(server.port);
  // The pong shows that the server has read the message before the ping.
  await client.send(text("already here"), ping("barrier"));
  await client.expectPong("barrier");
  received.resolve();
  await client.closeNormally();
  assertEquals(results, ["TimeoutError", "already here"]);
});

Deno.test("EvWebSocket: once receive() is called, message events stop", async () => {
  const events: string[] = [];
  const done = later<WebSocketMessage | null>();
  await using server = startWsServer("pull", {
    use(socket) {
      socket.onmessage = (event) => events.push(event.data);
      (async () => {
        done.resolve(await socket.receive());
        for await (const _ of socket); // until the close
      })();
    },
  });
  await using client = await openClient(server.port);
  await client.send(text("to receive()"));
  assertEquals(await within(done.promise, "receive()"), "to receive()");
  await client.closeNormally();
  assertEquals(events, []);
});

Deno.test("EvWebSocket: a client's close is answered after the messages before it were received", async () => {
  const gate = later();
  await using server = startWsServer("pull", {
    use(socket) {
      (async () => {
        let n = 0;
        for await (const message of socket) {
          if (n++ === 0) await gate.promise; // slow down on the first
          await socket.write(`re: ${message}`);
        }
        await socket.write("after null").catch((e) => socket.send(`${e.name}`));
      })();
    },
  });
  await using client = await openClient(server.port);
  await client.send(text("m1"), text("m2"), close(1000));
  gate.resolve();
  await client.expectText("re: m1");
  await client.expectText("re: m2");
  await client.expectClose(1000);
  const event = await within(server.closed[0]!, "the close");
  assertEquals([event.code, event.wasClean], [1000, true]);
});

Deno.test("EvWebSocket.receive() returns null after close(), and for await ends", async () => {
  const results: unknown[] = [];
  const done = later();
  await using server = startWsServer("pull", {
    use(socket) {
      (async () => {
        const waiting = socket.receive();
        socket.close(1000);
        results.push(await waiting);
        for await (const message of socket) results.push(message);
        results.push(await socket.receive());
        done.resolve();
      })();
    },
  });
  await using client = await openClient(server.port);
  await client.answerClose(1000);
  await within(done.promise, "the app");
  assertEquals(results, [null, null]);
});

Deno.test("EvWebSocket: leaving a for await loop does not close the socket", async () => {
  await using server = startWsServer("pull", {
    use(socket) {
      (async () => {
        for await (const message of socket) {
          if (message === "stop") break;
        }
        assertEquals(socket.readyState, socket.OPEN);
        await socket.write("left the loop");
        assertEquals(await socket.receive(), "still open");
        socket.close(1000);
      })();
    },
  });
  await using client = await openClient(server.port);
  await client.send(text("stop"));
  await client.expectText("left the loop");
  await client.send(text("still open"));
  await client.answerClose(1000);
});

Deno.test("EvWebSocket.write() waits for the open, resolves when written, rejects once closing", async () => {
  const results: string[] = [];
  const done = later();
  await using server = startWsServer("pull", {
    use(socket) {
      assertEquals(socket.readyState, socket.CONNECTING);
      (async () => {
        await socket.write("before the 101"); // waits for the open
        results.push(`written ${socket.bufferedAmount}`);
        socket.close(1000);
        const error = await assertRejects(() => socket.write("too late"));
        results.push((error as DOMException).name);
        done.resolve();
      })();
    },
  });
  await using client = await openClient(server.port);
  await client.expectText("before the 101");
  await client.answerClose(1000);
  await within(done.promise, "the app");
  assertEquals(results, ["written 0", "InvalidStateError"]);
});

Deno.test("EvWebSocket.write() to a client that does not read times out, and the message still goes out in order", async () => {
  const MESSAGE = 262_144;
  let sent = 0;
  const timedOut = later<string>();
  await using server = startWsServer("pull", {
    use(socket) {
      (async () => {
        // Bounded: the kernel's buffers hold a few MiB at most.
        for (let i = 0; i < 400; i++) {
          try {
            sent++;
            await socket.write(randomBytes(MESSAGE, i), { timeout: 100 });
          } catch (error) {
            timedOut.resolve((error as DOMException).name);
            return;
          }
        }
        timedOut.resolve("never timed out");
      })();
    },
  });
  await using client = await openClient(server.port);
  assertEquals(
    await within(timedOut.promise, "a write to time out"),
    "TimeoutError",
  );
  // Every message, the timed-out one included, arrives intact and in order.
  for (let i = 0; i < sent; i++) {
    await client.expectBinary(randomBytes(MESSAGE, i));
  }
  await client.closeNormally();
});

Deno.test("EvWebSocket.write() with an aborted signal rejects with its reason", async () => {
  const result = later<unknown>();
  await using server = startWsServer("pull", {
    use(socket) {
      socket.onopen = () => {
        const controller = new AbortController();
        controller.abort(new Error("never mind"));
        socket.write("x", { signal: controller.signal }).then(
          () => result.resolve("written"),
          (error) => result.resolve(error),
        );
      };
    },
  });
  await using client = await openClient(server.port);
  const error = await within(result.promise, "the write");
  assertEquals((error as Error).message, "never mind");
  await client.expectText("x"); // queued all the same
  await client.closeNormally();
});

Deno.test("EvWebSocket: await using closes with 1000 and waits for the close", async () => {
  const done = later<number>();
  await using server = startWsServer("pull", {
    use(socket) {
      (async () => {
        {
          await using ws = socket;
          assertEquals(await ws.receive(), "hello");
        }
        done.resolve(socket.readyState);
      })();
    },
  });
  await using client = await openClient(server.port);
  await client.send(text("hello"));
  await client.answerClose(1000);
  assertEquals(await within(done.promise, "the dispose"), 3);
});

Deno.test("EvWebSocket: receive() and write() check their options", async () => {
  const kinds: string[] = [];
  await using server = startWsServer("pull", {
    use(socket) {
      (async () => {
        for (
          const options of [
            { timeout: -1 },
            { timeout: "1" },
            { deadline: "soon" },
            { signal: "no" },
          ]
        ) {
          // deno-lint-ignore no-explicit-any
          const o = options as any;
          kinds.push(
            (await socket.receive(o).catch((e) => e)).constructor.name,
          );
          kinds.push(
            (await socket.write("x", o).catch((e) => e)).constructor.name,
          );
        }
        socket.close(1000);
      })();
    },
  });
  await using client = await openClient(server.port);
  await client.answerClose(1000);
  assertEquals(kinds, [
    "RangeError",
    "RangeError",
    "TypeError",
    "TypeError",
    "TypeError",
    "TypeError",
    "TypeError",
    "TypeError",
  ]);
});
