"""Reading the catalog: the best offer per GPU type, as the landing table shows it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import corecalc
from django.utils.text import slugify

from providers.models import Availability, Offer

# Availability as a number for ranking and for the "share available" bar.
AVAILABILITY_SCORE = {Availability.AVAILABLE: 1.0, Availability.LIMITED: 0.5, Availability.UNAVAILABLE: 0.0}
# Best offer of a GPU type: mostly price per GPU-hour, then how sure capacity is.
BEST_OFFER_WEIGHTS = (0.8, 0.2)
BEST_OFFER_BENEFIT = (False, True)
FEATURED_GPU_COUNT = 12


@dataclass(frozen=True)
class BestOffer:
    gpu_type: str
    offer_id: int
    price_per_gpu_hour: Decimal
    provider_name: str
    provider_slug: str
    region: str
    availability_pct: int  # share of this type's offers with capacity (limited counts half)
    offer_count: int
    provider_count: int
    last_updated: datetime  # of the best offer's price: every price shows its own age
    source: str  # where that price came from (PriceSource label: live API, cache, snapshot)

    @property
    def row_id(self) -> str:
        return f"gpu-row-{slugify(self.gpu_type)}"


def best_offer(offers: list[Offer]) -> Offer | None:
    """The TOPSIS winner among offers that have capacity; ties go to the cheaper, then the first."""
    candidates = [o for o in offers if o.availability_status != Availability.UNAVAILABLE]
    if not candidates:
        return None
    matrix = [[float(o.price_per_gpu_hour), AVAILABILITY_SCORE[Availability(o.availability_status)]] for o in candidates]
    scores = corecalc.topsis(matrix, BEST_OFFER_WEIGHTS, BEST_OFFER_BENEFIT)
    winner = max(range(len(candidates)), key=lambda i: (scores[i], -matrix[i][0], -i))
    return candidates[winner]


def best_offers(gpu_types: Iterable[str] | None = None) -> list[BestOffer]:
    """One row per GPU type (all types, or the given ones), most widely offered first."""
    queryset = Offer.objects.select_related("provider").only(
        "gpu_type", "price_per_hour", "gpu_count", "availability_status", "region", "last_updated", "source",
        "provider__name", "provider__slug",
    )
    if gpu_types is not None:
        queryset = queryset.filter(gpu_type__in=list(gpu_types))
    by_type: dict[str, list[Offer]] = defaultdict(list)
    for offer in queryset.order_by("id"):
        by_type[offer.gpu_type].append(offer)

    rows = []
    for gpu_type, offers in by_type.items():
        winner = best_offer(offers)
        if winner is None:
            continue
        capacity = sum(AVAILABILITY_SCORE[Availability(o.availability_status)] for o in offers)
        rows.append(
            BestOffer(
                gpu_type=gpu_type,
                offer_id=winner.pk,
                price_per_gpu_hour=winner.price_per_gpu_hour.quantize(Decimal("0.01")),
                provider_name=winner.provider.name,
                provider_slug=winner.provider.slug,
                region=winner.region,
                availability_pct=round(100 * capacity / len(offers)),
                offer_count=len(offers),
                provider_count=len({o.provider.slug for o in offers}),
                last_updated=winner.last_updated,
                source=winner.get_source_display(),
            )
        )
    rows.sort(key=lambda r: (-r.offer_count, r.gpu_type))
    return rows


def featured_gpu_types(limit: int = FEATURED_GPU_COUNT) -> list[str]:
    """The most widely offered GPU types: the landing table's rows, in a stable order."""
    from django.db.models import Count

    counts = Offer.objects.values("gpu_type").annotate(n=Count("id")).order_by("-n", "gpu_type")[:limit]
    return [row["gpu_type"] for row in counts]
