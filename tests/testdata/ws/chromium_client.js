// Copyright 2026 the @corothread/evthread authors. MIT license.
// The browser side of the Chromium client of tests/websocket_interop_test.ts.
// The test server serves this script in a page; it opens a WebSocket back to
// the same server (`?protocol=` gives the subprotocols to offer), takes its
// commands from `GET /__interop/commands` (a long poll) and posts its events
// to `POST /__interop/events`, in order, as JSON arrays: the objects of the
// line protocol of python_client.py, plus the command {"leave": true}
// (navigate away) and {"end": true} (stop polling).

const params = new URLSearchParams(location.search);
/** Events not yet posted; one POST at a time keeps them in order. */
const outbox = [];
let posting = false;

async function flush() {
  if (posting) return;
  posting = true;
  try {
    while (outbox.length > 0) {
      const batch = outbox.splice(0);
      await fetch("/__interop/events", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(batch),
      });
    }
  } finally {
    posting = false;
  }
}

function emit(event) {
  outbox.push(event);
  flush().catch(() => {
    // The server has gone: the test is over.
  });
}

function toBase64(bytes) {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

function fromBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

const ws = new WebSocket(`ws://${location.host}/`, params.getAll("protocol"));
ws.binaryType = "arraybuffer";
ws.onopen = () =>
  emit({ open: { protocol: ws.protocol, extensions: ws.extensions } });
ws.onmessage = (event) =>
  emit({
    message: typeof event.data === "string"
      ? { text: event.data }
      : { binary: toBase64(new Uint8Array(event.data)) },
  });
// Browsers say nothing more about an error (the close event follows).
ws.onerror = () => emit({ error: "the WebSocket fired an error event" });
ws.onclose = (event) =>
  emit({
    closed: {
      code: event.code,
      reason: event.reason,
      wasClean: event.wasClean,
    },
  });

function obey(command) {
  if ("send" in command) {
    const data = command.send;
    ws.send("text" in data ? data.text : fromBase64(data.binary));
  } else if ("close" in command) {
    const [code, reason] = command.close;
    ws.close(code ?? undefined, reason ?? undefined);
  } else if ("leave" in command) {
    location.replace("about:blank");
    return false;
  } else if ("end" in command) {
    return false;
  }
  return true;
}

async function poll() {
  // Each poll returns within seconds; the test ends the page long before.
  for (let i = 0; i < 10_000; i++) {
    const response = await fetch("/__interop/commands", { cache: "no-store" });
    for (const command of await response.json()) {
      try {
        if (!obey(command)) return;
      } catch (error) {
        emit({ error: `${command && Object.keys(command)[0]}: ${error}` });
      }
    }
  }
}

poll().catch((error) => emit({ error: `polling for commands: ${error}` }));
