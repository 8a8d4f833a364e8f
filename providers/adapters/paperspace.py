"""Paperspace (DigitalOcean): prices from a table, availability live.

Paperspace has no pricing API (docs.digitalocean.com/reference/paperspace/api-reference/). Its
availability endpoint, GET /v1/machine-availability?machineType=...&region=... with a Bearer key,
answers `{"available": true|false}` for one machine type in one region, so each refresh asks once
per machine type below. The legacy Core API (X-Api-Key) was retired on 15 July 2024.

The table is SkyPilot's catalog v6 (paperspace/vms.csv, the rows in GPUBROKER's snapshot), with
per-GPU memory added from Paperspace's machine pages: update it when Paperspace changes prices.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from providers.adapters.base import OfferData, ProviderAdapter
from providers.adapters.http import BadItem, bearer, collect, gather_limited, request_json
from providers.gpu_names import canonical_gpu
from providers.models import Availability


@dataclass(frozen=True)
class MachineType:
    name: str  # Paperspace's machineType
    gpu: str
    gpu_count: int
    gpu_memory_gb: int
    vcpus: int
    ram_gb: int
    price: Decimal  # whole machine, USD per hour
    region: str = "East Coast (NY2)"


MACHINE_TYPES = (
    MachineType("H100", "H100", 1, 80, 15, 80, Decimal("5.95")),
    MachineType("H100x8", "H100", 8, 80, 128, 640, Decimal("47.60")),
    MachineType("A100-80G", "A100", 1, 80, 12, 80, Decimal("3.18")),
    MachineType("A100-80Gx8", "A100", 8, 80, 96, 640, Decimal("25.44")),
    MachineType("V100-32G", "V100", 1, 32, 8, 32, Decimal("2.30")),
    MachineType("V100-32Gx2", "V100", 2, 32, 16, 64, Decimal("4.60")),
    MachineType("V100-32Gx4", "V100", 4, 32, 32, 128, Decimal("9.20")),
    MachineType("V100", "V100", 1, 16, 8, 32, Decimal("2.29")),
    MachineType("A4000", "RTX A4000", 1, 16, 8, 32, Decimal("0.76")),
    MachineType("A4000x2", "RTX A4000", 2, 16, 16, 92, Decimal("1.52")),
    MachineType("A4000x4", "RTX A4000", 4, 16, 32, 193, Decimal("3.04")),
    MachineType("P4000", "P4000", 1, 8, 8, 32, Decimal("0.51")),
    MachineType("P4000x2", "P4000", 2, 8, 16, 64, Decimal("1.02")),
    MachineType("GPU+", "M4000", 1, 8, 8, 32, Decimal("0.45")),
)


class PaperspaceAdapter(ProviderAdapter):
    slug = "paperspace"
    display_name = "Paperspace"
    default_api_base = "https://api.paperspace.com"
    credential_names = ("api_key",)

    async def fetch_offers(self) -> list[OfferData]:
        headers = bearer(self.credential("api_key"))
        url = f"{self.api_base}/v1/machine-availability"
        answers = await gather_limited(
            request_json(self, "GET", url, params={"machineType": machine.name, "region": machine.region}, headers=headers)
            for machine in MACHINE_TYPES
        )
        return collect(self, zip(MACHINE_TYPES, answers, strict=True), self._offers)

    def _offers(self, item: tuple[MachineType, Any]) -> list[OfferData]:
        machine, answer = item
        available = answer.get("available") if isinstance(answer, dict) else None
        if not isinstance(available, bool):
            raise BadItem(f"{machine.name}: 'available' should be true or false")
        gpu_name, memory = canonical_gpu(machine.gpu, machine.gpu_memory_gb)
        return [
            OfferData(
                provider=self.slug,
                name=machine.name,
                gpu_type=gpu_name,
                gpu_type_raw=machine.gpu,
                gpu_count=machine.gpu_count,
                gpu_memory_gb=memory,
                price_per_hour=machine.price,
                region=machine.region,
                availability_status=Availability.AVAILABLE if available else Availability.UNAVAILABLE,
                vcpus=machine.vcpus,
                ram_gb=Decimal(machine.ram_gb),
            )
        ]
