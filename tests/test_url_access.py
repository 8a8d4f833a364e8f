"""Every URL in the URLconf, requested by someone on the internet signed out and signed in as an
ordinary user: each is refused exactly as the table below declares, and a route missing from the
table fails the test, so every new route must be classified here.

Path parameters are filled with real objects: another user's API key (an ordinary user must not
reach it), a real plan, offer, sandbox mail, activation key and password-reset key.
"""

from __future__ import annotations

import mailbox
import re
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from allauth.account.forms import default_token_generator
from allauth.account.models import EmailAddress, EmailConfirmationHMAC
from allauth.account.utils import user_pk_to_url_str
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from billing.models import ApiKey
from pods.emails import activation_token
from pods.models import Draft, Rental, State
from providers.models import Offer
from tests.accounts_and_billing import Stripe, make_user, seed_plans
from tests.secret_scan import configured_secrets

pytestmark = pytest.mark.django_db
ELSEWHERE = "203.0.113.7"  # TEST-NET-3: a client that is not on this machine

OPEN = "open"  # answered (any status below 500): not refused for who is asking
LOGIN = "login"  # 302 to the sign-in page
# route -> (signed out, ordinary user). A refusal may also be 405 for a method the route lacks,
# but at least one of GET and POST must meet the declared refusal.
ACCESS: dict[str, tuple[str | int, str | int]] = {
    "": (OPEN, OPEN),
    "health": (OPEN, OPEN),  # up/down only; details to staff (tests/test_health.py)
    "plans/": (OPEN, OPEN),
    "terms/": (OPEN, OPEN),
    "privacy/": (OPEN, OPEN),
    "browse/": (OPEN, OPEN),
    "dashboard/": (LOGIN, OPEN),
    "settings/": (LOGIN, OPEN),
    "settings/api-keys/": (LOGIN, OPEN),
    "settings/api-keys/<int:key_id>/revoke/": (LOGIN, 404),  # someone else's key
    "billing/": (LOGIN, OPEN),
    "billing/checkout/<slug:slug>/": (LOGIN, OPEN),
    "billing/checkout-complete/": (LOGIN, OPEN),
    "billing/checkout-canceled/": (LOGIN, OPEN),
    "billing/change/<slug:slug>/": (LOGIN, OPEN),
    "billing/cancel/": (LOGIN, OPEN),
    "billing/resume/": (LOGIN, OPEN),
    "billing/portal/": (LOGIN, OPEN),
    "billing/stripe/webhook/": (OPEN, OPEN),  # Stripe calls it; the signature is the guard (400)
    "accounts/confirm-email/<str:key>/": (OPEN, OPEN),
    "accounts/^confirm-email/(?P<key>[-:\\w]+)/$": (OPEN, OPEN),
    "accounts/login/": (OPEN, OPEN),
    "accounts/logout/": (OPEN, OPEN),
    "accounts/inactive/": (OPEN, OPEN),
    "accounts/signup/": (OPEN, OPEN),
    "accounts/reauthenticate/": (LOGIN, OPEN),
    "accounts/reauthenticate/code/": (LOGIN, OPEN),
    "accounts/reauthenticate/code/confirm/": (LOGIN, OPEN),
    "accounts/email/": (LOGIN, OPEN),
    "accounts/confirm-email/": (OPEN, OPEN),
    "accounts/password/change/": (LOGIN, OPEN),
    "accounts/password/set/": (LOGIN, OPEN),
    "accounts/password/reset/": (OPEN, OPEN),
    "accounts/login/code/confirm/": (OPEN, OPEN),
    "accounts/password/reset/key/done/": (OPEN, OPEN),
    "accounts/^password/reset/key/(?P<uidb36>[0-9A-Za-z]+)-(?P<key>.+)/$": (OPEN, OPEN),
    "accounts/password/reset/done/": (OPEN, OPEN),
    "api/v2/": (OPEN, OPEN),
    "api/v2/openapi.json": (OPEN, OPEN),
    "api/v2/docs": (OPEN, OPEN),
    "api/v2/providers": (OPEN, OPEN),
    "api/v2/providers/query": (OPEN, OPEN),
    "api/v2/providers/ranking": (OPEN, OPEN),
    "api/v2/providers/decide": (OPEN, OPEN),
    "api/v2/providers/health": (OPEN, OPEN),
    "api/v2/providers/stream": (OPEN, OPEN),
    "api/v2/providers/<offer_id>": (OPEN, OPEN),
    "api/v2/analytics/price-history": (OPEN, OPEN),
    "api/v2/<path:rest>": (404, 404),  # JSON 404 for any other /api/v2 path
    "api/v2/account": (401, 401),  # an API key, not a session
    "sandbox/mailbox/": (403, 403),  # reset links: this machine or staff only
    "sandbox/mailbox/<str:message_id>/": (403, 403),
    "metrics": (403, 403),  # METRICS_TOKEN, this machine or staff only
    "billing/top-up/": (LOGIN, OPEN),
    "billing/top-up/complete/": (LOGIN, OPEN),
    # Pods: every path names someone else's pod, draft or link, which does not exist for the user.
    "pods/new/<int:offer_id>/": (LOGIN, OPEN),
    "pods/drafts/<uuid:token>/configure/": (LOGIN, 404),
    "pods/drafts/<uuid:token>/review/": (LOGIN, 404),
    "pods/drafts/<uuid:token>/deploy/": (LOGIN, 404),
    "pods/activate/<str:token>/": (LOGIN, 404),
    "pods/<int:rental_id>/": (LOGIN, 404),
    "pods/<int:rental_id>/stop/": (LOGIN, 404),
    "pods/<int:rental_id>/start/": (LOGIN, 404),
    "pods/<int:rental_id>/terminate/": (LOGIN, 404),
    "pods/<int:rental_id>/scale/": (LOGIN, 404),
    "pods/<int:rental_id>/failover/": (LOGIN, 404),
    "pods/<int:rental_id>/resend-link/": (LOGIN, 404),
    "api/v2/rentals": (401, OPEN),  # the user's own (empty) list
    "api/v2/rentals/provision": (401, OPEN),  # 422: no body
    "api/v2/rentals/<rental_id>": (401, 404),
    "api/v2/rentals/<rental_id>/scale": (401, 404),
    "api/v2/rentals/<rental_id>/stop": (401, 404),
    "api/v2/rentals/<rental_id>/start": (401, 404),
}
# Answers that never end (server-sent events) are requested with a query that ends them after
# the access checks: a bad subscription is a 422, which only a caller let in can get.
QUERIES = {"api/v2/providers/stream": "?subscribe=no-such-topic"}
# Operations whose body is read before the caller's objects: a valid one, so the answer is about access.
BODIES = {"api/v2/rentals/<rental_id>/scale": {"gpu_count": 2}}


def routes(resolver: URLResolver | None = None, prefix: str = "") -> Iterator[str]:
    for pattern in (resolver or get_resolver()).url_patterns:
        if isinstance(pattern, URLResolver):
            yield from routes(pattern, prefix + str(pattern.pattern))
        else:
            assert isinstance(pattern, URLPattern)
            yield prefix + str(pattern.pattern)


def fill(route: str, values: dict[str, str]) -> str:
    """The route as a path, each parameter replaced by its real value."""
    path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: values[m[1]], route)
    path = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: values[m[1]], path)
    return "/" + path.replace("^", "").replace("$", "")


@pytest.fixture
def real_objects(catalog: None, tmp_path: Path, settings: Any, stripe_emulator: Stripe) -> dict[str, str]:
    other = make_user("owner@example.com")
    key, _ = ApiKey.issue(other, "someone else's")
    unverified = make_user("new@example.com", verified=False)
    settings.SANDBOX_MAILBOX_DIR = tmp_path / "mailbox"
    mail = EmailMessage()
    mail["Subject"], mail["To"] = "Reset your password", "owner@example.com"
    mail.set_content("http://127.0.0.1:8000/accounts/password/reset/key/x-y/")
    message_id = mailbox.Maildir(settings.SANDBOX_MAILBOX_DIR, create=True).add(mail)
    offer = Offer.objects.order_by("pk").first()
    assert offer is not None
    rental = Rental.objects.create(
        user=other, name="someone else's pod", state=State.AWAITING_ACTIVATION, request_key="url-access", provider_slug=offer.provider.slug,
        offer=offer, offer_name=offer.name, gpu_type=offer.gpu_type, gpu_count=offer.gpu_count, template="pytorch", image="pytorch",
        ssh_public_key="ssh-ed25519 AAAA", provider_price_per_hour=offer.price_per_hour, markup_pct=10, price_per_hour=offer.price_per_hour,
    )
    draft = Draft.objects.create(user=other, offer=offer)
    return {
        "rental_id": str(rental.pk),
        "token": str(draft.token),
        "activation_token": activation_token(rental),
        "key_id": str(key.pk),
        "slug": "pro",
        "key": EmailConfirmationHMAC(EmailAddress.objects.get(user=unverified)).key,
        "uidb36": user_pk_to_url_str(other),
        "offer_id": str(Offer.objects.order_by("pk").values_list("pk", flat=True).first()),
        "message_id": message_id,
        "rest": "no-such-operation",
    }


def outcome_ok(response: Any, expected: str | int) -> bool:
    if expected == OPEN:
        return response.status_code < 500
    if expected == LOGIN:
        return response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    return response.status_code == expected


def test_every_route_is_classified_in_the_access_table() -> None:
    unclassified = sorted(set(routes()) - set(ACCESS))
    assert unclassified == [], f"classify these routes in ACCESS: {unclassified}"
    assert sorted(set(ACCESS) - set(routes())) == [], "ACCESS names routes that no longer exist"


@pytest.mark.django_db(transaction=True)  # /health closes connections, as Channels code does
def test_every_route_refuses_exactly_whom_the_table_says(real_objects: dict[str, str], settings: Any) -> None:
    seed_plans()
    # Configured secrets the scan must never find in any of these answers (tests.secret_scan).
    settings.STRIPE_LIVE_SECRET_KEY = "sk_live_fake_url_access_0b7e61d2c94f"
    settings.STRIPE_LIVE_WEBHOOK_SECRET = "whsec_fake_url_access_5c28a9e3f1"
    settings.PROVIDER_CREDENTIALS = {**settings.PROVIDER_CREDENTIALS, "runpod": {"api_key": "fake-runpod-key-url-access-77d1"}}
    settings.METRICS_TOKEN = "fake-metrics-token-url-access-2f4a9c"
    member = make_user("ada-member@example.com")
    wrong: list[str] = []
    for route in routes():
        values = dict(real_objects)
        if "uidb36" in route:
            values["key"] = real_objects["uidb36"] + "-" + default_token_generator.make_token(member)
        if route.startswith("pods/activate/"):
            values["token"] = real_objects["activation_token"]  # a genuine link, to someone else's pod
        path = fill(route, values)
        path += QUERIES.get(route, "")
        for who, expected in zip(("signed out", "ordinary user"), ACCESS[route]):
            answers = {}
            for method in ("get", "post"):
                client = Client(REMOTE_ADDR=ELSEWHERE)
                if who == "ordinary user":
                    client.force_login(member)
                if method == "post" and route in BODIES:
                    answers[method] = client.post(path, BODIES[route], content_type="application/json")
                else:
                    answers[method] = getattr(client, method)(path)
            if expected == OPEN:
                bad = [f"{m.upper()} {r.status_code}" for m, r in answers.items() if not outcome_ok(r, OPEN)]
            else:
                met = [m for m, r in answers.items() if outcome_ok(r, expected)]
                bad = [f"{m.upper()} {r.status_code}" for m, r in answers.items() if not (outcome_ok(r, expected) or r.status_code == 405)] + ([] if met else ["neither method refused"])
            if bad:
                wrong.append(f"{path} as {who}: expected {expected}, got {', '.join(bad)}")
    assert wrong == []
    assert "METRICS_TOKEN" in configured_secrets() and "PROVIDER_CREDENTIALS[runpod].api_key" in configured_secrets()
