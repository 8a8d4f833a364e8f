"""`manage.py serve` starts one web server process per core with Redis, and one without it."""

from __future__ import annotations

from typing import Any

from web.management.commands.serve import Command, web_processes_reason


def _workers(command: list[str]) -> int:
    return int(command[command.index("--workers") + 1])


def test_with_redis_serve_starts_the_configured_number_of_server_processes(settings: Any) -> None:
    settings.REDIS_URL, settings.WEB_CONCURRENCY, settings.EMBEDDED_WORKER = "redis://127.0.0.1:6381/3", 3, False
    processes = Command().processes("127.0.0.1", 8123)
    assert _workers(processes["web"]) == 3
    assert "worker" in processes  # the worker runs beside the server processes, not inside them
    assert web_processes_reason().startswith("3 ")


def test_without_redis_serve_stays_one_process_and_says_why(settings: Any) -> None:
    settings.REDIS_URL, settings.WEB_CONCURRENCY, settings.EMBEDDED_WORKER = None, 1, True
    processes = Command().processes("127.0.0.1", 8123)
    assert _workers(processes["web"]) == 1
    assert "worker" not in processes
    assert "no REDIS_URL" in web_processes_reason() and web_processes_reason().startswith("1 ")
