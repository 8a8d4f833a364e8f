"""GET/POST /api/v2/providers...: filters, sorting, ranking, decisions, pages that hold still, 422s."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client

from providers.models import Offer, PriceAggregate, PriceSample, Provider

pytestmark = pytest.mark.django_db

API = "/api/v2"


def get(client: Client, path: str, **params: object) -> dict:
    response = client.get(API + path, params)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    return response.json()


def errors_of(response) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    assert response.status_code == 422, response.content
    body = response.json()
    assert body["error"] == "invalid parameters"
    return [(e["field"], e["reason"]) for e in body["errors"]]


def test_it_lists_offers_cheapest_first_twenty_by_default(client: Client, catalog: None) -> None:
    body = get(client, "/providers")
    assert len(body["items"]) == 20 and body["total"] == Offer.objects.count() and body["next_cursor"]
    prices = [item["price_per_hour"] for item in body["items"]]
    assert prices == sorted(prices)
    first = body["items"][0]
    assert set(first) >= {"id", "provider", "name", "gpu_type", "gpu_count", "gpu_memory_gb", "vcpus", "ram_gb", "storage_gb",
                          "price_per_hour", "spot_price", "currency", "availability_status", "region", "compliance_tags", "last_updated"}


def test_filters_narrow_the_list(client: Client, catalog: None) -> None:
    body = get(client, "/providers", gpu_type="H100 80GB", availability="available", max_price="30", min_gpu_memory=80, limit=100)
    assert body["items"] and all(
        i["gpu_type"] == "H100 80GB" and i["availability_status"] == "available" and i["price_per_hour"] <= 30 for i in body["items"]
    )
    expected = Offer.objects.filter(gpu_type="H100 80GB", availability_status="available", price_per_hour__lte=30).count()
    assert body["total"] == expected
    aws = get(client, "/providers", provider="aws", gpu_count=8, spot="true", limit=100)
    assert aws["items"] and all(i["provider"] == "aws" and i["gpu_count"] == 8 and i["spot_price"] is not None for i in aws["items"])
    both = get(client, "/providers", gpu_type="H100 80GB,A100 80GB", limit=100)
    assert {i["gpu_type"] for i in both["items"]} == {"H100 80GB", "A100 80GB"}
    regions = get(client, "/providers", region="us-east-1", limit=5)
    assert all(i["region"] == "us-east-1" for i in regions["items"])


def test_compliance_tags_must_all_be_present(client: Client, catalog: None) -> None:
    offer = Offer.objects.first()
    offer.compliance_tags = ["soc2", "hipaa"]
    offer.save()
    assert [i["id"] for i in get(client, "/providers", compliance="soc2,hipaa")["items"]] == [offer.pk]
    assert get(client, "/providers", compliance="soc2,gdpr")["items"] == []


def test_sorting_by_performance_and_by_topsis(client: Client, catalog: None) -> None:
    perf = get(client, "/providers", sort="performance", limit=10)["items"]
    assert [i["tflops"] for i in perf] == sorted([i["tflops"] for i in perf], reverse=True)
    ranked = get(client, "/providers", sort="topsis", weights="price:1", gpu_type="A100 80GB", limit=10)["items"]
    assert [i["rank"] for i in ranked] == list(range(1, 11))
    assert [i["score"] for i in ranked] == sorted([i["score"] for i in ranked], reverse=True)
    assert ranked[0]["price_per_hour"] == min(o.price_per_hour for o in Offer.objects.filter(gpu_type="A100 80GB")).__float__()


def test_pages_hold_still_while_prices_change(client: Client, catalog: None) -> None:
    first = get(client, "/providers", gpu_type="A100 80GB", limit=10)
    seen = [i["id"] for i in first["items"]]
    # Prices move between the pages: the cheapest of page one becomes the most expensive.
    Offer.objects.filter(pk=seen[0]).update(price_per_hour=Decimal("999"))
    Offer.objects.filter(gpu_type="A100 80GB").exclude(pk__in=seen).update(price_per_hour=Decimal("0.01"))
    cursor = first["next_cursor"]
    while cursor:
        page = get(client, "/providers", gpu_type="A100 80GB", limit=10, cursor=cursor)
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
    assert len(seen) == len(set(seen)) == Offer.objects.filter(gpu_type="A100 80GB").count()


def test_a_cursor_of_other_filters_names_no_page_of_these_results(client: Client, catalog: None) -> None:
    cursor = get(client, "/providers", gpu_type="A100 80GB", limit=5)["next_cursor"]
    response = client.get(API + "/providers", {"gpu_type": "H100 80GB", "limit": 5, "cursor": cursor})
    assert response.status_code == 404 and response.json()["errors"][0]["field"] == "cursor"


def test_an_empty_price_range_matches_no_offer(client: Client, catalog: None) -> None:
    assert get(client, "/providers", min_price="5", max_price="1")["total"] == 0


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"min_price": "-1"}, "min_price"),
        ({"availability": "soon"}, "availability.0"),
        ({"sort": "cheapest"}, "sort"),
        ({"sort": "topsis", "weights": "price:x"}, "weights"),
        ({"sort": "topsis", "weights": "speed:1"}, "weights"),
        ({"sort": "topsis", "weights": "price:0"}, "weights"),
        ({"cursor": "not a cursor!"}, "cursor"),
        ({"gpu_count": 0}, "gpu_count"),
        ({"spot": "maybe"}, "spot"),
        ({"gpu_type": "x" * 401}, "gpu_type"),
        ({"gpu_type": "\x00"}, "gpu_type"),
    ],
)
def test_invalid_parameters_are_a_422_naming_the_field(client: Client, catalog: None, params: dict, field: str) -> None:
    errors = errors_of(client.get(API + "/providers", params))
    assert errors[0][0] == field and errors[0][1]


def test_one_offer_by_id_or_a_404(client: Client, catalog: None) -> None:
    offer = Offer.objects.first()
    assert get(client, f"/providers/{offer.pk}")["name"] == offer.name
    missing = client.get(API + "/providers/999999999")
    assert missing.status_code == 404 and "no offer" in missing.json()["error"]


def test_post_query_takes_the_filters_as_json(client: Client, catalog: None) -> None:
    response = client.post(API + "/providers/query", {"gpu_type": ["L4 24GB"], "sort": "topsis", "weights": {"price": 2, "reliability": 1}, "limit": 3},
                           content_type="application/json")
    body = response.json()
    assert response.status_code == 200 and len(body["items"]) == 3 and all(i["gpu_type"] == "L4 24GB" for i in body["items"])
    bad = client.post(API + "/providers/query", {"weights": {"speed": 1}}, content_type="application/json")
    assert bad.status_code == 422
    unreadable = client.post(API + "/providers/query", b"{oops", content_type="application/json")
    assert unreadable.status_code == 400 and unreadable.json()["errors"][0]["field"] == "body"


def test_ranking_explains_each_criterions_share(client: Client, catalog: None) -> None:
    body = get(client, "/providers/ranking", gpu_type="H100 80GB", weights="price:3,performance:1", top=5)
    assert len(body["items"]) == 5 and body["weights"] == {"performance": 1.0, "price": 3.0}
    why = body["items"][0]["why"]
    assert set(why) == {"price", "performance"} and abs(sum(why.values()) - 1) < 1e-3


def test_decide_with_each_method(client: Client, catalog: None) -> None:
    criteria = [{"name": "price", "weight": 2}, {"name": "performance", "weight": 1}]
    for method in ("topsis", "weighted_sum"):
        response = client.post(API + "/providers/decide", {"method": method, "criteria": criteria, "filters": {"gpu_type": ["H100 80GB"]}, "top_k": 4},
                               content_type="application/json")
        body = response.json()
        assert response.status_code == 200 and len(body["items"]) == 4
        assert [i["score"] for i in body["items"]] == sorted([i["score"] for i in body["items"]], reverse=True)
    pareto = client.post(API + "/providers/decide", {"method": "pareto", "criteria": criteria, "filters": {"gpu_type": ["H100 80GB"]}},
                         content_type="application/json").json()
    front = pareto["items"]
    assert front
    # No offer on the front is both cheaper-or-equal and faster-or-equal than another, strictly in one.
    for a in front:
        for b in front:
            assert not (a["price_per_hour"] <= b["price_per_hour"] and a["tflops"] >= b["tflops"]
                        and (a["price_per_hour"] < b["price_per_hour"] or a["tflops"] > b["tflops"]))
    flipped = client.post(API + "/providers/decide", {"method": "topsis", "criteria": [{"name": "price", "direction": "maximize"}], "top_k": 1},
                          content_type="application/json").json()
    assert flipped["items"][0]["price_per_hour"] == float(max(o.price_per_hour for o in Offer.objects.all()))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"method": "magic", "criteria": [{"name": "price"}]}, "method"),
        ({"criteria": []}, "criteria"),
        ({"criteria": [{"name": "price", "weight": -1}]}, "criteria.0.weight"),
        ({"criteria": [{"name": "price", "weight": 0}]}, "criteria.0.weight"),
        ({"criteria": [{"name": "price", "direction": "up"}]}, "criteria.0.direction"),
        ({"criteria": [{"name": "price"}], "top_k": 1000}, "top_k"),
    ],
)
def test_decide_refuses_bad_criteria_with_the_field(client: Client, catalog: None, body: dict, field: str) -> None:
    errors = errors_of(client.post(API + "/providers/decide", body, content_type="application/json"))
    assert errors[0][0] == field


def test_health_lists_each_provider(client: Client, catalog: None) -> None:
    Provider.objects.filter(slug="aws").update(health_status="degraded", circuit_state="half_open", health_latency_ms=2500)
    body = get(client, "/providers/health")
    aws = next(p for p in body["providers"] if p["provider"] == "aws")
    assert aws["health_status"] == "degraded" and aws["circuit_state"] == "half_open" and aws["latency_ms"] == 2500
    assert body["stale_since"] is None


def test_price_history_by_type_and_by_offer(client: Client, catalog: None) -> None:
    from django.utils import timezone

    offer = Offer.objects.filter(gpu_type="H100 80GB").first()
    minute = timezone.now().replace(second=0, microsecond=0)
    PriceAggregate.objects.create(gpu_type="H100 80GB", minute=minute, offers=3, min_price=1, mean_price=2, max_price=3)
    PriceSample.objects.create(offer=offer, gpu_type=offer.gpu_type, price_per_hour=5, price_per_gpu_hour=5, availability_status="available")
    series = get(client, "/analytics/price-history", gpu_type="H100 80GB")
    assert series["points"] == [{"at": minute.isoformat(), "offers": 3, "min": 1.0, "mean": 2.0, "max": 3.0}]
    changes = get(client, "/analytics/price-history", offer_id=offer.pk, resolution="change")
    assert [p["price_per_hour"] for p in changes["points"]] == [5.0]
    assert errors_of(client.get(API + "/analytics/price-history"))[0][0] == "gpu_type"
    assert errors_of(client.get(API + "/analytics/price-history", {"offer_id": offer.pk}))[0][0] == "resolution"
    assert errors_of(client.get(API + "/analytics/price-history", {"gpu_type": "H100 80GB", "since": "yesterday"}))[0][0] == "since"


def test_the_docs_and_schema_are_served(client: Client) -> None:
    assert client.get(API + "/docs").status_code == 200
    schema = client.get(API + "/openapi.json").json()
    assert {"/api/v2/providers", "/api/v2/providers/{offer_id}", "/api/v2/providers/query", "/api/v2/providers/ranking",
            "/api/v2/providers/decide", "/api/v2/providers/health", "/api/v2/providers/stream", "/api/v2/analytics/price-history"} <= set(schema["paths"])


def test_metrics_report_latency_cache_and_providers(client: Client, catalog: None) -> None:
    Provider.objects.filter(slug="aws").update(circuit_state="open", health_latency_ms=120)
    client.get(API + "/providers")
    client.get(API + "/providers")
    text = client.get("/metrics").content.decode()
    assert 'gpubroker_http_request_duration_seconds_bucket{le="0.005",method="GET",route="api/v2/providers",status="2xx"}' in text
    assert "gpubroker_cache_hit_ratio" in text
    assert 'gpubroker_provider_circuit_state{provider="aws",state="open"} 1.0' in text
    assert 'gpubroker_provider_latency_seconds{provider="aws"} 0.12' in text
    assert "gpubroker_worker_lag_seconds" in text


def test_metrics_report_each_consumer_groups_backlog(client: Client) -> None:
    import redis

    from tests.environment import TEST_REDIS_URL

    r = redis.Redis.from_url(TEST_REDIS_URL)
    r.delete("gpubroker.price-alerts")
    r.xgroup_create("gpubroker.price-alerts", "fanout", id="0", mkstream=True)
    r.xadd("gpubroker.price-alerts", {"data": b"{}"})
    r.xadd("gpubroker.price-alerts", {"data": b"{}"})
    text = client.get("/metrics").content.decode()
    assert 'gpubroker_stream_backlog{group="fanout",stream="gpubroker.price-alerts"} 2.0' in text
    r.delete("gpubroker.price-alerts")
