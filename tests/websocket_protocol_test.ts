// Copyright 2026 the @corothread/evthread authors. MIT license.
// RFC 6455 rules that the Autobahn cases do not cover, as raw frames over
// loopback: masking, length encodings, the message size limit, the idle
// timeout's ping, and who closes TCP first.
//
// deno test --allow-net --sanitize-ops --sanitize-resources \
//   tests/websocket_protocol_test.ts

import { assertEquals, assertMatch } from "@std/assert";
import {
  binary,
  close,
  cont,
  frame,
  type Mode,
  OP,
  openClient,
  ping,
  pong,
  randomBytes,
  startWsServer,
  text,
  within,
} from "./_websocket_client.ts";

const MODES: Mode[] = ["event", "pull"];

for (const mode of MODES) {
  Deno.test(`[${mode}] an unmasked client frame fails the connection with 1002`, async () => {
    await using server = startWsServer(mode);
    await using client = await openClient(server.port);
    await client.send(frame({ opcode: OP.TEXT, payload: "hi", masked: false }));
    const reason = await client.expectClose(1002);
    assertMatch(reason, /masked/);
    const event = await within(server.closed[0]!, "the close");
    assertEquals([event.code, event.wasClean], [1006, false]);
    assertEquals(server.errors.length, 1);
    assertMatch(server.errors[0]!, /client frames must be masked/);
  });

  Deno.test(`[${mode}] a 64-bit length with its top bit set fails with 1002 at the header`, async () => {
    await using server = startWsServer(mode);
    await using client = await openClient(server.port);
    // The header alone: the server must not wait for 2^63 bytes.
    await client.send(
      frame({ opcode: OP.BINARY, declaredLength: 1n << 63n }),
    );
    await client.expectClose(1002);
  });

  for (
    const [what, spec] of [
      ["5 bytes in the 16-bit form", { length: 5, form: 16 }],
      ["125 bytes in the 16-bit form", { length: 125, form: 16 }],
      ["200 bytes in the 64-bit form", { length: 200, form: 64 }],
      ["65535 bytes in the 64-bit form", { length: 65_535, form: 64 }],
    ] as const
  ) {
    Deno.test(`[${mode}] a non-minimal length (${what}) fails with 1002`, async () => {
      // RFC 6455 5.2: "the minimal number of bytes MUST be used to encode
      // the length"; a frame that does not is malformed.
      await using server = startWsServer(mode);
      await using client = await openClient(server.port);
      await client.send(
        frame({
          opcode: OP.BINARY,
          payload: randomBytes(spec.length),
          lengthForm: spec.form,
        }),
      );
      await client.expectClose(1002);
    });
  }

  Deno.test(`[${mode}] lengths at each form's boundary are taken`, async () => {
    await using server = startWsServer(mode);
    await using client = await openClient(server.port);
    for (const n of [125, 126, 65_535, 65_536]) {
      const payload = randomBytes(n, n);
      await client.send(binary(payload));
      await client.expectBinary(payload);
    }
    await client.closeNormally();
  });

  Deno.test(`[${mode}] a message over maxMessageBytes fails with 1009 as its header arrives`, async () => {
    await using server = startWsServer(mode, { ws: { maxMessageBytes: 1000 } });
    await using client = await openClient(server.port);
    const exact = randomBytes(1000);
    await client.send(binary(exact)); // at the limit: taken
    await client.expectBinary(exact);
    // Over it: only the header is sent; the server fails at once.
    const whole = binary(randomBytes(1001));
    await client.write(whole.subarray(0, 8));
    const reason = await client.expectClose(1009);
    assertMatch(reason, /1001 bytes is over the limit of 1000/);
  });

  Deno.test(`[${mode}] a fragmented message over maxMessageBytes fails with 1009 at the fragment that crosses it`, async () => {
    await using server = startWsServer(mode, { ws: { maxMessageBytes: 1000 } });
    await using client = await openClient(server.port);
    await client.send(
      text("a".repeat(600), false),
      ping("taken so far"),
    );
    await client.expectPong("taken so far");
    await client.send(cont("b".repeat(401)));
    await client.expectClose(1009);
  });

  Deno.test(`[${mode}] idleTimeout: a silent client is pinged, then closed with 1001`, async () => {
    await using server = startWsServer(mode, { ws: { idleTimeout: 0.2 } });
    await using client = await openClient(server.port);
    const start = performance.now();
    const pinged = await client.nextFrame("the idle ping");
    assertEquals(pinged.opcode, OP.PING);
    assertEquals(pinged.payload.byteLength, 0);
    const reason = await client.expectClose(1001);
    const elapsed = performance.now() - start;
    assertMatch(reason, /idleTimeout/);
    // Not before the whole idle timeout (a safety margin below for timers).
    assertEquals(elapsed >= 150, true, `closed after ${elapsed} ms`);
    const event = await within(server.closed[0]!, "the close");
    assertEquals([event.code, event.wasClean], [1006, false]);
    assertEquals(server.errors.length, 1);
    assertMatch(server.errors[0]!, /within idleTimeout \(0\.2 s\)/);
  });

  Deno.test(`[${mode}] idleTimeout: a client that answers pings stays connected`, async () => {
    await using server = startWsServer(mode, { ws: { idleTimeout: 0.2 } });
    await using client = await openClient(server.port);
    for (let i = 0; i < 3; i++) {
      const f = await client.nextFrame(`idle ping ${i + 1}`);
      assertEquals(f.opcode, OP.PING);
      await client.send(pong());
    }
    await client.send(text("still here"));
    await client.expectText("still here");
    await client.closeNormally();
    assertEquals(server.errors, []);
  });

  Deno.test(`[${mode}] idleTimeout: any frame counts, not only a pong`, async () => {
    await using server = startWsServer(mode, { ws: { idleTimeout: 0.2 } });
    await using client = await openClient(server.port);
    // Wait for each ping, then answer with a message instead of a pong.
    for (let i = 0; i < 3; i++) {
      const f = await client.nextFrame(`idle ping ${i + 1}`);
      assertEquals(f.opcode, OP.PING);
      await client.send(text(`message ${i}`));
      await client.expectText(`message ${i}`);
    }
    await client.closeNormally();
    assertEquals(server.errors, []);
  });

  Deno.test(`[${mode}] the server ends TCP first after answering a close`, async () => {
    await using server = startWsServer(mode);
    await using client = await openClient(server.port);
    await client.send(close(1000, "bye"));
    // The close reply, then end of stream, while this side still has its
    // end open: the server closed first.
    await client.readClose(1000);
    await client.expectEnd();
    const event = await within(server.closed[0]!, "the close");
    assertEquals([event.code, event.reason, event.wasClean], [
      1000,
      "bye",
      true,
    ]);
  });

  Deno.test(`[${mode}] a server close: the client's answer completes it, then the server ends TCP`, async () => {
    await using server = startWsServer(mode, {
      use(socket) {
        socket.onopen = () => socket.close(4001, "server says bye");
      },
    });
    await using client = await openClient(server.port);
    await client.readClose(4001, "server says bye");
    await client.send(close(4002, "client agrees"));
    await client.expectEnd();
    const event = await within(server.closed[0]!, "the close");
    assertEquals([event.code, event.reason, event.wasClean], [
      4002,
      "client agrees",
      true,
    ]);
  });

  Deno.test(`[${mode}] a server close that the client never answers ends after closeTimeout`, async () => {
    await using server = startWsServer(mode, {
      ws: { closeTimeout: 100 },
      use(socket) {
        socket.onopen = () => socket.close(1000);
      },
    });
    await using client = await openClient(server.port);
    await client.readClose(1000);
    await client.expectEnd(); // no answer: the server gives up and closes
    const event = await within(server.closed[0]!, "the close");
    assertEquals([event.code, event.wasClean], [1006, false]);
    assertEquals(server.errors, []);
  });

  Deno.test(`[${mode}] a client that vanishes without a close frame: close event 1006`, async () => {
    await using server = startWsServer(mode);
    {
      await using client = await openClient(server.port);
      await client.send(text("hello"));
      await client.expectText("hello");
    }
    const event = await within(server.closed[0]!, "the close");
    assertEquals([event.code, event.reason, event.wasClean], [1006, "", false]);
    assertEquals(server.errors, []);
  });

  Deno.test(`[${mode}] data after a protocol error is not processed`, async () => {
    await using server = startWsServer(mode);
    await using client = await openClient(server.port);
    await client.send(
      frame({ opcode: OP.TEXT, payload: "bad", rsv: 1 }),
      text("never echoed"),
      ping("never answered"),
    );
    await client.expectClose(1002);
  });

  Deno.test(`[${mode}] a control frame between fragments of a large binary message`, async () => {
    await using server = startWsServer(mode);
    await using client = await openClient(server.port);
    const payload = randomBytes(600_000, 7);
    await client.send(
      binary(payload.subarray(0, 300_000), false),
      ping("between"),
      cont(payload.subarray(300_000)),
    );
    await client.expectPong("between");
    await client.expectBinary(payload);
    await client.closeNormally();
  });
}

Deno.test("a text message split inside a code point across many writes is decoded whole", async () => {
  await using server = startWsServer("pull");
  await using client = await openClient(server.port);
  const message = "😀é€".repeat(5000);
  const f = text(message);
  // Odd-sized writes land inside code points and inside the header.
  await client.writeChops(f, 7);
  await client.expectText(message);
  await client.closeNormally();
});

Deno.test("a text message that begins with U+FEFF keeps it", async () => {
  await using server = startWsServer("event");
  await using client = await openClient(server.port);
  await client.send(text("\ufeffBOM"));
  await client.expectText("\ufeffBOM");
  await client.closeNormally();
});

Deno.test("[pull] pings are answered while messages wait for receive(); a close waits behind them until closeTimeout", async () => {
  // Pull mode with nobody calling receive() after the first: messages wait
  // in the queue, and control frames are still answered below the limit.
  await using server = startWsServer("pull", {
    ws: { closeTimeout: 200 },
    use(socket) {
      socket.receive().catch(() => {});
    },
  });
  await using client = await openClient(server.port);
  await client.send(text("one"), text("two"), ping("still answering"));
  await client.expectPong("still answering");
  await client.send(close(1000));
  await client.expectClose(1000);
  // The close waited in the queue behind two messages nobody took, and was
  // answered when closeTimeout passed.
});
