"""What a user's plan is right now, read from our database only (never a call to Stripe).

Subscriptions made in sandbox (test mode) count only while the platform is in sandbox, and live
ones only in live: switching modes never carries a test payment into production.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.utils import timezone

from billing.models import Plan, Subscription, SubscriptionStatus

LIVE = "live"


def platform_is_live() -> bool:
    """The one place billing asks for the platform mode."""
    return getattr(settings, "GPUBROKER_MODE", "sandbox") == LIVE


@dataclass(frozen=True)
class Standing:
    """A user's plan and how they stand with their payments, for pages and the API."""

    plan: Plan
    subscription: Subscription | None  # the one granting `plan`, or the latest if none does
    now: datetime

    @property
    def in_grace(self) -> bool:
        return bool(self.subscription and self.subscription.plan_id == self.plan.pk and self.subscription.in_grace(self.now))

    @property
    def lapsed(self) -> bool:
        """The latest paid subscription stopped giving its plan because a renewal was never paid."""
        sub = self.subscription
        return bool(sub and sub.payment_failed_at and not sub.grants_plan(self.now))

    @property
    def renews_at(self) -> datetime | None:
        sub = self.subscription
        if sub and sub.plan_id == self.plan.pk and not sub.cancel_at_period_end:
            return sub.current_period_end
        return None

    @property
    def ends_at(self) -> datetime | None:
        sub = self.subscription
        if sub and sub.plan_id == self.plan.pk and sub.cancel_at_period_end:
            return sub.current_period_end
        return None

    @property
    def payment_status(self) -> tuple[str, str]:
        """(tone, words) for the badge on the billing page."""
        if self.plan.is_free:
            return ("danger", "Renewal unpaid: moved to Free") if self.lapsed else ("neutral", "No payment needed")
        if self.in_grace:
            return "warning", "Renewal failed"
        if self.ends_at:
            return "neutral", "Cancels at period end"
        return "success", "Paid"


def standing(user: AbstractBaseUser | AnonymousUser, now: datetime | None = None) -> Standing:
    now = now or timezone.now()
    free = Plan.objects.free()
    if not user.is_authenticated:
        return Standing(plan=free, subscription=None, now=now)
    subs = list(
        Subscription.objects.filter(user=user, livemode=platform_is_live())
        .exclude(status__in=[SubscriptionStatus.INCOMPLETE, SubscriptionStatus.INCOMPLETE_EXPIRED])
        .select_related("plan")
        .order_by("-created_at")
    )
    for sub in subs:
        if sub.grants_plan(now):
            return Standing(plan=sub.plan, subscription=sub, now=now)
    return Standing(plan=free, subscription=subs[0] if subs else None, now=now)


def current_plan(user: AbstractBaseUser | AnonymousUser) -> Plan:
    return standing(user).plan
