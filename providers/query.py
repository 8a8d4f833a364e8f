"""Reading the offer catalog for the API and the browse page: filters, sorting, ranking, pages.

Everything returned to a client is built here once, as orjson bytes, and cached in the two-tier
cache (`providers.cache`); a cache hit never touches the ORM or a schema again.

Pagination stays consistent while prices move: the first page fixes the result's order as a
snapshot (the ordered offer ids, kept 10 minutes) and its cursor names that snapshot, so later
pages neither repeat nor skip offers even if prices change the order meanwhile; each item shows
its current price. A cursor that outlives its snapshot continues after its last offer in the
current order.

Snapshots are cheap and bounded: packed 64-bit ids (and scores only when ranked), at most
SNAPSHOT_MAX_OFFERS positions (later pages continue after the last offer seen), named by their
content so rebuilding an unchanged result stores nothing new. Every key of a snapshot and of a
later page carries the query's hash: a cursor can only ever reach pages of its own query.
"""

from __future__ import annotations

import array
import base64
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from django.db.models import JSONField, Lookup, Max, QuerySet

from providers import calc
from providers.aggregation import weight_for_latency
from providers.cache import PRICE_TTL, TieredCache
from providers.gpu_specs import tflops
from providers.models import Availability, HealthStatus, Offer, Provider

SNAPSHOT_TTL = 600.0
SNAPSHOT_MAX_OFFERS = 5000  # 40 KB of ids; pages past it continue after the last offer seen
MAX_OFFSET = 10**9
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
SORTS = ("price", "price_per_gpu", "performance", "value", "topsis")
AVAILABILITY_SCORE = {Availability.AVAILABLE: 1.0, Availability.LIMITED: 0.5, Availability.UNAVAILABLE: 0.0}
HEALTH_SCORE = {HealthStatus.HEALTHY: 1.0, HealthStatus.UNKNOWN: 0.8, HealthStatus.DEGRADED: 0.6, HealthStatus.DOWN: 0.1}

# Ranking criteria: name -> (benefit?, how to read it from an item).
CRITERIA: dict[str, tuple[bool, str]] = {
    "price": (False, "price_per_hour"),
    "price_per_gpu": (False, "price_per_gpu_hour"),
    "performance": (True, "tflops"),
    "availability": (True, "availability_score"),
    "reliability": (True, "reliability"),
    "memory": (True, "total_gpu_memory_gb"),
}
DEFAULT_WEIGHTS = (("price", 0.5), ("performance", 0.2), ("availability", 0.2), ("reliability", 0.1))


class QueryError(ValueError):
    """A parameter the service cannot use; `field` names it for the 422 answer."""

    status = 422

    def __init__(self, field: str, reason: str) -> None:
        self.field, self.reason = field, reason
        super().__init__(f"{field}: {reason}")


class CursorNotFound(QueryError):
    """A well-formed cursor that names no page of this query: 404, as an unknown id would be."""

    status = 404

    def __init__(self, reason: str = "names no page of these results; start again without it") -> None:
        super().__init__("cursor", reason)


@JSONField.register_lookup
class HasElement(Lookup):
    """`compliance_tags__has_element="soc2"`: the JSON array holds that string, on PostgreSQL
    (jsonb containment, indexable) and on the embedded SQLite (JSON1's json_each) alike."""

    lookup_name = "has_element"
    prepare_rhs = False

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs, params = self.process_lhs(compiler, connection)
        return f"EXISTS (SELECT 1 FROM json_each({lhs}) WHERE json_each.value = %s)", [*params, self.rhs]

    def as_postgresql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs, params = self.process_lhs(compiler, connection)
        return f"{lhs} @> %s::jsonb", [*params, json.dumps([self.rhs])]


@dataclass(frozen=True)
class OfferQuery:
    gpu_type: tuple[str, ...] = ()
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    region: tuple[str, ...] = ()
    availability: tuple[str, ...] = ()
    provider: tuple[str, ...] = ()
    min_gpu_memory: int | None = None
    gpu_count: int | None = None
    spot: bool | None = None
    compliance: tuple[str, ...] = ()
    sort: str = "price"
    weights: tuple[tuple[str, float], ...] = DEFAULT_WEIGHTS

    def canonical(self) -> str:
        """A stable text for the query: equal queries share cache entries whatever the spelling."""
        parts = {
            "g": sorted(self.gpu_type), "lo": str(self.min_price) if self.min_price is not None else None,
            "hi": str(self.max_price) if self.max_price is not None else None, "r": sorted(self.region),
            "a": sorted(self.availability), "p": sorted(self.provider), "m": self.min_gpu_memory,
            "c": self.gpu_count, "s": self.spot, "t": sorted(self.compliance), "o": self.sort,
            "w": sorted(self.weights) if self.sort == "topsis" else None,
        }
        return hashlib.blake2b(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS), digest_size=12).hexdigest()


def parse_weights(raw: str | None) -> tuple[tuple[str, float], ...]:
    """"price:0.6,performance:0.4" -> (("performance", 0.4), ("price", 0.6))."""
    if not raw:
        return DEFAULT_WEIGHTS
    weights: dict[str, float] = {}
    for part in raw.split(","):
        name, sep, value = part.partition(":")
        name = name.strip()
        if not sep or name not in CRITERIA:
            raise QueryError("weights", f"expected name:weight pairs with names from {', '.join(CRITERIA)}; got {part.strip()!r}")
        try:
            weight = float(value)
        except ValueError:
            raise QueryError("weights", f"weight of {name!r} is not a number") from None
        if not 0 <= weight <= 1000 or weight != weight:
            raise QueryError("weights", f"weight of {name!r} must be between 0 and 1000")
        weights[name] = weights.get(name, 0.0) + weight  # a repeated name counts once, with both weights
    if sum(weights.values()) <= 0:
        raise QueryError("weights", "at least one weight must be above zero")
    return tuple(sorted(weights.items()))


def _filtered(query: OfferQuery) -> QuerySet[Offer]:
    qs = Offer.objects.filter(provider__active=True)
    if query.gpu_type:
        qs = qs.filter(gpu_type__in=query.gpu_type)
    if query.min_price is not None:
        qs = qs.filter(price_per_hour__gte=query.min_price)
    if query.max_price is not None:
        qs = qs.filter(price_per_hour__lte=query.max_price)
    if query.region:
        qs = qs.filter(region__in=query.region)
    if query.availability:
        qs = qs.filter(availability_status__in=query.availability)
    if query.provider:
        qs = qs.filter(provider__slug__in=query.provider)
    if query.min_gpu_memory is not None:
        qs = qs.filter(gpu_memory_gb__gte=query.min_gpu_memory)
    if query.gpu_count is not None:
        qs = qs.filter(gpu_count=query.gpu_count)
    if query.spot is True:
        qs = qs.filter(spot_price__isnull=False)
    elif query.spot is False:
        qs = qs.filter(spot_price__isnull=True)
    for tag in query.compliance:
        qs = qs.filter(compliance_tags__has_element=tag)
    return qs


def provider_reliability(provider: Provider) -> float:
    latency = provider.health_latency_ms / 1000 if provider.health_latency_ms is not None else None
    return round(HEALTH_SCORE.get(HealthStatus(provider.health_status), 0.5) * weight_for_latency(latency), 4)


def serialize(offer: Offer, reliability: float) -> dict[str, Any]:
    price = float(offer.price_per_hour)
    return {
        "id": offer.pk,
        "provider": offer.provider.slug,
        "provider_name": offer.provider.name,
        "name": offer.name,
        "gpu_type": offer.gpu_type,
        "gpu_count": offer.gpu_count,
        "gpu_memory_gb": offer.gpu_memory_gb,
        "total_gpu_memory_gb": offer.gpu_memory_gb * offer.gpu_count,
        "vcpus": offer.vcpus,
        "ram_gb": float(offer.ram_gb) if offer.ram_gb is not None else None,
        "storage_gb": offer.storage_gb,
        "price_per_hour": price,
        "price_per_gpu_hour": round(price / offer.gpu_count, 4),
        "spot_price": float(offer.spot_price) if offer.spot_price is not None else None,
        "currency": offer.currency,
        "availability_status": offer.availability_status,
        "availability_score": AVAILABILITY_SCORE[Availability(offer.availability_status)],
        "region": offer.region,
        "compliance_tags": list(offer.compliance_tags),
        "source": offer.source,
        "last_updated": offer.last_updated.isoformat(),
        "tflops": tflops(offer.gpu_type, offer.gpu_count),
        "reliability": reliability,
    }


def load_items(query: OfferQuery, ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
    qs = _filtered(query) if ids is None else Offer.objects.filter(pk__in=list(ids))
    offers = list(qs.select_related("provider"))
    reliability: dict[int, float] = {}
    items = []
    for offer in offers:
        if offer.provider_id not in reliability:
            reliability[offer.provider_id] = provider_reliability(offer.provider)
        items.append(serialize(offer, reliability[offer.provider_id]))
    return items


def criteria_matrix(items: Sequence[dict[str, Any]], names: Sequence[str]) -> list[list[float]]:
    # Unknown performance counts as none: an offer is not ranked up for what we cannot vouch for.
    return [[float(item[CRITERIA[name][1]] or 0.0) for name in names] for item in items]


def score_items(items: list[dict[str, Any]], method: str, weights: Sequence[tuple[str, float]]) -> list[dict[str, Any]]:
    """Items best first by `method`, each with its `score` (and `rank`)."""
    names = [name for name, _ in weights]
    if not items:
        return []
    matrix = criteria_matrix(items, names)
    order, scores = calc.rank(method, matrix, [w for _, w in weights], [CRITERIA[n][0] for n in names])
    ranked = []
    for position, (index, score) in enumerate(zip(order, scores, strict=True), start=1):
        ranked.append({**items[index], "score": round(float(score), 6), "rank": position})
    return ranked


def sort_items(items: list[dict[str, Any]], query: OfferQuery) -> list[dict[str, Any]]:
    if query.sort == "topsis":
        return score_items(items, "topsis", query.weights)
    keys = {
        "price": lambda i: (i["price_per_hour"], i["id"]),
        "price_per_gpu": lambda i: (i["price_per_gpu_hour"], i["id"]),
        "performance": lambda i: (-(i["tflops"] or 0.0), i["price_per_hour"], i["id"]),
        "value": lambda i: (-((i["tflops"] or 0.0) / i["price_per_hour"]), i["id"]),
    }
    return sorted(items, key=keys[query.sort])


def staleness() -> str | None:
    """When every active provider is down, the time of the last good refresh (else None)."""
    providers = Provider.objects.filter(active=True)
    if not providers.exists() or providers.exclude(health_status=HealthStatus.DOWN).exists():
        return None
    last = providers.aggregate(last=Max("last_refresh_at"))["last"]
    return last.isoformat() if isinstance(last, datetime) else "unknown"


# ----- pages -----

def _encode_cursor(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")


_SNAPSHOT_ID = re.compile(r"^[0-9a-f]{16}$")


def decode_cursor(raw: str) -> dict[str, Any]:
    """The cursor's fields, checked one by one (a crafted cursor is refused, never trusted)."""
    try:
        data = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except ValueError:
        raise CursorNotFound("not a cursor returned by this API") from None
    ok = (
        isinstance(data, dict)
        and isinstance(data.get("s"), str) and _SNAPSHOT_ID.match(data["s"]) is not None
        and type(data.get("o")) is int and 0 <= data["o"] <= MAX_OFFSET
        and isinstance(data.get("q"), str)
        and (data.get("a") is None or type(data.get("a")) is int)
    )
    if not ok:
        raise CursorNotFound("not a cursor returned by this API")
    return data


@dataclass
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None
    total: int
    stale_since: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        body = {"items": self.items, "next_cursor": self.next_cursor, "total": self.total, "stale_since": self.stale_since, **self.extra}
        return orjson.dumps(body)


def _next_cursor(snapshot: str, query_key: str, offset: int, total: int, last_id: int | None) -> str | None:
    if offset >= total:
        return None
    return _encode_cursor({"s": snapshot, "o": offset, "q": query_key, "a": last_id})


def first_page(cache: TieredCache, query: OfferQuery, limit: int) -> bytes:
    return cache.get(first_page_key(query, limit), PRICE_TTL, lambda: build_first_page(cache, query, limit))


def first_page_key(query: OfferQuery, limit: int) -> str:
    return f"offers:{query.canonical()}:{limit}"


def _snapshot_key(query_key: str, snapshot: str) -> str:
    return f"snapshot:{query_key}:{snapshot}"


def pack_snapshot(ordered: Sequence[dict[str, Any]]) -> bytes:
    """The order as bytes: a count, the ids (int64), then the scores (float64) if ranked."""
    kept = ordered[:SNAPSHOT_MAX_OFFERS]
    ids = array.array("q", (item["id"] for item in kept))
    ranked = bool(kept) and kept[0].get("score") is not None
    scores = array.array("d", (item["score"] for item in kept) if ranked else ())
    return len(ordered).to_bytes(8, "little") + len(kept).to_bytes(8, "little") + ids.tobytes() + scores.tobytes()


def unpack_snapshot(raw: bytes) -> tuple[int, list[int], list[float] | None]:
    """(total of the result, the ids kept, their scores or None)."""
    total, kept = int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:16], "little")
    ids = array.array("q")
    ids.frombytes(raw[16 : 16 + 8 * kept])
    scores = array.array("d")
    scores.frombytes(raw[16 + 8 * kept :])
    return total, ids.tolist(), scores.tolist() if len(scores) else None


def _store_snapshot(cache: TieredCache, query_key: str, ordered: list[dict[str, Any]]) -> str:
    packed = pack_snapshot(ordered)
    # Named by content: rebuilding the first page while the order holds still reuses the snapshot.
    snapshot = hashlib.blake2b(packed, digest_size=8).hexdigest()
    cache.set(_snapshot_key(query_key, snapshot), packed, SNAPSHOT_TTL)
    return snapshot


def build_first_page(cache: TieredCache, query: OfferQuery, limit: int) -> bytes:
    ordered = sort_items(load_items(query), query)
    query_key = query.canonical()
    page = ordered[:limit]
    # A result that fits on one page has no later pages, and needs no snapshot.
    snapshot = _store_snapshot(cache, query_key, ordered) if len(ordered) > limit else ""
    last_id = page[-1]["id"] if page else None
    return Page(page, _next_cursor(snapshot, query_key, limit, len(ordered), last_id), len(ordered), staleness()).to_bytes()


def next_page(cache: TieredCache, query: OfferQuery, limit: int, cursor: dict[str, Any]) -> bytes:
    query_key = query.canonical()
    if cursor["q"] != query_key:
        raise CursorNotFound("belongs to other filters or another sort; start again without it")
    # Everything that decides the page is in the key, the query's hash first.
    key = f"page:{query_key}:{cursor['s']}:{cursor['o']}:{cursor.get('a')}:{limit}"
    return cache.get(key, PRICE_TTL, lambda: build_next_page(cache, query, limit, cursor))


def build_next_page(cache: TieredCache, query: OfferQuery, limit: int, cursor: dict[str, Any]) -> bytes:
    query_key = query.canonical()
    raw = cache.get_raw(_snapshot_key(query_key, cursor["s"]))
    offset, snapshot = cursor["o"], cursor["s"]
    total, ids, scores = unpack_snapshot(raw) if raw is not None else (0, [], None)
    # The snapshot holds this page (it may end before the result does: see SNAPSHOT_MAX_OFFERS).
    if raw is not None and (offset + limit <= len(ids) or len(ids) == total):
        page_ids = ids[offset : offset + limit]
        by_id = {item["id"]: item for item in load_items(query, page_ids)}
        items = []
        for position, offer_id in enumerate(page_ids, start=offset):
            if offer_id in by_id:  # an offer deleted since the snapshot is left out
                item = by_id[offer_id]
                if scores is not None:  # scores are relative to the whole result
                    item = {**item, "score": scores[position], "rank": position + 1}
                items.append(item)
    else:
        # The snapshot expired (or ends before this page): continue after the last offer seen, in today's order.
        ordered = sort_items(load_items(query), query)
        positions = {item["id"]: n for n, item in enumerate(ordered)}
        offset = positions[cursor["a"]] + 1 if cursor.get("a") in positions else offset
        snapshot = _store_snapshot(cache, query_key, ordered)
        items, total = ordered[offset : offset + limit], len(ordered)
    last_id = items[-1]["id"] if items else None
    return Page(items, _next_cursor(snapshot, query_key, offset + limit, total, last_id), total, staleness()).to_bytes()


def offer_detail(offer_id: int) -> dict[str, Any] | None:
    offer = Offer.objects.select_related("provider").filter(pk=offer_id).first()
    if offer is None:
        return None
    return serialize(offer, provider_reliability(offer.provider))


def why_breakdown(item: dict[str, Any], items: Iterable[dict[str, Any]], weights: Sequence[tuple[str, float]]) -> dict[str, float]:
    """Each criterion's share of an item's standing: weight x how close it is to the best value."""
    pool = list(items)
    total_weight = sum(w for _, w in weights) or 1.0
    contributions = {}
    for name, weight in weights:
        benefit, column = CRITERIA[name]
        values = [float(i[column] or 0.0) for i in pool]
        low, high = min(values), max(values)
        value = float(item[column] or 0.0)
        good = 1.0 if high == low else ((value - low) / (high - low) if benefit else (high - value) / (high - low))
        contributions[name] = weight / total_weight * good
    total = sum(contributions.values()) or 1.0
    return {name: round(share / total, 4) for name, share in contributions.items()}
