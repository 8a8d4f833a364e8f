"""The contract every provider adapter keeps: fetch offers, check health, (optionally) provision.

An adapter is one module per provider under `providers/adapters/`, listed in the registry
(`providers/adapters/__init__.py`). It talks to the provider's real API with the shared
`httpx.AsyncClient` it is given, and returns normalised `OfferData`; it never touches the database
or the cache (the aggregation engine does). Failures surface as `AdapterError` with a `kind` the
engine's circuit breaker and backoff understand. Credentials are passed in, never read from the
environment here, and never appear in an error message or a log line.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import ClassVar

import httpx


class FailureKind(StrEnum):
    TIMEOUT = "timeout"  # no answer in time
    RATE_LIMITED = "rate_limited"  # 429; `retry_after` says when to try again, if the provider said
    AUTH = "auth"  # 401/403: missing or rejected credentials
    BAD_RESPONSE = "bad_response"  # an answer we cannot read (malformed JSON, missing fields)
    UNAVAILABLE = "unavailable"  # 5xx or a connection failure
    NO_CAPACITY = "no_capacity"  # provisioning: the offer has no capacity right now


class AdapterError(Exception):
    """A provider call failed; `kind` tells the engine how to react."""

    def __init__(self, provider: str, kind: FailureKind, detail: str, retry_after: float | None = None) -> None:
        self.provider = provider
        self.kind = kind
        self.detail = detail
        self.retry_after = retry_after
        super().__init__(f"{provider}: {kind.value}: {detail}")


@dataclass(frozen=True)
class OfferData:
    """One normalised offer, as every adapter returns it (the product's Offer schema)."""

    provider: str  # the adapter's slug
    name: str  # the provider's instance type / SKU
    gpu_type: str  # canonical, from providers.gpu_names.canonical_gpu, e.g. "H100 80GB"
    gpu_type_raw: str  # as the provider spells it
    gpu_count: int
    gpu_memory_gb: int  # per GPU
    price_per_hour: Decimal  # whole offer, on demand
    region: str
    availability_status: str = "available"  # providers.models.Availability value
    spot_price: Decimal | None = None
    vcpus: int | None = None
    ram_gb: Decimal | None = None
    storage_gb: int | None = None
    currency: str = "USD"
    compliance_tags: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str, str]:
        """What identifies an offer across refreshes (the database's unique key)."""
        return (self.provider, self.name, self.region)


@dataclass(frozen=True)
class HealthResult:
    healthy: bool
    latency_ms: float
    detail: str = ""
    checked_at: datetime | None = None


@dataclass(frozen=True)
class ProvisionRequest:
    offer_name: str
    region: str
    gpu_count: int
    image: str
    name: str
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class InstanceState:
    instance_id: str
    status: str  # pending | provisioning | running | stopped | terminated | failed
    ssh_host: str | None = None
    ssh_port: int | None = None
    detail: str = ""


class ProviderAdapter(abc.ABC):
    """Base class of every provider adapter."""

    slug: ClassVar[str]
    display_name: ClassVar[str]
    default_api_base: ClassVar[str]
    # Names of the credentials this adapter needs (e.g. ("api_key",)); empty for public APIs.
    credential_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, client: httpx.AsyncClient, credentials: Mapping[str, str] | None = None, api_base: str | None = None) -> None:
        self.client = client
        self._credentials = dict(credentials or {})
        self.api_base = (api_base or self.default_api_base).rstrip("/")
        # Why listed items were left out of the last `fetch_offers` (one reason each): a provider
        # that sends a few unreadable items still yields the rest; the engine reports the count.
        self.skipped: list[str] = []

    def __repr__(self) -> str:  # never show credentials
        return f"<{type(self).__name__} {self.api_base}>"

    @property
    def configured(self) -> bool:
        return all(self._credentials.get(name) for name in self.credential_names)

    def credential(self, name: str) -> str:
        value = self._credentials.get(name)
        if not value:
            raise AdapterError(self.slug, FailureKind.AUTH, f"credential {name!r} is not configured")
        return value

    def optional_credential(self, name: str) -> str | None:
        """A credential the provider accepts but does not require (public price queries)."""
        return self._credentials.get(name) or None

    def error(self, kind: FailureKind, detail: str, retry_after: float | None = None) -> AdapterError:
        """An AdapterError for this provider, with any credential value blanked out of `detail`:
        a provider that echoes the key back in an error body must not put it in our logs."""
        for value in self._credentials.values():
            if value:
                detail = detail.replace(value, "***")
        return AdapterError(self.slug, kind, detail, retry_after)

    @abc.abstractmethod
    async def fetch_offers(self) -> list[OfferData]:
        """Every GPU offer the provider lists now, normalised. Raises AdapterError."""

    async def health_check(self) -> HealthResult:
        """A cheap call that proves the API answers; by default a full fetch, timed."""
        import time

        started = time.perf_counter()
        try:
            await self.fetch_offers()
        except AdapterError as exc:
            return HealthResult(False, (time.perf_counter() - started) * 1000, str(exc))
        return HealthResult(True, (time.perf_counter() - started) * 1000)

    # Provisioning. Adapters that can rent out instances override all three; the others say so
    # with a precise error instead of pretending.
    supports_provisioning: ClassVar[bool] = False

    async def provision(self, request: ProvisionRequest) -> InstanceState:
        raise AdapterError(self.slug, FailureKind.UNAVAILABLE, "provisioning through GPUBROKER is not available for this provider")

    async def instance_state(self, instance_id: str) -> InstanceState:
        raise AdapterError(self.slug, FailureKind.UNAVAILABLE, "provisioning through GPUBROKER is not available for this provider")

    async def terminate(self, instance_id: str) -> InstanceState:
        raise AdapterError(self.slug, FailureKind.UNAVAILABLE, "provisioning through GPUBROKER is not available for this provider")
