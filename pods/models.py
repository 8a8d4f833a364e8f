"""A rental (a pod) and its history; drafts of the deploy wizard; each user's spend caps."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.utils import timezone


class State(models.TextChoices):
    DRAFT = "draft", "Draft"
    PROVISIONING = "provisioning", "Provisioning"
    AWAITING_ACTIVATION = "awaiting_activation", "Ready: waiting for activation"
    RUNNING = "running", "Running"
    STOPPED = "stopped", "Stopped"
    TERMINATED = "terminated", "Terminated"
    FAILED = "failed", "Failed"


# Pods counted against the plan's limit and the balance: everything that holds a provider instance.
ACTIVE_STATES = (State.PROVISIONING, State.AWAITING_ACTIVATION, State.RUNNING, State.STOPPED)
BILLED_STATES = (State.AWAITING_ACTIVATION, State.RUNNING)


class Rental(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="rentals")
    name = models.CharField(max_length=60)
    state = models.CharField(max_length=20, choices=State.choices, default=State.DRAFT)
    step = models.CharField(max_length=200, blank=True, help_text="What the provider says it is doing now")
    livemode = models.BooleanField(default=False)
    # The request that made it: the wizard's draft token or the API's Idempotency-Key, per user.
    request_key = models.CharField(max_length=200)
    request_fingerprint = models.CharField(max_length=64, blank=True)

    # What was rented (copied from the offer: offers move and vanish, the rental keeps its terms).
    offer = models.ForeignKey("providers.Offer", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    provider_slug = models.CharField(max_length=40)
    offer_name = models.CharField(max_length=120)
    region = models.CharField(max_length=80, blank=True)
    gpu_type = models.CharField(max_length=60)
    gpu_count = models.PositiveSmallIntegerField()
    template = models.CharField(max_length=20)
    image = models.CharField(max_length=200)
    ports = models.JSONField(default=list)
    disk_gb = models.PositiveIntegerField(default=50)
    ssh_public_key = models.TextField()
    ends_at = models.DateTimeField(null=True, blank=True, help_text="Stop at this time; empty: run until stopped")
    duration_hours = models.PositiveIntegerField(null=True, blank=True)
    allow_failover = models.BooleanField(default=False)
    spend_cap = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True, help_text="Stop the pod once it has cost this much")

    # Money: the provider's price when provisioned, the markup then, and what the user pays.
    provider_price_per_hour = models.DecimalField(max_digits=10, decimal_places=4)
    markup_pct = models.DecimalField(max_digits=5, decimal_places=2)
    price_per_hour = models.DecimalField(max_digits=10, decimal_places=4, help_text="Charged per hour, markup included")
    metered_until = models.DateTimeField(null=True, blank=True, help_text="Usage is in the ledger up to here")
    final_cost = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    warned_cap_at = models.DateTimeField(null=True, blank=True, help_text="When the 80 % warning of the pod's cap went out")

    # The provider's side.
    provision_attempt = models.PositiveSmallIntegerField(default=1, help_text="A new one per re-provision (failover, scale)")
    instance_id = models.CharField(max_length=120, blank=True)
    ssh_host = models.CharField(max_length=255, blank=True)
    ssh_port = models.PositiveIntegerField(null=True, blank=True)
    failover_offer = models.ForeignKey("providers.Offer", on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
                                       help_text="An equivalent offer proposed after a failure, for the user to accept")
    failed_providers = models.JSONField(default=list, help_text="Providers that failed this pod; failover skips them")
    activation_nonce = models.CharField(max_length=32, blank=True, help_text="Empty once the pod-ready link is used")

    # The worker's lease on this row (works on SQLite and PostgreSQL alike).
    lease_owner = models.CharField(max_length=80, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    running_since = models.DateTimeField(null=True, blank=True)
    uptime_seconds = models.PositiveIntegerField(default=0, help_text="Running time of finished running spells")
    terminated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["user", "request_key"], name="one_rental_per_request")]
        indexes = [models.Index(fields=["state", "lease_until"]), models.Index(fields=["user", "state"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.state})"

    @property
    def subject(self) -> str:
        """How the ledger names this pod (billing knows nothing of pods)."""
        return f"pod:{self.pk}"

    @property
    def instance_name(self) -> str:
        """The provider-side name, which is also the provisioning idempotency key."""
        return f"gpubroker-{self.pk}-{self.provision_attempt}"

    def uptime(self, now=None) -> int:  # type: ignore[no-untyped-def]
        now = now or timezone.now()
        running = int((now - self.running_since).total_seconds()) if self.running_since else 0
        return self.uptime_seconds + max(0, running)

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def price_per_day(self) -> Decimal:
        return self.price_per_hour * 24

    @property
    def ssh_command(self) -> str:
        if not self.ssh_host:
            return ""
        port = f" -p {self.ssh_port}" if self.ssh_port and self.ssh_port != 22 else ""
        return f"ssh root@{self.ssh_host}{port}"


class RentalEvent(models.Model):
    """One line of a pod's history: every transition, provider step, failover and warning."""

    class Kind(models.TextChoices):
        TRANSITION = "transition"
        STEP = "step"
        FAILOVER = "failover"
        WARNING = "warning"
        BILLING = "billing"

    rental = models.ForeignKey(Rental, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    from_state = models.CharField(max_length=20, blank=True)
    to_state = models.CharField(max_length=20, blank=True)
    message = models.CharField(max_length=400)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at", "pk"]


class Draft(models.Model):
    """The deploy wizard's answers so far, kept server-side: a refresh or Back loses nothing."""

    token = models.UUIDField(default=uuid.uuid4, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="pod_drafts")
    offer = models.ForeignKey("providers.Offer", on_delete=models.CASCADE, related_name="+")
    data = models.JSONField(default=dict)
    rental = models.OneToOneField(Rental, on_delete=models.SET_NULL, null=True, blank=True, related_name="draft")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)


class SpendCap(models.Model):
    """A user's monthly cap on pod spending (UTC calendar month); empty means none."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="pod_spend_cap")
    monthly_cap = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    warned_month = models.DateField(null=True, blank=True, help_text="First day of the month the 80 % warning went out")
