"""The sandbox provider: the real snapshot with a bounded, lively market and a provisioning lifecycle."""

from __future__ import annotations

import random
from decimal import Decimal

import httpx
import pytest
import redis

from providers.adapters import adapter_class
from providers.adapters.base import AdapterError, FailureKind, ProviderAdapter, ProvisionRequest
from providers.adapters.sandbox import (
    DRIFT_BOUND,
    RedisInstanceStore,
    SandboxAdapter,
    SandboxCloud,
    SandboxMarket,
    next_price,
    quiet_settings,
)
from providers.snapshot import read_snapshot
from tests.environment import TEST_REDIS_URL

SNAPSHOT = list(read_snapshot())


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def market(**overrides: object) -> SandboxMarket:
    return SandboxMarket(SNAPSHOT, quiet_settings(**overrides), seed=11)


def adapter(cloud: SandboxCloud, provider: str = "lambda") -> SandboxAdapter:
    return SandboxAdapter(httpx.AsyncClient(), provider=provider, cloud=cloud)


def test_it_has_the_common_adapter_interface_and_stays_out_of_the_live_registry() -> None:
    assert issubclass(SandboxAdapter, ProviderAdapter) and SandboxAdapter.supports_provisioning
    with pytest.raises(KeyError):
        adapter_class("sandbox")


def test_a_random_walk_stays_within_the_bound_around_the_list_price() -> None:
    rng = random.Random(7)
    price = list_price = Decimal("2.00")
    seen = []
    for _ in range(20_000):
        price = next_price(price, list_price, rng)
        seen.append(float(price))
    assert min(seen) >= 2.0 * (1 - DRIFT_BOUND) - 1e-4 and max(seen) <= 2.0 * (1 + DRIFT_BOUND) + 1e-4
    assert min(seen) < 1.6 and max(seen) > 2.4  # it really wanders over the band


async def test_it_serves_the_providers_real_snapshot_offers() -> None:
    offers = await adapter(SandboxCloud(market(move_share=0.0, availability_change_chance=0.0))).fetch_offers()
    expected = [o for o in SNAPSHOT if o.provider_slug == "lambda"]
    assert len(offers) == len(expected) > 5
    assert {(o.name, o.region, o.price_per_hour) for o in offers} == {(o.name, o.region, o.price_per_hour) for o in expected}
    assert all(o.provider == "lambda" and o.gpu_type.endswith("GB") for o in offers)


async def test_each_fetch_moves_a_share_of_prices_and_some_availability() -> None:
    m = market(move_share=0.5, availability_change_chance=0.2)
    a = adapter(SandboxCloud(m), "aws")
    first = {o.key: o for o in await a.fetch_offers()}
    second = {o.key: o for o in await a.fetch_offers()}
    moved = sum(first[k].price_per_hour != second[k].price_per_hour for k in first)
    flipped = sum(first[k].availability_status != second[k].availability_status for k in first)
    assert 0.3 * len(first) < moved < 0.7 * len(first)
    assert 0.1 * len(first) < flipped < 0.3 * len(first)


async def test_outliers_are_rare_glitches_off_the_walk() -> None:
    m = market(move_share=0.0, outlier_chance=0.01)
    a = adapter(SandboxCloud(m), "aws")
    listed = {o.key: o.price_per_hour for o in SNAPSHOT_OFFERS("aws")}
    outliers = 0
    for _ in range(20):
        for offer in await a.fetch_offers():
            ratio = float(offer.price_per_hour / listed[offer.key])
            assert ratio == 1.0 or ratio <= 0.4 or ratio >= 2.5
            outliers += ratio != 1.0
    assert 0 < outliers < 0.03 * 20 * len(listed)


def SNAPSHOT_OFFERS(provider: str) -> list:  # noqa: N802 - reads like the constant it filters
    from providers.adapters.base import OfferData

    return [OfferData(provider=o.provider_slug, name=o.name, gpu_type=o.gpu_type, gpu_type_raw=o.gpu_type_raw, gpu_count=o.gpu_count,
                      gpu_memory_gb=o.gpu_memory_gb, price_per_hour=o.price_per_hour, region=o.region) for o in SNAPSHOT if o.provider_slug == provider]


def test_resume_continues_from_published_prices_within_the_bound() -> None:
    m = market()
    key = next((o.provider_slug, o.name, o.region) for o in SNAPSHOT if o.provider_slug == "runpod")
    listed = m.quote(key)[0]
    assert m.resume("runpod", {key: (listed * Decimal("1.2"), "limited")}) == 1
    assert m.quote(key) == (listed * Decimal("1.2"), "limited")
    # An outlier published once is not a state to continue from.
    assert m.resume("runpod", {key: (listed * 3, "available")}) == 0


async def test_the_api_fails_sometimes_like_a_real_one() -> None:
    a = adapter(SandboxCloud(market(failure_rate=1.0)))
    with pytest.raises(AdapterError) as failure:
        await a.fetch_offers()
    assert failure.value.kind == FailureKind.UNAVAILABLE and failure.value.provider == "lambda"
    assert not (await a.health_check()).healthy


def _request(name: str = "job-1", provider: str = "lambda", available: bool = True) -> ProvisionRequest:
    offer = next(o for o in SNAPSHOT if o.provider_slug == provider)
    return ProvisionRequest(offer_name=offer.name, region=offer.region, gpu_count=offer.gpu_count, image="pytorch:2.4", name=name)


async def test_an_instance_goes_pending_provisioning_running_then_terminated() -> None:
    clock = Clock()
    m = market(provision_failure_rate=0.0)
    a = adapter(SandboxCloud(m, clock=clock))
    key = ("lambda", _request().offer_name, _request().region)
    m.resume("lambda", {key: (m.quote(key)[0], "available")})
    state = await a.provision(_request())
    assert state.status == "pending" and state.instance_id.startswith("sbx-lambda-")
    clock.now += 5.1  # past the longest pending time
    assert (await a.instance_state(state.instance_id)).status == "provisioning"
    clock.now += 60
    running = await a.instance_state(state.instance_id)
    assert running.status == "running" and running.ssh_host.endswith(".invalid") and running.ssh_port == 22
    assert (await a.stop(state.instance_id)).status == "stopped"
    assert (await a.terminate(state.instance_id)).status == "terminated"
    assert (await a.terminate(state.instance_id)).status == "terminated"  # idempotent


async def test_provisioning_is_idempotent_by_name_and_refuses_without_capacity() -> None:
    m = market()
    a = adapter(SandboxCloud(m))
    request = _request("same-name")
    key = ("lambda", request.offer_name, request.region)
    m.resume("lambda", {key: (m.quote(key)[0], "available")})
    assert (await a.provision(request)).instance_id == (await a.provision(request)).instance_id
    m.resume("lambda", {key: (m.quote(key)[0], "unavailable")})
    with pytest.raises(AdapterError) as refused:
        await a.provision(_request("another"))
    assert refused.value.kind == FailureKind.NO_CAPACITY
    with pytest.raises(AdapterError):
        await a.instance_state("sbx-lambda-nope")


async def test_instances_in_redis_are_seen_by_every_process() -> None:
    client = redis.Redis.from_url(TEST_REDIS_URL)
    prefix = "test:sandbox"
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    clock = Clock()
    m = market()
    request = _request("shared")
    key = ("lambda", request.offer_name, request.region)
    m.resume("lambda", {key: (m.quote(key)[0], "available")})
    first = adapter(SandboxCloud(m, RedisInstanceStore(client, prefix), clock))
    other = adapter(SandboxCloud(market(), RedisInstanceStore(client, prefix), clock))  # another process
    created = await first.provision(request)
    assert (await other.instance_state(created.instance_id)).status == created.status
    assert (await other.provision(request)).instance_id == created.instance_id
    await other.terminate(created.instance_id)
    assert (await first.instance_state(created.instance_id)).status == "terminated"
