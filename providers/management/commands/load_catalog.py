"""Loads the sandbox catalog (the public price snapshot) into the database.

Re-running it adds missing offers and refreshes their static facts; prices and availability that
the sandbox market has moved stay as they are unless --reset is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from providers.models import Offer, PriceSource, Provider
from providers.snapshot import PROVIDER_NAMES, SNAPSHOT_PATH, SnapshotError, read_snapshot

STATIC_FIELDS = ["gpu_type", "gpu_type_raw", "gpu_count", "gpu_memory_gb", "vcpus", "ram_gb", "list_price"]
MARKET_FIELDS = ["price_per_hour", "spot_price", "availability_status", "source", "last_updated"]


class Command(BaseCommand):
    help = "Load the sandbox GPU catalog from the public price snapshot."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--path", type=Path, default=SNAPSHOT_PATH, help="CSV file to load")
        parser.add_argument("--reset", action="store_true", help="also reset prices and availability to the snapshot")

    def handle(self, *args: Any, path: Path, reset: bool, **options: Any) -> None:
        try:
            rows = list(read_snapshot(path))
        except (OSError, SnapshotError, ValueError) as exc:
            raise CommandError(f"cannot load {path}: {exc}") from exc

        now = timezone.now()
        with transaction.atomic():
            providers = {}
            for slug in sorted({row.provider_slug for row in rows}):
                provider, _ = Provider.objects.update_or_create(
                    slug=slug, defaults={"name": PROVIDER_NAMES.get(slug, slug.title())}
                )
                providers[slug] = provider
            before = Offer.objects.count()
            offers = [
                Offer(
                    provider=providers[row.provider_slug],
                    name=row.name,
                    gpu_type=row.gpu_type,
                    gpu_type_raw=row.gpu_type_raw,
                    gpu_count=row.gpu_count,
                    gpu_memory_gb=row.gpu_memory_gb,
                    vcpus=row.vcpus,
                    ram_gb=row.ram_gb,
                    price_per_hour=row.price_per_hour,
                    spot_price=row.spot_price,
                    list_price=row.price_per_hour,
                    availability_status=row.availability_status,
                    region=row.region,
                    source=PriceSource.SNAPSHOT,
                    last_updated=now,
                )
                for row in rows
            ]
            Offer.objects.bulk_create(
                offers,
                batch_size=500,
                update_conflicts=True,
                unique_fields=["provider", "name", "region"],
                update_fields=STATIC_FIELDS + (MARKET_FIELDS if reset else []),
            )
            after = Offer.objects.count()
        self.stdout.write(
            f"catalog: {len(rows)} offers from {len(providers)} providers "
            f"({after - before} new, {len(rows) - (after - before)} refreshed{', prices reset' if reset else ''})"
        )
