"""The transactional outbox: events commit with their change, are relayed once, and consumers
take each event id once, on PostgreSQL + Redis and on the embedded SQLite + memory default."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aredis
from asgiref.sync import sync_to_async
from django.db import connection, transaction
from django.utils import timezone

from providers import events, outbox
from providers.adapters.base import OfferData
from providers.events import RedisStreams
from providers.ingest import apply_offers
from providers.models import Offer, OutboxEvent, Provider
from tests.environment import TEST_REDIS_URL

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.django_db(transaction=True)
RENTALS = f"test.rental-events.{uuid.uuid4().hex[:8]}"  # a stream no earlier run wrote to


async def entries(backend: events.StreamBackend, stream: str) -> list[dict]:
    if isinstance(backend, RedisStreams):
        return [orjson.loads(fields[b"data"]) for _, fields in await backend.client.xrange(stream)]
    return [orjson.loads(e.fields["data"]) for e in backend._streams.get(stream, [])]


def repriced(provider: Provider) -> list[OfferData]:
    """The provider's listing with every price up 10 %: a refresh where everything changed."""
    return [
        OfferData(provider=provider.slug, name=o.name, gpu_type=o.gpu_type, gpu_type_raw=o.gpu_type_raw, gpu_count=o.gpu_count,
                  gpu_memory_gb=o.gpu_memory_gb, price_per_hour=(o.price_per_hour * 11 / 10).quantize(o.price_per_hour),
                  region=o.region, availability_status=o.availability_status, spot_price=o.spot_price, vcpus=o.vcpus, ram_gb=o.ram_gb)
        for o in Offer.objects.filter(provider=provider)
    ]


def test_an_ingest_writes_its_events_in_its_own_transaction_and_a_rollback_takes_both_back(catalog: None) -> None:
    provider = Provider.objects.get(slug="lambda")
    listing = repriced(provider)
    before = dict(Offer.objects.filter(provider=provider).values_list("pk", "price_per_hour"))
    with pytest.raises(RuntimeError), transaction.atomic():
        apply_offers(provider, listing)
        raise RuntimeError("crash before the commit")
    assert OutboxEvent.objects.count() == 0
    assert dict(Offer.objects.filter(provider=provider).values_list("pk", "price_per_hour")) == before

    result = apply_offers(provider, listing)
    rows = list(OutboxEvent.objects.order_by("id"))
    assert [str(r.event_id) for r in rows] == result.event_ids and all(r.sent_at is None for r in rows)
    assert all(r.stream == events.PRICE_UPDATES and r.payload["provider"] == "lambda" for r in rows)
    assert sorted(c["offer_id"] for r in rows for c in r.payload["changes"]) == sorted(c.offer_id for c in result.changes)


async def test_the_relay_publishes_each_event_once_and_marks_it_sent(backend: events.StreamBackend) -> None:
    def write() -> list[str]:
        with transaction.atomic():
            return [outbox.enqueue(RENTALS, {"rental": n}) for n in range(3)]

    event_ids = await sync_to_async(write)()
    relay = outbox.Relay(backend, "relay-1")
    assert await relay.drain() == 3
    assert await entries(backend, RENTALS) == [{"rental": n, "event_id": event_ids[n]} for n in range(3)]
    assert await relay.drain() == 0  # nothing goes out twice
    assert await sync_to_async(outbox.unsent)() == 0


async def test_another_app_publishes_its_own_events_in_its_own_transactions(backend: events.StreamBackend) -> None:
    def rent(fail: bool) -> None:
        with transaction.atomic():
            outbox.enqueue(RENTALS, {"rental": 7, "kind": "started"})
            if fail:
                raise ValueError("the rental could not be stored")

    with pytest.raises(ValueError):
        await sync_to_async(rent)(True)
    await sync_to_async(rent)(False)
    await outbox.Relay(backend, "relay-1").drain()
    assert [{k: v for k, v in e.items() if k != "event_id"} for e in await entries(backend, RENTALS)] == [{"rental": 7, "kind": "started"}]


def test_enqueueing_with_a_fixed_event_id_is_idempotent(db: None) -> None:
    fixed = outbox.derived_id("alert", "event-1", 42, "anomaly")
    assert outbox.enqueue(RENTALS, {"n": 1}, event_id=fixed) == outbox.enqueue(RENTALS, {"n": 2}, event_id=fixed) == str(fixed)
    assert list(OutboxEvent.objects.values_list("payload", flat=True)) == [{"n": 1}]


def test_a_claimed_row_waits_for_its_relay_until_the_claim_ends(db: None) -> None:
    outbox.enqueue(RENTALS, {"n": 1})
    start = timezone.now()
    assert len(outbox.claim("relay-1", now=start, claim_seconds=30)) == 1
    assert outbox.claim("relay-2", now=start + timedelta(seconds=29)) == []  # relay-1 may still be publishing
    taken = outbox.claim("relay-2", now=start + timedelta(seconds=31))  # relay-1 died: take it over
    assert [r.payload for r in taken] == [{"n": 1}]
    assert OutboxEvent.objects.get().claimed_by == "relay-2"


def test_two_relays_on_postgresql_skip_the_rows_the_other_is_claiming(db: None) -> None:
    assert connection.vendor == "postgresql" and connection.features.has_select_for_update_skip_locked
    for n in range(6):
        outbox.enqueue(RENTALS, {"n": n})
    holding, release = threading.Event(), threading.Event()
    first: list[int] = []

    def slow_relay() -> None:
        # Claims the three oldest rows and holds their locks, as a relay mid-claim does.
        with transaction.atomic():
            first.extend(r.payload["n"] for r in OutboxEvent.objects.select_for_update(skip_locked=True).order_by("id")[:3])
            holding.set()
            release.wait(30)
        connection.close()

    thread = threading.Thread(target=slow_relay)
    thread.start()
    try:
        assert holding.wait(30)
        second = [r.payload["n"] for r in outbox.claim("relay-2")]  # does not wait for the locked rows
    finally:
        release.set()
        thread.join(30)
    assert first == [0, 1, 2] and second == [3, 4, 5]


def test_sent_rows_are_pruned_after_a_day_and_unsent_rows_never(db: None) -> None:
    now = timezone.now()
    for n in range(3):
        outbox.enqueue(RENTALS, {"n": n})
    old, recent, unsent = OutboxEvent.objects.order_by("id")
    OutboxEvent.objects.filter(pk=old.pk).update(sent_at=now - timedelta(days=2), created_at=now - timedelta(days=3))
    OutboxEvent.objects.filter(pk=recent.pk).update(sent_at=now - timedelta(hours=1))
    OutboxEvent.objects.filter(pk=unsent.pk).update(created_at=now - timedelta(days=9))
    assert outbox.prune_sent(now=now) == 1
    assert sorted(OutboxEvent.objects.values_list("pk", flat=True)) == [recent.pk, unsent.pk]


@pytest.fixture(params=["redis", "memory"])
async def seen(request: pytest.FixtureRequest) -> AsyncIterator[outbox.Seen]:
    if request.param == "memory":
        yield outbox.MemorySeen()
        return
    client = aredis.Redis.from_url(TEST_REDIS_URL)
    for key in await client.keys("test:seen:*"):
        await client.delete(key)
    yield outbox.RedisSeen(client, prefix="test:seen:")
    await client.aclose()


async def test_a_group_handles_an_event_id_once_but_still_retries_its_own_entry(seen: outbox.Seen) -> None:
    handled: list[tuple[str, str]] = []
    failures = iter([True, False])

    async def handler(event: events.Event) -> None:
        handled.append((event.id, event.payload["n"]))
        if next(failures, False):
            raise RuntimeError("downstream refused")

    analytics, fanout = outbox.once(seen, "analytics", handler), outbox.once(seen, "fanout", handler)
    original = events.Event("1-1", RENTALS, {"n": "a", "event_id": "e-1"}, 1)
    with pytest.raises(RuntimeError):
        await analytics(original)
    await analytics(events.Event("1-1", RENTALS, original.payload, 2))  # its retry runs
    await analytics(events.Event("5-1", RENTALS, original.payload, 1))  # a republished copy does not
    await fanout(events.Event("5-1", RENTALS, original.payload, 1))  # another group takes it once
    await fanout(events.Event("1-1", RENTALS, original.payload, 1))
    await analytics(events.Event("6-1", RENTALS, {"n": "b"}, 1))  # no event id: published directly, always runs
    assert handled == [("1-1", "a"), ("1-1", "a"), ("5-1", "a"), ("6-1", "b")]


SQLITE_SCRIPT = """
import asyncio, json, os
from datetime import timedelta
os.environ["DJANGO_SETTINGS_MODULE"] = "web.settings"
import django
django.setup()
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
call_command("migrate", verbosity=0)
call_command("load_catalog", verbosity=0, stdout=open(os.devnull, "w"))
from providers import events, outbox
from providers.adapters.base import OfferData
from providers.ingest import apply_offers
from providers.models import Offer, Provider

provider = Provider.objects.get(slug="lambda")
listing = [
    OfferData(provider="lambda", name=o.name, gpu_type=o.gpu_type, gpu_type_raw=o.gpu_type_raw, gpu_count=o.gpu_count,
              gpu_memory_gb=o.gpu_memory_gb, price_per_hour=o.price_per_hour * 2, region=o.region,
              availability_status=o.availability_status, spot_price=o.spot_price, vcpus=o.vcpus, ram_gb=o.ram_gb)
    for o in Offer.objects.filter(provider=provider)
]
result = apply_offers(provider, listing)
streams = events.MemoryStreams()
claimed = outbox.claim("crashed-relay")  # a relay that claimed, then died before publishing
later = outbox.Relay(streams, "restarted", clock=lambda: timezone.now() + timedelta(seconds=outbox.CLAIM_SECONDS + 1))
published = asyncio.run(later.drain())
payloads = [json.loads(e.fields["data"]) for e in streams._streams[events.PRICE_UPDATES]]
print(json.dumps({"vendor": connection.vendor, "claimed": len(claimed), "published": published, "unsent": outbox.unsent(),
                  "event_ids": result.event_ids, "stream_ids": [p["event_id"] for p in payloads]}))
"""


def test_the_outbox_works_on_the_embedded_sqlite_default(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'embedded.sqlite3'}"
    result = subprocess.run([sys.executable, "-c", SQLITE_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["vendor"] == "sqlite" and report["event_ids"]
    assert report["claimed"] == report["published"] == len(report["event_ids"]) and report["unsent"] == 0
    assert report["stream_ids"] == report["event_ids"]
