"""Hot reads are cheap and still right: catalog pages and rankings come from caches that are
rebuilt when a price is stored, and the page stays personal where it must (nav, CSRF token)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from django.shortcuts import render
from django.test import Client, RequestFactory
from django.urls import resolve

from providers.cache import GENERATION_MIN_AGE, TieredCache, reset_shared_cache
from providers.catalog import best_offers
from providers.freshness import catalog_generation
from providers.models import Offer, PriceSample
from tests.test_cache import Clock, InlineExecutor
from web import pagecache
from web.views.public import landing_catalog

TOKEN = re.compile(r'(x-csrftoken": "|name="csrfmiddlewaretoken" value=")([A-Za-z0-9]+)')
RANKING = "/api/v2/providers/ranking?gpu_type=H100%2080GB&weights=price:1&top=3"


class Caches:
    """The API and page caches with their background work inline and a hand-moved poll clock."""

    def __init__(self) -> None:
        self.poll_clock = Clock()
        self.wall = wall = Clock()  # moves by GENERATION_MIN_AGE a poll: nothing expires by time here
        self.api = TieredCache(None, clock=wall, executor=InlineExecutor(), generation_source=catalog_generation, monotonic=self.poll_clock)
        self.pages = TieredCache(None, clock=wall, executor=InlineExecutor(), generation_source=catalog_generation, monotonic=self.poll_clock)

    def next_poll(self) -> None:
        self.poll_clock.now += 1.0
        self.wall.now += GENERATION_MIN_AGE


@pytest.fixture
def caches(catalog: None) -> Iterator[Caches]:
    held = Caches()
    reset_shared_cache(held.api)
    pagecache.reset_page_cache(held.pages)
    yield held
    reset_shared_cache(None)
    pagecache.reset_page_cache(None)


def store_price(offer: Offer, price_per_gpu_hour: Decimal) -> None:
    """What ingest does for a change: the new price, and its PriceSample."""
    offer.price_per_hour = price_per_gpu_hour * offer.gpu_count
    offer.save(update_fields=["price_per_hour"])
    PriceSample.objects.create(offer=offer, gpu_type=offer.gpu_type, price_per_hour=offer.price_per_hour,
                               price_per_gpu_hour=price_per_gpu_hour, availability_status=offer.availability_status)


def h100_winner() -> Offer:
    return Offer.objects.get(pk=best_offers(["H100 80GB"])[0].offer_id)


def until_shown(client: Client, path: str, text: str, loads: int = 3) -> bool:
    return any(text in client.get(path).content.decode() for _ in range(loads))


@pytest.mark.django_db
def test_the_landing_page_is_served_from_cache_until_a_price_is_stored(client: Client, caches: Caches) -> None:
    client.get("/")
    winner = h100_winner()
    winner.price_per_hour = Decimal("0.1234") * winner.gpu_count
    winner.save(update_fields=["price_per_hour"])  # no PriceSample: not a stored price change
    assert not until_shown(client, "/", "$0.12")  # the cached page, without reading the catalog
    store_price(winner, Decimal("0.1234"))
    assert not until_shown(client, "/", "$0.12", loads=1)  # the generation is polled once a second
    caches.next_poll()
    assert until_shown(client, "/", "$0.12")


@pytest.mark.django_db
def test_the_shared_page_is_the_page_django_renders_but_for_the_token(client: Client, caches: Caches) -> None:
    shared = client.get("/").content.decode()
    request = RequestFactory().get("/", HTTP_HOST="localhost")
    request.user = AnonymousUser()
    request.htmx = False  # type: ignore[attr-defined]
    request.resolver_match = resolve("/")  # as Django's handler sets it: the nav marks the current page
    direct = render(request, "pages/landing.html", landing_catalog()).content.decode()
    assert TOKEN.sub(r"\1T", shared) == TOKEN.sub(r"\1T", direct)
    assert pagecache.CSRF_PLACEHOLDER not in shared


@pytest.mark.django_db
def test_each_visitor_gets_a_token_of_their_own_that_the_site_accepts(caches: Caches) -> None:
    first, second = Client(enforce_csrf_checks=True), Client(enforce_csrf_checks=True)
    tokens = [TOKEN.search(c.get("/").content.decode()).group(2) for c in (first, second)]  # type: ignore[union-attr]
    assert tokens[0] != tokens[1]
    assert "csrftoken" in first.cookies
    # The token on the cached page is valid for its visitor's cookie: a form post passes CSRF.
    response = first.post("/accounts/login/", {"login": "nobody@example.com", "password": "wrong-password"}, headers={"X-CSRFToken": tokens[0]})
    assert response.status_code != 403


@pytest.mark.django_db
def test_a_signed_in_person_gets_their_own_nav_with_current_prices(member: Client, caches: Caches) -> None:
    html = member.get("/").content.decode()
    assert "Dashboard" in html and "Sign up" not in html
    store_price(h100_winner(), Decimal("0.1111"))
    caches.next_poll()
    assert until_shown(member, "/", "$0.11")


@pytest.mark.django_db
def test_a_flash_message_for_a_visitor_is_not_lost_to_the_cache(member: Client, caches: Caches) -> None:
    Client().get("/")  # the shared page is cached
    response = member.post("/accounts/logout/", follow=True)
    assert response.request["PATH_INFO"] == "/" and "signed out" in response.content.decode().lower()


@pytest.mark.django_db
def test_browse_answers_one_cached_page_per_normalised_query(client: Client, caches: Caches) -> None:
    first = client.get("/browse/?gpu_type=H100%2080GB&sort=price")
    assert first.status_code == 200
    computes = caches.pages.stats.computes
    again = client.get("/browse/?sort=price&gpu_type=H100%2080GB")
    assert again.status_code == 200 and caches.pages.stats.computes == computes
    assert TOKEN.sub(r"\1T", again.content.decode()) == TOKEN.sub(r"\1T", first.content.decode())


@pytest.mark.django_db
def test_a_bad_browse_query_keeps_its_422_when_served_from_cache(client: Client, caches: Caches) -> None:
    assert client.get("/browse/?max_price=cheap").status_code == 422
    response = client.get("/browse/?max_price=cheap")
    assert response.status_code == 422 and "max_price" in response.content.decode()


@pytest.mark.django_db
def test_a_ranking_is_rebuilt_when_a_price_is_stored(client: Client, caches: Caches) -> None:
    before = client.get(RANKING).json()["items"]
    cheapest = Offer.objects.get(pk=before[-1]["id"])
    store_price(cheapest, Decimal("0.0100"))
    assert client.get(RANKING).json()["items"] == before  # the generation is polled once a second
    caches.next_poll()
    client.get(RANKING)  # serves the outdated entry while its rebuild runs
    assert client.get(RANKING).json()["items"][0]["id"] == cheapest.pk
