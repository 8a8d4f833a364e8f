"""The adapter registry, building adapters from settings, and credentials kept out of sight."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from providers.adapters import REGISTRY, adapter_class, build_adapter
from providers.adapters.base import FailureKind, ProviderAdapter

SECRET = "s3cr3t-VALUE-that-must-not-show"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=1.0) as client:
        yield client


def test_it_registers_at_least_eight_providers() -> None:
    assert len(REGISTRY) >= 8


@pytest.mark.parametrize("slug", sorted(REGISTRY))
def test_each_registered_path_loads_the_adapter_for_its_slug(slug: str) -> None:
    cls = adapter_class(slug)
    assert issubclass(cls, ProviderAdapter)
    assert cls.slug == slug
    assert cls.default_api_base.startswith("https://")


def test_it_refuses_an_unknown_slug() -> None:
    with pytest.raises(KeyError, match="no adapter registered for provider 'nimbus'"):
        adapter_class("nimbus")


@pytest.mark.parametrize("slug", sorted(REGISTRY))
def test_settings_hold_every_credential_an_adapter_needs(slug: str, settings: Any) -> None:
    assert set(adapter_class(slug).credential_names) <= set(settings.PROVIDER_CREDENTIALS[slug])


async def test_build_adapter_uses_the_configured_credentials_and_base(client: httpx.AsyncClient, settings: Any) -> None:
    settings.PROVIDER_CREDENTIALS = {**settings.PROVIDER_CREDENTIALS, "lambda": {"api_key": SECRET}}
    settings.PROVIDER_API_BASES = {"lambda": "http://127.0.0.1:8999/"}
    adapter = build_adapter("lambda", client)
    assert (adapter.api_base, adapter.configured, adapter.credential("api_key")) == ("http://127.0.0.1:8999", True, SECRET)
    assert adapter.client is client


async def test_build_adapter_leaves_empty_credentials_out(client: httpx.AsyncClient, settings: Any) -> None:
    settings.PROVIDER_CREDENTIALS = {**settings.PROVIDER_CREDENTIALS, "tensordock": {"api_key": ""}}
    settings.PROVIDER_API_BASES = {}
    adapter = build_adapter("tensordock", client)
    assert (adapter.api_base, adapter.configured) == ("https://dashboard.tensordock.com", False)


@pytest.mark.parametrize("slug", sorted(REGISTRY))
async def test_credentials_never_show_in_repr_or_errors(slug: str, client: httpx.AsyncClient) -> None:
    cls = adapter_class(slug)
    adapter = cls(client, {name: SECRET for name in (*cls.credential_names, "api_key")})
    error = adapter.error(FailureKind.AUTH, f"provider said: key {SECRET} is revoked")
    for text in (str(adapter), repr(adapter), str(error), repr(error), error.detail):
        assert SECRET not in text
    assert error.detail == "provider said: key *** is revoked"


@pytest.mark.parametrize("slug", sorted(slug for slug in REGISTRY if adapter_class(slug).credential_names))
async def test_an_adapter_without_its_credentials_fails_as_auth_without_calling(slug: str) -> None:
    calls: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, json={})

    async with httpx.AsyncClient(transport=httpx.MockTransport(record)) as client:
        with pytest.raises(Exception) as caught:
            await adapter_class(slug)(client, {}).fetch_offers()
    assert getattr(caught.value, "kind", None) is FailureKind.AUTH
    assert calls == []
