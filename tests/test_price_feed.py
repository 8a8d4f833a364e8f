"""/ws/providers/ pushes changed pricing rows as HTML fragments over the Redis channel layer."""

from __future__ import annotations

from decimal import Decimal

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings

from providers.catalog import best_offers
from providers.live import apublish_price_rows
from providers.models import Offer
from web.asgi import application

ORIGIN = [(b"origin", b"http://localhost")]
WAIT = 10  # seconds: a bound on waiting for a message, never a measure of anything
MARKER = '<i id="end-marker"></i>'


async def nothing_before_a_marker(communicator: WebsocketCommunicator) -> bool:
    """True if the page got nothing before a marker sent now: no waiting for silence."""
    from channels.layers import get_channel_layer

    await get_channel_layer().group_send("price_updates", {"type": "price.rows", "html": MARKER})
    return await communicator.receive_from(timeout=WAIT) == MARKER


def set_best_h100_price(per_gpu: str) -> int:
    winner = best_offers(["H100 80GB"])[0]
    offer = Offer.objects.get(pk=winner.offer_id)
    offer.price_per_hour = Decimal(per_gpu) * offer.gpu_count
    offer.save(update_fields=["price_per_hour"])
    return offer.pk


async def connect() -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, "/ws/providers/", headers=ORIGIN)
    connected, _ = await communicator.connect()
    assert connected
    return communicator


def test_the_tests_use_the_redis_channel_layer() -> None:
    assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == "channels_redis.core.RedisChannelLayer"


@pytest.mark.django_db(transaction=True)
async def test_it_confirms_the_subscription_with_a_live_badge(catalog: None) -> None:
    communicator = await connect()
    hello = await communicator.receive_from(timeout=WAIT)
    assert hello.startswith('<span id="live-status"')
    assert 'data-state="live"' in hello and 'data-subscriptions="price_updates"' in hello
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_price_change_reaches_every_open_page_once(catalog: None) -> None:
    first, second = await connect(), await connect()
    for communicator in (first, second):
        await communicator.receive_from(timeout=WAIT)  # the live badge

    await database_sync_to_async(set_best_h100_price)("0.50")
    assert await apublish_price_rows(["H100 80GB"]) == 1
    for communicator in (first, second):
        fragment = await communicator.receive_from(timeout=WAIT)
        assert fragment.startswith('<tr id="gpu-row-h100-80gb"')
        assert "$0.50" in fragment
        assert fragment.count("<tr ") == 1

    # Nothing changed since: nothing is sent.
    assert await apublish_price_rows(["H100 80GB"]) == 0
    assert await nothing_before_a_marker(first)

    # A cheaper price is flagged as going down.
    await database_sync_to_async(set_best_h100_price)("0.45")
    await apublish_price_rows(["H100 80GB"])
    fragment = await first.receive_from(timeout=WAIT)
    assert "price-row--down" in fragment and "$0.45" in fragment
    await first.disconnect()
    await second.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_closed_page_leaves_the_group(catalog: None) -> None:
    communicator = await connect()
    await communicator.receive_from(timeout=WAIT)
    await communicator.disconnect()
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    members = await layer.connection(layer.consistent_hash("price_updates")).zcard(layer._group_key("price_updates"))
    assert members == 0


@pytest.mark.django_db(transaction=True)
async def test_rows_off_the_landing_table_are_not_sent(catalog: None) -> None:
    communicator = await connect()
    await communicator.receive_from(timeout=WAIT)
    assert await apublish_price_rows(["K80 12GB"]) == 0  # offered, but not among the featured rows
    assert await nothing_before_a_marker(communicator)
    await communicator.disconnect()


async def test_a_socket_from_another_site_is_refused() -> None:
    communicator = WebsocketCommunicator(application, "/ws/providers/", headers=[(b"origin", b"http://evil.example")])
    connected, _ = await communicator.connect()
    assert not connected
