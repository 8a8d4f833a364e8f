"""The sandbox market: prices and capacity that move, so live pages have something real to show.

Each tick picks a few offers and moves them: a bounded random walk of the price around its list
price (within ±30 %), and now and then a change of availability. The rows those moves change on
the pricing table are pushed to open pages. Runs in `run_worker`, or inside the server process on
the embedded default (see `web.embedded`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from decimal import Decimal

from channels.db import database_sync_to_async
from django.db import transaction
from django.utils import timezone

from providers.live import apublish_price_rows
from providers.models import Availability, Offer, PriceSource

logger = logging.getLogger("gpubroker.market")

OFFERS_PER_TICK = 25
STEP_SIGMA = 0.03  # log-price standard deviation per move
DRIFT_BOUND = 0.30  # price stays within list price × (1 ± bound)
AVAILABILITY_FLIP_CHANCE = 0.1


def next_price(price: Decimal, list_price: Decimal, rng: random.Random) -> Decimal:
    """One random-walk step, reflected back inside the bound around the list price."""
    low, high = float(list_price) * (1 - DRIFT_BOUND), float(list_price) * (1 + DRIFT_BOUND)
    moved = float(price) * math.exp(rng.gauss(0.0, STEP_SIGMA))
    if moved > high:
        moved = high - (moved - high)
    elif moved < low:
        moved = low + (low - moved)
    return Decimal(str(round(min(max(moved, low), high), 4)))


def next_availability(current: str, rng: random.Random) -> str:
    if rng.random() >= AVAILABILITY_FLIP_CHANCE:
        return current
    choices = [a for a in Availability.values if a != current]
    return rng.choice(choices)


@transaction.atomic
def move_market(rng: random.Random, offers_per_tick: int = OFFERS_PER_TICK) -> set[str]:
    """Moves a random handful of offers; returns the GPU types whose offers changed."""
    ids = list(Offer.objects.values_list("id", flat=True))
    if not ids:
        return set()
    chosen = rng.sample(ids, min(offers_per_tick, len(ids)))
    now = timezone.now()
    offers = list(Offer.objects.select_for_update().filter(id__in=chosen))
    for offer in offers:
        offer.price_per_hour = next_price(offer.price_per_hour, offer.list_price, rng)
        offer.availability_status = next_availability(offer.availability_status, rng)
        offer.source = PriceSource.LIVE_API
        offer.last_updated = now
    Offer.objects.bulk_update(offers, ["price_per_hour", "availability_status", "source", "last_updated"])
    return {offer.gpu_type for offer in offers}


async def run_market(tick_seconds: float, seed: int | None = None, stop: asyncio.Event | None = None) -> None:
    """Moves the market every `tick_seconds` until `stop` is set; a failed tick is logged, not fatal."""
    rng = random.Random(seed)
    stop = stop or asyncio.Event()
    while not stop.is_set():
        try:
            changed = await database_sync_to_async(move_market)(rng)
            sent = await apublish_price_rows(changed)
            logger.debug("market tick: %d GPU types moved, %d rows pushed", len(changed), sent)
        except Exception:
            logger.exception("market tick failed; retrying next tick")
        try:
            await asyncio.wait_for(stop.wait(), timeout=tick_seconds)
        except TimeoutError:
            pass
