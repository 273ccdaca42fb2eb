// Copyright 2026 the @corothread/evthread authors. MIT license.
// The option and error types of EvSocket's calls; ev_socket.ts re-exports
// them, and they are public there.

/** Options for a blocking socket call. */
export interface EvCallOptions {
  /**
   * How long the call may wait, in milliseconds. `undefined` or `Infinity`
   * means no limit; `0` means "only what is already buffered". On expiry the
   * call rejects with a `DOMException` named `"TimeoutError"`, and no bytes
   * are lost: see {@linkcode EvSocket}.
   */
  timeout?: number;
  /**
   * When the call must be done by: an absolute time, in epoch milliseconds
   * (as `Date.now()` gives) or a `Date`. Unlike `timeout`, which a peer can
   * keep from expiring by trickling a byte now and then across many calls,
   * a deadline bounds a whole exchange: give every call of it the same one.
   * With both, the earlier wins. A call made after its deadline rejects at
   * once, even if bytes are buffered; expiry, like a timeout, rejects with
   * a `DOMException` named `"TimeoutError"` and loses no bytes. See also
   * {@linkcode EvSocket.setDeadline} for one deadline for every call.
   */
  deadline?: number | Date;
  /** Aborting it makes the call reject with `signal.reason`. */
  signal?: AbortSignal;
}

/**
 * TLS options of a client: {@linkcode EvSocket.startTls}, and the `tls`
 * option of {@linkcode EvThread.connect}.
 */
export interface EvTlsClientOptions {
  /**
   * The server name to verify the certificate against (and to send as SNI).
   * Defaults to the host name connected to.
   */
  hostname?: string;
  /** Root certificates (PEM) to trust besides the system's. */
  caCerts?: string[];
  /** The ALPN protocols to offer, in order of preference. */
  alpnProtocols?: string[];
}

/** Options for {@linkcode EvSocket.startTls}. */
export interface EvStartTlsOptions extends EvTlsClientOptions, EvCallOptions {}

/** Options for {@linkcode EvSocket.readLine} and {@linkcode EvSocket.readUntil}. */
export interface EvReadUntilOptions extends EvCallOptions {
  /**
   * The most bytes a result may have, delimiter included. When no delimiter
   * is found within it the call rejects with
   * {@linkcode LimitExceededError} and the bytes stay buffered.
   *
   * @default {65536}
   */
  maxLength?: number;
}

/**
 * The error a timed-out {@linkcode EvSocket.send} rejects with: a
 * `DOMException` named `"TimeoutError"` that also says how many of the
 * call's bytes had been written. The rest stay queued and are still written,
 * ahead of any later send.
 */
export interface EvSendTimeoutError extends DOMException {
  /** Bytes of the call that the kernel had accepted when it timed out. */
  bytesWritten: number;
}
