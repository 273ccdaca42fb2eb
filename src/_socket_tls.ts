// Copyright 2026 the @corothread/evthread authors. MIT license.
// STARTTLS for EvSocket (`EvSocket.startTls`): whether its connection may be
// upgraded now, and the upgrade. EvSocket fills in `tlsHooks` from its
// `static` block.

import { closedError } from "./_socket_limits.ts";
import { checkTlsClientOptions, handshake } from "./_tls.ts";
import {
  checkDeadline,
  checkSignal,
  checkTimeout,
  timeoutError,
} from "./_validate.ts";
import type { EvStartTlsOptions } from "./_socket_options.ts";
import type { EvSocket } from "./ev_socket.ts";

function unreachable(): never {
  throw new Error("evthread: internal hook used before its class loaded");
}

/** What an upgrade needs to know of the socket; made per `startTls`. */
export interface UpgradeState {
  conn: Deno.Conn;
  closed: boolean;
  /** TLS already, or being upgraded. */
  secure: boolean;
  /**
   * A call waits, a read or write of the connection is in flight, or a
   * stream is locked.
   */
  busy: boolean;
  /** Bytes received and not read. */
  buffered: number;
  /** The stream ended or failed, or the write side was closed. */
  ending: boolean;
  /** The owning task's signal. */
  hostSignal: AbortSignal | undefined;
}

/** What an upgrade does to the socket. */
export const tlsHooks: {
  state: (socket: EvSocket) => UpgradeState;
  /**
   * Holds back reads and writes while `stop` is set (`close()` aborts it),
   * or lets them start again.
   */
  hold: (socket: EvSocket, stop: AbortController | undefined) => void;
  /** Makes `tls` the connection; false if the socket closed meanwhile. */
  swap: (socket: EvSocket, tls: Deno.TlsConn) => boolean;
  /**
   * Records the handshake, lets reads and writes start; false if the
   * socket closed meanwhile.
   */
  resume: (socket: EvSocket, info: Deno.TlsHandshakeInfo) => boolean;
  countTimeout: (socket: EvSocket) => void;
} = {
  state: unreachable,
  hold: unreachable,
  swap: unreachable,
  resume: unreachable,
  countTimeout: unreachable,
};

/** `socket.startTls(options)`: see its documentation. */
export async function upgrade(
  socket: EvSocket,
  options: EvStartTlsOptions | undefined,
): Promise<void> {
  const timeout = checkTimeout(options?.timeout);
  const deadline = checkDeadline(options?.deadline);
  const signal = checkSignal(options?.signal);
  const tlsOptions = checkTlsClientOptions(options);
  const state = tlsHooks.state(socket);
  if (state.closed) throw closedError();
  const conn = state.conn;
  if (
    state.secure || conn.localAddr.transport !== "tcp" ||
    typeof (conn as Partial<Deno.TlsConn>).handshake === "function"
  ) {
    throw new TypeError("startTls() needs a plain TCP connection");
  }
  if (state.busy) {
    throw new Deno.errors.Busy(
      "startTls() needs the connection idle: a call, or a read of the connection that a timed-out call left armed, is in flight",
    );
  }
  if (state.buffered > 0) {
    throw new Deno.errors.InvalidData(
      `startTls(): ${state.buffered} bytes arrived before the TLS handshake; refusing to upgrade (they were not protected by it)`,
    );
  }
  if (state.ending) {
    throw new Deno.errors.BrokenPipe(
      "startTls(): the connection is already ending",
    );
  }
  const hostSignal = state.hostSignal;
  if (hostSignal?.aborted) throw hostSignal.reason;
  if (signal?.aborted) throw signal.reason;
  let ms = timeout ?? Infinity;
  if (deadline !== undefined) ms = Math.min(ms, deadline - Date.now());
  if (ms <= 0) {
    tlsHooks.countTimeout(socket);
    throw timeoutError("startTls(): the deadline has passed");
  }
  // Closing the socket meanwhile ends the handshake wait at once.
  const closing = new AbortController();
  tlsHooks.hold(socket, closing);
  const stop = AbortSignal.any(
    [closing.signal, hostSignal, signal].filter((s) => s !== undefined),
  );
  let info: Deno.TlsHandshakeInfo;
  try {
    const tls = await Deno.startTls(conn as Deno.TcpConn, {
      hostname: tlsOptions.hostname ??
        (conn.remoteAddr as Deno.NetAddr).hostname,
      ...(tlsOptions.caCerts ? { caCerts: tlsOptions.caCerts } : {}),
      ...(tlsOptions.alpnProtocols
        ? { alpnProtocols: tlsOptions.alpnProtocols }
        : {}),
    });
    // Deno.startTls took the TCP connection over when called: if the
    // socket was closed while it ran, that close missed the new one.
    if (!tlsHooks.swap(socket, tls)) {
      try {
        tls.close();
      } catch {
        // Already closed.
      }
      throw closedError();
    }
    info = await handshake(tls, ms, stop);
  } catch (error) {
    if (error instanceof DOMException && error.name === "TimeoutError") {
      tlsHooks.countTimeout(socket);
    }
    tlsHooks.hold(socket, undefined);
    socket.close();
    throw error;
  }
  if (!tlsHooks.resume(socket, info)) throw closedError();
}
