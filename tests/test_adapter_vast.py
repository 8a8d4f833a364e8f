"""Vast.ai's offer search (bundles), normalised into one offer per ask."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pytest_httpserver import HTTPServer
from pytest_httpserver.httpserver import RequestHandler

from providers.adapters.base import FailureKind, OfferData
from providers.adapters.vast import VastAdapter
from tests.adapter_contract import AdapterContract, failure, fixture, received

KEY = "vast-SECRET-0f3a9c77e1"


class TestVast(AdapterContract):
    adapter_class = VastAdapter
    credentials = {"api_key": KEY}

    def route(self, httpserver: HTTPServer) -> RequestHandler:
        return httpserver.expect_request("/api/v0/bundles/", method="POST")

    async def test_it_turns_each_ask_into_an_offer(self, adapter: VastAdapter, httpserver: HTTPServer) -> None:
        self.route(httpserver).respond_with_json(fixture("vast", "bundles.json"))
        rtx, h100, v100 = await adapter.fetch_offers()
        assert rtx == OfferData(
            provider="vast",
            name="2x RTX 4090 #12873411",
            gpu_type="RTX 4090 24GB",
            gpu_type_raw="RTX 4090",
            gpu_count=2,
            gpu_memory_gb=24,
            price_per_hour=Decimal("0.6548"),
            spot_price=Decimal("0.41"),
            region="Oregon, US",
            availability_status="available",
            vcpus=16,
            ram_gb=Decimal("64.4"),  # half the cores, so half of the machine's 128.8 GB
            storage_gb=412,
            compliance_tags=("verified",),
        )
        assert (h100.gpu_type, h100.gpu_count, h100.price_per_hour, h100.ram_gb) == ("H100 80GB", 8, Decimal("17.8667"), Decimal("2063.8"))
        assert h100.compliance_tags == ("verified", "datacenter")
        assert (v100.gpu_type, v100.region, v100.spot_price) == ("V100 16GB", "", None)

    async def test_it_searches_free_verified_capacity_with_the_key(self, adapter: VastAdapter, httpserver: HTTPServer) -> None:
        self.route(httpserver).respond_with_json(fixture("vast", "bundles.json"))
        await adapter.fetch_offers()
        (request,) = received(httpserver)
        assert request.headers["Authorization"] == f"Bearer {KEY}"
        assert request.get_json() == {
            "verified": {"eq": True},
            "external": {"eq": False},
            "rentable": {"eq": True},
            "rented": {"eq": False},
            "type": "on-demand",
            "order": [["score", "desc"]],
            "limit": 1000,
        }

    async def test_it_searches_without_a_key_when_none_is_configured(self, client: Any, httpserver: HTTPServer) -> None:
        self.route(httpserver).respond_with_json(fixture("vast", "bundles.json"))
        await VastAdapter(client, {}, httpserver.url_for("/")).fetch_offers()
        assert "Authorization" not in received(httpserver)[0].headers

    async def test_it_marks_a_rented_ask_unavailable(self, adapter: VastAdapter, httpserver: HTTPServer) -> None:
        body = fixture("vast", "bundles.json")
        body["offers"][0]["rented"] = True
        self.route(httpserver).respond_with_json(body)
        offers = await adapter.fetch_offers()
        assert [offer.availability_status for offer in offers] == ["unavailable", "available", "available"]

    async def test_it_skips_unreadable_asks_and_keeps_the_rest(self, adapter: VastAdapter, httpserver: HTTPServer) -> None:
        self.route(httpserver).respond_with_json(fixture("vast", "bundles_partial.json"))
        offers = await adapter.fetch_offers()
        assert [offer.name for offer in offers] == ["2x RTX 4090 #12873411"]
        assert adapter.skipped == [
            "item 1: missing field 'dph_total'",
            "item 2: num_gpus should be a number, got 'one'",
            "item 3: unknown GPU name 'Voodoo5 6000'",
        ]

    async def test_it_reports_a_body_without_offers_as_a_bad_response(self, adapter: VastAdapter, httpserver: HTTPServer) -> None:
        self.route(httpserver).respond_with_json({"success": False, "msg": "bad query"})
        error = await failure(adapter)
        assert (error.kind, error.detail) == (FailureKind.BAD_RESPONSE, "missing field 'offers'")
