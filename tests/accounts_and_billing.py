"""Fixtures for accounts and billing: verified users, and the Stripe emulator on a free port.

The emulator runs in a thread with no webhook URL: every event it would send is kept, signed,
for the test to deliver to the app through the test client (`deliver`), in any order, any
number of times.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.test import Client

from billing.emulator import EmulatorServer

WEBHOOK_SECRET = "whsec_tests_0123456789abcdef"
PASSWORD = "correct-horse-battery-staple"
CARD = {"cardExpiry": "12 / 34", "cardCvc": "123", "billingName": "Ada Lovelace"}


def seed_plans() -> None:
    """The plans billing's migration seeds, again: a transactional test's flush removed them."""
    import importlib

    from billing.models import Plan

    for plan in importlib.import_module("billing.migrations.0002_seed_plans").PLANS:
        Plan.objects.get_or_create(slug=plan["slug"], defaults=plan)


def make_user(email: str = "ada@example.com", verified: bool = True) -> Any:
    user = get_user_model().objects.create_user(username=email.split("@")[0], email=email, password=PASSWORD)
    EmailAddress.objects.create(user=user, email=email, verified=verified, primary=True)
    return user


@pytest.fixture
def user(db: None) -> Any:
    return make_user()


@pytest.fixture
def member(user: Any) -> Client:
    """A test client signed in as `user`."""
    client = Client()
    client.force_login(user)
    return client


@dataclass
class Stripe:
    """The emulator plus the moves a test makes with it."""

    server: EmulatorServer

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def state(self) -> Any:
        return self.server.emulator

    def events(self) -> list[tuple[str, str]]:
        """Signed deliveries made since the last call: (body, Stripe-Signature)."""
        return self.server.outbox()

    def pay(self, checkout_url: str, number: str, **fields: str) -> httpx.Response:
        """Submits the hosted checkout page as a customer would."""
        return httpx.post(checkout_url, data={**CARD, "cardNumber": number, **fields})

    def renew(self, subscription_id: str, card: str | None = None) -> httpx.Response:
        return httpx.post(f"{self.url}/_emulator/subscriptions/{subscription_id}/renew", data={"card": card or ""}, headers={"Authorization": "Bearer sk_test_x"})


@pytest.fixture
def stripe_emulator(settings: Any) -> Iterator[Stripe]:
    server = EmulatorServer("127.0.0.1", 0, webhook_secret=WEBHOOK_SECRET).start()
    settings.STRIPE_TEST_SECRET_KEY = ""
    settings.STRIPE_EMULATOR_URL = server.url
    settings.STRIPE_EMULATOR_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    try:
        yield Stripe(server)
    finally:
        server.stop()


def deliver(client: Client, body: str, signature: str | None) -> Any:
    headers = {"HTTP_STRIPE_SIGNATURE": signature} if signature is not None else {}
    return client.post("/billing/stripe/webhook/", data=body, content_type="application/json", **headers)


def deliver_all(client: Client, deliveries: list[tuple[str, str]]) -> list[Any]:
    responses = [deliver(client, body, signature) for body, signature in deliveries]
    assert [r.status_code for r in responses] == [200] * len(responses), [r.content for r in responses]
    return responses


def attempt_from(html: str) -> str:
    match = re.search(r'name="attempt" value="([0-9a-f-]{36})"', html)
    assert match, "the page has no checkout form"
    return match.group(1)


def start_checkout(client: Client, plan: str = "pro") -> str:
    """Clicks "Choose <plan>" on the plans page; returns the hosted checkout URL."""
    attempt = attempt_from(client.get("/plans/").content.decode())
    response = client.post(f"/billing/checkout/{plan}/", {"attempt": attempt})
    assert response.status_code == 302, response.content
    return response["Location"]


def local_path(url: str) -> str:
    """The path and query of an absolute URL on the test server."""
    return "/" + url.split("/", 3)[3]


def subscribe(client: Client, stripe: Stripe, plan: str = "pro") -> str:
    """A whole successful checkout: pay with 4242, come back, let every webhook arrive."""
    paid = stripe.pay(start_checkout(client, plan), "4242424242424242")
    assert paid.status_code == 303, paid.text
    assert client.get(local_path(paid.headers["location"])).status_code == 200
    deliver_all(client, stripe.events())
    return paid.headers["location"].rsplit("=", 1)[1]
