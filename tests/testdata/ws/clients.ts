// Copyright 2026 the @corothread/evthread authors. MIT license.
// The WebSocket clients of tests/websocket_interop_test.ts, each a `Client`
// that opens one connection per test and exposes send / next message /
// close / the close event, so that the same cases run for every client:
//
// - Deno's built-in `WebSocket`, in the test's process;
// - npm:ws (`"ws"` in deno.json's imports), in the test's process, through
//   Deno's Node.js compatibility; imported dynamically, so that where it
//   cannot be loaded its cases are skipped rather than the file failing;
// - Python's `websockets` (Debian's python3-websockets, run with
//   /usr/bin/python3, or EVTHREAD_PYTHON), a child process per connection:
//   python_client.py beside this file, speaking one JSON object a line;
// - headless Chromium (Debian's chromium, or EVTHREAD_CHROMIUM), a browser
//   per connection, loading a page from the test server itself whose script
//   (chromium_client.js beside this file) opens the WebSocket, takes the
//   same commands from a long poll and posts the same events back.

import { LineReader, readText } from "../../_process.ts";
import { within, type WsServer } from "../../_websocket_client.ts";

/** A message: text or binary. */
export type Data = string | Uint8Array;

/** How a connection ended, as the client's close event tells it. */
export interface Ending {
  code: number;
  reason: string;
  wasClean: boolean;
}

/** One client connection, whatever the client. */
export interface Connection extends AsyncDisposable {
  /** The subprotocol the server selected (`""`: none). */
  readonly protocol: string;
  /** The extensions in use, as the client reports them (`""`: none). */
  readonly extensions: string;
  send(data: Data): void;
  /** The next message (binary as a Uint8Array). */
  next(): Promise<Data>;
  close(code?: number, reason?: string): void;
  /**
   * Leaves with 1001 "going away": a close with that code, or (a browser,
   * whose close() takes only 1000 and 3000-4999) by navigating away.
   */
  goAway(): void;
  /**
   * Stops using the server but for the WebSocket (a page stops polling
   * for commands), so that a shutdown need not wait for a request.
   */
  quiet(): void;
  /** The client's close event. */
  readonly closed: Promise<Ending>;
}

/** A WebSocket client, and how it differs from the others. */
export interface Client {
  name: string;
  /** Why it cannot run here, or `undefined` when it can. */
  absent: string | undefined;
  /**
   * The environment variable that, set to `1`, makes a missing client fail
   * its cases instead of skipping them (.ci/run sets it when it installed
   * the client).
   */
  requiredBy: string | undefined;
  /** What it is, when present: a version line. */
  version: string | undefined;
  /** Whether it offers permessage-deflate (which the server declines). */
  offersDeflate: boolean;
  /**
   * Whether it opens a connection when it offered subprotocols and the
   * server selected none (RFC 6455 lets it; browsers and ws refuse).
   */
  acceptsNoProtocol: boolean;
  /** Whether its connections can go away (1001): see Connection. */
  canGoAway: boolean;
  /**
   * Whether its events come through the server under test (a page's
   * POSTs), so that none arrives once the server has shut down.
   */
  reportsThroughServer: boolean;
  /** Opens a connection to `server` and waits for its open event. */
  open(server: WsServer, protocols?: string[]): Promise<Connection>;
}

/** The most a message, or a process's start, may take. */
const SAFETY_MS = 30_000;
const ROOT = new URL("../../../", import.meta.url).pathname;
const decoder = new TextDecoder();
const encoder = new TextEncoder();

function envVar(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}

/**
 * What one connection of any client has reported: it opens, gets messages,
 * may see errors, and closes once.
 */
class Reports {
  protocol = "";
  extensions = "";
  readonly errors: string[] = [];
  readonly opened: Promise<void>;
  readonly closed: Promise<Ending>;
  #opened!: () => void;
  #failed!: (error: Error) => void;
  #closed!: (ending: Ending) => void;
  #ending: Ending | undefined;
  #inbox: Data[] = [];
  #waiting: { resolve: (data: Data) => void; reject: (e: Error) => void }[] =
    [];

  constructor(readonly name: string) {
    this.opened = new Promise((resolve, reject) => {
      this.#opened = resolve;
      this.#failed = reject;
    });
    this.opened.catch(() => {});
    this.closed = new Promise((resolve) => this.#closed = resolve);
  }

  /** Whether the close event (or the client's end) came. */
  get ended(): boolean {
    return this.#ending !== undefined;
  }

  open(protocol: string, extensions: string): void {
    this.protocol = protocol;
    this.extensions = extensions;
    this.#opened();
  }

  message(data: Data): void {
    const waiter = this.#waiting.shift();
    if (waiter !== undefined) waiter.resolve(data);
    else this.#inbox.push(data);
  }

  error(message: string): void {
    this.errors.push(message);
  }

  /** The client's close event; or its end (a process exiting) without one. */
  close(ending: Ending): void {
    if (this.#ending !== undefined) return;
    this.#ending = ending;
    this.#failed(
      new Error(
        `${this.name} did not open: ${
          this.errors.join("; ") || "no error reported"
        } (close ${ending.code} ${JSON.stringify(ending.reason)})`,
      ),
    );
    this.#closed(ending);
    for (const waiter of this.#waiting.splice(0)) {
      waiter.reject(this.#endedError());
    }
  }

  #endedError(): Error {
    return new Error(
      `${this.name} closed (${this.#ending?.code} ${
        JSON.stringify(this.#ending?.reason)
      }) before the message awaited; errors: ${this.errors.join("; ")}`,
    );
  }

  next(): Promise<Data> {
    if (this.#inbox.length > 0) return Promise.resolve(this.#inbox.shift()!);
    if (this.#ending !== undefined) return Promise.reject(this.#endedError());
    return within(
      new Promise<Data>((resolve, reject) => {
        this.#waiting.push({ resolve, reject });
      }),
      `a message to ${this.name}`,
      SAFETY_MS,
    );
  }
}

// --- Clients with the browser's WebSocket API: Deno's, and npm:ws --------

/** The part of the WebSocket API that Deno's client and ws's share. */
interface WebSocketLike {
  binaryType: string;
  readonly protocol: string;
  readonly extensions: string;
  onopen: ((event: Event) => void) | null;
  onmessage: ((event: MessageEvent) => void) | null;
  onerror: ((event: Event) => void) | null;
  onclose: ((event: CloseEvent) => void) | null;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
}

/** Wraps a WebSocket-like client that is connecting. */
async function webSocketConnection(
  name: string,
  ws: WebSocketLike,
): Promise<Connection> {
  const reports = new Reports(name);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => reports.open(ws.protocol, ws.extensions);
  ws.onmessage = (event) => {
    reports.message(
      typeof event.data === "string"
        ? event.data
        : new Uint8Array(event.data as ArrayBuffer),
    );
  };
  ws.onerror = (event) =>
    reports.error(
      String((event as ErrorEvent).message ?? (event as ErrorEvent).error),
    );
  ws.onclose = (event) =>
    reports.close({
      code: event.code,
      reason: event.reason,
      wasClean: event.wasClean,
    });
  try {
    await within(reports.opened, `${name} to open`, SAFETY_MS);
  } catch (error) {
    if (!reports.ended) {
      ws.close();
      await within(reports.closed, `${name} to give up`, SAFETY_MS);
    }
    throw error;
  }
  return {
    get protocol() {
      return reports.protocol;
    },
    get extensions() {
      return reports.extensions;
    },
    send: (data) => ws.send(data),
    next: () => reports.next(),
    close: (code, reason) => ws.close(code, reason),
    goAway: () => ws.close(1001, "going away"),
    quiet: () => {},
    closed: reports.closed,
    async [Symbol.asyncDispose]() {
      // A test that failed midway leaves the connection open.
      try {
        ws.close(1000);
      } catch {
        // Closing or closed.
      }
      await within(reports.closed, `${name} to close`, SAFETY_MS);
    },
  };
}

/** Deno's built-in WebSocket. */
export const denoClient: Client = {
  name: "Deno WebSocket",
  absent: undefined,
  requiredBy: undefined,
  version: `Deno ${Deno.version.deno}`,
  offersDeflate: false,
  acceptsNoProtocol: true,
  canGoAway: false, // close() takes only 1000 and 3000-4999
  reportsThroughServer: false,
  open(server, protocols) {
    return webSocketConnection(
      this.name,
      new WebSocket(`ws://127.0.0.1:${server.port}/`, protocols),
    );
  },
};

/** ws's client, as far as these tests use it. */
type NodeWsClass = new (
  url: string,
  protocols?: string[],
) => WebSocketLike;

/** Imports npm:ws, or says why not (an import the type check does not need). */
async function importWs(): Promise<NodeWsClass | string> {
  try {
    const module = await import("ws");
    return module.default as unknown as NodeWsClass;
  } catch (error) {
    const why = String(error).split("\n")[0];
    return error instanceof Deno.errors.NotCapable
      ? `npm:ws cannot be imported (${why})`
      : `npm:ws cannot be imported (${why}); run \`deno install\` with the npm registry reachable`;
  }
}

const NodeWs = await importWs();

/** npm:ws's client, in this process. */
const wsClient: Client = {
  name: "npm:ws",
  absent: typeof NodeWs === "string" ? NodeWs : undefined,
  requiredBy: "EVTHREAD_REQUIRE_NPM_WS",
  version: undefined,
  offersDeflate: true,
  acceptsNoProtocol: false, // "Server sent no subprotocol"
  canGoAway: true,
  reportsThroughServer: false,
  open(server, protocols) {
    if (typeof NodeWs === "string") return Promise.reject(new Error(NodeWs));
    return webSocketConnection(
      this.name,
      new NodeWs(`ws://127.0.0.1:${server.port}/`, protocols),
    );
  },
};

// --- Clients driven by JSON commands: Python's websockets, Chromium ------

/** A command to a driven client, as tests/testdata/ws/*_client.* read them. */
type Command =
  | { send: { text: string } | { binary: string } }
  | { close: [number | null, string | null] }
  | { leave: true }
  | { end: true };

/** An event from a driven client. */
type ClientEvent =
  | { open: { protocol: string; extensions: string } }
  | { message: { text: string } | { binary: string } }
  | { closed: Ending }
  | { error: string };

function sendCommand(data: Data): Command {
  return {
    send: typeof data === "string"
      ? { text: data }
      : { binary: data.toBase64() },
  };
}

function deliver(reports: Reports, event: ClientEvent): void {
  if ("open" in event) {
    reports.open(event.open.protocol, event.open.extensions);
  } else if ("message" in event) {
    const m = event.message;
    reports.message("text" in m ? m.text : Uint8Array.fromBase64(m.binary));
  } else if ("closed" in event) {
    reports.close(event.closed);
  } else if ("error" in event) {
    reports.error(event.error);
  }
}

/** A connection whose client takes commands and reports events. */
function drivenConnection(
  reports: Reports,
  command: (command: Command) => void,
  goAway: Command,
  dispose: () => Promise<void>,
  quiet: () => void = () => {},
): Connection {
  return {
    get protocol() {
      return reports.protocol;
    },
    get extensions() {
      return reports.extensions;
    },
    send: (data) => command(sendCommand(data)),
    next: () => reports.next(),
    close: (code, reason) => command({ close: [code ?? null, reason ?? null] }),
    goAway: () => command(goAway),
    quiet,
    closed: reports.closed,
    [Symbol.asyncDispose]: dispose,
  };
}

/**
 * A client process: JSON commands to its stdin, one a line; JSON events
 * from its stdout. Disposal closes stdin (the client then closes its
 * connection and exits), and kills it if it outlives the safety timeout.
 */
class ClientProcess implements AsyncDisposable {
  stderr = "";
  #child: Deno.ChildProcess;
  #status: Promise<Deno.CommandStatus>;
  #exited = false;
  #stdin: WritableStreamDefaultWriter<Uint8Array>;
  #writing: Promise<void> = Promise.resolve();
  #stdoutDone: Promise<void>;
  #stderrDone: Promise<void>;

  constructor(
    readonly reports: Reports,
    command: string,
    args: string[],
  ) {
    this.#child = new Deno.Command(command, {
      args,
      cwd: ROOT,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#status = this.#child.status.then((status) => {
      this.#exited = true;
      return status;
    });
    this.#stdin = this.#child.stdin.getWriter();
    this.#stdoutDone = this.#readEvents();
    this.#stderrDone = this.#readStderr();
  }

  command(command: Command): void {
    const line = encoder.encode(JSON.stringify(command) + "\n");
    this.#writing = this.#writing.then(() => this.#stdin.write(line)).catch(
      (error) => this.reports.error(`writing a command: ${error}`),
    );
  }

  async #readEvents(): Promise<void> {
    try {
      await new LineReader((line) => deliver(this.reports, JSON.parse(line)))
        .read(this.#child.stdout);
    } catch (error) {
      this.reports.error(`reading events: ${error}`);
    }
    if (this.reports.ended) return;
    // Ended without a close event: the process failed; say how.
    await this.#stderrDone;
    this.reports.error(`exited; stderr: ${this.stderr.trim() || "(empty)"}`);
    this.reports.close({ code: 1006, reason: "", wasClean: false });
  }

  #readStderr(): Promise<void> {
    return readText(this.#child.stderr, (text) => this.stderr += text);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#writing;
    try {
      await this.#stdin.close();
    } catch {
      // The process has gone.
    }
    try {
      await within(this.#status, `${this.reports.name} to exit`, SAFETY_MS);
    } catch {
      if (!this.#exited) this.#child.kill("SIGKILL");
      await this.#status;
    }
    await Promise.all([this.#stdoutDone, this.#stderrDone]);
  }
}

/** Runs a program to check a client is there; its stdout, or why not. */
async function probe(
  command: string,
  args: string[],
): Promise<{ out: string } | { reason: string }> {
  try {
    const out = await new Deno.Command(command, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(20_000),
    }).output();
    if (out.success) return { out: decoder.decode(out.stdout).trim() };
    const why = decoder.decode(out.stderr).trim().split("\n").pop();
    return { reason: `${command} ${args.join(" ")} failed: ${why}` };
  } catch (error) {
    return { reason: `${command} cannot run: ${error}` };
  }
}

const PYTHON = envVar("EVTHREAD_PYTHON") ?? "/usr/bin/python3";
const PYTHON_CLIENT = new URL("./python_client.py", import.meta.url).pathname;
const python = await probe(PYTHON, [
  "-c",
  "import websockets; print(websockets.__version__)",
]);

/** Python's websockets, in a child process per connection. */
const pythonClient: Client = {
  name: "Python websockets",
  absent: "reason" in python
    ? python.reason.includes("No module named")
      ? `${python.reason} (install Debian's python3-websockets)`
      : python.reason
    : undefined,
  requiredBy: "EVTHREAD_REQUIRE_PYTHON_WEBSOCKETS",
  version: "out" in python
    ? `websockets ${python.out} on ${PYTHON}`
    : undefined,
  offersDeflate: true,
  acceptsNoProtocol: true,
  canGoAway: true,
  reportsThroughServer: false,
  async open(server, protocols = []) {
    const reports = new Reports(this.name);
    const child = new ClientProcess(reports, PYTHON, [
      PYTHON_CLIENT,
      `ws://127.0.0.1:${server.port}/`,
      ...protocols,
    ]);
    try {
      await within(reports.opened, `${this.name} to open`, SAFETY_MS);
    } catch (error) {
      await child[Symbol.asyncDispose]();
      throw error;
    }
    return drivenConnection(
      reports,
      (command) => child.command(command),
      { close: [1001, "going away"] },
      () => child[Symbol.asyncDispose](),
    );
  },
};

/** Where Chromium is, or why it cannot run. */
async function findChromium(): Promise<
  { path: string; version: string; page: string } | { reason: string }
> {
  // It runs a program, reads the page's script, makes a temporary profile.
  const missing = (["run", "read", "write"] as const).filter((name) =>
    Deno.permissions.querySync({ name }).state !== "granted"
  );
  if (missing.length > 0) {
    return {
      reason: `the Chromium client needs ${
        missing.map((name) => `--allow-${name}`).join(", ")
      }`,
    };
  }
  const page = await Deno.readTextFile(
    new URL("./chromium_client.js", import.meta.url),
  );
  const named = envVar("EVTHREAD_CHROMIUM");
  const candidates = named !== undefined ? [named] : (envVar("PATH") ?? "")
    .split(":").filter((dir) => dir !== "").flatMap((dir) => [
      `${dir}/chromium`,
      `${dir}/chromium-browser`,
    ]);
  for (const path of candidates) {
    try {
      if (!(await Deno.stat(path)).isFile) continue;
    } catch {
      continue;
    }
    const found = await probe(path, ["--version"]);
    return "out" in found ? { path, version: found.out, page } : found;
  }
  return {
    reason: named !== undefined
      ? `no Chromium at EVTHREAD_CHROMIUM=${named}`
      : "chromium not found on PATH (install Debian's chromium)",
  };
}

const chromium = await findChromium();
const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>evthread WebSocket interop</title>
<script type="module" src="/__interop/client.js"></script>
`;
/** The longest a long poll of the page waits for a command. */
const POLL_MS = 5_000;

/** Commands for a page, handed out by long polls. */
class PageCommands {
  #queue: Command[] = [];
  #wake: (() => void) | undefined;
  #ended = false;

  push(command: Command): void {
    this.#queue.push(command);
    this.#wake?.();
  }

  /** Ends the page's polling. */
  end(): void {
    this.#ended = true;
    this.#wake?.();
  }

  /** The commands queued, waiting up to POLL_MS for one. */
  async take(signal: AbortSignal): Promise<Command[]> {
    if (this.#queue.length === 0 && !this.#ended && !signal.aborted) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          signal.removeEventListener("abort", done);
          this.#wake = undefined;
          resolve();
        };
        const timer = setTimeout(done, POLL_MS);
        signal.addEventListener("abort", done);
        this.#wake = done;
      });
    }
    const commands = this.#queue.splice(0);
    if (this.#ended) commands.push({ end: true });
    return commands;
  }
}

/** The page and its two routes, on the test server. */
function pageRoutes(
  script: string,
  commands: PageCommands,
  reports: Reports,
): NonNullable<WsServer["pages"]> {
  return async (request) => {
    const { pathname } = new URL(request.url);
    if (pathname === "/__interop/client.html") {
      return new Response(PAGE, {
        headers: { "content-type": "text/html; charset=utf-8" },
      });
    }
    if (pathname === "/__interop/client.js") {
      return new Response(script, {
        headers: { "content-type": "text/javascript; charset=utf-8" },
      });
    }
    if (pathname === "/__interop/commands") {
      return Response.json(await commands.take(request.signal), {
        headers: { "cache-control": "no-store" },
      });
    }
    if (pathname === "/__interop/events" && request.method === "POST") {
      for (const event of await request.json() as ClientEvent[]) {
        deliver(reports, event);
      }
      return new Response(null, { status: 204 });
    }
    return new Response("not found", { status: 404 });
  };
}

/**
 * Headless Chromium on one page, in a temporary profile. Disposal kills it
 * (SIGTERM, then SIGKILL), awaits its exit and removes the profile.
 */
class Browser implements AsyncDisposable {
  stderr = "";
  #child: Deno.ChildProcess;
  #status: Promise<Deno.CommandStatus>;
  #exited = false;
  #stderrDone: Promise<void>;
  #profile: string;

  constructor(path: string, url: string) {
    this.#profile = Deno.makeTempDirSync({ prefix: "evthread-chromium-" });
    this.#child = new Deno.Command(path, {
      args: [
        "--headless=new",
        "--no-sandbox", // runs as root in CI
        `--user-data-dir=${this.#profile}`,
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-gpu",
        "--disable-quic",
        "--disable-dev-shm-usage",
        url,
      ],
      // Chromium's crash reporter and caches write under these: keep all
      // of it in the temporary profile.
      env: {
        XDG_CONFIG_HOME: this.#profile,
        XDG_CACHE_HOME: this.#profile,
      },
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    this.#status = this.#child.status.then((status) => {
      this.#exited = true;
      return status;
    });
    this.#stderrDone = this.#readStderr();
  }

  #readStderr(): Promise<void> {
    return readText(this.#child.stderr, (text) => this.stderr += text);
  }

  /** Settles when the browser exits: it should not before disposal. */
  get exited(): Promise<Deno.CommandStatus> {
    return this.#status;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      if (!this.#exited) this.#child.kill("SIGTERM");
      try {
        await within(this.#status, "Chromium to exit", 10_000);
      } catch {
        if (!this.#exited) this.#child.kill("SIGKILL");
        await this.#status;
      }
      await this.#stderrDone;
    } finally {
      await Deno.remove(this.#profile, { recursive: true }).catch(() => {});
    }
  }
}

/** Headless Chromium: a browser per connection, on a page of the server. */
const chromiumClient: Client = {
  name: "Chromium",
  absent: "reason" in chromium ? chromium.reason : undefined,
  requiredBy: "EVTHREAD_REQUIRE_CHROMIUM",
  version: "version" in chromium ? chromium.version : undefined,
  offersDeflate: true,
  acceptsNoProtocol: false, // "Sent non-empty 'Sec-WebSocket-Protocol' ..."
  canGoAway: true,
  reportsThroughServer: true,
  async open(server, protocols = []) {
    if ("reason" in chromium) throw new Error(chromium.reason);
    const reports = new Reports(this.name);
    const commands = new PageCommands();
    server.pages = pageRoutes(chromium.page, commands, reports);
    const query = protocols.map((p) => `protocol=${encodeURIComponent(p)}`)
      .join("&");
    const browser = new Browser(
      chromium.path,
      `http://127.0.0.1:${server.port}/__interop/client.html?${query}`,
    );
    const dispose = async () => {
      commands.end();
      await browser[Symbol.asyncDispose]();
    };
    try {
      await within(
        Promise.race([
          reports.opened,
          browser.exited.then((status) => {
            throw new Error(`Chromium exited (code ${status.code})`);
          }),
        ]),
        `${this.name} to open`,
        SAFETY_MS,
      );
    } catch (error) {
      await dispose();
      throw new Error(
        `${error}\n--- Chromium stderr:\n${browser.stderr.slice(-4000)}`,
      );
    }
    return drivenConnection(
      reports,
      (c) => commands.push(c),
      { leave: true },
      dispose,
      () => commands.end(),
    );
  },
};

/** Every client, in the order their cases run. */
export const CLIENTS: Client[] = [
  denoClient,
  wsClient,
  pythonClient,
  chromiumClient,
];
