"""The background worker: provider refreshes, health checks, events and pruning (see providers.worker)."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = "Run GPUBROKER's background worker until interrupted."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--sandbox-refresh", type=float, default=settings.SANDBOX_REFRESH_SECONDS,
            help="seconds between refreshes of one sandbox provider",
        )

    def handle(self, *args: Any, sandbox_refresh: float, **options: Any) -> None:
        if settings.EMBEDDED_WORKER:
            raise CommandError(
                "REDIS_URL is not set: the server runs the worker in its own process (the in-memory "
                "channel layer cannot reach it from here). Set REDIS_URL to run a separate worker."
            )
        if sandbox_refresh <= 0:
            raise CommandError("--sandbox-refresh must be above zero")
        asyncio.run(self._run(sandbox_refresh))

    async def _run(self, sandbox_refresh: float) -> None:
        from providers.worker import WorkerSettings, run_worker

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        self.stdout.write(f"worker: {settings.GPUBROKER_MODE} providers (Ctrl-C to stop)")
        await run_worker(stop, redis_url=settings.REDIS_URL, mode=settings.GPUBROKER_MODE,
                         settings=WorkerSettings(sandbox_refresh_seconds=sandbox_refresh))
        self.stdout.write("worker: stopped")
