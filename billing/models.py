"""What a user may use, what they pay for it, and the trail of every payment event.

The subscription rows here, not Stripe, are what the product reads for plan limits: a request
never waits on Stripe. Webhooks and the checkout return page keep these rows in step with Stripe.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.validators import MinValueValidator
from django.db import IntegrityError, models, transaction
from django.utils import timezone

FREE_SLUG = "free"
# A failed renewal keeps the paid plan this long before the account falls back to Free.
DEFAULT_GRACE_DAYS = 7


class PlanQuerySet(models.QuerySet["Plan"]):
    def offered(self) -> PlanQuerySet:
        return self.filter(is_active=True).order_by("sort_order", "price_cents")

    def free(self) -> Plan:
        try:
            return self.get(slug=FREE_SLUG)
        except Plan.DoesNotExist:
            raise Plan.DoesNotExist(f"the {FREE_SLUG!r} plan is missing; run `manage.py migrate` (it is seeded by billing 0001)") from None


class Plan(models.Model):
    """A plan's price and limits, as data: staff edit these rows, code never hard-codes them."""

    slug = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=60)
    tagline = models.CharField(max_length=160, blank=True)
    price_cents = models.PositiveIntegerField(default=0, help_text="Per billing interval; 0 means free")
    currency = models.CharField(max_length=3, default="usd")
    interval = models.CharField(max_length=5, choices=[("month", "Monthly"), ("year", "Yearly")], default="month")
    # At least 1: the rate limiter has no meaning for a plan of zero requests per second.
    requests_per_second = models.PositiveIntegerField(validators=[MinValueValidator(1)], help_text="API requests per second (at least 1)")
    max_pods = models.PositiveIntegerField(null=True, blank=True, help_text="Empty means unlimited")
    webhooks = models.BooleanField(default=False, help_text="Signed webhooks for events")
    sort_order = models.PositiveSmallIntegerField(default=0)
    is_active = models.BooleanField(default=True, help_text="Offered on the plans page")

    objects = PlanQuerySet.as_manager()

    class Meta:
        ordering = ["sort_order", "price_cents"]
        constraints = [models.CheckConstraint(condition=models.Q(requests_per_second__gte=1), name="plan_requests_per_second_at_least_1")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_free(self) -> bool:
        return self.price_cents == 0

    @property
    def price(self) -> str:
        """The price as people read it: "$49" or "$49.50"."""
        dollars, cents = divmod(self.price_cents, 100)
        return f"${dollars:,}" + (f".{cents:02d}" if cents else "")

    @property
    def pods_label(self) -> str:
        return "Unlimited" if self.max_pods is None else f"{self.max_pods:,}"

    @property
    def stripe_lookup_key(self) -> str:
        """Names the Stripe Price for this plan's current amount; a new amount gets a new Price."""
        return f"gpubroker_{self.slug}_{self.interval}_{self.price_cents}_{self.currency}"


class SubscriptionStatus(models.TextChoices):
    INCOMPLETE = "incomplete"
    INCOMPLETE_EXPIRED = "incomplete_expired"
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    CANCELED = "canceled"
    UNPAID = "unpaid"
    PAUSED = "paused"


class Subscription(models.Model):
    """Our copy of a Stripe subscription: the source of truth for the plan a user gets."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="subscriptions")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    stripe_id = models.CharField(max_length=255, unique=True)
    stripe_customer_id = models.CharField(max_length=255)
    livemode = models.BooleanField(default=False)
    status = models.CharField(max_length=20, choices=SubscriptionStatus.choices)
    current_period_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    ended_at = models.DateTimeField(null=True, blank=True)
    payment_failed_at = models.DateTimeField(null=True, blank=True, help_text="First failed renewal not yet paid")
    grace_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "livemode", "status"])]

    def __str__(self) -> str:
        return f"{self.user} {self.plan} ({self.status})"

    def grants_plan(self, now: datetime | None = None) -> bool:
        """Does this subscription give its plan right now? Past-due ones do until grace ends."""
        now = now or timezone.now()
        if self.status in (SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING):
            return not (self.grace_until and now >= self.grace_until)
        if self.status == SubscriptionStatus.PAST_DUE:
            return bool(self.grace_until and now < self.grace_until)
        return False

    def in_grace(self, now: datetime | None = None) -> bool:
        return bool(self.payment_failed_at and self.grants_plan(now))

    def record_payment_failure(self, at: datetime, grace_days: int = DEFAULT_GRACE_DAYS) -> bool:
        """Starts the grace period on the first failure; later retries do not extend it."""
        if self.payment_failed_at:
            return False
        self.payment_failed_at = at
        self.grace_until = at + timedelta(days=grace_days)
        return True

    def clear_payment_failure(self) -> bool:
        if not self.payment_failed_at:
            return False
        self.payment_failed_at = None
        self.grace_until = None
        return True


class CheckoutSession(models.Model):
    """A Stripe Checkout Session we created: who asked for which plan, and how it ended."""

    class Status(models.TextChoices):
        OPEN = "open"
        COMPLETE = "complete"
        EXPIRED = "expired"

    stripe_id = models.CharField(max_length=255, unique=True)
    attempt = models.UUIDField(unique=True, help_text="One plans-page click; the Stripe idempotency key is built from it")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="checkout_sessions")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="+")
    livemode = models.BooleanField(default=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    url = models.TextField(blank=True)
    subscription_stripe_id = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]


class Invoice(models.Model):
    """Every invoice Stripe told us about: the payments history on the billing page."""

    stripe_id = models.CharField(max_length=255, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="invoices")
    subscription = models.ForeignKey(Subscription, on_delete=models.SET_NULL, null=True, blank=True, related_name="invoices")
    number = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=20, help_text="Stripe's status: draft, open, paid, uncollectible, void")
    amount_due = models.PositiveIntegerField(default=0)
    amount_paid = models.PositiveIntegerField(default=0)
    currency = models.CharField(max_length=3, default="usd")
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    hosted_invoice_url = models.URLField(max_length=2000, blank=True)
    failure_message = models.CharField(max_length=300, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(help_text="When Stripe created it")

    class Meta:
        ordering = ["-created"]

    @property
    def amount(self) -> str:
        cents = self.amount_paid if self.status == "paid" else self.amount_due
        return f"${cents // 100:,}.{cents % 100:02d}"


class StripeEvent(models.Model):
    """Every verified webhook event, stored once by id: a replay finds its row and changes nothing."""

    stripe_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100)
    livemode = models.BooleanField()
    api_version = models.CharField(max_length=40, blank=True)
    created = models.DateTimeField(help_text="When Stripe created the event")
    payload = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)
    deliveries = models.PositiveIntegerField(default=1)
    outcome = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.stripe_id} {self.type}"


API_KEY_PREFIX = "gpb_"
MAX_ACTIVE_KEYS = 20
# The shown prefix carries 32 random bits and is unique: a collision (1 in ~4 billion per pair)
# draws a new key rather than failing; eight draws in a row colliding means something is broken.
KEY_DRAWS = 8


class TooManyKeys(Exception):
    """The user already holds MAX_ACTIVE_KEYS active keys."""


def _hash_key(raw: str) -> str:
    # The keys are long random strings, so one fast hash is enough (unlike passwords).
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiKeyQuerySet(models.QuerySet["ApiKey"]):
    def active(self) -> ApiKeyQuerySet:
        return self.filter(revoked_at__isnull=True)

    def authenticate(self, raw: str) -> ApiKey | None:
        """The live key for `raw`, or None. Compares hashes in constant time."""
        parts = raw.strip().split("_")
        if len(parts) != 3 or f"{parts[0]}_" != API_KEY_PREFIX or not parts[1] or not parts[2]:
            return None
        key = self.active().select_related("user").filter(prefix=f"{API_KEY_PREFIX}{parts[1]}").first()
        if key is None or not hmac.compare_digest(key.key_hash, _hash_key(raw.strip())):
            return None
        if not key.user.is_active:
            return None
        return key


class ApiKey(models.Model):
    """A personal API key. Only its hash is kept; the key itself is shown once, at creation."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=60)
    prefix = models.CharField(max_length=16, unique=True, help_text="Shown to recognise the key, e.g. gpb_1a2b3c4d")
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})"

    @classmethod
    def issue(cls, user: models.Model, name: str) -> tuple[ApiKey, str]:
        """Creates a key for `user`; returns the row and the raw key, which is never stored.

        Raises TooManyKeys at the cap. The count and the insert run under the user's row lock, so
        two requests at once cannot both pass a count of 19.
        """
        with transaction.atomic():
            get_user_model().objects.select_for_update().filter(pk=user.pk).first()
            if cls.objects.filter(user=user).active().count() >= MAX_ACTIVE_KEYS:
                raise TooManyKeys(f"You already have {MAX_ACTIVE_KEYS} active keys; revoke one first.")
            for _ in range(KEY_DRAWS):
                prefix = f"{API_KEY_PREFIX}{secrets.token_hex(4)}"
                raw = f"{prefix}_{secrets.token_urlsafe(32).replace('_', 'x')}"
                try:
                    with transaction.atomic():  # a savepoint: a collision leaves the outer transaction usable
                        return cls.objects.create(user=user, name=name, prefix=prefix, key_hash=_hash_key(raw)), raw
                except IntegrityError:
                    if not cls.objects.filter(prefix=prefix).exists():
                        raise  # not a prefix collision
        raise IntegrityError(f"{KEY_DRAWS} API key prefixes in a row were already taken; the random source is broken")

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])

    @property
    def plan(self) -> Plan:
        """The plan tier requests with this key get: the owner's plan at this moment."""
        from billing.entitlements import current_plan

        return current_plan(self.user)



# ----- prepaid balance (pods draw on it) -------------------------------------------------------


class LedgerKind(models.TextChoices):
    TOPUP = "topup", "Top-up"
    USAGE = "usage", "Usage"
    REFUND = "refund", "Refund"
    RECEIPT = "receipt", "Receipt"  # a closing line (final cost of a pod); zero or a last charge


class AppendOnly(Exception):
    """Ledger rows are written once: corrections are new rows, never edits."""


class LedgerQuerySet(models.QuerySet["LedgerEntry"]):
    def update(self, **kwargs: object) -> int:
        raise AppendOnly("ledger rows cannot be updated; post a correcting entry instead")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AppendOnly("ledger rows cannot be deleted; post a correcting entry instead")


class LedgerEntry(models.Model):
    """One movement of a user's prepaid balance. The rows of a (user, mode) sum to its Balance.

    `reference` is unique: whoever posts names the event (a Checkout Session, a metering interval
    of a pod), so posting the same event twice is one row.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="ledger_entries")
    livemode = models.BooleanField(default=False)
    kind = models.CharField(max_length=10, choices=LedgerKind.choices)
    amount = models.DecimalField(max_digits=14, decimal_places=6, help_text="USD; positive adds to the balance")
    balance_after = models.DecimalField(max_digits=14, decimal_places=6)
    reference = models.CharField(max_length=200, unique=True)
    subject = models.CharField(max_length=100, blank=True, help_text="What it is for, e.g. pod:12 (billing knows no pods)")
    description = models.CharField(max_length=300)
    created_at = models.DateTimeField(default=timezone.now)

    objects = LedgerQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["user", "livemode", "created_at"]), models.Index(fields=["subject"])]

    def save(self, *args: object, **kwargs: object) -> None:
        if self.pk is not None:
            raise AppendOnly("ledger rows cannot be updated; post a correcting entry instead")
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise AppendOnly("ledger rows cannot be deleted; post a correcting entry instead")


class Balance(models.Model):
    """The running sum of a user's ledger in one mode; locked while a row is posted."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="balances")
    livemode = models.BooleanField(default=False)
    amount = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "livemode"], name="one_balance_per_user_and_mode")]


class TopUp(models.Model):
    """A Checkout Session in payment mode that adds to the balance once paid (confirmed by webhook)."""

    class Status(models.TextChoices):
        OPEN = "open"
        PAID = "paid"
        EXPIRED = "expired"

    stripe_id = models.CharField(max_length=255, unique=True)
    attempt = models.UUIDField(unique=True, help_text="One top-up click; the Stripe idempotency key is built from it")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="topups")
    livemode = models.BooleanField(default=False)
    amount_cents = models.PositiveIntegerField()
    currency = models.CharField(max_length=3, default="usd")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    url = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    credited_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
