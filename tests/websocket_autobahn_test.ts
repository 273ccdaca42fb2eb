// Copyright 2026 the @corothread/evthread authors. MIT license.
// The Autobahn TestSuite's server cases (sections 1-7, 9 and 10), as raw
// frames over real loopback sockets: the suite itself cannot be installed
// here, so each case is written from its published description and named
// after its number. Every case runs against an echo server in both modes:
// event mode (`send()` in a `message` listener) and pull mode (`for await`
// with `await write()`).
//
// Where the suite waits ("sleep 1 s" between phases) these tests wait for
// data instead: a ping's pong proves the server has taken what came before.
//
// deno test --allow-net --sanitize-ops --sanitize-resources \
//   tests/websocket_autobahn_test.ts

import { assertEquals } from "@std/assert";
import {
  binary,
  bytes,
  close,
  concat,
  cont,
  frame,
  type Mode,
  OP,
  openClient,
  ping,
  pong,
  randomBytes,
  randomText,
  type RawClient,
  startWsServer,
  text,
  utf8,
  within,
  type WsServer,
} from "./_websocket_client.ts";

interface Case {
  id: string;
  name: string;
  /** Runs the case; the connection must be closed when it returns. */
  run: (client: RawClient, server: WsServer) => Promise<void>;
  /** The server fails the connection with this code (checked after). */
  fails?: number;
}

const CASES: Case[] = [];

function add(
  id: string,
  name: string,
  run: Case["run"],
  fails?: number,
): void {
  CASES.push(
    fails === undefined ? { id, name, run } : { id, name, run, fails },
  );
}

/** A case where the server must fail the connection with `code`. */
function failing(
  id: string,
  name: string,
  code: number,
  run: (client: RawClient) => Promise<void>,
): void {
  add(id, name, async (client) => {
    await run(client);
    await client.expectClose(code);
  }, code);
}

/** Writes frames one write per frame ("frame-wise chops"). */
async function frameWise(client: RawClient, ...frames: Uint8Array[]) {
  for (const f of frames) await client.write(f);
}

/** Writes frames one byte per write ("octet-wise chops"). */
function octetWise(client: RawClient, ...frames: Uint8Array[]) {
  return client.writeChops(concat(...frames), 1);
}

// ------------------------------------------------------------ 1 Framing

const SIZES = [0, 125, 126, 127, 128, 65_535, 65_536];
SIZES.forEach((n, i) => {
  add(`1.1.${i + 1}`, `text message of ${n} bytes`, async (client) => {
    const payload = randomText(n, i);
    await client.send(text(payload));
    await client.expectText(payload);
    await client.closeNormally();
  });
});
add(
  "1.1.8",
  "text message of 65536 bytes in chops of 997 octets",
  async (client) => {
    const payload = randomText(65_536, 8);
    await client.writeChops(text(payload), 997);
    await client.expectText(payload);
    await client.closeNormally();
  },
);
SIZES.forEach((n, i) => {
  add(`1.2.${i + 1}`, `binary message of ${n} bytes`, async (client) => {
    const payload = randomBytes(n, i);
    await client.send(binary(payload));
    await client.expectBinary(payload);
    await client.closeNormally();
  });
});
add(
  "1.2.8",
  "binary message of 65536 bytes in chops of 997 octets",
  async (client) => {
    const payload = randomBytes(65_536, 8);
    await client.writeChops(binary(payload), 997);
    await client.expectBinary(payload);
    await client.closeNormally();
  },
);

// ------------------------------------------------------- 2 Pings/Pongs

add("2.1", "ping without payload", async (client) => {
  await client.send(ping());
  await client.expectPong();
  await client.closeNormally();
});
add("2.2", "ping with a small text payload", async (client) => {
  await client.send(ping("Hello, world!"));
  await client.expectPong("Hello, world!");
  await client.closeNormally();
});
add("2.3", "ping with a small binary payload", async (client) => {
  const payload = bytes(0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff);
  await client.send(ping(payload));
  await client.expectPong(payload);
  await client.closeNormally();
});
add("2.4", "ping with a binary payload of 125 bytes", async (client) => {
  const payload = randomBytes(125, 24);
  await client.send(ping(payload));
  await client.expectPong(payload);
  await client.closeNormally();
});
failing(
  "2.5",
  "ping with a binary payload of 126 bytes",
  1002,
  (client) => client.send(ping(randomBytes(126, 25))),
);
add("2.6", "ping with 125 bytes in octet-wise chops", async (client) => {
  const payload = randomBytes(125, 26);
  await octetWise(client, ping(payload));
  await client.expectPong(payload);
  await client.closeNormally();
});
add("2.7", "unsolicited pong without payload is ignored", async (client) => {
  await client.send(pong());
  await client.closeNormally();
});
add("2.8", "unsolicited pong with payload is ignored", async (client) => {
  await client.send(pong("unsolicited pong payload"));
  await client.closeNormally();
});
add(
  "2.9",
  "unsolicited pong, then a ping: only the ping is answered",
  async (client) => {
    await client.send(pong("unsolicited pong payload"), ping("ping payload"));
    await client.expectPong("ping payload");
    await client.closeNormally();
  },
);
add("2.10", "10 pings with payload", async (client) => {
  const pings = Array.from({ length: 10 }, (_, i) => `payload-${i}`);
  await client.send(...pings.map((p) => ping(p)));
  for (const p of pings) await client.expectPong(p);
  await client.closeNormally();
});
add("2.11", "10 pings with payload in octet-wise chops", async (client) => {
  const pings = Array.from({ length: 10 }, (_, i) => `payload-${i}`);
  await octetWise(client, ...pings.map((p) => ping(p)));
  for (const p of pings) await client.expectPong(p);
  await client.closeNormally();
});

// ------------------------------------------------------ 3 Reserved bits

failing(
  "3.1",
  "text message with RSV = 1",
  1002,
  (client) =>
    client.send(frame({ opcode: OP.TEXT, payload: "Hello, world!", rsv: 1 })),
);
for (
  const [id, rsv, write] of [
    ["3.2", 2, (c: RawClient, ...f: Uint8Array[]) => c.send(...f)],
    ["3.3", 3, frameWise],
    ["3.4", 4, octetWise],
  ] as const
) {
  const how = ["in one write", "in frame-wise chops", "in octet-wise chops"][
    rsv - 2
  ];
  add(
    id,
    `text, then text with RSV = ${rsv}, then a ping, ${how}`,
    async (client) => {
      await write(
        client,
        text("Hello, world!"),
        frame({ opcode: OP.TEXT, payload: "Hello, world!", rsv }),
        ping(),
      );
      await client.expectText("Hello, world!");
      await client.expectClose(1002);
    },
    1002,
  );
}
failing(
  "3.5",
  "binary message with RSV = 5",
  1002,
  (client) =>
    client.send(frame({ opcode: OP.BINARY, payload: randomBytes(8), rsv: 5 })),
);
failing(
  "3.6",
  "ping with RSV = 6",
  1002,
  (client) =>
    client.send(frame({ opcode: OP.PING, payload: "Hello, world!", rsv: 6 })),
);
failing(
  "3.7",
  "close with RSV = 7",
  1002,
  (client) =>
    client.send(
      frame({ opcode: OP.CLOSE, payload: bytes(0x03, 0xe8), rsv: 7 }),
    ),
);

// ------------------------------------------------------------ 4 Opcodes

for (
  const [section, opcodes] of [["4.1", [3, 4, 5, 6, 7]], ["4.2", [
    11,
    12,
    13,
    14,
    15,
  ]]] as const
) {
  const kind = section === "4.1" ? "non-control" : "control";
  opcodes.forEach((opcode, i) => {
    const id = `${section}.${i + 1}`;
    const payload = i % 2 === 1 ? "reserved opcode payload" : "";
    const described = payload === "" ? "" : " and a payload";
    if (i < 2) {
      failing(
        id,
        `reserved ${kind} opcode ${opcode}${described}`,
        1002,
        (client) => client.send(frame({ opcode, payload })),
      );
    } else {
      add(
        id,
        `text, then reserved ${kind} opcode ${opcode}${described}, then a ping`,
        async (client) => {
          await client.send(
            text("Hello, world!"),
            frame({ opcode, payload }),
            ping(),
          );
          await client.expectText("Hello, world!");
          await client.expectClose(1002);
        },
        1002,
      );
    }
  });
}

// ------------------------------------------------------ 5 Fragmentation

failing(
  "5.1",
  "ping fragmented into 2 fragments",
  1002,
  (client) =>
    client.send(
      frame({ opcode: OP.PING, payload: "fragment1", fin: false }),
      cont("fragment2"),
    ),
);
failing(
  "5.2",
  "pong fragmented into 2 fragments",
  1002,
  (client) =>
    client.send(
      frame({ opcode: OP.PONG, payload: "fragment1", fin: false }),
      cont("fragment2"),
    ),
);
for (
  const [id, how, write] of [
    ["5.3", "in one write", (c: RawClient, ...f: Uint8Array[]) => c.send(...f)],
    ["5.4", "in frame-wise chops", frameWise],
    ["5.5", "in octet-wise chops", octetWise],
  ] as const
) {
  add(id, `text fragmented into 2 fragments, ${how}`, async (client) => {
    await write(client, text("fragment1", false), cont("fragment2"));
    await client.expectText("fragment1fragment2");
    await client.closeNormally();
  });
}
for (
  const [id, how, write] of [
    ["5.6", "in one write", (c: RawClient, ...f: Uint8Array[]) => c.send(...f)],
    ["5.7", "in frame-wise chops", frameWise],
    ["5.8", "in octet-wise chops", octetWise],
  ] as const
) {
  add(
    id,
    `text in 2 fragments with a ping between, ${how}`,
    async (client) => {
      await write(
        client,
        text("fragment1", false),
        ping("ping payload"),
        cont("fragment2"),
      );
      await client.expectPong("ping payload");
      await client.expectText("fragment1fragment2");
      await client.closeNormally();
    },
  );
}
for (
  const [first, fin] of [["5.9", true], ["5.12", false]] as const
) {
  const ids = [
    first,
    first === "5.9" ? "5.10" : "5.13",
    first === "5.9" ? "5.11" : "5.14",
  ];
  const writes = [
    (c: RawClient, ...f: Uint8Array[]) => c.send(...f),
    frameWise,
    octetWise,
  ];
  const hows = ["in one write", "in frame-wise chops", "in octet-wise chops"];
  ids.forEach((id, i) => {
    failing(
      id,
      `continuation with FIN = ${fin} and nothing to continue, then text, ${
        hows[i]
      }`,
      1002,
      (client) =>
        writes[i]!(
          client,
          cont("non-continuation payload", fin),
          text("Hello, world!"),
        ),
    );
  });
}
add(
  "5.15",
  "text in 2 fragments, then a continuation with nothing to continue, then text",
  async (client) => {
    await client.send(
      text("fragment1", false),
      cont("fragment2"),
      cont("fragment3", false),
      text("fragment4"),
    );
    await client.expectText("fragment1fragment2");
    await client.expectClose(1002);
  },
  1002,
);
for (const [id, fin] of [["5.16", false], ["5.17", true]] as const) {
  failing(
    id,
    `twice: continuation with FIN = ${fin} and nothing to continue, then text in 2 fragments`,
    1002,
    (client) => {
      const round = [
        cont("fragment1", fin),
        text("fragment2", false),
        cont("fragment3"),
      ];
      return client.send(...round, ...round);
    },
  );
}
failing(
  "5.18",
  "text in 2 fragments, both with the text opcode",
  1002,
  (client) => client.send(text("fragment1", false), text("fragment2")),
);
for (const [id, chops] of [["5.19", false], ["5.20", true]] as const) {
  add(
    id,
    `text in 5 fragments with pings between${
      chops ? ", frame-wise chops" : ""
    }`,
    async (client) => {
      const write = chops
        ? (...f: Uint8Array[]) => frameWise(client, ...f)
        : (...f: Uint8Array[]) => client.send(...f);
      await write(
        text("fragment1", false),
        cont("fragment2", false),
        ping("pongme 1!"),
      );
      await client.expectPong("pongme 1!");
      await write(
        cont("fragment3", false),
        cont("fragment4", false),
        ping("pongme 2!"),
        cont("fragment5"),
      );
      await client.expectPong("pongme 2!");
      await client.expectText("fragment1fragment2fragment3fragment4fragment5");
      await client.closeNormally();
    },
  );
}

// ---------------------------------------------------- 6 UTF-8 handling

add("6.1.1", "text message of 0 bytes", async (client) => {
  await client.send(text(""));
  await client.expectText("");
  await client.closeNormally();
});
add("6.1.2", "text in 3 fragments of 0 bytes", async (client) => {
  await client.send(text("", false), cont("", false), cont(""));
  await client.expectText("");
  await client.closeNormally();
});
add(
  "6.1.3",
  "text in 3 fragments, first and last of 0 bytes",
  async (client) => {
    await client.send(
      text("", false),
      cont("middle frame payload", false),
      cont(""),
    );
    await client.expectText("middle frame payload");
    await client.closeNormally();
  },
);

const HELLO = "Hello-µ@ßöäüàá-UTF-8!!";
/** "κόσμε" as in Markus Kuhn's test file: its omicron is U+1F79 (3 bytes). */
const KOSME = new TextDecoder().decode(
  bytes(0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5),
);
add("6.2.1", "valid UTF-8 in one fragment", async (client) => {
  await client.send(text(HELLO));
  await client.expectText(HELLO);
  await client.closeNormally();
});
add(
  "6.2.2",
  "valid UTF-8 in 2 fragments split at a code point",
  async (client) => {
    await client.send(text("Hello-µ@ßöä", false), cont("üàá-UTF-8!!"));
    await client.expectText(HELLO);
    await client.closeNormally();
  },
);
for (const [id, value] of [["6.2.3", HELLO], ["6.2.4", KOSME]] as const) {
  add(
    id,
    `valid UTF-8 in fragments of 1 byte, split inside code points: ${value}`,
    async (client) => {
      const raw = utf8(value);
      const frames = Array.from(raw, (b, i) =>
        frame({
          opcode: i === 0 ? OP.TEXT : OP.CONTINUATION,
          payload: bytes(b),
          fin: i === raw.byteLength - 1,
        }));
      await client.send(...frames);
      await client.expectText(value);
      await client.closeNormally();
    },
  );
}
const INVALID = concat(utf8(KOSME), bytes(0xed, 0xa0, 0x80), utf8("edited"));
failing(
  "6.3.1",
  "invalid UTF-8 in one fragment",
  1007,
  (client) => client.send(text(INVALID)),
);
failing("6.3.2", "invalid UTF-8 in fragments of 1 byte", 1007, (client) => {
  const frames = Array.from(INVALID, (b, i) =>
    frame({
      opcode: i === 0 ? OP.TEXT : OP.CONTINUATION,
      payload: bytes(b),
      fin: i === INVALID.byteLength - 1,
    }));
  return client.send(...frames);
});

// 6.4: fail fast. The server must fail on the part that makes the text
// invalid, before the rest of the message is sent (the rest never is).
const PART1 = utf8(KOSME);
const PART2 = bytes(0xf4, 0x90, 0x80, 0x80); // beyond U+10FFFF
const PART2_SHORT = bytes(0xf4, 0x90); // invalid at its second byte
for (
  const [id, part2, described] of [
    ["6.4.1", PART2, "the code point beyond U+10FFFF"],
    ["6.4.2", PART2_SHORT, "only up to the byte that makes it invalid"],
  ] as const
) {
  failing(
    id,
    `fail fast: text in 3 frames, the 2nd invalid (${described})`,
    1007,
    async (client) => {
      await client.send(text(PART1, false), ping("valid so far"));
      await client.expectPong("valid so far");
      await client.send(cont(part2, false));
    },
  );
}
for (
  const [id, part2, described] of [
    ["6.4.3", PART2, "the code point beyond U+10FFFF"],
    ["6.4.4", PART2_SHORT, "only up to the byte that makes it invalid"],
  ] as const
) {
  failing(
    id,
    `fail fast: one text frame in 3 chops, the 2nd invalid (${described})`,
    1007,
    async (client) => {
      const whole = text(concat(PART1, PART2, utf8("edited")));
      // The header and the first part, then the invalid bytes; the rest of
      // the frame is never sent.
      const header = whole.byteLength -
        (PART1.byteLength + PART2.byteLength + 6);
      await client.write(whole.subarray(0, header + PART1.byteLength));
      await client.write(
        whole.subarray(
          header + PART1.byteLength,
          header + PART1.byteLength + part2.byteLength,
        ),
      );
    },
  );
}

// 6.5 - 6.23: Markus Kuhn's UTF-8 decoder test sequences, each as a text
// message in one frame: echoed when valid, 1007 when not.
type Sequence = [valid: boolean, bytes: number[]];
const CONT_BYTES = Array.from({ length: 0xbf - 0x80 }, (_, i) => 0x80 + i);
const lonely = (from: number, to: number) =>
  Array.from({ length: to - from }, (_, i) => [from + i, 0x20]).flat();
const MISSING_LAST = [
  [0xc0],
  [0xe0, 0x80],
  [0xf0, 0x80, 0x80],
  [0xf8, 0x80, 0x80, 0x80],
  [0xfc, 0x80, 0x80, 0x80, 0x80],
  [0xdf],
  [0xef, 0xbf],
  [0xf7, 0xbf, 0xbf],
  [0xfb, 0xbf, 0xbf, 0xbf],
  [0xfd, 0xbf, 0xbf, 0xbf, 0xbf],
];
const HIGH = [0xa0, 0xad, 0xae, 0xaf].map((
  b,
) => [0xed, b, b === 0xa0 || b === 0xae ? 0x80 : 0xbf]);
const LOW = [[0xed, 0xb0, 0x80], [0xed, 0xbf, 0xbf]];
const NONCHARACTERS: number[][] = [[0xef, 0xbf, 0xbe], [0xef, 0xbf, 0xbf]];
for (const lead of [0xf0, 0xf1, 0xf2, 0xf3, 0xf4]) {
  for (const second of [0x8f, 0x9f, 0xaf, 0xbf]) {
    if (lead === 0xf4 && second !== 0x8f) continue; // beyond U+10FFFF
    if (lead === 0xf0 && second === 0x8f) continue; // overlong
    for (const last of [0xbe, 0xbf]) {
      NONCHARACTERS.push([lead, second, 0xbf, last]);
    }
  }
}
const kosme = [...utf8(KOSME)];
const SEQUENCES: [string, Sequence[]][] = [
  ["some valid UTF-8 sequences", [
    [true, [...utf8("hello$world")]],
    [true, [...utf8("hello¢world")]],
    [true, [...utf8("hello€world")]],
    [true, [...utf8("hello𤭢world")]],
    [true, kosme],
  ]],
  [
    "all prefixes of κόσμε",
    kosme.map((
      _,
      i,
    ) => [[2, 5, 7, 9, 11].includes(i + 1), kosme.slice(0, i + 1)]),
  ],
  ["first possible sequence of each length", [
    [true, [0x00]],
    [true, [0xc2, 0x80]],
    [true, [0xe0, 0xa0, 0x80]],
    [true, [0xf0, 0x90, 0x80, 0x80]],
  ]],
  ["first possible sequence of 5 and 6 bytes (invalid)", [
    [false, [0xf8, 0x88, 0x80, 0x80, 0x80]],
    [false, [0xfc, 0x84, 0x80, 0x80, 0x80, 0x80]],
  ]],
  ["last possible sequence of each length", [
    [true, [0x7f]],
    [true, [0xdf, 0xbf]],
    [true, [0xef, 0xbf, 0xbf]],
    [true, [0xf4, 0x8f, 0xbf, 0xbf]],
  ]],
  ["last possible sequence of 4, 5 and 6 bytes (invalid)", [
    [false, [0xf7, 0xbf, 0xbf, 0xbf]],
    [false, [0xfb, 0xbf, 0xbf, 0xbf, 0xbf]],
    [false, [0xfd, 0xbf, 0xbf, 0xbf, 0xbf, 0xbf]],
  ]],
  ["other boundary conditions", [
    [true, [0xed, 0x9f, 0xbf]],
    [true, [0xee, 0x80, 0x80]],
    [true, [0xef, 0xbf, 0xbd]],
    [true, [0xf4, 0x8f, 0xbf, 0xbf]],
    [false, [0xf4, 0x90, 0x80, 0x80]],
  ]],
  ["unexpected continuation bytes", [
    [false, [0x80]],
    [false, [0xbf]],
    [false, [0x80, 0xbf]],
    [false, [0x80, 0xbf, 0x80]],
    [false, [0x80, 0xbf, 0x80, 0xbf]],
    [false, [0x80, 0xbf, 0x80, 0xbf, 0x80]],
    [false, [0x80, 0xbf, 0x80, 0xbf, 0x80, 0xbf]],
    [false, CONT_BYTES],
  ]],
  ["lonely start bytes", [
    [false, lonely(0xc0, 0xdf)],
    [false, lonely(0xe0, 0xef)],
    [false, lonely(0xf0, 0xf7)],
    [false, lonely(0xf8, 0xfb)],
    [false, lonely(0xfc, 0xfd)],
  ]],
  [
    "sequences with the last continuation byte missing",
    MISSING_LAST.map((s) => [false, s]),
  ],
  ["concatenated incomplete sequences", [[false, MISSING_LAST.flat()]]],
  ["impossible bytes", [
    [false, [0xfe]],
    [false, [0xff]],
    [false, [0xfe, 0xfe, 0xff, 0xff]],
  ]],
  ["overlong ASCII", [
    [false, [0xc0, 0xaf]],
    [false, [0xe0, 0x80, 0xaf]],
    [false, [0xf0, 0x80, 0x80, 0xaf]],
    [false, [0xf8, 0x80, 0x80, 0x80, 0xaf]],
    [false, [0xfc, 0x80, 0x80, 0x80, 0x80, 0xaf]],
  ]],
  ["maximum overlong sequences", [
    [false, [0xc1, 0xbf]],
    [false, [0xe0, 0x9f, 0xbf]],
    [false, [0xf0, 0x8f, 0xbf, 0xbf]],
    [false, [0xf8, 0x87, 0xbf, 0xbf, 0xbf]],
    [false, [0xfc, 0x83, 0xbf, 0xbf, 0xbf, 0xbf]],
  ]],
  ["overlong NUL", [
    [false, [0xc0, 0x80]],
    [false, [0xe0, 0x80, 0x80]],
    [false, [0xf0, 0x80, 0x80, 0x80]],
    [false, [0xf8, 0x80, 0x80, 0x80, 0x80]],
    [false, [0xfc, 0x80, 0x80, 0x80, 0x80, 0x80]],
  ]],
  ["single UTF-16 surrogates", [
    ...HIGH.map((s): Sequence => [false, s]),
    [false, [0xed, 0xb0, 0x80]],
    [false, [0xed, 0xbe, 0x80]],
    [false, [0xed, 0xbf, 0xbf]],
  ]],
  [
    "paired UTF-16 surrogates",
    HIGH.flatMap((h) => LOW.map((l): Sequence => [false, [...h, ...l]])),
  ],
  [
    "noncharacters (valid UTF-8)",
    NONCHARACTERS.map((s) => [true, s]),
  ],
  [
    "Unicode specials (valid)",
    [0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf].map(
      (b) => [true, [0xef, 0xbf, b]],
    ),
  ],
];
SEQUENCES.forEach(([title, sequences], s) => {
  sequences.forEach(([valid, raw], i) => {
    const id = `6.${s + 5}.${i + 1}`;
    const hex = raw.slice(0, 12).map((b) => b.toString(16).padStart(2, "0"))
      .join(" ");
    const name = `${title}: ${hex}${raw.length > 12 ? " ..." : ""} ${
      valid ? "echoed" : "fails"
    }`;
    const payload = new Uint8Array(raw);
    if (valid) {
      add(id, name, async (client) => {
        await client.send(text(payload));
        await client.expectText(new TextDecoder().decode(payload));
        await client.closeNormally();
      });
    } else {
      failing(id, name, 1007, (client) => client.send(text(payload)));
    }
  });
});

// ------------------------------------------------------ 7 Close handling

add("7.1.1", "a message, then a close", async (client) => {
  await client.send(text("Hello World!"), close(1000));
  await client.expectText("Hello World!");
  await client.expectClose(1000);
});
add("7.1.2", "two close frames: one answer", async (client) => {
  await client.send(close(1000), close(1000));
  await client.expectClose(1000);
});
add("7.1.3", "a ping after the close is not answered", async (client) => {
  await client.send(close(1000), ping("Hello World!"));
  await client.expectClose(1000);
});
add("7.1.4", "a message after the close is not echoed", async (client) => {
  await client.send(close(1000), text("Hello World!"));
  await client.expectClose(1000);
});
add(
  "7.1.5",
  "fragment 1, a close, then fragment 2: no message",
  async (client) => {
    await client.send(text("fragment1", false), close(1000), cont("fragment2"));
    await client.expectClose(1000);
  },
);
add("7.1.6", "a 256 KiB message, a close, then a ping", async (client) => {
  const payload = randomText(262_144, 716);
  await client.send(text(payload), close(1000), ping("Hello World!"));
  await client.expectText(payload);
  await client.expectClose(1000);
});

add(
  "7.3.1",
  "close with an empty body: answered with an empty body",
  async (client) => {
    await client.send(close());
    await client.expectClose(null);
  },
);
failing(
  "7.3.2",
  "close with a body of 1 byte",
  1002,
  (client) => client.send(frame({ opcode: OP.CLOSE, payload: bytes(0x03) })),
);
add("7.3.3", "close with a code", async (client) => {
  await client.send(close(1000));
  await client.expectClose(1000);
});
add("7.3.4", "close with a code and a reason", async (client) => {
  await client.send(close(1000, "Hello World!"));
  await client.expectClose(1000);
});
add("7.3.5", "close with a reason of 123 bytes", async (client) => {
  await client.send(close(1000, "*".repeat(123)));
  await client.expectClose(1000);
});
failing(
  "7.3.6",
  "close with a reason of 124 bytes (a 126-byte control frame)",
  1002,
  (client) => client.send(close(1000, "*".repeat(124))),
);
failing(
  "7.5.1",
  "close with a reason that is not UTF-8",
  1007,
  (client) =>
    client.send(
      close(1000, concat(utf8(KOSME), bytes(0xed, 0xa0, 0x80), utf8("edited"))),
    ),
);

const VALID_CODES = [
  1000,
  1001,
  1002,
  1003,
  1007,
  1008,
  1009,
  1010,
  1011,
  3000,
  3999,
  4000,
  4999,
];
VALID_CODES.forEach((code, i) => {
  add(
    `7.7.${i + 1}`,
    `close with the valid code ${code}: echoed`,
    async (client) => {
      await client.send(close(code));
      await client.expectClose(code);
    },
  );
});
const INVALID_CODES = [0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999];
INVALID_CODES.forEach((code, i) => {
  failing(
    `7.9.${i + 1}`,
    `close with the invalid code ${code}`,
    1002,
    (client) => client.send(close(code)),
  );
});
failing(
  "7.13.1",
  "close with the code 5000",
  1002,
  (client) => client.send(close(5000)),
);
failing(
  "7.13.2",
  "close with the code 65535",
  1002,
  (client) => client.send(close(65_535)),
);

// ------------------------------------------------ 9 Limits/Performance

/** Sends `frames` while reading the echoes, both at once. */
async function roundTrip(
  client: RawClient,
  frames: Uint8Array,
  chop: number | undefined,
  expect: () => Promise<void>,
): Promise<void> {
  await within(
    Promise.all([
      chop === undefined
        ? client.write(frames)
        : client.writeChops(frames, chop),
      expect(),
    ]),
    "the round trip",
    60_000,
  );
}

const MiB = 1_048_576;
const BIG = [64 * 1024, 256 * 1024, MiB, 4 * MiB, 8 * MiB, 16 * MiB];
const sizeName = (n: number) => n >= MiB ? `${n / MiB} MiB` : `${n / 1024} KiB`;
BIG.forEach((n, i) => {
  add(`9.1.${i + 1}`, `text message of ${sizeName(n)}`, async (client) => {
    const payload = randomText(n, 91 + i);
    await roundTrip(
      client,
      text(payload),
      undefined,
      () => client.expectText(payload),
    );
    await client.closeNormally();
  });
  add(`9.2.${i + 1}`, `binary message of ${sizeName(n)}`, async (client) => {
    const payload = randomBytes(n, 92 + i);
    await roundTrip(
      client,
      binary(payload),
      undefined,
      () => client.expectBinary(payload),
    );
    await client.closeNormally();
  });
});
const FRAGMENTS = [64, 256, 1024, 4096, 16_384, 65_536, 262_144, MiB, 4 * MiB];
/** A message in fragments of `size` bytes. */
function fragmented(
  opcode: number,
  payload: Uint8Array,
  size: number,
): Uint8Array {
  const frames: Uint8Array[] = [];
  for (let at = 0; at < payload.byteLength; at += size) {
    frames.push(frame({
      opcode: at === 0 ? opcode : OP.CONTINUATION,
      payload: payload.subarray(at, at + size),
      fin: at + size >= payload.byteLength,
    }));
  }
  return concat(...frames);
}
FRAGMENTS.forEach((size, i) => {
  add(
    `9.3.${i + 1}`,
    `text message of 4 MiB in fragments of ${
      size >= 1024 ? sizeName(size) : `${size} bytes`
    }`,
    async (client) => {
      const payload = randomText(4 * MiB, 93 + i);
      await roundTrip(
        client,
        fragmented(OP.TEXT, utf8(payload), size),
        undefined,
        () => client.expectText(payload),
      );
      await client.closeNormally();
    },
  );
  add(
    `9.4.${i + 1}`,
    `binary message of 4 MiB in fragments of ${
      size >= 1024 ? sizeName(size) : `${size} bytes`
    }`,
    async (client) => {
      const payload = randomBytes(4 * MiB, 94 + i);
      await roundTrip(
        client,
        fragmented(OP.BINARY, payload, size),
        undefined,
        () => client.expectBinary(payload),
      );
      await client.closeNormally();
    },
  );
});
[64, 128, 256, 512, 1024, 2048].forEach((chop, i) => {
  add(
    `9.5.${i + 1}`,
    `text message of 1 MiB in chops of ${chop} bytes`,
    async (client) => {
      const payload = randomText(MiB, 95 + i);
      await roundTrip(
        client,
        text(payload),
        chop,
        () => client.expectText(payload),
      );
      await client.closeNormally();
    },
  );
  add(
    `9.6.${i + 1}`,
    `binary message of 1 MiB in chops of ${chop} bytes`,
    async (client) => {
      const payload = randomBytes(MiB, 96 + i);
      await roundTrip(
        client,
        binary(payload),
        chop,
        () => client.expectBinary(payload),
      );
      await client.closeNormally();
    },
  );
});
[0, 16, 64, 256, 1024, 4096].forEach((n, i) => {
  add(`9.7.${i + 1}`, `1000 text messages of ${n} bytes`, async (client) => {
    const payloads = Array.from({ length: 1000 }, (_, k) => randomText(n, k));
    await roundTrip(
      client,
      concat(...payloads.map((p) => text(p))),
      undefined,
      async () => {
        for (const p of payloads) await client.expectText(p);
      },
    );
    await client.closeNormally();
  });
  add(`9.8.${i + 1}`, `1000 binary messages of ${n} bytes`, async (client) => {
    const payloads = Array.from({ length: 1000 }, (_, k) => randomBytes(n, k));
    await roundTrip(
      client,
      concat(...payloads.map((p) => binary(p))),
      undefined,
      async () => {
        for (const p of payloads) await client.expectBinary(p);
      },
    );
    await client.closeNormally();
  });
});

// ------------------------------------------------------------ 10 Misc

add(
  "10.1.1",
  "text message of 65536 bytes in fragments of 1300 bytes",
  async (client) => {
    const payload = randomText(65_536, 1011);
    await client.send(fragmented(OP.TEXT, utf8(payload), 1300));
    await client.expectText(payload);
    await client.closeNormally();
  },
);

// ------------------------------------------------------------- the runs

for (const mode of ["event", "pull"] as Mode[]) {
  for (const c of CASES) {
    Deno.test(`${c.id} ${c.name} [${mode}]`, async () => {
      await using server = startWsServer(mode);
      {
        await using client = await openClient(server.port);
        await c.run(client, server);
      }
      const event = await within(server.closed[0]!, "the server's close event");
      if (c.fails !== undefined) {
        // Failed by the server: no close frame came back, error then close.
        assertEquals(event.code, 1006);
        assertEquals(event.wasClean, false);
        assertEquals(server.errors.length, 1, "one error event");
      } else {
        assertEquals(
          event.wasClean,
          true,
          `a clean close (code ${event.code})`,
        );
        assertEquals(server.errors, []);
      }
    });
  }
}
