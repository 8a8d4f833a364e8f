"""`/health`: is every dependency of this instance up? For load balancers and operators.

Anyone gets the component names and up/down (all a load balancer needs). Staff also get each
backend, latency and the reason for a failure. The reason also goes to the log, with any
password in it blanked; an exception's text names hosts and users, so it is never public.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

import corecalc
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from web.config import redact_url

CHECK_TIMEOUT_SECONDS = 2.0
log = logging.getLogger("gpubroker.health")


def _backend_name(dotted: str) -> str:
    """A short name for a backend class path, naming redis where Redis is behind it."""
    lowered = dotted.lower()
    if "redis" in lowered:
        return "redis"
    if "locmem" in lowered or "inmemory" in lowered:
        return "memory"
    return dotted.rsplit(".", 1)[-1].lower()


def _check_database() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"backend": connection.vendor}


def _check_cache() -> dict[str, Any]:
    key, value = f"health:{uuid.uuid4().hex}", uuid.uuid4().hex
    real = getattr(cache, "primary", cache)  # Redis itself, not the in-process stand-in (web.fallback_cache)
    real.set(key, value, timeout=10)
    read = real.get(key)
    real.delete(key)
    if read != value:
        raise RuntimeError("value written was not read back")
    return {"backend": _backend_name(settings.CACHES["default"]["BACKEND"])}


async def _check_channel_layer() -> dict[str, Any]:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    channel = await layer.new_channel("health.")
    await layer.send(channel, {"type": "health.ping"})
    message = await layer.receive(channel)
    if message.get("type") != "health.ping":
        raise RuntimeError("message sent was not received back")
    return {"backend": _backend_name(settings.CHANNEL_LAYERS["default"]["BACKEND"])}


async def _run(name: str, check: Any) -> tuple[str, dict[str, Any]]:
    started = time.perf_counter()
    backend = {
        "database": lambda: connection.vendor,
        "cache": lambda: _backend_name(settings.CACHES["default"]["BACKEND"]),
        "channel_layer": lambda: _backend_name(settings.CHANNEL_LAYERS["default"]["BACKEND"]),
    }[name]()
    try:
        result = await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT_SECONDS)
        result["ok"] = True
    except Exception as exc:  # any failure of a dependency is a "down", reported, never a 500
        reason = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
        result = {"ok": False, "backend": backend, "error": redact_url(f"{backend} unreachable or failing ({reason})")[:300]}
        log.warning("health: %s is down: %s", name, result["error"])
    result["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
    return name, result


async def _is_staff(request: HttpRequest) -> bool:
    try:
        return bool((await request.auser()).is_staff)
    except Exception:  # sessions live in the database, which may be the thing that is down
        return False


@never_cache
@require_GET
async def health(request: HttpRequest) -> JsonResponse:
    checks = dict(
        await asyncio.gather(
            _run("database", database_sync_to_async(_check_database)),
            _run("cache", database_sync_to_async(_check_cache)),
            _run("channel_layer", _check_channel_layer),
        )
    )
    down = [name for name, result in checks.items() if not result["ok"]]
    status = 503 if down else 200
    if not await _is_staff(request):
        return JsonResponse({"status": "down" if down else "ok", "checks": {name: {"ok": result["ok"]} for name, result in checks.items()}, "down": down}, status=status)
    body = {
        "status": "down" if down else "ok",
        "mode": settings.GPUBROKER_MODE,
        "corecalc": corecalc.__version__,
        "checks": checks,
        "down": [f"{name} ({checks[name]['backend']})" for name in down],
    }
    return JsonResponse(body, status=status)
