// Copyright 2026 the @corothread/evthread authors. MIT license.

// Runs examples/ws_chat.ts as a child process and talks to it with Deno's
// WebSocket client (and a raw client for the one that never reads). The
// port comes from the "listening" line, never from a sleep; every child is
// stopped in a finally (`await using`): SIGTERM, then SIGKILL if it
// outlives a safety timeout.
//
// deno test --allow-net --allow-read --allow-run --allow-env \
//   --sanitize-ops --sanitize-resources tests/ws_examples_test.ts

import { assertEquals, assertMatch, assertStringIncludes } from "@std/assert";
import { CHILD_SAFETY_MS, DenoProcess } from "./_process.ts";
import { openClient, within } from "./_websocket_client.ts";

/** The chat example running as a child process. */
class Chat extends DenoProcess {
  constructor(args: string[]) {
    super("ws_chat.ts", [
      "run",
      "--no-prompt",
      "--allow-net",
      "examples/ws_chat.ts",
      ...args,
    ]);
  }

  /** Waits for the listening line; returns the port. */
  async port(): Promise<number> {
    const match = await this.line(
      /^chat listening on http:\/\/127\.0\.0\.1:(\d+)\/$/,
    );
    return Number(match[1]);
  }
}

/** A chat client on Deno's WebSocket, its messages read in order. */
class Client implements AsyncDisposable {
  readonly ws: WebSocket;
  readonly closed: Promise<CloseEvent>;
  #inbox: string[] = [];
  #waiting: ((line: string) => void)[] = [];

  private constructor(ws: WebSocket) {
    this.ws = ws;
    ws.onmessage = (event) => {
      const waiter = this.#waiting.shift();
      if (waiter !== undefined) waiter(event.data);
      else this.#inbox.push(event.data);
    };
    this.closed = new Promise((resolve) => ws.onclose = resolve);
  }

  static async open(port: number): Promise<Client> {
    const client = new Client(new WebSocket(`ws://127.0.0.1:${port}/ws`));
    await within(
      new Promise((resolve, reject) => {
        client.ws.onopen = resolve;
        client.ws.onerror = () => reject(new Error("the client failed"));
      }),
      "the client to open",
      CHILD_SAFETY_MS,
    );
    return client;
  }

  /** The next line from the room. */
  next(): Promise<string> {
    return within(
      this.#inbox.length > 0
        ? Promise.resolve(this.#inbox.shift()!)
        : new Promise<string>((resolve) => this.#waiting.push(resolve)),
      "a chat line",
      CHILD_SAFETY_MS,
    );
  }

  /** The next line that is not an announcement (`* ...`). */
  async nextChat(): Promise<string> {
    while (true) {
      const line = await this.next();
      if (!line.startsWith("* ")) return line;
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.ws.readyState !== WebSocket.CLOSED) {
      this.ws.close();
      await within(this.closed, "the client to close", CHILD_SAFETY_MS);
    }
  }
}

Deno.test("ws_chat.ts sends each message to every other client, and announces joins and departures", async () => {
  await using chat = new Chat(["0"]);
  const port = await chat.port();
  await using a = await Client.open(port);
  await chat.line(/^guest-1 joined$/);
  await using b = await Client.open(port);
  assertEquals(await a.next(), "* guest-2 joined");
  await using c = await Client.open(port);
  assertEquals(await a.next(), "* guest-3 joined");
  assertEquals(await b.next(), "* guest-3 joined");

  a.ws.send("hello, room");
  assertEquals(await b.next(), "guest-1: hello, room");
  assertEquals(await c.next(), "guest-1: hello, room");
  b.ws.send("hi guest-1");
  // guest-1 never got its own message back: its next line is guest-2's.
  assertEquals(await a.next(), "guest-2: hi guest-1");
  assertEquals(await c.next(), "guest-2: hi guest-1");

  c.ws.close(1000);
  await c.closed;
  assertEquals(await a.next(), "* guest-3 left");
  assertEquals(await b.next(), "* guest-3 left");
});

Deno.test("ws_chat.ts drops a client that does not read, and the room goes on", async () => {
  await using chat = new Chat(["0", "--send-timeout", "0.2"]);
  const port = await chat.port();
  await using sender = await Client.open(port);
  await using reader = await Client.open(port);
  assertEquals(await sender.next(), "* guest-2 joined");
  // A client that joins and never reads a byte.
  await using stuck = await openClient(port, { path: "/ws" });
  assertEquals(await sender.next(), "* guest-3 joined");
  assertEquals(await reader.next(), "* guest-3 joined");

  // 8 MiB for everyone: far more than the stuck client's buffers take.
  const line = "x".repeat(4000);
  const COUNT = 2000;
  for (let i = 0; i < COUNT; i++) sender.ws.send(`${i} ${line}`);
  for (let i = 0; i < COUNT; i++) {
    assertEquals(await reader.nextChat(), `guest-1: ${i} ${line}`);
  }
  await chat.line(/^guest-3 dropped: too slow$/);
  await chat.line(/^guest-3 left$/);
  // The stuck client's connection ends (after what it had been sent).
  let frames = 0;
  while (await stuck.readFrame() !== null) frames++;
  stuck.close();
  assertEquals(frames < COUNT + 2, true);
});

Deno.test("ws_chat.ts drops a client that stays silent past --idle-timeout", async () => {
  await using chat = new Chat(["0", "--idle-timeout", "0.3"]);
  const port = await chat.port();
  const start = performance.now();
  await using quiet = await Client.open(port);
  const event = await within(quiet.closed, "the idle close", CHILD_SAFETY_MS);
  assertEquals([event.code, event.reason], [1000, "idle"]);
  assertEquals(performance.now() - start >= 250, true);
  await chat.line(/^guest-1 dropped: idle$/);
});

Deno.test("ws_chat.ts closes clients with 1001 on SIGTERM and exits 0 with its counters", async () => {
  await using chat = new Chat(["0"]);
  const port = await chat.port();
  await using a = await Client.open(port);
  await using b = await Client.open(port);
  assertEquals(await a.next(), "* guest-2 joined");
  a.ws.send("bye soon");
  assertEquals(await b.next(), "guest-1: bye soon");
  chat.kill("SIGTERM");
  for (const client of [a, b]) {
    const event = await within(client.closed, "the 1001", CHILD_SAFETY_MS);
    assertEquals([event.code, event.reason, event.wasClean], [
      1001,
      "going away",
      true,
    ]);
  }
  const { code, stdout } = await chat.exit();
  assertEquals(code, 0);
  assertEquals(chat.stderr, "");
  assertMatch(stdout, /^chat stopped: 2 clients, 1 messages, 0 dropped$/m);
});

Deno.test("ws_chat.ts serves its page, answers 426 to a plain GET of /ws and 404 elsewhere", async () => {
  await using chat = new Chat(["0"]);
  const port = await chat.port();
  const page = await fetch(`http://127.0.0.1:${port}/`);
  assertEquals(page.status, 200);
  assertStringIncludes(await page.text(), "new WebSocket");
  const plain = await fetch(`http://127.0.0.1:${port}/ws`);
  assertEquals(plain.status, 426);
  assertEquals(plain.headers.get("upgrade"), "websocket");
  await plain.body?.cancel();
  const missing = await fetch(`http://127.0.0.1:${port}/nope`);
  assertEquals(missing.status, 404);
  await missing.body?.cancel();
});

for (
  const args of [
    ["abc"],
    ["70000"],
    ["--idle-timeout"],
    ["--idle-timeout", "-1"],
    ["--send-timeout", "soon"],
    ["8090", "8091"],
    ["--hostname"],
  ]
) {
  Deno.test(`ws_chat.ts refuses ${JSON.stringify(args)}: usage, exit 2`, async () => {
    await using chat = new Chat(args);
    const { code, stdout } = await chat.exit();
    assertEquals(code, 2);
    assertEquals(stdout, "");
    assertStringIncludes(
      chat.stderr,
      "usage: deno run --allow-net examples/ws_chat.ts",
    );
  });
}
