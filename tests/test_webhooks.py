"""The webhook endpoint: signatures checked by the stripe SDK, every event stored once by id,
replays and out-of-order deliveries leaving the state as Stripe has it."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from django.test import Client

from billing.emulator.webhooks import signature_header
from billing.entitlements import current_plan
from billing.models import Invoice, StripeEvent, Subscription
from tests.accounts_and_billing import WEBHOOK_SECRET, Stripe, deliver, deliver_all, start_checkout, subscribe

pytestmark = pytest.mark.django_db


def paid_checkout_events(member: Client, stripe: Stripe, plan: str = "pro") -> list[tuple[str, str]]:
    """The signed events of a successful checkout, not yet delivered (the customer never returns)."""
    assert stripe.pay(start_checkout(member, plan), "4242424242424242").status_code == 303
    return stripe.events()


def state(user: Any) -> tuple[Any, ...]:
    subs = list(Subscription.objects.filter(user=user).values_list("stripe_id", "plan__slug", "status", "current_period_end", "cancel_at_period_end", "grace_until", "updated_at"))
    invoices = list(Invoice.objects.filter(user=user).values_list("stripe_id", "status", "amount_paid"))
    return (subs, invoices, current_plan(user).slug)


def test_a_bad_signature_is_400_and_changes_nothing(member: Client, user: Any, stripe_emulator: Stripe) -> None:
    events = paid_checkout_events(member, stripe_emulator)
    for body, _ in events:
        forged = signature_header(body, "whsec_not_the_secret")
        response = deliver(Client(), body, forged)
        assert response.status_code == 400
        assert "signature verification failed" in response.json()["error"]
    assert StripeEvent.objects.count() == 0
    assert not Subscription.objects.exists() and current_plan(user).slug == "free"


def test_a_tampered_body_a_missing_header_or_an_old_signature_is_400(member: Client, stripe_emulator: Stripe) -> None:
    body, signature = paid_checkout_events(member, stripe_emulator)[-1]
    tampered = body.replace('"paid"', '"unpaid"', 1)
    assert deliver(Client(), tampered, signature).status_code == 400
    assert deliver(Client(), body, None).status_code == 400
    stale = signature_header(body, WEBHOOK_SECRET, timestamp=int(time.time()) - 600)
    assert deliver(Client(), body, stale).status_code == 400
    assert deliver(Client(), "not json", signature_header("not json", WEBHOOK_SECRET)).status_code == 400
    assert StripeEvent.objects.count() == 0


def test_a_webhook_must_be_a_post(stripe_emulator: Stripe) -> None:
    assert Client().get("/billing/stripe/webhook/").status_code == 405


def test_one_event_delivered_ten_times_changes_the_state_once(member: Client, user: Any, stripe_emulator: Stripe) -> None:
    events = paid_checkout_events(member, stripe_emulator)
    completed = next(e for e in events if '"checkout.session.completed"' in e[0])
    first = deliver(Client(), *completed)
    assert first.json()["outcome"].startswith("fulfilled: pro")
    after_first = state(user)
    for _ in range(9):
        again = deliver(Client(), completed[0], signature_header(completed[0], WEBHOOK_SECRET))  # re-signed, as Stripe retries
        assert again.status_code == 200 and again.json()["outcome"] == "duplicate: already processed"
    assert state(user) == after_first
    assert StripeEvent.objects.count() == 1
    assert Subscription.objects.count() == 1


def test_every_event_is_stored_by_id_even_types_we_do_not_act_on(member: Client, stripe_emulator: Stripe) -> None:
    events = paid_checkout_events(member, stripe_emulator)
    deliver_all(Client(), events)
    stored = dict(StripeEvent.objects.values_list("stripe_id", "type"))
    assert stored == {json.loads(body)["id"]: json.loads(body)["type"] for body, _ in events}
    assert StripeEvent.objects.get(type="customer.created").outcome == "stored: not a type GPUBROKER acts on"


def test_checkout_events_in_reverse_order_give_the_same_result(member: Client, user: Any, stripe_emulator: Stripe) -> None:
    events = paid_checkout_events(member, stripe_emulator)
    deliver_all(Client(), list(reversed(events)))
    assert current_plan(user).slug == "pro"
    assert Invoice.objects.get(user=user).status == "paid"
    assert Subscription.objects.get(user=user).status == "active"


def test_a_late_update_after_the_deletion_does_not_bring_the_plan_back(member: Client, user: Any, stripe_emulator: Stripe) -> None:
    subscribe(member, stripe_emulator, "pro")
    sub = Subscription.objects.get(user=user)
    attempt = "6f1c1b7e-4a53-4d55-9e51-8f4d2c3a2b10"
    assert member.post("/billing/cancel/", {"attempt": attempt}).status_code == 302  # cancel at period end
    updated = stripe_emulator.events()
    stripe_emulator.renew(sub.stripe_id)  # the period ends: Stripe deletes the subscription
    deleted = stripe_emulator.events()
    deliver_all(Client(), deleted)
    deliver_all(Client(), updated)  # arrives late, says "active, cancel at period end"
    sub.refresh_from_db()
    assert sub.status == "canceled" and current_plan(user).slug == "free"


def test_a_failed_payment_arriving_after_the_recovery_does_not_start_a_grace_period(member: Client, user: Any, stripe_emulator: Stripe) -> None:
    subscribe(member, stripe_emulator, "pro")
    sub = Subscription.objects.get(user=user)
    stripe_emulator.renew(sub.stripe_id, card="4000000000000002")
    failed = stripe_emulator.events()
    stripe_emulator.state.subscription(sub.stripe_id)["status"] = "active"  # the retry went through at Stripe
    stripe_emulator.renew(sub.stripe_id)
    recovered = stripe_emulator.events()
    deliver_all(Client(), recovered)
    deliver_all(Client(), failed)
    sub.refresh_from_db()
    assert sub.status == "active" and sub.grace_until is None
    statuses = sorted(Invoice.objects.filter(user=user).values_list("status", flat=True))
    assert statuses == ["open", "paid", "paid"]


def test_a_paid_invoice_never_goes_back_to_failed(member: Client, user: Any, stripe_emulator: Stripe) -> None:
    subscribe(member, stripe_emulator, "pro")
    invoice = Invoice.objects.get(user=user)
    event = {
        "id": "evt_late_failure", "object": "event", "type": "invoice.payment_failed", "created": int(time.time()), "livemode": False,
        "data": {"object": {**stripe_emulator.state.db["invoice"][invoice.stripe_id], "status": "open", "amount_paid": 0}},
    }
    event["data"]["object"].pop("_failure", None)
    body = json.dumps(event)
    assert deliver(Client(), body, signature_header(body, WEBHOOK_SECRET)).status_code == 200
    invoice.refresh_from_db()
    assert invoice.status == "paid" and invoice.amount_paid == 4900


def test_a_live_mode_event_is_refused_in_sandbox(stripe_emulator: Stripe) -> None:
    body = json.dumps({"id": "evt_live", "object": "event", "type": "invoice.paid", "created": 1, "livemode": True, "data": {"object": {}}})
    response = deliver(Client(), body, signature_header(body, WEBHOOK_SECRET))
    assert response.status_code == 400 and "live-mode event" in response.json()["error"]
    assert not StripeEvent.objects.exists()


def test_when_stripe_cannot_be_reached_nothing_is_stored_and_stripe_is_asked_to_retry(member: Client, user: Any, stripe_emulator: Stripe, settings: Any) -> None:
    events = paid_checkout_events(member, stripe_emulator)
    settings.STRIPE_EMULATOR_URL = "http://127.0.0.1:9"  # Stripe unreachable while the event is handled
    completed = next(e for e in events if '"checkout.session.completed"' in e[0])
    response = deliver(Client(), *completed)
    assert response.status_code == 503
    assert not StripeEvent.objects.exists() and current_plan(user).slug == "free"
    settings.STRIPE_EMULATOR_URL = stripe_emulator.url  # back up: the retry does the work
    assert deliver(Client(), completed[0], signature_header(completed[0], WEBHOOK_SECRET)).json()["outcome"].startswith("fulfilled")
    assert current_plan(user).slug == "pro"


def test_a_webhook_while_payments_are_misconfigured_answers_a_generic_503_and_logs_the_reason(settings: Any, caplog: pytest.LogCaptureFixture) -> None:
    settings.STRIPE_TEST_SECRET_KEY = "sk_live_wrongkind0123456789"
    response = deliver(Client(), '{"id": "evt_1"}', "t=1,v1=00")
    assert response.status_code == 503
    assert "STRIPE_" not in response.content.decode() and "sk_live" not in response.content.decode()
    assert any("STRIPE_TEST_SECRET_KEY" in record.getMessage() for record in caplog.records)
    assert not any("wrongkind0123456789" in record.getMessage() for record in caplog.records)
