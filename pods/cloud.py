"""The provider side of a pod: the adapter that provisions it, called from sync code.

In SANDBOX every provider is the simulated cloud (`providers.adapters.sandbox`), one per process,
its market resumed from the published prices and its instances in Redis when there is Redis (so
the web and the worker see the same instances) or in memory (the embedded default, one process).
In LIVE it is the provider's registered adapter with its configured credentials.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

import httpx
from asgiref.sync import async_to_sync
from django.conf import settings
from django.utils import timezone

from providers.adapters.base import AdapterError, FailureKind, ProviderAdapter
from providers.models import Offer, Provider

T = TypeVar("T")
_lock = threading.Lock()
_sandbox: dict[str, Any] = {}


def sandbox_cloud() -> Any:
    """This process's simulated cloud (built once)."""
    with _lock:
        if "cloud" not in _sandbox:
            from providers.worker import default_sandbox_cloud

            cloud = default_sandbox_cloud(settings.REDIS_URL or None)
            from dataclasses import replace

            cloud.market.settings = replace(cloud.market.settings, provision_time_scale=settings.SANDBOX_PROVISION_TIME_SCALE)
            _sandbox["cloud"] = cloud
            _sandbox["resumed"] = set()
        return _sandbox["cloud"]


def use_sandbox_cloud(cloud: Any) -> None:
    """Puts another simulated cloud in place (tests: a quiet market, a clock of their own)."""
    with _lock:
        _sandbox["cloud"] = cloud
        _sandbox["resumed"] = set()


def _resume(cloud: Any, slug: str) -> None:
    from providers.ingest import current_quotes

    if slug in _sandbox.get("resumed", set()):
        return
    provider = Provider.objects.filter(slug=slug).first()
    if provider is not None:
        cloud.market.resume(slug, current_quotes(provider))
    _sandbox.setdefault("resumed", set()).add(slug)


def _adapter(slug: str, client: httpx.AsyncClient) -> ProviderAdapter:
    if settings.GPUBROKER_MODE == "sandbox":
        from providers.adapters.sandbox import SandboxAdapter

        cloud = sandbox_cloud()
        if slug not in cloud.market.providers:
            raise AdapterError(slug, FailureKind.BAD_RESPONSE, "this provider is not in the sandbox market")
        return SandboxAdapter(client, provider=slug, cloud=cloud)
    from providers.adapters import build_adapter

    return build_adapter(slug, client)


def call(slug: str, work: Callable[[ProviderAdapter], Awaitable[T]]) -> T:
    """Runs one adapter call to completion from sync code (never inside a transaction: callers' rule)."""
    if settings.GPUBROKER_MODE == "sandbox":
        _resume(sandbox_cloud(), slug)

    async def run() -> T:
        async with httpx.AsyncClient(timeout=15.0, follow_redirects=False) as client:
            return await work(_adapter(slug, client))

    return async_to_sync(run)()


@dataclass(frozen=True)
class Quote:
    """A price asked of the provider at this moment (not the cache)."""

    provider_price: Decimal
    availability: str
    at: datetime
    source: str  # what answered: "sandbox market" or "<provider> API"


def requote(offer: Offer) -> Quote:
    """The offer's price from the provider now, through its adapter; AdapterError if it is gone."""
    slug = offer.provider.slug
    try:
        offers = call(slug, lambda adapter: adapter.fetch_offers())
    except AdapterError as exc:
        if exc.kind not in (FailureKind.UNAVAILABLE, FailureKind.TIMEOUT):
            raise
        offers = call(slug, lambda adapter: adapter.fetch_offers())  # one retry: APIs blip
    for found in offers:
        if (found.name, found.region) == (offer.name, offer.region):
            source = "sandbox market" if settings.GPUBROKER_MODE == "sandbox" else f"{offer.provider.name} API"
            return Quote(found.price_per_hour, found.availability_status, timezone.now(), source)
    raise AdapterError(slug, FailureKind.NO_CAPACITY, f"{offer.provider.name} no longer lists {offer.name} in {offer.region or 'its region'}")
