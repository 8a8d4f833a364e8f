"""Paperspace: table prices, with availability asked per machine type."""

from __future__ import annotations

import json
from decimal import Decimal

from pytest_httpserver import HTTPServer
from pytest_httpserver.httpserver import RequestHandler
from werkzeug import Request, Response

from providers.adapters.base import OfferData
from providers.adapters.paperspace import MACHINE_TYPES, PaperspaceAdapter
from tests.adapter_contract import AdapterContract, received

KEY = "ps_SECRET_d41d8cd98f00b204"
SOLD_OUT = {"H100x8", "A100-80Gx8"}


def availability(broken: frozenset[str] = frozenset()) -> object:
    def answer(request: Request) -> Response:
        machine = request.args["machineType"]
        body = {"availability": "yes"} if machine in broken else {"available": machine not in SOLD_OUT}
        return Response(json.dumps(body), content_type="application/json")

    return answer


class TestPaperspace(AdapterContract):
    adapter_class = PaperspaceAdapter
    credentials = {"api_key": KEY}

    def route(self, httpserver: HTTPServer) -> RequestHandler:
        return httpserver.expect_request("/v1/machine-availability", method="GET")

    async def test_it_offers_every_machine_type_with_its_availability(self, adapter: PaperspaceAdapter, httpserver: HTTPServer) -> None:
        self.route(httpserver).respond_with_handler(availability())
        offers = await adapter.fetch_offers()
        assert len(offers) == len(MACHINE_TYPES) == 14
        assert {offer.name for offer in offers if offer.availability_status == "unavailable"} == SOLD_OUT
        assert offers[0] == OfferData(
            provider="paperspace",
            name="H100",
            gpu_type="H100 80GB",
            gpu_type_raw="H100",
            gpu_count=1,
            gpu_memory_gb=80,
            price_per_hour=Decimal("5.95"),
            region="East Coast (NY2)",
            availability_status="available",
            vcpus=15,
            ram_gb=Decimal("80"),
        )
        by_name = {offer.name: offer for offer in offers}
        assert (by_name["A4000x4"].gpu_type, by_name["A4000x4"].gpu_count, by_name["A4000x4"].price_per_hour) == ("RTX A4000 16GB", 4, Decimal("3.04"))
        assert by_name["GPU+"].gpu_type == "M4000 8GB"

    async def test_it_asks_once_per_machine_type_with_the_key(self, adapter: PaperspaceAdapter, httpserver: HTTPServer) -> None:
        self.route(httpserver).respond_with_handler(availability())
        await adapter.fetch_offers()
        requests = received(httpserver)
        assert sorted(request.args["machineType"] for request in requests) == sorted(machine.name for machine in MACHINE_TYPES)
        assert {request.args["region"] for request in requests} == {"East Coast (NY2)"}
        assert {request.headers["Authorization"] for request in requests} == {f"Bearer {KEY}"}

    async def test_it_skips_unreadable_answers_and_keeps_the_rest(self, adapter: PaperspaceAdapter, httpserver: HTTPServer) -> None:
        self.route(httpserver).respond_with_handler(availability(frozenset({"V100", "P4000"})))
        offers = await adapter.fetch_offers()
        assert len(offers) == 12
        assert sorted(adapter.skipped) == [
            "item 11: P4000: 'available' should be true or false",
            "item 7: V100: 'available' should be true or false",
        ]
