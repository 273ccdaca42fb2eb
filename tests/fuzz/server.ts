// Copyright 2026 the @corothread/evthread authors. MIT license.
// The server under test: a live serve() on loopback with a handler that
// digests every body and records what it got, and the end-of-run checks.

import { type HttpServer, serve } from "../../http.ts";
import { EvLoop } from "../../mod.ts";
import { eventually, UnhandledRejectionSpy } from "../_helpers.ts";
import { digestOf, escape, toText } from "./util.ts";
import { parseResponses, sendBytes } from "./wire.ts";

/** The limits the fuzzed server runs with. */
export const FUZZ_LIMITS = {
  headerTimeout: 2000,
  idleTimeout: 500,
  bodyTimeout: 2000,
  sendTimeout: 2000,
  maxBodyBytes: 65_536,
  maxHeaderBytes: 16_384,
  maxUrlBytes: 4096,
  maxHeaderFields: 64,
} as const;

/**
 * How long a case may take before it counts as a hang: the longest the
 * server may legitimately wait (a head begun after the idle timeout, 500 +
 * 2000 ms) with room to spare.
 */
export const SAFETY_NET_MS = 5000;

/** What the handler throws on purpose (a target of `/throw`). */
export class FuzzHandlerError extends Error {
  constructor(id: string) {
    super(`The fuzz handler throws for ${id}`);
    this.name = "FuzzHandlerError";
  }
}

/** Something the handler could not do with a request the server passed. */
export interface HandlerProblem {
  id: string;
  method: string;
  url: string;
  error: unknown;
}

/**
 * A live `serve()` on loopback with {@linkcode FUZZ_LIMITS}, a loop of its
 * own whose error reports are kept, a handler that reads each body in full
 * and answers 200 with its digest in `x-digest`, an onError that keeps
 * anything but a {@linkcode FuzzHandlerError}, and an unhandled-rejection
 * spy.
 */
export class FuzzServer implements AsyncDisposable {
  readonly server: HttpServer;
  readonly loop: EvLoop;
  /** `X-Fuzz-Id`s of the requests the handler got. */
  readonly seen: Set<string> = new Set();
  /** Requests the handler could not use (request.url, headers). */
  readonly problems: HandlerProblem[] = [];
  /** onError calls with anything but a FuzzHandlerError. */
  readonly unexpected: unknown[] = [];
  /** What the loop reported to its onError hook. */
  readonly loopErrors: unknown[] = [];
  /** Handler calls. */
  handled = 0;
  #spy = new UnhandledRejectionSpy();
  #closed = false;

  constructor() {
    this.loop = new EvLoop({
      capacity: 256,
      onError: (error) => {
        this.loopErrors.push(error);
      },
    });
    this.server = serve({
      hostname: "127.0.0.1",
      port: 0,
      onListen() {},
      loop: this.loop,
      ...FUZZ_LIMITS,
      onError: (error) => {
        if (!(error instanceof FuzzHandlerError)) this.unexpected.push(error);
        return new Response(null, {
          status: 500,
          headers: { "x-fuzz": "on-error" },
        });
      },
    }, async (request) => {
      this.handled++;
      const id = request.headers.get("x-fuzz-id") ?? "";
      this.seen.add(id);
      let url: URL;
      try {
        url = new URL(request.url);
        for (const _ of request.headers);
      } catch (error) {
        this.problems.push({
          id,
          method: request.method,
          url: request.url,
          error,
        });
        return new Response(null, {
          status: 500,
          headers: { "x-fuzz": "bad-request-object" },
        });
      }
      const body = toText(new Uint8Array(await request.arrayBuffer()));
      if (url.pathname === "/throw") throw new FuzzHandlerError(id);
      return new Response(null, { headers: { "x-digest": digestOf(body) } });
    });
  }

  /** The port it listens on. */
  get port(): number {
    return this.server.addr.port;
  }

  /**
   * The end-of-run checks: a plain request still gets 200, the loop has no
   * task left once the clients are gone, nothing reached onError or the
   * loop's error hook unexpectedly, no rejection went unhandled.
   *
   * @returns the failures, as messages (empty when all is well).
   */
  async finish(): Promise<string[]> {
    const failures: string[] = [];
    const plain = "GET /final HTTP/1.1\r\nHost: example.com\r\n" +
      "X-Fuzz-Id: final\r\nConnection: close\r\n\r\n";
    const exchange = await sendBytes(this.port, plain, {
      pieces: [plain.length],
      pauses: undefined,
      holdOpen: false,
      safetyMs: SAFETY_NET_MS,
    });
    const parsed = parseResponses(exchange.bytes, false);
    const first = parsed.responses[0];
    if (
      parsed.error !== undefined || parsed.responses.length !== 1 ||
      first?.status !== 200 || first.fields.get("x-digest") !== digestOf("")
    ) {
      failures.push(
        `a plain request after the run did not get 200: ${
          escape(toText(exchange.bytes))
        } (${exchange.end})`,
      );
    }
    try {
      await eventually(
        () => this.loop.stats.active === 0,
        "the loop to have no task left",
        5000,
      );
    } catch {
      failures.push(
        `the loop still has ${this.loop.stats.active} task(s) 5 s after the last client left`,
      );
    }
    for (const p of this.problems) failures.push(describeProblem(p));
    for (const e of this.unexpected) {
      failures.push(`onError got an unexpected error: ${errorText(e)}`);
    }
    for (const e of this.loopErrors) {
      failures.push(`the loop reported an error: ${errorText(e)}`);
    }
    await this.#spy.flush();
    for (const reason of this.#spy.reasons) {
      failures.push(`an unhandled rejection: ${errorText(reason)}`);
    }
    return failures;
  }

  /** Shuts the server and its loop down. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await this.server.shutdown({ grace: 1000 });
      await this.loop.shutdown({ grace: 0 });
    } finally {
      this.#spy[Symbol.dispose]();
    }
  }
}

export function errorText(error: unknown): string {
  if (error instanceof Error) {
    return `${error.name}: ${error.message}${
      error.stack ? `\n${error.stack.split("\n").slice(1, 4).join("\n")}` : ""
    }`;
  }
  return String(error);
}

export function describeProblem(p: HandlerProblem): string {
  const known = p.error instanceof TypeError &&
      p.error.message.startsWith("Invalid URL")
    ? " [known defect: host-not-a-url]"
    : "";
  return `the handler got a request it could not use${known} (X-Fuzz-Id ${
    JSON.stringify(p.id)
  }): ${p.method} url=${JSON.stringify(p.url)}: ${errorText(p.error)}`;
}
