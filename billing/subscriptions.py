"""Keeps our Subscription and Invoice rows in step with Stripe.

Every write goes through `sync_subscription`: it reads the subscription from Stripe with no
transaction open and no lock held (a Stripe call may take 20 s × 3 tries; on SQLite an open
write transaction would stop every other writer), then saves it under a short lock of the
user's row. It stays order-safe by re-checking under that lock: if another sync saved the row
while this one was reading, this read may be the older one, so it reads again instead of
writing. Whatever order webhooks arrive in, and however many times, the row ends up as Stripe
has it now. Fulfilment (`fulfil_checkout`) is one idempotent function used by the webhook and by
the page the customer returns to.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone as dt_timezone
from typing import Any

import stripe
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from billing.models import CheckoutSession, Invoice, Plan, Subscription, SubscriptionStatus

log = logging.getLogger("gpubroker.billing")
User = get_user_model()
TERMINAL_INVOICE_STATUSES = {"paid", "void", "uncollectible"}


def stamp(ts: int | None) -> datetime | None:
    return datetime.fromtimestamp(int(ts), tz=dt_timezone.utc) if ts else None


def object_id(value: Any) -> str | None:
    """An id whether Stripe sent the bare id or the expanded object."""
    if isinstance(value, dict):
        return value.get("id")
    return value or None


def _period_end(data: dict[str, Any]) -> datetime | None:
    # basil and later: the period lives on each item; older API versions had it on the subscription.
    ends = [item.get("current_period_end") for item in (data.get("items") or {}).get("data") or [] if item.get("current_period_end")]
    return stamp(max(ends) if ends else data.get("current_period_end"))


def plan_for(data: dict[str, Any]) -> Plan | None:
    """The plan a Stripe subscription pays for: the price's plan first, then the subscription's."""
    for item in (data.get("items") or {}).get("data") or []:
        price = item.get("price") or {}
        slug = (price.get("metadata") or {}).get("plan")
        if slug and (plan := Plan.objects.filter(slug=slug).first()):
            return plan
        lookup_key = price.get("lookup_key")
        if lookup_key:
            for plan in Plan.objects.all():
                if plan.stripe_lookup_key == lookup_key:
                    return plan
    slug = (data.get("metadata") or {}).get("plan")
    return Plan.objects.filter(slug=slug).first() if slug else None


def _user_for(data: dict[str, Any], hint: AbstractBaseUser | None) -> AbstractBaseUser | None:
    existing = Subscription.objects.filter(stripe_id=data["id"]).select_related("user").first()
    if existing:
        return existing.user
    claimed = (data.get("metadata") or {}).get("user_id")
    if claimed and str(claimed).isdigit():
        user = User.objects.filter(pk=int(claimed)).first()
        if user and hint and user.pk != hint.pk:
            log.error("subscription %s: metadata names user %s but checkout names %s; not attributed", data["id"], user.pk, hint.pk)
            return None
        if user:
            return user
    if hint:
        return hint
    session = CheckoutSession.objects.filter(subscription_stripe_id=data["id"]).select_related("user").first()
    return session.user if session else None


def save_subscription(data: dict[str, Any], user: AbstractBaseUser, failed_at: datetime | None = None) -> Subscription | None:
    """Writes Stripe's view of a subscription into our row; the caller holds the user's lock."""
    plan = plan_for(data)
    if plan is None:
        log.error("subscription %s: no plan matches its price; left alone", data["id"])
        return None
    row = Subscription.objects.filter(stripe_id=data["id"]).first() or Subscription(user=user, stripe_id=data["id"])
    before = {f: getattr(row, f) for f in ("plan_id", "status", "current_period_end", "cancel_at_period_end", "ended_at", "payment_failed_at", "grace_until")}
    row.plan = plan
    row.status = data["status"]
    row.stripe_customer_id = object_id(data.get("customer")) or ""
    row.livemode = bool(data.get("livemode"))
    row.current_period_end = _period_end(data)
    row.cancel_at_period_end = bool(data.get("cancel_at_period_end"))
    row.ended_at = stamp(data.get("ended_at"))
    if row.status in (SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING):
        row.clear_payment_failure()
    elif row.status in (SubscriptionStatus.PAST_DUE, SubscriptionStatus.UNPAID):
        row.record_payment_failure(failed_at or timezone.now(), settings.BILLING_GRACE_DAYS)
    after = {f: getattr(row, f) for f in before}
    if row.pk is None or after != before:
        row.save()
    return row


def lock_user(user: AbstractBaseUser) -> None:
    """Serialises every billing write for one user (inside the caller's transaction)."""
    User.objects.select_for_update().filter(pk=user.pk).first()


# Reads that lose the race to another sync are retried this many times; then the other one's
# save stands (it read Stripe after this one started, so it is no older).
SYNC_READS = 5
_UNREAD = object()


class _Overtaken(Exception):
    """Another sync saved the subscription while this one was reading it from Stripe."""


def subscription_version(subscription_id: str) -> datetime | None:
    """What the row looks like before a Stripe read, to compare with after it (None: no row yet)."""
    return Subscription.objects.filter(stripe_id=subscription_id).values_list("updated_at", flat=True).first()


def _save_unless_overtaken(data: dict[str, Any], seen: datetime | None, user_hint: AbstractBaseUser | None, failed_at: datetime | None) -> Subscription | None:
    user = _user_for(data, user_hint)
    if user is None:
        return None
    with transaction.atomic():
        lock_user(user)
        if subscription_version(data["id"]) != seen:
            raise _Overtaken
        return save_subscription(data, user, failed_at)


def sync_subscription(api: stripe.StripeClient, subscription_id: str, *, user_hint: AbstractBaseUser | None = None, failed_at: datetime | None = None, data: dict[str, Any] | None = None, seen: Any = _UNREAD) -> Subscription | None:
    """Reads the subscription from Stripe, then saves it under a short lock; None if not ours.

    `data` is Stripe's answer the caller already has (e.g. from an update), with `seen`, the
    `subscription_version` taken before that call was made.
    """
    if seen is _UNREAD:
        data = None
    for _ in range(SYNC_READS):
        if data is None:
            seen = subscription_version(subscription_id)
            data = api.v1.subscriptions.retrieve(subscription_id).to_dict()
        try:
            return _save_unless_overtaken(data, seen, user_hint, failed_at)
        except _Overtaken:
            data = None  # a newer save may hold a newer state: read again rather than write ours
    log.warning("subscription %s: overtaken %d times while syncing; the latest save stands", subscription_id, SYNC_READS)
    return Subscription.objects.filter(stripe_id=subscription_id).first()


def record_invoice(data: dict[str, Any], subscription: Subscription) -> Invoice:
    """Saves an invoice; a paid (or void) invoice never goes back to open or failed."""
    with transaction.atomic():
        return _record_invoice_locked(data, subscription)


def _record_invoice_locked(data: dict[str, Any], subscription: Subscription) -> Invoice:
    row = Invoice.objects.select_for_update().filter(stripe_id=data["id"]).first()
    if row and row.status in TERMINAL_INVOICE_STATUSES:
        return row
    row = row or Invoice(stripe_id=data["id"], user=subscription.user)
    row.subscription = subscription
    row.status = data.get("status") or "open"
    row.number = data.get("number") or ""
    row.amount_due = int(data.get("amount_due") or 0)
    row.amount_paid = int(data.get("amount_paid") or 0)
    row.currency = data.get("currency") or "usd"
    row.period_start = stamp(data.get("period_start"))
    row.period_end = stamp(data.get("period_end"))
    row.hosted_invoice_url = data.get("hosted_invoice_url") or ""
    row.paid_at = stamp((data.get("status_transitions") or {}).get("paid_at"))
    row.created = stamp(data.get("created")) or timezone.now()
    if row.status != "paid" and data.get("attempted"):
        row.failure_message = f"Payment attempt {data.get('attempt_count') or 1} failed"
    elif row.status == "paid":
        row.failure_message = ""
    row.save()
    return row


def invoice_subscription_id(data: dict[str, Any]) -> str | None:
    # basil and later: invoice.parent.subscription_details.subscription; before: invoice.subscription.
    details = ((data.get("parent") or {}).get("subscription_details")) or {}
    return object_id(details.get("subscription")) or object_id(data.get("subscription"))


def fulfil_checkout(api: stripe.StripeClient, session: dict[str, Any]) -> str:
    """Gives the paid plan for a completed Checkout Session. Safe to call any number of times."""
    if session.get("mode") != "subscription":
        return "ignored: not a subscription checkout"
    row = CheckoutSession.objects.filter(stripe_id=session["id"]).select_related("user").first()
    reference = str(session.get("client_reference_id") or "")
    if row and reference != str(row.user_id):
        log.error("checkout %s: client_reference_id %r does not match the session's user %s", session["id"], reference, row.user_id)
        return "refused: client_reference_id does not match the user who started this checkout"
    user = row.user if row else (User.objects.filter(pk=int(reference)).first() if reference.isdigit() else None)
    if user is None:
        return "ignored: checkout for no known user"
    if session.get("status") == "expired":
        if row and row.status == CheckoutSession.Status.OPEN:
            row.status = CheckoutSession.Status.EXPIRED
            row.save(update_fields=["status"])
        return "expired"
    if session.get("status") != "complete" or session.get("payment_status") not in ("paid", "no_payment_required"):
        return "waiting: not paid yet"
    subscription_id = object_id(session.get("subscription"))
    if not subscription_id:
        return "ignored: completed checkout without a subscription"
    subscription = sync_subscription(api, subscription_id, user_hint=user)
    if subscription:
        others = Subscription.objects.filter(user=user, livemode=subscription.livemode).exclude(pk=subscription.pk)
        if any(other.grants_plan() for other in others):
            # Checkout is refused while a paid plan runs, so this needs a person: refund one of them.
            log.error("user %s now pays for two subscriptions (%s is the newest); refund the other", user.pk, subscription.stripe_id)
    if row and row.status != CheckoutSession.Status.COMPLETE:
        row.status = CheckoutSession.Status.COMPLETE
        row.completed_at = timezone.now()
        row.subscription_stripe_id = subscription_id
        row.save(update_fields=["status", "completed_at", "subscription_stripe_id"])
    return f"fulfilled: {subscription.plan.slug} for user {user.pk}" if subscription else "ignored: subscription not attributable"
