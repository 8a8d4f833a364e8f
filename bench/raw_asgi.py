"""The floor: a raw ASGI app returning prebuilt bytes, no framework at all, under the same server.

Served as `uvicorn bench.raw_asgi:application` with BENCH_BODY_FILE naming the bytes to return.
"""

import os
from typing import Any

with open(os.environ["BENCH_BODY_FILE"], "rb") as handle:
    BODY = handle.read()

HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
