// Copyright 2026 the @corothread/evthread authors. MIT license.
// Incremental UTF-8 checking and decoding for WebSocket text (RFC 6455 8.1):
// a text message is checked as its bytes arrive, across frame and read
// boundaries, and fails at the first byte that cannot be part of valid UTF-8
// (an overlong form, a surrogate, a code point above U+10FFFF, a stray
// continuation byte), not when the message ends. The standard decoder in
// fatal streaming mode does exactly that: it throws on the chunk that holds
// the first bad byte, and keeps an incomplete sequence at a chunk's end for
// the next one. A leading U+FEFF is part of the text, not a byte order mark.

/** A text message being received: bytes in, text out, or a failure. */
export class Utf8Decoder {
  #decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  #text = "";

  /**
   * Takes the next bytes of the message. Returns `false` if they make it
   * invalid UTF-8 (the decoder is then of no further use).
   */
  push(bytes: Uint8Array): boolean {
    try {
      this.#text += this.#decoder.decode(bytes, { stream: true });
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Ends the message: its text, or `null` if it ends inside a sequence.
   * The decoder can then take a new message.
   */
  end(): string | null {
    let last: string;
    try {
      last = this.#decoder.decode();
    } catch {
      return null;
    }
    const text = this.#text + last;
    this.#text = "";
    return text;
  }
}

const strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Decodes complete UTF-8 bytes, or returns `null` if they are not valid. */
export function decodeUtf8(bytes: Uint8Array): string | null {
  try {
    return strict.decode(bytes);
  } catch {
    return null;
  }
}
