"""AWS's Price List Query API (GetProducts, Signature V4), one query per GPU instance type."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pytest_httpserver import HTTPServer
from pytest_httpserver.httpserver import RequestHandler
from werkzeug import Request, Response

from providers.adapters.aws import INSTANCE_TYPES, AwsAdapter, sign_v4
from providers.adapters.base import FailureKind, OfferData
from tests.adapter_contract import AdapterContract, failure, fixture, received

ACCESS_KEY = "AKIAGPUBROKERTEST01"
SECRET_KEY = "wJalrXUtnFEMI/GPUBROKER/SECRETtestKEY"


def price_list(pages: dict[str, list[Any]]) -> Any:
    """Answers GetProducts from `pages` by the instanceType filter and NextToken; others are empty."""

    def answer(request: Request) -> Response:
        body = json.loads(request.get_data())
        instance_type = next(f["Value"] for f in body["Filters"] if f["Field"] == "instanceType")
        answers = pages.get(instance_type, [{"FormatVersion": "aws_v1", "PriceList": []}])
        page = 1 if body.get("NextToken") else 0
        return Response(json.dumps(answers[page]), content_type="application/x-amz-json-1.1")

    return answer


class TestAws(AdapterContract):
    adapter_class = AwsAdapter
    credentials = {"access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY}

    def route(self, httpserver: HTTPServer) -> RequestHandler:
        return httpserver.expect_request("/", method="POST")

    async def test_it_turns_priced_products_into_offers(self, adapter: AwsAdapter, httpserver: HTTPServer) -> None:
        self.route(httpserver).respond_with_handler(price_list(fixture("aws", "products.json")))
        offers = sorted(await adapter.fetch_offers(), key=lambda offer: (offer.name, offer.region))
        assert [(offer.name, offer.region, offer.price_per_hour) for offer in offers] == [
            ("g5.xlarge", "us-east-1", Decimal("1.0060000000")),
            ("p4d.24xlarge", "eu-west-1", Decimal("24.1550000000")),
            ("p5.48xlarge", "us-east-1", Decimal("55.0400000000")),
            ("p5.48xlarge", "us-west-2", Decimal("55.0400000000")),  # from the second page; Jakarta's $0 left out
        ]
        assert offers[2] == OfferData(
            provider="aws",
            name="p5.48xlarge",
            gpu_type="H100 80GB",
            gpu_type_raw="H100",
            gpu_count=8,
            gpu_memory_gb=80,
            price_per_hour=Decimal("55.04"),
            region="us-east-1",
            availability_status="available",
            vcpus=192,
            ram_gb=Decimal("2048"),
        )
        assert (offers[1].gpu_type, offers[1].ram_gb) == ("A100 40GB", Decimal("1152"))
        assert (offers[0].gpu_type, offers[0].gpu_count, offers[0].vcpus) == ("A10G 24GB", 1, 4)

    async def test_it_signs_one_get_products_query_per_instance_type(self, adapter: AwsAdapter, httpserver: HTTPServer) -> None:
        self.route(httpserver).respond_with_handler(price_list(fixture("aws", "products.json")))
        await adapter.fetch_offers()
        requests = received(httpserver)
        assert len(requests) == len(INSTANCE_TYPES) + 1  # p5.48xlarge has a second page
        request = next(r for r in requests if b"p5-page-2" in r.get_data())
        body = json.loads(request.get_data())
        assert body["ServiceCode"] == "AmazonEC2" and body["FormatVersion"] == "aws_v1" and body["MaxResults"] == 100
        assert {f["Field"]: (f["Type"], f["Value"]) for f in body["Filters"]} == {
            "instanceType": ("TERM_MATCH", "p5.48xlarge"),
            "operatingSystem": ("TERM_MATCH", "Linux"),
            "tenancy": ("TERM_MATCH", "Shared"),
            "preInstalledSw": ("TERM_MATCH", "NA"),
            "capacitystatus": ("TERM_MATCH", "Used"),
            "marketoption": ("TERM_MATCH", "OnDemand"),
        }
        assert request.headers["X-Amz-Target"] == "AWSPriceListService.GetProducts"
        assert request.headers["Content-Type"] == "application/x-amz-json-1.1"
        day = request.headers["X-Amz-Date"][:8]
        assert request.headers["Authorization"].startswith(
            f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{day}/us-east-1/pricing/aws4_request, "
            "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature="
        )
        # The server can check the signature: recomputing it from what arrived gives the same.
        resigned = sign_v4(
            "POST",
            httpserver.url_for("/"),
            {"Content-Type": request.headers["Content-Type"], "X-Amz-Target": request.headers["X-Amz-Target"]},
            request.get_data(),
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            region="us-east-1",
            service="pricing",
            now=datetime.strptime(request.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC),
        )
        assert resigned["Authorization"] == request.headers["Authorization"]

    def test_it_signs_as_the_aws_test_suite_expects(self) -> None:
        # AWS Signature V4 test suite, "get-vanilla".
        headers = sign_v4(
            "GET",
            "https://example.amazonaws.com/",
            {},
            b"",
            access_key="AKIDEXAMPLE",
            secret_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            region="us-east-1",
            service="service",
            now=datetime(2015, 8, 30, 12, 36, tzinfo=UTC),
        )
        assert headers == {
            "X-Amz-Date": "20150830T123600Z",
            "Authorization": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        }

    async def test_it_skips_unreadable_products_and_keeps_the_rest(self, adapter: AwsAdapter, httpserver: HTTPServer) -> None:
        self.route(httpserver).respond_with_handler(price_list(fixture("aws", "products_partial.json")))
        offers = await adapter.fetch_offers()
        assert [(offer.name, offer.region) for offer in offers] == [("g5.xlarge", "us-east-1")]
        assert adapter.skipped == [
            "item 1: missing field 'regionCode'",
            "item 2: pricePerUnit.USD should be a number, got 'n/a'",
            "item 3: PriceList entry is not valid JSON",
        ]

    async def test_it_reads_throttling_in_a_400_as_a_rate_limit(self, adapter: AwsAdapter, httpserver: HTTPServer) -> None:
        self.route(httpserver).respond_with_json({"__type": "com.amazonaws.awspricing#ThrottlingException", "message": "Rate exceeded"}, status=400)
        error = await failure(adapter)
        assert (error.kind, error.detail) == (FailureKind.RATE_LIMITED, "HTTP 400 ThrottlingException")

    async def test_it_reads_a_bad_signature_as_auth(self, adapter: AwsAdapter, httpserver: HTTPServer) -> None:
        self.route(httpserver).respond_with_json({"__type": "InvalidSignatureException", "message": "The request signature we calculated does not match"}, status=400)
        error = await failure(adapter)
        assert error.kind is FailureKind.AUTH

    async def test_it_needs_both_keys_before_calling(self, client: Any, httpserver: HTTPServer) -> None:
        error = await failure(AwsAdapter(client, {"access_key_id": ACCESS_KEY}, httpserver.url_for("/")))
        assert (error.kind, error.detail) == (FailureKind.AUTH, "credential 'secret_access_key' is not configured")
        assert received(httpserver) == []
