// Copyright 2026 the @corothread/evthread authors. MIT license.
// Reads a connection's PROXY header off its socket for the acceptor: who may
// send one, the timeout, and what a missing or malformed header means.

import {
  parseProxyHeader,
  type ProxyHeader,
  type ProxyParseResult,
} from "./_proxy_protocol.ts";
import { ProxyProtocolError } from "./errors.ts";
import type { EvSocket } from "./ev_socket.ts";

/** The checked `proxyProtocol` option of an acceptor. */
export interface ProxySettings {
  trusted: (hostname: string) => boolean;
  required: boolean;
  /** Milliseconds; `undefined` for no limit. */
  timeout: number | undefined;
}

/** Shows the first bytes of a connection in an error message. */
function preview(bytes: Uint8Array): string {
  let text = "";
  for (const byte of bytes.subarray(0, 16)) {
    text += byte >= 0x20 && byte < 0x7f
      ? String.fromCharCode(byte)
      : `\\x${byte.toString(16).padStart(2, "0")}`;
  }
  return JSON.stringify(text) + (bytes.byteLength > 16 ? "..." : "");
}

function showAddr(addr: Deno.NetAddr): string {
  return addr.hostname.includes(":")
    ? `[${addr.hostname}]:${addr.port}`
    : `${addr.hostname}:${addr.port}`;
}

/**
 * Reads a connection's PROXY header, if it should have one, and takes its
 * bytes from the socket; the bytes after it stay buffered. Returns the
 * header, `undefined` for a connection served as it is (an untrusted peer,
 * or no header, when not required), or `null` when a header is required and
 * the peer closed without sending a byte (a TCP health check).
 *
 * @throws {ProxyProtocolError} when the peer may not send a header but one
 * is required, the header is malformed, missing when required, incomplete at
 * the end of the stream, or not complete within the timeout.
 */
export async function readProxyHeader(
  socket: EvSocket,
  peer: Deno.NetAddr,
  settings: ProxySettings,
): Promise<ProxyHeader | undefined | null> {
  if (!settings.trusted(peer.hostname)) {
    if (!settings.required) return undefined;
    throw new ProxyProtocolError(
      `Refused a connection from ${
        showAddr(peer)
      }: a PROXY header is required and the peer is not a trusted proxy`,
    );
  }
  const deadline = settings.timeout === undefined
    ? undefined
    : Date.now() + settings.timeout;
  const options = deadline === undefined ? {} : { deadline };
  let need = 1;
  while (true) {
    let bytes: Uint8Array | null;
    try {
      bytes = await socket.peek(Math.max(need, socket.buffered), options);
    } catch (error) {
      if (error instanceof DOMException && error.name === "TimeoutError") {
        throw new ProxyProtocolError(
          `No complete PROXY header from ${
            showAddr(peer)
          } within ${settings.timeout} ms`,
          { cause: error },
        );
      }
      throw error;
    }
    // Closed without sending a byte: a TCP health check or a port scan,
    // not a malformed header; the caller closes it without a report.
    if (bytes === null) return settings.required ? null : undefined;
    if (bytes.byteLength < need) {
      throw new ProxyProtocolError(
        `The connection from ${
          showAddr(peer)
        } ended before its PROXY header was complete`,
      );
    }
    let result: ProxyParseResult;
    try {
      result = parseProxyHeader(bytes);
    } catch (error) {
      if (error instanceof ProxyProtocolError) {
        error.message += ` (from ${showAddr(peer)})`;
      }
      throw error;
    }
    if (result === null) {
      if (!settings.required) return undefined;
      throw new ProxyProtocolError(
        `Expected a PROXY header from ${showAddr(peer)}: received ${
          preview(bytes)
        }`,
      );
    }
    if ("need" in result) {
      need = result.need;
      continue;
    }
    await socket.readFull(new Uint8Array(result.length));
    return result.header;
  }
}
