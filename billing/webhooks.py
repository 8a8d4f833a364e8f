"""Stripe webhook events: acted on, then stored once by id.

Acting reads from Stripe, so it runs with no transaction open (billing.subscriptions saves under
short locks of its own) and is idempotent: every handler re-reads Stripe and writes what Stripe
has now. A replayed event finds its stored row and changes nothing. A failure while acting
(Stripe unreachable) stores nothing, so Stripe's retry does the work again; two deliveries of
one event at once both act, harmlessly, and one stores it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import stripe

from billing.models import StripeEvent
from billing.topups import fulfil_topup
from billing.subscriptions import fulfil_checkout, invoice_subscription_id, record_invoice, stamp, sync_subscription

Event = dict[str, Any]
DUPLICATE = "duplicate: already processed"


def _checkout(api: stripe.StripeClient, event: Event) -> str:
    session = event["data"]["object"]
    if session.get("mode") == "payment":
        return fulfil_topup(session)
    return fulfil_checkout(api, session)


def _invoice(api: stripe.StripeClient, event: Event) -> str:
    invoice = event["data"]["object"]
    subscription_id = invoice_subscription_id(invoice)
    if not subscription_id:
        return "ignored: invoice for no subscription"
    failed_at = stamp(event["created"]) if event["type"] == "invoice.payment_failed" else None
    subscription = sync_subscription(api, subscription_id, failed_at=failed_at)
    if subscription is None:
        return "ignored: invoice for a subscription that is not ours"
    saved = record_invoice(invoice, subscription)
    return f"invoice {saved.status}; subscription {subscription.status}"


def _subscription(api: stripe.StripeClient, event: Event) -> str:
    subscription = sync_subscription(api, event["data"]["object"]["id"])
    return f"subscription {subscription.status}" if subscription else "ignored: subscription that is not ours"


HANDLERS: dict[str, Callable[[stripe.StripeClient, Event], str]] = {
    "checkout.session.completed": _checkout,
    "checkout.session.async_payment_succeeded": _checkout,
    "checkout.session.expired": _checkout,
    "invoice.paid": _invoice,
    "invoice.payment_failed": _invoice,
    "customer.subscription.created": _subscription,
    "customer.subscription.updated": _subscription,
    "customer.subscription.deleted": _subscription,
}


def process(api: stripe.StripeClient, event: Event) -> str:
    """Acts on `event` (verified by the caller) unless it was already, then stores it; returns what happened."""
    if StripeEvent.objects.filter(stripe_id=event["id"]).exists():
        return DUPLICATE
    handler = HANDLERS.get(event["type"])
    outcome = handler(api, event) if handler else "stored: not a type GPUBROKER acts on"
    _, created = StripeEvent.objects.get_or_create(
        stripe_id=event["id"],
        defaults={
            "type": event["type"],
            "livemode": bool(event.get("livemode")),
            "api_version": event.get("api_version") or "",
            "created": stamp(event.get("created")),
            "payload": event,
            "outcome": outcome[:200],
        },
    )
    return outcome if created else DUPLICATE
