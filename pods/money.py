"""What a pod costs and whether the user may start one: markup, plan limit, balance, caps."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser

from billing import ledger
from billing.entitlements import current_plan
from pods.models import ACTIVE_STATES, Rental, SpendCap

HOURS_PER_MONTH = Decimal(730)  # 365 * 24 / 12, how clouds quote a month
WARN_SHARE = Decimal("0.8")


def markup_pct() -> Decimal:
    return Decimal(settings.POD_MARKUP_PERCENT)


def with_markup(provider_price: Decimal, pct: Decimal | None = None) -> Decimal:
    pct = markup_pct() if pct is None else pct
    return (provider_price * (1 + pct / 100)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Costs:
    provider_per_hour: Decimal
    markup_pct: Decimal
    per_hour: Decimal

    @property
    def per_day(self) -> Decimal:
        return self.per_hour * 24

    @property
    def per_month(self) -> Decimal:
        return self.per_hour * HOURS_PER_MONTH


def costs(provider_price: Decimal) -> Costs:
    return Costs(provider_price, markup_pct(), with_markup(provider_price))


def monthly_cap(user: AbstractBaseUser) -> Decimal | None:
    cap = SpendCap.objects.filter(user=user).values_list("monthly_cap", flat=True).first()
    return cap


@dataclass(frozen=True)
class Standing:
    """The user's money and limits at this moment, for the review step and the checks."""

    balance: Decimal
    pods_in_use: int
    max_pods: int | None
    plan_name: str
    monthly_cap: Decimal | None
    spent_this_month: Decimal

    @property
    def cap_left(self) -> Decimal | None:
        return None if self.monthly_cap is None else max(Decimal(0), self.monthly_cap - self.spent_this_month)

    def time_left(self, per_hour: Decimal) -> timedelta | None:
        """How long the balance (and the monthly cap, if lower) lasts at this burn."""
        if per_hour <= 0:
            return None
        money = self.balance if self.cap_left is None else min(self.balance, self.cap_left)
        return timedelta(hours=float(max(Decimal(0), money) / per_hour))


def duration_label(span: timedelta | None) -> str:
    """A span as people read it: "33 h 5 min", "12 min"."""
    if span is None:
        return ""
    minutes = int(span.total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def standing(user: AbstractBaseUser) -> Standing:
    plan = current_plan(user)
    return Standing(
        balance=ledger.balance(user),
        pods_in_use=Rental.objects.filter(user=user, state__in=ACTIVE_STATES).count(),
        max_pods=plan.max_pods,
        plan_name=plan.name,
        monthly_cap=monthly_cap(user),
        spent_this_month=ledger.spent_this_month(user),
    )


class Refused(Exception):
    """The pod may not start; `field` names what to change and the message says why."""

    def __init__(self, field: str, reason: str) -> None:
        self.field, self.reason = field, reason
        super().__init__(reason)


def check_can_start(user: AbstractBaseUser, per_hour: Decimal, pod_cap: Decimal | None, *, new_pod: bool = True) -> Standing:
    """Refused with the reason when the plan, the balance or a cap does not allow one more hour."""
    now = standing(user)
    if new_pod and now.max_pods is not None and now.pods_in_use >= now.max_pods:
        raise Refused("plan", f"Your {now.plan_name} plan allows {now.max_pods} pod{'s' if now.max_pods != 1 else ''} at a time and you have {now.pods_in_use}; terminate one or upgrade your plan.")
    if now.balance < per_hour:
        raise Refused("balance", f"A pod needs its first hour covered: {ledger.dollars(per_hour)} at this price, and your balance is {ledger.dollars(now.balance)}. Top up on the billing page.")
    if now.cap_left is not None and now.cap_left < per_hour:
        raise Refused("monthly_cap", f"Your monthly spend cap of {ledger.dollars(now.monthly_cap or 0)} has {ledger.dollars(now.cap_left)} left, less than one hour of this pod ({ledger.dollars(per_hour)}).")
    if pod_cap is not None and pod_cap < per_hour:
        raise Refused("spend_cap", f"The pod's spend cap ({ledger.dollars(pod_cap)}) is below one hour of it ({ledger.dollars(per_hour)}).")
    return now
