"""The sandbox market moves prices within bounds and pushes what changed."""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal

import pytest
from channels.db import database_sync_to_async

from providers.market import DRIFT_BOUND, move_market, next_availability, next_price, run_market
from providers.models import Offer, PriceSource


def test_a_random_walk_stays_within_the_bound_around_the_list_price() -> None:
    rng = random.Random(7)
    list_price, price = Decimal("2.00"), Decimal("2.00")
    seen = []
    for _ in range(20_000):
        price = next_price(price, list_price, rng)
        seen.append(float(price))
    assert min(seen) >= 2.0 * (1 - DRIFT_BOUND) - 1e-4
    assert max(seen) <= 2.0 * (1 + DRIFT_BOUND) + 1e-4
    # It really wanders: both halves of the band are visited.
    assert min(seen) < 1.6 and max(seen) > 2.4


def test_availability_changes_rarely() -> None:
    rng = random.Random(3)
    flips = sum(next_availability("available", rng) != "available" for _ in range(10_000))
    assert 800 < flips < 1200


@pytest.mark.django_db
def test_a_tick_moves_a_handful_of_offers(catalog: None) -> None:
    before = {o.pk: o.price_per_hour for o in Offer.objects.all()}
    changed_types = move_market(random.Random(1), offers_per_tick=10)
    moved = Offer.objects.filter(source=PriceSource.LIVE_API)
    assert moved.count() == 10
    assert {o.gpu_type for o in moved} == changed_types
    assert sum(before[o.pk] != o.price_per_hour for o in moved) >= 8  # a step can round to the same cent
    assert Offer.objects.exclude(source=PriceSource.LIVE_API).count() == 2201 - 10


@pytest.mark.django_db(transaction=True)
async def test_the_market_loop_ticks_until_stopped(catalog: None) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(run_market(0.05, seed=5, stop=stop))
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    moved = await database_sync_to_async(Offer.objects.filter(source=PriceSource.LIVE_API).count)()
    assert moved > 25  # several ticks of 25 offers
