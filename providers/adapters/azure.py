"""Azure: the public Retail Prices API, GET /api/retail/prices with an OData `$filter`, no key.

Pages of up to 1000 items follow `NextPageLink` (null on the last page). The filter asks for the
GPU VM sizes below, pay-as-you-go (`priceType eq 'Consumption'`), so one refresh is a few pages
instead of the whole VM price list. Per (armSkuName, armRegionName): the Linux on-demand meter is
the price, the meter with "Spot" in its name the spot price; Windows and Low Priority meters and
zero prices are left out (gpuhunt's rules).

The price API carries no hardware specs and no capacity. Specs come from the table below (Azure's
VM size documentation; the ARM Resource SKUs API that has them needs a subscription), so only
sizes listed there are offered. A listed price means the size is sold in that region; capacity
is not reported, so offers are "available".
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from providers.adapters.base import FailureKind, OfferData, ProviderAdapter
from providers.adapters.http import MAX_PAGES, collect, decimal_value, field, listing, optional_str, request_json, typed
from providers.gpu_names import canonical_gpu
from providers.models import Availability


@dataclass(frozen=True)
class VmSize:
    gpu: str
    gpu_count: int
    gpu_memory_gb: int  # per GPU
    vcpus: int
    ram_gb: int


# Whole-GPU sizes from learn.microsoft.com/azure/virtual-machines/sizes (fractional A10 sizes are
# not whole GPUs and are left out).
VM_SIZES: dict[str, VmSize] = {
    "Standard_NC4as_T4_v3": VmSize("T4", 1, 16, 4, 28),
    "Standard_NC8as_T4_v3": VmSize("T4", 1, 16, 8, 56),
    "Standard_NC16as_T4_v3": VmSize("T4", 1, 16, 16, 110),
    "Standard_NC64as_T4_v3": VmSize("T4", 4, 16, 64, 440),
    "Standard_NC6s_v3": VmSize("V100", 1, 16, 6, 112),
    "Standard_NC12s_v3": VmSize("V100", 2, 16, 12, 224),
    "Standard_NC24s_v3": VmSize("V100", 4, 16, 24, 448),
    "Standard_NC24rs_v3": VmSize("V100", 4, 16, 24, 448),
    "Standard_ND40rs_v2": VmSize("V100", 8, 32, 40, 672),
    "Standard_NV36ads_A10_v5": VmSize("A10", 1, 24, 36, 440),
    "Standard_NV72ads_A10_v5": VmSize("A10", 2, 24, 72, 880),
    "Standard_NC24ads_A100_v4": VmSize("A100", 1, 80, 24, 220),
    "Standard_NC48ads_A100_v4": VmSize("A100", 2, 80, 48, 440),
    "Standard_NC96ads_A100_v4": VmSize("A100", 4, 80, 96, 880),
    "Standard_ND96asr_v4": VmSize("A100", 8, 40, 96, 900),
    "Standard_ND96amsr_A100_v4": VmSize("A100", 8, 80, 96, 1900),
    "Standard_NC40ads_H100_v5": VmSize("H100 NVL", 1, 94, 40, 320),
    "Standard_NC80adis_H100_v5": VmSize("H100 NVL", 2, 94, 80, 640),
    "Standard_ND96isr_H100_v5": VmSize("H100", 8, 80, 96, 1900),
    "Standard_ND96isr_H200_v5": VmSize("H200", 8, 141, 96, 1850),
    "Standard_ND96isr_MI300X_v5": VmSize("MI300X", 8, 192, 96, 1850),
}

PRICE_FILTER = (
    "serviceName eq 'Virtual Machines' and priceType eq 'Consumption' and ("
    + " or ".join(f"armSkuName eq '{name}'" for name in VM_SIZES)
    + ")"
)


@dataclass(frozen=True)
class _Price:
    sku: str
    region: str
    price: Decimal
    spot: bool
    currency: str


class AzureAdapter(ProviderAdapter):
    slug = "azure"
    display_name = "Azure"
    default_api_base = "https://prices.azure.com"

    async def fetch_offers(self) -> list[OfferData]:
        rows = collect(self, await self._all_items(), _read_price)
        # The cheapest meter of each kind wins where a size has several (e.g. per product line).
        on_demand: dict[tuple[str, str], _Price] = {}
        spot: dict[tuple[str, str], _Price] = {}
        for row in rows:
            chosen = spot if row.spot else on_demand
            key = (row.sku, row.region)
            if key not in chosen or row.price < chosen[key].price:
                chosen[key] = row
        # A spot meter alone is not an on-demand offer.
        return [self._offer(row, spot.get(key)) for key, row in sorted(on_demand.items())]

    async def _all_items(self) -> list[Any]:
        url = f"{self.api_base}/api/retail/prices"
        params: dict[str, str] | None = {"$filter": PRICE_FILTER}
        items: list[Any] = []
        for _ in range(MAX_PAGES):
            body = await request_json(self, "GET", url, params=params)
            items.extend(listing(self, body, "Items"))
            next_link = body.get("NextPageLink")
            if not next_link:
                return items
            # NextPageLink carries the filter and the skip; follow it only to the same host.
            if not isinstance(next_link, str) or urlsplit(next_link).netloc != urlsplit(self.api_base).netloc:
                raise self.error(FailureKind.BAD_RESPONSE, "NextPageLink points away from the price API")
            url, params = next_link, None
        raise self.error(FailureKind.BAD_RESPONSE, f"more than {MAX_PAGES} pages of prices")

    def _offer(self, row: _Price, spot: _Price | None) -> OfferData:
        size = VM_SIZES[row.sku]
        gpu_name, memory = canonical_gpu(size.gpu, size.gpu_memory_gb)
        return OfferData(
            provider=self.slug,
            name=row.sku,
            gpu_type=gpu_name,
            gpu_type_raw=size.gpu,
            gpu_count=size.gpu_count,
            gpu_memory_gb=memory,
            price_per_hour=row.price,
            spot_price=spot.price if spot else None,
            region=row.region,
            availability_status=Availability.AVAILABLE,
            vcpus=size.vcpus,
            ram_gb=Decimal(size.ram_gb),
            currency=row.currency,
        )


def _read_price(item: Any) -> list[_Price]:
    """The price row of one item, or none for meters GPUBROKER does not sell (Windows, Low
    Priority, reservations, zero prices, sizes not in VM_SIZES)."""
    sku = typed(item, "armSkuName", str)
    if sku not in VM_SIZES or "Windows" in optional_str(item, "productName"):
        return []
    meter = optional_str(item, "meterName") + " " + optional_str(item, "skuName")
    if "Low Priority" in meter or optional_str(item, "type", "Consumption") != "Consumption":
        return []
    price = decimal_value(field(item, "retailPrice"), "retailPrice")
    if not price:
        return []
    region = typed(item, "armRegionName", str)
    return [_Price(sku, region, price, "Spot" in meter, optional_str(item, "currencyCode", "USD"))]
