// Copyright 2026 the @corothread/evthread authors. MIT license.

import {
  assert,
  assertEquals,
  assertGreaterOrEqual,
  assertLess,
  assertLessOrEqual,
  assertMatch,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import { serve, type ServeOptions, upgrade } from "../http.ts";
import { EvLoop } from "../mod.ts";
import {
  bytesOf,
  concat,
  curl,
  haveCurl,
  head,
  HOST,
  pseudoRandom,
  RawClient,
  startServer,
  textOf,
  urlOf,
  utf8,
  within,
} from "./_http_helpers.ts";

// ---------------------------------------------------------------------------
// The table: one raw request per case, the exact status, and for valid ones
// what the handler saw. Every rejected request must also end the connection.

interface Seen {
  method: string;
  url: string;
  headers: Headers;
  body: string;
}

interface Case {
  name: string;
  /** The request bytes, as a latin1 string. */
  request: string;
  status: number;
  /** Server options beyond the table's defaults. */
  options?: ServeOptions;
  /** The request is HEAD: the response has no body. */
  head?: boolean;
  /** 1xx responses expected before the final one. */
  interim?: number[];
  method?: string;
  url?: string;
  /** A request header the handler must see, with its exact value. */
  header?: [string, string];
  body?: string;
  /** The connection must close after this (valid) response. */
  closes?: boolean;
}

const H = "Host: example.com";
const TABLE_OPTIONS: ServeOptions = {
  maxBodyBytes: 1024,
  headerTimeout: 2000,
  bodyTimeout: 2000,
};

/** A head of exactly `size` bytes, CRLFCRLF included, with `fields` fields. */
function sizedHead(size: number, fields: number): string {
  const lines = [H];
  for (let i = 1; i < fields - 1; i++) lines.push(`X-F${i}: v`);
  const base = head("GET /big HTTP/1.1", ...lines, "X-Pad: ");
  const pad = size - base.length;
  if (pad < 0) throw new RangeError(`head too small for ${fields} fields`);
  return head("GET /big HTTP/1.1", ...lines, `X-Pad: ${"p".repeat(pad)}`);
}

function fieldsHead(fields: number): string {
  const lines = [H];
  for (let i = 1; i < fields; i++) lines.push(`X-F${i}: ${i}`);
  return head("GET /many HTTP/1.1", ...lines);
}

const CASES: Case[] = [
  // Valid requests.
  {
    name: "a GET in origin-form",
    request: head("GET /path?q=1 HTTP/1.1", H, "X-Test: yes"),
    status: 200,
    method: "GET",
    url: "http://example.com/path?q=1",
    header: ["x-test", "yes"],
    body: "",
  },
  {
    name: "a HEAD",
    request: head("HEAD /h HTTP/1.1", H),
    status: 200,
    head: true,
    method: "HEAD",
    url: "http://example.com/h",
  },
  {
    name: "a POST with Content-Length",
    request: head("POST /p HTTP/1.1", H, "Content-Length: 11") + "hello world",
    status: 200,
    method: "POST",
    header: ["content-length", "11"],
    body: "hello world",
  },
  {
    name: "a POST with Content-Length: 0",
    request: head("POST /p HTTP/1.1", H, "Content-Length: 0"),
    status: 200,
    method: "POST",
    body: "",
  },
  {
    name: "a chunked body with extensions and trailers",
    request: head("POST /c HTTP/1.1", H, "Transfer-Encoding: chunked") +
      "5;name=value\r\nhello\r\n" +
      '6 ; x="quoted"\r\n world\r\n' +
      "0;last\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n",
    status: 200,
    header: ["transfer-encoding", "chunked"],
    body: "hello world",
  },
  {
    name: "a chunked body with upper-case hex and leading zeros",
    request: head("POST /c HTTP/1.1", H, "Transfer-Encoding: Chunked") +
      "A\r\n0123456789\r\n0005\r\nabcde\r\n0\r\n\r\n",
    status: 200,
    body: "0123456789abcde",
  },
  {
    name: "HTTP/1.0 without Host",
    request: head("GET /old HTTP/1.0"),
    status: 200,
    method: "GET",
    closes: true,
  },
  {
    name: "an HTTP/1.0 POST with Content-Length",
    request: head("POST /old HTTP/1.0", "Content-Length: 4") + "data",
    status: 200,
    body: "data",
    closes: true,
  },
  {
    name: "an absolute-form target",
    request: head("GET http://example.com/abs?x=1 HTTP/1.1", H),
    status: 200,
    url: "http://example.com/abs?x=1",
  },
  {
    name: "OPTIONS *",
    request: head("OPTIONS * HTTP/1.1", H),
    status: 200,
    method: "OPTIONS",
    url: "http://example.com/*",
  },
  {
    name: "a CRLF before the request line",
    request: "\r\n" + head("GET /lead HTTP/1.1", H),
    status: 200,
    url: "http://example.com/lead",
  },
  {
    name: "two CRLFs before the request line",
    request: "\r\n\r\n" + head("GET /lead2 HTTP/1.1", H),
    status: 200,
    url: "http://example.com/lead2",
  },
  {
    name: "duplicate identical Content-Length fields",
    request:
      head("POST / HTTP/1.1", H, "Content-Length: 5", "Content-Length: 5") +
      "abcde",
    status: 200,
    body: "abcde",
  },
  {
    name: "a Content-Length list of identical values",
    request: head("POST / HTTP/1.1", H, "Content-Length: 5, 5") + "abcde",
    status: 200,
    body: "abcde",
  },
  {
    name: "Expect: 100-continue with the body",
    request:
      head("POST /e HTTP/1.1", H, "Expect: 100-continue", "Content-Length: 4") +
      "body",
    status: 200,
    interim: [100],
    body: "body",
  },
  {
    name: "128 header fields (the limit)",
    request: fieldsHead(128),
    status: 200,
    header: ["x-f127", "127"],
  },
  {
    name: "a head of exactly 65536 bytes",
    request: sizedHead(65_536, 100),
    status: 200,
    header: ["x-f98", "v"],
  },
  {
    name: "a target of exactly 8192 bytes",
    request: head(`GET /${"a".repeat(8191)} HTTP/1.1`, H),
    status: 200,
    url: `http://example.com/${"a".repeat(8191)}`,
  },
  {
    name: "lower-case field names",
    request: head("POST / HTTP/1.1", "host: example.com", "content-length: 3") +
      "abc",
    status: 200,
    body: "abc",
  },
  {
    name: "mixed-case field names",
    request: head("GET / HTTP/1.1", "hOsT: example.com", "X-MiXeD-CaSe: v"),
    status: 200,
    header: ["x-mixed-case", "v"],
  },
  {
    name: "tabs and spaces as OWS",
    request: head("GET / HTTP/1.1", H, "X-Tab:\t \tv1\tv2 \t"),
    status: 200,
    header: ["x-tab", "v1\tv2"],
  },
  {
    name: "obs-text in a field value",
    request: head("GET / HTTP/1.1", H, "X-Latin: caf\xe9 \xff"),
    status: 200,
    header: ["x-latin", "caf\u00e9 \u00ff"],
  },
  {
    name: "an empty field value",
    request: head("GET / HTTP/1.1", H, "X-Empty:"),
    status: 200,
    header: ["x-empty", ""],
  },
  {
    name: "an extension method",
    request: head("PURGE /x HTTP/1.1", H),
    status: 200,
    method: "PURGE",
  },
  {
    name: "HTTP/1.2 (a later 1.x)",
    request: head("GET / HTTP/1.2", H),
    status: 200,
  },
  {
    name: "a target with lenient visible characters",
    request: head('GET /a?b={"c"}|d HTTP/1.1', H),
    status: 200,
    url: 'http://example.com/a?b={"c"}|d',
  },
  {
    name: "a Content-Length body of exactly maxBodyBytes",
    request: head("POST / HTTP/1.1", H, "Content-Length: 1024") +
      "y".repeat(1024),
    status: 200,
    body: "y".repeat(1024),
  },
  {
    name: "a chunked body of exactly maxBodyBytes",
    request: head("POST / HTTP/1.1", H, "Transfer-Encoding: chunked") +
      "200\r\n" + "z".repeat(512) + "\r\n" +
      "200\r\n" + "z".repeat(512) + "\r\n0\r\n\r\n",
    status: 200,
    body: "z".repeat(1024),
  },
  {
    name: "Expect: 100-continue in HTTP/1.0 (ignored)",
    request:
      head("POST / HTTP/1.0", "Expect: 100-continue", "Content-Length: 2") +
      "ok",
    status: 200,
    interim: [],
    body: "ok",
    closes: true,
  },

  // Limits.
  {
    name: "a target of 8193 bytes",
    request: head(`GET /${"a".repeat(8192)} HTTP/1.1`, H),
    status: 414,
  },
  {
    name: "a request line over the head limit",
    request: head(`GET /${"a".repeat(70_000)} HTTP/1.1`, H),
    status: 414,
  },
  {
    name: "a head of 65537 bytes",
    request: sizedHead(65_537, 100),
    status: 431,
  },
  {
    name: "129 header fields",
    request: fieldsHead(129),
    status: 431,
  },
  {
    name: "a Content-Length over maxBodyBytes",
    request: head("POST / HTTP/1.1", H, "Content-Length: 1025") +
      "x".repeat(1025),
    status: 413,
  },
  {
    name: "a chunked body over maxBodyBytes",
    request: head("POST / HTTP/1.1", H, "Transfer-Encoding: chunked") +
      "200\r\n" + "x".repeat(512) + "\r\n" +
      "201\r\n" + "x".repeat(513) + "\r\n0\r\n\r\n",
    status: 413,
  },

  // Malformed request lines.
  {
    name: "a request line without a version",
    request: head("GET /", H),
    status: 400,
  },
  {
    name: "a method with a space",
    request: head("GE T / HTTP/1.1", H),
    status: 400,
  },
  {
    name: "two spaces after the method",
    request: head("GET  / HTTP/1.1", H),
    status: 400,
  },
  {
    name: "a space after the version",
    request: head("GET / HTTP/1.1 ", H),
    status: 400,
  },
  {
    name: "a request line starting with a space",
    request: head(" GET / HTTP/1.1", H),
    status: 400,
  },
  {
    name: "a lower-case protocol name",
    request: head("GET / http/1.1", H),
    status: 400,
  },
  {
    name: "a request line ended by a bare LF",
    request: "GET / HTTP/1.1\nHost: example.com\r\n\r\n",
    status: 400,
  },
  {
    name: "a request line ended by a bare CR",
    request: "GET / HTTP/1.1\rHost: example.com\r\n\r\n",
    status: 400,
  },
  {
    // A head whose lines all end in a bare LF has no CRLFCRLF: the server
    // still finds its end and answers 400 at once, not 408 at the header
    // timeout (RFC 9112 2.2 would also allow accepting bare LF).
    name: "a head with bare LF line ends only",
    request: "GET / HTTP/1.1\nHost: example.com\n\n",
    status: 400,
    options: { headerTimeout: 1000 },
  },
  {
    name: "a control character in the target",
    request: head("GET /a\x01b HTTP/1.1", H),
    status: 400,
  },
  {
    name: "a non-ASCII byte in the target",
    request: head("GET /caf\xe9 HTTP/1.1", H),
    status: 400,
  },
  {
    name: "HTTP/2.0",
    request: head("GET / HTTP/2.0", H),
    status: 505,
  },
  {
    name: "HTTP/3.0",
    request: head("GET / HTTP/3.0", H),
    status: 505,
  },
  {
    name: "the HTTP/2 connection preface",
    request: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    status: 505,
  },
  {
    name: "HTTP/0.9 with a version",
    request: head("GET / HTTP/0.9", H),
    status: 505,
  },

  // Framing (no request smuggling).
  {
    name: "Transfer-Encoding: gzip",
    request: head("POST / HTTP/1.1", H, "Transfer-Encoding: gzip") + "x",
    status: 501,
  },
  {
    name: "Transfer-Encoding: gzip, chunked",
    request: head("POST / HTTP/1.1", H, "Transfer-Encoding: gzip, chunked") +
      "0\r\n\r\n",
    status: 501,
  },
  {
    name: "chunked applied twice",
    request: head("POST / HTTP/1.1", H, "Transfer-Encoding: chunked, chunked") +
      "0\r\n\r\n",
    status: 400,
  },
  {
    name: "both Content-Length and Transfer-Encoding",
    request: head(
      "POST / HTTP/1.1",
      H,
      "Content-Length: 5",
      "Transfer-Encoding: chunked",
    ) + "0\r\n\r\n",
    status: 400,
  },
  {
    name: "Transfer-Encoding in HTTP/1.0",
    request: head("POST / HTTP/1.0", "Transfer-Encoding: chunked") +
      "0\r\n\r\n",
    status: 400,
  },
  {
    name: "differing duplicate Content-Length fields",
    request:
      head("POST / HTTP/1.1", H, "Content-Length: 5", "Content-Length: 6") +
      "abcdef",
    status: 400,
  },
  {
    name: "a Content-Length list of differing values",
    request: head("POST / HTTP/1.1", H, "Content-Length: 5, 6") + "abcdef",
    status: 400,
  },
  {
    name: "a non-numeric Content-Length",
    request: head("POST / HTTP/1.1", H, "Content-Length: abc"),
    status: 400,
  },
  {
    name: "a negative Content-Length",
    request: head("POST / HTTP/1.1", H, "Content-Length: -1"),
    status: 400,
  },
  {
    name: "a Content-Length with a plus sign",
    request: head("POST / HTTP/1.1", H, "Content-Length: +5") + "abcde",
    status: 400,
  },
  {
    name: "a Content-Length of 16 digits",
    request: head("POST / HTTP/1.1", H, "Content-Length: 1000000000000000"),
    status: 400,
  },
  {
    name: "a vertical tab before the transfer coding",
    request: head("POST / HTTP/1.1", H, "Transfer-Encoding:\x0bchunked") +
      "0\r\n\r\n",
    status: 400,
  },
  {
    name: "a chunk size of 13 hex digits",
    request: head("POST / HTTP/1.1", H, "Transfer-Encoding: chunked") +
      "1000000000000\r\nx\r\n0\r\n\r\n",
    status: 400,
  },
  {
    name: "a negative chunk size",
    request: head("POST / HTTP/1.1", H, "Transfer-Encoding: chunked") +
      "-1\r\nx\r\n0\r\n\r\n",
    status: 400,
  },
  {
    name: "a non-hex chunk size",
    request: head("POST / HTTP/1.1", H, "Transfer-Encoding: chunked") +
      "zz\r\nhello\r\n0\r\n\r\n",
    status: 400,
  },
  {
    name: "chunk data not followed by CRLF",
    request: head("POST / HTTP/1.1", H, "Transfer-Encoding: chunked") +
      "5\r\nhelloXX\r\n0\r\n\r\n",
    status: 400,
  },

  {
    name: "a malformed trailer field",
    request: head("POST / HTTP/1.1", H, "Transfer-Encoding: chunked") +
      "1\r\nx\r\n0\r\nno-colon\r\n\r\n",
    status: 400,
  },
  {
    name: "a folded trailer field",
    request: head("POST / HTTP/1.1", H, "Transfer-Encoding: chunked") +
      "1\r\nx\r\n0\r\nX-T: a\r\n b\r\n\r\n",
    status: 400,
  },
  {
    name: "a chunk extension over the chunk line limit",
    request: head("POST / HTTP/1.1", H, "Transfer-Encoding: chunked") +
      `1;${"e".repeat(5000)}\r\nx\r\n0\r\n\r\n`,
    status: 400,
  },

  // Malformed fields.
  {
    name: "obsolete line folding",
    request: head("GET / HTTP/1.1", H, "X-Fold: a", " b"),
    status: 400,
  },
  {
    name: "a space before the colon",
    request: head("GET / HTTP/1.1", "Host : example.com"),
    status: 400,
  },
  {
    name: "a control character in a field name",
    request: head("GET / HTTP/1.1", H, "X\x01Y: z"),
    status: 400,
  },
  {
    name: "a NUL in a field value",
    request: head("GET / HTTP/1.1", H, "X-A: a\x00b"),
    status: 400,
  },
  {
    name: "a DEL in a field value",
    request: head("GET / HTTP/1.1", H, "X-A: a\x7fb"),
    status: 400,
  },
  {
    name: "a bare LF inside the fields",
    request: head("GET / HTTP/1.1", H, "X-A: a\nX-B: b"),
    status: 400,
  },
  {
    name: "a tab before the colon",
    request: head("GET / HTTP/1.1", "Host\t: example.com"),
    status: 400,
  },
  {
    name: "a bare CR in a field value",
    request: head("GET / HTTP/1.1", H, "X-A: a\rb"),
    status: 400,
  },
  {
    name: "a field line without a colon",
    request: head("GET / HTTP/1.1", H, "NoColon"),
    status: 400,
  },
  {
    name: "an empty field name",
    request: head("GET / HTTP/1.1", H, ": v"),
    status: 400,
  },
  {
    name: "HTTP/1.1 without Host",
    request: head("GET / HTTP/1.1", "X-A: b"),
    status: 400,
  },
  {
    name: "HTTP/1.1 with two Host fields",
    request: head("GET / HTTP/1.1", H, "Host: other.example"),
    status: 400,
  },
  {
    name: "HTTP/1.0 with two Host fields",
    request: head("GET / HTTP/1.0", H, "Host: other.example"),
    status: 400,
  },
  {
    name: "an unsupported expectation",
    request: head("GET / HTTP/1.1", H, "Expect: telepathy"),
    status: 417,
  },
];

for (const c of CASES) {
  const valid = c.status < 300;
  Deno.test(`serve() answers ${c.status} to ${c.name}`, async () => {
    const seen: Seen[] = [];
    await using server = startServer(
      { ...TABLE_OPTIONS, ...c.options },
      async (request) => {
        const body = request.body === null ? "" : await request.text();
        seen.push({
          method: request.method,
          url: request.url,
          headers: request.headers,
          body,
        });
        return new Response("ok");
      },
    );
    await using client = await RawClient.connect(server.addr.port);
    const writing = client.writeLenient(c.request);
    const { interim, response } = await client.readFinal({
      head: c.head ?? false,
    });
    await writing;
    assertEquals(response.status, c.status, response.head);
    assertEquals(interim, c.interim ?? []);
    assertMatch(response.headers.get("date") ?? "", /GMT$/);
    if (!valid) {
      assertEquals(seen.length, 0, "the handler saw a rejected request");
      assertEquals(response.headers.get("connection"), "close");
      const { rest } = await client.readToEnd();
      assertEquals(rest, "", "bytes after the error response");
      return;
    }
    assertEquals(seen.length, 1);
    const s = seen[0]!;
    if (c.head) {
      assertEquals(response.body.byteLength, 0);
      assertEquals(response.headers.get("content-length"), "2");
    } else {
      assertEquals(response.text, "ok");
    }
    if (c.method !== undefined) assertEquals(s.method, c.method);
    if (c.url !== undefined) assertEquals(s.url, c.url);
    if (c.header !== undefined) {
      assertEquals(s.headers.get(c.header[0]), c.header[1]);
    }
    if (c.body !== undefined) assertEquals(s.body, c.body);
    if (c.closes) {
      assertEquals(response.headers.get("connection"), "close");
      assertEquals((await client.readToEnd()).rest, "");
    } else {
      assertEquals(response.headers.get("connection"), undefined);
    }
  });
}

Deno.test("serve() answers 400 to a Host or target that is not a valid URL", async () => {
  let calls = 0;
  await using server = startServer({}, (request) => {
    calls++;
    return new Response(new URL(request.url).pathname);
  });
  for (
    const [line, host] of <[string, string][]> [
      ["GET / HTTP/1.1", "Host: a:99999"],
      ["GET / HTTP/1.1", "Host: %zz"],
      ["GET / HTTP/1.1", "Host: [1:2]"],
      ["GET http://%zz/ HTTP/1.1", "Host: x"],
    ]
  ) {
    await using client = await RawClient.connect(server.addr.port);
    await client.write(head(line, host));
    const response = await client.readResponse();
    assertEquals(response.status, 400, `${line} / ${host}`);
  }
  assertEquals(calls, 0);
});

Deno.test("serve() answers 400 at once to a chunk line ended by a bare LF", async () => {
  await using server = startServer(
    { bodyTimeout: 30_000 },
    async (request) => new Response(await request.text()),
  );
  await using client = await RawClient.connect(server.addr.port);
  await client.write(
    head("POST / HTTP/1.1", H, "Transfer-Encoding: chunked") + "5\nhello\n",
  );
  const response = await client.readResponse({ timeout: 10_000 });
  assertEquals(response.status, 400);
});

// ---------------------------------------------------------------------------
// Connection management.

const HTTP_DATE =
  /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/;

/** Answers with the method, path and body it got. */
async function echo(request: Request): Promise<Response> {
  const body = request.body === null ? "" : await request.text();
  return new Response(
    `${request.method} ${new URL(request.url).pathname} ${body}`,
  );
}

/** Replaces console.error while in scope, keeping what was logged. */
function quietErrors(): { calls: unknown[][] } & Disposable {
  const original = console.error;
  const calls: unknown[][] = [];
  console.error = (...args: unknown[]) => {
    calls.push(args);
  };
  return {
    calls,
    [Symbol.dispose]() {
      console.error = original;
    },
  };
}

Deno.test("serve() keeps an HTTP/1.1 connection alive by default", async () => {
  await using server = startServer({}, echo);
  await using client = await RawClient.connect(server.addr.port);
  await client.write(head("GET /a HTTP/1.1", H));
  const first = await client.readResponse();
  assertEquals(first.text, "GET /a ");
  assertEquals(first.headers.get("connection"), undefined);
  await client.write(head("POST /b HTTP/1.1", H, "Content-Length: 2") + "hi");
  const second = await client.readResponse();
  assertEquals(second.text, "POST /b hi");
  assertEquals(server.loop.stats.accepted, 1);
});

Deno.test("serve() closes after the response to Connection: close", async () => {
  await using server = startServer({}, echo);
  await using client = await RawClient.connect(server.addr.port);
  await client.write(head("GET /a HTTP/1.1", H, "Connection: close"));
  const response = await client.readResponse();
  assertEquals(response.text, "GET /a ");
  assertEquals(response.headers.get("connection"), "close");
  const { rest, end } = await client.readToEnd();
  assertEquals([rest, end], ["", "eof"]);
});

Deno.test("serve() closes an HTTP/1.0 connection after one response", async () => {
  await using server = startServer({}, echo);
  await using client = await RawClient.connect(server.addr.port);
  await client.write(head("GET /a HTTP/1.0"));
  const response = await client.readResponse();
  assertEquals(response.statusLine, "HTTP/1.1 200 OK");
  assertEquals(response.headers.get("connection"), "close");
  assertEquals((await client.readToEnd()).rest, "");
});

Deno.test("serve() keeps an HTTP/1.0 connection with Connection: keep-alive", async () => {
  await using server = startServer({}, echo);
  await using client = await RawClient.connect(server.addr.port);
  await client.write(head("GET /a HTTP/1.0", "Connection: keep-alive"));
  const first = await client.readResponse();
  assertEquals(first.text, "GET /a ");
  assertEquals(first.headers.get("connection"), "keep-alive");
  await client.write(head("GET /b HTTP/1.0", "Connection: Keep-Alive"));
  const second = await client.readResponse();
  assertEquals(second.text, "GET /b ");
  assertEquals(second.headers.get("connection"), "keep-alive");
  await client.write(head("GET /c HTTP/1.0"));
  const third = await client.readResponse();
  assertEquals(third.text, "GET /c ");
  assertEquals(third.headers.get("connection"), "close");
  assertEquals((await client.readToEnd()).rest, "");
});

Deno.test("serve() streams to an HTTP/1.0 client until close, not chunked", async () => {
  await using server = startServer(
    {},
    () => new Response(ReadableStream.from(["a", "b", "c"].map(utf8))),
  );
  await using client = await RawClient.connect(server.addr.port);
  await client.write(head("GET / HTTP/1.0", "Connection: keep-alive"));
  const response = await client.readResponse();
  assertEquals(response.chunked, false);
  assertEquals(response.headers.get("content-length"), undefined);
  assertEquals(response.headers.get("connection"), "close");
  assertEquals(response.text, "abc");
  assertEquals(client.end, "eof");
});

Deno.test("serve() answers pipelined requests in order", async () => {
  await using server = startServer({}, async (request) => {
    const path = new URL(request.url).pathname;
    // The first request is the slowest to answer.
    if (path === "/1") await new Promise((r) => setTimeout(r, 50));
    return echo(request);
  });
  await using client = await RawClient.connect(server.addr.port);
  await client.write(
    head("POST /1 HTTP/1.1", H, "Content-Length: 3") + "one" +
      head("GET /2 HTTP/1.1", H) +
      head("POST /3 HTTP/1.1", H, "Transfer-Encoding: chunked") +
      "5\r\nthree\r\n0\r\n\r\n",
  );
  const texts = [];
  for (let i = 0; i < 3; i++) texts.push((await client.readResponse()).text);
  assertEquals(texts, ["POST /1 one", "GET /2 ", "POST /3 three"]);
  assertEquals(server.loop.stats.accepted, 1);
});

Deno.test("serve() streams a request body to the handler as it arrives", async () => {
  const first = Promise.withResolvers<string>();
  await using server = startServer({}, async (request) => {
    const reader = request.body!.getReader();
    const piece = await reader.read();
    first.resolve(textOf(piece.value!));
    let rest = "";
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      rest += textOf(value);
    }
    return new Response(`first=${textOf(piece.value!)} rest=${rest}`);
  });
  await using client = await RawClient.connect(server.addr.port);
  await client.write(
    head("POST / HTTP/1.1", H, "Content-Length: 10") + "hello",
  );
  // The handler has the first half while the client has not sent the rest.
  assertEquals(await within(first.promise, "the first piece"), "hello");
  await client.write("world");
  assertEquals((await client.readResponse()).text, "first=hello rest=world");
});

Deno.test("serve() hands out body pieces sized to what arrived", async () => {
  const sizes: [number, number][] = [];
  const got = Promise.withResolvers<void>();
  let next = Promise.withResolvers<void>();
  await using server = startServer({}, async (request) => {
    const reader = request.body!.getReader();
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      sizes.push([value.byteLength, value.buffer.byteLength]);
      next.resolve();
    }
    got.resolve();
    return new Response("ok");
  });
  await using client = await RawClient.connect(server.addr.port);
  await client.write(head("POST / HTTP/1.1", H, "Content-Length: 30"));
  for (let i = 0; i < 10; i++) {
    next = Promise.withResolvers<void>();
    await client.write("abc");
    await within(next.promise, "the handler to read a piece");
  }
  await within(got.promise, "the body to end");
  assertEquals((await client.readResponse()).status, 200);
  for (const [length, backing] of sizes) {
    // A trickled byte must not hold a 64 KiB buffer.
    assert(backing <= Math.max(2 * length, 4096), `${length} in ${backing}`);
  }
});

Deno.test("serve() streams a chunked request body piece by piece", async () => {
  const pieces: string[] = [];
  const gotFirst = Promise.withResolvers<void>();
  await using server = startServer({}, async (request) => {
    for await (const piece of request.body!) {
      pieces.push(textOf(piece));
      gotFirst.resolve();
    }
    return new Response(pieces.join(""));
  });
  await using client = await RawClient.connect(server.addr.port);
  await client.write(
    head("POST / HTTP/1.1", H, "Transfer-Encoding: chunked") + "3\r\nabc\r\n",
  );
  await within(gotFirst.promise, "the first chunk");
  assertEquals(pieces, ["abc"]);
  await client.write("2\r\nde\r\n0\r\n\r\n");
  assertEquals((await client.readResponse()).text, "abcde");
});

Deno.test("serve() drains an unread body before the next request", async () => {
  await using server = startServer(
    {},
    (request) => new Response(new URL(request.url).pathname),
  );
  await using client = await RawClient.connect(server.addr.port);
  await client.write(
    head("POST /a HTTP/1.1", H, "Content-Length: 1000") + "x".repeat(1000),
  );
  assertEquals((await client.readResponse()).text, "/a");
  await client.write(
    head("POST /b HTTP/1.1", H, "Transfer-Encoding: chunked") +
      "10\r\n0123456789abcdef\r\n0\r\nX-T: 1\r\n\r\n",
  );
  assertEquals((await client.readResponse()).text, "/b");
  await client.write(head("GET /c HTTP/1.1", H));
  assertEquals((await client.readResponse()).text, "/c");
});

Deno.test("serve() closes rather than drain a large unread body", async () => {
  await using server = startServer({}, () => new Response("early"));
  await using client = await RawClient.connect(server.addr.port);
  const writing = client.writeLenient(
    concat([
      bytesOf(head("POST / HTTP/1.1", H, "Content-Length: 8000000")),
      new Uint8Array(1_000_000),
    ]),
  );
  assertEquals((await client.readResponse()).text, "early");
  await client.readToEnd();
  await writing;
});

Deno.test("serve() closes when an unread body stalls after the response", async () => {
  await using server = startServer(
    { bodyTimeout: 300 },
    () => new Response("early"),
  );
  await using client = await RawClient.connect(server.addr.port);
  await client.write(head("POST / HTTP/1.1", H, "Content-Length: 10") + "abc");
  assertEquals((await client.readResponse()).text, "early");
  assertEquals((await client.readToEnd()).rest, "");
});

Deno.test("serve() fails a body read made after the response was sent", async () => {
  const late = Promise.withResolvers<unknown>();
  await using server = startServer({}, (request) => {
    setTimeout(() => {
      request.text().then(late.resolve, late.resolve);
    }, 50);
    return new Response("early");
  });
  await using client = await RawClient.connect(server.addr.port);
  await client.write(
    head("POST / HTTP/1.1", H, "Content-Length: 10") + "0123456789",
  );
  assertEquals((await client.readResponse()).text, "early");
  const outcome = await within(late.promise, "the late read");
  assert(outcome instanceof TypeError, String(outcome));
});

// ---------------------------------------------------------------------------
// Expect: 100-continue.

Deno.test("serve() sends 100 Continue once the handler reads the body", async () => {
  const entered = Promise.withResolvers<void>();
  const go = Promise.withResolvers<void>();
  let reading = false;
  await using server = startServer({}, async (request) => {
    entered.resolve();
    await go.promise;
    reading = true;
    return new Response(`got ${await request.text()}`);
  });
  await using client = await RawClient.connect(server.addr.port);
  await client.write(
    head("POST / HTTP/1.1", H, "Expect: 100-continue", "Content-Length: 4"),
  );
  // A client that waits for the 100 before sending the body.
  let early = false;
  const interimRead = client.readResponse();
  interimRead.then(() => early = !reading, () => {});
  await within(entered.promise, "the handler");
  // A window for an early 100 to (wrongly) arrive.
  await new Promise((r) => setTimeout(r, 100));
  assert(!early, "100 Continue came before the handler read the body");
  go.resolve();
  const interim = await interimRead;
  assert(!early, "100 Continue came before the handler read the body");
  assertEquals(interim.head, "HTTP/1.1 100 Continue\r\n\r\n");
  await client.write("body");
  const response = await client.readResponse();
  assertEquals(response.status, 200);
  assertEquals(response.text, "got body");
  // The connection stays usable, and a request without Expect gets no 100.
  await client.write(head("POST / HTTP/1.1", H, "Content-Length: 2") + "hi");
  const { interim: none, response: next } = await client.readFinal();
  assertEquals([none, next.text], [[], "got hi"]);
});

Deno.test("serve() sends no 100 Continue when the handler ignores the body", async () => {
  await using server = startServer({}, () => new Response("no thanks"));
  await using client = await RawClient.connect(server.addr.port);
  await client.write(
    head("PUT / HTTP/1.1", H, "Expect: 100-continue", "Content-Length: 4"),
  );
  const response = await client.readResponse();
  assertEquals(response.status, 200);
  assertEquals(response.text, "no thanks");
  // The body was never asked for: the server must not wait for it.
  assertEquals(response.headers.get("connection"), "close");
  assertEquals((await client.readToEnd()).rest, "");
});

Deno.test("serve() sends no 100 Continue once the response has begun", async () => {
  await using server = startServer({}, (request) => {
    const encoder = new TextEncoder();
    let sentHello = false;
    const reader = request.body!.getReader();
    // highWaterMark 0: the body is read only after the head has gone out.
    return new Response(
      new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (!sentHello) {
            sentHello = true;
            controller.enqueue(encoder.encode("hello "));
            return;
          }
          const { value, done } = await reader.read();
          if (done) controller.close();
          else controller.enqueue(value);
        },
      }, { highWaterMark: 0 }),
    );
  });
  await using client = await RawClient.connect(server.addr.port);
  await client.write(
    head(
      "POST / HTTP/1.1",
      H,
      "Expect: 100-continue",
      "Content-Length: 5",
      "Connection: close",
    ) + "world",
  );
  const { rest } = await client.readToEnd();
  const final = rest.indexOf("HTTP/1.1 200");
  assert(final >= 0, rest);
  // A 100 may come before the final response, never inside it.
  assert(!rest.slice(final).includes("100 Continue"), rest);
  assertStringIncludes(rest.slice(final), "6\r\nhello \r\n5\r\nworld\r\n0\r\n");
});

// ---------------------------------------------------------------------------
// Responses.

Deno.test("serve() sends fixed bodies with content-length", async () => {
  await using server = startServer({}, (request) => {
    const path = new URL(request.url).pathname;
    if (path === "/bytes") return new Response(new Uint8Array([1, 2, 3]));
    if (path === "/empty") return new Response("");
    if (path === "/null") return new Response(null);
    return new Response("Hello, World!", { headers: { "x-a": "b" } });
  });
  const response = await fetch(urlOf(server, "/"));
  assertEquals(await response.text(), "Hello, World!");
  assertEquals(response.headers.get("content-length"), "13");
  assertEquals(response.headers.get("transfer-encoding"), null);
  assertEquals(response.headers.get("x-a"), "b");
  await using client = await RawClient.connect(server.addr.port);
  for (
    const [path, length] of [["/bytes", "3"], ["/empty", "0"], ["/null", "0"]]
  ) {
    await client.write(head(`GET ${path} HTTP/1.1`, H));
    const raw = await client.readResponse();
    assertEquals(raw.headers.get("content-length"), length, path);
    assertEquals(raw.chunked, false);
  }
});

Deno.test("serve() streams ReadableStream bodies chunked, byte-exact", async () => {
  const parts = Array.from(
    { length: 64 },
    (_, i) => pseudoRandom(i + 1, (i * 7919) % 20_000 + 1),
  );
  const expected = concat(parts);
  await using server = startServer({}, () =>
    new Response(
      new ReadableStream<Uint8Array>({
        async pull(controller) {
          const next = parts.shift();
          await Promise.resolve();
          if (next === undefined) controller.close();
          else controller.enqueue(next.slice());
        },
      }),
    ));
  const response = await fetch(urlOf(server));
  assertEquals(response.headers.get("content-length"), null);
  const got = new Uint8Array(await response.arrayBuffer());
  assertEquals(got.byteLength, expected.byteLength);
  assert(got.every((b, i) => b === expected[i]), "the bytes differ");
});

Deno.test("serve() frames a streamed body with transfer-encoding: chunked", async () => {
  await using server = startServer(
    {},
    () => new Response(ReadableStream.from(["ab", "", "cde", "f"].map(utf8))),
  );
  await using client = await RawClient.connect(server.addr.port);
  await client.write(head("GET / HTTP/1.1", H));
  const response = await client.readResponse();
  assertEquals(response.headers.get("transfer-encoding"), "chunked");
  assertEquals(response.headers.get("content-length"), undefined);
  assert(response.chunked);
  assertEquals(response.text, "abcdef");
  // The last chunk ended the response: the connection is reusable.
  await client.write(head("GET / HTTP/1.1", H));
  assertEquals((await client.readResponse()).text, "abcdef");
});

Deno.test("serve() stops pulling a streamed body while the client does not read", async () => {
  const CHUNK = 65_536;
  // 128 MiB: far beyond what the socket buffers of a client that does not
  // read can take (about 4 MiB here), yet bounded if backpressure fails.
  const CAP = 2048 * CHUNK;
  let pulled = 0;
  const started = Promise.withResolvers<void>();
  await using server = startServer({}, () =>
    new Response(
      new ReadableStream<Uint8Array>({
        pull(controller) {
          started.resolve();
          if (pulled >= CAP) return controller.close();
          pulled += CHUNK;
          controller.enqueue(new Uint8Array(CHUNK));
        },
      }, { highWaterMark: 0 }),
    ));
  const client = await RawClient.connect(server.addr.port);
  try {
    await client.write(head("GET / HTTP/1.1", H));
    await within(started.promise, "the stream to start");
    // Wait until pulling stalls (the socket is full), bounded.
    let last = -1;
    await within(
      (async () => {
        while (pulled !== last) {
          last = pulled;
          await new Promise((r) => setTimeout(r, 100));
        }
      })(),
      "pulling to stall",
    );
    assertLessOrEqual(pulled, CAP / 2, `pulled ${pulled} bytes`);
  } finally {
    await client.close();
  }
});

Deno.test("serve() answers HEAD with the fields and no body", async () => {
  await using server = startServer({}, (request) => {
    if (new URL(request.url).pathname === "/stream") {
      return new Response(ReadableStream.from(["a", "b"].map(utf8)));
    }
    if (new URL(request.url).pathname === "/sized") {
      return new Response(null, { headers: { "content-length": "42" } });
    }
    return new Response("hello", { headers: { "content-type": "text/x" } });
  });
  await using client = await RawClient.connect(server.addr.port);
  await client.write(head("HEAD / HTTP/1.1", H));
  const headResponse = await client.readResponse({ head: true });
  assertEquals(headResponse.status, 200);
  assertEquals(headResponse.headers.get("content-length"), "5");
  assertEquals(headResponse.headers.get("content-type"), "text/x");
  await client.write(head("HEAD /stream HTTP/1.1", H));
  const streamed = await client.readResponse({ head: true });
  assertEquals(streamed.headers.get("transfer-encoding"), "chunked");
  await client.write(head("HEAD /sized HTTP/1.1", H));
  const sized = await client.readResponse({ head: true });
  assertEquals(sized.headers.get("content-length"), "42");
  // No body bytes came: the next response starts right away.
  await client.write(head("GET / HTTP/1.1", H));
  const get = await client.readResponse();
  assertEquals(get.text, "hello");
  assertEquals(client.unread, "");
  const response = await fetch(urlOf(server), { method: "HEAD" });
  assertEquals(response.status, 200);
  assertEquals(response.headers.get("content-length"), "5");
  assertEquals(await response.text(), "");
});

Deno.test("serve() answers HEAD on a stream that has produced nothing", async () => {
  await using server = startServer(
    {},
    () => new Response(new ReadableStream<Uint8Array>({ pull() {} })),
  );
  await using client = await RawClient.connect(server.addr.port);
  await client.write(head("HEAD / HTTP/1.1", H));
  const response = await client.readResponse({ head: true, timeout: 5000 });
  assertEquals(response.status, 200);
});

Deno.test("serve() sends 204 and 304 without a body", async () => {
  await using server = startServer({}, (request) => {
    const status = Number(new URL(request.url).pathname.slice(1));
    return new Response(null, { status, headers: { etag: '"x"' } });
  });
  await using client = await RawClient.connect(server.addr.port);
  for (const status of [204, 304]) {
    await client.write(head(`GET /${status} HTTP/1.1`, H));
    const response = await client.readResponse();
    assertEquals(response.status, status);
    assertEquals(response.headers.get("transfer-encoding"), undefined);
    assertEquals(response.headers.get("etag"), '"x"');
    if (status === 204) {
      assertEquals(response.headers.get("content-length"), undefined);
    }
  }
  await client.write(head("GET /200 HTTP/1.1", H));
  const ok = await client.readResponse();
  assertEquals(ok.status, 200);
  assertEquals(client.unread, "");
});

Deno.test("serve() sets a Date field unless the handler did", async () => {
  await using server = startServer(
    {},
    (request) =>
      new URL(request.url).pathname === "/own"
        ? new Response("x", {
          headers: { date: "Thu, 01 Jan 1970 00:00:00 GMT" },
        })
        : new Response("x"),
  );
  const response = await fetch(urlOf(server));
  await response.body?.cancel();
  assertMatch(response.headers.get("date")!, HTTP_DATE);
  const own = await fetch(urlOf(server, "/own"));
  await own.body?.cancel();
  assertEquals(own.headers.get("date"), "Thu, 01 Jan 1970 00:00:00 GMT");
});

Deno.test("serve() lets a handler set status text and repeated fields", async () => {
  await using server = startServer({}, () => {
    const headers = new Headers();
    headers.append("set-cookie", "a=1");
    headers.append("set-cookie", "b=2");
    headers.set("connection", "upgrade"); // framing: the server's own
    headers.set("content-length", "999");
    return new Response("abc", { status: 201, statusText: "Made", headers });
  });
  await using client = await RawClient.connect(server.addr.port);
  await client.write(head("GET / HTTP/1.1", H));
  const response = await client.readResponse();
  assertEquals(response.statusLine, "HTTP/1.1 201 Made");
  assertEquals(response.headers.get("set-cookie"), "a=1, b=2");
  assertEquals(response.headers.get("content-length"), "3");
  assertEquals(response.headers.get("connection"), undefined);
  assertEquals(response.text, "abc");
});

Deno.test("serve() writes obs-text field values one byte a char", async () => {
  await using server = startServer(
    {},
    (request) =>
      new Response("x", {
        headers: { "x-echo": request.headers.get("x-latin") ?? "" },
      }),
  );
  await using client = await RawClient.connect(server.addr.port);
  await client.write(head("GET / HTTP/1.1", H, "X-Latin: caf\xe9"));
  const response = await client.readResponse();
  assertEquals(response.headers.get("x-echo"), "caf\xe9");
});

Deno.test("serve() ignores requests pipelined after Connection: close", async () => {
  const paths: string[] = [];
  await using server = startServer({}, (request) => {
    paths.push(new URL(request.url).pathname);
    return new Response("x");
  });
  await using client = await RawClient.connect(server.addr.port);
  await client.write(
    head("GET /1 HTTP/1.1", H, "Connection: close") +
      head("GET /2 HTTP/1.1", H),
  );
  const response = await client.readResponse();
  assertEquals(response.headers.get("connection"), "close");
  assertEquals((await client.readToEnd()).rest, "");
  assertEquals(paths, ["/1"]);
});

Deno.test("serve() gives handlers remoteAddr and a completed promise", async () => {
  const infos: { addr: Deno.NetAddr; completed: Promise<void> }[] = [];
  await using server = startServer({}, (_request, info) => {
    infos.push({ addr: info.remoteAddr, completed: info.completed });
    return new Response(ReadableStream.from(["a", "b"].map(utf8)));
  });
  await using client = await RawClient.connect(server.addr.port);
  await client.write(head("GET / HTTP/1.1", H));
  assertEquals((await client.readResponse()).text, "ab");
  const { addr, completed } = infos[0]!;
  await within(completed, "completed");
  assertEquals(addr.hostname, HOST);
  assertEquals(addr.port, client.conn.localAddr.port);
});

Deno.test("serve() does not abort request.signal after a full response", async () => {
  const signals: AbortSignal[] = [];
  await using server = startServer({}, (request) => {
    signals.push(request.signal);
    return new Response("x");
  });
  await using client = await RawClient.connect(server.addr.port);
  for (let i = 0; i < 2; i++) {
    await client.write(head("GET / HTTP/1.1", H));
    assertEquals((await client.readResponse()).text, "x");
  }
  assertEquals(signals.map((s) => s.aborted), [false, false]);
});

Deno.test("serve() gives handlers Requests that behave like native ones", async () => {
  const results: unknown[] = [];
  await using server = startServer({}, async (request) => {
    results.push(request instanceof Request);
    results.push(Object.prototype.toString.call(request));
    const clone = request.clone();
    results.push(clone instanceof Request, clone.url, clone.method);
    results.push(await clone.text());
    const form = await request.formData();
    results.push(form.get("a"), form.get("b"), request.bodyUsed);
    await assertRejects(() => request.text(), TypeError);
    return new Response("ok");
  });
  const response = await fetch(urlOf(server, "/form?x=1"), {
    method: "POST",
    body: new URLSearchParams({ a: "1", b: "two words" }),
  });
  assertEquals(await response.text(), "ok");
  assertEquals(results, [
    true,
    "[object Request]",
    true,
    `${urlOf(server, "/form?x=1")}`,
    "POST",
    "a=1&b=two+words",
    "1",
    "two words",
    true,
  ]);
});

Deno.test("serve() closes after a response whose handler set Connection: close", async () => {
  // The server writes the `connection` field itself but honours a handler's
  // `close`: the connection ends after the response, as with Deno.serve
  // (hyper), node:http and Go.
  await using server = startServer(
    {},
    () => new Response("bye", { headers: { connection: "close" } }),
  );
  await using client = await RawClient.connect(server.addr.port);
  await client.write(head("GET / HTTP/1.1", H));
  const response = await client.readResponse();
  assertEquals(response.text, "bye");
  assertEquals(response.headers.get("connection"), "close");
  assertEquals((await client.readToEnd(1500)).rest, "");
});

Deno.test("serve() answers 500 to Response.error()", async () => {
  // Response.error() has status 0, which no status line can carry: the
  // server treats it as a handler failure, not as a response to send.
  using _log = quietErrors();
  await using server = startServer({}, () => Response.error());
  await using client = await RawClient.connect(server.addr.port);
  await client.write(head("GET / HTTP/1.1", H));
  const response = await client.readResponse({ timeout: 1500 });
  assertEquals(response.status, 500, response.head);
});

Deno.test("serve() closes without a response when the returned body was used", async () => {
  // Nothing was sent yet, so a 500 would be possible; the server closes the
  // connection instead (and logs nothing).
  await using server = startServer({}, async () => {
    const response = new Response("x");
    await response.text();
    return response;
  });
  await using client = await RawClient.connect(server.addr.port);
  await client.write(head("GET / HTTP/1.1", H));
  const { rest } = await client.readToEnd();
  assert(!rest.startsWith("HTTP/1.1 200"), `complete-looking: ${rest}`);
});

// ---------------------------------------------------------------------------
// Disconnects and failing streams.

Deno.test("serve() aborts request.signal when the client disconnects", async () => {
  const entered = Promise.withResolvers<void>();
  const aborted = Promise.withResolvers<unknown>();
  await using server = startServer({}, async (request) => {
    const signal = request.signal;
    entered.resolve();
    await new Promise((resolve) =>
      signal.addEventListener("abort", resolve, { once: true })
    );
    aborted.resolve(signal.reason);
    return new Response("too late");
  });
  const client = await RawClient.connect(server.addr.port);
  await client.write(head("GET / HTTP/1.1", H));
  await within(entered.promise, "the handler");
  await client.close();
  const reason = await within(aborted.promise, "request.signal to abort");
  assert(reason instanceof DOMException, String(reason));
  assertEquals(reason.name, "AbortError");
});

Deno.test("serve() aborts request.signal when a client with an unread body disconnects", async () => {
  const entered = Promise.withResolvers<void>();
  const aborted = Promise.withResolvers<unknown>();
  await using server = startServer({}, async (request) => {
    const signal = request.signal;
    entered.resolve();
    let timer: ReturnType<typeof setTimeout> | undefined;
    await new Promise((resolve) => {
      signal.addEventListener("abort", resolve, { once: true });
      timer = setTimeout(resolve, 1500); // let the test end if it never aborts
    });
    clearTimeout(timer);
    aborted.resolve(signal.aborted ? signal.reason : undefined);
    return new Response("too late");
  });
  const client = await RawClient.connect(server.addr.port);
  await client.write(head("POST / HTTP/1.1", H, "Content-Length: 5") + "hello");
  await within(entered.promise, "the handler");
  await client.close();
  const reason = await within(aborted.promise, "the handler to end");
  assert(reason instanceof DOMException, `not aborted: ${reason}`);
  assertEquals(reason.name, "AbortError");
});

for (const size of [20_000, 60_000]) {
  Deno.test(`serve() aborts request.signal when a client leaves ${size} unread body bytes behind`, async () => {
    const entered = Promise.withResolvers<void>();
    const aborted = Promise.withResolvers<string>();
    await using server = startServer({}, async (request) => {
      request.signal.addEventListener(
        "abort",
        () => aborted.resolve(String(request.signal.reason)),
        { once: true },
      );
      entered.resolve();
      await aborted.promise;
      return new Response("late");
    });
    const client = await RawClient.connect(server.addr.port);
    await client.write(
      head("POST / HTTP/1.1", H, `Content-Length: ${size + 1000}`) +
        "x".repeat(size),
    );
    await within(entered.promise, "the handler");
    await client.close();
    assertStringIncludes(
      await within(aborted.promise, "request.signal to abort"),
      "disconnected",
    );
  });
}

Deno.test("serve() aborts request.signal when the client leaves mid-body", async () => {
  const aborted = Promise.withResolvers<unknown>();
  const readFailed = Promise.withResolvers<unknown>();
  const firstPiece = Promise.withResolvers<void>();
  await using server = startServer({}, async (request) => {
    const signal = request.signal;
    signal.addEventListener("abort", () => aborted.resolve(signal.reason), {
      once: true,
    });
    const reader = request.body!.getReader();
    await reader.read();
    firstPiece.resolve();
    try {
      while (!(await reader.read()).done);
    } catch (error) {
      readFailed.resolve(error);
    }
    return new Response("too late");
  });
  const client = await RawClient.connect(server.addr.port);
  await client.write(head("POST / HTTP/1.1", H, "Content-Length: 100") + "abc");
  await within(firstPiece.promise, "the first piece");
  await client.close();
  await within(readFailed.promise, "the body read to fail");
  const reason = await within(aborted.promise, "request.signal to abort", 1500);
  assert(reason instanceof DOMException);
});

Deno.test("serve() cuts the connection when a streamed body errors midway", async () => {
  const completed = Promise.withResolvers<{ promise: Promise<void> }>();
  await using server = startServer({}, (_request, info) => {
    completed.resolve({ promise: info.completed });
    return new Response(
      new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(utf8("part1"));
          controller.enqueue(utf8("part2"));
        },
        pull(controller) {
          controller.error(new Error("the source failed"));
        },
      }),
    );
  });
  await using client = await RawClient.connect(server.addr.port);
  await client.write(head("GET / HTTP/1.1", H));
  const { rest } = await client.readToEnd();
  assertStringIncludes(rest, "transfer-encoding: chunked\r\n");
  assertStringIncludes(rest, "5\r\npart1\r\n5\r\npart2\r\n");
  assert(
    !rest.endsWith("0\r\n\r\n"),
    `complete-looking: ${JSON.stringify(rest)}`,
  );
  assert(!rest.includes("\r\n0\r\n"), "a last chunk was sent");
  const { promise } = await completed.promise;
  await assertRejects(() => promise);
});

Deno.test("serve() makes fetch's body read reject when a streamed body errors", async () => {
  await using server = startServer({}, () => {
    let n = 0;
    return new Response(
      new ReadableStream<Uint8Array>({
        pull(controller) {
          if (n++ < 3) controller.enqueue(new Uint8Array(1000).fill(65));
          else controller.error(new Error("the source failed"));
        },
      }),
    );
  });
  const response = await fetch(urlOf(server));
  assertEquals(response.status, 200);
  await assertRejects(() => response.arrayBuffer());
});

// ---------------------------------------------------------------------------
// Upgrade.

Deno.test("upgrade() hands the connection to a line protocol after 101", async () => {
  await using server = startServer(
    {},
    (request) =>
      upgrade(request, async (socket) => {
        while (true) {
          const line = await socket.readLine({ timeout: 5000 });
          if (line === null) return;
          if (line === "QUIT") {
            await socket.send(utf8("BYE\n"));
            return;
          }
          await socket.send(utf8(`ECHO ${line.toUpperCase()}\n`));
        }
      }, { headers: { "x-proto": "line/1" } }),
  );
  await using client = await RawClient.connect(server.addr.port);
  await client.write(
    head("GET /chat HTTP/1.1", H, "Connection: Upgrade", "Upgrade: line/1") +
      "early\n",
  );
  const response = await client.readResponse();
  assertEquals(response.statusLine, "HTTP/1.1 101 Switching Protocols");
  assertEquals(response.headers.get("upgrade"), "line/1");
  assertEquals(response.headers.get("connection")?.toLowerCase(), "upgrade");
  assertEquals(response.headers.get("x-proto"), "line/1");
  assertEquals(await client.readLineLF(), "ECHO EARLY");
  await client.write("hello\n");
  assertEquals(await client.readLineLF(), "ECHO HELLO");
  await client.write("QUIT\n");
  assertEquals(await client.readLineLF(), "BYE");
  assertEquals(await client.readLineLF(), null);
});

Deno.test("upgrade() throws for a request that did not ask to upgrade", async () => {
  let thrown: unknown;
  await using server = startServer({}, (request) => {
    thrown = assertThrows(() => upgrade(request, () => {}), TypeError);
    return new Response("plain");
  });
  const response = await fetch(urlOf(server));
  assertEquals(await response.text(), "plain");
  assert(thrown instanceof TypeError);
  assertThrows(
    () => upgrade(new Request("http://x/"), () => {}),
    TypeError,
  );
});

Deno.test("serve() does not upgrade HTTP/1.0 requests nor requests with a body", async () => {
  using _log = quietErrors();
  await using server = startServer(
    {},
    (request) => upgrade(request, () => {}),
  );
  for (
    const request of [
      head("GET / HTTP/1.0", "Connection: upgrade", "Upgrade: x"),
      head(
        "POST / HTTP/1.1",
        H,
        "Connection: upgrade",
        "Upgrade: x",
        "Content-Length: 5",
      ) + "hello",
    ]
  ) {
    await using client = await RawClient.connect(server.addr.port);
    await client.write(request);
    assertEquals((await client.readResponse()).status, 500, request);
  }
});

// ---------------------------------------------------------------------------
// Timeouts.

Deno.test("serve() answers 408 to a slowloris client at the header timeout", async () => {
  await using server = startServer({ headerTimeout: 500 }, echo);
  await using client = await RawClient.connect(server.addr.port);
  const request = head("GET /slow HTTP/1.1", H, `X-Pad: ${"p".repeat(160)}`);
  const stop = new AbortController();
  const start = Date.now();
  // 50 ms a byte: the whole request would take over 9 seconds.
  const trickling = client.trickle(request, 50, stop.signal);
  try {
    const response = await client.readResponse();
    assertEquals(response.status, 408);
    assertEquals(response.headers.get("connection"), "close");
    assertEquals((await client.readToEnd()).rest, "");
  } finally {
    stop.abort();
  }
  const sent = await trickling;
  assertLessOrEqual(sent, request.length / 2, `sent ${sent} bytes`);
  assertLessOrEqual(Date.now() - start, request.length * 50 / 2);
});

Deno.test("serve() closes a connection that sends nothing at the header timeout", async () => {
  await using server = startServer({ headerTimeout: 300 }, echo);
  await using client = await RawClient.connect(server.addr.port);
  const start = Date.now();
  const { rest } = await client.readToEnd();
  assertEquals(rest, "");
  assertGreaterOrEqual(Date.now() - start, 250);
});

Deno.test("serve() answers 408 when a request body stalls", async () => {
  let failure: unknown;
  await using server = startServer({ bodyTimeout: 300 }, async (request) => {
    try {
      return new Response(await request.text());
    } catch (error) {
      failure = error;
      throw error;
    }
  });
  await using client = await RawClient.connect(server.addr.port);
  await client.write(head("POST / HTTP/1.1", H, "Content-Length: 10") + "abc");
  const response = await client.readResponse();
  assertEquals(response.status, 408);
  assertEquals((await client.readToEnd()).rest, "");
  assert(failure instanceof DOMException && failure.name === "TimeoutError");
});

Deno.test("serve() times a request body between bytes, not as a whole", async () => {
  await using server = startServer(
    { bodyTimeout: 400 },
    async (request) => new Response(await request.text()),
  );
  await using client = await RawClient.connect(server.addr.port);
  await client.write(head("POST / HTTP/1.1", H, "Content-Length: 8"));
  const start = Date.now();
  // 8 bytes, 100 ms apart: 800 ms in all, twice the body timeout.
  for (const c of "01234567") {
    await client.write(c);
    await new Promise((r) => setTimeout(r, 100));
  }
  const response = await client.readResponse();
  assertEquals([response.status, response.text], [200, "01234567"]);
  assertGreaterOrEqual(Date.now() - start, 400);
});

Deno.test("serve() closes an idle keep-alive connection at the idle timeout", async () => {
  await using server = startServer({ idleTimeout: 300 }, echo);
  await using client = await RawClient.connect(server.addr.port);
  await client.write(head("GET / HTTP/1.1", H));
  assertEquals((await client.readResponse()).status, 200);
  const start = Date.now();
  const { rest, end } = await client.readToEnd();
  assertEquals([rest, end], ["", "eof"]);
  assertGreaterOrEqual(Date.now() - start, 200);
});

// ---------------------------------------------------------------------------
// Handler failures.

Deno.test("serve() answers 500 without details when the handler throws", async () => {
  using log = quietErrors();
  await using server = startServer({}, (request) => {
    if (new URL(request.url).pathname === "/async") {
      return Promise.reject(new Error("secret-async-detail"));
    }
    throw new Error("secret-detail-42");
  });
  for (const path of ["/", "/async"]) {
    const response = await fetch(urlOf(server, path));
    assertEquals(response.status, 500);
    const text = await response.text();
    assert(!text.includes("secret"), `leaked: ${text}`);
    assert(!text.includes(" at "), `leaked a stack: ${text}`);
  }
  const logged = log.calls.map((args) => args.map(String).join(" ")).join();
  assertStringIncludes(logged, "secret-detail-42");
  assertStringIncludes(logged, "secret-async-detail");
});

Deno.test("serve() answers with onError when the handler throws", async () => {
  const errors: unknown[] = [];
  const failure = new Error("boom");
  await using server = startServer({
    onError(error) {
      errors.push(error);
      return new Response("custom", { status: 503 });
    },
  }, () => {
    throw failure;
  });
  const response = await fetch(urlOf(server));
  assertEquals(response.status, 503);
  assertEquals(await response.text(), "custom");
  assertEquals(errors.length, 1);
  assert(errors[0] === failure);
});

Deno.test("serve() answers 500 when onError itself throws", async () => {
  using _log = quietErrors();
  await using server = startServer({
    onError() {
      throw new Error("secret-hook-detail");
    },
  }, () => {
    throw new Error("secret");
  });
  const response = await fetch(urlOf(server));
  assertEquals(response.status, 500);
  assert(!(await response.text()).includes("secret"));
});

Deno.test("serve() answers 500 when the handler returns something else", async () => {
  using log = quietErrors();
  const results: unknown[] = ["text", undefined, { status: 200 }, null];
  await using server = startServer({}, (request) => {
    const i = Number(new URL(request.url).searchParams.get("i"));
    return (i % 2 === 0
      ? results[i]
      : Promise.resolve(results[i])) as unknown as Response;
  });
  for (let i = 0; i < results.length; i++) {
    const response = await fetch(urlOf(server, `/?i=${i}`));
    assertEquals(response.status, 500, `case ${i}`);
    await response.body?.cancel();
  }
  assertEquals(log.calls.length, results.length);
});

Deno.test("serve() answers 400, not 500, when a streamed-through request body is malformed", async () => {
  let onErrorCalls = 0;
  await using server = startServer({
    onError() {
      onErrorCalls++;
      return new Response("handler failed", { status: 500 });
    },
  }, (request) => new Response(request.body));
  await using client = await RawClient.connect(server.addr.port);
  await client.write(
    head("POST / HTTP/1.1", H, "Transfer-Encoding: chunked") + "zz\r\n",
  );
  const response = await client.readResponse();
  assertEquals(response.status, 400);
  assertEquals(onErrorCalls, 0);
});

Deno.test("serve() answers 500 when onError returns Response.error()", async () => {
  using _log = quietErrors();
  await using server = startServer(
    { onError: () => Response.error() },
    () => {
      throw new Error("boom");
    },
  );
  await using client = await RawClient.connect(server.addr.port);
  await client.write(head("GET / HTTP/1.1", H));
  const response = await client.readResponse();
  assertEquals(response.status, 500);
  assertEquals(response.headers.get("content-length"), "21");
});

Deno.test("serve() answers 500 to a handler's 1xx status outside upgrade()", async () => {
  using _log = quietErrors();
  await using server = startServer(
    {},
    () => new Response(null, { status: 101 }),
  );
  await using client = await RawClient.connect(server.addr.port);
  await client.write(head("GET / HTTP/1.1", H));
  assertEquals((await client.readResponse()).status, 500);
});

// ---------------------------------------------------------------------------
// Shutdown.

Deno.test("serve() ends a handler that never returns at shutdown", async () => {
  const entered = Promise.withResolvers<void>();
  const server = startServer({}, () => {
    entered.resolve();
    return new Promise<Response>(() => {});
  });
  await using client = await RawClient.connect(server.addr.port);
  await client.write(head("GET / HTTP/1.1", H));
  await within(entered.promise, "the handler");
  await within(server.shutdown({ grace: 100 }), "shutdown");
  await within(server.finished, "finished");
  const { rest } = await client.readToEnd();
  assertEquals(rest, "");
});

Deno.test("serve() aborts request.signal of handlers still running after the grace", async () => {
  const entered = Promise.withResolvers<void>();
  const aborted = Promise.withResolvers<unknown>();
  const server = startServer({}, async (request) => {
    entered.resolve();
    const signal = request.signal;
    await new Promise((r) => signal.addEventListener("abort", r));
    aborted.resolve(signal.reason);
    return new Response("late");
  });
  await using client = await RawClient.connect(server.addr.port);
  await client.write(head("GET / HTTP/1.1", H));
  await within(entered.promise, "the handler");
  await within(server.shutdown({ grace: 100 }), "shutdown");
  const reason = await within(aborted.promise, "the signal");
  assert(reason instanceof DOMException);
  assertEquals((await client.readToEnd()).rest, "");
});

Deno.test("serve() shuts down gracefully: idle connections at once, in-flight ones finish", async () => {
  const entered = Promise.withResolvers<void>();
  const release = Promise.withResolvers<void>();
  const server = startServer({}, async (request) => {
    if (new URL(request.url).pathname === "/slow") {
      entered.resolve();
      await release.promise;
      return new Response("slow done");
    }
    return new Response("fast");
  });
  const port = server.addr.port;
  await using idle = await RawClient.connect(port);
  await idle.write(head("GET /fast HTTP/1.1", H));
  assertEquals((await idle.readResponse()).text, "fast");
  await using busy = await RawClient.connect(port);
  await busy.write(head("GET /slow HTTP/1.1", H));
  await within(entered.promise, "the slow handler");

  const done = server.shutdown({ grace: 8000 });
  // The idle connection closes while the slow request is still running.
  assertEquals((await idle.readToEnd()).rest, "");
  await assertRejects(() => Deno.connect({ hostname: HOST, port }));
  release.resolve();
  const response = await busy.readResponse();
  assertEquals(response.text, "slow done");
  assertEquals(response.headers.get("connection"), "close");
  assertEquals((await busy.readToEnd()).rest, "");
  await within(done, "shutdown");
});

Deno.test("HttpServer.shutdown() awaited inside a handler resolves once the other requests end, and its response is written", async () => {
  const slowEntered = Promise.withResolvers<void>();
  const release = Promise.withResolvers<void>();
  let slowDone = false;
  const server = startServer({}, async (request) => {
    if (new URL(request.url).pathname === "/slow") {
      slowEntered.resolve();
      await release.promise;
      slowDone = true;
      return new Response("slow done");
    }
    const stopping = server.shutdown({ grace: 10_000 });
    release.resolve(); // the slow request may finish now
    await stopping;
    return new Response(`stopped after slow: ${slowDone}`);
  });
  const port = server.addr.port;
  await using busy = await RawClient.connect(port);
  await busy.write(head("GET /slow HTTP/1.1", H));
  await within(slowEntered.promise, "the slow handler");
  await using admin = await RawClient.connect(port);
  await admin.write(head("POST /shutdown HTTP/1.1", H, "Content-Length: 0"));
  assertEquals((await busy.readResponse()).text, "slow done");
  const response = await admin.readResponse();
  assertEquals(response.text, "stopped after slow: true");
  assertEquals(response.headers.get("connection"), "close");
  assertEquals((await admin.readToEnd()).rest, "");
  await within(server.finished, "the server to finish");
});

Deno.test("HttpServer.shutdown() awaited inside a handler resolves after the grace when another handler hangs, and every connection is aborted", async () => {
  const hangEntered = Promise.withResolvers<void>();
  const resumed = Promise.withResolvers<boolean>();
  const server = startServer({}, async (request) => {
    if (new URL(request.url).pathname === "/hang") {
      hangEntered.resolve();
      return await new Promise<Response>(() => {});
    }
    await server.shutdown({ grace: 50 });
    resumed.resolve(request.signal.aborted);
    return new Response("bye");
  });
  const port = server.addr.port;
  await using hanging = await RawClient.connect(port);
  await hanging.write(head("GET /hang HTTP/1.1", H));
  await within(hangEntered.promise, "the hanging handler");
  await using admin = await RawClient.connect(port);
  await admin.write(head("GET /stop HTTP/1.1", H));
  assertEquals(await within(resumed.promise, "the admin handler"), true);
  assertEquals((await admin.readToEnd()).rest, "");
  assertEquals((await hanging.readToEnd()).rest, "");
  await within(server.finished, "the server to finish");
});

Deno.test("serve() closes connections that sent nothing at once on shutdown", async () => {
  const server = startServer({}, echo);
  await using silent = await RawClient.connect(server.addr.port);
  // Make sure the server has taken the connection.
  await using probe = await RawClient.connect(server.addr.port);
  await probe.write(head("GET / HTTP/1.1", H));
  await probe.readResponse();
  await within(server.shutdown({ grace: 60_000 }), "shutdown");
  assertEquals((await silent.readToEnd()).rest, "");
  assertEquals((await probe.readToEnd()).rest, "");
});

Deno.test("serve() shuts down when options.signal aborts", async () => {
  const controller = new AbortController();
  const server = startServer({ signal: controller.signal }, echo);
  const response = await fetch(urlOf(server));
  assertEquals(response.status, 200);
  await response.body?.cancel();
  controller.abort();
  await within(server.finished, "finished");
  await server.shutdown();
});

Deno.test("serve() shutdown ends a connection whose onError never settles", async () => {
  const entered = Promise.withResolvers<void>();
  const server = startServer({
    onError: () => {
      entered.resolve();
      return new Promise<Response>(() => {});
    },
  }, () => {
    throw new Error("boom");
  });
  await using client = await RawClient.connect(server.addr.port);
  await client.write(head("GET / HTTP/1.1", H));
  await within(entered.promise, "onError to be called");
  await within(server.shutdown({ grace: 50 }), "shutdown to finish");
  const { end } = await client.readToEnd();
  assert(end === "eof" || end === "reset");
});

// serve() without `loop` makes its own. Shutting that loop down directly (as
// EvCluster's workers do) closes idle keep-alive connections at once, not
// after the grace, and resolves `server.finished`.
Deno.test("serve(): shutting down the server's own loop directly drains it and resolves finished", async () => {
  const server = startServer({ idleTimeout: 60_000 }, () => new Response("ok"));
  await using client = await RawClient.connect(server.addr.port);
  await client.write(head("GET / HTTP/1.1", "Host: x"));
  assertEquals((await client.readResponse()).text, "ok");
  const start = performance.now();
  await server.loop.shutdown({ grace: 30_000 });
  await within(server.finished, "server.finished", 10_000);
  // The idle connection was closed at once, not after the grace.
  assertLess(performance.now() - start, 10_000);
  assertEquals((await client.readToEnd()).rest, "");
});

// ---------------------------------------------------------------------------
// Loops and pools.

Deno.test("serve() shares a loop and its pool between servers", async () => {
  await using loop = new EvLoop({ capacity: 8 });
  const a = startServer({ loop }, () => new Response("a"));
  const b = startServer({ loop }, () => new Response("b"));
  try {
    assert(a.loop === loop && b.loop === loop);
    for (const [server, text] of [[a, "a"], [b, "b"]] as const) {
      await using client = await RawClient.connect(server.addr.port);
      await client.write(head("GET / HTTP/1.1", H, "Connection: close"));
      assertEquals((await client.readResponse()).text, text);
      await client.readToEnd();
    }
    const stats = loop.stats;
    assertEquals(stats.accepted, 2);
    assertEquals(stats.capacity, 8);
    assertGreaterOrEqual(stats.spawned, 2);
    assertThrows(
      () => serve({ loop, maxConnections: 4, onListen() {} }, echo),
      TypeError,
    );
  } finally {
    await a.shutdown();
    await b.shutdown();
  }
  assertEquals(loop.state, "running");
});

Deno.test("serve() on a shared loop takes its connections from the loop's pool", async () => {
  await using loop = new EvLoop({ capacity: 1 });
  const release = Promise.withResolvers<void>();
  const enteredA = Promise.withResolvers<void>();
  let enteredB = false;
  const a = startServer({ loop }, async () => {
    enteredA.resolve();
    await release.promise;
    return new Response("a");
  });
  const b = startServer({ loop }, () => {
    enteredB = true;
    return new Response("b");
  });
  try {
    await using clientA = await RawClient.connect(a.addr.port);
    await using clientB = await RawClient.connect(b.addr.port);
    await clientA.write(head("GET / HTTP/1.1", H, "Connection: close"));
    await within(enteredA.promise, "server a's handler");
    await clientB.write(head("GET / HTTP/1.1", H, "Connection: close"));
    // A window for server b to (wrongly) take a second slot.
    await new Promise((r) => setTimeout(r, 150));
    assertEquals(enteredB, false);
    assertEquals(loop.stats.active, 1);
    release.resolve();
    assertEquals((await clientA.readResponse()).text, "a");
    assertEquals((await clientB.readResponse()).text, "b");
    assertEquals(loop.stats.peakActive, 1);
  } finally {
    await a.shutdown();
    await b.shutdown();
  }
});

Deno.test("serve() on a shared loop ends when the loop shuts down", async () => {
  const loop = new EvLoop({ capacity: 4 });
  const server = startServer({ loop }, () => new Response("x"));
  const response = await fetch(urlOf(server));
  await response.body?.cancel();
  await loop.shutdown({ grace: 1000 });
  await within(server.finished, "finished");
  await server.shutdown();
});

Deno.test("serve() with maxConnections and policy wait bounds concurrency", async () => {
  let active = 0;
  let peak = 0;
  let open = false;
  const gates: (() => void)[] = [];
  const twoIn = Promise.withResolvers<void>();
  await using server = startServer(
    { maxConnections: 2, policy: "wait" },
    async () => {
      active++;
      peak = Math.max(peak, active);
      if (active === 2) twoIn.resolve();
      if (!open) await new Promise<void>((resolve) => gates.push(resolve));
      active--;
      return new Response("done");
    },
  );
  const clients = await Promise.all(
    [0, 1, 2].map(() => RawClient.connect(server.addr.port)),
  );
  try {
    await Promise.all(
      clients.map((c) =>
        c.write(head("GET / HTTP/1.1", H, "Connection: close"))
      ),
    );
    await within(twoIn.promise, "two handlers");
    // A window for a third handler to (wrongly) start.
    await new Promise((r) => setTimeout(r, 150));
    assertEquals(active, 2);
    assertEquals(server.loop.stats.active, 2);
    open = true;
    for (const release of gates.splice(0)) release();
    for (const client of clients) {
      assertEquals((await client.readResponse()).text, "done");
    }
    assertEquals(peak, 2);
    assertEquals(server.loop.stats.peakActive, 2);
  } finally {
    for (const c of clients) await c.close();
  }
});

Deno.test("serve() validates its arguments", () => {
  assertThrows(() => serve({ onListen() {} }, undefined as never), TypeError);
  assertThrows(
    () => serve({ port: 0, headerTimeout: 0, onListen() {} }, echo),
    RangeError,
  );
  assertThrows(
    () => serve({ port: 0, maxConnections: 0, onListen() {} }, echo),
    RangeError,
  );
});

// ---------------------------------------------------------------------------
// fetch.

Deno.test("serve() works with fetch for GET, POST and JSON", async () => {
  await using server = startServer({}, async (request) => {
    const url = new URL(request.url);
    if (url.pathname === "/json") {
      const value = await request.json() as { n: number };
      return Response.json({
        doubled: value.n * 2,
        ct: request.headers.get("content-type"),
      });
    }
    if (request.method === "POST") {
      return new Response(request.body, {
        headers: { "x-len": request.headers.get("content-length") ?? "-" },
      });
    }
    return Response.json({ q: url.searchParams.get("q"), path: url.pathname });
  });
  const get = await fetch(urlOf(server, "/get?q=a%20b"));
  assertEquals(get.headers.get("content-type"), "application/json");
  assertEquals(await get.json(), { q: "a b", path: "/get" });

  const json = await fetch(urlOf(server, "/json"), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ n: 21 }),
  });
  assertEquals(await json.json(), { doubled: 42, ct: "application/json" });

  const big = pseudoRandom(7, 3_000_000);
  const post = await fetch(urlOf(server, "/echo"), {
    method: "POST",
    body: big,
  });
  assertEquals(post.headers.get("x-len"), "3000000");
  const echoed = new Uint8Array(await post.arrayBuffer());
  assertEquals(echoed.byteLength, big.byteLength);
  assert(echoed.every((b, i) => b === big[i]), "the echo differs");

  const streamed = await fetch(urlOf(server, "/echo"), {
    method: "POST",
    body: ReadableStream.from(["stream", "ed ", "body"].map(utf8)),
  });
  assertEquals(await streamed.text(), "streamed body");
});

// ---------------------------------------------------------------------------
// curl, where installed.

Deno.test("serve() works with curl -i --http1.1", async () => {
  if (!await haveCurl()) return;
  await using server = startServer({}, echo);
  const out = await curl(["-s", "-i", "--http1.1", urlOf(server, "/hello")]);
  assertEquals(out.code, 0, out.stderr);
  assertMatch(out.stdout, /^HTTP\/1\.1 200 OK\r\n/);
  assertMatch(out.stdout, /\r\ndate: .+ GMT\r\n/i);
  assertStringIncludes(out.stdout, "content-length: 11\r\n");
  assert(out.stdout.endsWith("\r\n\r\nGET /hello "), out.stdout);
});

Deno.test("serve() works with curl -d, with and without Expect", async () => {
  if (!await haveCurl()) return;
  const seen: { expect: string | null; ct: string | null; length: number }[] =
    [];
  await using server = startServer({}, async (request) => {
    const body = await request.bytes();
    seen.push({
      expect: request.headers.get("expect"),
      ct: request.headers.get("content-type"),
      length: body.byteLength,
    });
    let sum = 0;
    for (const b of body) sum = (sum + b) % 65_521;
    return new Response(`${body.byteLength}:${sum}`);
  });
  const small = await curl(["-s", "-d", "a=1&b=2", urlOf(server)]);
  assertEquals(small.stdout, "7:" + sumOf(utf8("a=1&b=2")));
  assertEquals(seen[0]!.ct, "application/x-www-form-urlencoded");

  const big = new Uint8Array(2_000_000).fill(0x61);
  const expect = await curl(
    ["-s", "-H", "Expect: 100-continue", "--data-binary", "@-", urlOf(server)],
    big,
  );
  assertEquals(expect.stdout, `2000000:${sumOf(big)}`, expect.stderr);
  assertEquals(seen[1]!.expect, "100-continue");

  const noExpect = await curl(
    ["-s", "-H", "Expect:", "--data-binary", "@-", urlOf(server)],
    big,
  );
  assertEquals(noExpect.stdout, `2000000:${sumOf(big)}`, noExpect.stderr);
  assertEquals(seen[2]!.expect, null);
});

function sumOf(bytes: Uint8Array): number {
  let sum = 0;
  for (const b of bytes) sum = (sum + b) % 65_521;
  return sum;
}

Deno.test("serve() works with a chunked upload from curl", async () => {
  if (!await haveCurl()) return;
  const seen: (string | null)[] = [];
  await using server = startServer({}, async (request) => {
    seen.push(request.headers.get("transfer-encoding"));
    const body = await request.bytes();
    return new Response(`${body.byteLength}:${sumOf(body)}`);
  });
  const data = pseudoRandom(3, 500_000);
  const out = await curl([
    "-s",
    "-H",
    "Transfer-Encoding: chunked",
    "--data-binary",
    "@-",
    urlOf(server),
  ], data);
  assertEquals(out.code, 0, out.stderr);
  assertEquals(out.stdout, `500000:${sumOf(data)}`);
  const put = await curl(["-s", "-T", "-", urlOf(server, "/put")], data);
  assertEquals(put.stdout, `500000:${sumOf(data)}`);
  assertEquals(seen, ["chunked", "chunked"]);
});

Deno.test("serve() answers curl -I (HEAD)", async () => {
  if (!await haveCurl()) return;
  await using server = startServer({}, () => new Response("body"));
  const out = await curl(["-s", "-I", "--http1.1", urlOf(server)]);
  assertEquals(out.code, 0, out.stderr);
  assertMatch(out.stdout, /^HTTP\/1\.1 200 OK\r\n/);
  assertStringIncludes(out.stdout, "content-length: 4\r\n");
  assert(out.stdout.endsWith("\r\n\r\n"));
});

// ---------------------------------------------------------------------------
// What the server drops is not reported as a misuse.

Deno.test("serve() that gives up on a client that never reads reports no UnsentDataError", async () => {
  const reports: unknown[] = [];
  await using loop = new EvLoop({
    onError: (error) => reports.push(error),
  });
  const finished = Promise.withResolvers<unknown>();
  await using server = serve({
    hostname: HOST,
    port: 0,
    loop,
    sendTimeout: 200,
    onListen() {},
    onError: () => new Response(null, { status: 500 }),
  }, (_request, info) => {
    info.completed.then(() => finished.resolve("sent"), finished.resolve);
    return new Response(new Uint8Array(32 << 20)); // far beyond the buffers
  });
  // A client that sends its request and never reads the answer.
  using conn = await Deno.connect({ hostname: HOST, port: server.addr.port });
  await conn.write(new TextEncoder().encode(head("GET / HTTP/1.1", H)));
  const outcome = await within(finished.promise, "the send timeout");
  assert(outcome !== "sent", "the response cannot have been sent");
  await within(server.shutdown({ grace: 1000 }), "shutdown");
  assertEquals(reports, []);
  assertEquals(loop.stats.sendsCutShort, 0);
});
