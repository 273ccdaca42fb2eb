// Copyright 2026 the @corothread/evthread authors. MIT license.

/**
 * A small JSON and file API with `@corothread/evthread/http`, to copy and
 * adapt: an in-memory notes store and, optionally, static files from a
 * directory.
 *
 * ```sh
 * deno run --allow-net examples/http_api.ts [PORT]
 * deno run --allow-net --allow-read=./public examples/http_api.ts [PORT] --root ./public
 * ```
 *
 * - `PORT`: the port to listen on, default 8082; `0` picks a free one.
 * - `--root DIR`: serve the files under `DIR` at `/files/NAME`. It needs
 *   read permission for `DIR` (`--allow-read=DIR`); without `--root` no file
 *   is read and no read permission is needed.
 *
 * Routes (every answer is JSON, errors as `{"error": "..."}`):
 *
 * | request | answer |
 * | --- | --- |
 * | `GET /` | the list of routes |
 * | `GET /notes` | 200, all notes: `[{"id", "text", "created"}]` |
 * | `POST /notes` with `{"text": "..."}` | 201, the note, `Location: /notes/ID` |
 * | `GET /notes/ID` | 200, the note; 404 if there is none |
 * | `DELETE /notes/ID` | 204; 404 if there is none |
 * | `GET /files/NAME` | the file, with its content type (`--root` only) |
 *
 * and 400 for a malformed body or a bad file name (`..`, `.` or empty path
 * segments, backslashes, NUL), 404 for unknown paths and missing files, 405
 * (with `Allow`) for other methods, 413 for a body over 16 KiB, 415 for a
 * body that is not `application/json`. Files are resolved with
 * `Deno.realPath`, so a symbolic link that leads out of the root is a 404.
 *
 * ```sh
 * curl -i -X POST -H 'content-type: application/json' \
 *   -d '{"text":"buy milk"}' http://127.0.0.1:8082/notes
 * curl http://127.0.0.1:8082/notes
 * ```
 *
 * Listens on 127.0.0.1 and prints `listening on http://127.0.0.1:PORT/`
 * once it accepts connections. On SIGINT (Ctrl-C) or SIGTERM it shuts down
 * gracefully (`server.shutdown()`) and exits 0. Bad arguments print the
 * usage and exit 2.
 *
 * @module
 */

import { type HttpServer, serve } from "../http.ts";

const USAGE =
  "usage: deno run --allow-net [--allow-read=DIR] examples/http_api.ts [PORT] [--root DIR]";
const HOSTNAME = "127.0.0.1";
/** The largest request body accepted, in bytes. */
const MAX_BODY = 16 * 1024;
/** The longest note, in characters. */
const MAX_TEXT = 1000;

const CONTENT_TYPES: Record<string, string> = {
  css: "text/css; charset=utf-8",
  csv: "text/csv; charset=utf-8",
  gif: "image/gif",
  htm: "text/html; charset=utf-8",
  html: "text/html; charset=utf-8",
  ico: "image/x-icon",
  jpeg: "image/jpeg",
  jpg: "image/jpeg",
  js: "text/javascript; charset=utf-8",
  json: "application/json",
  md: "text/markdown; charset=utf-8",
  mjs: "text/javascript; charset=utf-8",
  pdf: "application/pdf",
  png: "image/png",
  svg: "image/svg+xml",
  txt: "text/plain; charset=utf-8",
  wasm: "application/wasm",
  webp: "image/webp",
  xml: "application/xml",
};

function usage(message: string): never {
  console.error(`http_api: ${message}`);
  console.error(USAGE);
  Deno.exit(2);
}

function parseArgs(args: string[]): { port: number; root?: string } {
  let port: number | undefined;
  let root: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "-h" || arg === "--help") {
      console.log(USAGE);
      Deno.exit(0);
    } else if (arg === "--root") {
      const value = args[++i];
      if (value === undefined || value === "") usage("--root needs a value");
      root = value;
    } else if (arg.startsWith("--root=")) {
      root = arg.slice("--root=".length);
      if (root === "") usage("--root needs a value");
    } else if (port === undefined && /^\d{1,5}$/.test(arg)) {
      port = Number(arg);
      if (port > 65_535) usage(`PORT must be 0 to 65535: received ${arg}`);
    } else {
      usage(`unexpected argument: ${JSON.stringify(arg)}`);
    }
  }
  return { port: port ?? 8082, ...(root === undefined ? {} : { root }) };
}

/** The real path of the root directory; exits 2 when it is not usable. */
async function openRoot(root: string): Promise<string> {
  try {
    const real = await Deno.realPath(root);
    if (!(await Deno.stat(real)).isDirectory) {
      usage(`--root must be a directory: ${JSON.stringify(root)}`);
    }
    return real;
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) {
      usage(`--root ${root} needs read permission: add --allow-read=${root}`);
    }
    if (error instanceof Deno.errors.NotFound) {
      usage(`--root does not exist: ${JSON.stringify(root)}`);
    }
    throw error;
  }
}

// ---- responses ----

function json(value: unknown, status = 200, headers?: HeadersInit): Response {
  return Response.json(value, { status, ...(headers ? { headers } : {}) });
}

function error(
  status: number,
  message: string,
  headers?: HeadersInit,
): Response {
  return json({ error: message }, status, headers);
}

function methodNotAllowed(allow: string): Response {
  return error(405, "Method not allowed", { allow });
}

// ---- the notes store ----

interface Note {
  id: number;
  text: string;
  created: string;
}

const notes = new Map<number, Note>();
let nextId = 1;

class BodyError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

/** Reads a request body of at most `limit` bytes. */
async function readBody(request: Request, limit: number): Promise<Uint8Array> {
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > limit) {
    throw new BodyError(413, `Body over ${limit} bytes`);
  }
  if (request.body === null) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let total = 0;
  // Chunked bodies have no declared length: count as they come.
  for await (const chunk of request.body) {
    total += chunk.byteLength;
    if (total > limit) throw new BodyError(413, `Body over ${limit} bytes`);
    chunks.push(chunk);
  }
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
}

/** The `text` of a new note, from a JSON request body. */
async function noteText(request: Request): Promise<string> {
  const type = request.headers.get("content-type") ?? "";
  if (!/^application\/json\s*(;|$)/i.test(type)) {
    throw new BodyError(415, "Expected content-type: application/json");
  }
  const bytes = await readBody(request, MAX_BODY);
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    throw new BodyError(400, "Body is not valid JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new BodyError(400, 'Expected an object: {"text": "..."}');
  }
  const text = (value as { text?: unknown }).text;
  if (typeof text !== "string" || text.trim() === "") {
    throw new BodyError(400, "'text' must be a non-empty string");
  }
  if (text.length > MAX_TEXT) {
    throw new BodyError(400, `'text' must be at most ${MAX_TEXT} characters`);
  }
  return text;
}

async function notesRoute(request: Request, rest: string): Promise<Response> {
  if (rest === "") {
    if (request.method === "GET" || request.method === "HEAD") {
      return json([...notes.values()]);
    }
    if (request.method === "POST") {
      let text: string;
      try {
        text = await noteText(request);
      } catch (e) {
        if (e instanceof BodyError) return error(e.status, e.message);
        throw e;
      }
      const note = { id: nextId++, text, created: new Date().toISOString() };
      notes.set(note.id, note);
      return json(note, 201, { location: `/notes/${note.id}` });
    }
    return methodNotAllowed("GET, HEAD, POST");
  }
  const id = /^\/([1-9]\d{0,14})$/.exec(rest);
  if (id === null) return error(404, "No such note");
  const note = notes.get(Number(id[1]));
  if (request.method === "GET" || request.method === "HEAD") {
    return note === undefined ? error(404, "No such note") : json(note);
  }
  if (request.method === "DELETE") {
    if (note === undefined) return error(404, "No such note");
    notes.delete(note.id);
    return new Response(null, { status: 204 });
  }
  return methodNotAllowed("GET, HEAD, DELETE");
}

// ---- files ----

/**
 * The file for `/files/NAME`, or an error response. `name` is the path
 * after `/files/` as sent (still percent-encoded; the URL parser has
 * already removed plain `.` and `..` segments).
 */
async function fileRoute(
  request: Request,
  root: string | undefined,
  name: string,
): Promise<Response> {
  if (request.method !== "GET" && request.method !== "HEAD") {
    return methodNotAllowed("GET, HEAD");
  }
  if (root === undefined) {
    return error(404, "File serving is off: start with --root DIR");
  }
  let decoded: string;
  try {
    decoded = decodeURIComponent(name);
  } catch {
    return error(400, "Malformed file name");
  }
  const segments = decoded.split("/");
  if (
    segments.some((s) =>
      s === "" || s === "." || s === ".." || s.includes("\\") ||
      s.includes("\0")
    )
  ) {
    return error(400, "Bad file name");
  }
  let path: string;
  try {
    // realPath resolves symbolic links: the result must still be inside.
    path = await Deno.realPath(`${root}/${segments.join("/")}`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return error(404, "No such file");
    throw e;
  }
  const sep = Deno.build.os === "windows" ? "\\" : "/";
  const inside = root.endsWith(sep) ? root : root + sep;
  if (!path.startsWith(inside)) return error(404, "No such file");
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (e) {
    if (
      e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotCapable
    ) {
      return error(404, "No such file");
    }
    throw e;
  }
  let info: Deno.FileInfo;
  try {
    info = await file.stat();
  } catch (e) {
    file.close();
    throw e;
  }
  if (!info.isFile) {
    file.close();
    return error(404, "No such file");
  }
  const extension = /\.([A-Za-z0-9]+)$/.exec(path)?.[1]?.toLowerCase() ?? "";
  const headers = {
    "content-type": CONTENT_TYPES[extension] ?? "application/octet-stream",
    "content-length": String(info.size),
    "x-content-type-options": "nosniff",
  };
  // The file streams out and closes itself at the end, or when the server
  // cancels the stream (HEAD, a client that went away).
  return new Response(file.readable, { headers });
}

// ---- the server ----

const INDEX = {
  routes: [
    "GET /notes",
    "POST /notes",
    "GET /notes/:id",
    "DELETE /notes/:id",
    "GET /files/:name",
  ],
};

function makeHandler(root: string | undefined) {
  return async function handler(request: Request): Promise<Response> {
    const { pathname } = new URL(request.url);
    if (pathname === "/") {
      if (request.method !== "GET" && request.method !== "HEAD") {
        return methodNotAllowed("GET, HEAD");
      }
      return json(INDEX);
    }
    if (pathname === "/notes" || pathname.startsWith("/notes/")) {
      return await notesRoute(request, pathname.slice("/notes".length));
    }
    if (pathname.startsWith("/files/")) {
      return await fileRoute(request, root, pathname.slice("/files/".length));
    }
    return error(404, "Not found");
  };
}

const args = parseArgs(Deno.args);
const root = args.root === undefined ? undefined : await openRoot(args.root);

let server: HttpServer;
try {
  server = serve({
    hostname: HOSTNAME,
    port: args.port,
    // A backstop: the handler enforces MAX_BODY itself, with a JSON 413.
    maxBodyBytes: 1024 * 1024,
    onListen() {},
    onError(e) {
      console.error("http_api: the handler failed:", e);
      return error(500, "Internal server error");
    },
  }, makeHandler(root));
} catch (e) {
  console.error(
    `http_api: cannot listen on ${HOSTNAME}:${args.port}: ${
      e instanceof Error ? e.message : e
    }`,
  );
  Deno.exit(1);
}

const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
function onSignal(): void {
  // Removed at once, so that a second signal kills the process.
  for (const signal of signals) Deno.removeSignalListener(signal, onSignal);
  server.shutdown();
}
for (const signal of signals) Deno.addSignalListener(signal, onSignal);
// Printed once the signals are handled: whoever waits for this line may
// send one.
console.log(`listening on http://${HOSTNAME}:${server.addr.port}/`);
if (root !== undefined) console.log(`serving files from ${root}`);

await server.finished;
