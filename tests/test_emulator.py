"""The Stripe emulator speaks Stripe: the official SDK talks to it, its webhooks verify with the
SDK's own verifier, errors and idempotency behave as Stripe documents them."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
import stripe

from billing.emulator import cards
from billing.emulator.params import decode
from billing.emulator.state import add_interval
from billing.emulator.webhooks import WebhookSender, signature_header
from tests.accounts_and_billing import WEBHOOK_SECRET, Stripe


@pytest.fixture
def sdk(stripe_emulator: Stripe) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_emulator", base_addresses={"api": stripe_emulator.url}, max_network_retries=0)


def pro_price(sdk: stripe.StripeClient) -> Any:
    return sdk.v1.prices.create(params={"currency": "usd", "unit_amount": 4900, "recurring": {"interval": "month"}, "lookup_key": "pro_monthly", "product_data": {"name": "Pro"}})


def paid_subscription(sdk: stripe.StripeClient, stripe_emulator: Stripe) -> Any:
    session = sdk.v1.checkout.sessions.create(params={"mode": "subscription", "line_items": [{"price": pro_price(sdk).id, "quantity": 1}], "success_url": "http://app/ok?s={CHECKOUT_SESSION_ID}", "customer_email": "ada@example.com", "subscription_data": {"metadata": {"plan": "pro"}}})
    assert stripe_emulator.pay(session.url, "4242424242424242").status_code == 303
    return sdk.v1.checkout.sessions.retrieve(session.id, params={"expand": ["subscription"]})


def test_the_emulators_webhook_signatures_verify_with_the_stripe_sdk(sdk: stripe.StripeClient, stripe_emulator: Stripe) -> None:
    paid_subscription(sdk, stripe_emulator)
    deliveries = stripe_emulator.events()
    assert [json.loads(body)["type"] for body, _ in deliveries] == ["customer.created", "customer.subscription.created", "invoice.paid", "checkout.session.completed"]
    for body, header in deliveries:
        event = stripe.Webhook.construct_event(body, header, WEBHOOK_SECRET)
        assert event.id.startswith("evt_") and event.livemode is False and event.object == "event"
        with pytest.raises(stripe.SignatureVerificationError):
            stripe.Webhook.construct_event(body, header, "whsec_someone_else")


def test_the_signature_matches_the_sdks_own_signer() -> None:
    payload = '{"id": "evt_1"}'
    assert signature_header(payload, "whsec_x", timestamp=1700000000) == stripe.WebhookSignature.generate_signature_header(payload, "whsec_x", timestamp=1700000000)


def test_the_sender_posts_signed_events_and_retries_until_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("billing.emulator.webhooks.RETRY_DELAYS_SECONDS", (0, 0, 0))
    calls: list[dict[str, Any]] = []

    def post(url: str, content: bytes, headers: dict[str, str], timeout: float) -> httpx.Response:
        calls.append(headers)
        stripe.Webhook.construct_event(content, headers["Stripe-Signature"], "whsec_x")
        return httpx.Response(500 if len(calls) < 3 else 200)

    sender = WebhookSender("whsec_x", "http://app/webhook/", post=post)
    sender.send({"id": "evt_1", "type": "invoice.paid", "object": "event"})
    deadline = time.monotonic() + 30  # a bounded wait for the sender's thread, not a timing
    while not sender.delivered and time.monotonic() < deadline:
        time.sleep(0.01)
    sender.close()
    assert sender.delivered == ["evt_1"] and len(calls) == 3


def test_a_completed_checkout_has_stripes_shapes(sdk: stripe.StripeClient, stripe_emulator: Stripe) -> None:
    session = paid_subscription(sdk, stripe_emulator)
    assert (session.status, session.payment_status, session.mode) == ("complete", "paid", "subscription")
    assert session.id.startswith("cs_test_") and session.customer.startswith("cus_")
    subscription = session.subscription  # expanded
    assert subscription.object == "subscription" and subscription.status == "active"
    item = subscription["items"].data[0]
    assert item.price.unit_amount == 4900 and item.current_period_end == add_interval(item.current_period_start, "month")
    invoice = sdk.v1.invoices.retrieve(session.invoice)
    assert invoice.status == "paid" and invoice.parent.subscription_details.subscription == subscription.id


def test_a_missing_object_is_an_invalid_request_error_with_code_resource_missing(sdk: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as error:
        sdk.v1.subscriptions.retrieve("sub_nope")
    assert error.value.code == "resource_missing" and error.value.http_status == 404 and error.value.param == "id"


def test_a_missing_param_names_it(sdk: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as error:
        sdk.v1.checkout.sessions.create(params={"mode": "subscription", "success_url": "http://app/ok"})
    assert error.value.code == "parameter_missing" and error.value.param == "line_items"


def test_an_idempotency_key_replays_the_first_answer_and_refuses_other_params(sdk: stripe.StripeClient, stripe_emulator: Stripe) -> None:
    first = sdk.v1.customers.create(params={"email": "a@example.com"}, options={"idempotency_key": "k1"})
    again = sdk.v1.customers.create(params={"email": "a@example.com"}, options={"idempotency_key": "k1"})
    assert first.id == again.id and len(stripe_emulator.state.db["customer"]) == 1
    with pytest.raises(stripe.IdempotencyError):
        sdk.v1.customers.create(params={"email": "b@example.com"}, options={"idempotency_key": "k1"})


def test_keys_are_checked(stripe_emulator: Stripe) -> None:
    with pytest.raises(stripe.AuthenticationError):
        stripe.StripeClient("sk_live_real", base_addresses={"api": stripe_emulator.url}, max_network_retries=0).v1.customers.create(params={})
    assert httpx.get(f"{stripe_emulator.url}/v1/prices").status_code == 401


def test_prices_are_found_by_lookup_key(sdk: stripe.StripeClient) -> None:
    price = pro_price(sdk)
    found = sdk.v1.prices.list(params={"lookup_keys": ["pro_monthly"], "active": True})
    assert [p.id for p in found.data] == [price.id]
    with pytest.raises(stripe.InvalidRequestError, match="already uses that lookup key"):
        pro_price(sdk)


def test_expire_closes_an_open_session_only(sdk: stripe.StripeClient, stripe_emulator: Stripe) -> None:
    session = sdk.v1.checkout.sessions.create(params={"mode": "subscription", "line_items": [{"price": pro_price(sdk).id}], "success_url": "http://app/ok"})
    expired = sdk.v1.checkout.sessions.expire(session.id)
    assert expired.status == "expired" and expired.url is None
    with pytest.raises(stripe.InvalidRequestError, match="can be expired"):
        sdk.v1.checkout.sessions.expire(session.id)
    assert [json.loads(b)["type"] for b, _ in stripe_emulator.events()] == ["checkout.session.expired"]


def test_subscription_update_and_cancel_emit_events(sdk: stripe.StripeClient, stripe_emulator: Stripe) -> None:
    subscription = paid_subscription(sdk, stripe_emulator).subscription
    stripe_emulator.events()
    updated = sdk.v1.subscriptions.update(subscription.id, params={"cancel_at_period_end": True})
    assert updated.cancel_at_period_end is True
    canceled = sdk.v1.subscriptions.cancel(subscription.id)
    assert canceled.status == "canceled"
    kinds = [(json.loads(b)["type"], json.loads(b)["data"].get("previous_attributes", {}).get("cancel_at_period_end")) for b, _ in stripe_emulator.events()]
    assert kinds == [("customer.subscription.updated", False), ("customer.subscription.deleted", None)]


def test_bracket_params_decode_as_stripe_sends_them() -> None:
    assert decode("line_items[0][price]=p1&line_items[0][quantity]=1&metadata[plan]=pro&expand[0]=subscription&mode=subscription") == {
        "line_items": [{"price": "p1", "quantity": "1"}], "metadata": {"plan": "pro"}, "expand": ["subscription"], "mode": "subscription",
    }
    assert decode("expand[]=a&expand[]=b") == {"expand": ["a", "b"]}


def test_test_cards_behave_as_documented() -> None:
    assert cards.outcome("4242424242424242") is None
    assert cards.outcome("4000000000000002").decline_code == "generic_decline"
    assert cards.outcome("4000000000009995").decline_code == "insufficient_funds"
    assert cards.outcome("4111111111111111").decline_code == "test_mode_live_card"
    assert cards.luhn_ok("4242424242424242") and not cards.luhn_ok("4242424242424241")


def test_months_roll_like_stripe_bills_them() -> None:
    jan31 = 1738281600  # 2025-01-31 00:00 UTC
    assert add_interval(jan31, "month") == 1740700800  # 2025-02-28
    assert add_interval(jan31, "year") == 1769817600  # 2026-01-31


def test_the_hosted_page_is_a_real_form(sdk: stripe.StripeClient, stripe_emulator: Stripe) -> None:
    session = sdk.v1.checkout.sessions.create(params={"mode": "subscription", "line_items": [{"price": pro_price(sdk).id}], "success_url": "http://app/ok", "cancel_url": "http://app/back"})
    page = httpx.get(session.url).text
    for label in ('for="cardNumber"', 'for="cardExpiry"', 'for="cardCvc"', 'for="billingName"', 'for="email"'):
        assert label in page
    assert "$49.00" in page and 'href="http://app/back"' in page
    assert httpx.get(f"{stripe_emulator.url}/c/pay/cs_test_unknown").status_code == 404


def _raw_request(url: str, head: str) -> bytes:
    """Sends `head` as-is on a socket and returns what the emulator answers (bounded wait)."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(head.encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer


@pytest.mark.parametrize("length", ["-1", "+5", "abc", " -20 "])
def test_a_malformed_content_length_is_refused_at_once_instead_of_blocking(stripe_emulator: Stripe, length: str) -> None:
    answer = _raw_request(stripe_emulator.url, f"POST /v1/customers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk_test_x\r\nContent-Length: {length}\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]


def test_a_malformed_content_length_on_a_hosted_page_is_a_400_not_a_500(stripe_emulator: Stripe) -> None:
    answer = _raw_request(stripe_emulator.url, "POST /c/pay/cs_test_nothing HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]


def test_an_idempotency_key_is_forgotten_after_24_hours_like_at_stripe(sdk: stripe.StripeClient, stripe_emulator: Stripe) -> None:
    now = [1_700_000_000.0]
    stripe_emulator.state.idempotency.clock = lambda: now[0]
    first = sdk.v1.customers.create(params={"email": "a@example.com"}, options={"idempotency_key": "day-old"})
    now[0] += 24 * 3600 - 1
    assert sdk.v1.customers.create(params={"email": "a@example.com"}, options={"idempotency_key": "day-old"}).id == first.id
    now[0] += 2
    assert sdk.v1.customers.create(params={"email": "a@example.com"}, options={"idempotency_key": "day-old"}).id != first.id
    assert len(stripe_emulator.state.idempotency) == 1


def test_the_idempotency_store_keeps_at_most_its_cap_dropping_the_oldest_answers() -> None:
    from billing.emulator.state import IdempotencyStore

    store = IdempotencyStore(clock=lambda: 0.0, max_keys=3)
    for n in range(10):
        store.put(f"key-{n}", "fingerprint", 200, {"n": n})
    assert len(store) == 3
    assert store.get("key-6") is None and store.get("key-9") == ("fingerprint", 200, {"n": 9})
