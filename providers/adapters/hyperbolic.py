"""Hyperbolic: the GPU marketplace, POST /v1/marketplace with `{"filters": {}}` and a Bearer key
(Hyperbolic's AgentKit `get_available_gpus` and third-party clients; no official reference).

Each instance is one node. A node rents out its GPUs one by one at `pricing.price.amount` cents per
GPU hour; GPUBROKER offers the GPUs free on the node now (gpus_total - gpus_reserved) as one offer.
A reserved node or one with none free is listed for all its GPUs as unavailable. The node's CPU,
RAM and storage figures are whole-node totals, not what a renter gets, so they are not copied.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from providers.adapters.base import OfferData, ProviderAdapter
from providers.adapters.http import BadItem, bearer, collect, decimal_value, field, int_value, listing, optional_decimal, optional_str, request_json, typed
from providers.gpu_names import canonical_gpu
from providers.models import Availability


class HyperbolicAdapter(ProviderAdapter):
    slug = "hyperbolic"
    display_name = "Hyperbolic"
    default_api_base = "https://api.hyperbolic.xyz"
    credential_names = ("api_key",)

    async def fetch_offers(self) -> list[OfferData]:
        body = await request_json(self, "POST", f"{self.api_base}/v1/marketplace", json={"filters": {}}, headers=bearer(self.credential("api_key")))
        return collect(self, listing(self, body, "instances"), self._offers)

    def _offers(self, node: Any) -> Iterator[OfferData]:
        node_id = typed(node, "id", str)
        gpus = field(node, "hardware.gpus")
        if not isinstance(gpus, list) or not gpus:
            raise BadItem("hardware.gpus should be a non-empty list")
        model = typed(gpus[0], "model", str)
        ram_mb = optional_decimal(gpus[0], "ram")  # MiB, e.g. 81559 for an H100 80GB
        gpu_name, memory = canonical_gpu(model, float(ram_mb / 1024) if ram_mb else None)
        total = int_value(field(node, "gpus_total"), "gpus_total")
        free = total - int_value(field(node, "gpus_reserved", 0), "gpus_reserved")
        if total < 1:
            raise BadItem(f"gpus_total should be at least 1, got {total}")
        available = field(node, "reserved", False) is False and free > 0
        per_gpu = decimal_value(field(node, "pricing.price.amount"), "pricing.price.amount") / 100
        if not per_gpu:
            raise BadItem("pricing.price.amount is zero")
        count = free if available else total
        yield OfferData(
            provider=self.slug,
            name=node_id,
            gpu_type=gpu_name,
            gpu_type_raw=model,
            gpu_count=count,
            gpu_memory_gb=memory,
            price_per_hour=per_gpu * count,
            region=optional_str(node, "location.region"),
            availability_status=Availability.AVAILABLE if available else Availability.UNAVAILABLE,
        )

