"""Reading the catalog: per GPU type the lowest available price and the ranked best match, as the
landing table shows them."""

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
class Quote:
    """One offer's price as a row shows it, with where and when it was read."""

    offer_id: int
    price_per_gpu_hour: Decimal
    provider_name: str
    provider_slug: str
    region: str
    last_updated: datetime
    source: str  # PriceSource label: live API, cache, snapshot, sandbox market

    @classmethod
    def of(cls, offer: Offer) -> Quote:
        return cls(
            offer_id=offer.pk,
            price_per_gpu_hour=offer.price_per_gpu_hour.quantize(Decimal("0.01")),
            provider_name=offer.provider.name,
            provider_slug=offer.provider.slug,
            region=offer.region,
            last_updated=offer.last_updated,
            source=offer.get_source_display(),
        )


@dataclass(frozen=True)
class BestOffer:
    """A GPU type's row. The top-level price fields are the ranked best match (TOPSIS);
    `lowest` is the cheapest offer with capacity, which is what "Lowest price" shows."""

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
    lowest: Quote

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


def lowest_offer(offers: list[Offer]) -> Offer | None:
    """The cheapest offer per GPU-hour among those with capacity; ties go to the first."""
    candidates = [o for o in offers if o.availability_status != Availability.UNAVAILABLE]
    return min(candidates, key=lambda o: o.price_per_gpu_hour, default=None)


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
        winner, cheapest = best_offer(offers), lowest_offer(offers)
        if winner is None or cheapest is None:
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
                lowest=Quote.of(cheapest),
            )
        )
    rows.sort(key=lambda r: (-r.offer_count, r.gpu_type))
    return rows


def featured_gpu_types(limit: int = FEATURED_GPU_COUNT) -> list[str]:
    """The most widely offered GPU types: the landing table's rows, in a stable order."""
    from django.db.models import Count

    counts = Offer.objects.values("gpu_type").annotate(n=Count("id")).order_by("-n", "gpu_type")[:limit]
    return [row["gpu_type"] for row in counts]
