"""Serves the SANDBOX SMTP sink until interrupted (`make run` starts it)."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from web import mailsink


class Command(BaseCommand):
    help = "Serve the sandbox SMTP sink; messages are kept for /sandbox/mailbox/."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=1025)
        parser.add_argument("--dir", type=Path, default=None, help="Maildir to keep messages in (default SANDBOX_MAILBOX_DIR)")

    def handle(self, *args: Any, host: str, port: int, dir: Path | None, **options: Any) -> None:
        if settings.GPUBROKER_MODE == "live":
            raise CommandError("the mail sink is for SANDBOX only; LIVE sends real mail through EMAIL_URL")
        directory = dir or settings.SANDBOX_MAILBOX_DIR
        logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every connection
        try:
            controller = mailsink.start(directory, host, port)
        except (OSError, RuntimeError) as exc:
            raise CommandError(f"cannot listen on {host}:{port} ({exc}); point EMAIL_URL at a free port") from None
        self.stdout.write(f"Mail sink at smtp://{host}:{port}/ keeping messages in {directory}")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
        finally:
            controller.stop()
