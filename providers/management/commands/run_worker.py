"""The background worker: runs the sandbox market (and, as issues land, refreshes and health checks)."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = "Run GPUBROKER's background worker until interrupted."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tick", type=float, default=settings.MARKET_TICK_SECONDS, help="seconds between market moves")

    def handle(self, *args: Any, tick: float, **options: Any) -> None:
        if settings.EMBEDDED_WORKER:
            raise CommandError(
                "REDIS_URL is not set: the server runs the worker in its own process (the in-memory "
                "channel layer cannot reach it from here). Set REDIS_URL to run a separate worker."
            )
        if settings.GPUBROKER_MODE != "sandbox":
            raise CommandError("the sandbox market runs only in sandbox mode")
        asyncio.run(self._run(tick))

    async def _run(self, tick: float) -> None:
        from providers.market import run_market

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        self.stdout.write(f"worker: sandbox market moving every {tick:g}s (Ctrl-C to stop)")
        await run_market(tick, stop=stop)
        self.stdout.write("worker: stopped")
