"""Two-tier cache of prebuilt response bytes: L2 in this process, then L1 in Redis.

- L2 is a bounded LRU (10,000 entries and 64 MiB of values) of `CacheEntry`: the bytes, when they expire, and how long
  they took to build. A hit costs a dict lookup, no unpickling, no validation.
- L1 is Redis, shared by every instance: an L2 miss reads it before computing, which is how a new
  instance warms up without stampeding the database. Redis being down is not an error for the
  caller: L1 is skipped for a few seconds and L2 carries on alone.
- Early refresh: on a hit, corecalc's probabilistic early expiration (XFetch) decides whether to
  rebuild now; the rebuild runs in the background while this and other requests keep getting the
  current bytes. Only one rebuild per key runs in a process, and across instances a short Redis
  lock keeps it to one: at most one or two recomputations whatever the number of requests.
- A hard miss (nothing, or past expiry) computes in the caller; concurrent callers of the same key
  wait for that one computation (single flight).
- Rebuilt when prices change: every entry records the catalog generation it was built under (the
  newest stored price and the providers down, see `providers.freshness`), polled at most once a
  second in the background. An entry of another generation that is GENERATION_MIN_AGE old is
  still served, and its rebuild starts in the background, as an early refresh would: readers never
  wait for it, and it runs once per key.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from providers.calc import should_refresh

logger = logging.getLogger("gpubroker.cache")

PRICE_TTL = 60.0
STATIC_TTL = 300.0
L2_MAX_ENTRIES = 10_000
L2_MAX_BYTES = 64 * 1024 * 1024  # a few large entries must not grow a process without bound either
REDIS_RETRY_AFTER = 5.0  # seconds L1 is skipped after a Redis error
_HEADER = struct.Struct("!dd16sq")  # expires_at, delta, token, generation
GENERATION_POLL_SECONDS = 1.0
# An entry is rebuilt for a newer generation once it is this old: the sandbox market moves a price
# every fraction of a second, and rebuilding every hot entry each time would eat the CPU it saves.
GENERATION_MIN_AGE = 5.0


@dataclass(frozen=True)
class CacheEntry:
    value: bytes
    expires_at: float  # wall clock, so instances agree through Redis
    delta: float  # seconds the computation took: XFetch refreshes expensive values earlier
    token: str  # changes with every computation (lets a response template know it is current)
    generation: int = 0  # the catalog generation it was built under

    def pack(self) -> bytes:
        return _HEADER.pack(self.expires_at, self.delta, bytes.fromhex(self.token), self.generation) + self.value

    @classmethod
    def unpack(cls, raw: bytes) -> CacheEntry:
        expires_at, delta, token, generation = _HEADER.unpack_from(raw)
        return cls(bytes(raw[_HEADER.size :]), expires_at, delta, token.hex(), generation)


@dataclass
class CacheStats:
    l2_hits: int = 0
    l1_hits: int = 0
    misses: int = 0
    computes: int = 0
    early_refreshes: int = 0
    generation_refreshes: int = 0  # rebuilds started because prices changed
    redis_errors: int = 0


Compute = Callable[[], bytes]


class TieredCache:
    def __init__(
        self,
        redis_client: Any | None,
        *,
        prefix: str = "gpubroker:c2:",  # c2: entries carry their generation
        max_entries: int = L2_MAX_ENTRIES,
        max_bytes: int = L2_MAX_BYTES,
        clock: Callable[[], float] = time.time,
        beta: float = 1.0,
        executor: ThreadPoolExecutor | None = None,
        generation_source: Callable[[], int] | None = None,
        generation_poll_seconds: float = GENERATION_POLL_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = redis_client
        self.prefix = prefix
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._l2_bytes = 0  # sum of the L2 values' sizes
        self.clock = clock
        self.beta = beta
        self.stats = CacheStats()
        self._l2: OrderedDict[str, CacheEntry] = OrderedDict()
        self._lock = threading.Lock()
        self._inflight: dict[str, Future[CacheEntry]] = {}
        self._refreshing: set[str] = set()
        self._quiet_until: dict[str, float] = {}  # keys another instance is rebuilding
        self._redis_down_until = 0.0
        self._executor = executor or ThreadPoolExecutor(max_workers=2, thread_name_prefix="cache-refresh")
        self.on_refreshed: Callable[[str, CacheEntry], None] | None = None
        # Request (path?query) -> (entry key, ttl, compute): lets a front server answer a request
        # it has seen before straight from L2 (see web.fastpath), bounded like L2.
        self._routes: OrderedDict[str, tuple[str, float, Compute]] = OrderedDict()
        # The catalog generation: read by a background poll (it may need the database), never inline.
        self._generation_source = generation_source
        self._generation_poll_seconds = generation_poll_seconds
        self._monotonic = monotonic
        self.generation = 0
        self._generation_polled_at = float("-inf")
        self._generation_polling = False

    # ----- catalog generation -----
    def current_generation(self) -> int:
        """The last known catalog generation; starts a background poll when it is over a second old."""
        if self._generation_source is not None and not self._generation_polling:
            if self._monotonic() - self._generation_polled_at >= self._generation_poll_seconds:
                with self._lock:
                    if self._generation_polling:
                        return self.generation
                    self._generation_polling = True
                self._executor.submit(self._poll_generation)
        return self.generation

    def _poll_generation(self) -> None:
        assert self._generation_source is not None
        try:
            self.generation = self._generation_source()
        except Exception:
            logger.exception("could not read the catalog generation; entries keep their time-based expiry")
        finally:
            self._generation_polled_at = self._monotonic()
            self._generation_polling = False

    # ----- L2 -----
    def peek(self, key: str) -> CacheEntry | None:
        """The L2 entry as it is (fresh or not), without touching Redis or statistics."""
        return self._l2.get(key)

    def _l2_set(self, key: str, entry: CacheEntry) -> None:
        with self._lock:
            old = self._l2.pop(key, None)
            self._l2_bytes += len(entry.value) - (len(old.value) if old else 0)
            self._l2[key] = entry
            while len(self._l2) > self.max_entries or (self._l2_bytes > self.max_bytes and len(self._l2) > 1):
                self._l2_bytes -= len(self._l2.popitem(last=False)[1].value)

    def __len__(self) -> int:
        return len(self._l2)

    # ----- L1 -----
    def _redis_usable(self) -> bool:
        return self.redis is not None and self.clock() >= self._redis_down_until

    def _redis_failed(self, exc: Exception) -> None:
        self.stats.redis_errors += 1
        self._redis_down_until = self.clock() + REDIS_RETRY_AFTER
        logger.warning("Redis cache unreachable (%s); serving from process memory for %.0fs", exc, REDIS_RETRY_AFTER)

    def _l1_get(self, key: str) -> CacheEntry | None:
        if not self._redis_usable():
            return None
        try:
            raw = self.redis.get(self.prefix + key)
        except Exception as exc:  # any Redis trouble degrades to L2 only
            self._redis_failed(exc)
            return None
        return CacheEntry.unpack(raw) if raw else None

    def _l1_set(self, key: str, entry: CacheEntry) -> None:
        if not self._redis_usable():
            return
        ttl_ms = max(1, int((entry.expires_at - self.clock()) * 1000))
        try:
            self.redis.set(self.prefix + key, entry.pack(), px=ttl_ms)
        except Exception as exc:
            self._redis_failed(exc)

    def _l1_lock(self, key: str, seconds: float) -> bool:
        """A cluster-wide "I am rebuilding this" flag; True when Redis is unusable (L2 alone)."""
        if not self._redis_usable():
            return True
        try:
            return bool(self.redis.set(self.prefix + "lock:" + key, b"1", nx=True, px=max(1, int(seconds * 1000))))
        except Exception as exc:
            self._redis_failed(exc)
            return True

    # ----- reads -----
    def get_entry(self, key: str, ttl: float, compute: Compute) -> CacheEntry:
        """The current entry for `key`, computed at most once per process at a time."""
        now = self.clock()
        entry = self._l2.get(key)
        if entry is not None and now < entry.expires_at:
            self.stats.l2_hits += 1
            self.maybe_refresh_early(key, entry, ttl, compute, now)
            return entry
        entry = self._l1_get(key)
        if entry is not None and now < entry.expires_at:
            self.stats.l1_hits += 1
            self._l2_set(key, entry)
            self.maybe_refresh_early(key, entry, ttl, compute, now)
            return entry
        self.stats.misses += 1
        return self._compute_once(key, ttl, compute)

    def get(self, key: str, ttl: float, compute: Compute) -> bytes:
        return self.get_entry(key, ttl, compute).value

    def maybe_refresh_early(self, key: str, entry: CacheEntry, ttl: float, compute: Compute, now: float | None = None) -> bool:
        """Starts a background rebuild when XFetch says so, or when the entry is of an older catalog
        generation and GENERATION_MIN_AGE old; never blocks (not even on Redis). True if one started."""
        now = self.clock() if now is None else now
        if key in self._refreshing or self._quiet_until.get(key, 0.0) > now:
            return False
        outdated = entry.generation != self.current_generation() and now - (entry.expires_at - ttl) >= GENERATION_MIN_AGE
        if not outdated and not should_refresh(now, entry.expires_at, max(entry.delta, 0.001), self.beta):
            return False
        with self._lock:
            if key in self._refreshing or key in self._inflight:
                return False
            self._refreshing.add(key)
        if outdated:
            self.stats.generation_refreshes += 1
        else:
            self.stats.early_refreshes += 1
        lock_seconds = max(entry.delta * 4, 1.0)

        def rebuild() -> None:
            try:
                if self._l1_lock(key, lock_seconds):
                    self._store(key, ttl, compute)
                    return
                # Another instance is rebuilding it: leave it be for the lock's time, and take what
                # it has already published to Redis.
                if len(self._quiet_until) > self.max_entries:
                    self._quiet_until.clear()
                self._quiet_until[key] = self.clock() + lock_seconds
                published = self._l1_get(key)
                if published is not None and published.token != entry.token and self.clock() < published.expires_at:
                    self._l2_set(key, published)
            except Exception:
                logger.exception("background refresh of %s failed; the current value stays until it expires", key)
            finally:
                with self._lock:
                    self._refreshing.discard(key)

        self._executor.submit(rebuild)
        return True

    def _store(self, key: str, ttl: float, compute: Compute) -> CacheEntry:
        generation = self.generation  # read before computing: a change during it triggers another
        started = time.perf_counter()
        value = compute()
        delta = time.perf_counter() - started
        self.stats.computes += 1
        entry = CacheEntry(value, self.clock() + ttl, delta, uuid.uuid4().hex, generation)
        self._l2_set(key, entry)
        self._l1_set(key, entry)
        if self.on_refreshed is not None:
            self.on_refreshed(key, entry)
        return entry

    def _compute_once(self, key: str, ttl: float, compute: Compute) -> CacheEntry:
        with self._lock:
            # A computation may have finished between our miss and here: its entry is in L2
            # before it leaves `_inflight`, so looking again under the lock closes that gap.
            fresh = self._l2.get(key)
            if fresh is not None and self.clock() < fresh.expires_at:
                return fresh
            future = self._inflight.get(key)
            owner = future is None
            if owner:
                future = Future()
                self._inflight[key] = future
        assert future is not None
        if not owner:
            return future.result(timeout=30)
        try:
            entry = self._store(key, ttl, compute)
            future.set_result(entry)
            return entry
        except BaseException as exc:
            future.set_exception(exc)
            raise
        finally:
            with self._lock:
                self._inflight.pop(key, None)

    def set(self, key: str, value: bytes, ttl: float) -> CacheEntry:
        entry = CacheEntry(value, self.clock() + ttl, 0.0, uuid.uuid4().hex)
        self._l2_set(key, entry)
        self._l1_set(key, entry)
        return entry

    def get_raw(self, key: str) -> bytes | None:
        """A value stored with `set` (L2, then L1), or None; never computes."""
        now = self.clock()
        entry = self._l2.get(key)
        if entry is None or now >= entry.expires_at:
            entry = self._l1_get(key)
            if entry is None or now >= entry.expires_at:
                return None
            self._l2_set(key, entry)
        return entry.value

    def clear_local(self) -> None:
        with self._lock:
            self._l2.clear()
            self._l2_bytes = 0
            self._routes.clear()

    def remember_route(self, route: str, key: str, ttl: float, compute: Compute) -> None:
        with self._lock:
            self._routes[route] = (key, ttl, compute)
            self._routes.move_to_end(route)
            while len(self._routes) > self.max_entries:
                self._routes.popitem(last=False)

    def route(self, route: str) -> tuple[str, float, Compute] | None:
        return self._routes.get(route)

    @property
    def hit_ratio(self) -> float:
        hits = self.stats.l2_hits + self.stats.l1_hits
        total = hits + self.stats.misses
        return hits / total if total else 0.0


def fail_fast_redis(url: str, timeout: float = 0.25) -> Any:
    """A redis-py client for the request path: short timeouts and no retries, so a down Redis
    costs a request a moment, then nothing while the caller skips it (see REDIS_RETRY_AFTER)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 0))


_shared: TieredCache | None = None
_shared_lock = threading.Lock()


def shared_cache() -> TieredCache:
    """The process's cache of prebuilt responses (L1 on REDIS_URL when set)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            from django.conf import settings

            from providers.freshness import catalog_generation

            _shared = TieredCache(fail_fast_redis(settings.REDIS_URL) if settings.REDIS_URL else None, generation_source=catalog_generation)
        return _shared


def reset_shared_cache(cache: TieredCache | None = None) -> None:
    """Replaces (or drops) the shared cache: for tests and for the benchmark's setup."""
    global _shared
    with _shared_lock:
        _shared = cache
