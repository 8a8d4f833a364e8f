"""The aggregation engine: asks providers for offers in parallel and survives the ones that fail.

Per provider it keeps its own budget of calls (the provider's rate limit per minute, a corecalc
sliding window), a circuit breaker (open at >= 50 % failures over the last 10 calls,
half-open after 30 s, closed by a success), a bulkhead (a few calls at once, a short bounded queue,
then immediate rejection: backpressure instead of a pile-up), a 5 s timeout, and a latency
average from which its weight comes (slower than 2 s: less weight, so it is refreshed less often
and ranks as less reliable). Every clock is injectable so tests can move time.

It never touches the database or the cache; `providers.ingest` stores what it returns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import corecalc

from providers.adapters.base import AdapterError, FailureKind, HealthResult, OfferData, ProviderAdapter

logger = logging.getLogger("gpubroker.aggregation")

Clock = Callable[[], float]

CALL_TIMEOUT_SECONDS = 5.0
SLOW_AFTER_SECONDS = 2.0
MIN_WEIGHT = 0.1
DEFAULT_RATE_LIMIT = 60  # calls per minute, when the provider's row does not say


class CircuitOpen(AdapterError):
    """The provider's circuit is open: the call was not made."""

    def __init__(self, provider: str, retry_in: float) -> None:
        super().__init__(provider, FailureKind.UNAVAILABLE, f"circuit open; next trial in {retry_in:.0f}s", retry_after=retry_in)


class Throttled(AdapterError):
    """Our own budget of calls to this provider (its rate limit per minute) is spent for now."""

    def __init__(self, provider: str, retry_in: float) -> None:
        super().__init__(provider, FailureKind.RATE_LIMITED, f"our rate limit for this provider is spent; next call in {retry_in:.0f}s", retry_after=retry_in)


class Rejected(AdapterError):
    """The provider's queue is full: the call was refused at once (backpressure)."""

    def __init__(self, provider: str) -> None:
        super().__init__(provider, FailureKind.UNAVAILABLE, "too many calls waiting for this provider")


class CircuitBreaker:
    """Counts the last `window` calls; opens when `ratio` of them or more failed.

    Open: calls are refused until `cooldown` seconds pass; then half-open lets exactly one trial
    through. Its success closes the circuit (with a clean history); its failure opens it again.
    """

    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

    def __init__(self, window: int = 10, ratio: float = 0.5, cooldown: float = 30.0, clock: Clock = time.monotonic) -> None:
        self.window, self.ratio, self.cooldown, self.clock = window, ratio, cooldown, clock
        self._calls: deque[bool] = deque(maxlen=window)
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return self.CLOSED
        if self.clock() - self._opened_at >= self.cooldown:
            return self.HALF_OPEN
        return self.OPEN

    @property
    def failures(self) -> int:
        return sum(1 for ok in self._calls if not ok)

    def retry_in(self) -> float:
        if self._opened_at is None:
            return 0.0
        return max(0.0, self.cooldown - (self.clock() - self._opened_at))

    def acquire(self) -> bool:
        """May a call go out now? In half-open, only one trial at a time."""
        state = self.state
        if state == self.CLOSED:
            return True
        if state == self.HALF_OPEN and not self._trial_running:
            self._trial_running = True
            return True
        return False

    def record(self, success: bool) -> None:
        state = self.state
        self._trial_running = False
        if state == self.HALF_OPEN:
            if success:
                self._opened_at = None
                self._calls.clear()
            else:
                self._opened_at = self.clock()
            return
        if state == self.OPEN:
            return  # a straggler that started before the circuit opened changes nothing
        self._calls.append(success)
        # ">= 50 % of the last 10 calls": with fewer calls so far, the count must still reach 5.
        if self.failures >= self.ratio * self.window:
            self._opened_at = self.clock()


class Bulkhead:
    """At most `limit` calls running and `queue` waiting; the next one is rejected at once."""

    def __init__(self, limit: int = 2, queue: int = 8) -> None:
        self.limit, self.queue = limit, queue
        self._semaphore = asyncio.Semaphore(limit)
        self.running = 0
        self.waiting = 0

    def full(self) -> bool:
        return self.running >= self.limit and self.waiting >= self.queue

    async def __aenter__(self) -> None:
        self.waiting += 1
        try:
            await self._semaphore.acquire()
        finally:
            self.waiting -= 1
        self.running += 1

    async def __aexit__(self, *exc: Any) -> None:
        self.running -= 1
        self._semaphore.release()


def weight_for_latency(latency_seconds: float | None, slow_after: float = SLOW_AFTER_SECONDS) -> float:
    """1.0 up to `slow_after`, then inversely proportional to latency (at least MIN_WEIGHT)."""
    if latency_seconds is None or latency_seconds <= slow_after:
        return 1.0
    return max(MIN_WEIGHT, slow_after / latency_seconds)


@dataclass
class ProviderSlot:
    slug: str
    adapter: ProviderAdapter
    breaker: CircuitBreaker
    bulkhead: Bulkhead
    limiter: Any  # corecalc.SlidingWindow: the provider's calls per minute
    latency_ewma: float | None = None  # seconds
    last_error: str = ""
    last_success: float | None = None  # wall-clock seconds
    consecutive_failures: int = 0

    @property
    def weight(self) -> float:
        return weight_for_latency(self.latency_ewma)

    def observe_latency(self, seconds: float) -> None:
        # An exponential average: one slow call nudges, a run of slow calls convinces.
        self.latency_ewma = seconds if self.latency_ewma is None else 0.7 * self.latency_ewma + 0.3 * seconds


@dataclass
class ProviderOutcome:
    provider: str
    offers: list[OfferData] = field(default_factory=list)
    error: AdapterError | None = None
    latency: float = 0.0
    skipped: bool = False  # circuit open or queue full: no call was made

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class AggregateResult:
    outcomes: dict[str, ProviderOutcome]
    offers: list[OfferData]

    @property
    def failed(self) -> list[str]:
        return sorted(slug for slug, outcome in self.outcomes.items() if not outcome.ok)

    @property
    def all_failed(self) -> bool:
        return bool(self.outcomes) and all(not outcome.ok for outcome in self.outcomes.values())


def merge_offers(batches: Iterable[Iterable[OfferData]]) -> list[OfferData]:
    """One offer per (provider, instance type, region), invalid rows dropped.

    Providers page their listings and sometimes repeat a row across pages; the cheaper quote of a
    duplicate is kept, since that is what a buyer would be charged after asking again.
    """
    merged: dict[tuple[str, str, str], OfferData] = {}
    for batch in batches:
        for offer in batch:
            if offer.price_per_hour <= 0 or offer.gpu_count <= 0 or not offer.name:
                continue
            kept = merged.get(offer.key)
            if kept is None or offer.price_per_hour < kept.price_per_hour:
                merged[offer.key] = offer
    return sorted(merged.values(), key=lambda o: o.key)


class AggregationEngine:
    def __init__(
        self,
        adapters: Mapping[str, ProviderAdapter],
        *,
        timeout: float = CALL_TIMEOUT_SECONDS,
        concurrency: int = 2,
        queue: int = 8,
        breaker_window: int = 10,
        breaker_cooldown: float = 30.0,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        rate_limits: Mapping[str, int] | None = None,
    ) -> None:
        self.timeout = timeout
        self.clock = clock
        self.wall_clock = wall_clock
        self.slots = {
            slug: ProviderSlot(
                slug=slug,
                adapter=adapter,
                breaker=CircuitBreaker(window=breaker_window, cooldown=breaker_cooldown, clock=clock),
                bulkhead=Bulkhead(concurrency, queue),
                limiter=corecalc.SlidingWindow(max(1, (rate_limits or {}).get(slug, DEFAULT_RATE_LIMIT)), 60.0),
            )
            for slug, adapter in adapters.items()
        }

    def slot(self, slug: str) -> ProviderSlot:
        return self.slots[slug]

    async def _call(self, slug: str, call: Callable[[ProviderAdapter], Any]) -> tuple[Any, float]:
        slot = self.slots[slug]
        if slot.bulkhead.full():
            raise Rejected(slug)
        if slot.breaker.state == CircuitBreaker.OPEN:  # before the budget: a refused call spends none
            raise CircuitOpen(slug, slot.breaker.retry_in())
        allowed, _, retry_after = slot.limiter.check(slug, self.clock())
        if not allowed:
            raise Throttled(slug, retry_after)
        if not slot.breaker.acquire():
            raise CircuitOpen(slug, slot.breaker.retry_in())
        async with slot.bulkhead:
            perf = time.perf_counter()
            try:
                result = await asyncio.wait_for(call(slot.adapter), timeout=self.timeout)
            except TimeoutError:
                error: AdapterError = AdapterError(slug, FailureKind.TIMEOUT, f"no answer within {self.timeout:g}s")
                self._failed(slot, error, self.timeout)
                raise error from None
            except AdapterError as exc:
                self._failed(slot, exc, time.perf_counter() - perf)
                raise
            except Exception as exc:  # an adapter bug must not take the engine down with it
                error = AdapterError(slug, FailureKind.BAD_RESPONSE, f"{type(exc).__name__}: {exc}")
                self._failed(slot, error, time.perf_counter() - perf)
                raise error from exc
            elapsed = time.perf_counter() - perf
            slot.breaker.record(True)
            slot.observe_latency(elapsed)
            slot.last_success = self.wall_clock()
            slot.consecutive_failures = 0
            slot.last_error = ""
            return result, elapsed

    def _failed(self, slot: ProviderSlot, error: AdapterError, elapsed: float) -> None:
        # A rate limit is the provider protecting itself, not failing: it does not trip the circuit.
        if error.kind != FailureKind.RATE_LIMITED:
            slot.breaker.record(False)
        slot.observe_latency(elapsed)
        slot.consecutive_failures += 1
        slot.last_error = str(error)
        logger.info("provider call failed: %s", error)

    async def fetch(self, slug: str) -> ProviderOutcome:
        try:
            offers, latency = await self._call(slug, lambda adapter: adapter.fetch_offers())
        except (CircuitOpen, Rejected, Throttled) as exc:
            return ProviderOutcome(slug, error=exc, skipped=True)
        except AdapterError as exc:
            return ProviderOutcome(slug, error=exc)
        return ProviderOutcome(slug, offers=merge_offers([offers]), latency=latency)

    async def fetch_all(self, slugs: Iterable[str] | None = None) -> AggregateResult:
        """Every (given) provider whose circuit lets a call through, in parallel."""
        wanted = list(self.slots if slugs is None else slugs)
        outcomes = await asyncio.gather(*(self.fetch(slug) for slug in wanted))
        by_slug = {outcome.provider: outcome for outcome in outcomes}
        return AggregateResult(by_slug, merge_offers(o.offers for o in outcomes if o.ok))

    async def health_check(self, slug: str) -> HealthResult:
        """The adapter's cheap check, through the same breaker, bulkhead and timeout."""

        async def check(adapter: ProviderAdapter) -> HealthResult:
            result = await adapter.health_check()
            if not result.healthy:  # reported without raising: counts as a failure all the same
                raise AdapterError(slug, FailureKind.UNAVAILABLE, result.detail or "unhealthy")
            return result

        started = time.perf_counter()
        try:
            result, _ = await self._call(slug, check)
        except AdapterError as exc:
            return HealthResult(False, (time.perf_counter() - started) * 1000, str(exc))
        return result
