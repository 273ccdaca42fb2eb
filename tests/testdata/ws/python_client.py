# Copyright 2026 the @corothread/evthread authors. MIT license.
"""A WebSocket client for tests/websocket_interop_test.ts: Python's
`websockets` (Debian's python3-websockets; run with /usr/bin/python3).

    python_client.py URL [PROTOCOL...]

It connects with the library's defaults (permessage-deflate offered), then
speaks one JSON object per line. Commands on stdin:
    {"send": {"text": "..."}} or {"send": {"binary": "<base64>"}}
    {"close": [code, reason]}
Events on stdout:
    {"open": {"protocol": "...", "extensions": "<the 101's field>"}}
    {"message": {"text": "..."}} or {"message": {"binary": "<base64>"}}
    {"closed": {"code": n, "reason": "...", "wasClean": bool}}
    {"error": "..."}
At the end of stdin a connection still open is closed with 1001, and the
process exits once its closed event is out.
"""

import asyncio
import base64
import json
import sys

import websockets

# Bounds every wait, so that a broken exchange ends the process.
SAFETY_SECONDS = 30


def emit(event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def response_headers(ws):
    # websockets <= 13 (the legacy client) and >= 14 (the new one).
    legacy = getattr(ws, "response_headers", None)
    return legacy if legacy is not None else ws.response.headers


def close_frames(ws):
    owner = ws if hasattr(ws, "close_rcvd") else ws.protocol
    return owner.close_rcvd, owner.close_sent


async def forward_messages(ws):
    try:
        async for message in ws:
            if isinstance(message, str):
                emit({"message": {"text": message}})
            else:
                emit({"message": {"binary": base64.b64encode(message).decode()}})
    except websockets.ConnectionClosed:
        pass  # reported below, from the close frames
    rcvd, sent = close_frames(ws)
    if rcvd is None:
        code, reason = 1006, ""
    else:
        code, reason = rcvd.code, rcvd.reason
    emit({"closed": {
        "code": code,
        "reason": reason,
        "wasClean": rcvd is not None and sent is not None,
    }})


async def main():
    url = sys.argv[1]
    protocols = sys.argv[2:]
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin
    )
    try:
        ws = await websockets.connect(
            url,
            subprotocols=protocols or None,
            max_size=None,
            open_timeout=SAFETY_SECONDS,
        )
    except Exception as error:  # the handshake failed: say how, and end
        emit({"error": f"{type(error).__name__}: {error}"})
        return
    emit({"open": {
        "protocol": ws.subprotocol or "",
        "extensions": response_headers(ws).get("Sec-WebSocket-Extensions", ""),
    }})
    reading = asyncio.create_task(forward_messages(ws))
    while True:
        line = await stdin.readline()
        if not line:
            break
        command = json.loads(line)
        try:
            if "send" in command:
                data = command["send"]
                if "text" in data:
                    await ws.send(data["text"])
                else:
                    await ws.send(base64.b64decode(data["binary"]))
            elif "close" in command:
                code, reason = command["close"]
                await ws.close(1000 if code is None else code, reason or "")
        except websockets.ConnectionClosed:
            pass  # the closed event tells
    if not reading.done():
        await ws.close(1001, "")
    await asyncio.wait_for(reading, SAFETY_SECONDS)


asyncio.run(main())
