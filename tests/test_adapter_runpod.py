"""RunPod's GraphQL catalog and per-location price queries, normalised into offers."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from pytest_httpserver import HTTPServer
from pytest_httpserver.httpserver import RequestHandler
from werkzeug import Request, Response

from providers.adapters.base import FailureKind, OfferData
from providers.adapters.runpod import RunPodAdapter
from tests.adapter_contract import AdapterContract, failure, fixture, received

KEY = "rpa_SECRETKEY0123456789"


def graphql(prices: dict[str, Any]) -> Any:
    """Answers the catalog query, then each price query from `prices` keyed "location/count"."""

    def answer(request: Request) -> Response:
        body = request.get_json()
        if "countryCodes" in body["query"]:
            return Response(json.dumps(fixture("runpod", "catalog.json")), content_type="application/json")
        where = body["variables"]["lowestPriceInput"]
        key = f"{where.get('dataCenterId') or where.get('countryCode')}/{where['gpuCount']}"
        return Response(json.dumps(prices.get(key, prices["default"])), content_type="application/json")

    return answer


def by_key(offers: list[OfferData]) -> dict[tuple[str, str], OfferData]:
    return {(offer.name, offer.region): offer for offer in offers}


class TestRunPod(AdapterContract):
    adapter_class = RunPodAdapter
    credentials = {"api_key": KEY}

    def route(self, httpserver: HTTPServer) -> RequestHandler:
        return httpserver.expect_request("/graphql", method="POST")

    async def test_it_turns_stocked_gpu_types_into_offers_per_location_and_size(self, adapter: RunPodAdapter, httpserver: HTTPServer) -> None:
        self.route(httpserver).respond_with_handler(graphql(fixture("runpod", "prices.json")))
        offers = by_key(await adapter.fetch_offers())
        assert sorted(offers) == [
            ("1x NVIDIA GeForce RTX 4090 (community)", "CA"),
            ("1x NVIDIA H100 80GB HBM3 (secure)", "US-TX-3"),
            ("1x NVIDIA L4 (community)", "CA"),
            ("1x NVIDIA L4 (secure)", "US-TX-3"),
            ("8x NVIDIA H100 80GB HBM3 (secure)", "US-TX-3"),
        ]
        h100 = offers[("1x NVIDIA H100 80GB HBM3 (secure)", "US-TX-3")]
        assert h100 == OfferData(
            provider="runpod",
            name="1x NVIDIA H100 80GB HBM3 (secure)",
            gpu_type="H100 80GB",
            gpu_type_raw="H100 SXM",
            gpu_count=1,
            gpu_memory_gb=80,
            price_per_hour=Decimal("2.99"),
            spot_price=Decimal("1.75"),
            region="US-TX-3",
            availability_status="available",
            vcpus=16,
            ram_gb=Decimal("125"),
            compliance_tags=("SOC2",),
        )
        eight = offers[("8x NVIDIA H100 80GB HBM3 (secure)", "US-TX-3")]
        assert (eight.gpu_count, eight.price_per_hour, eight.spot_price, eight.vcpus) == (8, Decimal("23.92"), Decimal("14.00"), 128)

    async def test_it_prices_community_cloud_by_country_and_maps_stock(self, adapter: RunPodAdapter, httpserver: HTTPServer) -> None:
        self.route(httpserver).respond_with_handler(graphql(fixture("runpod", "prices.json")))
        offers = by_key(await adapter.fetch_offers())
        l4_community = offers[("1x NVIDIA L4 (community)", "CA")]
        assert (l4_community.price_per_hour, l4_community.spot_price, l4_community.availability_status) == (Decimal("0.34"), Decimal("0.18"), "available")
        assert offers[("1x NVIDIA L4 (secure)", "US-TX-3")].availability_status == "limited"  # stockStatus Low
        rtx = offers[("1x NVIDIA GeForce RTX 4090 (community)", "CA")]
        assert (rtx.gpu_type, rtx.spot_price) == ("RTX 4090 24GB", None)  # communitySpotPrice 0: no spot tier

    async def test_it_asks_each_listed_location_for_each_size(self, adapter: RunPodAdapter, httpserver: HTTPServer) -> None:
        self.route(httpserver).respond_with_handler(graphql(fixture("runpod", "prices.json")))
        await adapter.fetch_offers()
        requests = received(httpserver)
        assert all(request.headers["Authorization"] == f"Bearer {KEY}" for request in requests)
        catalog, *prices = (request.get_json() for request in requests)
        assert catalog["variables"] == {} and "dataCenters" in catalog["query"]
        asked = {
            (p["variables"]["lowestPriceInput"].get("dataCenterId") or p["variables"]["lowestPriceInput"]["countryCode"], p["variables"]["lowestPriceInput"]["gpuCount"])
            for p in prices
        }
        assert asked == {(where, count) for where in ("US-TX-3", "EU-RO-1", "CA") for count in (1, 2, 4, 8)}  # US-GA-1 is unlisted
        assert {
            "gpuTypesInput": {"cluster": False},
            "lowestPriceInput": {"gpuCount": 1, "secureCloud": False, "countryCode": "CA", "minCudaVersion": "12.8"},
        } in [p["variables"] for p in prices]

    async def test_it_sends_no_key_when_none_is_configured(self, client: Any, httpserver: HTTPServer) -> None:
        self.route(httpserver).respond_with_handler(graphql(fixture("runpod", "prices.json")))
        await RunPodAdapter(client, {}, httpserver.url_for("/")).fetch_offers()
        assert all("Authorization" not in request.headers for request in received(httpserver))

    async def test_it_skips_unreadable_gpu_types_and_keeps_the_rest(self, adapter: RunPodAdapter, httpserver: HTTPServer) -> None:
        self.route(httpserver).respond_with_handler(graphql(fixture("runpod", "prices_partial.json")))
        offers = await adapter.fetch_offers()
        assert [(offer.name, offer.price_per_hour) for offer in offers] == [("1x NVIDIA L4 (secure)", Decimal("0.44"))]
        assert len(adapter.skipped) == 2
        assert "displayName" in adapter.skipped[0] and "securePrice" not in adapter.skipped[0]
        assert "'about 0.69'" in adapter.skipped[1]

    async def test_it_reports_graphql_errors_as_a_bad_response(self, adapter: RunPodAdapter, httpserver: HTTPServer) -> None:
        self.route(httpserver).respond_with_json({"data": None, "errors": [{"message": "Cannot query field \"gpuTypez\""}]})
        error = await failure(adapter)
        assert error.kind is FailureKind.BAD_RESPONSE
        assert 'Cannot query field "gpuTypez"' in error.detail
