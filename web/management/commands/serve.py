"""Serves the whole product for `make run`: the ASGI server (see web.serving), plus the processes the mode needs.

Without REDIS_URL the worker runs inside daphne (see `web.embedded`); with it, a separate
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

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from web.serving import uvicorn_command


class Command(BaseCommand):
    help = "Serve GPUBROKER (daphne + worker) until interrupted."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))

    def processes(self, host: str, port: int) -> dict[str, list[str]]:
        python = sys.executable
        procs = {"web": uvicorn_command("web.asgi:application", host, port)}
        if not settings.EMBEDDED_WORKER:
            procs["worker"] = [python, "manage.py", "run_worker"]
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
