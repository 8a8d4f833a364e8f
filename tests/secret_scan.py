"""Pytest plugin: no response body and no log record of the whole run contains a configured secret.

Every response Django's handler produces (test clients, in-process servers) and every log record
is searched for the secrets configured at that moment: SECRET_KEY, the database, Redis and SMTP
passwords, the Stripe secret and webhook keys, the provider credentials and METRICS_TOKEN. The
test during which one appears fails in its teardown, naming the setting and where it was seen;
one seen outside any test fails the run. tests/environment.py sets distinctive fake values for
the ones the test services allow (SECRET_KEY, a database password where the server ignores it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

MIN_SECRET_LENGTH = 8  # shorter values ("pw") would match ordinary text
NOT_SECRET = {"sk_test_gpubroker_emulator"}  # the emulator's fixed, published test key


def configured_secrets() -> dict[str, str]:
    """Setting name -> secret value, read from the settings as they are now."""
    from django.conf import settings

    found: dict[str, str] = {"SECRET_KEY": settings.SECRET_KEY}
    for alias, database in settings.DATABASES.items():
        found[f"DATABASES[{alias}].PASSWORD"] = database.get("PASSWORD") or ""
    found["REDIS_URL password"] = urlsplit(settings.REDIS_URL or "").password or ""
    found["EMAIL_HOST_PASSWORD"] = getattr(settings, "EMAIL_HOST_PASSWORD", "") or ""
    for mode in ("TEST", "LIVE"):
        for name in ("SECRET_KEY", "WEBHOOK_SECRET"):
            found[f"STRIPE_{mode}_{name}"] = getattr(settings, f"STRIPE_{mode}_{name}", "") or ""
    found["STRIPE_EMULATOR_WEBHOOK_SECRET"] = getattr(settings, "STRIPE_EMULATOR_WEBHOOK_SECRET", "") or ""
    for slug, credentials in getattr(settings, "PROVIDER_CREDENTIALS", {}).items():
        for name, value in credentials.items():
            found[f"PROVIDER_CREDENTIALS[{slug}].{name}"] = value or ""
    found["METRICS_TOKEN"] = getattr(settings, "METRICS_TOKEN", "") or ""
    return {name: str(value) for name, value in found.items() if len(str(value)) >= MIN_SECRET_LENGTH and value not in NOT_SECRET}


class Recorder:
    def __init__(self) -> None:
        self.leaks: list[str] = []
        self.responses_seen = 0
        self.records_seen = 0
        self._lock = threading.Lock()

    def search(self, text: str, where: str) -> None:
        try:
            secrets = configured_secrets()
        except Exception:  # settings not ready (start-up logging): nothing configured to leak yet
            return
        for name, value in secrets.items():
            if value in text:
                with self._lock:
                    self.leaks.append(f"{name} appeared in {where}")

    def response(self, response: Any, request: Any) -> None:
        self.responses_seen += 1
        if getattr(response, "streaming", False):
            return  # an event stream never ends; its frames are built from the same data as the pages
        body = bytes(getattr(response, "content", b"")).decode("utf-8", "replace")
        headers = "\n".join(f"{k}: {v}" for k, v in response.items())
        self.search(headers + "\n" + body, f"the response to {getattr(request, 'method', '?')} {getattr(request, 'path', '?')} ({response.status_code})")

    def take(self) -> list[str]:
        with self._lock:
            leaks, self.leaks = self.leaks, []
        return leaks


RECORDER = Recorder()


def _scan_record(record: logging.LogRecord) -> None:
    RECORDER.records_seen += 1
    text = record.getMessage()
    if record.exc_info:
        text += "\n" + logging.Formatter().formatException(record.exc_info)
    RECORDER.search(text, f"a log record of {record.name} ({record.levelname})")


def _patch_logging() -> None:
    # At Logger.handle rather than as a handler: Django's dictConfig (and any test that calls it)
    # replaces the root logger's handlers, but every record a logger lets through passes here.
    handle = logging.Logger.handle

    def scanned_handle(self: logging.Logger, record: logging.LogRecord) -> Any:
        _scan_record(record)
        return handle(self, record)

    logging.Logger.handle = scanned_handle  # type: ignore[method-assign]


def _patch_handlers() -> None:
    from django.core.handlers.base import BaseHandler

    sync_get, async_get = BaseHandler.get_response, BaseHandler.get_response_async

    def get_response(self: BaseHandler, request: Any) -> Any:
        response = sync_get(self, request)
        RECORDER.response(response, request)
        return response

    async def get_response_async(self: BaseHandler, request: Any) -> Any:
        response = await async_get(self, request)
        RECORDER.response(response, request)
        return response

    BaseHandler.get_response = get_response  # type: ignore[method-assign]
    BaseHandler.get_response_async = get_response_async  # type: ignore[method-assign]


def pytest_configure(config: pytest.Config) -> None:
    _patch_handlers()
    _patch_logging()


@pytest.fixture(autouse=True)
def _no_secret_leaves(request: pytest.FixtureRequest) -> Iterator[None]:
    RECORDER.take()  # what happened before this test belongs to no test
    yield
    leaks = RECORDER.take()
    if leaks:
        pytest.fail("a configured secret left the app:\n  " + "\n  ".join(sorted(set(leaks))), pytrace=False)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    leaks = RECORDER.take()
    if leaks:
        session.config.get_terminal_writer().line("a configured secret left the app outside any test:\n  " + "\n  ".join(sorted(set(leaks))), red=True)
        session.exitstatus = 1
