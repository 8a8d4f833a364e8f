"""The one door to Stripe: which keys the platform mode allows, the SDK client, webhook checks.

SANDBOX takes test keys (`sk_test_`, `pk_test_`, `whsec_`); with no test key set it talks to the
bundled emulator (`billing.emulator`) through the same SDK calls. LIVE takes live keys only and
never an alternative API address. A key of the wrong kind is refused with a message that names
the variable and shows at most the key's prefix, never the key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import stripe
from django.conf import settings

from billing.entitlements import platform_is_live

DEFAULT_EMULATOR_URL = "http://127.0.0.1:12111"
EMULATOR_SECRET_KEY = "sk_test_gpubroker_emulator"
EMULATOR_PUBLISHABLE_KEY = "pk_test_gpubroker_emulator"
REQUEST_TIMEOUT_SECONDS = 20


class StripeNotConfigured(Exception):
    """Payments cannot run with the present keys; the message says why and what to set."""


class StripeKeysMissing(StripeNotConfigured):
    """No keys at all for LIVE: payments are simply off (pages say so; start-up is not blocked)."""


class WebhookRejected(Exception):
    """A webhook request that does not verify; the message says why (safe to return to the caller)."""


@dataclass(frozen=True)
class StripeKeys:
    secret_key: str
    publishable_key: str
    webhook_secret: str
    api_base: str | None  # None: Stripe itself
    livemode: bool
    emulator: bool
    portal: bool

    def __repr__(self) -> str:  # never print keys, even in a traceback's locals
        return f"StripeKeys(livemode={self.livemode}, emulator={self.emulator}, api_base={self.api_base!r})"


def _setting(name: str) -> str:
    return str(getattr(settings, name, "") or "").strip()


def _shown(key: str) -> str:
    """A key as it may be shown: its kind only, e.g. `sk_test_…`."""
    parts = key.split("_")
    return f"{parts[0]}_{parts[1]}_…" if len(parts) > 2 else "(unrecognised value)"


def emulator_webhook_secret() -> str:
    """The emulator's signing secret: fixed per installation, derived from SECRET_KEY."""
    explicit = _setting("STRIPE_EMULATOR_WEBHOOK_SECRET")
    if explicit:
        return explicit
    digest = hmac.new(settings.SECRET_KEY.encode(), b"gpubroker-stripe-emulator-webhooks", hashlib.sha256).hexdigest()
    return f"whsec_{digest[:40]}"


def _check_kind(variable: str, value: str, allowed: tuple[str, ...], mode: str) -> None:
    if value and not value.startswith(allowed):
        wanted = " or ".join(f"{prefix}…" for prefix in allowed)
        if mode == "LIVE" and "_test_" in value:
            problem = f"LIVE mode refuses test keys: {variable} holds a test key ({_shown(value)}); set a live key ({wanted})"
        elif mode == "SANDBOX" and "_live_" in value:
            problem = f"SANDBOX refuses live keys: {variable} holds a live key ({_shown(value)}); set a test key ({wanted}) or unset it to use the emulator"
        else:
            problem = f"{variable} is not a Stripe key of the right kind ({_shown(value)}); expected {wanted}"
        raise StripeNotConfigured(problem)


def keys_for_mode(live: bool | None = None) -> StripeKeys:
    """The keys the platform mode allows, or StripeNotConfigured explaining what is wrong."""
    live = platform_is_live() if live is None else live
    portal_flag = _setting("STRIPE_PORTAL").lower()
    if live:
        secret, public, whsec = (_setting(f"STRIPE_LIVE_{n}") for n in ("SECRET_KEY", "PUBLISHABLE_KEY", "WEBHOOK_SECRET"))
        if not secret:
            raise StripeKeysMissing("Payments are not configured for LIVE: set STRIPE_LIVE_SECRET_KEY (sk_live_…) and STRIPE_LIVE_WEBHOOK_SECRET (whsec_…)")
        _check_kind("STRIPE_LIVE_SECRET_KEY", secret, ("sk_live_", "rk_live_"), "LIVE")
        _check_kind("STRIPE_LIVE_PUBLISHABLE_KEY", public, ("pk_live_",), "LIVE")
        if not whsec.startswith("whsec_"):
            raise StripeNotConfigured("Payments are not configured for LIVE: STRIPE_LIVE_WEBHOOK_SECRET (whsec_…) is required to verify Stripe's webhooks")
        if _setting("STRIPE_API_BASE"):
            raise StripeNotConfigured("LIVE mode talks to Stripe itself: unset STRIPE_API_BASE")
        return StripeKeys(secret, public, whsec, None, livemode=True, emulator=False, portal=portal_flag in {"1", "true", "yes", "on"})

    secret, public, whsec = (_setting(f"STRIPE_TEST_{n}") for n in ("SECRET_KEY", "PUBLISHABLE_KEY", "WEBHOOK_SECRET"))
    _check_kind("STRIPE_TEST_SECRET_KEY", secret, ("sk_test_", "rk_test_"), "SANDBOX")
    _check_kind("STRIPE_TEST_PUBLISHABLE_KEY", public, ("pk_test_",), "SANDBOX")
    if not secret:
        # No test account configured: the bundled emulator stands in for Stripe.
        base = _setting("STRIPE_EMULATOR_URL") or DEFAULT_EMULATOR_URL
        return StripeKeys(EMULATOR_SECRET_KEY, EMULATOR_PUBLISHABLE_KEY, emulator_webhook_secret(), base.rstrip("/"), livemode=False, emulator=True, portal=portal_flag not in {"0", "false", "no", "off"})
    if not whsec.startswith("whsec_"):
        raise StripeNotConfigured("STRIPE_TEST_WEBHOOK_SECRET (whsec_…) is required with a Stripe test key, to verify Stripe's webhooks")
    base = _setting("STRIPE_API_BASE") or None
    return StripeKeys(secret, public, whsec, base, livemode=False, emulator=False, portal=portal_flag in {"1", "true", "yes", "on"})


@lru_cache(maxsize=4)
def _client(keys: StripeKeys, retries: int) -> stripe.StripeClient:
    return stripe.StripeClient(
        keys.secret_key,
        base_addresses={"api": keys.api_base} if keys.api_base else None,
        max_network_retries=retries,
        http_client=stripe.RequestsClient(timeout=REQUEST_TIMEOUT_SECONDS),
    )


def client(keys: StripeKeys | None = None) -> stripe.StripeClient:
    """An SDK client for the mode's keys (raises StripeNotConfigured first when they are wrong)."""
    keys = keys or keys_for_mode()
    return _client(keys, int(getattr(settings, "STRIPE_MAX_NETWORK_RETRIES", 2)))


def verify_webhook(payload: bytes, signature: str | None, keys: StripeKeys | None = None) -> dict[str, Any]:
    """The event as a plain dict once Stripe-Signature checks out with the SDK's verifier."""
    keys = keys or keys_for_mode()
    try:
        stripe.Webhook.construct_event(payload, signature, keys.webhook_secret)
        data = json.loads(payload)  # plain JSON types, ready to store as the event's record
    except stripe.SignatureVerificationError as exc:
        raise WebhookRejected(f"signature verification failed: {str(exc).split('.')[0]}") from None
    except (ValueError, UnicodeDecodeError):
        raise WebhookRejected("the body is not a Stripe event (invalid JSON)") from None
    if not isinstance(data, dict):
        raise WebhookRejected("the body is not a Stripe event")
    if bool(data.get("livemode")) != keys.livemode:
        expected = "live" if keys.livemode else "test"
        raise WebhookRejected(f"a {'live' if data.get('livemode') else 'test'}-mode event reached a platform taking {expected}-mode events")
    if not data.get("id") or not data.get("type") or not data.get("created") or not isinstance(data.get("data"), dict):
        raise WebhookRejected("the event lacks an id, a type, a creation time or data")
    return data


def problems(live: bool | None = None, *, missing_is_a_problem: bool = True) -> list[str]:
    """What stops payments in a mode (default: the present one), for the system check and preflight."""
    try:
        keys_for_mode(live)
    except StripeKeysMissing as exc:
        return [str(exc)] if missing_is_a_problem else []
    except StripeNotConfigured as exc:
        return [str(exc)]
    return []
