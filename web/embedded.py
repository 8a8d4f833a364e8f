"""Runs the worker (refreshes, health checks, events) inside the server process when there is no Redis.

The in-memory channel layer only reaches websockets of its own process, so on the embedded
default (no REDIS_URL) whatever changes prices must live in the server's event loop. With Redis,
`manage.py run_worker` does the same work in its own process and this wrapper does nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.conf import settings

logger = logging.getLogger("gpubroker.embedded")


def with_embedded_worker(app: Any) -> Any:
    if not settings.EMBEDDED_WORKER:
        return app

    started: list[asyncio.Task[None]] = []

    async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Daphne has no lifespan events: start on the first connection, in the server's loop.
        if not started and scope["type"] in ("http", "websocket"):
            from providers.worker import WorkerSettings, run_worker

            stop = asyncio.Event()
            worker_settings = WorkerSettings(sandbox_refresh_seconds=settings.SANDBOX_REFRESH_SECONDS)
            task = asyncio.get_running_loop().create_task(
                run_worker(stop, redis_url=None, mode=settings.GPUBROKER_MODE, settings=worker_settings)
            )
            started.append(task)
            from pods.engine import run as run_pods

            started.append(asyncio.get_running_loop().create_task(run_pods(stop)))
            logger.info("worker and rentals loop running in the server process (no REDIS_URL)")
        await app(scope, receive, send)

    return application
