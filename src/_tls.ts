// Copyright 2026 the @corothread/evthread authors. MIT license.
// TLS handshakes bounded by a timeout and a signal: Deno's `handshake()`
// takes neither.

import { bound } from "./_deadline_queue.ts";
import { timeoutError } from "./_validate.ts";

/**
 * Completes `conn`'s TLS handshake, rejecting with a `"TimeoutError"` after
 * `ms` milliseconds (`Infinity`: never) or with `signal.reason` when it
 * aborts. The handshake op itself runs on until the connection is closed;
 * its outcome is then ignored (never an unhandled rejection). The caller
 * closes the connection on failure.
 */
export function handshake(
  conn: Deno.TlsConn,
  ms: number,
  signal: AbortSignal | undefined,
): Promise<Deno.TlsHandshakeInfo> {
  if (signal?.aborted) return Promise.reject(signal.reason);
  return bound(
    conn.handshake(),
    ms,
    signal,
    () => timeoutError(`The TLS handshake took over ${ms} ms`),
  );
}

/** The checked TLS options of a client. */
export interface TlsClientSettings {
  hostname: string | undefined;
  caCerts: string[] | undefined;
  alpnProtocols: string[] | undefined;
}

function stringArray(value: unknown, name: string): string[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || value.some((v) => typeof v !== "string")) {
    throw new TypeError(`'${name}' must be an array of strings`);
  }
  return value;
}

/**
 * Checks the TLS options of a client (`hostname`, `caCerts`,
 * `alpnProtocols`); other properties of `options` are ignored.
 *
 * @throws {TypeError} for a wrong type.
 */
export function checkTlsClientOptions(options: unknown): TlsClientSettings {
  if (options === undefined) {
    return {
      hostname: undefined,
      caCerts: undefined,
      alpnProtocols: undefined,
    };
  }
  if (options === null || typeof options !== "object") {
    throw new TypeError("TLS options must be an object");
  }
  const o = options as Record<string, unknown>;
  if (o.hostname !== undefined && typeof o.hostname !== "string") {
    throw new TypeError("'hostname' must be a string");
  }
  return {
    hostname: o.hostname as string | undefined,
    caCerts: stringArray(o.caCerts, "caCerts"),
    alpnProtocols: stringArray(o.alpnProtocols, "alpnProtocols"),
  };
}
