// Copyright 2026 the @corothread/evthread authors. MIT license.
// Reads WebSocket messages and control frames from an EvSocket (RFC 6455
// 5.4-5.6): frames are checked as their headers arrive, fragments are
// joined, control frames between fragments are returned as they come, text
// is checked as UTF-8 as its bytes arrive (failing at the first bad byte,
// not at the message's end), and a message over the size limit fails at the
// header that would take it over, before its payload is read.
//
// `next()` can be called again after it rejects with a timeout: every read
// of the socket either takes its bytes (and they are processed before the
// next await) or takes none, so the reader's state is always consistent and
// nothing is lost. The payload is read straight into the buffers that the
// message keeps, and memory grows only with the bytes that actually
// arrive: a header announcing 16 MiB allocates nothing up front. Bytes the
// socket has already buffered are taken synchronously (no read call, no
// promise): a small frame that arrived whole costs one awaited read.

import type { EvSocket } from "./ev_socket.ts";
import type { CoarseTimeouts } from "./_coarse_timeouts.ts";
import { socketInternals } from "./_internal.ts";
import { parseCloseBody } from "./_ws_close.ts";
import {
  BINARY,
  CLOSE,
  CONTINUATION,
  decodeHeader,
  FrameError,
  type FrameHeader,
  headerRest,
  MAX_CONTROL_PAYLOAD,
  PING,
  TEXT,
  unmask,
} from "./_ws_frame.ts";
import { Utf8Decoder } from "./_ws_utf8.ts";

/** What `next()` returns: a whole message, or a control frame. */
export type Incoming =
  | { type: "text"; data: string; size: number }
  | { type: "binary"; data: Uint8Array<ArrayBuffer> }
  | { type: "ping"; data: Uint8Array<ArrayBuffer> }
  | { type: "pong"; data: Uint8Array<ArrayBuffer> }
  | { type: "close"; code: number; reason: string };

/** Largest buffer a binary payload is read into; bigger ones take several. */
const PIECE = 262_144;
/** Largest buffer text is read into before it is decoded. */
const TEXT_PIECE = 16_384;

const STAGE_HEAD = 0;
const STAGE_REST = 1;
const STAGE_PAYLOAD = 2;

/** The message reader of one connection. */
export class MessageReader {
  #socket: EvSocket;
  #max: number;
  #head = new Uint8Array(14);
  /** Views of `#head`: its first 2 bytes, and the rest by its size. */
  #first2 = this.#head.subarray(0, 2);
  #rests: (Uint8Array | undefined)[] = [];
  #stage = STAGE_HEAD;
  #rest = 0;
  #frame: FrameHeader | undefined;
  /** Payload bytes of the current frame read so far. */
  #done = 0;
  /** Opcode of the message in progress (TEXT or BINARY), 0 for none. */
  #message = 0;
  /** Bytes of the message in progress so far. */
  #size = 0;
  #utf8: Utf8Decoder | undefined;
  /** Binary message: its filled buffers, and the one being filled. */
  #pieces: Uint8Array<ArrayBuffer>[] = [];
  #piece: Uint8Array<ArrayBuffer> | undefined;
  #filled = 0;

  #timeouts: CoarseTimeouts;
  /** The time limit of each read of the current `next()`; 0 for none. */
  #ms = 0;

  /**
   * @param socket The connection, after the handshake.
   * @param maxMessageBytes The largest message taken; more fails with 1009.
   * @param timeouts Where each awaited read's time limit is armed.
   */
  constructor(
    socket: EvSocket,
    maxMessageBytes: number,
    timeouts: CoarseTimeouts,
  ) {
    this.#socket = socket;
    this.#max = maxMessageBytes;
    this.#timeouts = timeouts;
  }

  /**
   * The next message or control frame; `null` when the stream ends (at a
   * frame boundary or not).
   *
   * @throws {FrameError} for a protocol violation, with its close code.
   * @throws what the socket's reads throw (a timeout leaves the reader
   * ready to go on).
   */
  async next(
    ms: number,
  ): Promise<Incoming | null> {
    this.#ms = ms;
    const head = this.#head;
    while (true) {
      if (this.#stage === STAGE_HEAD) {
        if (
          !this.#take(this.#first2) &&
          await this.#readFull(this.#first2) === null
        ) {
          return null;
        }
        this.#rest = headerRest(head[0]!, head[1]!);
        this.#stage = STAGE_REST;
      }
      if (this.#stage === STAGE_REST) {
        const size = this.#rest;
        const rest = this.#rests[size] ??= head.subarray(2, 2 + size);
        if (
          !this.#take(rest) && await this.#readFull(rest) === null
        ) {
          return null;
        }
        this.#begin(decodeHeader(
          head,
          (head[0]! & 0x0f) >= CLOSE
            ? MAX_CONTROL_PAYLOAD
            : this.#max - (this.#message === 0 ? 0 : this.#size),
        ));
      }
      const frame = this.#frame!;
      if (frame.opcode >= CLOSE) return await this.#control(frame);
      if (
        !this.#takePayload(frame) && !await this.#payload(frame)
      ) {
        return null;
      }
      this.#stage = STAGE_HEAD;
      this.#frame = undefined;
      if (frame.fin) return this.#end();
    }
  }

  /** A header was decoded: checks the order of data frames. */
  #begin(frame: FrameHeader): void {
    const opcode = frame.opcode;
    if (opcode === CONTINUATION) {
      if (this.#message === 0) {
        throw new FrameError(
          1002,
          "a continuation frame came with no fragmented message to continue",
        );
      }
    } else if (opcode === TEXT || opcode === BINARY) {
      if (this.#message !== 0) {
        throw new FrameError(
          1002,
          "a new message began before the fragmented one ended",
        );
      }
      this.#message = opcode;
      this.#size = 0;
      if (opcode === TEXT) this.#utf8 ??= new Utf8Decoder();
    }
    this.#frame = frame;
    this.#done = 0;
    this.#stage = STAGE_PAYLOAD;
  }

  /** Reads a control frame's payload (at most 125 bytes) in one call. */
  async #control(frame: FrameHeader): Promise<Incoming | null> {
    const data = new Uint8Array(frame.length);
    if (
      frame.length > 0 && !this.#take(data) &&
      await this.#readFull(data) === null
    ) {
      return null;
    }
    unmask(data, frame.mask, 0);
    this.#stage = STAGE_HEAD;
    this.#frame = undefined;
    if (frame.opcode === PING) return { type: "ping", data };
    if (frame.opcode !== CLOSE) return { type: "pong", data };
    const body = parseCloseBody(data);
    if (!body.ok) throw new FrameError(body.code, body.problem);
    return { type: "close", code: body.code, reason: body.reason };
  }

  /**
   * Reads the rest of a data frame's payload, unmasking and (for text)
   * decoding each piece as it comes. Returns `false` at end of stream.
   */
  async #payload(frame: FrameHeader): Promise<boolean> {
    while (this.#done < frame.length) {
      const room = this.#room(frame);
      this.#timeouts.armRead(this.#ms);
      const n = await this.#socket.recv(room);
      if (n === null) return false;
      this.#accept(frame, room.subarray(0, n));
    }
    if (this.#message === TEXT) this.#piece = undefined;
    return true;
  }

  /**
   * Takes the rest of a data frame's payload from the socket's buffer if
   * all of it is there: returns whether the frame's payload is complete.
   */
  #takePayload(frame: FrameHeader): boolean {
    if (this.#socket.buffered < frame.length - this.#done) return false;
    while (this.#done < frame.length) {
      const room = this.#room(frame);
      if (!this.#take(room)) return false;
      this.#accept(frame, room);
    }
    if (this.#message === TEXT) this.#piece = undefined;
    return true;
  }

  /** Where the next bytes of the payload go: the piece being filled. */
  #room(frame: FrameHeader): Uint8Array {
    const left = frame.length - this.#done;
    let piece = this.#piece;
    if (piece === undefined) {
      piece = this.#piece = new Uint8Array(
        Math.min(left, this.#message === TEXT ? TEXT_PIECE : PIECE),
      );
      this.#filled = 0;
    }
    const filled = this.#filled;
    return filled === 0 && piece.byteLength <= left
      ? piece
      : piece.subarray(filled, Math.min(piece.byteLength, filled + left));
  }

  /** `fresh`, the start of `#room()`, has been filled: takes it in. */
  #accept(frame: FrameHeader, fresh: Uint8Array): void {
    const n = fresh.byteLength;
    unmask(fresh, frame.mask, this.#done);
    this.#done += n;
    this.#size += n;
    this.#filled += n;
    if (this.#message === TEXT) {
      if (!this.#utf8!.push(fresh)) {
        throw new FrameError(1007, "a text message is not valid UTF-8");
      }
      // Decoded: the buffer can take the next bytes.
      this.#filled = 0;
      if (this.#done === frame.length) this.#piece = undefined;
    } else if (this.#filled === this.#piece!.byteLength) {
      this.#pieces.push(this.#piece!);
      this.#piece = undefined;
    }
  }

  /** The last frame of a message was read: the whole message. */
  #end(): Incoming {
    const opcode = this.#message;
    const size = this.#size;
    this.#message = 0;
    this.#size = 0;
    if (opcode === TEXT) {
      const data = this.#utf8!.end();
      if (data === null) {
        throw new FrameError(
          1007,
          "a text message ends inside a UTF-8 sequence",
        );
      }
      return { type: "text", data, size };
    }
    const pieces = this.#pieces;
    this.#pieces = [];
    if (pieces.length === 1) return { type: "binary", data: pieces[0]! };
    const data = new Uint8Array(size);
    let at = 0;
    for (const piece of pieces) {
      data.set(piece, at);
      at += piece.byteLength;
    }
    return { type: "binary", data };
  }

  /** Fills `buf` from the socket's buffer at once, if it can. */
  #take(buf: Uint8Array): boolean {
    return socketInternals.takeBuffered(this.#socket, buf);
  }

  /** `readFull`, with an early end of stream as `null`. */
  async #readFull(buf: Uint8Array): Promise<Uint8Array | null> {
    try {
      this.#timeouts.armRead(this.#ms);
      return await this.#socket.readFull(buf);
    } catch (error) {
      if (error instanceof Deno.errors.UnexpectedEof) return null;
      throw error;
    }
  }
}
