"""TensorDock: GET /api/v2/locations with a Bearer API key (dashboard.tensordock.com/api/docs,
100 requests a minute per organisation). No pagination.

Each location lists its GPU models with `max_count` (how many are free there now), a price per GPU
hour and per-unit prices for the vCPUs, RAM and storage a VM adds. TensorDock sells the GPU and the
rest separately, so GPUBROKER prices a standard shape per GPU (below, capped by the location's
`resources` maxima) and offers 1, 2, 4 and 8 GPUs where that many are free. A model with none
free is offered once, for one GPU, as unavailable, so its price stays visible.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from providers.adapters.base import OfferData, ProviderAdapter
from providers.adapters.http import BadItem, bearer, collect, decimal_value, field, int_value, listing, optional_int, optional_str, request_json, typed
from providers.gpu_names import canonical_gpu
from providers.models import Availability

GPU_COUNTS = (1, 2, 4, 8)
# The VM shape priced with each GPU: common ML defaults, since TensorDock leaves the choice open.
VCPUS_PER_GPU = 8
RAM_GB_PER_GPU = 32
STORAGE_GB = 100
# Two cards or fewer free at a location: the offer can go at any moment.
LIMITED_AT = 2


class TensorDockAdapter(ProviderAdapter):
    slug = "tensordock"
    display_name = "TensorDock"
    default_api_base = "https://dashboard.tensordock.com"
    credential_names = ("api_key",)

    async def fetch_offers(self) -> list[OfferData]:
        body = await request_json(self, "GET", f"{self.api_base}/api/v2/locations", headers=bearer(self.credential("api_key")))
        items = [(location, gpu) for location in listing(self, body, "data.locations") for gpu in _gpus(location)]
        return collect(self, items, self._offers)

    def _offers(self, item: tuple[Any, Any]) -> Iterator[OfferData]:
        location, gpu = item
        region = ", ".join(part for part in (optional_str(location, "city"), optional_str(location, "stateprovince"), optional_str(location, "country")) if part)
        if not region:
            raise BadItem("location has no city, state or country")
        v0_name = typed(gpu, "v0Name", str)
        display = typed(gpu, "displayName", str)
        gpu_name, memory = canonical_gpu(display, None)
        free = int_value(field(gpu, "max_count"), "max_count")
        per_gpu = decimal_value(field(gpu, "price_per_hr"), "price_per_hr")
        if not per_gpu:
            raise BadItem("price_per_hr is zero")
        per_vcpu = decimal_value(field(gpu, "pricing.per_vcpu_hr"), "pricing.per_vcpu_hr")
        per_ram_gb = decimal_value(field(gpu, "pricing.per_gb_ram_hr"), "pricing.per_gb_ram_hr")
        per_storage_gb = decimal_value(field(gpu, "pricing.per_gb_storage_hr"), "pricing.per_gb_storage_hr")
        tier = field(location, "tier", None)
        counts = [count for count in GPU_COUNTS if count <= free] or [1]
        for count in counts:
            vcpus = _capped(VCPUS_PER_GPU * count, optional_int(gpu, "resources.max_vcpus"))
            ram_gb = _capped(RAM_GB_PER_GPU * count, optional_int(gpu, "resources.max_ram_gb"))
            storage_gb = _capped(STORAGE_GB, optional_int(gpu, "resources.max_storage_gb"))
            price = per_gpu * count + per_vcpu * vcpus + per_ram_gb * ram_gb + per_storage_gb * storage_gb
            yield OfferData(
                provider=self.slug,
                name=f"{count}x {v0_name}",
                gpu_type=gpu_name,
                gpu_type_raw=display,
                gpu_count=count,
                gpu_memory_gb=memory,
                price_per_hour=price,
                region=region,
                availability_status=(
                    Availability.UNAVAILABLE if free == 0 else Availability.LIMITED if free <= LIMITED_AT else Availability.AVAILABLE
                ),
                vcpus=vcpus,
                ram_gb=Decimal(ram_gb),
                storage_gb=storage_gb,
                compliance_tags=(f"tier-{tier}",) if isinstance(tier, int) and not isinstance(tier, bool) else (),
            )


def _gpus(location: Any) -> list[Any]:
    gpus = location.get("gpus") if isinstance(location, dict) else None
    # A location without a readable GPU list still counts as one bad item, not a silent gap.
    return gpus if isinstance(gpus, list) else [None]


def _capped(wanted: int, maximum: int | None) -> int:
    return wanted if maximum is None else min(wanted, maximum)
