// Copyright 2026 the @corothread/evthread authors. MIT license.
// The Web streams of a socket (`readable`, `writable`), over its read and
// write calls. EvSocket fills in `streamHooks` from its `static` block.

import { checkBytes } from "./_validate.ts";
import type { EvSocket } from "./ev_socket.ts";

function unreachable(): never {
  throw new Error("evthread: internal hook used before its class loaded");
}

/** What the streams do to the socket under them. */
export const streamHooks: {
  /**
   * A read of whatever arrives; undefined if a read call took over while
   * no reader held the stream.
   */
  pull: (socket: EvSocket) => Promise<Uint8Array | null | undefined>;
  /** Drops the stream's pending reads (the bytes stay). */
  cancel: (socket: EvSocket, reason: unknown) => void;
  /** A read of the stream timed out: the socket's next `readable` is new. */
  timedOut: (socket: EvSocket, stream: ReadableStream<Uint8Array>) => void;
  /** Queues a chunk (undefined: the end of stream) as method "writable". */
  write: (socket: EvSocket, chunk: Uint8Array | undefined) => Promise<void>;
} = {
  pull: unreachable,
  cancel: unreachable,
  timedOut: unreachable,
  write: unreachable,
};

/** The socket's received bytes as a stream; see `EvSocket.readable`. */
export function socketReadable(socket: EvSocket): ReadableStream<Uint8Array> {
  const stream: ReadableStream<Uint8Array> = new ReadableStream<Uint8Array>({
    pull: async (controller) => {
      let chunk: Uint8Array | null | undefined;
      try {
        chunk = await streamHooks.pull(socket);
      } catch (error) {
        // A timeout or deadline errors the stream for good, but not the
        // socket: the next `readable` is a new stream.
        if (error instanceof DOMException && error.name === "TimeoutError") {
          streamHooks.timedOut(socket, stream);
        }
        throw error;
      }
      // undefined: a recv took over while no reader held the stream.
      if (chunk === null) controller.close();
      else if (chunk !== undefined) controller.enqueue(chunk);
    },
    cancel: (reason) => streamHooks.cancel(socket, reason),
  }, { highWaterMark: 0 });
  return stream;
}

/** A stream that sends what is written to it; see `EvSocket.writable`. */
export function socketWritable(socket: EvSocket): WritableStream<Uint8Array> {
  return new WritableStream<Uint8Array>({
    write: (chunk) => {
      checkBytes(chunk, "chunk");
      return streamHooks.write(socket, chunk);
    },
    close: () => streamHooks.write(socket, undefined),
    abort: () => socket.close(),
  });
}
