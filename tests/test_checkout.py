"""Stripe Checkout through the emulator: success, decline, insufficient funds, cancel."""

from __future__ import annotations

import html
from typing import Any

import pytest
from django.test import Client

from billing.entitlements import current_plan
from billing.models import CheckoutSession, Invoice, Subscription
from tests.accounts_and_billing import Stripe, attempt_from, deliver_all, local_path, start_checkout, subscribe

pytestmark = pytest.mark.django_db


def test_choosing_pro_opens_a_checkout_session_made_server_side(member: Client, user: Any, stripe_emulator: Stripe) -> None:
    url = start_checkout(member, "pro")
    assert url.startswith(f"{stripe_emulator.url}/c/pay/cs_test_")
    session = stripe_emulator.state.db["checkout.session"][url.rsplit("/", 1)[1]]
    assert session["mode"] == "subscription"
    assert session["client_reference_id"] == str(user.pk)
    assert session["metadata"]["plan"] == "pro" and session["metadata"]["user_id"] == str(user.pk)
    assert session["_subscription_metadata"] == {"user_id": str(user.pk), "plan": "pro"}
    assert session["customer_email"] == user.email
    assert session["success_url"].endswith("/billing/checkout-complete/?session_id={CHECKOUT_SESSION_ID}")
    price = stripe_emulator.state.db["price"][session["_line_items"][0]["price"]]
    assert (price["unit_amount"], price["recurring"]["interval"]) == (4900, "month")


def test_a_double_click_makes_one_session(member: Client, stripe_emulator: Stripe) -> None:
    attempt = attempt_from(member.get("/plans/").content.decode())
    first = member.post("/billing/checkout/pro/", {"attempt": attempt})
    second = member.post("/billing/checkout/pro/", {"attempt": attempt})
    assert first["Location"] == second["Location"]
    assert len(stripe_emulator.state.db["checkout.session"]) == 1
    assert CheckoutSession.objects.count() == 1


def test_paying_with_4242_gives_pro_at_once_and_the_webhooks_change_nothing_more(member: Client, user: Any, stripe_emulator: Stripe) -> None:
    paid = stripe_emulator.pay(start_checkout(member, "pro"), "4242 4242 4242 4242")
    assert paid.status_code == 303
    success = member.get(local_path(paid.headers["location"]))
    assert success.status_code == 200 and "Payment received" in success.content.decode()
    assert current_plan(user).slug == "pro"
    subscription = Subscription.objects.get(user=user)
    before = (subscription.status, subscription.current_period_end, subscription.updated_at)
    deliver_all(member, stripe_emulator.events())
    subscription.refresh_from_db()
    assert (subscription.status, subscription.current_period_end, subscription.updated_at) == before
    assert Invoice.objects.get(user=user).amount_paid == 4900
    assert CheckoutSession.objects.get(user=user).status == "complete"


def test_the_webhook_alone_fulfils_when_the_customer_never_comes_back(member: Client, user: Any, stripe_emulator: Stripe) -> None:
    stripe_emulator.pay(start_checkout(member, "enterprise"), "4242424242424242")
    deliver_all(Client(), stripe_emulator.events())
    assert current_plan(user).slug == "enterprise"
    assert "Enterprise" in member.get("/dashboard/").content.decode()


@pytest.mark.parametrize(
    ("card", "message"),
    [("4000000000000002", "Your card was declined."), ("4000000000009995", "Your card has insufficient funds.")],
)
def test_a_declined_card_shows_the_failure_and_leaves_the_plan_unchanged(member: Client, user: Any, stripe_emulator: Stripe, card: str, message: str) -> None:
    url = start_checkout(member, "pro")
    declined = stripe_emulator.pay(url, card)
    assert declined.status_code == 402
    assert message in declined.text and 'role="alert"' in declined.text
    assert stripe_emulator.events() == []  # Stripe sends nothing for a decline
    assert current_plan(user).slug == "free"
    assert not Subscription.objects.exists()
    # The session stays open: the customer may try another card.
    assert stripe_emulator.pay(url, "4242424242424242").status_code == 303


def test_bad_card_details_get_field_errors(stripe_emulator: Stripe, member: Client) -> None:
    url = start_checkout(member)
    response = stripe_emulator.pay(url, "4242424242424241", cardExpiry="01 / 20", cardCvc="1", billingName="")
    assert response.status_code == 400
    for error in ("Your card number is invalid.", "Your card's expiration year is in the past.", "Your card's security code is incomplete.", "Your name is incomplete."):
        assert error in html.unescape(response.text)


def test_cancelling_checkout_expires_the_session_and_charges_nothing(member: Client, user: Any, stripe_emulator: Stripe) -> None:
    url = start_checkout(member, "pro")
    session = stripe_emulator.state.db["checkout.session"][url.rsplit("/", 1)[1]]
    page = member.get(local_path(session["cancel_url"]))
    assert page.status_code == 200 and "Nothing was charged" in page.content.decode()
    assert session["status"] == "expired"
    assert CheckoutSession.objects.get(user=user).status == "expired"
    assert stripe_emulator.pay(url, "4242424242424242").status_code == 410  # can no longer be paid
    deliver_all(member, stripe_emulator.events())  # checkout.session.expired
    assert current_plan(user).slug == "free"


def test_a_new_checkout_expires_the_previous_open_one(member: Client, stripe_emulator: Stripe) -> None:
    first = start_checkout(member, "pro")
    start_checkout(member, "enterprise")
    assert stripe_emulator.state.db["checkout.session"][first.rsplit("/", 1)[1]]["status"] == "expired"


def test_a_paid_member_is_sent_to_the_billing_page_not_a_second_checkout(member: Client, stripe_emulator: Stripe) -> None:
    subscribe(member, stripe_emulator, "pro")
    response = member.post("/billing/checkout/enterprise/", {"attempt": "6f1c1b7e-4a53-4d55-9e51-8f4d2c3a2b10"})
    assert response.status_code == 302 and response["Location"] == "/billing/"
    assert len(stripe_emulator.state.db["checkout.session"]) == 1


def test_the_success_page_of_someone_elses_session_is_404(member: Client, stripe_emulator: Stripe) -> None:
    url = start_checkout(member)
    from tests.accounts_and_billing import make_user

    other = Client()
    other.force_login(make_user("eve@example.com"))
    response = other.get(f"/billing/checkout-complete/?session_id={url.rsplit('/', 1)[1]}")
    assert response.status_code == 404


def test_checkout_without_a_click_reference_is_400(member: Client, stripe_emulator: Stripe) -> None:
    response = member.post("/billing/checkout/pro/", {"attempt": "not-a-uuid"})
    assert response.status_code == 400 and "reload the page" in response.content.decode()


def test_checkout_needs_a_signed_in_user(stripe_emulator: Stripe) -> None:
    response = Client().post("/billing/checkout/pro/", {"attempt": "6f1c1b7e-4a53-4d55-9e51-8f4d2c3a2b10"})
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_free_cannot_be_bought(member: Client, stripe_emulator: Stripe) -> None:
    response = member.post("/billing/checkout/free/", {"attempt": "6f1c1b7e-4a53-4d55-9e51-8f4d2c3a2b10"})
    assert response.status_code == 409


def test_stripe_unreachable_is_a_clear_502_not_a_500(member: Client, settings: Any) -> None:
    settings.STRIPE_TEST_SECRET_KEY = ""
    settings.STRIPE_EMULATOR_URL = "http://127.0.0.1:9"  # nothing listens there
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    response = member.post("/billing/checkout/pro/", {"attempt": "6f1c1b7e-4a53-4d55-9e51-8f4d2c3a2b10"})
    assert response.status_code == 502
    assert "could not reach the payment provider" in response.content.decode()
