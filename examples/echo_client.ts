// Copyright 2026 the @corothread/evthread authors. MIT license.

/**
 * A client task for the echo server: it connects with a timeout, sends each
 * message and prints the echo, every call bounded by a timeout.
 *
 * ```sh
 * deno run --allow-net examples/echo_client.ts PORT [MESSAGE...] [--hostname HOST]
 * printf 'one\ntwo\n' | deno run --allow-net examples/echo_client.ts 9999
 * ```
 *
 * - `PORT`: the echo server's port (start `examples/echo_server.ts` first).
 * - `MESSAGE...`: the messages to send, one line each; with none, the lines
 *   of stdin are sent, one at a time.
 * - `--hostname HOST`: the server's address, default `127.0.0.1`. After
 *   `--`, every argument is a message.
 *
 * Each message goes out as a line and its echo is read back with
 * `readFull` (exactly as many bytes as were sent), then printed. Exits 0
 * when every echo came back, 1 with a message on stderr when the connection
 * is refused or times out, or an echo is missing or wrong.
 *
 * @module
 */

import { EvLoop } from "../mod.ts";

const USAGE =
  "usage: deno run --allow-net examples/echo_client.ts PORT [MESSAGE...] [--hostname HOST]";

const CONNECT_TIMEOUT = 3000;
const ECHO_TIMEOUT = 3000;

function usage(message: string): never {
  console.error(`echo_client: ${message}`);
  console.error(USAGE);
  Deno.exit(2);
}

function parseArgs(
  args: string[],
): { hostname: string; port: number; messages: string[] } {
  let hostname = "127.0.0.1";
  let port: number | undefined;
  const messages: string[] = [];
  let options = true;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (options && arg === "--") {
      options = false;
    } else if (options && (arg === "-h" || arg === "--help")) {
      console.log(USAGE);
      Deno.exit(0);
    } else if (options && arg === "--hostname") {
      const value = args[++i];
      if (value === undefined || value === "") {
        usage("--hostname needs a value");
      }
      hostname = value;
    } else if (options && arg.startsWith("--hostname=")) {
      hostname = arg.slice("--hostname=".length);
      if (hostname === "") usage("--hostname needs a value");
    } else if (port === undefined) {
      port = /^\d{1,5}$/.test(arg) ? Number(arg) : NaN;
      if (!(port >= 1 && port <= 65_535)) {
        usage(`PORT must be 1 to 65535: received ${JSON.stringify(arg)}`);
      }
    } else {
      messages.push(arg);
    }
  }
  if (port === undefined) usage("PORT is missing");
  return { hostname, port, messages };
}

/** The lines of stdin, without their line endings. */
async function* stdinLines(): AsyncGenerator<string> {
  let rest = "";
  for await (
    const text of Deno.stdin.readable.pipeThrough(new TextDecoderStream())
  ) {
    rest += text;
    let eol;
    while ((eol = rest.indexOf("\n")) >= 0) {
      yield rest.slice(0, eol).replace(/\r$/, "");
      rest = rest.slice(eol + 1);
    }
  }
  if (rest !== "") yield rest;
}

const { hostname, port, messages } = parseArgs(Deno.args);
const encoder = new TextEncoder();
const decoder = new TextDecoder();

// The task's error is reported below, from its result; no need for the
// loop's default report on stderr as well.
const loop = new EvLoop({ capacity: 1, onError: () => {} });

const client = loop.spawn(async (thread) => {
  const socket = await thread.connect({ hostname, port }, {
    timeout: CONNECT_TIMEOUT,
  });
  socket.setNoDelay(true);
  let count = 0;
  for await (const message of messages.length > 0 ? messages : stdinLines()) {
    const bytes = encoder.encode(`${message}\n`);
    await socket.send(bytes, { timeout: ECHO_TIMEOUT });
    const echo = await socket.readFull(new Uint8Array(bytes.byteLength), {
      timeout: ECHO_TIMEOUT,
    });
    if (echo === null) {
      throw new Error("the server closed the connection before echoing");
    }
    const text = decoder.decode(echo);
    if (text !== `${message}\n`) {
      throw new Error(
        `wrong echo: sent ${JSON.stringify(message)}, got ${
          JSON.stringify(text)
        }`,
      );
    }
    console.log(text.slice(0, -1));
    count++;
  }
  // Tell the server we are done; it ends the connection in turn.
  await socket.closeWrite({ timeout: ECHO_TIMEOUT });
  return count;
});

try {
  await client.result;
} catch (error) {
  const where = `${hostname}:${port}`;
  let message;
  if (error instanceof Deno.errors.ConnectionRefused) {
    message = `connection refused by ${where}: is the echo server running?`;
  } else if (error instanceof DOMException && error.name === "TimeoutError") {
    message = `timed out talking to ${where}: ${error.message}`;
  } else {
    message = `failed talking to ${where}: ${
      error instanceof Error ? `${error.name}: ${error.message}` : error
    }`;
  }
  console.error(`echo_client: ${message}`);
  Deno.exitCode = 1;
} finally {
  await loop.shutdown({ grace: 0 });
}
