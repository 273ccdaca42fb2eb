// Copyright 2026 the @corothread/evthread authors. MIT license.
// Request bodies read from the socket as the handler pulls them:
// Content-Length framed or chunked (RFC 9112 sections 6 and 7).

import { checkFieldLine, HttpError, parseChunkSize } from "./_http_parse.ts";
import type { CoarseTimeouts } from "./_coarse_timeouts.ts";
import { socketInternals } from "./_internal.ts";
import type { EvSocket } from "./ev_socket.ts";

const CRLF = new Uint8Array([0x0d, 0x0a]);
const LF = new Uint8Array([0x0a]);
/** Largest piece handed to the body stream at once. */
const PIECE = 65_536;
/** Smallest piece read when nothing is buffered yet. */
const MIN_PIECE = 4096;
/** Longest chunk-size line, extensions included. */
const MAX_CHUNK_LINE = 4096;

/** How a body is framed and bounded. */
export interface BodyOptions {
  /** `Content-Length`, or -1 for chunked. */
  contentLength: number;
  /** Most body bytes accepted (413 beyond). */
  maxBytes: number;
  /** Most bytes of trailer fields. */
  maxTrailerBytes: number;
  /** Milliseconds allowed between bytes. */
  timeout: number;
  /** Where `timeout` is armed before each read (coarse, swept). */
  timeouts: CoarseTimeouts;
  /** Called once before the first read (sends `100 Continue`). */
  onFirstRead: (() => Promise<void>) | undefined;
}

/**
 * Reads one request body, in order, one piece per `read()`. After an error
 * the connection cannot be reused: `failed` tells the server to close it.
 */
export class BodyReader {
  #socket: EvSocket;
  #options: BodyOptions;
  #chunked: boolean;
  /** Bytes left: of the body (length) or of the current chunk (chunked). */
  #remaining: number;
  #started = false;
  #done = false;
  #failed = false;
  #discarded = false;
  #error: unknown;
  #total = 0;
  #pending: Promise<Uint8Array | null> | undefined;

  constructor(socket: EvSocket, options: BodyOptions) {
    this.#socket = socket;
    this.#options = options;
    this.#chunked = options.contentLength < 0;
    this.#remaining = this.#chunked ? 0 : options.contentLength;
    if (!this.#chunked && this.#remaining === 0) this.#done = true;
  }

  /** Whether the whole body has been read. */
  get done(): boolean {
    return this.#done;
  }

  /** Whether reading failed (the connection must then be closed). */
  get failed(): boolean {
    return this.#failed;
  }

  /** Why reading failed, when it did. */
  get error(): unknown {
    return this.#error;
  }

  /** Whether the handler has started reading. */
  get started(): boolean {
    return this.#started;
  }

  /** The next piece of the body, or `null` at its end. */
  read(): Promise<Uint8Array | null> {
    const previous = this.#pending;
    const next = previous === undefined
      ? this.#readNext()
      : previous.then(() => this.#readNext(), () => this.#readNext());
    this.#pending = next;
    return next;
  }

  /** Waits for a read in progress, if any, without failing. */
  async idle(): Promise<void> {
    try {
      await this.#pending;
    } catch {
      // The reader's failure is recorded in `failed`.
    }
  }

  /**
   * Reads and drops the rest of the body, up to `limit` bytes.
   *
   * @returns whether the body ended within the limit.
   */
  async drain(limit: number): Promise<boolean> {
    // From now on the handler's reads fail: a late read must not get a
    // silently truncated body.
    this.#discarded = true;
    await this.idle();
    let dropped = 0;
    while (!this.#done && !this.#failed && dropped <= limit) {
      try {
        const piece = await this.#readNext();
        if (piece === null) break;
        dropped += piece.byteLength;
      } catch {
        return false;
      }
    }
    return this.#done;
  }

  async #readNext(): Promise<Uint8Array | null> {
    if (this.#done) return null;
    if (this.#failed) throw new HttpError(400, "The request body failed");
    try {
      if (!this.#started) {
        this.#started = true;
        await this.#options.onFirstRead?.();
      }
      if (this.#chunked && this.#remaining === 0) {
        const size = await this.#chunkHeader();
        if (size === 0) {
          await this.#trailers();
          this.#done = true;
          return null;
        }
        this.#remaining = size;
      }
      // Size the piece to what is waiting (a trickling client must not make
      // every byte cost a large buffer), and trim it when it came up short.
      const size = Math.min(
        this.#remaining,
        PIECE,
        Math.max(this.#socket.buffered, MIN_PIECE),
      );
      const piece = new Uint8Array(size);
      this.#arm();
      const n = await this.#socket.recv(piece);
      if (n === null) {
        throw new Deno.errors.UnexpectedEof(
          "The client closed the connection in the middle of the body",
        );
      }
      this.#remaining -= n;
      this.#total += n;
      if (this.#total > this.#options.maxBytes) {
        throw new HttpError(413, "Request body too large");
      }
      if (this.#remaining === 0 && !this.#chunked) this.#done = true;
      return n < size >> 1 ? piece.slice(0, n) : piece.subarray(0, n);
    } catch (error) {
      this.#failed = true;
      this.#error = error;
      throw error;
    }
  }

  /** Reads the CRLF after a chunk's data (if any) and the next size line. */
  async #chunkHeader(): Promise<number> {
    if (this.#total > 0) {
      // One byte at a time, so that a bare LF is refused at once rather
      // than waited on for a second byte.
      for (const expected of CRLF) {
        this.#arm();
        const byte = await this.#socket.readFull(new Uint8Array(1));
        if (byte === null || byte[0] !== expected) {
          throw new HttpError(400, "Chunk data not followed by CRLF");
        }
      }
    }
    const line = await this.#readLine(MAX_CHUNK_LINE);
    return parseChunkSize(line);
  }

  /** Reads (and ignores) trailer fields up to the blank line. */
  async #trailers(): Promise<void> {
    let budget = this.#options.maxTrailerBytes;
    while (true) {
      const line = await this.#readLine(Math.max(2, budget));
      if (line === "") return;
      budget -= line.length + 2;
      if (budget <= 0) throw new HttpError(431, "Trailer fields too large");
      checkFieldLine(line);
    }
  }

  async #readLine(maxLength: number): Promise<string> {
    let line: string | null;
    try {
      // A line ended by a bare LF is found (and refused) at once.
      this.#arm();
      line = await socketInternals.readTextUntil(this.#socket, CRLF, LF, {
        maxLength,
      });
    } catch (error) {
      if (error instanceof Error && error.name === "LimitExceededError") {
        throw new HttpError(400, "Chunk line too long");
      }
      throw error;
    }
    if (line === null) {
      throw new Deno.errors.UnexpectedEof(
        "The client closed the connection in the middle of the body",
      );
    }
    const n = line.length;
    if (n < 2 || line.charCodeAt(n - 2) !== 0x0d) {
      throw new HttpError(400, "Chunk line not ended by CRLF");
    }
    return line.slice(0, n - 2);
  }

  /** Arms the body timeout for the read about to be made. */
  #arm(): void {
    this.#options.timeouts.armRead(this.#options.timeout);
  }

  /** The body as a stream, for `request.body`. */
  stream(): ReadableStream<Uint8Array> {
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        if (this.#discarded) {
          throw new TypeError(
            "The request body was discarded: the response had been sent",
          );
        }
        const piece = await this.read();
        if (piece === null) controller.close();
        else controller.enqueue(piece);
      },
    }, { highWaterMark: 0 });
  }
}
