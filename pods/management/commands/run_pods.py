"""The rentals loop (provisioning, metering, budgets) as its own process, beside `run_worker`."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Drive GPUBROKER's pods (provisioning, metering, budgets) until interrupted."

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.EMBEDDED_WORKER:
            raise CommandError(
                "REDIS_URL is not set: the server runs the rentals loop in its own process (the in-memory "
                "channel layer cannot reach pages from here). Set REDIS_URL to run it separately."
            )
        asyncio.run(self._run())

    async def _run(self) -> None:
        from pods.engine import run

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        self.stdout.write(f"pods: {settings.GPUBROKER_MODE} rentals loop, every {settings.POD_TICK_SECONDS:g}s (Ctrl-C to stop)")
        await run(stop)
        self.stdout.write("pods: stopped")
