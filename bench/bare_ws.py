"""The websocket baseline: a raw ASGI app with one Redis pub/sub reader that writes every message
to every open socket, under the same uvicorn as the product (`bench.bench_ws`).

No Django, no Channels, no per-socket queue: the least a Python server on this machine can do to
fan one message out. BENCH_REDIS_URL names the Redis; messages on `bench.ws` are sent as they are.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import redis.asyncio as aredis

CHANNEL = "bench.ws"
_sockets: set[Any] = set()
_reader: list[asyncio.Task[None]] = []


async def _read() -> None:
    pubsub = aredis.Redis.from_url(os.environ["BENCH_REDIS_URL"]).pubsub()
    await pubsub.subscribe(CHANNEL)
    async for message in pubsub.listen():
        if message["type"] != "message":
            continue
        frame = {"type": "websocket.send", "text": message["data"].decode()}
        for send in list(_sockets):
            try:
                await send(frame)
            except Exception:
                _sockets.discard(send)


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        return
    if not _reader:
        _reader.append(asyncio.get_running_loop().create_task(_read()))
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": '{"type":"subscribed"}'})
    _sockets.add(send)
    try:
        while (await receive())["type"] != "websocket.disconnect":
            pass
    finally:
        _sockets.discard(send)
