"""Vast.ai: offer search, POST /api/v0/bundles/ with a JSON filter body (as gpuhunt calls it).

Each offer ("ask") is one machine's free GPUs at one price, so one OfferData per offer, named by
its id. The filter is the SDK's default (verified, not external) plus gpuhunt's free-capacity
terms (rentable, not rented), ordered by Vast's own score; the API does not paginate, `limit`
bounds the answer. A key, when configured, goes as a Bearer token (vast.ai/developers/api).

Units (gpuhunt): `gpu_ram` MB per GPU, `cpu_ram` MB for the whole machine (this offer gets its
`cpu_cores_effective` share of it), `disk_space` GB, `dph_total` $/h all-in, `min_bid` the
interruptible floor in $/h.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from providers.adapters.base import OfferData, ProviderAdapter
from providers.adapters.http import (
    BadItem,
    bearer,
    collect,
    decimal_value,
    field,
    int_value,
    listing,
    optional_decimal,
    optional_int,
    optional_str,
    request_json,
    typed,
)
from providers.gpu_names import canonical_gpu
from providers.models import Availability

SEARCH_LIMIT = 1000
SEARCH = {
    "verified": {"eq": True},
    "external": {"eq": False},
    "rentable": {"eq": True},
    "rented": {"eq": False},
    "type": "on-demand",
    "order": [["score", "desc"]],
    "limit": SEARCH_LIMIT,
}


class VastAdapter(ProviderAdapter):
    slug = "vast"
    display_name = "Vast.ai"
    default_api_base = "https://console.vast.ai"

    async def fetch_offers(self) -> list[OfferData]:
        key = self.optional_credential("api_key")
        body = await request_json(self, "POST", f"{self.api_base}/api/v0/bundles/", json=SEARCH, headers=bearer(key) if key else None)
        return collect(self, listing(self, body, "offers"), self._offers)

    def _offers(self, offer: Any) -> Iterator[OfferData]:
        offer_id = int_value(field(offer, "id"), "id")
        raw_name = typed(offer, "gpu_name", str)
        count = int_value(field(offer, "num_gpus"), "num_gpus")
        if count < 1:
            raise BadItem(f"num_gpus should be at least 1, got {count}")
        gpu_name, memory = canonical_gpu(raw_name, float(decimal_value(field(offer, "gpu_ram"), "gpu_ram") / 1024))
        price = decimal_value(field(offer, "dph_total"), "dph_total")
        if not price:
            raise BadItem("dph_total is zero")
        min_bid = optional_decimal(offer, "min_bid")
        cores = optional_decimal(offer, "cpu_cores_effective")
        rentable = field(offer, "rentable", True) is True and field(offer, "rented", False) is False
        yield OfferData(
            provider=self.slug,
            name=f"{count}x {raw_name} #{offer_id}",
            gpu_type=gpu_name,
            gpu_type_raw=raw_name,
            gpu_count=count,
            gpu_memory_gb=memory,
            price_per_hour=price,
            spot_price=min_bid or None,
            region=optional_str(offer, "geolocation"),
            availability_status=Availability.AVAILABLE if rentable else Availability.UNAVAILABLE,
            vcpus=int(cores) if cores is not None else None,
            ram_gb=_ram_share(offer, cores),
            storage_gb=optional_int(offer, "disk_space"),
            compliance_tags=tuple(tag for tag in ("verified", "datacenter") if field(offer, tag, False) is True),
        )


def _ram_share(offer: Any, cores_effective: Decimal | None) -> Decimal | None:
    """This offer's part of the machine's RAM in GB (gpuhunt: cpu_ram * effective / cores / 1000)."""
    ram_mb = optional_decimal(offer, "cpu_ram")
    cores = optional_decimal(offer, "cpu_cores")
    if ram_mb is None or not cores or cores_effective is None:
        return None
    return (ram_mb * cores_effective / cores / 1000).quantize(Decimal("0.1"))
