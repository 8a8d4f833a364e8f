"""The worker: one path from providers to pages.

    adapter.fetch_offers -> aggregation engine (breaker, bulkhead, timeout) -> ingest (DB upsert +
    PriceSample) -> gpubroker.price-updates -> consumers: analytics (changes > 5 %, anomalies with
    z > 3 -> gpubroker.price-alerts; one-minute aggregates) and fanout (Channels groups: the landing
    rows, price_updates, provider.*, gpu.*, region.*, availability, health_status)

Schedules: each provider is refreshed every 60 s (sandbox providers every SANDBOX_REFRESH_SECONDS),
scaled up for slow providers by their weight; health checks every 30 s; pruning hourly.

Several workers may run at once: a refresh, a health check or a prune happens only under a lease
(`SET NX PX` in Redis) whose lifetime is the schedule's interval, so each is done once per interval
across all workers; events are shared out by the streams' consumer groups. Without Redis (the
embedded default) the same code runs with in-process leases and streams.

Every event is written to the outbox in the transaction of the change it announces and relayed to
its stream by the worker's `outbox.Relay` (at once after a local commit, and every
`outbox_poll_seconds` for whatever a crashed worker or another app left); each consumer group
handles an event id once (`outbox.once`). The scheduler's clock is injectable, and `tick(now)` is
one pass of it, so tests step time instead of sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction
from django.utils import timezone

from providers import events, outbox
from providers.adapters.base import ProviderAdapter
from providers.aggregation import AggregationEngine, ProviderOutcome
from providers.calc import minute_aggregates, zscore
from providers.groups import AVAILABILITY, HEALTH_STATUS, PRICE_UPDATES, gpu_group, provider_group, region_group
from providers.ingest import IngestResult, apply_offers, current_quotes
from providers.live import apublish_price_rows
from providers.models import Availability, CircuitState, HealthStatus, Offer, OutboxEvent, PriceAggregate, PriceSample, PriceSource, Provider

logger = logging.getLogger("gpubroker.worker")

LIVE_REFRESH_SECONDS = 60.0
HEALTH_SECONDS = 30.0
PRUNE_SECONDS = 3600.0
SIGNIFICANT_PCT = 5.0
ANOMALY_Z = 3.0
ANOMALY_WINDOW = 30  # previous samples of an offer the z-score is judged against
SLOW_HEALTH_MS = 2000.0


# ----- leases -----

class MemoryLeases:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._until: dict[str, float] = {}

    async def acquire(self, name: str, seconds: float) -> bool:
        now = self.clock()
        if self._until.get(name, 0.0) > now:
            return False
        self._until[name] = now + seconds
        return True


class RedisLeases:
    def __init__(self, client: Any, owner: str, prefix: str = "gpubroker:lease:") -> None:
        self.client, self.owner, self.prefix = client, owner, prefix

    async def acquire(self, name: str, seconds: float) -> bool:
        return bool(await self.client.set(self.prefix + name, self.owner, nx=True, px=max(1, int(seconds * 1000))))


# ----- adapters -----

def build_adapters(mode: str, client: httpx.AsyncClient, provider_slugs: list[str], *, sandbox_cloud: Any = None,
                   credentials: Mapping[str, Mapping[str, str]] | None = None,
                   api_bases: Mapping[str, str] | None = None) -> dict[str, ProviderAdapter]:
    """The adapter of each active provider: the sandbox market in sandbox mode, else the real API."""
    from providers.adapters import REGISTRY, adapter_class

    adapters: dict[str, ProviderAdapter] = {}
    if mode == "sandbox":
        from providers.adapters.sandbox import SandboxAdapter

        for slug in provider_slugs:
            if slug in sandbox_cloud.market.providers:
                adapters[slug] = SandboxAdapter(client, provider=slug, cloud=sandbox_cloud)
        return adapters
    for slug in provider_slugs:
        if slug in REGISTRY and slug != "sandbox":
            adapters[slug] = adapter_class(slug)(client, (credentials or {}).get(slug), (api_bases or {}).get(slug) or None)
    return adapters


def default_sandbox_cloud(redis_url: str | None) -> Any:
    from providers.adapters.sandbox import MarketSettings, MemoryInstanceStore, RedisInstanceStore, SandboxCloud, SandboxMarket
    from providers.snapshot import read_snapshot

    store: Any = MemoryInstanceStore()
    if redis_url:
        import redis

        store = RedisInstanceStore(redis.Redis.from_url(redis_url))
    return SandboxCloud(SandboxMarket(read_snapshot(), MarketSettings()), store)


# ----- analytics (sync, run in a thread) -----

def find_alerts(changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Significant changes (> 5 %) and anomalies (|z| > 3 against the offer's recent history)."""
    priced = [c for c in changes if c.get("old_price") and c["old_price"] != c["new_price"]]
    if not priced:
        return []
    history: dict[int, list[float]] = {}
    since = timezone.now() - timedelta(days=7)
    rows = (
        PriceSample.objects.filter(offer_id__in=[c["offer_id"] for c in priced], sampled_at__gte=since)
        .order_by("offer_id", "-sampled_at", "-id")
        .values_list("offer_id", "price_per_hour")
    )
    for offer_id, price in rows:
        history.setdefault(offer_id, []).append(float(price))
    alerts = []
    for change in priced:
        base = {k: change[k] for k in ("offer_id", "provider", "name", "region", "gpu_type", "old_price", "new_price", "pct_change")}
        if change["pct_change"] is not None and abs(change["pct_change"]) > SIGNIFICANT_PCT:
            alerts.append({**base, "kind": "significant_change"})
        # The newest sample is this change itself; judge it against the ones before (oldest first).
        past = history.get(change["offer_id"], [])[1 : ANOMALY_WINDOW + 1][::-1]
        z = zscore(past, change["new_price"])
        if z is not None and abs(z) > ANOMALY_Z:
            alerts.append({**base, "kind": "anomaly", "zscore": round(z, 2)})
    return alerts


def update_aggregates(gpu_types: list[str], minute_iso: str) -> int:
    """Recomputes this minute's statistics per GPU type from the offers (idempotent upsert)."""
    from datetime import datetime

    minute = datetime.fromisoformat(minute_iso)
    rows = (
        Offer.objects.filter(gpu_type__in=gpu_types, provider__active=True)
        .exclude(availability_status=Availability.UNAVAILABLE)
        .values_list("gpu_type", "price_per_hour", "gpu_count")
    )
    groups = [gpu_type for gpu_type, _, _ in rows]
    if not groups:
        return 0
    prices = [float(price) / count for _, price, count in rows]
    stamp = minute.timestamp()
    written = 0
    # One bucket (this minute) per GPU type: corecalc's per-group min, mean, max and count.
    for _, gpu_type, low, mean, high, count in minute_aggregates([stamp] * len(groups), groups, prices, 60.0):
        PriceAggregate.objects.update_or_create(
            gpu_type=gpu_type,
            minute=minute,
            defaults={
                "offers": count,
                "min_price": Decimal(str(round(low, 4))),
                "mean_price": Decimal(str(round(mean, 4))),
                "max_price": Decimal(str(round(high, 4))),
            },
        )
        written += 1
    return written


@transaction.atomic
def analyze_changes(event_key: str, changes: list[dict[str, Any]], at: str, minute_iso: str) -> int:
    """Alerts for one price-updates event (into the outbox) and this minute's aggregates, in one
    transaction; returns how many alerts were new. Each alert's id derives from the event's, so
    analysing the same event twice enqueues nothing more."""
    alerts = [
        (events.PRICE_ALERTS, {**alert, "source_event": event_key, "at": at}, outbox.derived_id("alert", event_key, alert["offer_id"], alert["kind"]))
        for alert in find_alerts(changes)
    ]
    known = set(OutboxEvent.objects.filter(event_id__in=[a[2] for a in alerts]).values_list("event_id", flat=True))
    outbox.enqueue_many(alert for alert in alerts if alert[2] not in known)
    update_aggregates(sorted({c["gpu_type"] for c in changes}), minute_iso)
    return len(alerts) - len(known)


@transaction.atomic
def _record_health(slug: str, status: str, now: Any, latency_ms: float, circuit: str, detail: str) -> str | None:
    """Stores a health check's result, with its event when the status changed; returns the status it replaces."""
    previous = Provider.objects.select_for_update().filter(slug=slug).values_list("health_status", flat=True).first()
    Provider.objects.filter(slug=slug).update(health_status=status, last_health_check=now, health_latency_ms=latency_ms, circuit_state=circuit)
    if previous != status:
        outbox.enqueue(events.PROVIDER_EVENTS, {
            "provider": slug, "kind": "health", "health_status": str(status), "previous": previous,
            "latency_ms": latency_ms, "detail": detail[:300], "at": now.isoformat(),
        })
    return previous


@transaction.atomic
def _record_circuit(provider_pk: int, slug: str, before: str, after: str, error: str) -> None:
    """Stores the circuit's state, with its event when it moved. An open circuit also marks the
    provider down at once, so its offers read as stale without waiting for the next health check."""
    now = timezone.now()
    health = Provider.objects.select_for_update().filter(pk=provider_pk).values_list("health_status", flat=True).first()
    Provider.objects.filter(pk=provider_pk).update(circuit_state=after)
    if after != before:
        outbox.enqueue(events.PROVIDER_EVENTS, {
            "provider": slug, "kind": "circuit", "circuit_state": after, "previous": before, "error": error, "at": now.isoformat(),
        })
    if after == CircuitState.OPEN and health != HealthStatus.DOWN:
        Provider.objects.filter(pk=provider_pk).update(health_status=HealthStatus.DOWN)
        outbox.enqueue(events.PROVIDER_EVENTS, {
            "provider": slug, "kind": "health", "health_status": str(HealthStatus.DOWN), "previous": health,
            "latency_ms": None, "detail": f"circuit open: {error}"[:300], "at": now.isoformat(),
        })


def prune(days: int = 30) -> int:
    """Deletes price history and aggregates older than the retention, and outbox rows long sent."""
    cutoff = timezone.now() - timedelta(days=days)
    samples, _ = PriceSample.objects.filter(sampled_at__lt=cutoff).delete()
    aggregates, _ = PriceAggregate.objects.filter(minute__lt=cutoff).delete()
    return samples + aggregates + outbox.prune_sent()


# ----- the worker -----

@dataclass
class WorkerSettings:
    sandbox_refresh_seconds: float = 10.0
    live_refresh_seconds: float = LIVE_REFRESH_SECONDS
    health_seconds: float = HEALTH_SECONDS
    prune_seconds: float = PRUNE_SECONDS
    tick_seconds: float = 0.5
    consumer_block_ms: int = 1000
    outbox_poll_seconds: float = 1.0  # how soon events left by a crashed worker or another app go out


def worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Worker:
    def __init__(
        self,
        engine: AggregationEngine,
        streams: events.StreamBackend,
        leases: Any,
        *,
        mode: str,
        settings: WorkerSettings | None = None,
        name: str | None = None,
        seen: outbox.Seen | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine, self.streams, self.leases, self.mode = engine, streams, leases, mode
        self.settings = settings or WorkerSettings()
        self.name = name or worker_id()
        self.clock = clock
        self.relay = outbox.Relay(streams, self.name)
        self.seen = seen or outbox.MemorySeen()
        self._next_refresh: dict[str, float] = {}
        self._next_prune = 0.0
        self._next_health: dict[str, float] = {}
        self._running: dict[str, asyncio.Task[Any]] = {}
        self._own_refresh: dict[str, Any] = {}
        self._health: dict[str, tuple[str, str]] = {}
        self.consumers = [
            self._consumer(events.PRICE_UPDATES, "analytics", self.analyze),
            self._consumer(events.PRICE_UPDATES, "fanout", self.fan_out_prices),
            self._consumer(events.PROVIDER_EVENTS, "fanout", self.fan_out_provider),
            self._consumer(events.PRICE_ALERTS, "fanout", self.fan_out_alert),
        ]

    def _consumer(self, stream: str, group: str, handler: events.Handler) -> events.StreamConsumer:
        # A group's handler runs once per event id, however often the relay published it.
        once = outbox.once(self.seen, f"{stream}:{group}", handler)
        return events.StreamConsumer(self.streams, stream, group, self.name, once, block_ms=self.settings.consumer_block_ms)

    def refresh_interval(self, slug: str) -> float:
        base = self.settings.sandbox_refresh_seconds if self.mode == "sandbox" else self.settings.live_refresh_seconds
        # A slow provider is asked less often: its weight is below 1 past 2 s of latency.
        return base / self.engine.slot(slug).weight

    async def run(self, stop: asyncio.Event) -> None:
        for consumer in self.consumers:
            await self.streams.ensure_group(consumer.stream, consumer.group)
        self.plan_first_round(self.clock(), random.Random())
        tasks = [asyncio.create_task(c.run(stop), name=f"consumer-{c.group}-{c.stream}") for c in self.consumers]
        tasks.append(asyncio.create_task(self._schedule(stop), name="scheduler"))
        tasks.append(asyncio.create_task(self.relay.run(stop, self.settings.outbox_poll_seconds), name="outbox-relay"))
        try:
            await stop.wait()
        finally:
            for task in [*tasks, *self._running.values()]:
                task.cancel()
            await asyncio.gather(*tasks, *self._running.values(), return_exceptions=True)

    def plan_first_round(self, now: float, rng: random.Random) -> None:
        for slug in self.engine.slots:
            # Spread the first round so providers are not all asked in the same second.
            self._next_refresh[slug] = now + rng.uniform(0, min(self.refresh_interval(slug), 5.0))
            self._next_health[slug] = now + rng.uniform(0, 5.0)
        self._next_prune = now

    async def _schedule(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.tick(self.clock())
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.settings.tick_seconds)
            except TimeoutError:
                pass

    async def tick(self, now: float) -> None:
        """One pass of the scheduler at time `now`: starts whatever is due and leased to us."""
        for slug in self.engine.slots:
            if now >= self._next_refresh[slug] and f"refresh:{slug}" not in self._running:
                interval = self.refresh_interval(slug)
                if await self.leases.acquire(f"refresh:{slug}", interval):
                    self._spawn(f"refresh:{slug}", self.refresh(slug))
                    self._next_refresh[slug] = now + interval
                else:  # another worker has it this round; look again soon
                    self._next_refresh[slug] = now + min(interval / 4, 2.0)
            if now >= self._next_health[slug] and f"health:{slug}" not in self._running:
                if await self.leases.acquire(f"health:{slug}", self.settings.health_seconds):
                    self._spawn(f"health:{slug}", self.check_health(slug))
                    self._next_health[slug] = now + self.settings.health_seconds
                else:
                    self._next_health[slug] = now + 2.0
        if now >= self._next_prune:
            self._next_prune = now + self.settings.prune_seconds
            if await self.leases.acquire("prune", self.settings.prune_seconds):
                self._spawn("prune", database_sync_to_async(prune)())

    def _spawn(self, name: str, work: Any) -> None:
        async def guarded() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("%s failed", name)
            finally:
                self._running.pop(name, None)

        self._running[name] = asyncio.create_task(guarded(), name=name)

    # ----- refresh -----

    async def refresh(self, slug: str) -> IngestResult | None:
        provider = await database_sync_to_async(Provider.objects.get)(slug=slug)
        adapter = self.engine.slot(slug).adapter
        if hasattr(adapter, "resume") and provider.last_refresh_at != self._own_refresh.get(slug):
            # Another worker (or an earlier run) published since our last refresh: continue its walk.
            adapter.resume(await database_sync_to_async(current_quotes)(provider))
        before = self.engine.slot(slug).breaker.state
        outcome = await self.engine.fetch(slug)
        await self._record_circuit(provider, before, outcome)
        if not outcome.ok:
            return None
        source = PriceSource.SANDBOX if self.mode == "sandbox" else PriceSource.LIVE_API
        result = await database_sync_to_async(apply_offers)(provider, outcome.offers, source=source)
        self._own_refresh[slug] = result.at
        await self.publish_pending()
        return result

    async def publish_pending(self) -> int:
        """Relays the outbox now (what this worker just committed, and anything left before)."""
        try:
            return await self.relay.drain()
        except Exception:
            # The rows stay in the outbox; the relay loop tries again.
            logger.exception("publishing the outbox failed; the relay will retry")
            self.relay.wake.set()
            return 0

    async def _record_circuit(self, provider: Provider, before: str, outcome: ProviderOutcome) -> None:
        after = self.engine.slot(provider.slug).breaker.state
        if after != provider.circuit_state or after != before:
            error = str(outcome.error) if outcome.error else ""
            await database_sync_to_async(_record_circuit)(provider.pk, provider.slug, before, after, error)
            await self.publish_pending()

    # ----- health -----

    async def check_health(self, slug: str) -> str:
        result = await self.engine.health_check(slug)
        circuit = self.engine.slot(slug).breaker.state
        if not result.healthy or circuit == CircuitState.OPEN:
            status = HealthStatus.DOWN
        elif result.latency_ms > SLOW_HEALTH_MS or circuit == CircuitState.HALF_OPEN:
            status = HealthStatus.DEGRADED
        else:
            status = HealthStatus.HEALTHY
        now = timezone.now()
        previous = await database_sync_to_async(_record_health)(slug, status, now, round(result.latency_ms, 2), circuit, result.detail)
        if previous != status:
            await self.publish_pending()
        return str(status)

    # ----- consumers -----

    async def analyze(self, event: events.Event) -> None:
        minute = timezone.now().replace(second=0, microsecond=0).isoformat()
        # At-least-once upstream: the same event may come twice; its alerts go out once.
        if await database_sync_to_async(analyze_changes)(outbox.event_key(event), event.payload["changes"], event.payload["at"], minute):
            await self.publish_pending()

    async def fan_out_prices(self, event: events.Event) -> None:
        await fan_out_price_changes(outbox.event_key(event), event.payload)

    async def fan_out_provider(self, event: events.Event) -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        message = {"type": "provider.health", "payload": {**event.payload, "event_id": outbox.event_key(event)}}
        await layer.group_send(HEALTH_STATUS, message)
        await layer.group_send(provider_group(event.payload["provider"]), message)

    async def fan_out_alert(self, event: events.Event) -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        message = {"type": "price.alert", "payload": {**event.payload, "event_id": outbox.event_key(event)}}
        await layer.group_send(gpu_group(event.payload["gpu_type"]), message)
        await layer.group_send(provider_group(event.payload["provider"]), message)


async def fan_out_price_changes(event_id: str, payload: dict[str, Any]) -> None:
    """Pushes one price-updates event to pages: the landing rows, then JSON to every group concerned."""
    changes = payload["changes"]
    layer = get_channel_layer()
    if layer is None or not changes:
        return
    await apublish_price_rows({c["gpu_type"] for c in changes})
    header = {"event_id": event_id, "provider": payload["provider"], "at": payload["at"]}
    await layer.group_send(PRICE_UPDATES, {"type": "offers.changed", "payload": {**header, "changes": changes}})
    by_group: dict[str, list[dict[str, Any]]] = {}
    for change in changes:
        for group in (provider_group(change["provider"]), gpu_group(change["gpu_type"]), region_group(change["region"] or "any")):
            by_group.setdefault(group, []).append(change)
        if change["old_availability"] != change["new_availability"]:
            by_group.setdefault(AVAILABILITY, []).append(change)
    for group, subset in by_group.items():
        await layer.group_send(group, {"type": "offers.changed", "payload": {**header, "changes": subset}})


async def build_worker(*, redis_url: str | None, mode: str, settings: WorkerSettings, client: httpx.AsyncClient,
                       sandbox_cloud: Any = None, name: str | None = None) -> Worker:
    """A worker for this deployment: Redis streams and leases when there is Redis, else memory."""
    rows = await database_sync_to_async(lambda: list(Provider.objects.filter(active=True).values_list("slug", "rate_limit_per_minute", "api_base")))()
    limits = {slug: limit for slug, limit, _ in rows}
    if mode == "sandbox" and sandbox_cloud is None:
        sandbox_cloud = await asyncio.to_thread(default_sandbox_cloud, redis_url)
    from django.conf import settings as django_settings

    # Live credentials per provider slug come from settings (filled from the environment by the
    # adapters' configuration); never from here, never logged.
    credentials = getattr(django_settings, "PROVIDER_CREDENTIALS", {})
    adapters = build_adapters(mode, client, sorted(limits), sandbox_cloud=sandbox_cloud, credentials=credentials,
                              api_bases={slug: base for slug, _, base in rows if base})
    engine = AggregationEngine(adapters, rate_limits=limits)
    name = name or worker_id()
    if redis_url:
        import redis.asyncio as aredis

        client_redis = aredis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=10)
        return Worker(engine, events.RedisStreams(client_redis), RedisLeases(client_redis, name), mode=mode, settings=settings, name=name,
                      seen=outbox.RedisSeen(client_redis))
    return Worker(engine, events.MemoryStreams(), MemoryLeases(), mode=mode, settings=settings, name=name)


async def run_worker(stop: asyncio.Event, *, redis_url: str | None, mode: str, settings: WorkerSettings) -> None:
    async with httpx.AsyncClient(timeout=10.0, follow_redirects=False) as client:
        worker = await build_worker(redis_url=redis_url, mode=mode, settings=settings, client=client)
        logger.info("worker %s: %d providers, refresh every %gs (sandbox) / %gs (live)", worker.name,
                    len(worker.engine.slots), settings.sandbox_refresh_seconds, settings.live_refresh_seconds)
        await worker.run(stop)


__all__ = ["Worker", "WorkerSettings", "run_worker", "build_worker", "prune", "find_alerts", "update_aggregates"]
