"""Catalog pages served from cached renderings, rebuilt when prices change, personal where they must be.

Profiled on an idle machine, a landing render cost ~130 ms (README, Deployment): three quarters
building the best offer of every GPU type from the whole catalog, the rest rendering the cotton
components of the table. Neither depends on who asks, so:

- For a visitor who is not signed in (and has no pending flash messages) the whole page is rendered
  once into the page cache (a TieredCache of its own, bounded to PAGE_MAX_ENTRIES, shared through
  Redis, rebuilt in the background when the catalog generation moves or after PAGE_TTL), with a
  placeholder where the CSRF token goes. Each request swaps in its own token (`get_token`, which
  also sets the cookie), so no two visitors share a token and the page costs a byte replace.
- For a signed-in person the page is rendered per request (the nav, plan badge and token are
  theirs), from catalog data kept in process memory per catalog generation, so no request reads the
  whole catalog.

Rendering without a request runs no context processors: what the layout reads from them (the mode
banner) is passed explicitly, and `user` is absent, which is exactly the visitor's nav.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.messages import get_messages
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token

from providers.cache import TieredCache, fail_fast_redis
from web.context_processors import navigation, platform

PAGE_TTL = 10.0  # ages on the page are refreshed in the browser (data-relative); prices by generation
PAGE_MAX_ENTRIES = 512  # a page is tens of KB: bounded well below the API cache's 10,000 entries
CSRF_PLACEHOLDER = "gpubroker-csrf-token-placeholder-3d9f"
T = TypeVar("T")

_page_cache: TieredCache | None = None
_page_cache_lock = threading.Lock()


def page_cache() -> TieredCache:
    global _page_cache
    with _page_cache_lock:
        if _page_cache is None:
            from providers.freshness import catalog_generation

            redis_client = fail_fast_redis(settings.REDIS_URL) if settings.REDIS_URL else None
            _page_cache = TieredCache(redis_client, prefix="gpubroker:page:", max_entries=PAGE_MAX_ENTRIES, generation_source=catalog_generation)
        return _page_cache


def reset_page_cache(cache: TieredCache | None = None) -> None:
    global _page_cache
    with _page_cache_lock:
        _page_cache = cache


def shareable(request: HttpRequest) -> bool:
    """True when the page would be the same for every visitor but for the CSRF token."""
    return request.method == "GET" and not request.user.is_authenticated and not len(get_messages(request))  # type: ignore[arg-type]


def shared_page(request: HttpRequest, key: str, render: Callable[[dict[str, Any]], tuple[str, int]]) -> HttpResponse:
    """The visitor's page from the page cache; `render(extra_context)` builds (html, status) on a miss."""

    def build() -> bytes:
        # What the context processors would give a visitor (mode banner, visitor navigation with
        # this page marked), so the shared page is the one Django would render for them.
        visitor = {**platform(request), **navigation(request), "request": request, "user": request.user}
        html, status = render({**visitor, "csrf_token": CSRF_PLACEHOLDER})
        return str(status).encode() + html.encode()

    cached = page_cache().get(f"{settings.GPUBROKER_MODE}:{key}", PAGE_TTL, build)
    status, body = int(cached[:3]), cached[3:]
    return HttpResponse(body.replace(CSRF_PLACEHOLDER.encode(), get_token(request).encode()), status=status)


_memo: dict[str, tuple[int, float, Any]] = {}


def catalog_memo(name: str, build: Callable[[], T]) -> T:
    """`build()`'s value kept in process memory until prices change or PAGE_TTL passes."""
    generation = page_cache().current_generation()
    now = time.monotonic()
    held = _memo.get(name)
    if held is not None and held[0] == generation and now - held[1] < PAGE_TTL:
        return held[2]
    value = build()
    _memo[name] = (generation, now, value)
    return value


def forget_catalog_memo() -> None:
    _memo.clear()
