"""Hostile and odd input to /api/v2 and /browse/ (issue 15): each answers a clear 4xx in JSON
naming the field, never a 500, and a crafted cursor reaches only its own query's pages."""

from __future__ import annotations

import base64

import orjson
import pytest
from django.test import Client, override_settings

from providers.cache import TieredCache
from providers.models import Offer
from providers.query import SNAPSHOT_MAX_OFFERS, pack_snapshot, unpack_snapshot
from web.ratelimit import RateLimiter, reset_shared_limiter

pytestmark = pytest.mark.django_db

API = "/api/v2"


def cursor_of(**fields: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(fields)).decode().rstrip("=")


def decoded(cursor: str) -> dict:
    return orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))


def field_errors(response) -> list[str]:  # type: ignore[no-untyped-def]
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json")
    return [e["field"] for e in response.json()["errors"]]


def test_a_cursor_whose_last_offer_is_not_a_number_is_refused_not_a_type_error(client: Client, catalog: None) -> None:
    real = decoded(client.get(API + "/providers", {"limit": 5}).json()["next_cursor"])
    crafted = cursor_of(s="0" * 16, o=0, q=real["q"], a=[1])  # an unknown snapshot takes the "last offer" path
    response = client.get(API + "/providers", {"limit": 5, "cursor": crafted})
    assert response.status_code == 404 and field_errors(response) == ["cursor"]
    page = client.get("/browse/", {"cursor": crafted})
    assert page.status_code == 422 and b"cursor" in page.content


def test_a_crafted_cursor_can_neither_poison_nor_read_another_querys_pages(client: Client, catalog: None) -> None:
    a100 = client.get(API + "/providers", {"gpu_type": "A100 80GB", "limit": 5}).json()
    h100 = client.get(API + "/providers", {"gpu_type": "H100 80GB", "limit": 5}).json()
    a_cursor, h_query = decoded(a100["next_cursor"]), decoded(h100["next_cursor"])["q"]
    # Page 2 of A100 is now cached; H100 asks for "its" page at A100's snapshot and position.
    assert {i["gpu_type"] for i in client.get(API + "/providers", {"gpu_type": "A100 80GB", "limit": 5, "cursor": a100["next_cursor"]}).json()["items"]} == {"A100 80GB"}
    crafted = cursor_of(s=a_cursor["s"], o=a_cursor["o"], q=h_query, a=a_cursor["a"])
    stolen = client.get(API + "/providers", {"gpu_type": "H100 80GB", "limit": 5, "cursor": crafted}).json()
    assert stolen["items"] and {i["gpu_type"] for i in stolen["items"]} == {"H100 80GB"}
    again = client.get(API + "/providers", {"gpu_type": "A100 80GB", "limit": 5, "cursor": a100["next_cursor"]}).json()
    assert {i["gpu_type"] for i in again["items"]} == {"A100 80GB"}


@pytest.mark.parametrize(
    ("until", "status"),
    [("2025-01-01T00:00:00", 422), ("-8.7e-263", 422), ("0001-01-01T00:00:00Z", 200), ("0001-01-01T00:00:00+01:00", 200), ("9999-12-31T23:59:59-01:00", 200)],
)
def test_price_history_refuses_a_naive_or_numeric_until_and_survives_the_ends_of_time(client: Client, catalog: None, until: str, status: int) -> None:
    response = client.get(API + "/analytics/price-history", {"gpu_type": "H100 80GB", "until": until})
    assert response.status_code == status, response.content
    if status == 422:
        assert field_errors(response) == ["until"]


@pytest.mark.parametrize("name", ["gpu_type", "region", "provider", "compliance"])
def test_a_nul_byte_in_a_text_filter_is_a_422_not_a_database_error(client: Client, catalog: None, name: str) -> None:
    assert field_errors(client.get(API + "/providers", {name: "H100\x00"})) == [name]
    assert field_errors(client.get(API + "/providers/ranking", {name: "\x00"})) == [name]
    assert field_errors(client.post(API + "/providers/query", {name: ["a\x00"]}, content_type="application/json")) == [name]
    decide = {"criteria": [{"name": "price"}], "filters": {name: ["\x00"]}}
    assert field_errors(client.post(API + "/providers/decide", decide, content_type="application/json")) == [f"filters.{name}"]
    browse = client.get("/browse/", {name: "\x00"} if name != "compliance" else {"gpu_type": "\x00"})
    assert browse.status_code == 422


def test_a_nul_byte_in_the_history_subject_is_a_422(client: Client, catalog: None) -> None:
    assert field_errors(client.get(API + "/analytics/price-history", {"gpu_type": "\x00"})) == ["gpu_type"]


def test_an_offer_id_beyond_64_bits_is_a_422_not_a_500(client: Client, catalog: None) -> None:
    assert field_errors(client.get(API + "/providers/9223372036854775808")) == ["offer_id"]
    history = client.get(API + "/analytics/price-history", {"offer_id": "9223372036854775808", "resolution": "change"})
    assert field_errors(history) == ["offer_id"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/providers/query", "AAA", "request"),
        ("/providers/query", [1, 2], "request"),
        ("/providers/query", {"limit": "5"}, "limit"),
        ("/providers/query", {"spot": "true"}, "spot"),
        ("/providers/query", {"gpu_type": "H100 80GB"}, "gpu_type"),
        ("/providers/decide", {"criteria": [{"name": "price"}], "filters": [None, None]}, "filters"),
        ("/providers/decide", {"criteria": [{"name": "price", "weight": "1"}]}, "criteria.0.weight"),
    ],
)
def test_a_body_that_is_not_the_documented_json_is_a_422_naming_the_field(client: Client, catalog: None, path: str, body: object, field: str) -> None:
    response = client.post(API + path, orjson.dumps(body), content_type="application/json")
    assert response.status_code == 422 and response.json()["error"] == "invalid parameters"
    assert field_errors(response)[0].startswith(field)


def test_an_empty_filter_value_is_refused_rather_than_ignored(client: Client, catalog: None) -> None:
    assert field_errors(client.get(API + "/providers?availability=")) == ["availability.0"]
    assert field_errors(client.get(API + "/providers?gpu_type=")) == ["gpu_type"]
    assert field_errors(client.get(API + "/providers?gpu_type=H100 80GB,,A100 80GB")) == ["gpu_type"]


def test_a_body_that_is_not_json_is_a_documented_400_in_json(client: Client, catalog: None) -> None:
    response = client.post(API + "/providers/query", b"\x00", content_type="application/json")
    assert response.status_code == 400 and field_errors(response) == ["body"]
    documented = client.get(API + "/openapi.json").json()["paths"][API + "/providers/query"]["post"]["responses"]
    assert {"400", "422", "429"} <= set(documented)


def test_a_missing_api_key_is_a_documented_401_in_json(client: Client) -> None:
    response = client.get(API + "/account")
    assert response.status_code == 401 and field_errors(response) == ["X-API-Key"]
    assert "401" in client.get(API + "/openapi.json").json()["paths"][API + "/account"]["get"]["responses"]


def test_the_schema_says_price_history_takes_exactly_one_of_gpu_type_or_offer_id(client: Client) -> None:
    operation = client.get(API + "/openapi.json").json()["paths"][API + "/analytics/price-history"]["get"]
    (parameter,) = operation["parameters"]
    variants = parameter["schema"]["oneOf"]
    assert [v["required"][0] for v in variants] == ["gpu_type", "offer_id"]
    assert [v["not"] for v in variants] == [{"required": ["offer_id"]}, {"required": ["gpu_type"]}]


def test_the_schema_documents_prices_as_numbers(client: Client) -> None:
    parameters = client.get(API + "/openapi.json").json()["paths"][API + "/providers"]["get"]["parameters"]
    min_price = next(p for p in parameters if p["name"] == "min_price")["schema"]
    assert [s for s in min_price["anyOf"] if s.get("type") != "null"] == [{"type": "number", "minimum": 0, "maximum": 100000}]


def test_a_snapshot_costs_eight_bytes_an_offer_and_is_capped() -> None:
    ordered = [{"id": n, "score": None} for n in range(SNAPSHOT_MAX_OFFERS + 100)]
    packed = pack_snapshot(ordered)
    assert len(packed) == 16 + 8 * SNAPSHOT_MAX_OFFERS
    total, ids, scores = unpack_snapshot(packed)
    assert total == SNAPSHOT_MAX_OFFERS + 100 and ids == list(range(SNAPSHOT_MAX_OFFERS)) and scores is None


def test_rebuilding_an_unchanged_first_page_stores_no_new_snapshot(client: Client, catalog: None) -> None:
    from django.core.cache import cache

    from providers.cache import shared_cache

    shared_cache().clear_local()  # L2 outlives a test's database
    first = decoded(client.get(API + "/providers", {"limit": 5}).json()["next_cursor"])["s"]
    shared_cache().clear_local()
    cache.clear()
    assert decoded(client.get(API + "/providers", {"limit": 5}).json()["next_cursor"])["s"] == first


def test_the_process_cache_is_bounded_in_bytes_not_only_in_entries() -> None:
    cache = TieredCache(None, max_entries=100, max_bytes=1000)
    for n in range(3):
        cache.set(f"k{n}", b"x" * 400, 60)
    assert len(cache) == 2 and cache.peek("k0") is None and cache.peek("k2") is not None


@override_settings(RATE_LIMIT_ENABLED=True, RATE_LIMIT_MULTIPLIER=1)
def test_browse_searches_are_rate_limited_like_anonymous_api_reads(client: Client, catalog: None) -> None:
    now = [1_000_000.0]
    reset_shared_limiter(RateLimiter(None, clock=lambda: now[0]))
    try:
        statuses = [client.get("/browse/", {"gpu_type": "H100 80GB"}).status_code for _ in range(11)]
        assert statuses == [200] * 10 + [429]
        refused = client.get("/browse/")
        assert refused.status_code == 429 and refused["Retry-After"] and b"too many searches" in refused.content
        now[0] += 2
        assert client.get("/browse/").status_code == 200
    finally:
        reset_shared_limiter(None)


def test_every_compliance_tag_must_be_present_through_the_portable_lookup(client: Client, catalog: None) -> None:
    tagged = list(Offer.objects.order_by("pk")[:2])
    tagged[0].compliance_tags, tagged[1].compliance_tags = ["soc2", "hipaa"], ["soc2"]
    for offer in tagged:
        offer.save()
    ids = {i["id"] for i in client.get(API + "/providers", {"compliance": "soc2", "limit": 100}).json()["items"]}
    assert ids == {tagged[0].pk, tagged[1].pk}
    both = client.get(API + "/providers", {"compliance": ["soc2", "hipaa"]}).json()["items"]
    assert [i["id"] for i in both] == [tagged[0].pk]


def test_an_unknown_api_path_is_a_json_404(client: Client) -> None:
    response = client.get(API + "/no/such/operation")
    assert response.status_code == 404 and field_errors(response) == ["path"]
