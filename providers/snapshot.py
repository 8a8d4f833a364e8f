"""The sandbox catalog: the public price snapshot in `providers/data/`, read into Offer rows.

Source: SkyPilot's catalog (github.com/skypilot-org/skypilot-catalog), 2,201 offers from 25
providers. It has no availability column, so the sandbox assigns one per offer, stable across
loads (a hash of the offer's key), which the sandbox market then moves.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from providers.gpu_names import canonical_gpu
from providers.models import Availability

SNAPSHOT_PATH = Path(__file__).resolve().parent / "data" / "gpu_offers_snapshot.csv"

PROVIDER_NAMES = {
    "aws": "AWS",
    "azure": "Azure",
    "cudo": "Cudo Compute",
    "do": "DigitalOcean",
    "fluidstack": "Fluidstack",
    "gcp": "Google Cloud",
    "hyperbolic": "Hyperbolic",
    "hyperstack": "Hyperstack",
    "ibm": "IBM Cloud",
    "jarvislabs": "JarvisLabs",
    "lambda": "Lambda",
    "lium": "Lium",
    "mithril": "Mithril",
    "nebius": "Nebius",
    "oci": "Oracle Cloud",
    "paperspace": "Paperspace",
    "primeintellect": "Prime Intellect",
    "runpod": "RunPod",
    "scaleway": "Scaleway",
    "seeweb": "Seeweb",
    "shadeform": "Shadeform",
    "spheron": "Spheron",
    "vast": "Vast.ai",
    "verda": "Verda",
    "yotta": "Yotta",
}


class SnapshotError(ValueError):
    """A snapshot row that cannot be loaded; the message names the line and the field."""


@dataclass(frozen=True)
class SnapshotOffer:
    provider_slug: str
    name: str
    gpu_type: str
    gpu_type_raw: str
    gpu_count: int
    gpu_memory_gb: int
    vcpus: int | None
    ram_gb: Decimal | None
    price_per_hour: Decimal
    spot_price: Decimal | None
    region: str
    availability_status: str


def initial_availability(provider: str, name: str, region: str) -> str:
    """Stable pseudo-random availability: about 75 % available, 17 % limited, 8 % unavailable."""
    digest = hashlib.blake2b(f"{provider}|{name}|{region}".encode(), digest_size=2).digest()
    bucket = int.from_bytes(digest, "big") % 100
    if bucket < 75:
        return Availability.AVAILABLE
    if bucket < 92:
        return Availability.LIMITED
    return Availability.UNAVAILABLE


def _decimal(row: dict[str, str], field: str, line: int, required: bool = False) -> Decimal | None:
    raw = row.get(field, "").strip()
    if not raw:
        if required:
            raise SnapshotError(f"line {line}: {field} is empty")
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise SnapshotError(f"line {line}: {field} {raw!r} is not a number") from None
    if not value.is_finite() or value < 0:
        raise SnapshotError(f"line {line}: {field} {raw!r} must be a finite number >= 0")
    return value


def read_snapshot(path: Path = SNAPSHOT_PATH) -> Iterator[SnapshotOffer]:
    with path.open(newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            price = _decimal(row, "price_per_hour", line, required=True)
            assert price is not None
            if price == 0:
                raise SnapshotError(f"line {line}: price_per_hour must be above zero")
            memory = _decimal(row, "gpu_memory_gb", line)
            gpu_type, memory_gb = canonical_gpu(row["gpu_type"], float(memory) if memory else None)
            try:
                gpu_count = int(row["gpu_count"])
            except ValueError:
                raise SnapshotError(f"line {line}: gpu_count {row['gpu_count']!r} is not an integer") from None
            vcpus = _decimal(row, "vcpus", line)
            provider, name, region = row["provider"].strip(), row["instance_type"].strip(), row["region"].strip()
            yield SnapshotOffer(
                provider_slug=provider,
                name=name,
                gpu_type=gpu_type,
                gpu_type_raw=row["gpu_type"],
                gpu_count=gpu_count,
                gpu_memory_gb=memory_gb,
                vcpus=int(vcpus) if vcpus is not None else None,
                ram_gb=_decimal(row, "ram_gb", line),
                price_per_hour=price,
                spot_price=_decimal(row, "spot_price", line),
                region=region,
                availability_status=initial_availability(provider, name, region),
            )
