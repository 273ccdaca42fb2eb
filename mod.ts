// Copyright 2026 the @corothread/evthread authors. MIT license.

/**
 * Network servers and clients as straight-line code: one async task per
 * connection instead of callback state machines. The EVCOROTHREAD design
 * (co-routines on the libevent reactor, 2011), carried into Deno:
 *
 * - {@linkcode EvLoop}: the reactor; owns the task pool, listeners, a root
 *   `AbortSignal`, counters, and orderly shutdown.
 * - {@linkcode EvThread}: one task; owns its sockets and child tasks and
 *   closes them when it ends.
 * - {@linkcode EvSocket}: a connection with per-call timeouts that lose no
 *   data, buffered reads, full duplex, and Web streams.
 * - {@linkcode EvTcpAcceptor}: listens and runs a pooled task per
 *   connection (TCP, TLS or Unix domain sockets; optionally behind a proxy
 *   that sends the PROXY protocol).
 * - {@linkcode EvCluster}: one loop per core (Deno workers sharing a port
 *   with `reusePort`); {@linkcode evClusterWorker} runs in each worker.
 *
 * No dependencies; needs `--allow-net`.
 *
 * @example A line echo server and a client
 * ```ts
 * import { EvLoop } from "@corothread/evthread";
 * import { assertEquals } from "@std/assert";
 *
 * const loop = new EvLoop({ capacity: 100 });
 * const acceptor = loop.listen({ hostname: "127.0.0.1", port: 0 }, () =>
 *   async (socket) => {
 *     let line;
 *     while ((line = await socket.readLine({ timeout: 3000 })) !== null) {
 *       await socket.send(new TextEncoder().encode(`${line}\n`));
 *     }
 *   });
 *
 * const client = loop.spawn(async (thread) => {
 *   const socket = await thread.connect({ port: acceptor.port });
 *   await socket.send(new TextEncoder().encode("ping\n"));
 *   return await socket.readLine({ timeout: 3000 });
 * });
 * assertEquals(await client.result, "ping");
 * await loop.shutdown({ grace: 1000 });
 * ```
 *
 * @module
 */

export * from "./src/errors.ts";
export * from "./src/ev_cluster.ts";
export * from "./src/ev_cluster_worker.ts";
export * from "./src/ev_loop.ts";
export * from "./src/ev_socket.ts";
export * from "./src/ev_tcp_acceptor.ts";
export * from "./src/ev_thread.ts";
export * from "./src/proxy_protocol.ts";
