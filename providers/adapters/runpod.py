"""RunPod: GraphQL at POST /graphql (the queries gpuhunt runs against api.runpod.io).

Two steps, as RunPod's API requires: the catalog query lists the data centres (secure cloud) and
country codes (community cloud); then one `gpuTypes { lowestPrice(input) }` query per location and
GPU count gives per-GPU prices and stock there. One offer per (GPU type, count, location, tier).
The price queries are public; an API key, when configured, is sent as a Bearer token.

Stock: `stockStatus` High/Medium -> available, Low -> limited; null means the type is not offered
at that location and count, so no offer (as gpuhunt does). All `*Price` fields are per GPU per
hour; 0 or null means the tier is not sold, so no offer either.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from providers.adapters.base import FailureKind, OfferData, ProviderAdapter
from providers.adapters.http import (
    BadItem,
    bearer,
    collect,
    decimal_value,
    field,
    gather_limited,
    int_value,
    listing,
    optional_decimal,
    optional_int,
    request_json,
    typed,
)
from providers.gpu_names import canonical_gpu
from providers.models import Availability

CATALOG_QUERY = """query GpuTypes {
  countryCodes
  dataCenters { id name listed }
  gpuTypes { id displayName memoryInGb maxGpuCount }
}"""

PRICES_QUERY = """query GpuPrices($gpuTypesInput: GpuTypeFilter, $lowestPriceInput: GpuLowestPriceInput) {
  gpuTypes(input: $gpuTypesInput) {
    id displayName memoryInGb
    securePrice communityPrice secureSpotPrice communitySpotPrice
    lowestPrice(input: $lowestPriceInput) {
      minimumBidPrice uninterruptablePrice minVcpu minMemory stockStatus compliance countryCode
    }
  }
}"""

# Pod sizes priced per location; a type that cannot be rented at a size answers stockStatus null.
GPU_COUNTS = (1, 2, 4, 8)
# gpuhunt's floor: hosts with an older CUDA driver cannot run current images.
MIN_CUDA_VERSION = "12.8"
STOCK = {"High": Availability.AVAILABLE, "Medium": Availability.AVAILABLE, "Low": Availability.LIMITED}


class RunPodAdapter(ProviderAdapter):
    slug = "runpod"
    display_name = "RunPod"
    default_api_base = "https://api.runpod.io"

    async def _graphql(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        key = self.optional_credential("api_key")
        body = await request_json(
            self, "POST", f"{self.api_base}/graphql", json={"query": query, "variables": variables}, headers=bearer(key) if key else None
        )
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            errors = body.get("errors") if isinstance(body, dict) else None
            message = field(errors[0], "message", "") if isinstance(errors, list) and errors else ""
            raise self.error(FailureKind.BAD_RESPONSE, f"GraphQL answer without data: {str(message)[:200] or 'no message'}")
        return data

    async def fetch_offers(self) -> list[OfferData]:
        catalog = await self._graphql(CATALOG_QUERY, {})
        types = listing(self, catalog, "gpuTypes")
        data_centers = [dc["id"] for dc in listing(self, catalog, "dataCenters") if isinstance(dc, dict) and dc.get("listed") and dc.get("id")]
        countries = [code for code in listing(self, catalog, "countryCodes") if isinstance(code, str) and code]
        largest = max((t["maxGpuCount"] for t in types if isinstance(t, dict) and isinstance(t.get("maxGpuCount"), int)), default=1)
        queries = [
            (count, secure, location)
            for count in GPU_COUNTS
            if count <= largest
            for secure, locations in ((True, data_centers), (False, countries))
            for location in locations
        ]
        answers = await gather_limited(self._graphql(PRICES_QUERY, _price_variables(*query)) for query in queries)
        items = [
            (query, gpu_type)
            for query, answer in zip(queries, answers, strict=True)
            for gpu_type in listing(self, answer, "gpuTypes")
        ]
        return collect(self, items, self._offers)

    def _offers(self, item: tuple[tuple[int, bool, str], Any]) -> Iterator[OfferData]:
        (count, secure, location), gpu_type = item
        stock = field(gpu_type, "lowestPrice.stockStatus", None)
        if stock is None:
            return
        if stock not in STOCK:
            raise BadItem(f"unknown stockStatus {stock!r}")
        per_gpu = decimal_value(field(gpu_type, "securePrice" if secure else "communityPrice", 0), "price")
        if not per_gpu:
            return
        spot = decimal_value(field(gpu_type, "secureSpotPrice" if secure else "communitySpotPrice", 0), "spot price")
        gpu_id = typed(gpu_type, "id", str)
        display = typed(gpu_type, "displayName", str)
        gpu_name, memory = canonical_gpu(display, int_value(field(gpu_type, "memoryInGb"), "memoryInGb"))
        compliance = field(gpu_type, "lowestPrice.compliance", [])
        yield OfferData(
            provider=self.slug,
            name=f"{count}x {gpu_id} ({'secure' if secure else 'community'})",
            gpu_type=gpu_name,
            gpu_type_raw=display,
            gpu_count=count,
            gpu_memory_gb=memory,
            price_per_hour=per_gpu * count,
            spot_price=spot * count if spot else None,
            region=location,
            availability_status=STOCK[stock],
            vcpus=optional_int(gpu_type, "lowestPrice.minVcpu"),
            ram_gb=optional_decimal(gpu_type, "lowestPrice.minMemory"),
            # The shape of `compliance` is not documented; only a list of names is taken as tags.
            compliance_tags=tuple(tag for tag in compliance if isinstance(tag, str)) if isinstance(compliance, list) else (),
        )


def _price_variables(count: int, secure: bool, location: str) -> dict[str, Any]:
    where = {"dataCenterId": location} if secure else {"countryCode": location}
    return {
        "gpuTypesInput": {"cluster": False},
        "lowestPriceInput": {"gpuCount": count, "secureCloud": secure, "minCudaVersion": MIN_CUDA_VERSION, **where},
    }
