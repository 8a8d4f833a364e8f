"""What every provider adapter must do with a failing API, run against each provider's own endpoint.

A provider's test class inherits `AdapterContract` and says which adapter it tests, with which
credentials, and which request its first call is (`route`); the tests below then run against that
route on pytest-httpserver. The recorded answers live in tests/fixtures/providers/<provider>/.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from email.utils import format_datetime
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from pytest_httpserver import HTTPServer
from pytest_httpserver.httpserver import RequestHandler
from werkzeug import Request, Response

from providers.adapters.base import AdapterError, FailureKind, ProviderAdapter

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "providers"
# Long enough for a loaded CI machine to answer a local request, short enough for the slow test.
CLIENT_TIMEOUT = 5.0
SLOW_TIMEOUT = 0.1


def fixture(provider: str, name: str) -> Any:
    return json.loads((FIXTURES / provider / name).read_text())


async def failure(adapter: ProviderAdapter) -> AdapterError:
    with pytest.raises(AdapterError) as caught:
        await adapter.fetch_offers()
    return caught.value


def received(httpserver: HTTPServer) -> list[Request]:
    return [request for request, _ in httpserver.log]


class AdapterContract:
    adapter_class: ClassVar[type[ProviderAdapter]]
    credentials: ClassVar[dict[str, str]]

    def route(self, httpserver: HTTPServer) -> RequestHandler:
        """The first request the adapter makes on a refresh."""
        raise NotImplementedError

    @pytest.fixture
    async def client(self) -> AsyncIterator[httpx.AsyncClient]:
        async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
            yield client

    @pytest.fixture
    def adapter(self, client: httpx.AsyncClient, httpserver: HTTPServer) -> ProviderAdapter:
        return self.adapter_class(client, self.credentials, httpserver.url_for("/"))

    async def test_it_reports_malformed_json_as_a_bad_response(self, adapter: ProviderAdapter, httpserver: HTTPServer) -> None:
        self.route(httpserver).respond_with_data('{"data": [', content_type="application/json")
        error = await failure(adapter)
        assert (error.kind, error.provider) == (FailureKind.BAD_RESPONSE, adapter.slug)
        assert "malformed JSON" in error.detail

    async def test_it_gives_up_on_a_slow_answer_as_a_timeout(self, httpserver: HTTPServer) -> None:
        def slow(request: Request) -> Response:
            time.sleep(SLOW_TIMEOUT * 5)
            return Response("{}", content_type="application/json")

        self.route(httpserver).respond_with_handler(slow)
        async with httpx.AsyncClient(timeout=SLOW_TIMEOUT) as client:
            error = await failure(self.adapter_class(client, self.credentials, httpserver.url_for("/")))
        assert error.kind is FailureKind.TIMEOUT

    async def test_it_reports_a_rate_limit_with_retry_after_in_seconds(self, adapter: ProviderAdapter, httpserver: HTTPServer) -> None:
        self.route(httpserver).respond_with_json({"error": "slow down"}, status=429, headers={"Retry-After": "17"})
        error = await failure(adapter)
        assert (error.kind, error.retry_after) == (FailureKind.RATE_LIMITED, 17.0)

    async def test_it_reads_retry_after_given_as_an_http_date(self, adapter: ProviderAdapter, httpserver: HTTPServer) -> None:
        when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
        self.route(httpserver).respond_with_data("", status=429, headers={"Retry-After": when})
        error = await failure(adapter)
        assert error.kind is FailureKind.RATE_LIMITED
        assert error.retry_after is not None and 100 < error.retry_after <= 120

    async def test_it_reports_refused_credentials_as_auth(self, adapter: ProviderAdapter, httpserver: HTTPServer) -> None:
        echoed = " ".join(self.credentials.values())
        self.route(httpserver).respond_with_json({"error": f"invalid key {echoed}"}, status=401)
        error = await failure(adapter)
        assert error.kind is FailureKind.AUTH
        assert "401" in error.detail

    async def test_it_reports_a_server_error_as_unavailable(self, adapter: ProviderAdapter, httpserver: HTTPServer) -> None:
        self.route(httpserver).respond_with_data("upstream exploded", status=500)
        error = await failure(adapter)
        assert error.kind is FailureKind.UNAVAILABLE
        assert "500" in error.detail

    async def test_it_reports_an_unreachable_api_as_unavailable(self, client: httpx.AsyncClient) -> None:
        error = await failure(self.adapter_class(client, self.credentials, "http://127.0.0.1:9"))
        assert error.kind is FailureKind.UNAVAILABLE

    async def test_it_never_shows_credentials(
        self, adapter: ProviderAdapter, httpserver: HTTPServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        echoed = " ".join(self.credentials.values())
        self.route(httpserver).respond_with_json({"error": f"key {echoed} refused"}, status=403)
        error = await failure(adapter)
        shown = [str(error), repr(error), error.detail, str(adapter), repr(adapter), caplog.text]
        for secret in self.credentials.values():
            assert all(secret not in text for text in shown)
