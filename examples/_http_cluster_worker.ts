// Copyright 2026 the @corothread/evthread authors. MIT license.

/**
 * The worker module of `examples/http_cluster.ts`: one `EvLoop` with the
 * hello-world HTTP server on it, listening on the cluster's port with
 * `reusePort: true`, so that every worker shares the port and the kernel
 * spreads the connections. Not run by itself: `EvCluster.start()` runs it
 * in each worker.
 *
 * @module
 */

import { evClusterWorker, EvLoop } from "../mod.ts";
import { serve } from "../http.ts";

/** What the main passes to every worker. */
export interface HttpClusterData {
  hostname: string;
  port: number;
}

evClusterWorker(({ data }) => {
  const { hostname, port } = data as HttpClusterData;
  // The server runs on this loop, so the loop's shutdown (which the
  // cluster asks for) drains the server: idle keep-alive connections close
  // at once, requests in flight get the grace period.
  const loop = new EvLoop({ capacity: 1024 });
  serve(
    { loop, hostname, port, reusePort: true, onListen() {} },
    () => new Response("Hello, World!"),
  );
  return loop;
});
