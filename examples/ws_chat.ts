// Copyright 2026 the @corothread/evthread authors. MIT license.

/**
 * A WebSocket chat room with `@corothread/evthread/http`: every text
 * message a client sends goes to every other client, as `NAME: TEXT`; joins
 * and departures are announced as `* NAME joined` / `* NAME left`. Each
 * client is one task running straight-line code (`receive()` in a loop).
 *
 * ```sh
 * deno run --allow-net examples/ws_chat.ts [PORT] [--hostname HOST]
 *   [--idle-timeout SECONDS] [--send-timeout SECONDS]
 * ```
 *
 * - `PORT`: the port to listen on, default 8090; `0` picks a free one.
 * - `--hostname HOST`: the address to listen on, default `127.0.0.1`.
 * - `--idle-timeout SECONDS`: a client that sends nothing for this long is
 *   dropped (close 1000 "idle"), default 300.
 * - `--send-timeout SECONDS`: how long a client may take to accept each
 *   message of the room, default 5. A client that does not keep up (or has
 *   more than 1 MiB waiting) is dropped (close 1008 "too slow") rather than
 *   stall the room or grow the server's memory: a message goes to every
 *   other client without waiting for any of them.
 *
 * `GET /` serves a small chat page; `GET /ws` is the WebSocket (426
 * without an upgrade); anything else is 404. Messages are text of at most
 * 4 KiB (binary: close 1003; longer: 1009). Dead connections are found by
 * the WebSocket's own idle ping (`idleTimeout: 30`).
 *
 * Prints `chat listening on http://HOST:PORT/` once it accepts connections,
 * and a line per join, departure and drop. On SIGINT (Ctrl-C) or SIGTERM it
 * closes every client with 1001 "going away" (the loop's drain), waits up
 * to 5 seconds for their closing handshakes, prints its counters and exits
 * 0; a second signal kills it at once. Bad arguments print the usage and
 * exit 2.
 *
 * Try it with a browser at http://127.0.0.1:8090/, or
 * `deno eval "const ws = new WebSocket('ws://127.0.0.1:8090/ws'); ws.onmessage = (e) => console.log(e.data); ws.onopen = () => ws.send('hi')"`.
 *
 * @module
 */

import { EvLoop } from "../mod.ts";
import {
  type EvWebSocket,
  serve,
  upgradeWebSocket,
  WebSocketHandshakeError,
} from "../http.ts";

const USAGE =
  "usage: deno run --allow-net examples/ws_chat.ts [PORT] [--hostname HOST] [--idle-timeout SECONDS] [--send-timeout SECONDS]";
/** The longest message, in bytes. */
const MAX_MESSAGE = 4096;
/** A client with more than this many bytes waiting is dropped. */
const MAX_QUEUED = 1_048_576;
/** How long the drain waits for closing handshakes. */
const GRACE = 5000;

const PAGE = `<!doctype html>
<meta charset="utf-8"><title>chat</title>
<pre id="log" style="height:20em;overflow:auto;border:1px solid #ccc"></pre>
<form id="form"><input id="text" autocomplete="off" size="60"> <button>send</button></form>
<script>
const log = document.getElementById("log");
const show = (line) => { log.textContent += line + "\\n"; log.scrollTop = log.scrollHeight; };
const ws = new WebSocket(location.origin.replace(/^http/, "ws") + "/ws");
ws.onmessage = (event) => show(event.data);
ws.onclose = (event) => show("* disconnected (" + event.code + " " + event.reason + ")");
document.getElementById("form").onsubmit = (event) => {
  event.preventDefault();
  const input = document.getElementById("text");
  if (input.value !== "") { ws.send(input.value); show("me: " + input.value); input.value = ""; }
};
</script>
`;

function usage(message: string): never {
  console.error(`ws_chat: ${message}`);
  console.error(USAGE);
  Deno.exit(2);
}

/** A positive number of seconds, as milliseconds. */
function seconds(flag: string, value: string | undefined): number {
  if (
    value === undefined || !/^\d+(\.\d+)?$/.test(value) || !(Number(value) > 0)
  ) {
    usage(
      `${flag} must be a positive number of seconds: received ${
        JSON.stringify(value ?? "")
      }`,
    );
  }
  return Number(value) * 1000;
}

interface Options {
  hostname: string;
  port: number;
  idleMs: number;
  sendMs: number;
}

function parseArgs(args: string[]): Options {
  const options: Options = {
    hostname: "127.0.0.1",
    port: 8090,
    idleMs: 300_000,
    sendMs: 5000,
  };
  let port: number | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const [flag, inline] = arg.startsWith("--") && arg.includes("=")
      ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)]
      : [arg, undefined];
    const value = () => inline ?? args[++i];
    if (flag === "-h" || flag === "--help") {
      console.log(USAGE);
      Deno.exit(0);
    } else if (flag === "--hostname") {
      const host = value();
      if (host === undefined || host === "") usage("--hostname needs a value");
      options.hostname = host;
    } else if (flag === "--idle-timeout") {
      options.idleMs = seconds(flag, value());
    } else if (flag === "--send-timeout") {
      options.sendMs = seconds(flag, value());
    } else if (port === undefined && /^\d{1,5}$/.test(arg)) {
      port = Number(arg);
      if (port > 65_535) usage(`PORT must be 0 to 65535: received ${arg}`);
    } else {
      usage(`unexpected argument: ${JSON.stringify(arg)}`);
    }
  }
  if (port !== undefined) options.port = port;
  return options;
}

const options = parseArgs(Deno.args);

/** A client in the room. */
interface Member {
  name: string;
  socket: EvWebSocket;
}

const room = new Set<Member>();
let joined = 0;
let messages = 0;
let dropped = 0;

/** Drops a client that cannot keep up; a no-op once it is closing. */
function drop(member: Member, why: string, code: number): void {
  if (member.socket.readyState !== member.socket.OPEN) return;
  dropped++;
  console.log(`${member.name} dropped: ${why}`);
  member.socket.close(code, why);
}

/**
 * Sends `text` to everyone but `from`, without waiting for anyone: each
 * write has the send timeout; a client that misses it, or has too much
 * waiting already, is dropped.
 */
function broadcast(text: string, from?: Member): void {
  for (const member of room) {
    if (member === from) continue;
    if (member.socket.bufferedAmount > MAX_QUEUED) {
      drop(member, "too slow", 1008);
      continue;
    }
    member.socket.write(text, { timeout: options.sendMs }).catch(() =>
      drop(member, "too slow", 1008)
    );
  }
}

/** One client's session: straight-line, in the connection's task. */
async function session(socket: EvWebSocket): Promise<void> {
  const member: Member = { name: `guest-${++joined}`, socket };
  // The first receive() switches the socket to pull mode before it opens.
  const first = socket.receive({ timeout: options.idleMs });
  room.add(member);
  console.log(`${member.name} joined`);
  broadcast(`* ${member.name} joined`, member);
  try {
    let next: Promise<string | Uint8Array | null> = first;
    while (true) {
      let message: string | Uint8Array | null;
      try {
        message = await next;
      } catch (error) {
        if (error instanceof DOMException && error.name === "TimeoutError") {
          drop(member, "idle", 1000);
          break;
        }
        throw error;
      }
      if (message === null) break; // closed (by the client, a drop, a drain)
      if (typeof message !== "string") {
        drop(member, "text only", 1003);
        break;
      }
      messages++;
      broadcast(`${member.name}: ${message}`, member);
      next = socket.receive({ timeout: options.idleMs });
    }
  } finally {
    room.delete(member);
    console.log(`${member.name} left`);
    broadcast(`* ${member.name} left`);
  }
}

const loop = new EvLoop({ capacity: 1000 });
let listening: Deno.NetAddr;
try {
  const server = serve({
    loop,
    hostname: options.hostname,
    port: options.port,
    onListen() {},
  }, (request) => {
    const { pathname } = new URL(request.url);
    if (pathname === "/" && request.method === "GET") {
      return new Response(PAGE, {
        headers: { "content-type": "text/html; charset=utf-8" },
      });
    }
    if (pathname !== "/ws") return new Response("Not Found\n", { status: 404 });
    try {
      const { socket, response } = upgradeWebSocket(request, {
        idleTimeout: 30,
        maxMessageBytes: MAX_MESSAGE,
        closeTimeout: 2000,
      });
      session(socket).catch((error) => console.error("ws_chat:", error));
      return response;
    } catch (error) {
      if (!(error instanceof WebSocketHandshakeError)) throw error;
      const status =
        error.status === 400 && request.headers.get("upgrade") === null
          ? 426
          : error.status;
      return new Response(`${error.message}\n`, {
        status,
        headers: status === 426
          ? { upgrade: "websocket", "sec-websocket-version": "13" }
          : error.headers,
      });
    }
  });
  listening = server.addr;
} catch (error) {
  console.error(
    `ws_chat: cannot listen on ${options.hostname}:${options.port}: ${
      error instanceof Error ? error.message : error
    }`,
  );
  Deno.exit(1);
}

const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
function onSignal(): void {
  // Removed at once, so that a second signal kills the process.
  for (const signal of signals) Deno.removeSignalListener(signal, onSignal);
  console.log(`closing ${room.size} clients (up to ${GRACE} ms) ...`);
  loop.shutdown({ grace: GRACE });
}
for (const signal of signals) Deno.addSignalListener(signal, onSignal);
// Printed once the signals are handled: whoever waits for this line may
// send one.
console.log(
  `chat listening on http://${listening.hostname}:${listening.port}/`,
);

await loop.finished;
console.log(
  `chat stopped: ${joined} clients, ${messages} messages, ${dropped} dropped`,
);
