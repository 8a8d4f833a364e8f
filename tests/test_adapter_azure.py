"""Azure's public Retail Prices API, paged by NextPageLink, folded into one offer per size and region."""

from __future__ import annotations

import json
from decimal import Decimal

from pytest_httpserver import HTTPServer
from pytest_httpserver.httpserver import RequestHandler
from werkzeug import Request, Response

from providers.adapters.azure import PRICE_FILTER, AzureAdapter
from providers.adapters.base import FailureKind, OfferData
from tests.adapter_contract import AdapterContract, failure, fixture, received


def two_pages(httpserver: HTTPServer) -> None:
    first = fixture("azure", "prices_page1.json")
    first["NextPageLink"] = httpserver.url_for("/api/retail/prices") + "?$filter=serviceName%20eq%20%27Virtual%20Machines%27&$skip=1000"

    def answer(request: Request) -> Response:
        page = fixture("azure", "prices_page2.json") if request.args.get("$skip") == "1000" else first
        return Response(json.dumps(page), content_type="application/json")

    httpserver.expect_request("/api/retail/prices", method="GET").respond_with_handler(answer)


class TestAzure(AdapterContract):
    adapter_class = AzureAdapter
    credentials: dict[str, str] = {}

    def route(self, httpserver: HTTPServer) -> RequestHandler:
        return httpserver.expect_request("/api/retail/prices", method="GET")

    async def test_it_folds_on_demand_and_spot_meters_into_offers(self, adapter: AzureAdapter, httpserver: HTTPServer) -> None:
        two_pages(httpserver)
        offers = await adapter.fetch_offers()
        assert [(offer.name, offer.region, offer.price_per_hour, offer.spot_price) for offer in offers] == [
            ("Standard_NC24ads_A100_v4", "eastus", Decimal("3.673"), Decimal("0.7346")),  # Windows and Low Priority left out
            ("Standard_NC4as_T4_v3", "westus2", Decimal("0.526"), Decimal("0.1052")),  # DevTest price left out
            ("Standard_ND96isr_H100_v5", "eastus", Decimal("98.32"), None),  # a $0 spot meter is no spot price
            ("Standard_ND96isr_H100_v5", "westeurope", Decimal("118.4"), Decimal("35.52")),
        ]
        assert offers[0] == OfferData(
            provider="azure",
            name="Standard_NC24ads_A100_v4",
            gpu_type="A100 80GB",
            gpu_type_raw="A100",
            gpu_count=1,
            gpu_memory_gb=80,
            price_per_hour=Decimal("3.673"),
            spot_price=Decimal("0.7346"),
            region="eastus",
            availability_status="available",
            vcpus=24,
            ram_gb=Decimal("220"),
        )
        assert (offers[2].gpu_type, offers[2].gpu_count, offers[2].vcpus) == ("H100 80GB", 8, 96)

    async def test_it_filters_gpu_sizes_and_follows_next_page_link(self, adapter: AzureAdapter, httpserver: HTTPServer) -> None:
        two_pages(httpserver)
        await adapter.fetch_offers()
        first, second = received(httpserver)
        assert first.args["$filter"] == PRICE_FILTER
        assert PRICE_FILTER.startswith("serviceName eq 'Virtual Machines' and priceType eq 'Consumption' and (armSkuName eq ")
        assert "armSkuName eq 'Standard_ND96isr_H100_v5'" in PRICE_FILTER
        assert second.args["$skip"] == "1000"
        assert "Authorization" not in first.headers  # a public API: no key

    async def test_it_refuses_a_next_page_link_to_another_host(self, adapter: AzureAdapter, httpserver: HTTPServer) -> None:
        page = fixture("azure", "prices_page1.json")
        page["NextPageLink"] = "https://prices.example.net/api/retail/prices?$skip=1000"
        self.route(httpserver).respond_with_json(page)
        error = await failure(adapter)
        assert (error.kind, error.detail) == (FailureKind.BAD_RESPONSE, "NextPageLink points away from the price API")

    async def test_it_stops_a_provider_that_pages_forever(self, adapter: AzureAdapter, httpserver: HTTPServer) -> None:
        page = fixture("azure", "prices_page1.json")
        page["NextPageLink"] = httpserver.url_for("/api/retail/prices") + "?$skip=1000"
        self.route(httpserver).respond_with_json(page)
        error = await failure(adapter)
        assert (error.kind, error.detail) == (FailureKind.BAD_RESPONSE, "more than 100 pages of prices")

    async def test_it_skips_unreadable_price_items_and_keeps_the_rest(self, adapter: AzureAdapter, httpserver: HTTPServer) -> None:
        self.route(httpserver).respond_with_json(fixture("azure", "prices_partial.json"))
        offers = await adapter.fetch_offers()
        assert [(offer.name, offer.price_per_hour) for offer in offers] == [("Standard_NC24ads_A100_v4", Decimal("3.673"))]
        assert adapter.skipped == ["item 1: missing field 'retailPrice'", "item 2: field 'armRegionName' should be str, got int"]
