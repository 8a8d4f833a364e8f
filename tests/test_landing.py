"""The landing page shows the live pricing table from the catalog in the database."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client

from providers.catalog import best_offers, featured_gpu_types
from tests.test_hot_reads import caches  # noqa: F401 - the fixture: caches with a hand-moved poll clock


@pytest.mark.django_db
def test_it_shows_the_best_offer_of_each_featured_gpu(client: Client, catalog: None) -> None:
    response = client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Live GPU pricing" in html
    rows = best_offers(featured_gpu_types())
    assert len(rows) == 12
    for row in rows:
        assert f'id="{row.row_id}"' in html
        assert f"${row.price_per_gpu_hour}" in html
    assert 'ws-connect="/ws/providers/"' in html
    assert "/static/django_htmx/htmx-2.min.js" in html or "htmx-2.min.js" in html
    assert "hx-ws-2" in html
    assert "Prices from 25 providers" in html and "Vast.ai" in html


@pytest.mark.django_db
def test_an_htmx_request_gets_only_the_pricing_table(client: Client, catalog: None) -> None:
    response = client.get("/", headers={"HX-Request": "true"})
    html = response.content.decode()
    assert 'id="pricing"' in html and "gpu-row-h100-80gb" in html
    assert "<html" not in html and "hero-title" not in html


@pytest.mark.django_db
def test_a_price_change_shows_on_the_next_load(client: Client, catalog: None) -> None:
    from providers.models import Offer

    winner = best_offers(["H100 80GB"])[0]
    Offer.objects.filter(pk=winner.offer_id).update(price_per_hour=Decimal("0.1234") * Offer.objects.get(pk=winner.offer_id).gpu_count)
    assert "$0.12" in client.get("/").content.decode()


@pytest.mark.django_db
def test_it_says_so_when_the_catalog_is_empty(client: Client) -> None:
    assert "No offers loaded yet" in client.get("/").content.decode()


@pytest.mark.django_db
def test_it_warns_that_prices_are_stale_when_every_provider_is_down(client, caches) -> None:  # type: ignore[no-untyped-def]
    from django.utils import timezone

    from providers.models import Provider

    assert b"stale since" not in client.get("/").content
    last = timezone.now() - timezone.timedelta(minutes=12)
    Provider.objects.update(health_status="down", last_refresh_at=last)
    # The cached page follows the catalog generation (providers down are part of it), not its TTL.
    caches.next_poll()
    client.get("/")  # serves the page of the old generation while it is rebuilt
    page = client.get("/").content.decode()
    assert "prices are stale since" in page and last.isoformat() in page
    browse = client.get("/browse/").content.decode()
    assert "prices are stale since" in browse
