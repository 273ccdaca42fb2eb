// Copyright 2026 the @corothread/evthread authors. MIT license.
// The PROXY protocol against a real HAProxy (mode tcp, roundrobin over two
// back ends, each a tests/testdata/proxied_http_server.ts process), on
// loopback only. HAProxy is looked up on PATH and in /usr/sbin,
// /usr/local/sbin and /sbin (`EVTHREAD_HAPROXY=/path/to/haproxy` names it
// instead); without it every test here is skipped and one line says why.
//
// The configuration reaches HAProxy on its stdin (`haproxy -f /dev/stdin`):
// the test command has no --allow-write, so no file is written.

import { assert, assertEquals, assertGreaterOrEqual } from "@std/assert";
import {
  closeQuietly,
  decoder,
  encoder,
  eventually,
  HOST,
  readToEnd,
  readUntilClosed,
  within,
  writeAll,
} from "./_helpers.ts";
import { LineReader, readText } from "./_process.ts";

/** The most any single wait on a process or a connection may take. */
const SAFETY_MS = 10_000;
/** Requests through HAProxy per test. */
const REQUESTS = 20;
const BACKEND_SCRIPT = new URL(
  "./testdata/proxied_http_server.ts",
  import.meta.url,
).pathname;
const ROOT = new URL("../", import.meta.url).pathname;

/** Where HAProxy is and its version, or why it cannot be used. */
type Lookup = { path: string; version: string } | { reason: string };

function envVar(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}

async function findHaproxy(): Promise<Lookup> {
  const named = envVar("EVTHREAD_HAPROXY");
  const candidates = named !== undefined ? [named] : [
    ...new Set(
      [
        ...(envVar("PATH") ?? "").split(":"),
        "/usr/sbin",
        "/usr/local/sbin",
        "/sbin",
      ].filter((dir) => dir !== "").map((dir) => `${dir}/haproxy`),
    ),
  ];
  for (const path of candidates) {
    try {
      const info = await Deno.stat(path);
      if (!info.isFile || ((info.mode ?? 0o755) & 0o111) === 0) continue;
    } catch {
      continue;
    }
    try {
      const out = await new Deno.Command(path, {
        args: ["-v"],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(5_000),
      }).output();
      const version = decoder.decode(out.stdout).split("\n")[0]!.trim();
      if (out.success) return { path, version };
      return { reason: `${path} -v failed with exit code ${out.code}` };
    } catch (error) {
      return { reason: `${path} cannot run: ${String(error)}` };
    }
  }
  return {
    reason: named !== undefined
      ? `haproxy not found at EVTHREAD_HAPROXY=${named}`
      : "haproxy not found",
  };
}

const haproxy = await findHaproxy();
if ("reason" in haproxy) {
  console.log(
    `${haproxy.reason}: skipping the HAProxy tests (install the Debian package haproxy)`,
  );
}

/**
 * A child process: stdout read line by line, stderr collected, stdin either
 * fed once and closed or held open until disposal. Disposal closes stdin,
 * sends SIGTERM (SIGKILL after the safety timeout) and waits for the end of
 * the process and of its pipes.
 */
class Child implements AsyncDisposable {
  readonly name: string;
  readonly lines: string[] = [];
  stderr = "";
  #child: Deno.ChildProcess;
  #status: Promise<Deno.CommandStatus>;
  #code: number | undefined;
  #stdin: WritableStreamDefaultWriter<Uint8Array>;
  #stdinDone: Promise<void>;
  #stdoutDone: Promise<void>;
  #stderrDone: Promise<void>;
  #ended = false;
  #waiters = new Set<() => void>();

  constructor(name: string, cmd: string, args: string[], stdin?: string) {
    this.name = name;
    this.#child = new Deno.Command(cmd, {
      args,
      cwd: ROOT,
      env: { NO_COLOR: "1" },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#status = this.#child.status.then((status) => {
      this.#code = status.code;
      return status;
    });
    this.#stdin = this.#child.stdin.getWriter();
    this.#stdinDone = stdin === undefined
      ? Promise.resolve()
      : this.#feed(stdin);
    this.#stdoutDone = this.#readLines();
    this.#stderrDone = this.#readStderr();
  }

  get exited(): boolean {
    return this.#code !== undefined;
  }

  async #feed(text: string): Promise<void> {
    try {
      await this.#stdin.write(encoder.encode(text));
      await this.#stdin.close();
    } catch {
      // The process exited without reading it all: its stderr says why.
    }
  }

  async #readLines(): Promise<void> {
    const reader = new LineReader((line) => {
      this.lines.push(line);
      this.#wake();
    });
    try {
      await reader.read(this.#child.stdout);
    } catch {
      // The pipe broke with the process.
    } finally {
      if (reader.rest !== "") this.lines.push(reader.rest);
      this.#ended = true;
      this.#wake();
    }
  }

  #readStderr(): Promise<void> {
    return readText(this.#child.stderr, (text) => this.stderr += text);
  }

  #wake(): void {
    for (const waiter of this.#waiters) waiter();
  }

  /** The first line of stdout matching `pattern`, printed or to come. */
  line(pattern: RegExp): Promise<RegExpMatchArray> {
    let check = () => {};
    const promise = new Promise<RegExpMatchArray>((resolve, reject) => {
      check = () => {
        for (const line of this.lines) {
          const match = line.match(pattern);
          if (match !== null) return resolve(match);
        }
        if (this.#ended) {
          reject(
            new Error(`${this.name} ended its output without ${pattern}`),
          );
        }
      };
    });
    this.#waiters.add(check);
    check();
    return within(
      promise,
      `${this.name} to print a line matching ${pattern}`,
      SAFETY_MS,
    ).finally(() => this.#waiters.delete(check));
  }

  /** What the process printed, for a failure message. */
  report(): string {
    const status = this.#code === undefined
      ? "running"
      : `exit code ${this.#code}`;
    return `--- ${this.name} (${status}) stdout:\n${
      this.lines.join("\n")
    }\n--- ${this.name} stderr:\n${this.stderr}`;
  }

  #kill(signal: Deno.Signal): void {
    if (this.exited) return;
    try {
      this.#child.kill(signal);
    } catch {
      // It exited meanwhile.
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      await this.#stdin.close();
    } catch {
      // Closed already (fed, or the process is gone).
    }
    this.#kill("SIGTERM");
    try {
      await within(this.#status, `${this.name} to exit`, SAFETY_MS);
    } catch {
      this.#kill("SIGKILL");
      await this.#status;
    }
    await Promise.all([this.#stdinDone, this.#stdoutDone, this.#stderrDone]);
  }
}

/** A back end process and its port. */
interface Backend {
  id: string;
  port: number;
  process: Child;
}

/** HAProxy in front of the back ends. */
interface Cluster {
  /** HAProxy's frontend port. */
  port: number;
  backends: Backend[];
}

/** A response read to end of stream from a `Connection: close` request. */
interface Reply {
  status: number;
  body: string;
  /** The client's own port: the one the back end should report. */
  localPort: number;
  raw: string;
}

const REQUEST = encoder.encode(
  "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
);

/** One request on a new connection, read until the server closes it. */
async function get(port: number): Promise<Reply> {
  const conn = await Deno.connect({ hostname: HOST, port });
  try {
    const localPort = conn.localAddr.port;
    await writeAll(conn, REQUEST);
    const raw = decoder.decode(await readToEnd(conn));
    const end = raw.indexOf("\r\n\r\n");
    assert(end >= 0, `no complete response head: ${JSON.stringify(raw)}`);
    const head = raw.slice(0, end);
    const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(head)?.[1] ?? NaN);
    const length = /\r\ncontent-length: *(\d+)/i.exec(head)?.[1];
    const rest = raw.slice(end + 4);
    const body = length === undefined ? rest : rest.slice(0, Number(length));
    return { status, body, localPort, raw };
  } finally {
    closeQuietly(conn);
  }
}

/**
 * Checks that a reply came from one of `ids` with the client's own address,
 * and returns the id.
 */
function checkReply(reply: Reply, ids: string[]): string {
  assertEquals(reply.status, 200, `response: ${JSON.stringify(reply.raw)}`);
  const match = /^(\S+) (\S+):(\d+)$/.exec(reply.body);
  assert(match !== null, `unexpected body: ${JSON.stringify(reply.body)}`);
  const [, id, hostname, port] = match;
  assert(ids.includes(id!), `unknown back end id ${id}`);
  assertEquals(hostname, "127.0.0.1", `address in ${reply.body}`);
  assertEquals(
    Number(port),
    reply.localPort,
    `the back end saw port ${port}, the client's own port is ${reply.localPort}`,
  );
  return id!;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

function haproxyConfig(
  port: number,
  backends: Backend[],
  sendProxy: "send-proxy" | "send-proxy-v2",
): string {
  return [
    "global",
    "  maxconn 256",
    "defaults",
    "  mode tcp",
    "  timeout connect 2s",
    "  timeout client 10s",
    "  timeout server 10s",
    "frontend fe",
    `  bind ${HOST}:${port}`,
    "  default_backend be",
    "backend be",
    "  balance roundrobin",
    // TCP health checks: connect and close, before or without the header.
    ...backends.map((b) =>
      `  server ${b.id} ${HOST}:${b.port} ${sendProxy} check inter 100ms`
    ),
    "",
  ].join("\n");
}

/**
 * Waits until a request through HAProxy gets a 200 (connects are retried
 * until HAProxy listens), failing early if HAProxy exits.
 */
async function untilServing(proxy: Child, port: number): Promise<void> {
  const start = performance.now();
  while (true) {
    if (proxy.exited) throw new Error("haproxy exited before serving");
    let conn: Deno.TcpConn | undefined;
    try {
      conn = await Deno.connect({ hostname: HOST, port });
    } catch (error) {
      if (!(error instanceof Deno.errors.ConnectionRefused)) throw error;
      if (performance.now() - start > SAFETY_MS) {
        throw new Error(`haproxy did not listen within ${SAFETY_MS} ms`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
      continue;
    }
    closeQuietly(conn);
    break;
  }
  const reply = await get(port);
  assertEquals(reply.status, 200, `first response: ${reply.raw}`);
}

/**
 * Starts two back ends and HAProxy in front of them, runs `fn`, and stops
 * everything whatever happens; a failure carries the processes' output.
 */
async function withCluster(
  sendProxy: "send-proxy" | "send-proxy-v2",
  fn: (cluster: Cluster) => Promise<void>,
): Promise<void> {
  if ("reason" in haproxy) throw new Error(haproxy.reason);
  const children: Child[] = [];
  let config = "";
  try {
    await using stack = new AsyncDisposableStack();
    const backends = await Promise.all(["b1", "b2"].map(async (id) => {
      const process = stack.use(
        new Child(id, Deno.execPath(), [
          "run",
          "--no-prompt",
          "--allow-net",
          BACKEND_SCRIPT,
          "0",
          id,
        ]),
      );
      children.push(process);
      const match = await process.line(/^listening (\d+)$/);
      return { id, port: Number(match[1]), process };
    }));
    const port = freePort();
    config = haproxyConfig(port, backends, sendProxy);
    const proxy = stack.use(
      new Child("haproxy", haproxy.path, ["-f", "/dev/stdin", "-db"], config),
    );
    children.push(proxy);
    await untilServing(proxy, port);
    await fn({ port, backends });
    for (const backend of backends) {
      assert(!backend.process.exited, `${backend.id} exited`);
      // Health checks are no errors (accepts that fail with NotConnected,
      // connections closed before any byte).
      assert(
        !backend.process.stderr.includes("acceptor on port") &&
          !backend.process.stderr.includes("ended before its PROXY header"),
        `${backend.id} reported HAProxy's health checks as errors`,
      );
    }
  } catch (error) {
    const output = children.map((child) => child.report()).join("\n");
    throw new Error(
      `${error instanceof Error ? error.stack : String(error)}\n` +
        `--- haproxy config:\n${config}${output}`,
    );
  }
}

for (
  const [sendProxy, version] of [
    ["send-proxy-v2", "send-proxy-v2"],
    ["send-proxy", "send-proxy (v1)"],
  ] as const
) {
  Deno.test({
    name:
      `serve() with proxyProtocol answers with the client's address from HAProxy's ${version} header`,
    ignore: "reason" in haproxy,
    async fn() {
      await withCluster(sendProxy, async ({ port, backends }) => {
        const ids = backends.map((b) => b.id);
        const counts = new Map<string, number>();
        for (let i = 0; i < REQUESTS; i++) {
          const id = checkReply(await get(port), ids);
          counts.set(id, (counts.get(id) ?? 0) + 1);
        }
        for (const id of ids) {
          assertGreaterOrEqual(
            counts.get(id) ?? 0,
            REQUESTS / 4,
            `requests per back end: ${JSON.stringify([...counts])}`,
          );
        }
      });
    },
  });
}

Deno.test({
  name:
    "serve() with proxyProtocol closes a direct connection without a header and keeps serving through HAProxy",
  ignore: "reason" in haproxy,
  async fn() {
    await withCluster("send-proxy-v2", async ({ port, backends }) => {
      const ids = backends.map((b) => b.id);
      for (const backend of backends) {
        const conn = await Deno.connect({ hostname: HOST, port: backend.port });
        try {
          try {
            await writeAll(conn, REQUEST);
          } catch (error) {
            // Closed before the request was all written: fine.
            if (
              !(error instanceof Deno.errors.ConnectionReset ||
                error instanceof Deno.errors.BrokenPipe)
            ) {
              throw error;
            }
          }
          const ending = await readUntilClosed(conn);
          assertEquals(
            decoder.decode(ending.bytes),
            "",
            `${backend.id} answered a connection without a header`,
          );
        } finally {
          closeQuietly(conn);
        }
        await eventually(
          () => backend.process.stderr.includes("ProxyProtocolError"),
          `${backend.id} to report a ProxyProtocolError`,
          SAFETY_MS,
        );
      }
      // Both back ends still serve, with the right addresses.
      const seen = new Set<string>();
      for (let i = 0; i < 4; i++) seen.add(checkReply(await get(port), ids));
      assertEquals([...seen].sort(), [...ids].sort());
    });
  },
});
