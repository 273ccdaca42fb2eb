// Copyright 2026 the @corothread/evthread authors. MIT license.
// The client side of a case: its bytes over a raw socket, in pieces, and a
// strict parser of what comes back.

import { concat } from "../_helpers.ts";
import { escape, type Rng, toBytes, toText } from "./util.ts";

/** What one connection got. */
export interface Exchange {
  bytes: Uint8Array;
  /** How it ended: the server closed (eof), reset, or the safety net hit. */
  end: "eof" | "reset" | "safety";
  ms: number;
}

/**
 * Connects, writes `text` in `pieces` (pausing 0-2 ms between them when
 * `pauses` gives a PRNG), half-closes unless `holdOpen`, and reads until
 * the server closes or `safetyMs` passes.
 */
export async function sendBytes(
  port: number,
  text: string,
  options: {
    pieces: number[];
    pauses: Rng | undefined;
    holdOpen: boolean;
    safetyMs: number;
  },
): Promise<Exchange> {
  const start = performance.now();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  let expired = false;
  const timer = setTimeout(() => {
    expired = true;
    try {
      conn.close();
    } catch {
      // closed already
    }
  }, options.safetyMs);
  const chunks: Uint8Array[] = [];
  const reading = (async (): Promise<Exchange["end"]> => {
    const buf = new Uint8Array(65_536);
    try {
      let n: number | null;
      while ((n = await conn.read(buf)) !== null) chunks.push(buf.slice(0, n));
      return "eof";
    } catch (error) {
      if (expired) return "safety";
      if (error instanceof Deno.errors.ConnectionReset) return "reset";
      throw error;
    }
  })();
  const writing = (async () => {
    const bytes = toBytes(text);
    let off = 0;
    try {
      for (const size of options.pieces) {
        const piece = bytes.subarray(off, off + size);
        off += size;
        let done = 0;
        while (done < piece.byteLength) {
          done += await conn.write(piece.subarray(done));
        }
        if (options.pauses !== undefined) {
          const ms = options.pauses.below(3);
          await new Promise((resolve) => setTimeout(resolve, ms));
        }
      }
      if (!options.holdOpen) await conn.closeWrite();
    } catch {
      // The server closed first (or the safety net did): reading tells.
    }
  })();
  let end: Exchange["end"];
  try {
    end = await reading;
  } finally {
    await writing;
    clearTimeout(timer);
    if (!expired) {
      try {
        conn.close();
      } catch {
        // closed already
      }
    }
  }
  return { bytes: concat(chunks), end, ms: performance.now() - start };
}

/** A response as the fuzzer's parser saw it. */
export interface ParsedResponse {
  status: number;
  /** Field names in lower case, repeated ones joined with `, `. */
  fields: Map<string, string>;
}

const STATUS_LINE = /^HTTP\/1\.1 ([1-5]\d\d) [\x20-\x7e]*$/;
const FIELD_LINE =
  /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+): ?([\t\x20-\x7e\x80-\xff]*)$/;

/**
 * Parses the responses the server sent, strictly: a status line, fields,
 * and a body of exactly `content-length` bytes (none for 1xx, 204, 304).
 * With `cut` (the connection was reset), a truncated last response is not
 * an error.
 */
export function parseResponses(
  bytes: Uint8Array,
  cut: boolean,
): { responses: ParsedResponse[]; error: string | undefined } {
  const s = toText(bytes);
  const responses: ParsedResponse[] = [];
  let pos = 0;
  const truncated = (what: string) => ({
    responses,
    error: cut ? undefined : `a truncated response (${what}) at byte ${pos}`,
  });
  while (pos < s.length) {
    const end = s.indexOf("\r\n\r\n", pos);
    if (end < 0) return truncated("head");
    const lines = s.slice(pos, end).split("\r\n");
    const m = STATUS_LINE.exec(lines[0]!);
    if (m === null) {
      return {
        responses,
        error: `a bad status line ${escape(lines[0]!, 200)} at byte ${pos}`,
      };
    }
    const status = Number(m[1]);
    const fields = new Map<string, string>();
    for (const line of lines.slice(1)) {
      const f = FIELD_LINE.exec(line);
      if (f === null) {
        return {
          responses,
          error: `a bad response field ${escape(line, 200)} at byte ${pos}`,
        };
      }
      const name = f[1]!.toLowerCase();
      const old = fields.get(name);
      fields.set(name, old === undefined ? f[2]! : `${old}, ${f[2]}`);
    }
    pos = end + 4;
    if (status >= 200 && status !== 204 && status !== 304) {
      if (fields.has("transfer-encoding")) {
        return { responses, error: "a response with transfer-encoding" };
      }
      const cl = fields.get("content-length");
      if (cl === undefined || !/^\d{1,15}$/.test(cl)) {
        return {
          responses,
          error: `a response without a valid content-length: ${cl}`,
        };
      }
      if (pos + Number(cl) > s.length) return truncated("body");
      pos += Number(cl);
    }
    responses.push({ status, fields });
  }
  return { responses, error: undefined };
}
