"""Providers and their GPU offers: the catalog every page and API reads."""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.utils import timezone


class Provider(models.Model):
    slug = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=80)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Availability(models.TextChoices):
    AVAILABLE = "available", "Available"
    LIMITED = "limited", "Limited"
    UNAVAILABLE = "unavailable", "Unavailable"


class PriceSource(models.TextChoices):
    LIVE_API = "live_api", "Live API"
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
        indexes = [models.Index(fields=["gpu_type", "availability_status"])]

    def __str__(self) -> str:
        return f"{self.provider.slug}/{self.name} {self.region} ${self.price_per_hour}/h"

    @property
    def price_per_gpu_hour(self) -> Decimal:
        return self.price_per_hour / self.gpu_count
