"""Lambda Cloud: GET /api/v1/instance-types with a Bearer API key (Lambda's OpenAPI, SkyPilot's
fetcher). No pagination; the answer is `{"data": {<type name>: {...}}}`.

Availability is `regions_with_capacity_available`: one offer per (instance type, region listed),
all available; a type listed nowhere is sold out and yields no offer. The GPU model, count and
memory are read from `description` ("8x A100 (80 GB SXM4)") with gpuhunt's pattern. Prices are
whole-instance cents per hour. Lambda sells no spot capacity.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from providers.adapters.base import FailureKind, OfferData, ProviderAdapter
from providers.adapters.http import BadItem, bearer, collect, decimal_value, field, optional_decimal, optional_int, request_json, typed
from providers.gpu_names import canonical_gpu
from providers.models import Availability

DESCRIPTION = re.compile(r"^(\d+)x (?:Tesla )?(.+) \((\d+) GB")


class LambdaAdapter(ProviderAdapter):
    slug = "lambda"
    display_name = "Lambda"
    default_api_base = "https://cloud.lambda.ai"
    credential_names = ("api_key",)

    async def fetch_offers(self) -> list[OfferData]:
        body = await request_json(self, "GET", f"{self.api_base}/api/v1/instance-types", headers=bearer(self.credential("api_key")))
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            raise self.error(FailureKind.BAD_RESPONSE, "field 'data' should be an object of instance types")
        return collect(self, data.values(), self._offers)

    def _offers(self, entry: Any) -> Iterator[OfferData]:
        instance = field(entry, "instance_type")
        name = typed(instance, "name", str)
        description = typed(instance, "description", str)
        match = DESCRIPTION.match(description)
        if not match:
            # CPU-only types ("1x CPU") are not GPU offers; anything else is a format we cannot read.
            raise BadItem(f"description {description!r} does not name GPUs")
        count, raw_gpu, memory_gb = int(match.group(1)), match.group(2), int(match.group(3))
        gpu_name, memory = canonical_gpu(raw_gpu, memory_gb)
        price = decimal_value(field(instance, "price_cents_per_hour"), "price_cents_per_hour") / 100
        if not price:
            raise BadItem("price_cents_per_hour is zero")
        regions = field(entry, "regions_with_capacity_available")
        if not isinstance(regions, list):
            raise BadItem("regions_with_capacity_available should be a list")
        for region in regions:
            yield OfferData(
                provider=self.slug,
                name=name,
                gpu_type=gpu_name,
                gpu_type_raw=raw_gpu,
                gpu_count=count,
                gpu_memory_gb=memory,
                price_per_hour=price,
                region=typed(region, "name", str),
                availability_status=Availability.AVAILABLE,
                vcpus=optional_int(instance, "specs.vcpus"),
                ram_gb=optional_decimal(instance, "specs.memory_gib"),
                storage_gb=optional_int(instance, "specs.storage_gib"),
            )
