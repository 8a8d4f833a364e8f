"""How GPUBROKER is served: one ASGI server process per core for HTTP and websockets alike.

Measured on this 2-core machine (`make bench`, README "Deployment"): daphne's HTTP protocol costs
more per request than the whole fast path, so the product runs under uvicorn (httptools parser,
uvloop, the sans-I/O `websockets` protocol) with the same `web.asgi:application` — Channels consumers are
plain ASGI and run unchanged. daphne stays installed for `runserver` and as a fallback.
"""

from __future__ import annotations

import sys


def uvicorn_command(app: str, host: str, port: int, workers: int = 1) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", app,
        "--host", host, "--port", str(port),
        # One process per core (WEB_CONCURRENCY) sharing the socket; uvicorn restarts one that dies.
        "--workers", str(workers),
        "--http", "httptools", "--loop", "uvloop", "--ws", "websockets-sansio",
        # No live-update client sends more than a few hundred bytes: bigger frames close with 1009.
        "--ws-max-size", "65536",
        # Daphne-style start: the app starts its embedded worker on the first connection.
        "--lifespan", "off",
        "--no-access-log", "--log-level", "warning",
        # The client's address and scheme come from X-Forwarded-For/-Proto only from these peers:
        # the rate limiter (fast path and Django alike) counts the address uvicorn puts in the scope.
        "--proxy-headers", "--forwarded-allow-ips", forwarded_allow_ips(),
    ]


def forwarded_allow_ips() -> str:
    """FORWARDED_ALLOW_IPS as validated by web.config (default: loopback only); read from the
    environment when Django is not set up in this process (the bench starts servers that way)."""
    import os

    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    from web.config import SANDBOX, parse_forwarded_allow_ips

    try:
        return settings.FORWARDED_ALLOW_IPS
    except ImproperlyConfigured:
        return parse_forwarded_allow_ips(os.environ.get("FORWARDED_ALLOW_IPS"), os.environ.get("GPUBROKER_MODE", SANDBOX).strip().lower())
