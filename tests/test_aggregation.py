"""The aggregation engine keeps answering when providers hang, fail, or are slow."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
import pytest

from providers.adapters.base import AdapterError, FailureKind, OfferData, ProviderAdapter
from providers.aggregation import (
    CALL_TIMEOUT_SECONDS,
    AggregationEngine,
    CircuitBreaker,
    merge_offers,
    weight_for_latency,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def offer(provider: str, name: str = "gpu.1x", price: str = "2.00", region: str = "us-east") -> OfferData:
    return OfferData(provider=provider, name=name, gpu_type="H100 80GB", gpu_type_raw="H100", gpu_count=1,
                     gpu_memory_gb=80, price_per_hour=Decimal(price), region=region)


class Scripted(ProviderAdapter):
    """An adapter whose behaviour the test sets: answer, fail, hang or be slow."""

    slug = "scripted"
    display_name = "Scripted"
    default_api_base = "http://127.0.0.1:9"

    def __init__(self, name: str, behaviour: str = "ok", delay: float = 0.0) -> None:
        super().__init__(httpx.AsyncClient())
        self.name, self.behaviour, self.delay, self.calls = name, behaviour, delay, 0

    async def fetch_offers(self) -> list[OfferData]:
        self.calls += 1
        if self.behaviour == "hang":
            await asyncio.Event().wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.behaviour == "fail":
            raise AdapterError(self.name, FailureKind.UNAVAILABLE, "500 Internal Server Error")
        return [offer(self.name), offer(self.name, "gpu.8x", "16.00")]


def test_the_defaults_are_the_products_rules() -> None:
    assert CALL_TIMEOUT_SECONDS == 5.0
    breaker = CircuitBreaker()
    assert (breaker.window, breaker.ratio, breaker.cooldown) == (10, 0.5, 30.0)
    assert weight_for_latency(1.9) == 1.0 and weight_for_latency(4.0) == 0.5 and weight_for_latency(None) == 1.0


class AnswersOnceOtherIsCalled(Scripted):
    """Answers only after `other` was called: possible only if the engine calls both at once."""

    def __init__(self, name: str, other: Scripted) -> None:
        super().__init__(name)
        self.other = other

    async def fetch_offers(self) -> list[OfferData]:
        while not self.other.calls:
            await asyncio.sleep(0)
        return await super().fetch_offers()


async def test_a_hanging_provider_times_out_while_the_others_answer() -> None:
    stuck = Scripted("stuck", "hang")
    engine = AggregationEngine({"good": AnswersOnceOtherIsCalled("good", stuck), "stuck": stuck}, timeout=0.3)
    result = await asyncio.wait_for(engine.fetch_all(), 30)  # bounded by the timeout, whatever the load
    assert result.outcomes["good"].ok and len(result.offers) == 2
    assert result.outcomes["stuck"].error.kind == FailureKind.TIMEOUT
    assert result.failed == ["stuck"] and not result.all_failed


async def test_a_provider_failing_every_call_opens_its_circuit_within_ten_calls() -> None:
    clock = Clock()
    failing = Scripted("bad", "fail")
    engine = AggregationEngine({"bad": failing, "good": Scripted("good")}, clock=clock)
    opened_after = None
    for call in range(1, 11):
        await engine.fetch_all()
        if engine.slot("bad").breaker.state == "open":
            opened_after = call
            break
    assert opened_after is not None and opened_after <= 10
    calls = failing.calls
    # Open: no call goes out, the engine answers at once with what the others have.
    result = await engine.fetch_all()
    assert failing.calls == calls and result.outcomes["bad"].skipped and len(result.offers) == 2
    assert engine.slot("good").breaker.state == "closed"

    clock.now += 29.9
    await engine.fetch("bad")
    assert failing.calls == calls  # still open before 30 s
    clock.now += 0.2
    assert engine.slot("bad").breaker.state == "half_open"
    await engine.fetch("bad")  # the one trial fails: open again
    assert failing.calls == calls + 1 and engine.slot("bad").breaker.state == "open"

    clock.now += 30.1
    failing.behaviour = "ok"
    outcome = await engine.fetch("bad")  # the trial succeeds: closed
    assert outcome.ok and engine.slot("bad").breaker.state == "closed"


def test_half_open_lets_one_trial_through_at_a_time() -> None:
    clock = Clock()
    breaker = CircuitBreaker(clock=clock)
    for _ in range(5):
        breaker.record(False)
    assert breaker.state == "open" and not breaker.acquire()
    clock.now += 30
    assert breaker.acquire() and not breaker.acquire()
    breaker.record(True)
    assert breaker.state == "closed" and breaker.acquire()


def test_a_few_failures_among_successes_keep_the_circuit_closed() -> None:
    breaker = CircuitBreaker(clock=Clock())
    for ok in [True, False, True, False, True, False, True, False, True, True, True, False]:
        breaker.record(ok)
    assert breaker.state == "closed"  # 4 of the last 10 failed


async def test_rate_limits_do_not_trip_the_circuit() -> None:
    class Limited(Scripted):
        async def fetch_offers(self) -> list[OfferData]:
            raise AdapterError("limited", FailureKind.RATE_LIMITED, "429", retry_after=3)

    engine = AggregationEngine({"limited": Limited("limited")}, clock=Clock())
    for _ in range(10):
        outcome = await engine.fetch("limited")
    assert outcome.error.kind == FailureKind.RATE_LIMITED and engine.slot("limited").breaker.state == "closed"


async def test_a_slow_provider_loses_weight() -> None:
    engine = AggregationEngine({"slow": Scripted("slow"), "fast": Scripted("fast")})
    for _ in range(5):
        engine.slot("slow").observe_latency(4.0)
        engine.slot("fast").observe_latency(0.1)
    assert engine.slot("fast").weight == 1.0
    assert 0.45 < engine.slot("slow").weight < 0.6


async def test_the_bulkhead_queues_a_few_calls_then_rejects() -> None:
    slow = Scripted("slow", delay=0.2)
    engine = AggregationEngine({"slow": slow}, concurrency=1, queue=2)
    outcomes = await asyncio.gather(*(engine.fetch("slow") for _ in range(6)))
    served = [o for o in outcomes if o.ok]
    rejected = [o for o in outcomes if o.skipped]
    assert len(served) == 3 and len(rejected) == 3  # one running, two queued, the rest refused
    assert slow.calls == 3


async def test_an_adapter_bug_is_a_failure_not_a_crash() -> None:
    class Buggy(Scripted):
        async def fetch_offers(self) -> list[OfferData]:
            raise KeyError("price")

    outcome = await AggregationEngine({"buggy": Buggy("buggy")}).fetch("buggy")
    assert outcome.error.kind == FailureKind.BAD_RESPONSE and "KeyError" in outcome.error.detail


def test_merging_dedupes_by_key_keeping_the_cheaper_quote_and_drops_invalid_rows() -> None:
    merged = merge_offers([
        [offer("a", price="2.00"), offer("a", price="1.50"), offer("a", "other", "3.00")],
        [offer("b"), offer("b", "free", "0")],
    ])
    assert [(o.provider, o.name, o.price_per_hour) for o in merged] == [
        ("a", "gpu.1x", Decimal("1.50")), ("a", "other", Decimal("3.00")), ("b", "gpu.1x", Decimal("2.00"))
    ]


async def test_when_every_provider_fails_the_result_says_so() -> None:
    engine = AggregationEngine({"x": Scripted("x", "fail"), "y": Scripted("y", "hang")}, timeout=0.1)
    result = await engine.fetch_all()
    assert result.all_failed and result.offers == []


@pytest.mark.parametrize("healthy", [True, False])
async def test_health_checks_go_through_the_breaker(healthy: bool) -> None:
    engine = AggregationEngine({"p": Scripted("p", "ok" if healthy else "fail")}, clock=Clock())
    result = await engine.health_check("p")
    assert result.healthy is healthy
    assert engine.slot("p").breaker.failures == (0 if healthy else 1)


async def test_calls_stay_within_the_providers_rate_limit_per_minute() -> None:
    clock = Clock()
    adapter = Scripted("p")
    engine = AggregationEngine({"p": adapter}, clock=clock, rate_limits={"p": 3})
    outcomes = [await engine.fetch("p") for _ in range(5)]
    assert [o.ok for o in outcomes] == [True, True, True, False, False] and adapter.calls == 3
    assert outcomes[3].skipped and outcomes[3].error.kind == FailureKind.RATE_LIMITED
    assert engine.slot("p").breaker.state == "closed"  # our own limit is not the provider failing
    clock.now += 61
    assert (await engine.fetch("p")).ok and adapter.calls == 4
