// Copyright 2026 the @corothread/evthread authors. MIT license.

// Runs each example as a child process (`deno run --allow-net`) and checks
// what it does over loopback. Servers listen on port 0; the tests learn the
// port from the server's "listening" line, never from a sleep. Every child
// is stopped in a finally: SIGTERM, then SIGKILL if it outlives a safety
// timeout.

import {
  assert,
  assertEquals,
  assertGreater,
  assertLess,
  assertMatch,
  assertStringIncludes,
} from "@std/assert";
import { closedPort, concat, within, writeAll } from "./_helpers.ts";
import { CHILD_SAFETY_MS, DenoProcess } from "./_process.ts";

/** The most any single wait in these tests may take. */
const SAFETY = CHILD_SAFETY_MS;

const encoder = new TextEncoder();

/** An example running as a child process, its output read line by line. */
class Example extends DenoProcess {
  /** Runs `examples/NAME` with `--allow-net` and `args`; `stdin` is piped in. */
  constructor(name: string, args: string[], stdin?: string) {
    super(name, ["run", "--allow-net", `examples/${name}`, ...args], stdin);
  }

  /** Waits for the listening line of a server and returns its port. */
  async port(): Promise<number> {
    const match = await this.line(/listening on 127\.0\.0\.1:(\d+)/);
    return Number(match[1]);
  }
}

function payload(size: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    x = (x * 1_103_515_245 + 12_345) >>> 0;
    bytes[i] = x >>> 24;
  }
  return bytes;
}

/** Reads `size` bytes, or until end of stream when `size` is undefined. */
async function readBytes(conn: Deno.Conn, size?: number): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  const buf = new Uint8Array(64 * 1024);
  while (size === undefined || total < size) {
    const want = size === undefined ? buf.byteLength : size - total;
    const n = await conn.read(buf.subarray(0, Math.min(want, buf.byteLength)));
    if (n === null) break;
    chunks.push(buf.slice(0, n));
    total += n;
  }
  return concat(chunks);
}

/** Sends `bytes` while reading the echo back at the same time. */
async function echoOnce(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  const [, echo] = await within(
    Promise.all([writeAll(conn, bytes), readBytes(conn, bytes.byteLength)]),
    "the echo",
    SAFETY,
  );
  assertEquals(echo.byteLength, bytes.byteLength);
  assert(sameBytes(echo, bytes), "the echo differs from what was sent");
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

function connect(port: number): Promise<Deno.TcpConn> {
  return within(
    Deno.connect({ hostname: "127.0.0.1", port }),
    `connect to ${port}`,
    SAFETY,
  );
}

Deno.test("echo_server.ts echoes byte-exact and exits 0 with stats on SIGTERM", async () => {
  await using server = new Example("echo_server.ts", ["0"]);
  const port = await server.port();

  const bytes = payload(256 * 1024, 1);
  {
    using conn = await connect(port);
    await echoOnce(conn, bytes);
  }

  // An idle connection: the drain must end it at once, not after the 3 s
  // recv timeout.
  using idle = await connect(port);
  await echoOnce(idle, encoder.encode("hi"));
  const signalled = performance.now();
  server.kill("SIGTERM");
  assertEquals(
    await within(readBytes(idle), "EOF on the idle connection", SAFETY),
    new Uint8Array(0),
  );
  const { code, stdout } = await server.exit();
  assertLess(performance.now() - signalled, 2500);
  assertEquals(code, 0);
  assertStringIncludes(stdout, `echoed ${bytes.byteLength + 2} bytes`);
  assertMatch(stdout, /^stats: .*accepted=2 .*errors=0( |$)/m);
  assertEquals(server.stderr, "");
});

Deno.test("echo_server.ts ends quietly when a peer resets", async () => {
  await using server = new Example("echo_server.ts", ["0"]);
  const port = await server.port();
  {
    // Send a lot and close without reading: the server's send or recv
    // fails with a reset, which ends the connection like a timeout does.
    using conn = await connect(port);
    await within(writeAll(conn, payload(512 * 1024, 4)), "the send", SAFETY);
  }
  {
    using conn = await connect(port);
    await echoOnce(conn, encoder.encode("still serving"));
  }
  server.kill("SIGTERM");
  const { code, stdout } = await server.exit();
  assertEquals(code, 0);
  assertMatch(stdout, /^stats: .*accepted=2 .*errors=0( |$)/m);
  assertEquals(server.stderr, "");
});

Deno.test("echo_server.ts drains on SIGINT too", async () => {
  await using server = new Example("echo_server.ts", ["0"]);
  await server.port();
  server.kill("SIGINT");
  const { code, stdout } = await server.exit();
  assertEquals(code, 0);
  assertMatch(stdout, /^stats: .*accepted=0 /m);
});

Deno.test("echo_client.ts prints the echoes of its arguments", async () => {
  await using server = new Example("echo_server.ts", ["0"]);
  const port = await server.port();
  const messages = ["hello", "wörld ✓", "three words here", "-h"];
  await using client = new Example("echo_client.ts", [
    String(port),
    ...messages.slice(0, 3),
    "--",
    "-h",
  ]);
  const { code, stdout } = await client.exit();
  assertEquals(client.stderr, "");
  assertEquals(code, 0);
  assertEquals(stdout, messages.join("\n"));
});

Deno.test("echo_client.ts sends the lines of stdin without messages", async () => {
  await using server = new Example("echo_server.ts", ["0"]);
  const port = await server.port();
  await using client = new Example(
    "echo_client.ts",
    [String(port)],
    "one\r\ntwo\n\nthree",
  );
  const { code, stdout } = await client.exit();
  assertEquals(client.stderr, "");
  assertEquals(code, 0);
  assertEquals(stdout, "one\ntwo\n\nthree");
});

Deno.test("echo_client.ts exits 1 with a clear message when refused", async () => {
  await using client = new Example("echo_client.ts", [
    String(closedPort()),
    "hello",
  ]);
  const { code, stdout } = await client.exit();
  assertEquals(code, 1);
  assertEquals(stdout, "");
  assertMatch(
    client.stderr,
    /^echo_client: connection refused by 127\.0\.0\.1:\d+/,
  );
  assertEquals(client.stderr.trim().split("\n").length, 1);
});

Deno.test("tcp_proxy.ts proxies byte-exact both ways, with half-close", async () => {
  await using server = new Example("echo_server.ts", ["0"]);
  const echoPort = await server.port();
  await using proxy = new Example("tcp_proxy.ts", [
    "0",
    `127.0.0.1:${echoPort}`,
  ]);
  const match = await proxy.line(
    /^tcp proxy listening on 127\.0\.0\.1:(\d+) -> 127\.0\.0\.1:(\d+)$/,
  );
  assertEquals(Number(match[2]), echoPort);
  const port = Number(match[1]);

  // Both directions at once, 1 MiB each way.
  {
    using conn = await connect(port);
    await echoOnce(conn, payload(1024 * 1024, 2));
  }

  // Half-close: send everything and shut our write side before reading a
  // byte. The echo still comes back in full, then end of stream.
  {
    using conn = await connect(port);
    const bytes = payload(64 * 1024, 3);
    await within(writeAll(conn, bytes), "the send", SAFETY);
    await conn.closeWrite();
    const echo = await within(readBytes(conn), "echo + EOF", SAFETY);
    assertEquals(echo.byteLength, bytes.byteLength);
    assert(sameBytes(echo, bytes), "the echo differs from what was sent");
  }
  await proxy.line(/: closed, 65536 bytes up, 65536 down$/);

  proxy.kill("SIGTERM");
  const { code, stdout } = await proxy.exit();
  assertEquals(code, 0);
  assertEquals(proxy.stderr, "");
  assertMatch(
    stdout,
    /^tcp proxy stopped: 2 pairs, 1114112 bytes up, 1114112 down$/m,
  );
  assertMatch(stdout, /^stats: .*accepted=2 .*errors=0( |$)/m);
});

Deno.test("tcp_proxy.ts drops an idle pair after its idle timeout", async () => {
  await using server = new Example("echo_server.ts", ["0"]);
  const echoPort = await server.port();
  await using proxy = new Example("tcp_proxy.ts", [
    "0",
    `127.0.0.1:${echoPort}`,
    "--idle-timeout",
    "300",
  ]);
  const port = await proxy.port();
  using conn = await connect(port);
  await echoOnce(conn, encoder.encode("ping"));
  const start = performance.now();
  // Silence: the proxy ends the pair, and we read end of stream.
  assertEquals(
    await within(readBytes(conn), "EOF from the proxy", SAFETY),
    new Uint8Array(0),
  );
  assertGreater(performance.now() - start, 200);
  await proxy.line(/dropped after 4 bytes up, 4 down: TimeoutError/);
});

Deno.test("tcp_proxy.ts closes the client when the target refuses", async () => {
  await using proxy = new Example("tcp_proxy.ts", [
    "0",
    `127.0.0.1:${closedPort()}`,
  ]);
  const port = await proxy.port();
  using conn = await connect(port);
  assertEquals(
    await within(readBytes(conn), "EOF from the proxy", SAFETY),
    new Uint8Array(0),
  );
  await proxy.line(/cannot reach 127\.0\.0\.1:\d+: ConnectionRefused/);
});

Deno.test("delay.ts interleaves its tasks in order and exits 0", async () => {
  await using example = new Example("delay.ts", []);
  const { code, stdout } = await example.exit();
  assertEquals(code, 0);
  assertEquals(example.stderr, "");
  const events = example.lines
    .map((line) => line.match(/^\s*\d+ ms {2}(\S+)\s+(.*)$/))
    .filter((m) => m !== null)
    .map((m) => `${m[1]}: ${m[2]}`);
  assertEquals(events, [
    "fast: starts: 3 steps of 100 ms",
    "slow: starts: 2 steps of 250 ms",
    "sleeper: starts: sleeps for 10 s",
    "waker: starts: will wake the sleeper in 400 ms",
    "fast: step 1",
    "fast: step 2",
    "slow: step 1",
    "fast: step 3, done",
    "waker: aborts the sleeper",
    "sleeper: woken early: Error: time to get up",
    "slow: step 2, done",
  ]);
  const match = stdout.match(/all tasks ended after (\d+) ms/);
  assert(match !== null, stdout);
  assertLess(Number(match[1]), 5000); // not the sleeper's 10 s
  assertStringIncludes(
    stdout,
    "the sleeper was aborted (Error: time to get up)",
  );
  assertStringIncludes(stdout, "stats: spawned=4 ended=4 errors=0");
});

Deno.test("demo.ts echoes with 100 clients, reports and exits 0", async () => {
  await using demo = new Example("demo.ts", ["0"]);
  const { code, stdout } = await demo.exit();
  assertEquals(demo.stderr, "");
  assertEquals(code, 0);
  assertMatch(stdout, /^echo server listening on 127\.0\.0\.1:\d+$/m);
  assertMatch(stdout, /^clients served: 100\/100, 5 messages each$/m);
  assertMatch(stdout, /^bytes echoed: +[1-9]\d*, every byte checked$/m);
  assertMatch(stdout, /^mismatches: +0$/m);
  assertMatch(stdout, /^server stats: +accepted=100 ended=100 .*errors=0$/m);
  assertMatch(stdout, /^client stats: +spawned=100 ended=100 .*errors=0$/m);
  assertMatch(stdout, /^ok: every echo matched/m);
});

Deno.test("examples exit 2 with a usage line on bad arguments", async () => {
  const cases: [string, string[]][] = [
    ["echo_server.ts", ["notaport"]],
    ["echo_server.ts", ["70000"]],
    ["echo_server.ts", ["0", "extra"]],
    ["echo_server.ts", ["0", "--hostname"]],
    ["echo_client.ts", []],
    ["echo_client.ts", ["0", "hello"]],
    ["echo_client.ts", ["port", "hello"]],
    ["delay.ts", ["9999"]],
    ["tcp_proxy.ts", ["0"]],
    ["tcp_proxy.ts", ["0", "localhost"]],
    ["tcp_proxy.ts", ["0", "localhost:0"]],
    ["tcp_proxy.ts", ["0", "127.0.0.1:1", "--idle-timeout", "soon"]],
    ["tcp_proxy.ts", ["0", "127.0.0.1:1", "--verbose"]],
    ["demo.ts", ["-5"]],
    ["demo.ts", ["0", "1"]],
  ];
  for (const [name, args] of cases) {
    await using example = new Example(name, args);
    const { code, stdout } = await example.exit();
    const what = `${name} ${args.join(" ")}`;
    assertEquals(code, 2, what);
    assertEquals(stdout, "", what);
    assertMatch(example.stderr, /^usage: deno run /m, what);
  }
});
