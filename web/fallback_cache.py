"""Django's default cache with Redis: django-redis, and an in-process stand-in while Redis is down.

What counts in the default cache must keep counting when Redis stops: allauth's rate limits on
sign-in, sign-up and password reset (its counters and locks live there), the landing table's
last-sent fingerprints. django-redis raises when Redis is unreachable, which made those pages
answer 500. Here every operation goes to Redis while it answers; the first failure switches this
process to a local memory cache for `REDIS_RETRY_AFTER` seconds, then Redis is tried again. So the
limits still hold while Redis is down (per process, as the API limiter does) and nobody sees an
error; what was counted locally is not carried back into Redis.

`primary` is the django-redis cache itself, for the health check, which must see Redis as it is.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache
from django.core.cache.backends.locmem import LocMemCache
from django_redis.cache import RedisCache
from django_redis.exceptions import ConnectionInterrupted

logger = logging.getLogger("gpubroker.cache")

REDIS_RETRY_AFTER = 5.0  # seconds, as for the rate limiter and the response cache
LOCAL_MAX_ENTRIES = 10_000


class FallbackRedisCache(BaseCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(params)
        self.primary = RedisCache(server, params)
        self.local = LocMemCache(f"fallback:{server}", {**params, "OPTIONS": {"MAX_ENTRIES": LOCAL_MAX_ENTRIES}})
        self.clock = time.monotonic
        self._down_until = 0.0
        self._lock = threading.Lock()
        self.redis_errors = 0

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self.clock() >= self._down_until:
            try:
                return getattr(self.primary, method)(*args, **kwargs)
            except (ConnectionInterrupted, ConnectionError, TimeoutError, OSError) as exc:
                self._failed(exc)
            except Exception as exc:
                # redis-py's own errors (e.g. BusyLoadingError while Redis starts) are outages too.
                if type(exc).__module__.split(".")[0] != "redis":
                    raise
                self._failed(exc)
        return getattr(self.local, method)(*args, **kwargs)

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            self.redis_errors += 1
            self._down_until = self.clock() + REDIS_RETRY_AFTER
        logger.warning("Redis cache unreachable (%s); using this process's memory for %.0fs", exc, REDIS_RETRY_AFTER)

    def add(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        return self._call("add", key, value, timeout, version=version)

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        return self._call("get", key, default, version=version)

    def set(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> Any:
        return self._call("set", key, value, timeout, version=version)

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        return self._call("touch", key, timeout, version=version)

    def delete(self, key: Any, version: int | None = None) -> bool:
        return bool(self._call("delete", key, version=version))

    def get_many(self, keys: Any, version: int | None = None) -> dict[Any, Any]:
        return self._call("get_many", keys, version=version)

    def set_many(self, data: dict[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> list[Any]:
        return self._call("set_many", data, timeout, version=version) or []

    def delete_many(self, keys: Any, version: int | None = None) -> Any:
        return self._call("delete_many", keys, version=version)

    def has_key(self, key: Any, version: int | None = None) -> bool:
        return self._call("has_key", key, version=version)

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        return self._call("incr", key, delta, version=version)

    def decr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        return self._call("decr", key, delta, version=version)

    def clear(self) -> None:
        self.local.clear()
        self._call("clear")

    def close(self, **kwargs: Any) -> None:
        self.primary.close(**kwargs)
