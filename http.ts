// Copyright 2026 the @corothread/evthread authors. MIT license.

/**
 * An embeddable HTTP/1.1 server on {@linkcode EvLoop}: a task per
 * connection, Fetch API handlers, and the same `serve()` forms as
 * `Deno.serve`, so switching is a change of import.
 *
 * @example Hello, World
 * ```ts
 * import { serve } from "@corothread/evthread/http";
 * import { assertEquals } from "@std/assert";
 *
 * const server = serve(
 *   { hostname: "127.0.0.1", port: 0, onListen() {} },
 *   () => new Response("Hello, World!"),
 * );
 * const response = await fetch(`http://127.0.0.1:${server.addr.port}/`);
 * assertEquals(await response.text(), "Hello, World!");
 * await server.shutdown();
 * ```
 *
 * @module
 */

export * from "./src/http_server.ts";
export * from "./src/websocket.ts";
