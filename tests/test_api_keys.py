"""Personal API keys: shown once, stored hashed with a prefix, revocable, carrying the plan."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest
from django.test import Client

from billing.models import ApiKey, Plan
from tests.accounts_and_billing import Stripe, make_user, seed_plans, subscribe

pytestmark = pytest.mark.django_db


def create(member: Client, name: str = "CI pipeline") -> tuple[Any, str]:
    response = member.post("/settings/api-keys/", {"name": name})
    match = re.search(r'data-testid="new-api-key">([^<]+)<', response.content.decode())
    return response, match.group(1) if match else ""


def test_a_new_key_is_shown_once_and_only_its_hash_is_kept(member: Client) -> None:
    response, raw = create(member)
    assert response.status_code == 201 and raw.startswith("gpb_")
    key = ApiKey.objects.get()
    assert raw.startswith(key.prefix + "_") and key.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in str(ApiKey.objects.values_list())
    later = member.get("/settings/").content.decode()
    assert raw not in later and f"{key.prefix}…" in later


def test_a_key_authenticates_as_its_owner_with_the_owners_plan(member: Client, user: Any, stripe_emulator: Stripe) -> None:
    _, raw = create(member)
    assert ApiKey.objects.authenticate(raw).user == user
    assert ApiKey.objects.authenticate(raw).plan.slug == "free"
    subscribe(member, stripe_emulator, "pro")
    assert ApiKey.objects.authenticate(raw).plan.requests_per_second == Plan.objects.get(slug="pro").requests_per_second


def test_wrong_or_malformed_keys_do_not_authenticate(member: Client) -> None:
    _, raw = create(member)
    for wrong in (raw[:-1] + ("A" if raw[-1] != "A" else "B"), "gpb_", "", "nonsense", raw.replace("gpb_", "xyz_")):
        assert ApiKey.objects.authenticate(wrong) is None


def test_a_revoked_key_stops_working(member: Client) -> None:
    _, raw = create(member)
    key = ApiKey.objects.get()
    assert member.post(f"/settings/api-keys/{key.pk}/revoke/").status_code == 302
    assert ApiKey.objects.authenticate(raw) is None
    assert "Revoked" in member.get("/settings/").content.decode()


def test_nobody_else_can_revoke_my_key(member: Client) -> None:
    create(member)
    key = ApiKey.objects.get()
    other = Client()
    other.force_login(make_user("eve@example.com"))
    assert other.post(f"/settings/api-keys/{key.pk}/revoke/").status_code == 404
    assert ApiKey.objects.get().is_active


def test_a_key_needs_a_name(member: Client) -> None:
    response, raw = create(member, "   ")
    assert response.status_code == 400 and not raw
    assert "This field is required." in response.content.decode()
    assert not ApiKey.objects.exists()


def test_settings_need_a_signed_in_user() -> None:
    assert Client().get("/settings/").status_code == 302
    assert Client().post("/settings/api-keys/", {"name": "x"}).status_code == 302
    assert not ApiKey.objects.exists()


def test_the_api_knows_the_key_holder_and_their_plan_tier(member: Client, stripe_emulator: Stripe) -> None:
    _, raw = create(member)
    api = Client()
    body = api.get("/api/v2/account", HTTP_X_API_KEY=raw).json()
    assert body["email"] == "ada@example.com" and body["plan"]["slug"] == "free" and body["plan"]["requests_per_second"] == 10
    subscribe(member, stripe_emulator, "pro")
    assert api.get("/api/v2/account", HTTP_X_API_KEY=raw).json()["plan"] == {"slug": "pro", "name": "Pro", "requests_per_second": 100, "max_pods": 10, "webhooks": False}
    assert ApiKey.objects.get().last_used_at is not None


def test_the_api_refuses_a_missing_or_revoked_key(member: Client) -> None:
    _, raw = create(member)
    assert Client().get("/api/v2/account").status_code == 401
    ApiKey.objects.get().revoke()
    assert Client().get("/api/v2/account", HTTP_X_API_KEY=raw).status_code == 401


def test_the_page_showing_a_new_key_is_never_stored_by_a_browser_or_proxy(member: Client) -> None:
    response, raw = create(member)
    assert raw and "no-store" in response["Cache-Control"] and "private" in response["Cache-Control"]


def test_a_prefix_that_is_already_taken_draws_a_new_key_instead_of_failing(member: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    import billing.models

    draws = iter(["deadbeef", "deadbeef", "cafebabe"])
    monkeypatch.setattr(billing.models.secrets, "token_hex", lambda n: next(draws))
    first, _ = create(member, "first")
    second, raw = create(member, "second")
    assert (first.status_code, second.status_code) == (201, 201)
    assert raw.startswith("gpb_cafebabe_")
    assert sorted(ApiKey.objects.values_list("prefix", flat=True)) == ["gpb_cafebabe", "gpb_deadbeef"]


def _waiting_on_a_lock() -> bool:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")
        return cursor.fetchone()[0] > 0


@pytest.mark.django_db(transaction=True)
def test_two_requests_at_once_for_the_twentieth_key_give_one_key_not_two(user: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    seed_plans()  # the settings page shows the plan
    import threading
    import time

    import billing.models
    from django.db import connections

    for n in range(19):
        ApiKey.issue(user, f"key {n}")
    first_counted, go = threading.Event(), threading.Event()
    real_token_hex = billing.models.secrets.token_hex
    first_thread: list[int] = []

    def token_hex(n: int) -> str:
        # The first request stops between its count and its insert until the second has run.
        if threading.get_ident() in first_thread and not go.is_set():
            first_counted.set()
            assert go.wait(30)
        return real_token_hex(n)

    monkeypatch.setattr(billing.models.secrets, "token_hex", token_hex)
    statuses: dict[str, int] = {}

    def post(label: str) -> None:
        if label == "first":
            first_thread.append(threading.get_ident())
        client = Client()
        client.force_login(user)
        try:
            statuses[label] = client.post("/settings/api-keys/", {"name": label}).status_code
        finally:
            connections.close_all()

    first = threading.Thread(target=post, args=("first",))
    first.start()
    assert first_counted.wait(30)
    second = threading.Thread(target=post, args=("second",))
    second.start()
    deadline = time.monotonic() + 30
    while second.is_alive() and not _waiting_on_a_lock() and time.monotonic() < deadline:
        second.join(0.02)  # until the second request has either finished or is waiting for the first
    go.set()
    first.join(30)
    second.join(30)
    assert ApiKey.objects.filter(user=user).active().count() == 20
    assert sorted(statuses.values()) == [201, 400]
