"""Plan-tier rate limits for /api/v2: Free 10, Pro 100, Enterprise 1000 requests/s (the Plan rows).

A client is the owner of a valid X-API-Key (limited at their current plan's rate) or else the
client IP (REMOTE_ADDR, or the ASGI scope's client, which uvicorn already rewrites from
X-Forwarded-For for trusted proxies) at the Free rate. Sandbox multiplies every rate by
RATE_LIMIT_SANDBOX_MULTIPLIER; live enforces them as sold.

The count is a sliding-window counter over two fixed 1-second windows kept in Redis, so every
instance shares it: one pipelined round trip INCRs and EXPIREs this window's counter and GETs the
previous one, and `corecalc.window_decide` weighs them. A refused request gives its increment back
(a second round trip, on the refused path only), so a client hammering past its limit is limited
to its rate instead of being locked out for as long as it keeps trying. With Redis unset or down
the count falls back to an in-process `corecalc.SlidingWindow` per limit: still limited (per
process), never an error for the caller.

On the event loop (the fast path and async Django) requests are counted through `ahit`, which
batches: every hit that arrives while a round trip is in flight joins the next one, so one
pipelined round trip of redis.asyncio counts a whole burst (INCRBY per client) without ever
blocking the loop. Decisions within a batch are made in arrival order, as if one by one.

Applied twice without counting twice: `RateLimitMiddleware` in Django, and `web.fastpath` before it
answers from memory; the fast path leaves its decision in the ASGI scope for the middleware.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import corecalc
from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from providers.cache import fail_fast_redis
from web.middleware import HybridMiddleware

logger = logging.getLogger("gpubroker.ratelimit")

API_PREFIX = "/api/v2"
WINDOW_SECONDS = 1.0
REDIS_RETRY_AFTER = 5.0  # seconds Redis is skipped after an error, as in providers.cache
LOOKUP_TTL = 30.0  # seconds a key's (or Free's) limit is trusted without asking the database
MAX_LOOKUPS = 10_000
# Free's rate in the product spec: used only if the seeded Free plan row is missing, so a broken
# database seed limits the API at the documented rate (and logs it) instead of failing every call.
SPEC_FREE_RPS = 10
# Where the fast path leaves the decision it already counted, so Django does not count again.
SCOPE_KEY = "gpubroker.ratelimit"
RATE_HEADERS = {b"x-ratelimit-limit", b"x-ratelimit-remaining", b"retry-after"}


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    retry_after: int  # whole seconds, >= 1 when refused, 0 when allowed

    def headers(self) -> dict[str, str]:
        out = {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(self.remaining)}
        if not self.allowed:
            out["Retry-After"] = str(self.retry_after)
        return out

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        return [(name.lower().encode(), value.encode()) for name, value in self.headers().items()]

    def body(self) -> dict[str, object]:
        reason = f"over {self.limit} requests per second; retry in {self.retry_after} s"
        return {"error": "rate limit exceeded", "errors": [{"field": "rate", "reason": reason}]}


def _decision(allowed: bool, remaining: int, retry_after: float, limit: int) -> Decision:
    # Retry-After is whole seconds; rounding down to 0 would invite an immediate retry.
    wait = 0 if allowed else max(1, math.ceil(retry_after))
    return Decision(allowed, limit, max(0, remaining), wait)


class RateLimiter:
    """Counts one request of a client against a limit per second, in Redis or else in process."""

    def __init__(
        self,
        redis_client: Any | None,
        *,
        prefix: str = "gpubroker:rl:",
        clock: Callable[[], float] = time.time,
        window_seconds: float = WINDOW_SECONDS,
    ) -> None:
        self.redis = redis_client
        self.prefix = prefix
        # Wall clock: window numbers must agree between instances sharing Redis.
        self.clock = clock
        self.window = window_seconds
        # A window's counter is read during the next one too; a second more covers clock skew.
        self._ttl = math.ceil(2 * window_seconds) + 1
        self._redis_down_until = 0.0
        self._local: dict[int, corecalc.SlidingWindow] = {}
        self._local_lock = threading.Lock()
        self.redis_errors = 0
        # Per event loop: its asyncio Redis client and the hits waiting for the next round trip
        # (asyncio connections belong to the loop that opened them).
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopBatch] = weakref.WeakKeyDictionary()

    def hit(self, client: str, limit: int) -> Decision:
        now = self.clock()
        if self.redis is not None and now >= self._redis_down_until:
            try:
                return self._hit_redis(client, limit, now)
            except Exception as exc:  # redis-py raises RedisError and OSError subclasses alike
                self._redis_failed(exc, now)
        return self._hit_local(client, limit, now)

    def _hit_redis(self, client: str, limit: int, now: float) -> Decision:
        index = int(now // self.window)
        elapsed = min(1.0, max(0.0, (now - index * self.window) / self.window))
        current = f"{self.prefix}{client}:{index}"
        pipe = self.redis.pipeline(transaction=False)
        pipe.incr(current)
        pipe.expire(current, self._ttl)
        pipe.get(f"{self.prefix}{client}:{index - 1}")
        counted, _, previous = pipe.execute()
        # INCR already counted this request; window_decide wants the count before it.
        allowed, remaining, retry_after = corecalc.window_decide(int(previous or 0), int(counted) - 1, elapsed, limit, self.window)
        if not allowed:
            try:
                self.redis.decr(current)
            except Exception:  # the count stays one high for under two seconds: harmless
                logger.debug("could not give back a refused request's count for %s", client)
        return _decision(allowed, remaining, retry_after * self.window, limit)

    def _redis_failed(self, exc: BaseException, now: float) -> None:
        self.redis_errors += 1
        self._redis_down_until = now + REDIS_RETRY_AFTER
        logger.warning("Redis rate counters unreachable (%s); limiting in process for %.0fs", exc, REDIS_RETRY_AFTER)

    async def ahit(self, client: str, limit: int) -> Decision:
        """`hit` for code on an event loop: batched with concurrent hits, never blocks the loop."""
        now = self.clock()
        batch = self._loop_batch() if self.redis is not None and now >= self._redis_down_until else None
        if batch is None:
            return self._hit_local(client, limit, now)
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        batch.pending.append((client, limit, now, future))
        if not batch.flushing:
            batch.flushing = True
            asyncio.get_running_loop().create_task(self._flush(batch))
        return await future

    def _loop_batch(self) -> _LoopBatch | None:
        loop = asyncio.get_running_loop()
        batch = self._loops.get(loop)
        if batch is None:
            kwargs = getattr(getattr(self.redis, "connection_pool", None), "connection_kwargs", None)
            if kwargs is None:
                return None  # not a redis-py client (a test double): the sync path serves it
            import redis.asyncio
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            # The sync client's address and timeouts; no retries, like the sync path (fail fast).
            wanted = ("host", "port", "db", "username", "password", "socket_timeout", "socket_connect_timeout")
            options = {name: kwargs[name] for name in wanted if kwargs.get(name) is not None}
            batch = self._loops[loop] = _LoopBatch(redis.asyncio.Redis(**options, retry=Retry(NoBackoff(), 0)))
        return batch

    async def _flush(self, batch: _LoopBatch) -> None:
        # Let the hits of this loop turn join the batch before the round trip starts.
        await asyncio.sleep(0)
        while batch.pending:
            hits, batch.pending = batch.pending, []
            try:
                decisions = await self._decide_batch(batch.client, hits)
            except Exception as exc:  # redis.asyncio raises RedisError and OSError subclasses alike
                self._redis_failed(exc, hits[0][2])
                decisions = [self._hit_local(client, limit, now) for client, limit, now, _ in hits]
            for (_, _, _, future), decision in zip(hits, decisions, strict=True):
                if not future.done():
                    future.set_result(decision)
        batch.flushing = False

    async def _decide_batch(self, client_redis: Any, hits: list[tuple[str, int, float, Any]]) -> list[Decision]:
        groups: dict[tuple[str, int], list[int]] = {}
        for position, (client, _, now, _) in enumerate(hits):
            groups.setdefault((client, int(now // self.window)), []).append(position)
        pipe = client_redis.pipeline(transaction=False)
        for (client, index), positions in groups.items():
            current = f"{self.prefix}{client}:{index}"
            pipe.incrby(current, len(positions))
            pipe.expire(current, self._ttl)
            pipe.get(f"{self.prefix}{client}:{index - 1}")
        results = await pipe.execute()
        decisions: list[Decision | None] = [None] * len(hits)
        give_back: dict[str, int] = {}
        for group_number, ((client, index), positions) in enumerate(groups.items()):
            counted, _, previous = results[3 * group_number : 3 * group_number + 3]
            before = int(counted) - len(positions)  # the count other requests had made
            for position in positions:
                _, limit, now, _ = hits[position]
                elapsed = min(1.0, max(0.0, (now - index * self.window) / self.window))
                allowed, remaining, retry_after = corecalc.window_decide(int(previous or 0), before, elapsed, limit, self.window)
                if allowed:
                    before += 1
                else:
                    key = f"{self.prefix}{client}:{index}"
                    give_back[key] = give_back.get(key, 0) + 1
                decisions[position] = _decision(allowed, remaining, retry_after * self.window, limit)
        if give_back:
            try:
                back = client_redis.pipeline(transaction=False)
                for key, count in give_back.items():
                    back.decrby(key, count)
                await back.execute()
            except Exception:  # the count stays high for under two seconds: harmless
                logger.debug("could not give back %d refused counts", sum(give_back.values()))
        return [d for d in decisions if d is not None]

    def _hit_local(self, client: str, limit: int, now: float) -> Decision:
        window = self._local.get(limit)
        if window is None:
            with self._local_lock:
                window = self._local.setdefault(limit, corecalc.SlidingWindow(limit, self.window))
        allowed, remaining, retry_after = window.check(client, now)
        return _decision(allowed, remaining, retry_after, limit)


@dataclass
class _LoopBatch:
    client: Any  # redis.asyncio.Redis bound to one event loop
    pending: list[tuple[str, int, float, Any]] = field(default_factory=list)
    flushing: bool = False


class PlanLimits:
    """Requests per second by API key (its owner's current plan) and for Free, cached briefly in
    process so the hot path does not query the database on every request."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, ttl: float = LOOKUP_TTL) -> None:
        self.clock = clock
        self.ttl = ttl
        self._free: tuple[float, int] | None = None
        # sha256 of the raw key -> (expires, (client id, rps) or None for an invalid key): caching
        # refusals too keeps a flood of made-up keys away from the database.
        self._keys: OrderedDict[str, tuple[float, tuple[str, int] | None]] = OrderedDict()
        self._lock = threading.Lock()

    def free_cached(self) -> int | None:
        """Free's rate if known and fresh, without touching the database."""
        free = self._free
        return free[1] if free is not None and self.clock() < free[0] else None

    def free(self) -> int:
        cached = self.free_cached()
        if cached is not None:
            return cached
        from billing.models import Plan

        try:
            rps = Plan.objects.free().requests_per_second
        except Plan.DoesNotExist as exc:
            logger.error("%s; limiting anonymous API clients at the spec's %d requests/s", exc, SPEC_FREE_RPS)
            rps = SPEC_FREE_RPS
        self._free = (self.clock() + self.ttl, rps)
        return rps

    def key_cached(self, raw: str) -> tuple[bool, tuple[str, int] | None]:
        """(known, value): value is (client id, rps) for a valid key, None for an invalid one."""
        entry = self._keys.get(_digest(raw))
        if entry is None or self.clock() >= entry[0]:
            return False, None
        return True, entry[1]

    def key(self, raw: str) -> tuple[str, int] | None:
        known, value = self.key_cached(raw)
        if known:
            return value
        from billing.entitlements import current_plan
        from billing.models import ApiKey

        api_key = ApiKey.objects.authenticate(raw)
        # Per owner, not per key: more keys must not buy more rate.
        value = None if api_key is None else (f"u:{api_key.user_id}", current_plan(api_key.user).requests_per_second)
        with self._lock:
            self._keys[_digest(raw)] = (self.clock() + self.ttl, value)
            self._keys.move_to_end(_digest(raw))
            while len(self._keys) > MAX_LOOKUPS:
                self._keys.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._keys.clear()
            self._free = None


def _digest(raw: str) -> str:
    from billing.models import _hash_key

    return _hash_key(raw)


def applies(path: str) -> bool:
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


def enabled() -> bool:
    return bool(getattr(settings, "RATE_LIMIT_ENABLED", True))


def multiplier() -> int:
    return int(getattr(settings, "RATE_LIMIT_MULTIPLIER", 1))


_limiter: RateLimiter | None = None
_limits = PlanLimits()
_shared_lock = threading.Lock()


def shared_limiter() -> RateLimiter:
    """The process's limiter, counting in Redis at REDIS_URL when set."""
    global _limiter
    with _shared_lock:
        if _limiter is None:
            # While Redis is down the in-process fallback counts (REDIS_RETRY_AFTER).
            _limiter = RateLimiter(fail_fast_redis(settings.REDIS_URL) if settings.REDIS_URL else None)
        return _limiter


def plan_limits() -> PlanLimits:
    return _limits


def reset_shared_limiter(limiter: RateLimiter | None = None) -> None:
    """Replaces (or drops) the shared limiter and forgets cached limits: for tests."""
    global _limiter
    with _shared_lock:
        _limiter = limiter
    _limits.clear()


def _client(request: HttpRequest) -> tuple[str, int]:
    """(client id, plan rps) for a Django request; may query the database (cached 30 s)."""
    raw = request.headers.get("X-API-Key", "").strip()
    if raw:
        owner = _limits.key(raw)
        if owner is not None:
            return owner
    return f"ip:{request.META.get('REMOTE_ADDR', '')}", _limits.free()


def _known_client(request: HttpRequest) -> tuple[str, int] | None:
    """`_client` if the answer is cached, else None (the async path then asks in a thread)."""
    raw = request.headers.get("X-API-Key", "").strip()
    if raw:
        known, owner = _limits.key_cached(raw)
        if not known:
            return None
        if owner is not None:
            return owner
    free = _limits.free_cached()
    return None if free is None else (f"ip:{request.META.get('REMOTE_ADDR', '')}", free)


def refused(decision: Decision) -> HttpResponse:
    # nosniff stated here too: the fast path sends this answer without SecurityMiddleware.
    return JsonResponse(decision.body(), status=429, headers={**decision.headers(), "X-Content-Type-Options": "nosniff"})


def _finish(response: HttpResponse, decision: Decision) -> HttpResponse:
    for name, value in decision.headers().items():
        response[name] = value
    return response


class RateLimitMiddleware(HybridMiddleware):
    """Counts every /api/v2 request against its client's plan rate; 429 past it."""

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        if not enabled() or not applies(request.path_info):
            return self.get_response(request)
        decision = _counted(request)
        if decision is None:
            client, rps = _client(request)
            decision = shared_limiter().hit(client, rps * multiplier())
        if not decision.allowed:
            return refused(decision)
        return _finish(self.get_response(request), decision)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        if not enabled() or not applies(request.path_info):
            return await self.get_response(request)
        decision = _counted(request)
        if decision is None:
            client = _known_client(request) or await sync_to_async(_client)(request)
            decision = await shared_limiter().ahit(client[0], client[1] * multiplier())
        if not decision.allowed:
            return refused(decision)
        return _finish(await self.get_response(request), decision)


def _counted(request: HttpRequest) -> Decision | None:
    scope = getattr(request, "scope", None)
    return scope.get(SCOPE_KEY) if scope else None


async def check_scope(scope: dict[str, Any]) -> Decision | None:
    """For the ASGI fast path: counts an anonymous request by its client IP at the Free rate and
    records the decision in the scope; None when limits are off."""
    if not enabled():
        return None
    rps = _limits.free_cached()
    if rps is None:
        rps = await sync_to_async(_limits.free)()
    client = scope.get("client")
    decision = await shared_limiter().ahit(f"ip:{client[0] if client else ''}", rps * multiplier())
    scope[SCOPE_KEY] = decision
    return decision

