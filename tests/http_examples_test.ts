// Copyright 2026 the @corothread/evthread authors. MIT license.

// Runs each HTTP example as a child process and checks what it does over
// loopback with fetch (and a raw socket where fetch would normalize the
// request). Servers listen on port 0; the tests learn the port from the
// "listening on" line, never from a sleep. Every child is stopped in a
// finally (`await using`): SIGTERM, then SIGKILL if it outlives a safety
// timeout.
//
// deno test --allow-net --allow-read --allow-run --allow-env \
//   --sanitize-ops --sanitize-resources tests/http_examples_test.ts

import {
  assert,
  assertEquals,
  assertGreater,
  assertLess,
  assertMatch,
  assertStringIncludes,
} from "@std/assert";
import { within } from "./_helpers.ts";
import { CHILD_SAFETY_MS, DenoProcess } from "./_process.ts";

/** The most any single wait in these tests may take. */
const SAFETY = CHILD_SAFETY_MS;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** An example running as a child process, its stdout read line by line. */
class Example extends DenoProcess {
  /** Runs `examples/NAME` with `--allow-net`, `permissions` and `args`. */
  constructor(name: string, args: string[], permissions: string[] = []) {
    super(name, [
      "run",
      "--no-prompt",
      "--allow-net",
      ...permissions,
      `examples/${name}`,
      ...args,
    ]);
  }

  /** Waits for the listening line and returns the base URL. */
  async url(): Promise<string> {
    const match = await this.line(
      /^listening on (http:\/\/127\.0\.0\.1:\d+\/)$/,
    );
    return match[1]!;
  }
}

/** SIGTERM, then the exit code must be 0 and stderr empty. */
async function stopsCleanly(example: Example): Promise<void> {
  example.kill("SIGTERM");
  const { code } = await example.exit();
  assertEquals(example.stderr, "");
  assertEquals(code, 0);
}

/** Runs an example that must refuse its arguments: exit 2 with the usage. */
async function refuses(
  name: string,
  args: string[],
  permissions: string[] = [],
): Promise<string> {
  await using example = new Example(name, args, permissions);
  const { code, stdout } = await example.exit();
  assertEquals(code, 2, `${name} ${args.join(" ")}: ${example.stderr}`);
  assertEquals(stdout, "");
  assertStringIncludes(example.stderr, "usage: deno run");
  return example.stderr;
}

/** fetch with a safety timeout; the body is read by the caller. */
function get(url: string, init?: RequestInit): Promise<Response> {
  return within(fetch(url, init), `fetch ${url}`, SAFETY);
}

/** fetch, then the whole body as text. */
async function fetchText(
  url: string,
  init?: RequestInit,
): Promise<{ response: Response; text: string }> {
  const response = await get(url, init);
  const text = await within(response.text(), `body of ${url}`, SAFETY);
  return { response, text };
}

/** fetch, then the body as JSON. */
async function fetchJson(
  url: string,
  init?: RequestInit,
): Promise<{ response: Response; body: unknown }> {
  const { response, text } = await fetchText(url, init);
  return { response, body: text === "" ? null : JSON.parse(text) };
}

/** Sends a raw request (as written, no normalization) and reads to close. */
async function rawRequest(url: string, request: string): Promise<string> {
  const { port } = new URL(url);
  using conn = await within(
    Deno.connect({ hostname: "127.0.0.1", port: Number(port) }),
    "connect",
    SAFETY,
  );
  let off = 0;
  const bytes = encoder.encode(request);
  while (off < bytes.byteLength) off += await conn.write(bytes.subarray(off));
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(16 * 1024);
  while (true) {
    const n = await within(conn.read(buf), "the raw response", SAFETY);
    if (n === null) break;
    chunks.push(buf.slice(0, n));
  }
  return chunks.map((c) => decoder.decode(c, { stream: true })).join("");
}

// ---- http_hello.ts ----

Deno.test("http_hello.ts answers 200 Hello, World! to every method and path, exits 0 on SIGTERM", async () => {
  await using hello = new Example("http_hello.ts", ["0"]);
  const base = await hello.url();
  for (
    const [method, path] of [
      ["GET", ""],
      ["GET", "some/path?q=1"],
      ["POST", "submit"],
      ["PUT", "x/y/z"],
      ["DELETE", "item/7"],
      ["PATCH", ""],
    ]
  ) {
    const init: RequestInit = { method: method! };
    if (method === "POST" || method === "PUT") init.body = "ignored body";
    const { response, text } = await fetchText(base + path, init);
    assertEquals(response.status, 200, `${method} /${path}`);
    assertEquals(text, "Hello, World!");
    assertEquals(
      response.headers.get("content-type"),
      "text/plain;charset=UTF-8",
    );
    assertEquals(response.headers.get("content-length"), "13");
  }
  const { response, text } = await fetchText(base, { method: "HEAD" });
  assertEquals(response.status, 200);
  assertEquals(text, "");
  assertEquals(hello.lines, [`listening on ${base}`]);
  await stopsCleanly(hello);
});

Deno.test("http_hello.ts stops on SIGINT too", async () => {
  await using hello = new Example("http_hello.ts", ["0"]);
  await hello.url();
  hello.kill("SIGINT");
  assertEquals((await hello.exit()).code, 0);
});

Deno.test("http_hello.ts exits 2 with the usage on bad arguments", async () => {
  for (const args of [["abc"], ["70000"], ["-1"], ["80", "81"], ["--port"]]) {
    await refuses("http_hello.ts", args);
  }
});

// ---- http_stream.ts ----

Deno.test("http_stream.ts streams its lines incrementally and completely", async () => {
  await using stream = new Example("http_stream.ts", ["0"]);
  const base = await stream.url();
  const count = 6;
  const interval = 150;
  const start = performance.now();
  const response = await get(`${base}?lines=${count}&interval=${interval}`);
  assertEquals(response.status, 200);
  assertEquals(response.headers.get("transfer-encoding"), "chunked");
  assertEquals(response.headers.get("content-length"), null);
  assertStringIncludes(response.headers.get("content-type")!, "text/plain");

  // Each line as it arrives, with the time it arrived.
  const arrivals: { line: string; at: number }[] = [];
  let rest = "";
  const reader = response.body!.pipeThrough(new TextDecoderStream())
    .getReader();
  try {
    while (true) {
      const { done, value } = await within(
        reader.read(),
        "the next streamed piece",
        SAFETY,
      );
      if (done) break;
      rest += value;
      let eol;
      while ((eol = rest.indexOf("\n")) >= 0) {
        arrivals.push({
          line: rest.slice(0, eol),
          at: performance.now() - start,
        });
        rest = rest.slice(eol + 1);
      }
    }
  } finally {
    reader.releaseLock();
  }
  assertEquals(rest, "");
  assertEquals(arrivals.length, count);
  arrivals.forEach(({ line }, i) => {
    assertMatch(line, new RegExp(`^line ${i + 1} of ${count} at \\d+ ms$`));
  });
  // Incremental: the first line came long before the last was made.
  const first = arrivals[0]!.at;
  const last = arrivals[count - 1]!.at;
  assertGreater(last - first, interval * (count - 1) * 0.7);
  assertLess(first, last - interval * 2);
  await stream.line(
    new RegExp(`^stream ended: ${count} of ${count} lines \\(complete\\)$`),
  );
  await stopsCleanly(stream);
});

Deno.test("http_stream.ts stops a stream when its client goes away", async () => {
  await using stream = new Example("http_stream.ts", ["0"]);
  const base = await stream.url();
  const controller = new AbortController();
  const response = await get(`${base}?lines=100&interval=50`, {
    signal: controller.signal,
  });
  const reader = response.body!.getReader();
  const first = await within(reader.read(), "the first line", SAFETY);
  assert(!first.done);
  assertMatch(decoder.decode(first.value), /^line 1 of 100 at \d+ ms\n/);
  controller.abort();
  await reader.read().then(() => {}, () => {});
  reader.releaseLock();
  // The server cancelled the stream at once (or request.signal aborted its
  // wait first): it did not run to 100.
  const match = await stream.line(
    /^stream ended: (\d+) of 100 lines \((cancelled|aborted: .*)\)$/,
  );
  assertLess(Number(match[1]), 100);
  await stopsCleanly(stream);
});

Deno.test("http_stream.ts answers 400, 404 and 405 to bad requests", async () => {
  await using stream = new Example("http_stream.ts", ["0"]);
  const base = await stream.url();
  for (
    const query of ["lines=0", "lines=1001", "lines=x", "interval=-1", "nope=1"]
  ) {
    const { response } = await fetchText(`${base}?${query}`);
    assertEquals(response.status, 400, query);
  }
  assertEquals((await fetchText(`${base}elsewhere`)).response.status, 404);
  const { response } = await fetchText(base, { method: "POST", body: "x" });
  assertEquals(response.status, 405);
  assertEquals(response.headers.get("allow"), "GET, HEAD");
  const head = await fetchText(base, { method: "HEAD" });
  assertEquals(head.response.status, 200);
  assertEquals(head.text, "");
  await stopsCleanly(stream);
});

Deno.test("http_stream.ts exits 2 with the usage on bad arguments", async () => {
  for (const args of [["x"], ["65536"], ["1", "2"]]) {
    await refuses("http_stream.ts", args);
  }
});

// ---- http_api.ts ----

Deno.test("http_api.ts creates, lists, reads and deletes notes", async () => {
  await using api = new Example("http_api.ts", ["0"]);
  const base = await api.url();
  const index = await fetchJson(base);
  assertEquals(index.response.status, 200);
  assertEquals(
    (index.body as { routes: string[] }).routes.includes("POST /notes"),
    true,
  );

  assertEquals((await fetchJson(`${base}notes`)).body, []);
  const texts = ["buy milk", "call José ✓"];
  const created: { id: number; text: string; created: string }[] = [];
  for (const text of texts) {
    const { response, body } = await fetchJson(`${base}notes`, {
      method: "POST",
      headers: { "content-type": "application/json; charset=utf-8" },
      body: JSON.stringify({ text }),
    });
    assertEquals(response.status, 201);
    assertEquals(response.headers.get("content-type"), "application/json");
    const note = body as { id: number; text: string; created: string };
    assertEquals(note.text, text);
    assertEquals(response.headers.get("location"), `/notes/${note.id}`);
    assert(!Number.isNaN(Date.parse(note.created)));
    created.push(note);
  }

  const list = await fetchJson(`${base}notes`);
  assertEquals(list.response.status, 200);
  assertEquals(list.body, created);
  const one = await fetchJson(new URL(`notes/${created[1]!.id}`, base).href);
  assertEquals(one.body, created[1]);

  const deleted = await fetchText(`${base}notes/${created[0]!.id}`, {
    method: "DELETE",
  });
  assertEquals(deleted.response.status, 204);
  assertEquals(deleted.text, "");
  const gone = await fetchJson(`${base}notes/${created[0]!.id}`);
  assertEquals(gone.response.status, 404);
  assertEquals(gone.body, { error: "No such note" });
  const again = await fetchText(`${base}notes/${created[0]!.id}`, {
    method: "DELETE",
  });
  assertEquals(again.response.status, 404);
  assertEquals((await fetchJson(`${base}notes`)).body, [created[1]]);
  await stopsCleanly(api);
});

Deno.test("http_api.ts answers JSON errors: 400, 404, 405, 413, 415", async () => {
  await using api = new Example("http_api.ts", ["0"]);
  const base = await api.url();
  const post = (body: BodyInit, type = "application/json") =>
    fetchJson(`${base}notes`, {
      method: "POST",
      headers: { "content-type": type },
      body,
    });
  const cases: [
    string,
    Promise<{ response: Response; body: unknown }>,
    number,
  ][] = [
    ["invalid JSON", post("{not json"), 400],
    ["not an object", post("[1, 2]"), 400],
    ["no text", post("{}"), 400],
    ["empty text", post('{"text": "  "}'), 400],
    ["text not a string", post('{"text": 5}'), 400],
    ["too long text", post(JSON.stringify({ text: "x".repeat(1001) })), 400],
    [
      "body over 16 KiB",
      post(JSON.stringify({ text: "x".repeat(20_000) })),
      413,
    ],
    ["not JSON", post("text=hi", "application/x-www-form-urlencoded"), 415],
    ["unknown path", fetchJson(`${base}nothing/here`), 404],
    ["bad note id", fetchJson(`${base}notes/abc`), 404],
    ["missing note", fetchJson(`${base}notes/999`), 404],
    [
      "PUT /notes",
      fetchJson(`${base}notes`, { method: "PUT", body: "{}" }),
      405,
    ],
    ["PATCH a note", fetchJson(`${base}notes/1`, { method: "PATCH" }), 405],
    ["POST /", fetchJson(base, { method: "POST", body: "{}" }), 405],
  ];
  for (const [what, pending, status] of cases) {
    const { response, body } = await pending;
    assertEquals(response.status, status, what);
    assertEquals(
      response.headers.get("content-type"),
      "application/json",
      what,
    );
    assertEquals(typeof (body as { error?: unknown }).error, "string", what);
  }
  const put = await fetchText(`${base}notes`, { method: "PUT", body: "{}" });
  assertEquals(put.response.headers.get("allow"), "GET, HEAD, POST");

  // A chunked body (no content-length) over the limit is cut off too.
  const big = new ReadableStream<Uint8Array>({
    start(controller) {
      for (let i = 0; i < 5; i++) {
        controller.enqueue(encoder.encode(`{"text":"${"y".repeat(8000)}`));
      }
      controller.enqueue(encoder.encode('"}'));
      controller.close();
    },
  });
  const chunked = await post(big);
  assertEquals(chunked.response.status, 413);
  // Nothing was stored by the failures.
  assertEquals((await fetchJson(`${base}notes`)).body, []);
  await stopsCleanly(api);
});

/** A directory of files to serve, and a secret beside it; made and removed
 * by a child process, since the tests themselves may not write. */
async function withFixture(
  body: (dir: string) => Promise<void>,
): Promise<void> {
  const script = `
    const dir = await Deno.makeTempDir({ prefix: "http_api_test_" });
    await Deno.mkdir(dir + "/root/docs", { recursive: true });
    await Deno.writeTextFile(dir + "/root/hello.txt", "hello, file\\n");
    await Deno.writeTextFile(dir + "/root/docs/page.html", "<h1>page</h1>\\n");
    await Deno.writeFile(dir + "/root/blob.bin", new Uint8Array([0, 1, 2, 255]));
    await Deno.writeTextFile(dir + "/secret.txt", "top secret\\n");
    await Deno.symlink(dir + "/secret.txt", dir + "/root/escape.txt");
    console.log(dir);
  `;
  const made = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--no-config", "--quiet", script],
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert(made.success, decoder.decode(made.stderr));
  const dir = decoder.decode(made.stdout).trim();
  try {
    await body(dir);
  } finally {
    const removed = await new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        "--no-config",
        "--quiet",
        `await Deno.remove(${JSON.stringify(dir)}, { recursive: true });`,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).output();
    assert(removed.success, decoder.decode(removed.stderr));
  }
}

Deno.test("http_api.ts serves files from --root and rejects path traversal", async () => {
  await withFixture(async (dir) => {
    const root = `${dir}/root`;
    await using api = new Example(
      "http_api.ts",
      ["0", "--root", root],
      [`--allow-read=${root}`],
    );
    const base = await api.url();

    const hello = await fetchText(`${base}files/hello.txt`);
    assertEquals(hello.response.status, 200);
    assertEquals(hello.text, "hello, file\n");
    assertEquals(
      hello.response.headers.get("content-type"),
      "text/plain; charset=utf-8",
    );
    const page = await fetchText(`${base}files/docs/page.html`);
    assertEquals(page.text, "<h1>page</h1>\n");
    assertEquals(
      page.response.headers.get("content-type"),
      "text/html; charset=utf-8",
    );
    const blob = await get(`${base}files/blob.bin`);
    assertEquals(
      blob.headers.get("content-type"),
      "application/octet-stream",
    );
    assertEquals(await blob.bytes(), new Uint8Array([0, 1, 2, 255]));
    const head = await fetchText(`${base}files/hello.txt`, { method: "HEAD" });
    assertEquals(head.response.status, 200);
    assertEquals(head.response.headers.get("content-length"), "12");
    assertEquals(head.text, "");

    // Missing files and directories.
    for (const name of ["nope.txt", "docs", "docs/"]) {
      const { response } = await fetchText(`${base}files/${name}`);
      assertEquals(response.status, name === "docs/" ? 400 : 404, name);
    }
    // A symbolic link out of the root is not followed out.
    const escape = await fetchJson(`${base}files/escape.txt`);
    assertEquals(escape.response.status, 404);
    assertEquals(escape.body, { error: "No such file" });

    // Traversal, as fetch sends it (encoded so the URL parser keeps it)
    // and raw (as written: the server's URL parser removes dot segments).
    for (
      const name of [
        "..%2fsecret.txt",
        "docs%2f..%2f..%2fsecret.txt",
        "%2e%2e%2fsecret.txt",
        "..%5csecret.txt",
        "hello.txt%00",
        "%E0%A4%A",
      ]
    ) {
      const { response, text } = await fetchText(`${base}files/${name}`);
      assertEquals(response.status, 400, name);
      assert(!text.includes("top secret"), name);
    }
    for (
      const target of [
        "/files/../secret.txt",
        "/files/docs/../../secret.txt",
        "/files/%2e%2e/secret.txt",
        "/files/./../secret.txt",
      ]
    ) {
      const raw = await rawRequest(
        base,
        `GET ${target} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`,
      );
      assertMatch(raw, /^HTTP\/1\.1 (400|404) /, target);
      assert(!raw.includes("top secret"), target);
    }
    await stopsCleanly(api);
  });
});

Deno.test("http_api.ts without --root serves no files and needs no read permission", async () => {
  await using api = new Example("http_api.ts", ["0"]);
  const base = await api.url();
  const { response, body } = await fetchJson(`${base}files/deno.json`);
  assertEquals(response.status, 404);
  assertStringIncludes((body as { error: string }).error, "--root");
  await stopsCleanly(api);
});

Deno.test("http_api.ts exits 2 with the usage on bad arguments", async () => {
  for (
    const args of [["x"], ["8082", "--root"], ["--root="], ["--bogus"], [
      "1",
      "2",
    ]]
  ) {
    await refuses("http_api.ts", args);
  }
  const missing = await refuses(
    "http_api.ts",
    ["0", "--root", "no/such/dir"],
    ["--allow-read"],
  );
  assertStringIncludes(missing, "does not exist");
  const denied = await refuses("http_api.ts", ["0", "--root", "examples"]);
  assertStringIncludes(denied, "--allow-read=examples");
});
