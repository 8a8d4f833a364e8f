"""Lambda's instance types, one offer per region with capacity."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pytest_httpserver import HTTPServer
from pytest_httpserver.httpserver import RequestHandler

from providers.adapters.base import FailureKind, OfferData
from providers.adapters.lambda_cloud import LambdaAdapter
from tests.adapter_contract import AdapterContract, failure, fixture, received

KEY = "secret_lambda_7c1e0b4d2a"


class TestLambda(AdapterContract):
    adapter_class = LambdaAdapter
    credentials = {"api_key": KEY}

    def route(self, httpserver: HTTPServer) -> RequestHandler:
        return httpserver.expect_request("/api/v1/instance-types", method="GET")

    async def test_it_offers_each_instance_type_where_it_has_capacity(self, adapter: LambdaAdapter, httpserver: HTTPServer) -> None:
        self.route(httpserver).respond_with_json(fixture("lambda", "instance_types.json"))
        offers = await adapter.fetch_offers()
        assert [(offer.name, offer.region) for offer in offers] == [
            ("gpu_8x_h100_sxm5", "us-east-1"),
            ("gpu_8x_h100_sxm5", "us-west-3"),
            ("gpu_1x_a10", "us-west-1"),
            ("gpu_8x_v100", "us-south-1"),
        ]  # gpu_1x_gh200 has no region with capacity
        assert offers[0] == OfferData(
            provider="lambda",
            name="gpu_8x_h100_sxm5",
            gpu_type="H100 80GB",
            gpu_type_raw="H100",
            gpu_count=8,
            gpu_memory_gb=80,
            price_per_hour=Decimal("23.92"),
            region="us-east-1",
            availability_status="available",
            vcpus=208,
            ram_gb=Decimal("1800"),
            storage_gb=22528,
        )
        assert (offers[2].gpu_type, offers[2].gpu_count, offers[2].price_per_hour) == ("A10 24GB", 1, Decimal("0.75"))
        assert (offers[3].gpu_type, offers[3].gpu_type_raw, offers[3].price_per_hour) == ("V100 16GB", "V100", Decimal("4.4"))

    async def test_it_sends_the_key_as_a_bearer_token(self, adapter: LambdaAdapter, httpserver: HTTPServer) -> None:
        self.route(httpserver).respond_with_json(fixture("lambda", "instance_types.json"))
        await adapter.fetch_offers()
        (request,) = received(httpserver)
        assert request.headers["Authorization"] == f"Bearer {KEY}"
        assert request.query_string == b""

    async def test_it_skips_unreadable_types_and_keeps_the_rest(self, adapter: LambdaAdapter, httpserver: HTTPServer) -> None:
        self.route(httpserver).respond_with_json(fixture("lambda", "instance_types_partial.json"))
        offers = await adapter.fetch_offers()
        assert [(offer.name, offer.price_per_hour) for offer in offers] == [("gpu_1x_a10", Decimal("0.75"))]
        assert adapter.skipped == [
            "item 1: price_cents_per_hour should be a number, got 'one sixty'",
            "item 2: missing field 'description'",
        ]

    async def test_it_needs_a_key_before_calling(self, client: Any, httpserver: HTTPServer) -> None:
        error = await failure(LambdaAdapter(client, {}, httpserver.url_for("/")))
        assert (error.kind, error.detail) == (FailureKind.AUTH, "credential 'api_key' is not configured")
        assert received(httpserver) == []

    async def test_it_reports_lambdas_error_body_as_a_bad_response(self, adapter: LambdaAdapter, httpserver: HTTPServer) -> None:
        self.route(httpserver).respond_with_json({"error": {"code": "global/invalid-parameters", "message": "Invalid request", "suggestion": "Check"}}, status=400)
        error = await failure(adapter)
        assert (error.kind, error.detail) == (FailureKind.BAD_RESPONSE, "HTTP 400 from /api/v1/instance-types")
