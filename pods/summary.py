"""A user's pods at a glance, for the dashboard: stats, the pods, recent activity."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from billing import ledger
from pods.models import ACTIVE_STATES, Rental, RentalEvent, State
from providers.models import Offer


@dataclass(frozen=True)
class PodStats:
    active: int
    spent_this_month: Decimal
    savings: Decimal  # against the median price of the same GPU type, over the pods' uptime


def median_per_gpu(gpu_type: str) -> Decimal | None:
    prices = [p / c for p, c in Offer.objects.filter(gpu_type=gpu_type).values_list("price_per_hour", "gpu_count") if c]
    return Decimal(statistics.median(prices)) if prices else None


def savings(rentals: list[Rental]) -> Decimal:
    """What the pods' uptime would have cost more at the median offer of their GPU type."""
    total = Decimal(0)
    medians: dict[str, Decimal | None] = {}
    for rental in rentals:
        if rental.gpu_type not in medians:
            medians[rental.gpu_type] = median_per_gpu(rental.gpu_type)
        median = medians[rental.gpu_type]
        if median is None:
            continue
        hours = Decimal(rental.uptime()) / 3600
        total += max(Decimal(0), median * rental.gpu_count - rental.provider_price_per_hour) * hours
    return total.quantize(Decimal("0.01"))


def overview(user: Any) -> dict[str, Any]:
    rentals = list(Rental.objects.filter(user=user).exclude(state=State.DRAFT).order_by("-created_at")[:50])
    stats = PodStats(
        active=sum(1 for r in rentals if r.state in ACTIVE_STATES),
        spent_this_month=ledger.spent_this_month(user).quantize(Decimal("0.01")),
        savings=savings(rentals),
    )
    activity = list(RentalEvent.objects.filter(rental__user=user).select_related("rental").order_by("-at", "-pk")[:10])
    return {"pod_stats": stats, "pods": [r for r in rentals if r.state != State.TERMINATED][:20], "activity": activity}
