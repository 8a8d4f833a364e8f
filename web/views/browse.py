"""Browse GPUs: the whole catalog filtered, sorted and ranked with the visitor's own weights.

The same prebuilt pages as `GET /api/v2/providers` (one cache, one query path); the form is a
plain GET so links and the back button work without JavaScript, and htmx swaps only the results.
Visitors get the page from the page cache per normalised query (web.pagecache).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import orjson
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET
from pydantic import ValidationError

from providers.cache import shared_cache
from providers.models import Offer, Provider
from providers.query import CRITERIA, QueryError, decode_cursor, first_page, next_page
from providers.schemas import ListParams
from web import identity, ratelimit
from web.pagecache import catalog_memo, shareable, shared_page

PAGE_SIZE = 25
WEIGHT_CRITERIA = ("price", "performance", "availability", "reliability")
DEFAULT_SLIDERS = {"price": 5, "performance": 2, "availability": 2, "reliability": 1}
SORT_CHOICES = [
    ("topsis", "Best match"),  # ranked with the weights below the select
    ("price", "Lowest price"),
    ("price_per_gpu", "Lowest price per GPU"),
    ("performance", "Most compute"),
    ("value", "Most compute per dollar"),
]


def _sliders(query: QueryDict) -> tuple[dict[str, int], list[str]]:
    values, errors = {}, []
    for name in WEIGHT_CRITERIA:
        raw = query.get(f"w_{name}", "")
        try:
            value = int(raw) if raw != "" else DEFAULT_SLIDERS[name]
            if not 0 <= value <= 10:
                raise ValueError
        except ValueError:
            errors.append(f"{name} weight must be a whole number from 0 to 10")
            value = DEFAULT_SLIDERS[name]
        values[name] = value
    if not any(values.values()):
        errors.append("give at least one criterion a weight above zero")
        values = dict(DEFAULT_SLIDERS)
    return values, errors


def _over_rate(request: HttpRequest) -> ratelimit.Decision | None:
    """Each search may run the same queries as the API, so it counts like an anonymous API request:
    per visitor IP at the Free plan's rate (its own counter, so browsing never eats API quota)."""
    if not ratelimit.enabled():
        return None
    client = "browse:" + identity.ip_client(request.META.get("REMOTE_ADDR", ""))  # IPv6 per /64, as the API
    decision = ratelimit.shared_limiter().hit(client, identity.identities().free() * ratelimit.multiplier())
    return None if decision.allowed else decision


def filter_choices() -> dict[str, Any]:
    """The form's GPU and provider choices: the same for everyone, rebuilt when prices change."""
    return {
        "gpu_types": list(Offer.objects.order_by("gpu_type").values_list("gpu_type", flat=True).distinct()),
        "providers": list(Provider.objects.filter(active=True)),
    }


def browse_context(query: QueryDict) -> tuple[dict[str, Any], int]:
    """The page's context and status for a query string (nothing else of the request is read)."""
    sliders, errors = _sliders(query)
    params: dict[str, object] = {
        key: query.getlist(key) for key in ("gpu_type", "region", "availability", "provider") if query.get(key)
    }
    for key in ("max_price", "min_gpu_memory", "gpu_count", "cursor"):
        if query.get(key):
            params[key] = query[key]
    params["sort"] = query.get("sort") or "topsis"
    params["weights"] = ",".join(f"{name}:{value}" for name, value in sliders.items() if value)
    params["limit"] = PAGE_SIZE
    page: dict[str, object] = {"items": [], "next_cursor": None, "total": 0, "stale_since": None}
    try:
        validated = ListParams(**params)
        query_spec = validated.query()
        cache = shared_cache()
        if validated.cursor:
            body = next_page(cache, query_spec, PAGE_SIZE, decode_cursor(validated.cursor))
        else:
            body = first_page(cache, query_spec, PAGE_SIZE)
        page = orjson.loads(body)
        for item in page["items"]:  # the template shows ages, as the landing table does
            item["last_updated"] = datetime.fromisoformat(item["last_updated"])
    except ValidationError as exc:
        errors += [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()]
    except QueryError as exc:
        errors.append(f"{exc.field}: {exc.reason}")

    next_query = query.copy()
    if page.get("next_cursor"):
        next_query["cursor"] = page["next_cursor"]
    context = {
        "page": page,
        "errors": errors,
        "sliders": [(name, sliders[name]) for name in WEIGHT_CRITERIA],
        "sort_choices": SORT_CHOICES,
        "sort": params["sort"],
        "selected": {k: query.get(k, "") for k in ("gpu_type", "region", "availability", "provider", "max_price", "min_gpu_memory", "gpu_count")},
        **catalog_memo("browse:choices", filter_choices),
        "next_url": f"?{next_query.urlencode()}" if page.get("next_cursor") else "",
        "criteria": CRITERIA,
    }
    return context, 422 if errors else 200


@require_GET
def browse(request: HttpRequest) -> HttpResponse:
    refused = _over_rate(request)
    if refused is not None:
        context = {"page": {"items": [], "next_cursor": None, "total": 0, "stale_since": None},
                   "errors": [f"too many searches: over {refused.limit} per second; retry in {refused.retry_after} s"],
                   "sliders": [(name, DEFAULT_SLIDERS[name]) for name in WEIGHT_CRITERIA], "sort_choices": SORT_CHOICES, "sort": "topsis",
                   "selected": {}, "gpu_types": [], "providers": [], "next_url": "", "criteria": CRITERIA}
        template = "pages/browse.html#results" if request.htmx else "pages/browse.html"
        response = render(request, template, context, status=429)
        for name, value in refused.headers().items():
            response[name] = value
        response["Vary"] = "HX-Request"
        return response
    template = "pages/browse.html#results" if request.htmx else "pages/browse.html"
    if shareable(request):
        # The same query in another order is the same page: the key is the sorted parameters.
        normalised = urlencode(sorted((k, v) for k, values in request.GET.lists() for v in values))

        def render_page(extra: dict[str, Any]) -> tuple[str, int]:
            context, status = browse_context(request.GET)
            return render_to_string(template, {**context, **extra}), status

        response = shared_page(request, f"browse:{template}:{normalised}", render_page)
    else:
        context, status = browse_context(request.GET)
        response = render(request, template, context, status=status)
    response["Vary"] = "HX-Request"
    return response
