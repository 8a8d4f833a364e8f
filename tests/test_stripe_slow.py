"""Stripe slow: while the app waits for a Stripe answer it holds no database lock and no transaction.

A gate in front of the emulator holds one chosen request (until the test lets it go) either
before it reaches the emulator or after the emulator answered (a slow, stale read). While it is
held, another connection must be able to lock the user's row at once (NOWAIT) and no connection
of the app may sit in an open transaction — on SQLite that would be the global write lock.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.db import connection, connections, transaction
from django.test import Client

from billing.models import Subscription
from tests.accounts_and_billing import Stripe, deliver, start_checkout, subscribe

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)  # keeps the seeded plans
WAIT_SECONDS = 30  # bounded waits for events; never a timing assertion


@dataclass
class Hold:
    method: str
    path: re.Pattern[str]
    after_answer: bool
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    armed: bool = True


class Gate:
    """A pass-through proxy to the emulator that holds the first request matching each Hold."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.holds: list[Hold] = []
        self.lock = threading.Lock()
        gate = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _pass(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                hold = gate.take(self.command, self.path)
                if hold and not hold.after_answer:
                    hold.arrived.set()
                    hold.release.wait(WAIT_SECONDS)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}
                answer = httpx.request(self.command, gate.upstream + self.path, headers=headers, content=body, timeout=WAIT_SECONDS)
                if hold and hold.after_answer:
                    hold.arrived.set()
                    hold.release.wait(WAIT_SECONDS)
                self.send_response(answer.status_code)
                for name, value in answer.headers.items():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_DELETE = _pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def hold(self, method: str, path: str, *, after_answer: bool = False) -> Hold:
        hold = Hold(method, re.compile(path), after_answer)
        with self.lock:
            self.holds.append(hold)
        return hold

    def take(self, method: str, path: str) -> Hold | None:
        with self.lock:
            for hold in self.holds:
                if hold.armed and hold.method == method and hold.path.fullmatch(path.split("?")[0]):
                    hold.armed = False
                    return hold
        return None

    def close(self) -> None:
        for hold in self.holds:
            hold.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


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
