"""The offers API (django-ninja router, mounted under /api/v2 by `web.api`).

Reads answer with prebuilt JSON bytes from the two-tier cache; only a miss queries the database
and serialises (once, with orjson). Invalid parameters raise `QueryError` or fail the request
schema, and both become a 422 naming the field and the reason.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils import timezone
from ninja import Path, Query, Router

from providers import calc, fanout
from providers.cache import PRICE_TTL, STATIC_TTL, shared_cache
from providers.groups import BadSubscription, group_for
from providers.models import PriceAggregate, PriceSample, Provider
from providers.query import (
    QueryError,
    criteria_matrix,
    decode_cursor,
    first_page,
    first_page_key,
    build_first_page,
    load_items,
    next_page,
    offer_detail,
    parse_weights,
    score_items,
    staleness,
    why_breakdown,
)
from providers.schemas import (
    HISTORY_OPENAPI,
    MAX_ID,
    DecideBody,
    ErrorOut,
    HistoryParams,
    ListParams,
    OfferOut,
    OfferPage,
    QueryBody,
    RankingParams,
    StreamParams,
)

router = Router(tags=["offers"])
analytics = Router(tags=["analytics"])

HEALTH_TTL = 5.0
HISTORY_MAX_POINTS = 5000
SSE_KEEPALIVE_SECONDS = 15.0
JSON = "application/json"


def _before(moment: datetime, span: timedelta) -> datetime:
    """`moment - span`, or the earliest time there is (an `until` of year 1 has no day before it)."""
    try:
        return moment - span
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)


def _digest(value: Any) -> str:
    return hashlib.blake2b(orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str), digest_size=16).hexdigest()


def _json(body: bytes, status: int = 200) -> HttpResponse:
    return HttpResponse(body, content_type=JSON, status=status)


def _page(query_params: ListParams | QueryBody) -> bytes:
    query = query_params.query()
    cache = shared_cache()
    if query_params.cursor:
        return next_page(cache, query, query_params.limit, decode_cursor(query_params.cursor))
    return first_page(cache, query, query_params.limit)


@router.get("/providers", response={200: OfferPage, 404: ErrorOut, 422: ErrorOut}, summary="List offers")
def list_offers(request: HttpRequest, params: Query[ListParams]) -> HttpResponse:
    """Offers matching the filters, sorted, one page at a time (`next_cursor` fetches the next)."""
    body = _page(params)
    if not params.cursor:
        # Lets the front server answer this exact request from memory next time (web.fastpath).
        query, limit, cache = params.query(), params.limit, shared_cache()
        route = f"{request.path}?{request.META.get('QUERY_STRING', '')}"
        cache.remember_route(route, first_page_key(query, limit), PRICE_TTL, lambda: build_first_page(cache, query, limit))
    return _json(body)


@router.post("/providers/query", response={200: OfferPage, 404: ErrorOut, 422: ErrorOut}, summary="Query offers with a JSON body")
def query_offers(request: HttpRequest, body: QueryBody) -> HttpResponse:
    return _json(_page(body))


@router.get("/providers/ranking", response={200: dict, 422: ErrorOut}, summary="Offers ranked by TOPSIS")
def ranking(request: HttpRequest, params: Query[RankingParams]) -> HttpResponse:
    """TOPSIS with your weights; each item says why it ranks where it does (criterion shares)."""
    weights = parse_weights(params.weights)
    query = params.to_query("topsis", weights)
    key = f"ranking:{query.canonical()}:{params.top}"

    def build() -> bytes:
        items = load_items(query)
        ranked = score_items(items, "topsis", weights)[: params.top]
        for item in ranked:
            item["why"] = why_breakdown(item, items, weights)
        return orjson.dumps({"method": "topsis", "weights": dict(weights), "items": ranked, "total": len(items), "stale_since": staleness()})

    cache = shared_cache()
    # Like the list: the front server answers this exact request from memory next time (web.fastpath).
    cache.remember_route(f"{request.path}?{request.META.get('QUERY_STRING', '')}", key, PRICE_TTL, build)
    return _json(cache.get(key, PRICE_TTL, build))


@router.post("/providers/decide", response={200: dict, 422: ErrorOut}, summary="Decide among offers")
def decide(request: HttpRequest, body: DecideBody) -> HttpResponse:
    """TOPSIS, weighted sum or the Pareto front over your criteria, each with weight and direction."""
    query = body.filters.to_query()
    names = [c.name for c in body.criteria]
    benefit = [c.benefit for c in body.criteria]
    key = "decide:" + _digest(body.model_dump())

    def build() -> bytes:
        items = load_items(query)
        matrix = criteria_matrix(items, names)
        if body.method == "pareto":
            front = calc.pareto_front(matrix, benefit) if items else []
            chosen = sorted((items[i] for i in front), key=lambda i: (i["price_per_hour"], i["id"]))[: body.top_k]
        else:
            order, scores = calc.rank(body.method, matrix, [c.weight for c in body.criteria], benefit, body.top_k) if items else ([], [])
            chosen = [{**items[i], "score": round(float(s), 6), "rank": n} for n, (i, s) in enumerate(zip(order, scores, strict=True), start=1)]
        criteria = [{"name": c.name, "weight": c.weight, "direction": "maximize" if c.benefit else "minimize"} for c in body.criteria]
        return orjson.dumps({"method": body.method, "criteria": criteria, "items": chosen, "considered": len(items), "stale_since": staleness()})

    return _json(shared_cache().get(key, PRICE_TTL, build))


@router.get("/providers/health", response={200: dict}, summary="Provider health")
def providers_health(request: HttpRequest) -> HttpResponse:
    def build() -> bytes:
        providers = []
        for p in Provider.objects.filter(active=True).order_by("slug"):
            providers.append({
                "provider": p.slug, "name": p.name, "health_status": p.health_status, "circuit_state": p.circuit_state,
                "latency_ms": p.health_latency_ms, "last_health_check": p.last_health_check.isoformat() if p.last_health_check else None,
                "last_refresh_at": p.last_refresh_at.isoformat() if p.last_refresh_at else None,
                "rate_limit_per_minute": p.rate_limit_per_minute,
            })
        return orjson.dumps({"providers": providers, "stale_since": staleness()})

    cache = shared_cache()
    # Lets the front server answer this request from memory next time (web.fastpath).
    cache.remember_route(f"{request.path}?{request.META.get('QUERY_STRING', '')}", "providers:health", HEALTH_TTL, build)
    return _json(cache.get("providers:health", HEALTH_TTL, build))


SSE_EVENT = {"type": "object", "properties": {"event": {"enum": ["subscribed", *sorted(("offers", "alert", "health"))]}, "data": {"type": "string"}}}
STREAM_OPENAPI = {"responses": {200: {"description": "Server-sent events", "content": {"text/event-stream": {"schema": SSE_EVENT}}}}}


@router.get("/providers/stream", response={422: ErrorOut}, openapi_extra=STREAM_OPENAPI, summary="Server-sent events of offer changes")
async def stream(request: HttpRequest, params: Query[StreamParams]) -> HttpResponse:
    """Server-sent events: `offers` (changes), `alert`, `health`; comma-separated subscriptions.
    A stream ends after SSE_MAX_SECONDS with a `retry` hint; EventSource reconnects by itself."""
    try:
        groups = sorted({group_for(part.strip(" \t")) for part in params.subscribe.split(",")})
    except BadSubscription as exc:
        raise QueryError("subscribe", str(exc)) from None
    if len(groups) > 20:
        raise QueryError("subscribe", "at most 20 subscriptions")
    # The same per-process hub as the websockets (providers.fanout): one layer reader, bounded feeds.
    hub = fanout.hub()
    try:
        feed = hub.open(request.META.get("REMOTE_ADDR"), "sse")
    except fanout.Refused as refused:
        return _json(orjson.dumps({"error": "too many connections", "errors": [{"field": "connection", "reason": refused.message}]}), status=429)
    try:
        for group in groups:
            await hub.join(feed, group)
    except BaseException:
        await hub.close(feed)
        raise
    lifetime = settings.SSE_MAX_SECONDS

    async def events() -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        ends_at = loop.time() + lifetime
        try:
            yield b"event: subscribed\ndata: " + orjson.dumps({"subscriptions": groups}) + b"\n\n"
            while (left := ends_at - loop.time()) > 0:
                try:
                    broadcast = await asyncio.wait_for(feed.next(), timeout=min(SSE_KEEPALIVE_SECONDS, left))
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if broadcast is None:  # cut off: this client stopped reading
                    yield b"event: error\ndata: " + orjson.dumps({"reason": "too slow: events were waiting faster than they were read; reconnect"}) + b"\n\n"
                    return
                frame = broadcast.frame("sse", _sse_frame)
                if frame:
                    yield frame
            # Bounded connections let instances drain and rebalance; the client reconnects in 1 s.
            yield b"retry: 1000\n\n"
        finally:
            await hub.close(feed)

    response = StreamingHttpResponse(events(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # a proxy must not buffer the stream
    return response


SSE_EVENTS = {"offers.changed": "offers", "price.alert": "alert", "provider.health": "health"}


def _sse_frame(message: dict[str, Any]) -> bytes | None:
    name = SSE_EVENTS.get(message.get("type", ""))
    return f"event: {name}\ndata: ".encode() + orjson.dumps(message.get("payload")) + b"\n\n" if name else None


@router.get("/providers/{offer_id}", response={200: OfferOut, 404: ErrorOut, 422: ErrorOut}, summary="One offer")
def get_offer(request: HttpRequest, offer_id: int = Path(..., ge=1, le=MAX_ID)) -> HttpResponse:  # type: ignore[type-arg]
    def build() -> bytes:
        item = offer_detail(offer_id)
        return orjson.dumps(item) if item else b""

    cache = shared_cache()
    body = cache.get(f"offer:{offer_id}", PRICE_TTL, build)
    if not body:
        return _json(orjson.dumps({"error": f"no offer with id {offer_id}"}), status=404)
    # Lets the front server answer this request from memory next time (web.fastpath).
    cache.remember_route(f"{request.path}?{request.META.get('QUERY_STRING', '')}", f"offer:{offer_id}", PRICE_TTL, build)
    return _json(body)


@analytics.get("/analytics/price-history", response={200: dict, 422: ErrorOut}, openapi_extra=HISTORY_OPENAPI, summary="Price history")
def price_history(request: HttpRequest, params: Query[HistoryParams]) -> HttpResponse:
    """Per-minute aggregates of a GPU type, or every recorded change of one offer (30 days kept)."""
    until = params.until or timezone.now()
    since = params.since or _before(until, timedelta(hours=24))
    key = "history:" + _digest([params.gpu_type, params.offer_id, params.resolution, since, until])

    def build() -> bytes:
        points: list[dict[str, Any]]
        if params.resolution == "minute":
            rows = PriceAggregate.objects.filter(gpu_type=params.gpu_type, minute__gte=since, minute__lt=until).order_by("minute")
            points = [
                {"at": r.minute.isoformat(), "offers": r.offers, "min": float(r.min_price), "mean": float(r.mean_price), "max": float(r.max_price)}
                for r in rows[:HISTORY_MAX_POINTS]
            ]
        else:
            samples = PriceSample.objects.filter(sampled_at__gte=since, sampled_at__lt=until)
            samples = samples.filter(offer_id=params.offer_id) if params.offer_id else samples.filter(gpu_type=params.gpu_type)
            points = [
                {"at": s.sampled_at.isoformat(), "offer_id": s.offer_id, "price_per_hour": float(s.price_per_hour),
                 "price_per_gpu_hour": float(s.price_per_gpu_hour), "availability_status": s.availability_status}
                for s in samples.order_by("sampled_at", "id")[:HISTORY_MAX_POINTS]
            ]
        subject = {"gpu_type": params.gpu_type} if params.gpu_type else {"offer_id": params.offer_id}
        return orjson.dumps({**subject, "resolution": params.resolution, "since": since.isoformat(), "until": until.isoformat(), "points": points})

    return _json(shared_cache().get(key, PRICE_TTL if until > _before(timezone.now(), timedelta(minutes=2)) else STATIC_TTL, build))


__all__ = ["router", "analytics"]
