"""Run by tests/test_stripe_slow.py in a child process on the embedded default (SQLite, in-memory
layers): while a checkout waits for a slow Stripe, another write goes through at once.

SQLite has one write lock for the whole file. With busy_timeout 0 a write fails at once with
"database is locked" if any transaction holds it, so this needs no timing: it passes only if no
transaction is open while the checkout waits. Prints "concurrent write ok" and exits 0, or fails.
"""

from __future__ import annotations

import sys
import threading
import uuid

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, connections, transaction  # noqa: E402

from billing import checkout  # noqa: E402
from billing.emulator import EmulatorServer  # noqa: E402
from billing.models import Plan  # noqa: E402
from tests.stripe_gate import WAIT_SECONDS, Gate  # noqa: E402


def main() -> int:
    assert connection.vendor == "sqlite", connection.vendor
    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("ada", "ada@example.com", "pw")
    emulator = EmulatorServer("127.0.0.1", 0, webhook_secret="whsec_sqlite_check").start()
    gate = Gate(emulator.url)
    settings.STRIPE_EMULATOR_URL = gate.url
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    hold = gate.hold("POST", r"/v1/checkout/sessions")
    outcome: dict[str, object] = {}

    def start() -> None:
        try:
            outcome["url"] = checkout.start_checkout(user, Plan.objects.get(slug="pro"), uuid.uuid4(), "http://app/ok", "http://app/cancel")
        except BaseException as exc:  # reported below
            outcome["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=start)
    thread.start()
    try:
        assert hold.arrived.wait(WAIT_SECONDS), "the checkout never reached Stripe"
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA busy_timeout = 0")  # fail at once if the write lock is held
        with transaction.atomic():
            get_user_model().objects.filter(pk=user.pk).update(first_name="Ada")
        print("concurrent write ok")
    finally:
        hold.release.set()
        thread.join(WAIT_SECONDS)
        gate.close()
        emulator.stop()
    assert "error" not in outcome, outcome.get("error")
    return 0


if __name__ == "__main__":
    sys.exit(main())
