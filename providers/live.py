"""Pushing catalog changes to open pages: render the changed rows once, fan them out by group.

Pages subscribe through `PriceFeedConsumer`; each message is HTML whose top-level elements carry
ids, which htmx's ws extension swaps in place. A row is sent only when what it shows changed
(lowest price and its offer, best match, the share available, the offer count), judged against the last rows sent,
which live in the cache so every instance and worker shares them.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.core.cache import cache
from django.template.loader import render_to_string

from providers.catalog import BestOffer, best_offers, featured_gpu_types
from providers.groups import PRICE_UPDATES as PRICE_UPDATES_GROUP
LAST_SENT_TTL_SECONDS = 24 * 3600


def _last_sent_key(row: BestOffer) -> str:
    return f"pricing-row:{row.row_id}"


def _fingerprint(row: BestOffer) -> str:
    # The lowest price comes second: the trend arrow follows the price the row leads with.
    return f"{row.lowest.offer_id}|{row.lowest.price_per_gpu_hour}|{row.offer_id}|{row.price_per_gpu_hour}|{row.availability_pct}|{row.offer_count}"


def price_rows_message(gpu_types: Iterable[str]) -> dict[str, str] | None:
    """The group message for the landing-table rows among `gpu_types` that changed, or None."""
    wanted = set(gpu_types) & set(featured_gpu_types())
    rows = best_offers(sorted(wanted)) if wanted else []
    last_sent = cache.get_many([_last_sent_key(row) for row in rows])
    changed: list[tuple[BestOffer, str]] = []
    for row in rows:
        previous = last_sent.get(_last_sent_key(row))
        if previous is not None and previous == _fingerprint(row):
            continue
        price = row.lowest.price_per_gpu_hour
        previous_price = Decimal(previous.split("|")[1]) if previous else price
        trend = "up" if price > previous_price else "down" if price < previous_price else ""
        changed.append((row, trend))
    if not changed:
        return None
    cache.set_many({_last_sent_key(row): _fingerprint(row) for row, _ in changed}, timeout=LAST_SENT_TTL_SECONDS)
    html = render_to_string("providers/price_rows.html", {"changes": changed}).strip()
    return {"type": "price.rows", "html": html}


async def apublish_price_rows(gpu_types: Iterable[str]) -> int:
    """Sends the changed landing rows among `gpu_types` to every open pricing table; returns how many."""
    message = await database_sync_to_async(price_rows_message)(list(gpu_types))
    if message is None:
        return 0
    layer = get_channel_layer()
    assert layer is not None, "CHANNEL_LAYERS is not configured"
    await layer.group_send(PRICE_UPDATES_GROUP, message)
    return message["html"].count("<tr ")


def publish_price_rows(gpu_types: Iterable[str]) -> int:
    """Sync face of `apublish_price_rows` for views, commands and tests."""
    return async_to_sync(apublish_price_rows)(list(gpu_types))
