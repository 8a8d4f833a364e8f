"""`/metrics` in Prometheus format: request latency, cache hit ratio, circuits, providers, worker lag.

Request latency is observed by `LatencyMiddleware` (and by the fast path for the requests it
answers). Provider, circuit and worker figures are read at scrape time from what the worker
records in the database and the streams, so every web instance reports the same picture.

Who may scrape: a request with `Authorization: Bearer <METRICS_TOKEN>` when that is set; with no
token set, a request from this machine (a loopback address, not through a proxy, i.e. with no
X-Forwarded-For); and signed-in staff. Everyone else gets a bare 403. A scrape costs one small
query (the active providers) and reuses one Redis connection pool per process.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from web.access import local_or_staff
from web.middleware import HybridMiddleware

logger = logging.getLogger("gpubroker.metrics")

REQUEST_LATENCY = Histogram(
    "gpubroker_http_request_duration_seconds",
    "Time to answer an HTTP request, by route and status class",
    ["route", "method", "status"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)


def _route(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    return (match.route or match.view_name or "?") if match else "unmatched"


class LatencyMiddleware(HybridMiddleware):
    """Times each request from here inward; placed first so it sees the whole stack."""

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        started = time.perf_counter()
        response = self.get_response(request)
        self._observe(request, response, started)
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = await self.get_response(request)
        self._observe(request, response, started)
        return response

    @staticmethod
    def _observe(request: HttpRequest, response: HttpResponse, started: float) -> None:
        REQUEST_LATENCY.labels(_route(request), request.method or "?", f"{response.status_code // 100}xx").observe(time.perf_counter() - started)


class CatalogCollector(Collector):
    NAMES = (
        ("gpubroker_cache_hit_ratio", []), ("gpubroker_cache_reads", ["outcome"]),
        ("gpubroker_provider_circuit_state", ["provider", "state"]), ("gpubroker_provider_latency_seconds", ["provider"]),
        ("gpubroker_provider_healthy", ["provider"]), ("gpubroker_worker_lag_seconds", ["provider"]),
        ("gpubroker_stream_backlog", ["stream", "group"]),
    )

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Registration asks for the names here, so it never queries the database at import time.
        for name, labels in self.NAMES:
            yield GaugeMetricFamily(name, name, labels=labels)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from providers.cache import shared_cache
        from providers.models import CircuitState, Provider

        stats = shared_cache().stats
        ratio = GaugeMetricFamily("gpubroker_cache_hit_ratio", "Share of cache reads answered from L2 or L1 (this process)")
        hits = stats.l2_hits + stats.l1_hits
        ratio.add_metric([], hits / (hits + stats.misses) if hits + stats.misses else 0.0)
        yield ratio
        reads = GaugeMetricFamily("gpubroker_cache_reads", "Cache reads by outcome (this process)", labels=["outcome"])
        for outcome, value in (("l2_hit", stats.l2_hits), ("l1_hit", stats.l1_hits), ("miss", stats.misses),
                               ("early_refresh", stats.early_refreshes), ("redis_error", stats.redis_errors)):
            reads.add_metric([outcome], value)
        yield reads

        circuit = GaugeMetricFamily("gpubroker_provider_circuit_state", "1 for the provider's current circuit state", labels=["provider", "state"])
        latency = GaugeMetricFamily("gpubroker_provider_latency_seconds", "Latency of the provider's last health check", labels=["provider"])
        healthy = GaugeMetricFamily("gpubroker_provider_healthy", "1 when the provider's last health check passed", labels=["provider"])
        lag = GaugeMetricFamily("gpubroker_worker_lag_seconds", "Seconds since the provider's offers were last refreshed", labels=["provider"])
        now = timezone.now()
        try:
            providers = list(Provider.objects.filter(active=True).only("slug", "circuit_state", "health_latency_ms", "health_status", "last_refresh_at"))
        except Exception:  # a scrape must not fail because the database is down
            logger.exception("metrics: cannot read providers")
            providers = []
        for p in providers:
            for state in CircuitState.values:
                circuit.add_metric([p.slug, state], 1.0 if p.circuit_state == state else 0.0)
            if p.health_latency_ms is not None:
                latency.add_metric([p.slug], p.health_latency_ms / 1000)
            healthy.add_metric([p.slug], 1.0 if p.health_status == "healthy" else 0.0)
            if p.last_refresh_at is not None:
                lag.add_metric([p.slug], (now - p.last_refresh_at).total_seconds())
        yield circuit
        yield latency
        yield healthy
        yield lag
        yield self._stream_backlog()

    @staticmethod
    def _stream_backlog() -> GaugeMetricFamily:
        """Events each consumer group has not finished (unread + unacknowledged): the workers' lag."""
        from providers import events

        backlog = GaugeMetricFamily("gpubroker_stream_backlog", "Events not yet processed, per stream and consumer group", labels=["stream", "group"])
        if not settings.REDIS_URL:
            return backlog  # the embedded worker's streams live in the server process, not here
        import redis

        try:
            client = _redis(settings.REDIS_URL)
            for stream in (events.PRICE_UPDATES, events.PROVIDER_EVENTS, events.PRICE_ALERTS):
                if not client.exists(stream):
                    continue
                for info in client.xinfo_groups(stream):
                    backlog.add_metric([stream, info["name"].decode()], float((info.get("lag") or 0) + (info.get("pending") or 0)))
        except redis.RedisError:
            logger.warning("metrics: Redis unreachable, stream backlog not reported")
        return backlog


@lru_cache(maxsize=2)
def _redis(url: str) -> Any:
    """One client, so one connection pool, per process (a scrape used to open a new pool)."""
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=0.25, socket_timeout=0.25)


_collector = CatalogCollector()
REGISTRY.register(_collector)


def may_scrape(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    if token:
        sent = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if sent and hmac.compare_digest(sent.encode(), token.encode()):
            return True
        return bool(getattr(request, "user", None) and request.user.is_staff)
    return local_or_staff(request)


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not may_scrape(request):
        return HttpResponseForbidden("Forbidden", content_type="text/plain")
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
