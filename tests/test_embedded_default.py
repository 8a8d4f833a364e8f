"""The embedded default, as a newcomer's `make run` serves it: SQLite, in-memory cache and channel
layers, the worker inside the server, no DATABASE_URL or REDIS_URL. Every API operation answers
with real data and every page renders, over HTTP to the running app (the rest of the suite runs
on PostgreSQL, which would hide a query SQLite cannot run)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from tests.served_app import ServedApp, served_app

API = "/api/v2"
# A valid request for each operation, with the filters SQLite once failed on (compliance).
REQUESTS = {
    ("get", "/providers"): {"params": {"gpu_type": "H100 80GB", "compliance": "soc2", "availability": "available", "limit": 5}},
    ("post", "/providers/query"): {"json": {"compliance": ["soc2"], "sort": "topsis", "weights": {"price": 1, "performance": 1}, "limit": 5}},
    ("get", "/providers/ranking"): {"params": {"gpu_type": "A100 80GB", "weights": "price:0.7,performance:0.3", "top": 3}},
    ("post", "/providers/decide"): {"json": {"method": "pareto", "criteria": [{"name": "price"}, {"name": "performance"}], "filters": {"compliance": ["soc2"]}}},
    ("get", "/providers/health"): {},
    ("get", "/providers/stream"): {"params": {"subscribe": "price_updates,gpu:H100 80GB"}},
    ("get", "/analytics/price-history"): {"params": {"gpu_type": "H100 80GB"}},
    ("get", "/account"): {},
    ("post", "/rentals/provision"): {"headers": {"Idempotency-Key": "embedded-smoke"}, "json": {
        "offer_id": "{offer_id}", "name": "smoke", "gpu_count": 1, "template": "pytorch",
        "ssh_public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ada@example.com"}},
}
# Answers other than 200 that prove the operation ran on SQLite: the key's owner has no balance
# (402: the first hour is not covered) and no pods (404 for a pod id that is not theirs).
EXPECTED = {("post", "/rentals/provision"): 402}
NO_SUCH_POD = "999999"


@pytest.fixture(scope="module")
def app() -> Iterator[ServedApp]:
    with served_app("embedded") as served:
        yield served


def _operations(app: ServedApp) -> list[tuple[str, str]]:
    paths = httpx.get(f"{app.url}{API}/openapi.json").json()["paths"]
    return [(method, path.removeprefix(API)) for path, methods in paths.items() for method in methods]


def test_every_api_operation_answers_on_the_embedded_default(app: ServedApp) -> None:
    headers = {"X-API-Key": app.api_key}
    with httpx.Client(base_url=app.url + API, headers=headers, timeout=30) as http:
        # The sandbox catalog carries no tags: the filter answers (it was a 500 on SQLite), with none.
        tagged = http.get("/providers", params={"compliance": "soc2"})
        assert tagged.status_code == 200 and tagged.json()["total"] == 0, tagged.text[:300]
        offer_id = http.get("/providers", params={"limit": 1}).json()["items"][0]["id"]
        seen = set()
        for method, path in _operations(app):
            request = REQUESTS.get((method, path), {})
            if "json" in request:
                request = {**request, "json": {k: offer_id if v == "{offer_id}" else v for k, v in request["json"].items()}}
            expected = 404 if "{rental_id}" in path else EXPECTED.get((method, path), 200)
            if (method, path) == ("post", "/rentals/{rental_id}/scale"):
                request = {"json": {"gpu_count": 1}}
            url = path.replace("{offer_id}", str(offer_id)).replace("{rental_id}", NO_SUCH_POD)
            response = http.request(method.upper(), url, **request)
            assert response.status_code == expected, (method, path, response.status_code, response.text[:300])
            seen.add((method, path))
        assert set(REQUESTS) <= seen
        first = http.get("/providers", params={"gpu_type": "H100 80GB", "limit": 5}).json()
        page_two = http.get("/providers", params={"gpu_type": "H100 80GB", "limit": 5, "cursor": first["next_cursor"]})
        assert page_two.status_code == 200 and page_two.json()["items"]
        assert not {i["id"] for i in first["items"]} & {i["id"] for i in page_two.json()["items"]}
    assert "Traceback" not in app.log.read_text()


TAG_AND_FILTER = """
from providers.models import Offer
first, second = Offer.objects.order_by("pk")[:2]
Offer.objects.filter(pk=first.pk).update(compliance_tags=["soc2", "hipaa"])
Offer.objects.filter(pk=second.pk).update(compliance_tags=["soc2"])
both = sorted(Offer.objects.filter(compliance_tags__has_element="soc2").values_list("pk", flat=True))
hipaa = list(Offer.objects.filter(compliance_tags__has_element="soc2").filter(compliance_tags__has_element="hipaa").values_list("pk", flat=True))
print(both == sorted([first.pk, second.pk]), hipaa == [first.pk])
"""


def test_the_compliance_lookup_finds_tags_in_sqlite(app: ServedApp) -> None:
    assert app.manage("shell", "-c", TAG_AND_FILTER).split()[-2:] == ["True", "True"]


def _pages() -> list[str]:
    from django.urls import URLResolver, get_resolver

    def walk(patterns: list, prefix: str = "") -> Iterator[str]:  # type: ignore[type-arg]
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, route)
            # API operations are requested above; the API's own pages are its docs and schema.
            elif not re.search(r"[<^(]", route) and (not route.startswith("api/v2/") or route in ("api/v2/docs", "api/v2/openapi.json")):
                yield "/" + route

    return sorted(set(walk(get_resolver().url_patterns)))


def test_every_page_renders_on_the_embedded_default(app: ServedApp) -> None:
    pages = _pages()
    assert "/browse/" in pages and "/" in pages
    with httpx.Client(base_url=app.url, timeout=30) as http:
        for page in pages:
            response = http.get(page)
            # Pages answer 200, send an anonymous visitor to log in, or (POST-only forms) 405.
            assert response.status_code in (200, 302, 405), (page, response.status_code, response.text[:300])
        browse = http.get("/browse/", params={"gpu_type": "H100 80GB", "sort": "price"})
        assert browse.status_code == 200 and "H100 80GB" in browse.text
    assert "Traceback" not in app.log.read_text()
