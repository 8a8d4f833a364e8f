"""The sandbox provider: the real public price snapshot behind the same interface as a live API.

One `SandboxAdapter` stands for one provider of the snapshot (AWS, RunPod, ...), so the engine,
the circuit breakers and the channel groups treat sandbox providers exactly like live ones. What
moves is simulated by `SandboxMarket`, shared by every adapter of a process:

- prices: each fetch moves a share of the provider's offers one step of a bounded random walk
  around their snapshot price (log-normal steps, reflected inside list price x (1 +- 30 %));
- capacity: now and then an offer becomes limited, unavailable, or available again;
- outliers: rarely a fetch reports a price far off the walk (x 0.3 or x 3), as real APIs
  occasionally do, and the next fetch is back on the walk, which is what anomaly detection is for;
- the API itself: a little latency and rare failures (5xx) that the circuit breaker sees.

Provisioning is simulated with a realistic lifecycle (pending -> provisioning -> running, or
failed; stopped; terminated) whose timings come from the instance record, so any process that can
read the record (memory, or Redis shared by every instance) reports the same state.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, ClassVar, Protocol

import httpx
import orjson

from providers.adapters.base import (
    AdapterError,
    FailureKind,
    HealthResult,
    InstanceState,
    OfferData,
    ProviderAdapter,
    ProvisionRequest,
)
from providers.snapshot import SnapshotOffer

DRIFT_BOUND = 0.30  # the walk stays within list price x (1 +- bound)
STEP_SIGMA = 0.03  # log-price standard deviation of one step
MOVE_SHARE = 0.08  # share of a provider's offers that move on one fetch
AVAILABILITY_CHANGE_CHANCE = 0.02  # per offer and fetch
OUTLIER_CHANCE = 0.0015  # per offer and fetch
AVAILABILITY_STATES = ("available", "limited", "unavailable")

OfferKey = tuple[str, str, str]


@dataclass
class _Quote:
    list_price: Decimal
    price: Decimal
    availability: str


@dataclass(frozen=True)
class MarketSettings:
    """How lively the simulated market and API are; tests turn the randomness off."""

    latency_seconds: tuple[float, float] = (0.02, 0.15)
    failure_rate: float = 0.01
    move_share: float = MOVE_SHARE
    availability_change_chance: float = AVAILABILITY_CHANGE_CHANCE
    outlier_chance: float = OUTLIER_CHANCE
    # Provisioning timings in seconds (before scaling): pending, then provisioning, per instance.
    pending_seconds: tuple[float, float] = (2.0, 5.0)
    provisioning_seconds: tuple[float, float] = (20.0, 60.0)
    provision_failure_rate: float = 0.03
    provision_time_scale: float = 1.0


def next_price(price: Decimal, list_price: Decimal, rng: random.Random, sigma: float = STEP_SIGMA) -> Decimal:
    """One random-walk step, reflected back inside the bound around the list price."""
    low, high = float(list_price) * (1 - DRIFT_BOUND), float(list_price) * (1 + DRIFT_BOUND)
    moved = float(price) * math.exp(rng.gauss(0.0, sigma))
    if moved > high:
        moved = high - (moved - high)
    elif moved < low:
        moved = low + (low - moved)
    return Decimal(str(round(min(max(moved, low), high), 4)))


def next_availability(current: str, rng: random.Random) -> str:
    return rng.choice([state for state in AVAILABILITY_STATES if state != current])


class SandboxMarket:
    """Simulated prices and capacity of every snapshot provider in this process."""

    def __init__(self, offers: Iterable[SnapshotOffer], settings: MarketSettings | None = None, seed: int | None = None) -> None:
        self.settings = settings or MarketSettings()
        self.rng = random.Random(seed)
        self._lock = threading.Lock()
        self._static: dict[OfferKey, SnapshotOffer] = {}
        self._quotes: dict[str, dict[OfferKey, _Quote]] = {}
        for offer in offers:
            key = (offer.provider_slug, offer.name, offer.region)
            self._static[key] = offer
            self._quotes.setdefault(offer.provider_slug, {})[key] = _Quote(
                offer.price_per_hour, offer.price_per_hour, offer.availability_status
            )

    @property
    def providers(self) -> list[str]:
        return sorted(self._quotes)

    def resume(self, provider: str, current: Mapping[OfferKey, tuple[Decimal, str]]) -> int:
        """Continue the walk from prices published before (by this or another worker).

        Without it a restarted worker would jump every price back to the snapshot. Returns how
        many offers were resumed; prices outside the bound (e.g. an outlier) are left alone.
        """
        resumed = 0
        with self._lock:
            quotes = self._quotes.get(provider, {})
            for key, (price, availability) in current.items():
                quote = quotes.get(key)
                if quote is None:
                    continue
                ratio = float(price) / float(quote.list_price)
                if 1 - DRIFT_BOUND <= ratio <= 1 + DRIFT_BOUND and availability in AVAILABILITY_STATES:
                    quote.price, quote.availability = Decimal(price), availability
                    resumed += 1
        return resumed

    def step(self, provider: str) -> list[OfferData]:
        """Moves the provider's market one fetch forward and returns what its API would list."""
        settings = self.settings
        with self._lock:
            quotes = self._quotes.get(provider)
            if quotes is None:
                raise KeyError(provider)
            result = []
            for key, quote in quotes.items():
                if self.rng.random() < settings.move_share:
                    quote.price = next_price(quote.price, quote.list_price, self.rng)
                if self.rng.random() < settings.availability_change_chance:
                    quote.availability = next_availability(quote.availability, self.rng)
                shown = quote.price
                if self.rng.random() < settings.outlier_chance:
                    # A glitch in the provider's listing: reported once, the walk itself unchanged.
                    factor = self.rng.choice((self.rng.uniform(0.25, 0.4), self.rng.uniform(2.5, 4.0)))
                    shown = Decimal(str(round(float(quote.price) * factor, 4)))
                result.append(self._offer(key, shown, quote.availability))
            return result

    def quote(self, key: OfferKey) -> tuple[Decimal, str] | None:
        with self._lock:
            quote = self._quotes.get(key[0], {}).get(key)
            return (quote.price, quote.availability) if quote else None

    def _offer(self, key: OfferKey, price: Decimal, availability: str) -> OfferData:
        static = self._static[key]
        spot = static.spot_price
        if spot is not None and static.price_per_hour:
            # Spot moves with on-demand, keeping the snapshot's discount.
            spot = Decimal(str(round(float(spot) * float(price) / float(static.price_per_hour), 4)))
        return OfferData(
            provider=static.provider_slug,
            name=static.name,
            gpu_type=static.gpu_type,
            gpu_type_raw=static.gpu_type_raw,
            gpu_count=static.gpu_count,
            gpu_memory_gb=static.gpu_memory_gb,
            price_per_hour=price,
            region=static.region,
            availability_status=availability,
            spot_price=spot,
            vcpus=static.vcpus,
            ram_gb=static.ram_gb,
        )


class InstanceStore(Protocol):
    """Where the simulated cloud keeps its instances (the provider's side of the state)."""

    def get(self, instance_id: str) -> dict[str, Any] | None: ...
    def put(self, record: dict[str, Any]) -> None: ...
    def claim_name(self, provider: str, name: str, instance_id: str) -> str:
        """Binds `name` to `instance_id` unless bound already; returns the bound id."""
        ...


class MemoryInstanceStore:
    def __init__(self) -> None:
        self._records: dict[str, dict[str, Any]] = {}
        self._names: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def get(self, instance_id: str) -> dict[str, Any] | None:
        with self._lock:
            record = self._records.get(instance_id)
            return dict(record) if record else None

    def put(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._records[record["id"]] = dict(record)

    def claim_name(self, provider: str, name: str, instance_id: str) -> str:
        with self._lock:
            return self._names.setdefault((provider, name), instance_id)


class RedisInstanceStore:
    """Instances in Redis, so every web instance and worker sees the same simulated cloud."""

    RETENTION_SECONDS = 30 * 24 * 3600

    def __init__(self, client: Any, prefix: str = "gpubroker:sandbox") -> None:
        self.client = client
        self.prefix = prefix

    def get(self, instance_id: str) -> dict[str, Any] | None:
        raw = self.client.get(f"{self.prefix}:instance:{instance_id}")
        return orjson.loads(raw) if raw else None

    def put(self, record: dict[str, Any]) -> None:
        self.client.set(f"{self.prefix}:instance:{record['id']}", orjson.dumps(record), ex=self.RETENTION_SECONDS)

    def claim_name(self, provider: str, name: str, instance_id: str) -> str:
        key = f"{self.prefix}:name:{provider}:{name}"
        if self.client.set(key, instance_id, nx=True, ex=self.RETENTION_SECONDS):
            return instance_id
        bound = self.client.get(key)
        return bound.decode() if isinstance(bound, bytes) else str(bound)


def _fraction(instance_id: str, salt: str) -> float:
    """A stable number in [0, 1) per instance, so every process derives the same timings."""
    digest = hashlib.blake2b(f"{instance_id}|{salt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass
class SandboxCloud:
    """Provisioning in the simulated cloud; timings are derived from the record and the clock."""

    market: SandboxMarket
    store: InstanceStore = field(default_factory=MemoryInstanceStore)
    clock: Callable[[], float] = time.time

    def _timings(self, instance_id: str) -> tuple[float, float, bool]:
        s = self.market.settings
        pending = s.pending_seconds[0] + (s.pending_seconds[1] - s.pending_seconds[0]) * _fraction(instance_id, "pending")
        building = s.provisioning_seconds[0] + (s.provisioning_seconds[1] - s.provisioning_seconds[0]) * _fraction(instance_id, "build")
        fails = _fraction(instance_id, "fails") < s.provision_failure_rate
        return pending * s.provision_time_scale, building * s.provision_time_scale, fails

    def state_of(self, record: dict[str, Any]) -> InstanceState:
        instance_id = record["id"]
        if record.get("terminated_at"):
            return InstanceState(instance_id, "terminated", detail="terminated on request")
        if record.get("stopped_at"):
            return InstanceState(instance_id, "stopped", detail="stopped on request; storage kept")
        elapsed = self.clock() - record["created_at"]
        pending, building, fails = self._timings(instance_id)
        if elapsed < pending:
            return InstanceState(instance_id, "pending", detail="waiting for a host with capacity")
        if elapsed < pending + building:
            return InstanceState(instance_id, "provisioning", detail="pulling the image and booting")
        if fails:
            return InstanceState(instance_id, "failed", detail="the host failed its health check during boot")
        # `.invalid` is reserved (RFC 2606): a sandbox address can never be mistaken for a real one.
        return InstanceState(instance_id, "running", ssh_host=f"{instance_id}.sandbox.gpubroker.invalid", ssh_port=22)

    def provision(self, provider: str, request: ProvisionRequest) -> InstanceState:
        quote = self.market.quote((provider, request.offer_name, request.region))
        if quote is None:
            raise AdapterError(provider, FailureKind.BAD_RESPONSE, f"no offer {request.offer_name!r} in region {request.region!r}")
        if quote[1] == "unavailable":
            raise AdapterError(provider, FailureKind.NO_CAPACITY, f"{request.offer_name} has no capacity in {request.region} right now")
        new_id = f"sbx-{provider}-{uuid.uuid4().hex[:12]}"
        # The request's name is the idempotency key: asking twice gives the same instance.
        instance_id = self.store.claim_name(provider, request.name, new_id)
        record = self.store.get(instance_id)
        if record is None:
            record = {
                "id": instance_id,
                "provider": provider,
                "offer": request.offer_name,
                "region": request.region,
                "gpu_count": request.gpu_count,
                "image": request.image,
                "name": request.name,
                "price_per_hour": str(quote[0]),
                "created_at": self.clock(),
            }
            self.store.put(record)
        return self.state_of(record)

    def _record(self, provider: str, instance_id: str) -> dict[str, Any]:
        record = self.store.get(instance_id)
        if record is None or record["provider"] != provider:
            raise AdapterError(provider, FailureKind.BAD_RESPONSE, f"no instance {instance_id!r}")
        return record

    def instance_state(self, provider: str, instance_id: str) -> InstanceState:
        return self.state_of(self._record(provider, instance_id))

    def stop(self, provider: str, instance_id: str) -> InstanceState:
        record = self._record(provider, instance_id)
        if not record.get("terminated_at") and not record.get("stopped_at"):
            record["stopped_at"] = self.clock()
            self.store.put(record)
        return self.state_of(record)

    def start(self, provider: str, instance_id: str) -> InstanceState:
        """Boots a stopped instance again on its kept storage (running at once, as a warm start)."""
        record = self._record(provider, instance_id)
        if record.get("terminated_at"):
            raise AdapterError(provider, FailureKind.BAD_RESPONSE, f"instance {instance_id!r} is terminated")
        if record.get("stopped_at"):
            record["stopped_at"] = None
            self.store.put(record)
        return self.state_of(record)

    def terminate(self, provider: str, instance_id: str) -> InstanceState:
        record = self._record(provider, instance_id)
        if not record.get("terminated_at"):  # terminating twice is a no-op, not an error
            record["terminated_at"] = self.clock()
            self.store.put(record)
        return self.state_of(record)


class SandboxAdapter(ProviderAdapter):
    """One snapshot provider served by the simulated market (registered as "sandbox")."""

    slug: ClassVar[str] = "sandbox"
    display_name: ClassVar[str] = "Sandbox market"
    default_api_base: ClassVar[str] = "sandbox://snapshot"
    supports_provisioning: ClassVar[bool] = True

    def __init__(
        self,
        client: httpx.AsyncClient,
        credentials: Mapping[str, str] | None = None,
        api_base: str | None = None,
        *,
        provider: str,
        cloud: SandboxCloud,
    ) -> None:
        super().__init__(client, credentials, api_base)
        self.provider = provider
        self.cloud = cloud

    def __repr__(self) -> str:
        return f"<SandboxAdapter {self.provider}>"

    async def _api_call(self) -> None:
        """What a network round trip costs and how it fails, as the provider's API would."""
        settings = self.cloud.market.settings
        low, high = settings.latency_seconds
        if high > 0:
            await asyncio.sleep(self.cloud.market.rng.uniform(low, high))
        if self.cloud.market.rng.random() < settings.failure_rate:
            raise AdapterError(self.provider, FailureKind.UNAVAILABLE, "503 Service Unavailable (simulated outage)")

    async def fetch_offers(self) -> list[OfferData]:
        await self._api_call()
        return self.cloud.market.step(self.provider)

    async def health_check(self) -> HealthResult:
        started = time.perf_counter()
        try:
            await self._api_call()
        except AdapterError as exc:
            return HealthResult(False, (time.perf_counter() - started) * 1000, str(exc))
        return HealthResult(True, (time.perf_counter() - started) * 1000)

    def resume(self, current: Mapping[OfferKey, tuple[Decimal, str]]) -> int:
        return self.cloud.market.resume(self.provider, current)

    async def provision(self, request: ProvisionRequest) -> InstanceState:
        await self._api_call()
        return self.cloud.provision(self.provider, request)

    async def instance_state(self, instance_id: str) -> InstanceState:
        await self._api_call()
        return self.cloud.instance_state(self.provider, instance_id)

    async def stop(self, instance_id: str) -> InstanceState:
        await self._api_call()
        return self.cloud.stop(self.provider, instance_id)

    async def start(self, instance_id: str) -> InstanceState:
        await self._api_call()
        return self.cloud.start(self.provider, instance_id)

    async def terminate(self, instance_id: str) -> InstanceState:
        await self._api_call()
        return self.cloud.terminate(self.provider, instance_id)


def quiet_settings(**overrides: Any) -> MarketSettings:
    """A market without latency, failures or outliers (for tests and benchmarks)."""
    return replace(MarketSettings(latency_seconds=(0.0, 0.0), failure_rate=0.0, outlier_chance=0.0), **overrides)
