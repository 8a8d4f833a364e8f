"""AWS: the Price List Query API, `GetProducts` (POST / on api.pricing.us-east-1.amazonaws.com,
JSON 1.1 protocol, X-Amz-Target AWSPriceListService.GetProducts), signed with Signature V4.

One query per GPU instance type below, with the filters gpuhunt applies to the bulk price file
(Linux, shared tenancy, no pre-installed software, capacity "Used", on-demand market); pages
follow `NextToken`. Each `PriceList` entry is a JSON string holding one product (per region) and
its terms; the on-demand hourly price is the one price dimension of `terms.OnDemand`.

The price list has no GPU model or capacity: GPU model, count and memory come from the table
(EC2's `DescribeInstanceTypes` GpuInfo, as in SkyPilot's catalog); a listed price means the type
is sold in that region, so offers are "available". Spot prices need EC2's per-region
`DescribeSpotPriceHistory` and are not fetched here: spot_price stays empty.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx

from providers.adapters.base import AdapterError, FailureKind, OfferData, ProviderAdapter
from providers.adapters.http import (
    MAX_PAGES,
    BadItem,
    collect,
    decimal_value,
    field,
    gather_limited,
    int_value,
    listing,
    optional_str,
    request_json,
    typed,
)
from providers.gpu_names import canonical_gpu
from providers.models import Availability

SIGNING_REGION = "us-east-1"
SERVICE = "pricing"
TARGET = "AWSPriceListService.GetProducts"


@dataclass(frozen=True)
class GpuInfo:
    gpu: str
    count: int
    memory_gb: int  # per GPU


INSTANCE_TYPES: dict[str, GpuInfo] = {
    "p6-b200.48xlarge": GpuInfo("B200", 8, 180),
    "p5en.48xlarge": GpuInfo("H200", 8, 141),
    "p5e.48xlarge": GpuInfo("H200", 8, 141),
    "p5.48xlarge": GpuInfo("H100", 8, 80),
    "p5.4xlarge": GpuInfo("H100", 1, 80),
    "p4de.24xlarge": GpuInfo("A100", 8, 80),
    "p4d.24xlarge": GpuInfo("A100", 8, 40),
    "p3dn.24xlarge": GpuInfo("V100", 8, 32),
    "p3.2xlarge": GpuInfo("V100", 1, 16),
    "p3.8xlarge": GpuInfo("V100", 4, 16),
    "p3.16xlarge": GpuInfo("V100", 8, 16),
    "g6e.xlarge": GpuInfo("L40S", 1, 48),
    "g6e.12xlarge": GpuInfo("L40S", 4, 48),
    "g6e.48xlarge": GpuInfo("L40S", 8, 48),
    "g6.xlarge": GpuInfo("L4", 1, 24),
    "g6.12xlarge": GpuInfo("L4", 4, 24),
    "g6.48xlarge": GpuInfo("L4", 8, 24),
    "g5.xlarge": GpuInfo("A10G", 1, 24),
    "g5.12xlarge": GpuInfo("A10G", 4, 24),
    "g5.48xlarge": GpuInfo("A10G", 8, 24),
    "g4dn.xlarge": GpuInfo("T4", 1, 16),
    "g4dn.12xlarge": GpuInfo("T4", 4, 16),
}

FILTERS = {
    "operatingSystem": "Linux",
    "tenancy": "Shared",
    "preInstalledSw": "NA",
    "capacitystatus": "Used",
    "marketoption": "OnDemand",
}


def sign_v4(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    access_key: str,
    secret_key: str,
    region: str,
    service: str,
    now: datetime,
) -> dict[str, str]:
    """Headers to add for AWS Signature Version 4 (docs.aws.amazon.com/IAM/latest/UserGuide/
    create-signed-request.html): X-Amz-Date and Authorization. Signs host, x-amz-* and the given
    headers; the query string is sorted as the canonical form requires."""
    parts = urlsplit(url)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    signed = {key.lower(): " ".join(value.split()) for key, value in headers.items()}
    signed["host"] = parts.netloc
    signed["x-amz-date"] = amz_date
    names = sorted(signed)
    query = "&".join(sorted(parts.query.split("&"))) if parts.query else ""
    canonical = "\n".join(
        [method, parts.path or "/", query, "".join(f"{name}:{signed[name]}\n" for name in names), ";".join(names), hashlib.sha256(body).hexdigest()]
    )
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{secret_key}".encode()
    for step in (day, region, service, "aws4_request"):
        key = hmac.new(key, step.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return {
        "X-Amz-Date": amz_date,
        "Authorization": f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={';'.join(names)}, Signature={signature}",
    }


class AwsAdapter(ProviderAdapter):
    slug = "aws"
    display_name = "AWS"
    default_api_base = "https://api.pricing.us-east-1.amazonaws.com"
    credential_names = ("access_key_id", "secret_access_key")

    async def fetch_offers(self) -> list[OfferData]:
        # Fail before any call when keys are missing: a clear AUTH error, not an AWS 400.
        self.credential("access_key_id"), self.credential("secret_access_key")
        pages = await gather_limited(self._products(instance_type) for instance_type in INSTANCE_TYPES)
        return collect(self, [entry for page in pages for entry in page], self._offers)

    async def _products(self, instance_type: str) -> list[Any]:
        filters = [{"Type": "TERM_MATCH", "Field": name, "Value": value} for name, value in {"instanceType": instance_type, **FILTERS}.items()]
        request: dict[str, Any] = {"ServiceCode": "AmazonEC2", "Filters": filters, "FormatVersion": "aws_v1", "MaxResults": 100}
        entries: list[Any] = []
        for _ in range(MAX_PAGES):
            body = await self._call(request)
            entries.extend(listing(self, body, "PriceList"))
            token = body.get("NextToken")
            if not token:
                return entries
            request = {**request, "NextToken": token}
        raise self.error(FailureKind.BAD_RESPONSE, f"more than {MAX_PAGES} pages of prices for {instance_type}")

    async def _call(self, request: dict[str, Any]) -> Any:
        url = f"{self.api_base}/"
        body = json.dumps(request, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": TARGET}
        token = self.optional_credential("session_token")
        if token:
            headers["X-Amz-Security-Token"] = token
        headers |= sign_v4(
            "POST",
            url,
            headers,
            body,
            access_key=self.credential("access_key_id"),
            secret_key=self.credential("secret_access_key"),
            region=SIGNING_REGION,
            service=SERVICE,
            now=datetime.now(UTC),
        )
        return await request_json(self, "POST", url, content=body, headers=headers, classify=self._aws_error)

    def _aws_error(self, response: httpx.Response) -> AdapterError | None:
        """AWS's JSON protocol answers throttling and signature problems with HTTP 400 and a typed
        body (`__type`: "...#ThrottlingException"); the status alone would call them bad requests."""
        try:
            kind_name = str(response.json().get("__type", "")).rsplit("#", 1)[-1]
        except (ValueError, AttributeError):
            return None
        if kind_name in ("ThrottlingException", "TooManyRequestsException"):
            return self.error(FailureKind.RATE_LIMITED, f"HTTP {response.status_code} {kind_name}")
        if kind_name in ("UnrecognizedClientException", "InvalidSignatureException", "AccessDeniedException", "ExpiredTokenException"):
            return self.error(FailureKind.AUTH, f"HTTP {response.status_code} {kind_name}")
        return None

    def _offers(self, entry: Any) -> Iterator[OfferData]:
        if not isinstance(entry, str):
            raise BadItem("PriceList entries should be JSON strings")
        try:
            product = json.loads(entry)
        except ValueError:
            raise BadItem("PriceList entry is not valid JSON") from None
        attributes = field(product, "product.attributes")
        instance_type = typed(attributes, "instanceType", str)
        info = INSTANCE_TYPES.get(instance_type)
        if info is None:
            raise BadItem(f"instance type {instance_type!r} was not asked for")
        price = _on_demand_price(field(product, "terms.OnDemand"))
        if not price:  # AWS lists $0 for types it no longer sells in a region
            return
        gpu_name, memory = canonical_gpu(info.gpu, info.memory_gb)
        yield OfferData(
            provider=self.slug,
            name=instance_type,
            gpu_type=gpu_name,
            gpu_type_raw=info.gpu,
            gpu_count=info.count,
            gpu_memory_gb=memory,
            price_per_hour=price,
            region=typed(attributes, "regionCode", str),
            availability_status=Availability.AVAILABLE,
            vcpus=int_value(field(attributes, "vcpu"), "vcpu"),
            ram_gb=_gib(optional_str(attributes, "memory")),
        )


def _on_demand_price(terms: Any) -> Decimal:
    """The hourly USD price of the single on-demand term: {term: {priceDimensions: {dim: {unit, pricePerUnit}}}}."""
    if not isinstance(terms, dict) or len(terms) != 1:
        raise BadItem("terms.OnDemand should hold exactly one term")
    dimensions = field(next(iter(terms.values())), "priceDimensions")
    if not isinstance(dimensions, dict) or len(dimensions) != 1:
        raise BadItem("the on-demand term should have exactly one price dimension")
    dimension = next(iter(dimensions.values()))
    if typed(dimension, "unit", str) != "Hrs":
        raise BadItem(f"on-demand price unit {dimension['unit']!r} is not hours")
    return decimal_value(field(dimension, "pricePerUnit.USD"), "pricePerUnit.USD")


def _gib(memory: str) -> Decimal | None:
    """ "2048 GiB" -> 2048."""
    number, _, unit = memory.replace(",", "").partition(" ")
    if not number or unit != "GiB":
        return None
    return decimal_value(number, "memory")
