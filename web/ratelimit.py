"""Plan-tier rate limits for /api/v2: Free 10, Pro 100, Enterprise 1000 requests/s (the Plan rows).

A client is the owner of a valid API key (`X-API-Key` or `Authorization: Bearer`) or the user of a
signed-in session, limited at their current plan's rate (all their keys and sessions together),
or else its address at the Free rate (IPv6 by /64). Who that is comes from `web.identity`, from
memory on the hot path. An API key that is unknown or revoked is refused with 401. The address is
the ASGI scope's client (REMOTE_ADDR), which uvicorn rewrites from X-Forwarded-For only for the
trusted proxies of FORWARDED_ALLOW_IPS (web.serving). Sandbox multiplies every rate by
RATE_LIMIT_SANDBOX_MULTIPLIER; live enforces them as sold.

The count is a sliding-window counter over two fixed 1-second windows kept in Redis, so every
instance shares it: one pipelined round trip INCRs and EXPIREs this window's counter and GETs the
previous one, and `corecalc.window_decide` weighs them. A refused request gives its increment back
(a second round trip, on the refused path only, and only to a counter that still exists), so a
client hammering past its limit is limited to its rate instead of being locked out for as long as
it keeps trying. With Redis unset or down the count falls back to an in-process
`corecalc.SlidingWindow` per limit: still limited (per process), never an error for the caller.

A credential memory does not know costs a database lookup, so lookups have a budget of their own
per address (the Free rate, `lookup:` counters): a flood of made-up keys or cookies from one
address reaches the database at most that often, and is refused with 429 past it.

On the event loop (the fast path and async Django) requests are counted through `ahit`, which
batches: every hit that arrives while a round trip is in flight joins the next one, so one
pipelined round trip of redis.asyncio counts a whole burst (INCRBY per client) without ever
blocking the loop. Decisions within a batch are made in arrival order, as if one by one; whatever
fails, every waiting request gets its decision.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import corecalc
from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from providers.cache import fail_fast_redis
from web import identity
from web.identity import Caller, Credentials
from web.middleware import HybridMiddleware

logger = logging.getLogger("gpubroker.ratelimit")

API_PREFIX = "/api/v2"
WINDOW_SECONDS = 1.0
REDIS_RETRY_AFTER = 5.0  # seconds Redis is skipped after an error, as in providers.cache
FAIL_FAST_SECONDS = 0.25  # a round trip slower than this counts as Redis down (fail fast)
# Where the fast path leaves the decision it already counted, so Django does not count again.
SCOPE_KEY = "gpubroker.ratelimit"
RATE_HEADERS = {b"x-ratelimit-limit", b"x-ratelimit-remaining", b"x-ratelimit-reset", b"retry-after"}
# Gives a refused request's count back only while its counter lives: DECRBY on an expired key
# would create a counter of -1 that never expires.
GIVE_BACK = """
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then redis.call('DECRBY', key, ARGV[i]) end
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    retry_after: int  # whole seconds, >= 1 when refused, 0 when allowed
    reset: int = 1  # whole seconds until the window being spent ends (Retry-After when refused)

    def headers(self) -> dict[str, str]:
        out = {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(self.remaining), "X-RateLimit-Reset": str(self.reset)}
        if not self.allowed:
            out["Retry-After"] = str(self.retry_after)
        return out

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        return [(name.lower().encode(), value.encode()) for name, value in self.headers().items()]

    def body(self) -> dict[str, object]:
        reason = f"over {self.limit} requests per second; retry in {self.retry_after} s"
        return {"error": "rate limit exceeded", "errors": [{"field": "rate", "reason": reason}]}


def _decision(allowed: bool, remaining: int, retry_after: float, limit: int, until_window_end: float) -> Decision:
    # Retry-After is whole seconds; rounding down to 0 would invite an immediate retry.
    wait = 0 if allowed else max(1, math.ceil(retry_after))
    return Decision(allowed, limit, max(0, remaining), wait, wait if wait else max(1, math.ceil(until_window_end)))


def _no_rate(limit: int) -> Decision:
    # A plan of 0 requests/s (refused by Plan's validation, but rows can be edited in SQL) allows
    # nothing; corecalc refuses such a limit, so it is answered here instead of raising.
    logger.error("a plan allows %d requests/s; refusing its requests (fix the Plan row)", limit)
    return Decision(False, max(0, limit), 0, 1, 1)


class RateLimiter:
    """Counts one request of a client against a limit per second, in Redis or else in process."""

    def __init__(
        self,
        url: str | None,
        *,
        prefix: str = "gpubroker:rl:",
        clock: Callable[[], float] = time.time,
        window_seconds: float = WINDOW_SECONDS,
        timeout: float = FAIL_FAST_SECONDS,
    ) -> None:
        # The full REDIS_URL (redis://, rediss:// with TLS, unix://): both clients are built from
        # it, so the event-loop client talks to the same server the same way as the sync one.
        self.url = url
        self.timeout = timeout
        self.redis = fail_fast_redis(url, timeout) if url else None
        self.prefix = prefix
        # Wall clock: window numbers must agree between instances sharing Redis.
        self.clock = clock
        self.window = window_seconds
        # A window's counter is read during the next one too; a second more covers clock skew.
        self._ttl = math.ceil(2 * window_seconds) + 1
        self._redis_down_until = 0.0
        self._local: dict[int, corecalc.SlidingWindow] = {}
        self._local_lock = threading.Lock()
        self._give_back = self.redis.register_script(GIVE_BACK) if self.redis is not None else None
        self.redis_errors = 0
        # Per event loop: its asyncio Redis client and the hits waiting for the next round trip
        # (asyncio connections belong to the loop that opened them).
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopBatch] = weakref.WeakKeyDictionary()

    def _position(self, now: float) -> tuple[int, float]:
        index = int(now // self.window)
        return index, min(1.0, max(0.0, (now - index * self.window) / self.window))

    def _decide(self, previous: Any, before: int, elapsed: float, limit: int) -> Decision:
        # Counters are never negative by design; a stray one must not raise (or pass for Redis down).
        allowed, remaining, retry_after = corecalc.window_decide(max(0, int(previous or 0)), max(0, before), elapsed, limit, self.window)
        return _decision(allowed, remaining, retry_after * self.window, limit, (1.0 - elapsed) * self.window)

    def hit(self, client: str, limit: int) -> Decision:
        if limit < 1:
            return _no_rate(limit)
        now = self.clock()
        if self.redis is not None and now >= self._redis_down_until:
            try:
                return self._hit_redis(client, limit, now)
            except Exception as exc:  # redis-py raises RedisError and OSError subclasses alike
                self._redis_failed(exc, now)
        return self._hit_local(client, limit, now)

    def _hit_redis(self, client: str, limit: int, now: float) -> Decision:
        index, elapsed = self._position(now)
        current = f"{self.prefix}{client}:{index}"
        pipe = self.redis.pipeline(transaction=False)
        pipe.incr(current)
        pipe.expire(current, self._ttl)
        pipe.get(f"{self.prefix}{client}:{index - 1}")
        counted, _, previous = pipe.execute()
        # INCR already counted this request; window_decide wants the count before it.
        decision = self._decide(previous, int(counted) - 1, elapsed, limit)
        if not decision.allowed:
            try:
                self._give_back(keys=[current], args=[1])
            except Exception:  # the count stays one high for under two seconds: harmless
                logger.debug("could not give back a refused request's count for %s", client)
        return decision

    def _redis_failed(self, exc: BaseException, now: float) -> None:
        self.redis_errors += 1
        self._redis_down_until = now + REDIS_RETRY_AFTER
        logger.warning("Redis rate counters unreachable (%s); limiting in process for %.0fs", exc, REDIS_RETRY_AFTER)

    async def ahit(self, client: str, limit: int) -> Decision:
        """`hit` for code on an event loop: batched with concurrent hits, never blocks the loop."""
        if limit < 1:
            return _no_rate(limit)
        now = self.clock()
        if self.redis is None or now < self._redis_down_until:
            return self._hit_local(client, limit, now)
        batch = self._loop_batch()
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        batch.pending.append((client, limit, now, future))
        if not batch.flushing:
            batch.flushing = True
            asyncio.get_running_loop().create_task(self._flush(batch))
        return await future

    def _loop_batch(self) -> _LoopBatch:
        loop = asyncio.get_running_loop()
        batch = self._loops.get(loop)
        if batch is None:
            import redis.asyncio
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            # The same URL and fail-fast timeouts as the sync client; no retries (fail fast).
            client = redis.asyncio.from_url(self.url or "", socket_connect_timeout=self.timeout, socket_timeout=self.timeout, retry=Retry(NoBackoff(), 0))
            batch = self._loops[loop] = _LoopBatch(client, client.register_script(GIVE_BACK))
        return batch

    async def _flush(self, batch: _LoopBatch) -> None:
        hits: list[tuple[str, int, float, Any]] = []
        try:
            # Let the hits of this loop turn join the batch before the round trip starts.
            await asyncio.sleep(0)
            while batch.pending:
                hits, batch.pending = batch.pending, []
                try:
                    decisions = await self._decide_batch(batch, hits)
                except Exception as exc:  # redis.asyncio raises RedisError and OSError subclasses alike
                    self._redis_failed(exc, hits[0][2])
                    decisions = [self._hit_local(client, limit, now) for client, limit, now, _ in hits]
                for (_, _, _, future), decision in zip(hits, decisions, strict=True):
                    if not future.done():
                        future.set_result(decision)
                hits = []
        finally:
            # Whatever went wrong (even a cancelled flush), no request waits forever: the ones
            # still waiting are decided in process, and the next hit starts a new flush.
            batch.flushing = False
            for client, limit, now, future in [*hits, *batch.pending]:
                if not future.done():
                    try:
                        future.set_result(self._hit_local(client, limit, now))
                    except Exception as exc:
                        future.set_exception(exc)
            batch.pending = []

    async def _decide_batch(self, batch: _LoopBatch, hits: list[tuple[str, int, float, Any]]) -> list[Decision]:
        groups: dict[tuple[str, int], list[int]] = {}
        for position, (client, _, now, _) in enumerate(hits):
            groups.setdefault((client, int(now // self.window)), []).append(position)
        pipe = batch.client.pipeline(transaction=False)
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
                decision = self._decide(previous, before, self._position(now)[1], limit)
                if decision.allowed:
                    before += 1
                else:
                    key = f"{self.prefix}{client}:{index}"
                    give_back[key] = give_back.get(key, 0) + 1
                decisions[position] = decision
        if give_back:
            try:
                await batch.give_back(keys=list(give_back), args=list(give_back.values()))
            except Exception:  # the count stays high for under two seconds: harmless
                logger.debug("could not give back %d refused counts", sum(give_back.values()))
        return [d for d in decisions if d is not None]

    def _hit_local(self, client: str, limit: int, now: float) -> Decision:
        window = self._local.get(limit)
        if window is None:
            with self._local_lock:
                window = self._local.setdefault(limit, corecalc.SlidingWindow(limit, self.window))
        allowed, remaining, retry_after = window.check(client, now)
        return _decision(allowed, remaining, retry_after, limit, self.window - now % self.window)


@dataclass
class _LoopBatch:
    client: Any  # redis.asyncio.Redis bound to one event loop
    give_back: Any  # GIVE_BACK registered on that client
    pending: list[tuple[str, int, float, Any]] = field(default_factory=list)
    flushing: bool = False


def applies(path: str) -> bool:
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


def enabled() -> bool:
    return bool(getattr(settings, "RATE_LIMIT_ENABLED", True))


def multiplier() -> int:
    return int(getattr(settings, "RATE_LIMIT_MULTIPLIER", 1))


_limiter: RateLimiter | None = None
_shared_lock = threading.Lock()


def shared_limiter() -> RateLimiter:
    """The process's limiter, counting in Redis at REDIS_URL when set."""
    global _limiter
    with _shared_lock:
        if _limiter is None:
            # While Redis is down the in-process fallback counts (REDIS_RETRY_AFTER).
            _limiter = RateLimiter(settings.REDIS_URL or None)
        return _limiter


def reset_shared_limiter(limiter: RateLimiter | None = None) -> None:
    """Replaces (or drops) the shared limiter: for tests."""
    global _limiter
    with _shared_lock:
        _limiter = limiter


def request_credentials(request: HttpRequest) -> Credentials:
    return Credentials(
        identity.api_key_from(request.headers.get("X-API-Key"), request.headers.get("Authorization")),
        request.COOKIES.get(settings.SESSION_COOKIE_NAME) or None,
    )


def refused(decision: Decision) -> HttpResponse:
    return JsonResponse(decision.body(), status=429, headers=decision.headers())


def bad_key(decision: Decision) -> HttpResponse:
    """401 for an API key that is unknown, revoked, or whose owner is deactivated."""
    body = {"error": "invalid API key", "errors": [{"field": "X-API-Key", "reason": "unknown or revoked API key; create one on your account's API keys page"}]}
    return JsonResponse(body, status=401, headers={**decision.headers(), "WWW-Authenticate": 'Bearer realm="api"'})


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the limiter says about one request: its decision, and the answer when it is refused."""

    decision: Decision
    key_refused: bool = False

    def refusal(self) -> HttpResponse | None:
        if not self.decision.allowed:
            return refused(self.decision)
        return bad_key(self.decision) if self.key_refused else None


async def acheck(credentials: Credentials, address: str, limiter: RateLimiter | None = None, identities: identity.Identities | None = None) -> Verdict:
    """Resolves the caller (memory first, the database within the lookup budget) and counts the
    request against them, on the event loop."""
    limiter = shared_limiter() if limiter is None else limiter
    identities = identity.identities() if identities is None else identities
    scale = multiplier()
    caller = identities.cached(credentials, address)
    if caller is None:
        if credentials.needs_lookup_budget:
            free = identities.free_cached() or await sync_to_async(identities.free)()
            budget = await limiter.ahit("lookup:" + identity.ip_client(address), free * scale)
            if not budget.allowed:
                return Verdict(budget)
        caller = await sync_to_async(identities.resolve)(credentials, address)
    return await _count(caller, address, identities, limiter.ahit, scale)


def check(credentials: Credentials, address: str, limiter: RateLimiter | None = None, identities: identity.Identities | None = None) -> Verdict:
    """`acheck` for sync code."""
    limiter = shared_limiter() if limiter is None else limiter
    identities = identity.identities() if identities is None else identities
    scale = multiplier()
    caller = identities.cached(credentials, address)
    if caller is None:
        if credentials.needs_lookup_budget:
            budget = limiter.hit("lookup:" + identity.ip_client(address), identities.free() * scale)
            if not budget.allowed:
                return Verdict(budget)
        caller = identities.resolve(credentials, address)
    return _count_sync(caller, address, identities, limiter.hit, scale)


async def _count(caller: Caller | bool, address: str, identities: identity.Identities, ahit: Any, scale: int) -> Verdict:
    if isinstance(caller, Caller):
        return Verdict(await ahit(caller.client, caller.rps * scale))
    # A refused key still counts, against its address at Free's rate: refusals cost their sender.
    free = identities.free_cached() or await sync_to_async(identities.free)()
    return Verdict(await ahit(identity.ip_client(address), free * scale), key_refused=True)


def _count_sync(caller: Caller | bool, address: str, identities: identity.Identities, hit: Any, scale: int) -> Verdict:
    if isinstance(caller, Caller):
        return Verdict(hit(caller.client, caller.rps * scale))
    return Verdict(hit(identity.ip_client(address), identities.free() * scale), key_refused=True)


def _finish(response: HttpResponse, decision: Decision) -> HttpResponse:
    for name, value in decision.headers().items():
        response[name] = value
    return response


class RateLimitMiddleware(HybridMiddleware):
    """Counts every /api/v2 request against its caller's plan rate; 429 past it, 401 for a bad key."""

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        if not enabled() or not applies(request.path_info):
            return self.get_response(request)
        verdict = _counted(request) or check(request_credentials(request), request.META.get("REMOTE_ADDR", ""))
        refusal = verdict.refusal()
        if refusal is not None:
            return refusal
        return _finish(self.get_response(request), verdict.decision)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        if not enabled() or not applies(request.path_info):
            return await self.get_response(request)
        verdict = _counted(request) or await acheck(request_credentials(request), request.META.get("REMOTE_ADDR", ""))
        refusal = verdict.refusal()
        if refusal is not None:
            return refusal
        return _finish(await self.get_response(request), verdict.decision)


def _counted(request: HttpRequest) -> Verdict | None:
    scope = getattr(request, "scope", None)
    return scope.get(SCOPE_KEY) if scope else None


async def check_scope(scope: dict[str, Any], credentials: Credentials, limiter: RateLimiter | None = None, identities: identity.Identities | None = None) -> Verdict | None:
    """For the ASGI fast path: counts the request against its caller and records the verdict in
    the scope for Django; None when limits are off."""
    if not enabled():
        return None
    client = scope.get("client")
    verdict = await acheck(credentials, client[0] if client else "", limiter, identities)
    scope[SCOPE_KEY] = verdict
    return verdict
