"""Hyperbolic's marketplace: the free GPUs of each node as one offer."""

from __future__ import annotations

from decimal import Decimal

from pytest_httpserver import HTTPServer
from pytest_httpserver.httpserver import RequestHandler

from providers.adapters.base import OfferData
from providers.adapters.hyperbolic import HyperbolicAdapter
from tests.adapter_contract import AdapterContract, fixture, received

KEY = "hyp_SECRET.eyJzdWIiOiJ0ZXN0In0"


class TestHyperbolic(AdapterContract):
    adapter_class = HyperbolicAdapter
    credentials = {"api_key": KEY}

    def route(self, httpserver: HTTPServer) -> RequestHandler:
        return httpserver.expect_request("/v1/marketplace", method="POST")

    async def test_it_offers_the_free_gpus_of_each_node(self, adapter: HyperbolicAdapter, httpserver: HTTPServer) -> None:
        self.route(httpserver).respond_with_json(fixture("hyperbolic", "marketplace.json"))
        free, full = await adapter.fetch_offers()
        assert free == OfferData(
            provider="hyperbolic",
            name="ceti14",
            gpu_type="H100 80GB",
            gpu_type_raw="NVIDIA-H100-80GB-HBM3",
            gpu_count=5,  # 8 on the node, 3 reserved
            gpu_memory_gb=80,
            price_per_hour=Decimal("7.45"),  # 149 cents per GPU hour
            region="us-central-1",
            availability_status="available",
        )
        assert (full.gpu_type, full.gpu_count, full.price_per_hour, full.availability_status) == ("RTX 4090 24GB", 8, Decimal("2.80"), "unavailable")

    async def test_it_asks_the_marketplace_with_empty_filters_and_the_key(self, adapter: HyperbolicAdapter, httpserver: HTTPServer) -> None:
        self.route(httpserver).respond_with_json(fixture("hyperbolic", "marketplace.json"))
        await adapter.fetch_offers()
        (request,) = received(httpserver)
        assert request.headers["Authorization"] == f"Bearer {KEY}"
        assert request.get_json() == {"filters": {}}

    async def test_it_marks_a_reserved_node_unavailable(self, adapter: HyperbolicAdapter, httpserver: HTTPServer) -> None:
        body = fixture("hyperbolic", "marketplace.json")
        body["instances"][0]["reserved"] = True
        self.route(httpserver).respond_with_json(body)
        offers = await adapter.fetch_offers()
        assert [(offer.gpu_count, offer.availability_status) for offer in offers] == [(8, "unavailable"), (8, "unavailable")]

    async def test_it_skips_unreadable_nodes_and_keeps_the_rest(self, adapter: HyperbolicAdapter, httpserver: HTTPServer) -> None:
        self.route(httpserver).respond_with_json(fixture("hyperbolic", "marketplace_partial.json"))
        offers = await adapter.fetch_offers()
        assert [offer.name for offer in offers] == ["ceti14"]
        assert adapter.skipped == ["item 1: missing field 'pricing.price.amount'", "item 2: hardware.gpus should be a non-empty list"]
