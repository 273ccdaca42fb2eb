// Copyright 2026 the @corothread/evthread authors. MIT license.
// Streamed responses that start and stop as Deno.serve's do: the head of a
// stream goes out without waiting for a late first piece (and with the
// first piece, in one write, when it is there at once); a client that goes
// away, or half-closes, cancels the body stream at once and resolves
// `info.completed`; a used or locked body gets a clear error. Where Deno.serve
// is the reference, the same test runs on both servers.

import {
  assertEquals,
  assertInstanceOf,
  assertStringIncludes,
} from "@std/assert";
import { HOST, startServer, within } from "./_http_helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A raw client connection: writes bytes, reads what comes. */
class Client implements AsyncDisposable {
  readonly conn: Deno.TcpConn;
  #text = "";
  #closed = false;

  constructor(conn: Deno.TcpConn) {
    this.conn = conn;
  }

  static async connect(port: number): Promise<Client> {
    return new Client(await Deno.connect({ hostname: HOST, port }));
  }

  async send(text: string): Promise<void> {
    const bytes = encoder.encode(text);
    let off = 0;
    while (off < bytes.byteLength) {
      off += await this.conn.write(bytes.subarray(off));
    }
  }

  /**
   * Reads until the text received so far includes `what` (`times` times);
   * returns it all.
   */
  async until(what: string, times = 1): Promise<string> {
    const buf = new Uint8Array(4096);
    while (this.#text.split(what).length <= times) {
      const n = await this.conn.read(buf);
      if (n === null) {
        throw new Error(`EOF before ${JSON.stringify(what)}: ${this.#text}`);
      }
      this.#text += decoder.decode(buf.subarray(0, n));
    }
    return this.#text;
  }

  /** Reads until the server ends the connection; what came after `until`. */
  async toEnd(): Promise<string> {
    const buf = new Uint8Array(4096);
    const start = this.#text.length;
    try {
      while (true) {
        const n = await this.conn.read(buf);
        if (n === null) break;
        this.#text += decoder.decode(buf.subarray(0, n));
      }
    } catch (error) {
      if (!(error instanceof Deno.errors.ConnectionReset)) throw error;
    }
    return this.#text.slice(start);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.conn.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }
}

const GET = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

// ---------------------------------------------------------------------------
// Bodies that cannot be sent.

for (
  const [what, make, message] of [
    ["already read", async () => {
      const response = new Response("x");
      await response.text();
      return response;
    }, "The response body was already read (bodyUsed)"],
    ["locked", () => {
      const response = new Response("x");
      response.body!.getReader();
      return Promise.resolve(response);
    }, "The response body is locked: a reader was taken from it"],
  ] as const
) {
  Deno.test(`serve() answers 500 and tells onError when the body was ${what}`, async () => {
    const errors: unknown[] = [];
    await using server = startServer({
      onError(error) {
        errors.push(error);
        return new Response("failed", { status: 500 });
      },
    }, make);
    await using client = await Client.connect(server.addr.port);
    await client.send(GET);
    const response = await within(client.until("failed"), "the response");
    assertStringIncludes(response, "HTTP/1.1 500 Internal Server Error\r\n");
    assertEquals(errors.length, 1);
    assertInstanceOf(errors[0], TypeError);
    assertEquals((errors[0] as TypeError).message, message);
  });
}
