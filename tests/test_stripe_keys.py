"""Stripe keys are chosen by the platform mode; a key of the wrong mode is refused, clearly."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import Client

from billing import gateway

pytestmark = pytest.mark.django_db
LIVE_SECRET = "sk_live_51AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
TEST_SECRET = "sk_test_51AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"


@pytest.fixture
def live(settings: Any) -> Any:
    settings.GPUBROKER_MODE = "live"
    return settings


def test_sandbox_without_test_keys_uses_the_emulator(settings: Any) -> None:
    settings.STRIPE_TEST_SECRET_KEY = ""
    settings.STRIPE_EMULATOR_URL = "http://127.0.0.1:4999"
    keys = gateway.keys_for_mode()
    assert keys.emulator and keys.api_base == "http://127.0.0.1:4999" and not keys.livemode
    assert keys.secret_key.startswith("sk_test_") and keys.webhook_secret.startswith("whsec_")


def test_sandbox_with_test_keys_talks_to_stripe_itself(settings: Any) -> None:
    settings.STRIPE_TEST_SECRET_KEY = TEST_SECRET
    settings.STRIPE_TEST_WEBHOOK_SECRET = "whsec_abc"
    keys = gateway.keys_for_mode()
    assert not keys.emulator and keys.api_base is None and keys.secret_key == TEST_SECRET


def test_sandbox_refuses_a_live_key(settings: Any) -> None:
    settings.STRIPE_TEST_SECRET_KEY = LIVE_SECRET
    with pytest.raises(gateway.StripeNotConfigured, match=r"SANDBOX refuses live keys: STRIPE_TEST_SECRET_KEY holds a live key \(sk_live_…\)"):
        gateway.keys_for_mode()


def test_live_refuses_test_keys_with_a_clear_message(live: Any) -> None:
    live.STRIPE_LIVE_SECRET_KEY = TEST_SECRET
    live.STRIPE_LIVE_WEBHOOK_SECRET = "whsec_abc"
    with pytest.raises(gateway.StripeNotConfigured) as refused:
        gateway.keys_for_mode()
    message = str(refused.value)
    assert message == "LIVE mode refuses test keys: STRIPE_LIVE_SECRET_KEY holds a test key (sk_test_…); set a live key (sk_live_… or rk_live_…)"
    assert TEST_SECRET not in message  # never the key itself


def test_live_refuses_a_test_publishable_key(live: Any) -> None:
    live.STRIPE_LIVE_SECRET_KEY = LIVE_SECRET
    live.STRIPE_LIVE_PUBLISHABLE_KEY = "pk_test_123456"
    live.STRIPE_LIVE_WEBHOOK_SECRET = "whsec_abc"
    with pytest.raises(gateway.StripeNotConfigured, match="STRIPE_LIVE_PUBLISHABLE_KEY holds a test key"):
        gateway.keys_for_mode()


def test_live_never_talks_to_another_address(live: Any) -> None:
    live.STRIPE_LIVE_SECRET_KEY = LIVE_SECRET
    live.STRIPE_LIVE_WEBHOOK_SECRET = "whsec_abc"
    live.STRIPE_API_BASE = "http://127.0.0.1:12111"
    with pytest.raises(gateway.StripeNotConfigured, match="unset STRIPE_API_BASE"):
        gateway.keys_for_mode()


def test_live_with_live_keys_is_accepted(live: Any) -> None:
    live.STRIPE_LIVE_SECRET_KEY = LIVE_SECRET
    live.STRIPE_LIVE_WEBHOOK_SECRET = "whsec_abc"
    keys = gateway.keys_for_mode()
    assert keys.livemode and keys.api_base is None and LIVE_SECRET not in repr(keys)


def test_live_with_test_keys_shows_the_refusal_on_the_plans_page_and_refuses_checkout(live: Any, member: Client) -> None:
    live.STRIPE_LIVE_SECRET_KEY = TEST_SECRET
    live.STRIPE_LIVE_WEBHOOK_SECRET = "whsec_abc"
    live.SECURE_SSL_REDIRECT = False
    page = member.get("/plans/").content.decode()
    assert "Payments are unavailable" in page and "LIVE mode refuses test keys" in page
    response = member.post("/billing/checkout/pro/", {"attempt": "6f1c1b7e-4a53-4d55-9e51-8f4d2c3a2b10"})
    assert response.status_code == 503
    assert "LIVE mode refuses test keys" in response.content.decode()


def test_live_with_test_keys_fails_the_system_check(live: Any) -> None:
    live.STRIPE_LIVE_SECRET_KEY = TEST_SECRET
    with pytest.raises(SystemCheckError, match="billing.E001"):
        call_command("check")


def test_live_without_any_keys_is_payments_off_not_a_start_up_error(live: Any, member: Client) -> None:
    live.SECURE_SSL_REDIRECT = False
    call_command("check")  # passes: payments are simply off
    assert "Payments are not configured for LIVE" in member.get("/plans/").content.decode()


def test_a_webhook_in_live_with_test_keys_is_refused_and_the_reason_is_logged_not_answered(live: Any, caplog: pytest.LogCaptureFixture) -> None:
    live.STRIPE_LIVE_SECRET_KEY = TEST_SECRET
    live.SECURE_SSL_REDIRECT = False
    response = Client().post("/billing/stripe/webhook/", data="{}", content_type="application/json", HTTP_STRIPE_SIGNATURE="t=1,v1=00")
    assert response.status_code == 503
    assert "LIVE mode" not in response.json()["error"] and "STRIPE_" not in response.json()["error"]
    assert any("LIVE mode refuses test keys" in record.getMessage() for record in caplog.records)
