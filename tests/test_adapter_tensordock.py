"""TensorDock's v2 locations: GPUs per location priced with a standard VM shape."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pytest_httpserver import HTTPServer
from pytest_httpserver.httpserver import RequestHandler

from providers.adapters.base import FailureKind, OfferData
from providers.adapters.tensordock import TensorDockAdapter
from tests.adapter_contract import AdapterContract, failure, fixture, received

KEY = "td_SECRET_5b0e8f2a91c4"
IDAHO = "Chubbuck, Idaho, United States"


class TestTensorDock(AdapterContract):
    adapter_class = TensorDockAdapter
    credentials = {"api_key": KEY}

    def route(self, httpserver: HTTPServer) -> RequestHandler:
        return httpserver.expect_request("/api/v2/locations", method="GET")

    async def test_it_prices_each_size_that_is_free_at_a_location(self, adapter: TensorDockAdapter, httpserver: HTTPServer) -> None:
        self.route(httpserver).respond_with_json(fixture("tensordock", "locations.json"))
        offers = await adapter.fetch_offers()
        assert [(offer.name, offer.region, offer.price_per_hour, offer.availability_status) for offer in offers] == [
            ("1x h100-sxm5-80gb", IDAHO, Decimal("2.293"), "available"),  # 2.2 + 8 vCPU, 32 GB RAM, 100 GB disk
            ("2x h100-sxm5-80gb", IDAHO, Decimal("4.581"), "available"),
            ("4x h100-sxm5-80gb", IDAHO, Decimal("9.157"), "available"),
            ("8x h100-sxm5-80gb", IDAHO, Decimal("18.309"), "available"),
            ("1x geforcertx4090-pcie-24gb", IDAHO, Decimal("0.443"), "limited"),  # two free
            ("2x geforcertx4090-pcie-24gb", IDAHO, Decimal("0.869"), "limited"),  # vCPUs capped at 12
            ("1x a100-sxm4-80gb", "Amsterdam, North Holland, Netherlands", Decimal("1.422"), "unavailable"),  # none free
        ]
        assert offers[3] == OfferData(
            provider="tensordock",
            name="8x h100-sxm5-80gb",
            gpu_type="H100 80GB",
            gpu_type_raw="H100 SXM5 80GB",
            gpu_count=8,
            gpu_memory_gb=80,
            price_per_hour=Decimal("18.309"),
            region=IDAHO,
            availability_status="available",
            vcpus=64,
            ram_gb=Decimal("256"),
            storage_gb=100,
            compliance_tags=("tier-3",),
        )
        assert (offers[5].vcpus, offers[5].ram_gb, offers[5].gpu_type) == (12, Decimal("64"), "RTX 4090 24GB")

    async def test_it_sends_the_key_as_a_bearer_token(self, adapter: TensorDockAdapter, httpserver: HTTPServer) -> None:
        self.route(httpserver).respond_with_json(fixture("tensordock", "locations.json"))
        await adapter.fetch_offers()
        (request,) = received(httpserver)
        assert request.headers["Authorization"] == f"Bearer {KEY}"
        assert request.query_string == b""  # never the key in a URL

    async def test_it_skips_unreadable_gpus_and_keeps_the_rest(self, adapter: TensorDockAdapter, httpserver: HTTPServer) -> None:
        self.route(httpserver).respond_with_json(fixture("tensordock", "locations_partial.json"))
        offers = await adapter.fetch_offers()
        assert [offer.name for offer in offers] == ["1x a100-sxm4-80gb"]
        assert adapter.skipped == [
            "item 0: missing field 'price_per_hr'",
            "item 1: max_count should be a number, got 'two'",
            "item 3: expected an object around 'v0Name'",
        ]

    async def test_it_needs_a_key_before_calling(self, client: Any, httpserver: HTTPServer) -> None:
        error = await failure(TensorDockAdapter(client, {}, httpserver.url_for("/")))
        assert error.kind is FailureKind.AUTH
        assert received(httpserver) == []
