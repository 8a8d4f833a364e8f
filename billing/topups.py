"""Adding money to the prepaid balance: Stripe Checkout in payment mode, credited once.

The Checkout Session is made outside any transaction or lock, with an idempotency key built from
the click (a UUID in the form), so a double submit is one session. The money is credited by
`fulfil_topup`, called by the webhook and by the return page alike; the ledger reference is the
session id, so however often and in whatever order they come, it is credited once.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing import gateway, ledger
from billing.models import LedgerKind, TopUp

log = logging.getLogger("gpubroker.billing")
User = get_user_model()

MIN_TOPUP_CENTS = 500
MAX_TOPUP_CENTS = 1_000_000
PRESET_AMOUNTS_CENTS = (1000, 2500, 5000, 10000)
TOPUP_KIND = "balance_topup"


class TopUpRefused(Exception):
    """The top-up cannot be made as asked; the message says why (for the form)."""


def parse_amount(raw: str) -> int:
    """Whole dollars or dollars and cents from a form field, as cents; TopUpRefused when out of range."""
    text = (raw or "").strip().lstrip("$").replace(",", "")
    try:
        value = Decimal(text)
    except ArithmeticError:
        raise TopUpRefused("Enter an amount in dollars, e.g. 25 or 25.50.") from None
    if not value.is_finite() or value != value.quantize(Decimal("0.01")):
        raise TopUpRefused("Enter an amount in dollars, e.g. 25 or 25.50.")
    cents = int(value * 100)
    if cents < MIN_TOPUP_CENTS or cents > MAX_TOPUP_CENTS:
        raise TopUpRefused(f"Top up between ${MIN_TOPUP_CENTS // 100} and ${MAX_TOPUP_CENTS // 100:,}.")
    return cents


def start_topup(user: AbstractBaseUser, amount_cents: int, attempt: UUID, success_url: str, cancel_url: str) -> str:
    """The hosted Checkout address for a top-up of `amount_cents`; the same attempt gives the same one."""
    existing = TopUp.objects.filter(attempt=attempt).first()
    if existing:
        if existing.user_id != user.pk or existing.amount_cents != amount_cents:
            raise TopUpRefused("That top-up form was made for another amount; enter the amount again.")
        if existing.status == TopUp.Status.OPEN and existing.url:
            return existing.url
        raise TopUpRefused("That top-up has already ended; start a new one.")
    keys = gateway.keys_for_mode()
    api = gateway.client(keys)
    params: dict[str, object] = {
        "mode": "payment",
        "line_items": [{
            "quantity": 1,
            "price_data": {"currency": "usd", "unit_amount": amount_cents, "product_data": {"name": "GPUBROKER balance top-up"}},
        }],
        "success_url": success_url,
        "cancel_url": cancel_url,
        "client_reference_id": str(user.pk),
        "customer_email": user.email,
        "metadata": {"user_id": str(user.pk), "kind": TOPUP_KIND, "attempt": str(attempt), "amount_cents": str(amount_cents)},
    }
    # No transaction is open here: Stripe may take seconds, and nothing waits on a lock meanwhile.
    session = api.v1.checkout.sessions.create(params=params, options={"idempotency_key": f"gpubroker-topup-{attempt}"})
    try:
        TopUp.objects.get_or_create(stripe_id=session.id, defaults={
            "attempt": attempt, "user": user, "livemode": bool(session.livemode), "amount_cents": amount_cents, "url": session.url or "",
        })
    except IntegrityError:
        pass  # the other half of a double submit saved the same session first
    return session.url


def fulfil_topup(session: dict[str, Any]) -> str:
    """Credits a paid top-up session to the ledger once; safe to call any number of times."""
    metadata = session.get("metadata") or {}
    if session.get("mode") != "payment" or metadata.get("kind") != TOPUP_KIND:
        return "ignored: not a balance top-up"
    row = TopUp.objects.filter(stripe_id=session["id"]).select_related("user").first()
    reference = str(session.get("client_reference_id") or "")
    user = row.user if row else User.objects.filter(pk=int(reference)).first() if reference.isdigit() else None
    if user is None or reference != str(user.pk):
        log.error("top-up %s: client_reference_id %r does not name its user", session["id"], reference)
        return "refused: top-up for no known user"
    if session.get("status") == "expired":
        if row and row.status == TopUp.Status.OPEN:
            TopUp.objects.filter(pk=row.pk, status=TopUp.Status.OPEN).update(status=TopUp.Status.EXPIRED)
        return "expired"
    if session.get("status") != "complete" or session.get("payment_status") != "paid":
        return "waiting: not paid yet"
    amount = Decimal(int(session.get("amount_total") or 0)) / 100
    with transaction.atomic():
        entry, created = ledger.post(user, amount, LedgerKind.TOPUP, f"topup:{session['id']}", f"Top-up by card ({ledger.dollars(amount)})",
                                     livemode=bool(session.get("livemode")))
        if row is None:
            row = TopUp.objects.create(stripe_id=session["id"], attempt=UUID(metadata["attempt"]) if metadata.get("attempt") else uuid4(),
                                       user=user, livemode=bool(session.get("livemode")), amount_cents=int(session.get("amount_total") or 0))
        if row.status != TopUp.Status.PAID:
            TopUp.objects.filter(pk=row.pk).update(status=TopUp.Status.PAID, credited_at=timezone.now(), url="")
    return f"credited {ledger.dollars(amount)} to user {user.pk}" if created else "duplicate: top-up already credited"


def complete_return(user: AbstractBaseUser, session_id: str) -> TopUp | None:
    """The customer is back from Checkout: read the session from Stripe (no lock held), then credit."""
    row = TopUp.objects.filter(stripe_id=session_id, user=user).first()
    if row is None:
        return None
    if row.status == TopUp.Status.OPEN:
        fulfil_topup(gateway.client().v1.checkout.sessions.retrieve(session_id).to_dict())
        row.refresh_from_db()
    return row
