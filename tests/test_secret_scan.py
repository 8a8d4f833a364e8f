"""The secret scan (tests/secret_scan.py) sees every response and log record and knows the secrets."""

from __future__ import annotations

import logging

import pytest
from django.conf import settings
from django.http import HttpResponse
from django.test import Client, RequestFactory

from tests.environment import FAKE_DATABASE_PASSWORD, FAKE_SECRET_KEY
from tests.secret_scan import RECORDER, configured_secrets


def test_the_run_is_configured_with_distinctive_fake_secrets() -> None:
    secrets = configured_secrets()
    assert secrets["SECRET_KEY"] == FAKE_SECRET_KEY
    assert secrets["DATABASES[default].PASSWORD"] == FAKE_DATABASE_PASSWORD  # the test servers ignore it


@pytest.mark.django_db
def test_the_scan_sees_every_response_and_every_log_record() -> None:
    responses, records = RECORDER.responses_seen, RECORDER.records_seen
    Client().get("/plans/")
    logging.getLogger("gpubroker.anything").debug("a debug line")
    assert RECORDER.responses_seen > responses and RECORDER.records_seen > records


def test_a_configured_secret_in_a_response_body_header_or_log_line_is_caught() -> None:
    request = RequestFactory().get("/leaky")
    RECORDER.response(HttpResponse(f"<p>{settings.SECRET_KEY}</p>"), request)
    header = HttpResponse("ok")
    header["X-Debug"] = FAKE_DATABASE_PASSWORD
    RECORDER.response(header, request)
    try:
        raise RuntimeError(f"connect failed with {FAKE_DATABASE_PASSWORD}")
    except RuntimeError:
        logging.getLogger("gpubroker.leaky").exception("database down")
    leaks = RECORDER.take()  # taken here, so this test itself does not fail on them
    assert "SECRET_KEY appeared in the response to GET /leaky (200)" in leaks
    assert "DATABASES[default].PASSWORD appeared in the response to GET /leaky (200)" in leaks
    assert "DATABASES[default].PASSWORD appeared in a log record of gpubroker.leaky (ERROR)" in leaks
