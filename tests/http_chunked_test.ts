// Copyright 2026 the @corothread/evthread authors. MIT license.
// Chunk extensions in request bodies (RFC 9112 7.1.1), end to end over
// loopback sockets: valid ones are ignored, malformed ones fail the body.
// A handler that reads the body sees it fail and the client gets 400; a
// handler that does not read it has its response sent, and the connection
// then closes rather than read the next request past a malformed body.
//
// The servers keep idle keep-alive connections for 60 s, so a connection
// that closes within the tests' bounds was closed for the malformed body.

import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import type { ServeOptions } from "../http.ts";
import { head, RawClient, startServer, within } from "./_http_helpers.ts";

const H = "Host: example.com";
const OPTIONS: ServeOptions = { idleTimeout: 60_000 };

/** A chunked POST whose body is `chunks` (each line ends in CRLF here). */
function chunked(...chunks: string[]): string {
  return head("POST /c HTTP/1.1", H, "Transfer-Encoding: chunked") +
    chunks.join("");
}

const GET = head("GET /next HTTP/1.1", H);

/** Chunk-size lines with valid extensions, each followed by "hello". */
const VALID = [
  "5;a=b",
  "5 ; a = b",
  "5\t;\ta\t=\tb",
  '5;a="x y \\" z"',
  '5;a="semi;colon=equals"',
  "5;a;b=c",
  "5;!#$%&'*+-.^_`|~=tok",
];

/** Chunk-size lines with malformed extensions, and what is wrong. */
const INVALID: [string, string][] = [
  ["5;", "no name"],
  ["5;=b", "no name before the value"],
  ["5;a=", "no value after ="],
  ['5;a="unterminated', "an unterminated quoted-string"],
  ["5;a=b c", "two tokens in a value"],
  ["5;a=b ", "BWS at the end of the line"],
  ["5;a@=b", "a separator in the name"],
  ["5;caf\xe9", "obs-text in the name"],
  ["5;a\x01", "a control character in the name"],
  ['5;a="\x7f"', "DEL in a quoted-string"],
];

for (const line of VALID) {
  Deno.test(
    `serve() reads a chunked body whose chunk-size line is ${
      JSON.stringify(line)
    }`,
    async () => {
      await using server = startServer(
        OPTIONS,
        async (request) => new Response(`got ${await request.text()}`),
      );
      await using client = await RawClient.connect(server.addr.port);
      await client.write(
        chunked(`${line}\r\nhello\r\n`, `6${line.slice(1)}\r\n world\r\n`) +
          "0;last=1\r\nX-Trailer: t\r\n\r\n",
      );
      const response = await client.readResponse();
      assertEquals(response.status, 200);
      assertEquals(response.text, "got hello world");
      assertEquals(response.headers.get("connection"), undefined);
      // The connection is kept: the next request is answered on it.
      await client.write(GET);
      assertEquals((await client.readResponse()).text, "got ");
    },
  );
}

for (const [line, what] of INVALID) {
  Deno.test(`serve() answers 400 and closes when a handler reads a chunked body with ${what}`, async () => {
    let bodyError: unknown;
    let handled = 0;
    await using server = startServer(OPTIONS, async (request) => {
      handled++;
      try {
        await request.text();
      } catch (error) {
        bodyError = error;
      }
      // Whatever the handler answers, the failed body decides.
      return new Response("handled");
    });
    await using client = await RawClient.connect(server.addr.port);
    await client.writeLenient(chunked(`${line}\r\nhello\r\n`, "0\r\n\r\n"));
    const response = await client.readResponse();
    assertEquals(response.status, 400, response.head);
    assertEquals(response.headers.get("connection"), "close");
    assertEquals((await client.readToEnd()).rest, "");
    assertEquals(handled, 1);
    assert(bodyError instanceof Error, "the body stream did not fail");
  });

  Deno.test(`serve() closes the connection after answering a handler that ignores a chunked body with ${what}`, async () => {
    const paths: string[] = [];
    await using server = startServer(OPTIONS, (request) => {
      paths.push(new URL(request.url).pathname);
      return new Response("ignored");
    });
    await using client = await RawClient.connect(server.addr.port);
    // A pipelined request after the malformed body is never answered.
    await client.writeLenient(
      chunked(`${line}\r\nhello\r\n`, "0\r\n\r\n") + GET,
    );
    const response = await client.readResponse();
    assertEquals(response.status, 200);
    assertEquals(response.text, "ignored");
    assertEquals((await client.readToEnd()).rest, "");
    assertEquals(paths, ["/c"]);
  });
}

Deno.test("serve() answers 400 when a later chunk-size line has a malformed extension", async () => {
  const pieces: string[] = [];
  await using server = startServer(OPTIONS, async (request) => {
    const reader = request.body!.getReader();
    try {
      while (true) {
        const { done, value } = await reader.read();
        if (done) break;
        pieces.push(new TextDecoder().decode(value));
      }
    } catch {
      return new Response("handled");
    }
    return new Response("complete");
  });
  await using client = await RawClient.connect(server.addr.port);
  await client.writeLenient(
    chunked("5;a=b\r\nhello\r\n", '6;a="open\r\n world\r\n', "0\r\n\r\n"),
  );
  const response = await client.readResponse();
  assertEquals(response.status, 400);
  assertEquals((await client.readToEnd()).rest, "");
  assertEquals(pieces, ["hello"]);
});

Deno.test("serve() answers 400 when the last chunk has a malformed extension", async () => {
  await using server = startServer(
    OPTIONS,
    async (request) => new Response(await request.text()),
  );
  await using client = await RawClient.connect(server.addr.port);
  await client.writeLenient(chunked("5\r\nhello\r\n", "0;=x\r\n\r\n"));
  const response = await client.readResponse();
  assertEquals(response.status, 400);
  assertEquals((await client.readToEnd()).rest, "");
});

Deno.test("serve() cuts a response that has started when the body it streams meets a malformed extension", async () => {
  await using server = startServer(
    OPTIONS,
    (request) => new Response(request.body),
  );
  await using client = await RawClient.connect(server.addr.port);
  await client.writeLenient(
    chunked("5\r\nhello\r\n", "6;a b\r\n world\r\n", "0\r\n\r\n"),
  );
  const { rest } = await within(client.readToEnd(), "the connection to end");
  // The echo began (status, fields, the first chunk) and never ended: no
  // last chunk, so the client knows it is truncated.
  assert(rest.startsWith("HTTP/1.1 200 OK\r\n"), rest);
  assertStringIncludes(rest, "transfer-encoding: chunked\r\n");
  assert(rest.endsWith("\r\n\r\n5\r\nhello\r\n"), JSON.stringify(rest));
});
