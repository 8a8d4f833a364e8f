"""Serves the Stripe sandbox emulator (started by `make run` when SANDBOX has no test keys)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing import gateway
from billing.emulator import EmulatorServer


class Command(BaseCommand):
    help = "Serve the Stripe-compatible sandbox emulator until interrupted."

    def add_arguments(self, parser: CommandParser) -> None:
        default = urlsplit(getattr(settings, "STRIPE_EMULATOR_URL", "") or gateway.DEFAULT_EMULATOR_URL)
        parser.add_argument("--host", default=default.hostname or "127.0.0.1")
        parser.add_argument("--port", type=int, default=default.port or 12111)
        parser.add_argument("--webhook-url", required=True, help="Where to POST signed events, e.g. http://127.0.0.1:8000/billing/stripe/webhook/")
        parser.add_argument("--state-file", type=Path, default=None, help="Keep state across restarts in this JSON file")

    def handle(self, *args: Any, host: str, port: int, webhook_url: str, state_file: Path | None, **options: Any) -> None:
        if settings.GPUBROKER_MODE == "live":
            raise CommandError("the Stripe emulator is for SANDBOX only")
        # The signing secret comes from the environment (never the command line, where `ps` shows it).
        secret = os.environ.get("STRIPE_EMULATOR_WEBHOOK_SECRET") or gateway.emulator_webhook_secret()
        if state_file:
            state_file.parent.mkdir(parents=True, exist_ok=True)
        try:
            server = EmulatorServer(host, port, webhook_secret=secret, webhook_url=webhook_url, state_file=state_file)
        except OSError as exc:
            raise CommandError(f"cannot listen on {host}:{port} ({exc.strerror}); set STRIPE_EMULATOR_URL to a free port") from None
        self.stdout.write(f"Stripe emulator at {server.url} sending webhooks to {webhook_url}")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
