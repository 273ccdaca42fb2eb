// Copyright 2026 the @corothread/evthread authors. MIT license.

/**
 * Options of the PROXY protocol (HAProxy's, versions 1 and 2) on an
 * acceptor ({@linkcode EvListenOptions.proxyProtocol}) or the HTTP server:
 * the proxy or load balancer in front (HAProxy with `send-proxy` or
 * `send-proxy-v2`, AWS NLB with proxy protocol v2, ...) starts each
 * connection with a header that says the client's address, and that address
 * becomes the connection's `remoteAddr`.
 *
 * @example Behind HAProxy on the same host
 * ```ts
 * import { EvLoop, type EvProxyProtocolOptions } from "@corothread/evthread";
 *
 * const proxyProtocol: EvProxyProtocolOptions = {
 *   trusted: ["127.0.0.1", "10.0.0.0/8"],
 * };
 * await using loop = new EvLoop();
 * loop.listen({ hostname: "127.0.0.1", port: 0, proxyProtocol }, (info) =>
 *   async (socket) => {
 *     // info.remoteAddr and socket.remoteAddr: the client, not the proxy.
 *     await socket.send(new TextEncoder().encode(`${info.remoteAddr.hostname}\n`));
 *   });
 * ```
 */
export interface EvProxyProtocolOptions {
  /**
   * The peers allowed to send a header: IPv4 or IPv6 addresses or CIDR
   * blocks (`"127.0.0.1"`, `"10.0.0.0/8"`, `"fd00::/8"`). A header is never
   * read from any other peer. At least one entry.
   */
  trusted: readonly string[];
  /**
   * `true`: every connection must come from a trusted peer and start with
   * a valid header; any other connection is closed (reported to `onError`
   * as a {@linkcode ProxyProtocolError}), its procedure never run. `false`:
   * a trusted peer may send a header or not (told apart by its first bytes,
   * so only for protocols where the client speaks first, such as HTTP), and
   * other peers are served as they are, their bytes never parsed as a
   * header.
   *
   * @default {true}
   */
  required?: boolean;
  /**
   * Milliseconds for a trusted peer to send its whole header, from the
   * accept; `Infinity` for no limit.
   *
   * @default {5000}
   */
  timeout?: number;
}

/** A type-length-value record of a version 2 header. */
export interface EvProxyTlv {
  /** The record's type, 0-255 (`0x01` ALPN, `0x02` authority, ...). */
  type: number;
  /** The record's value. */
  value: Uint8Array;
}

/** The PROXY protocol header a connection started with. */
export interface EvProxyInfo {
  /** The protocol version: 1 (text) or 2 (binary). */
  version: 1 | 2;
  /**
   * `"proxy"`: the addresses are the client's connection's. `"local"`: the
   * proxy's own connection (a health check); the addresses are the real
   * ones (version 1's `UNKNOWN` counts as `"local"`).
   */
  command: "proxy" | "local";
  /**
   * The client's address as the proxy saw it; `undefined` for `"local"` or
   * an unspecified family. A TCP address here is the connection's
   * `remoteAddr`.
   */
  remoteAddr: Deno.NetAddr | Deno.UnixAddr | undefined;
  /** The address the client connected to; `undefined` when `remoteAddr` is. */
  localAddr: Deno.NetAddr | Deno.UnixAddr | undefined;
  /** The version 2 TLVs in order (empty for version 1). */
  tlvs: EvProxyTlv[];
  /** The proxy's address: the connection's real peer. */
  proxyAddr: Deno.NetAddr;
}
