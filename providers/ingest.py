"""Storing a provider's fresh offers: upsert, price history, and the list of what changed.

Only rows that changed are written (plus one statement that stamps the rest as confirmed now), so
a refresh of a provider with hundreds of offers stays cheap. Offers the provider no longer lists
are kept (deploys and history point at them) but marked unavailable.

The `gpubroker.price-updates` events announcing the changes are written to the outbox in the
same transaction (`providers.outbox`), so a crash after the commit cannot lose them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from providers import outbox
from providers.adapters.base import OfferData
from providers.calc import pct_changes
from providers.events import PRICE_UPDATES
from providers.models import Availability, Offer, PriceSample, PriceSource, Provider

CHANGES_PER_EVENT = 200  # a big refresh becomes several events, each small enough for one push
STATIC_FIELDS = ("gpu_type", "gpu_type_raw", "gpu_count", "gpu_memory_gb", "vcpus", "ram_gb", "storage_gb", "currency")


@dataclass(frozen=True)
class OfferChange:
    offer_id: int
    provider: str
    name: str
    region: str
    gpu_type: str
    gpu_count: int
    old_price: float | None  # None for a new offer
    new_price: float
    old_availability: str | None
    new_availability: str
    pct_change: float | None

    @property
    def price_changed(self) -> bool:
        return self.old_price != self.new_price

    def as_event(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class IngestResult:
    provider: str
    changes: list[OfferChange]
    created: int
    withdrawn: int
    confirmed: int
    at: datetime
    event_ids: list[str]  # the outbox events announcing `changes`, in order


def _sample(offer: Offer, now: datetime) -> PriceSample:
    return PriceSample(
        offer_id=offer.pk,
        gpu_type=offer.gpu_type,
        price_per_hour=offer.price_per_hour,
        price_per_gpu_hour=(offer.price_per_hour / offer.gpu_count).quantize(Decimal("0.0001")),
        availability_status=offer.availability_status,
        sampled_at=now,
    )


def current_quotes(provider: Provider) -> dict[tuple[str, str, str], tuple[Decimal, str]]:
    """The provider's published prices and availability by offer key (to resume a simulation)."""
    rows = Offer.objects.filter(provider=provider).values_list("name", "region", "price_per_hour", "availability_status")
    return {(provider.slug, name, region): (price, availability) for name, region, price, availability in rows}


@transaction.atomic
def apply_offers(
    provider: Provider, offers: list[OfferData], now: datetime | None = None, source: str = PriceSource.LIVE_API
) -> IngestResult:
    """Stores a provider's fetched offers; `source` labels their prices (the sandbox market says so)."""
    now = now or timezone.now()
    existing = {(o.name, o.region): o for o in Offer.objects.select_for_update().filter(provider=provider)}
    changes: list[OfferChange] = []
    to_create: list[Offer] = []
    to_update: list[Offer] = []
    seen: set[tuple[str, str]] = set()

    for data in offers:
        key = (data.name, data.region)
        if key in seen:
            continue
        seen.add(key)
        offer = existing.get(key)
        if offer is None:
            to_create.append(
                Offer(
                    provider=provider, name=data.name, region=data.region, gpu_type=data.gpu_type,
                    gpu_type_raw=data.gpu_type_raw, gpu_count=data.gpu_count, gpu_memory_gb=data.gpu_memory_gb,
                    vcpus=data.vcpus, ram_gb=data.ram_gb, storage_gb=data.storage_gb, currency=data.currency,
                    price_per_hour=data.price_per_hour, spot_price=data.spot_price, list_price=data.price_per_hour,
                    availability_status=data.availability_status, compliance_tags=list(data.compliance_tags),
                    source=source, last_updated=now,
                )
            )
            continue
        old_price, old_availability = offer.price_per_hour, offer.availability_status
        dirty = (
            old_price != data.price_per_hour
            or old_availability != data.availability_status
            or offer.spot_price != data.spot_price
            or offer.compliance_tags != list(data.compliance_tags)
            or any(getattr(offer, f) != getattr(data, f) for f in STATIC_FIELDS)
        )
        if not dirty:
            continue
        for f in STATIC_FIELDS:
            setattr(offer, f, getattr(data, f))
        offer.price_per_hour = data.price_per_hour
        offer.spot_price = data.spot_price
        offer.availability_status = data.availability_status
        offer.compliance_tags = list(data.compliance_tags)
        offer.source = source
        offer.last_updated = now
        to_update.append(offer)
        if old_price != offer.price_per_hour or old_availability != offer.availability_status:
            changes.append(_change(provider, offer, old_price, old_availability))

    withdrawn = []
    for key, offer in existing.items():
        if key not in seen and offer.availability_status != Availability.UNAVAILABLE:
            old_availability = offer.availability_status
            offer.availability_status = Availability.UNAVAILABLE
            offer.last_updated = now
            to_update.append(offer)
            withdrawn.append(offer)
            changes.append(_change(provider, offer, offer.price_per_hour, old_availability))

    if to_create:
        Offer.objects.bulk_create(to_create, batch_size=500)
        for offer in to_create:
            changes.append(_change(provider, offer, None, None))
    if to_update:
        Offer.objects.bulk_update(
            to_update,
            ["price_per_hour", "spot_price", "availability_status", "compliance_tags", "source", "last_updated", *STATIC_FIELDS],
            batch_size=500,
        )
    # Everything else was listed unchanged: confirmed at its price as of now.
    written = [o.pk for o in to_update] + [o.pk for o in to_create]
    confirmed = Offer.objects.filter(provider=provider).exclude(pk__in=written).update(last_updated=now, source=source)
    changed_ids = {c.offer_id for c in changes}
    samples = [_sample(o, now) for o in [*to_update, *to_create] if o.pk in changed_ids]
    PriceSample.objects.bulk_create(samples, batch_size=500)
    Provider.objects.filter(pk=provider.pk).update(last_refresh_at=now)
    event_ids = outbox.enqueue_many((PRICE_UPDATES, payload, None) for payload in change_events(provider.slug, now, changes))
    return IngestResult(provider.slug, changes, len(to_create), len(withdrawn), confirmed, now, event_ids)


def change_events(provider: str, at: datetime, changes: list[OfferChange]) -> list[dict[str, object]]:
    """The price-updates payloads for a refresh's changes, at most CHANGES_PER_EVENT each."""
    rows = [c.as_event() for c in changes]
    return [
        {"provider": provider, "at": at.isoformat(), "changes": rows[start : start + CHANGES_PER_EVENT]}
        for start in range(0, len(rows), CHANGES_PER_EVENT)
    ]


def _change(provider: Provider, offer: Offer, old_price: Decimal | None, old_availability: str | None) -> OfferChange:
    new = float(offer.price_per_hour)
    old = float(old_price) if old_price is not None else None
    return OfferChange(
        offer_id=offer.pk,
        provider=provider.slug,
        name=offer.name,
        region=offer.region,
        gpu_type=offer.gpu_type,
        gpu_count=offer.gpu_count,
        old_price=old,
        new_price=new,
        old_availability=old_availability,
        new_availability=offer.availability_status,
        pct_change=round(pct_changes([(old, new)])[0], 4) if old else None,
    )
