"""Serves the whole product for `make run`: the ASGI server (see web.serving), plus the processes the mode needs.

In SANDBOX it also starts the mail sink (where EMAIL_URL points, if local) and the Stripe emulator
(at STRIPE_EMULATOR_URL, when no Stripe test key is set).

Without REDIS_URL the worker runs inside the server process (see `web.embedded`); with it, a separate
`run_worker` process is started. Every child is stopped when this command stops, and if one of
them dies the rest are stopped too, so a half-running product never sits there looking fine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from billing import gateway
from web.serving import uvicorn_command

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def web_processes_reason() -> str:
    if not settings.REDIS_URL:
        return "1 (no REDIS_URL: the in-memory cache, channel layer and worker live in this one process; set REDIS_URL for one per core)"
    return f"{settings.WEB_CONCURRENCY} (WEB_CONCURRENCY; default one per core)"


class Command(BaseCommand):
    help = "Serve GPUBROKER (ASGI server, worker, sandbox services) until interrupted."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))

    def processes(self, host: str, port: int) -> dict[str, list[str]]:
        python = sys.executable
        procs = {"web": uvicorn_command("web.asgi:application", host, port, workers=settings.WEB_CONCURRENCY)}
        if not settings.EMBEDDED_WORKER:
            procs["worker"] = [python, "manage.py", "run_worker"]
            procs["pods"] = [python, "manage.py", "run_pods"]
        procs.update(self.sandbox_processes(host, port))
        return procs

    def sandbox_processes(self, host: str, port: int) -> dict[str, list[str]]:
        """SANDBOX stand-ins for outside services: the mail sink and, without test keys, the Stripe emulator."""
        if settings.GPUBROKER_MODE != "sandbox":
            return {}
        python = sys.executable
        procs = {}
        if settings.EMAIL_BACKEND.endswith("smtp.EmailBackend") and settings.EMAIL_HOST in LOCAL_HOSTS:
            procs["mail"] = [python, "manage.py", "mail_sink", "--host", settings.EMAIL_HOST, "--port", str(settings.EMAIL_PORT)]
        try:
            keys = gateway.keys_for_mode(live=False)
        except gateway.StripeNotConfigured:
            keys = None  # the pages say what is wrong with the keys
        if keys and keys.emulator and keys.api_base:
            emulator = urlsplit(keys.api_base)
            app = "127.0.0.1" if host in ("0.0.0.0", "::") else host
            procs["stripe"] = [
                python, "manage.py", "stripe_emulator", "--host", emulator.hostname or "127.0.0.1", "--port", str(emulator.port or 12111),
                "--webhook-url", f"http://{app}:{port}/billing/stripe/webhook/", "--state-file", str(settings.BASE_DIR / "var" / "stripe-emulator.json"),
            ]
        return procs

    def handle(self, *args: Any, host: str, port: int, **options: Any) -> None:
        children: dict[str, subprocess.Popen[bytes]] = {}
        stopping = False

        def stop(*_: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        for name, command in self.processes(host, port).items():
            children[name] = subprocess.Popen(command, cwd=settings.BASE_DIR)

        database = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
        layers = "redis" if settings.REDIS_URL else "in-memory (worker inside the server)"
        self.stdout.write(
            self.style.SUCCESS(f"\nGPUBROKER ({settings.GPUBROKER_MODE}) at http://{host}:{port}/")
            + f"\n  database: {database}   cache and live updates: {layers}"
            + f"\n  web server processes: {web_processes_reason()}"
            + f"\n  processes: {', '.join(children)}   Ctrl-C stops everything\n"
        )
        exit_code = 0
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    self.stderr.write(f"{name} exited with code {child.returncode}; stopping the rest")
                    exit_code = child.returncode or 1
                    stopping = True
                    break
            time.sleep(0.5)

        for child in children.values():
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + 10
        for child in children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
        if exit_code:
            sys.exit(exit_code)
