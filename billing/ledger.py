"""The prepaid balance: every movement is one append-only LedgerEntry, posted under a row lock.

`post` is the only writer. It locks the user's Balance row, refuses a reference already used
(the same event posted twice is one row), appends the entry with the balance after it and moves
the Balance by the same amount, in one transaction: the rows of a (user, mode) always sum to it.
No outside call happens here; callers talk to Stripe or providers before or after.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone as dt_timezone
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from billing.entitlements import platform_is_live
from billing.models import Balance, LedgerEntry, LedgerKind

CENT = Decimal("0.01")


def _mode(livemode: bool | None) -> bool:
    return platform_is_live() if livemode is None else livemode


def balance(user: AbstractBaseUser, livemode: bool | None = None) -> Decimal:
    row = Balance.objects.filter(user=user, livemode=_mode(livemode)).values_list("amount", flat=True).first()
    return row if row is not None else Decimal("0")


def entries(user: AbstractBaseUser, livemode: bool | None = None) -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(user=user, livemode=_mode(livemode)))


def ledger_sum(user: AbstractBaseUser, livemode: bool | None = None) -> Decimal:
    total = LedgerEntry.objects.filter(user=user, livemode=_mode(livemode)).aggregate(total=Sum("amount"))["total"]
    return total if total is not None else Decimal("0")


def post(user: AbstractBaseUser, amount: Decimal, kind: LedgerKind | str, reference: str, description: str, *,
         subject: str = "", livemode: bool | None = None, at: datetime | None = None) -> tuple[LedgerEntry, bool]:
    """Appends one entry (or finds the one with this reference); returns (entry, created)."""
    livemode = _mode(livemode)
    amount = Decimal(amount).quantize(Decimal("0.000001"))
    with transaction.atomic():
        Balance.objects.get_or_create(user=user, livemode=livemode)
        held = Balance.objects.select_for_update().get(user=user, livemode=livemode)
        existing = LedgerEntry.objects.filter(reference=reference).first()
        if existing is not None:
            return existing, False
        held.amount += amount
        try:
            with transaction.atomic():  # a concurrent poster of the same reference in another mode
                entry = LedgerEntry.objects.create(
                    user=user, livemode=livemode, kind=kind, amount=amount, balance_after=held.amount,
                    reference=reference, subject=subject, description=description[:300], created_at=at or timezone.now(),
                )
        except IntegrityError:
            return LedgerEntry.objects.get(reference=reference), False
        held.save(update_fields=["amount", "updated_at"])
        return entry, True


@dataclass(frozen=True)
class Spend:
    """What a user spent in the calendar month (usage and receipts, net of refunds)."""

    month_start: datetime
    amount: Decimal


def month_start(now: datetime | None = None) -> datetime:
    now = (now or timezone.now()).astimezone(dt_timezone.utc)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def spent_this_month(user: AbstractBaseUser, livemode: bool | None = None, now: datetime | None = None, subject: str | None = None) -> Decimal:
    """Money drawn for resources since the 1st (UTC): minus the sum of usage, receipts and refunds."""
    rows = LedgerEntry.objects.filter(user=user, livemode=_mode(livemode), created_at__gte=month_start(now),
                                      kind__in=(LedgerKind.USAGE, LedgerKind.RECEIPT, LedgerKind.REFUND))
    if subject is not None:
        rows = rows.filter(subject=subject)
    total = rows.aggregate(total=Sum("amount"))["total"] or Decimal("0")
    return max(Decimal("0"), -total)


def spent_on(subject: str, livemode: bool | None = None) -> Decimal:
    """Net money drawn for one subject (a pod), over its whole life."""
    total = LedgerEntry.objects.filter(subject=subject, livemode=_mode(livemode),
                                       kind__in=(LedgerKind.USAGE, LedgerKind.RECEIPT, LedgerKind.REFUND)).aggregate(total=Sum("amount"))["total"]
    return max(Decimal("0"), -(total or Decimal("0")))


def dollars(amount: Decimal) -> str:
    """An amount as people read it: "$12.34", "-$0.05"."""
    rounded = Decimal(amount).quantize(CENT)
    return f"{'-' if rounded < 0 else ''}${abs(rounded):,.2f}"
