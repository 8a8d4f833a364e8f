"""Stripe slow: while the app waits for a Stripe answer it holds no database lock and no transaction.

A gate in front of the emulator holds one chosen request (until the test lets it go) either
before it reaches the emulator or after the emulator answered (a slow, stale read). While it is
held, another connection must be able to lock the user's row at once (NOWAIT) and no connection
of the app may sit in an open transaction — on SQLite that would be the global write lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, connections, transaction
from django.test import Client

from billing.models import Subscription
from tests.accounts_and_billing import Stripe, deliver, seed_plans, start_checkout, subscribe
from tests.stripe_gate import WAIT_SECONDS, Gate, Hold

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _plans(transactional_db: None) -> None:
    seed_plans()


@pytest.fixture
def gate(stripe_emulator: Stripe, settings: Any) -> Iterator[Gate]:
    proxy = Gate(stripe_emulator.url)
    settings.STRIPE_EMULATOR_URL = proxy.url
    try:
        yield proxy
    finally:
        proxy.close()


def in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = work()
        except BaseException as exc:  # handed to the test, which asserts on it
            result["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def assert_no_lock_or_transaction_held(user: Any) -> None:
    with transaction.atomic():
        # NOWAIT: raises at once if any transaction holds the user's row.
        get_user_model().objects.select_for_update(nowait=True).get(pk=user.pk)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%%'"
        )
        assert cursor.fetchone()[0] == 0, "a connection sits in an open transaction while Stripe is slow"


def wait_while_held(hold: Hold, thread: threading.Thread, user: Any) -> None:
    assert hold.arrived.wait(WAIT_SECONDS), "the request never reached Stripe"
    try:
        assert_no_lock_or_transaction_held(user)
    finally:
        hold.release.set()
        thread.join(WAIT_SECONDS)


def test_a_slow_stripe_during_checkout_holds_no_lock_or_transaction(user: Any, gate: Gate) -> None:
    hold = gate.hold("POST", r"/v1/checkout/sessions")
    thread, result = in_thread(lambda: start_checkout(signed_in(user)))
    wait_while_held(hold, thread, user)
    assert "error" not in result, result.get("error")
    assert "/c/pay/cs_test_" in result["value"]


def test_a_slow_stripe_during_a_webhook_holds_no_lock_or_transaction(user: Any, gate: Gate, stripe_emulator: Stripe) -> None:
    subscribe(signed_in(user), stripe_emulator, "pro")
    sub = Subscription.objects.get(user=user)
    with stripe_emulator.state.lock:
        stripe_emulator.state.update_subscription(sub.stripe_id, {"cancel_at_period_end": "true"})
    stripe_emulator.state.commit()
    (body, signature), *_ = [d for d in stripe_emulator.events() if '"customer.subscription.updated"' in d[0]]
    hold = gate.hold("GET", rf"/v1/subscriptions/{sub.stripe_id}")
    thread, result = in_thread(lambda: deliver(Client(), body, signature))
    wait_while_held(hold, thread, user)
    assert result["value"].status_code == 200, result["value"].content
    sub.refresh_from_db()
    assert sub.cancel_at_period_end


def test_a_slow_stripe_during_a_plan_change_holds_no_lock_or_transaction(user: Any, gate: Gate, stripe_emulator: Stripe) -> None:
    member = signed_in(user)
    subscribe(member, stripe_emulator, "pro")
    sub = Subscription.objects.get(user=user)
    hold = gate.hold("POST", rf"/v1/subscriptions/{sub.stripe_id}")
    thread, result = in_thread(lambda: member.post("/billing/cancel/", {"attempt": "0e2b8a8e-3f43-4a3c-9b1e-2b9c7d1f5a11"}))
    wait_while_held(hold, thread, user)
    assert result["value"].status_code == 302
    sub.refresh_from_db()
    assert sub.cancel_at_period_end


def _waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")
        return cursor.fetchone()[0] > 0


def test_a_slow_stale_read_of_a_subscription_never_overwrites_a_newer_one(user: Any, gate: Gate, stripe_emulator: Stripe) -> None:
    subscribe(signed_in(user), stripe_emulator, "pro")
    sub = Subscription.objects.get(user=user)
    with stripe_emulator.state.lock:
        stripe_emulator.state.update_subscription(sub.stripe_id, {"metadata": {"note": "first"}})
    stripe_emulator.state.commit()
    (first_body, first_sig), *_ = [d for d in stripe_emulator.events() if '"customer.subscription.updated"' in d[0]]
    # The first event's read of the subscription is answered (not cancelled yet) but arrives late.
    stale = gate.hold("GET", rf"/v1/subscriptions/{sub.stripe_id}", after_answer=True)
    slow, slow_result = in_thread(lambda: deliver(Client(), first_body, first_sig))
    assert stale.arrived.wait(WAIT_SECONDS)
    with stripe_emulator.state.lock:
        stripe_emulator.state.update_subscription(sub.stripe_id, {"cancel_at_period_end": "true"})
    stripe_emulator.state.commit()
    (second_body, second_sig), *_ = [d for d in stripe_emulator.events() if '"customer.subscription.updated"' in d[0]]
    fast, fast_result = in_thread(lambda: deliver(Client(), second_body, second_sig))
    deadline = time.monotonic() + WAIT_SECONDS
    while fast.is_alive() and not _waiting_on_a_lock() and time.monotonic() < deadline:
        fast.join(0.02)  # until the newer read is saved (or waits for the slow one's lock)
    stale.release.set()
    slow.join(WAIT_SECONDS)
    fast.join(WAIT_SECONDS)
    assert slow_result["value"].status_code == 200 and fast_result["value"].status_code == 200
    sub.refresh_from_db()
    assert sub.cancel_at_period_end, "the stale read (not cancelled) overwrote the newer one"


def test_on_sqlite_a_slow_stripe_during_checkout_leaves_the_write_lock_free(tmp_path: Any) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_CONN_MAX_AGE")}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'embedded.sqlite3'}", GPUBROKER_MODE="sandbox", DJANGO_SETTINGS_MODULE="web.settings", PYTHONPATH=str(root))
    done = subprocess.run([sys.executable, "tests/sqlite_stripe_slow.py"], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "concurrent write ok" in done.stdout


def test_two_checkouts_started_at_once_leave_one_session_open(user: Any, gate: Gate, stripe_emulator: Stripe) -> None:
    from billing.models import CheckoutSession

    hold = gate.hold("POST", r"/v1/checkout/sessions")
    slow, slow_result = in_thread(lambda: start_checkout(signed_in(user)))
    assert hold.arrived.wait(WAIT_SECONDS)
    fast_url = start_checkout(signed_in(user))  # starts, records and returns while the first waits
    hold.release.set()
    slow.join(WAIT_SECONDS)
    assert "error" not in slow_result, slow_result.get("error")
    rows = {row.stripe_id: row.status for row in CheckoutSession.objects.filter(user=user)}
    assert sorted(rows.values()) == ["expired", "open"]
    at_stripe = {sid: stripe_emulator.state.session(sid)["status"] for sid in rows}
    assert at_stripe == rows
    assert fast_url.rsplit("/", 1)[-1] in {sid for sid, status in rows.items() if status == "expired"}
