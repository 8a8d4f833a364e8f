"""Providers and their GPU offers: the catalog every page and API reads."""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.utils import timezone


class HealthStatus(models.TextChoices):
    UNKNOWN = "unknown", "Unknown"
    HEALTHY = "healthy", "Healthy"
    DEGRADED = "degraded", "Degraded"  # answers, but slowly (> 2 s) or with some failures
    DOWN = "down", "Down"


class CircuitState(models.TextChoices):
    CLOSED = "closed", "Closed"
    OPEN = "open", "Open"
    HALF_OPEN = "half_open", "Half-open"


class Provider(models.Model):
    """A GPU cloud. `slug` is its name in the API and in channel groups; `name` is for people.

    The health and circuit columns are written by the worker (the last word of whichever worker
    refreshed it) so every web instance can show them without asking the worker.
    """

    slug = models.SlugField(max_length=40, unique=True)
    name = models.CharField("display name", max_length=80)
    api_base = models.URLField(blank=True, help_text="Overrides the adapter's default API base URL")
    active = models.BooleanField(default=True, help_text="Inactive providers are neither refreshed nor listed")
    health_status = models.CharField(max_length=10, choices=HealthStatus.choices, default=HealthStatus.UNKNOWN)
    last_health_check = models.DateTimeField(null=True, blank=True)
    health_latency_ms = models.FloatField(null=True, blank=True)
    last_refresh_at = models.DateTimeField(null=True, blank=True, help_text="Last successful offer refresh")
    rate_limit_per_minute = models.PositiveIntegerField(default=60, help_text="Calls per minute we allow ourselves")
    circuit_state = models.CharField(max_length=10, choices=CircuitState.choices, default=CircuitState.CLOSED)

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["active", "health_status"])]

    def __str__(self) -> str:
        return self.name


class Availability(models.TextChoices):
    AVAILABLE = "available", "Available"
    LIMITED = "limited", "Limited"
    UNAVAILABLE = "unavailable", "Unavailable"


class PriceSource(models.TextChoices):
    LIVE_API = "live_api", "Live API"
    SANDBOX = "sandbox", "Sandbox market"  # the simulated market on the snapshot, never a real quote
    CACHE = "cache", "Cache"
    SNAPSHOT = "snapshot", "Snapshot"


class Offer(models.Model):
    """One rentable configuration at one provider in one region (the product's Offer schema)."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="offers")
    name = models.CharField("instance type", max_length=120)
    gpu_type = models.CharField(max_length=60, db_index=True, help_text='Canonical, e.g. "H100 80GB"')
    gpu_type_raw = models.CharField(max_length=60, help_text="As the provider spells it")
    gpu_count = models.PositiveSmallIntegerField()
    gpu_memory_gb = models.PositiveIntegerField(help_text="Per GPU, marketed size")
    vcpus = models.PositiveIntegerField(null=True, blank=True)
    ram_gb = models.DecimalField(max_digits=9, decimal_places=1, null=True, blank=True)
    storage_gb = models.PositiveIntegerField(null=True, blank=True)
    price_per_hour = models.DecimalField(max_digits=10, decimal_places=4)
    spot_price = models.DecimalField(max_digits=10, decimal_places=4, null=True, blank=True)
    list_price = models.DecimalField(
        max_digits=10, decimal_places=4, help_text="Price as first loaded; the sandbox market drifts around it"
    )
    currency = models.CharField(max_length=3, default="USD")
    availability_status = models.CharField(max_length=12, choices=Availability.choices, default=Availability.AVAILABLE)
    region = models.CharField(max_length=80, blank=True)
    compliance_tags = models.JSONField(default=list, blank=True)
    source = models.CharField(max_length=10, choices=PriceSource.choices, default=PriceSource.SNAPSHOT)
    last_updated = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["gpu_type", "price_per_hour"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "name", "region"], name="offer_unique_per_provider_region"),
            models.CheckConstraint(condition=models.Q(price_per_hour__gt=0), name="offer_price_positive"),
            models.CheckConstraint(condition=models.Q(gpu_count__gt=0), name="offer_gpu_count_positive"),
        ]
        # One per API filter that narrows a lot on its own; price ranges ride on the composite.
        indexes = [
            models.Index(fields=["gpu_type", "availability_status"]),
            models.Index(fields=["gpu_type", "price_per_hour"]),
            models.Index(fields=["price_per_hour", "id"]),
            models.Index(fields=["region"]),
            models.Index(fields=["gpu_memory_gb"]),
            models.Index(fields=["provider", "availability_status"]),
        ]

    def __str__(self) -> str:
        return f"{self.provider.slug}/{self.name} {self.region} ${self.price_per_hour}/h"

    @property
    def price_per_gpu_hour(self) -> Decimal:
        return self.price_per_hour / self.gpu_count


class PriceSample(models.Model):
    """Append-only price history: one row each time an offer's price or availability changes.

    The series is a step function, so sampling on change loses nothing while keeping the table to
    what actually moved; `prune_price_history` deletes rows past the 30-day retention.
    """

    offer = models.ForeignKey(Offer, on_delete=models.CASCADE, related_name="samples")
    gpu_type = models.CharField(max_length=60)  # copied so history queries by type need no join
    price_per_hour = models.DecimalField(max_digits=10, decimal_places=4)
    price_per_gpu_hour = models.DecimalField(max_digits=10, decimal_places=4)
    availability_status = models.CharField(max_length=12, choices=Availability.choices)
    sampled_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["sampled_at", "id"]
        indexes = [
            models.Index(fields=["offer", "sampled_at"]),
            models.Index(fields=["gpu_type", "sampled_at"]),
            models.Index(fields=["sampled_at"]),
        ]

    def __str__(self) -> str:
        return f"offer {self.offer_id} ${self.price_per_hour}/h at {self.sampled_at:%Y-%m-%d %H:%M:%S}"

    def save(self, *args: object, **kwargs: object) -> None:
        if self.pk is not None:
            raise ValueError("price samples are append-only")
        super().save(*args, **kwargs)  # type: ignore[arg-type]


class PriceAggregate(models.Model):
    """One-minute statistics of a GPU type's price per GPU-hour across offers with capacity.

    Recomputed from the offers (not accumulated from events), so processing an event twice
    writes the same row: the at-least-once event path stays idempotent.
    """

    gpu_type = models.CharField(max_length=60)
    minute = models.DateTimeField()
    offers = models.PositiveIntegerField()
    min_price = models.DecimalField(max_digits=10, decimal_places=4)
    mean_price = models.DecimalField(max_digits=10, decimal_places=4)
    max_price = models.DecimalField(max_digits=10, decimal_places=4)

    class Meta:
        ordering = ["minute", "gpu_type"]
        constraints = [models.UniqueConstraint(fields=["gpu_type", "minute"], name="aggregate_one_per_type_minute")]
        indexes = [models.Index(fields=["minute"])]

    def __str__(self) -> str:
        return f"{self.gpu_type} {self.minute:%H:%M} min ${self.min_price}"


class OutboxEvent(models.Model):
    """An event written in the same transaction as the change it announces (a transactional outbox).

    A crash after the commit cannot lose it: the worker's relay (`providers.outbox`) publishes
    unsent rows to their stream and stamps `sent_at`; a relay that died after publishing but
    before stamping leaves the row to be published again, and consumers drop the copy by
    `event_id`. Sent rows are pruned after `providers.outbox.SENT_RETENTION`.
    """

    event_id = models.UUIDField(unique=True, help_text="Stable across re-publishing; consumers deduplicate by it")
    stream = models.CharField(max_length=80)
    payload = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)
    claimed_by = models.CharField(max_length=120, blank=True, help_text="The relay publishing it now")
    claimed_until = models.DateTimeField(null=True, blank=True, help_text="After this, another relay may take it over")
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            # The relay's scan: unsent rows in order, served by a partial index that stays small.
            models.Index(fields=["id"], condition=models.Q(sent_at__isnull=True), name="outbox_unsent"),
            models.Index(fields=["sent_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.stream} {self.event_id} ({'sent' if self.sent_at else 'pending'})"
