"""The worker's one path: adapter -> engine -> database + history -> events -> alerts, aggregates, pushes."""

from __future__ import annotations

import asyncio
import random
import time

import orjson
from decimal import Decimal

import httpx
import pytest
from channels.layers import get_channel_layer
from django.core.management import call_command
from django.utils import timezone

from providers import events
from providers.adapters.sandbox import SandboxCloud, SandboxMarket, quiet_settings
from providers.aggregation import AggregationEngine
from providers.models import Offer, PriceAggregate, PriceSample, Provider
from providers.snapshot import read_snapshot
from providers.worker import MemoryLeases, Worker, WorkerSettings, build_adapters, prune

pytestmark = pytest.mark.django_db(transaction=True)


def make_worker(streams: events.StreamBackend | None = None, leases: MemoryLeases | None = None, slugs=("lambda", "runpod"),
                clock=time.monotonic, **market) -> Worker:
    cloud = SandboxCloud(SandboxMarket(read_snapshot(), quiet_settings(**market), seed=3))
    adapters = build_adapters("sandbox", httpx.AsyncClient(), list(slugs), sandbox_cloud=cloud)
    return Worker(AggregationEngine(adapters, clock=clock), streams or events.MemoryStreams(), leases or MemoryLeases(clock), mode="sandbox",
                  settings=WorkerSettings(sandbox_refresh_seconds=0.2, tick_seconds=0.02, consumer_block_ms=20), clock=clock)


async def test_a_refresh_stores_changes_history_and_publishes_them(catalog: None) -> None:
    worker = make_worker(move_share=0.5)
    result = await worker.refresh("lambda")
    assert result is not None and result.changes
    changed = result.changes[0]
    offer = await Offer.objects.aget(pk=changed.offer_id)
    assert offer.price_per_hour == Decimal(str(changed.new_price)) and offer.source == "sandbox"  # simulated, and labelled so
    assert await PriceSample.objects.filter(offer_id=changed.offer_id).acount() == 1
    provider = await Provider.objects.aget(slug="lambda")
    assert provider.last_refresh_at == result.at
    stream = worker.streams._streams[events.PRICE_UPDATES]
    assert len(stream) == 1 and b'"provider":"lambda"' in stream[0].fields["data"]


async def test_an_unchanged_refresh_writes_no_history(catalog: None) -> None:
    worker = make_worker(move_share=0.0, availability_change_chance=0.0)
    await worker.refresh("lambda")  # availability may differ from the loaded catalog: settle it
    samples = await PriceSample.objects.acount()
    result = await worker.refresh("lambda")
    assert result.changes == [] and await PriceSample.objects.acount() == samples


async def test_significant_changes_and_anomalies_become_alerts(catalog: None) -> None:
    worker = make_worker()
    offer = await Offer.objects.select_related("provider").filter(provider__slug="lambda").afirst()
    base = offer.price_per_hour
    # A history of small moves, then a jump far outside it.
    for n, factor in enumerate(["1.00", "1.01", "0.99", "1.02", "0.98", "1.01", "1.00"]):
        await PriceSample.objects.acreate(offer=offer, gpu_type=offer.gpu_type, price_per_hour=base * Decimal(factor),
                                          price_per_gpu_hour=base, availability_status="available",
                                          sampled_at=timezone.now() - timezone.timedelta(minutes=30 - n))
    await PriceSample.objects.acreate(offer=offer, gpu_type=offer.gpu_type, price_per_hour=base * 3, price_per_gpu_hour=base * 3,
                                      availability_status="available")
    change = {"offer_id": offer.pk, "provider": "lambda", "name": offer.name, "region": offer.region, "gpu_type": offer.gpu_type,
              "gpu_count": offer.gpu_count, "old_price": float(base), "new_price": float(base * 3), "old_availability": "available",
              "new_availability": "available", "pct_change": 200.0}
    event = events.Event("1-1", events.PRICE_UPDATES, {"provider": "lambda", "at": timezone.now().isoformat(), "changes": [change]}, 1)
    await worker.analyze(event)
    await worker.analyze(event)  # delivered twice: the alerts still go out once
    alerts = [e for e in worker.streams._streams.get(events.PRICE_ALERTS, [])]
    kinds = sorted(orjson.loads(a.fields["data"])["kind"] for a in alerts)
    assert kinds == ["anomaly", "significant_change"]
    aggregate = await PriceAggregate.objects.aget(gpu_type=offer.gpu_type)
    assert aggregate.offers > 0 and aggregate.min_price <= aggregate.mean_price <= aggregate.max_price


async def test_the_fanout_reaches_each_group_and_the_landing_rows(catalog: None) -> None:
    layer = get_channel_layer()
    channels = {}
    for group in ("price_updates", "provider.lambda", "availability"):
        channels[group] = await layer.new_channel()
        await layer.group_add(group, channels[group])
    worker = make_worker(move_share=1.0, availability_change_chance=0.5)
    result = await worker.refresh("lambda")
    event = events.Event("9-1", events.PRICE_UPDATES, {"provider": "lambda", "at": result.at.isoformat(),
                                                         "changes": [c.as_event() for c in result.changes]}, 1)
    await worker.fan_out_prices(event)
    seen = {}
    for group, channel in channels.items():
        # A marker sent after the fan-out ends each group's messages: no waiting for silence.
        await layer.group_send(group, {"type": "end.marker"})
        types = []
        while (message := await asyncio.wait_for(layer.receive(channel), 10))["type"] != "end.marker":
            types.append(message["type"])
        seen[group] = types
        await layer.group_discard(group, channel)
    assert "offers.changed" in seen["price_updates"] and "offers.changed" in seen["provider.lambda"]
    assert seen["availability"] == ["offers.changed"]


class ManualClock:
    """Time that moves only when the test says (in whole milliseconds, so sums stay exact)."""

    def __init__(self) -> None:
        self.ms = 0

    def __call__(self) -> float:
        return self.ms / 1000

    def advance(self, ms: int) -> None:
        self.ms += ms


async def settle(worker: Worker) -> None:
    """Waits for whatever the worker's last tick started (bounded: a refresh is milliseconds)."""
    await asyncio.wait_for(asyncio.gather(*list(worker._running.values())), 30)


async def test_two_workers_never_refresh_the_same_provider_in_one_interval(catalog: None) -> None:
    clock = ManualClock()
    leases = MemoryLeases(clock)
    streams = events.MemoryStreams()
    first, second = make_worker(streams, leases, clock=clock), make_worker(streams, leases, clock=clock)
    started: dict[str, list[tuple[float, str]]] = {}
    for worker, name in ((first, "first"), (second, "second")):
        original = worker.refresh

        async def counted(slug: str, original=original, name=name) -> object:
            started.setdefault(slug, []).append((clock(), name))
            return await original(slug)

        worker.refresh = counted  # type: ignore[method-assign]
        worker.plan_first_round(clock(), random.Random(name))
    # Two seconds of schedule in 20 ms steps; the workers take turns at looking first.
    for step in range(100):
        clock.advance(20)
        for worker in (first, second) if step % 2 else (second, first):
            await worker.tick(clock())
            await settle(worker)
    interval = first.settings.sandbox_refresh_seconds
    assert set(started) == {"lambda", "runpod"}
    for slug, runs in started.items():
        times = [at for at, _ in runs]
        gaps = [later - earlier for earlier, later in zip(times, times[1:])]
        assert all(gap >= interval - 1e-9 for gap in gaps), (slug, runs)  # never twice in one interval
        assert len(runs) >= 8, (slug, runs)  # and not skipped either: ~2.0 s / 0.2 s
    assert {name for runs in started.values() for _, name in runs} == {"first", "second"}  # both took turns


async def test_health_checks_record_status_and_emit_changes(catalog: None) -> None:
    worker = make_worker()
    assert await worker.check_health("runpod") == "healthy"
    provider = await Provider.objects.aget(slug="runpod")
    assert provider.health_status == "healthy" and provider.last_health_check and provider.health_latency_ms is not None
    worker.engine.slot("runpod").adapter.cloud.market.settings = quiet_settings(failure_rate=1.0)
    assert await worker.check_health("runpod") == "down"
    kinds = [orjson.loads(e.fields["data"])["health_status"] for e in worker.streams._streams[events.PROVIDER_EVENTS]]
    assert kinds == ["healthy", "down"]


async def test_a_provider_failing_every_call_opens_its_circuit_within_ten_calls_and_its_data_reads_as_stale(catalog: None) -> None:
    from django.test import AsyncClient

    worker = make_worker(slugs=("lambda", "runpod"))
    assert await worker.refresh("lambda") is not None and await worker.refresh("runpod") is not None
    assert await worker.check_health("lambda") == "healthy"
    good = await Provider.objects.aget(slug="lambda")
    worker.engine.slot("lambda").adapter.cloud.market.settings = quiet_settings(failure_rate=1.0)  # a total outage
    calls = 0
    while worker.engine.slot("lambda").breaker.state != "open":
        calls += 1
        assert calls <= 10, "the circuit is still closed after 10 failed calls"
        assert await worker.refresh("lambda") is None
    provider = await Provider.objects.aget(slug="lambda")
    assert provider.circuit_state == "open" and provider.health_status == "down"
    assert provider.last_refresh_at == good.last_refresh_at  # nothing new was stored
    published = [orjson.loads(e.fields["data"]) for e in worker.streams._streams[events.PROVIDER_EVENTS]]
    assert {"kind": "circuit", "circuit_state": "open"}.items() <= published[-2].items()
    assert {"kind": "health", "health_status": "down", "previous": "healthy"}.items() <= published[-1].items()
    # An open circuit refuses further calls without asking the provider.
    assert await worker.refresh("lambda") is None and calls <= 10

    client = AsyncClient()
    health = {p["provider"]: p for p in (await client.get("/api/v2/providers/health")).json()["providers"]}
    assert health["lambda"]["circuit_state"] == "open" and health["lambda"]["health_status"] == "down"
    assert health["lambda"]["last_refresh_at"] == good.last_refresh_at.isoformat()
    offers = (await client.get("/api/v2/providers", {"provider": "lambda", "limit": 5})).json()["items"]
    # Each offer's freshness is its last good refresh, and it ranks as unreliable now.
    assert offers and all(o["last_updated"] == good.last_refresh_at.isoformat() and o["reliability"] <= 0.1 for o in offers)
    # Once it is the only active provider, the whole answer says since when it is stale.
    await Provider.objects.exclude(slug="lambda").aupdate(active=False)
    body = (await client.get("/api/v2/providers", {"limit": 2})).json()  # a query no other test caches
    assert body["stale_since"] == good.last_refresh_at.isoformat()


async def test_when_every_provider_is_down_the_api_serves_the_last_data_with_stale_since(catalog: None) -> None:
    from django.test import AsyncClient

    worker = make_worker(failure_rate=1.0, slugs=("lambda",))
    await Provider.objects.exclude(slug="lambda").aupdate(active=False)
    last = timezone.now() - timezone.timedelta(minutes=7)
    await Provider.objects.filter(slug="lambda").aupdate(last_refresh_at=last)
    assert await worker.check_health("lambda") == "down"
    response = await AsyncClient().get("/api/v2/providers", {"limit": 3})
    body = response.json()
    assert response.status_code == 200 and len(body["items"]) == 3
    assert body["stale_since"] == last.isoformat()


def test_pruning_deletes_history_older_than_thirty_days(catalog: None) -> None:
    offer = Offer.objects.first()
    old = PriceSample.objects.create(offer=offer, gpu_type=offer.gpu_type, price_per_hour=1, price_per_gpu_hour=1,
                                     availability_status="available", sampled_at=timezone.now() - timezone.timedelta(days=31))
    recent = PriceSample.objects.create(offer=offer, gpu_type=offer.gpu_type, price_per_hour=1, price_per_gpu_hour=1,
                                        availability_status="available")
    call_command("prune_price_history", stdout=open("/dev/null", "w"))
    assert not PriceSample.objects.filter(pk=old.pk).exists() and PriceSample.objects.filter(pk=recent.pk).exists()
    with pytest.raises(ValueError):
        recent.save()  # append-only
    assert prune() == 0


async def test_redis_leases_give_each_interval_to_one_worker() -> None:
    import redis.asyncio as aredis

    from providers.worker import RedisLeases
    from tests.environment import TEST_REDIS_URL

    client = aredis.Redis.from_url(TEST_REDIS_URL)
    await client.delete("test:lease:refresh:aws")
    first, second = RedisLeases(client, "worker-1", "test:lease:"), RedisLeases(client, "worker-2", "test:lease:")
    assert await first.acquire("refresh:aws", 0.3)
    assert not await second.acquire("refresh:aws", 0.3)
    assert await client.get("test:lease:refresh:aws") == b"worker-1"
    assert 0 < await client.pttl("test:lease:refresh:aws") <= 300  # the lease lasts the interval
    # Redis ends it (its own clock): wait for that, bounded, then the next interval is free.
    deadline = time.monotonic() + 10
    while await client.exists("test:lease:refresh:aws"):
        assert time.monotonic() < deadline, "the lease never expired"
        await asyncio.sleep(0.05)
    assert await second.acquire("refresh:aws", 0.3)
    await client.aclose()
