"""A lean ASGI fast path in front of Django for the hottest cached reads: anonymous GET /api/v2/providers
and GET /api/v2/providers/ranking.

Django's ASGI handler costs ~0.5 ms of CPU per request, which caps one daphne process near
1-2k requests/s whatever the view does (see README, "Deployment"). This layer answers a request
it has seen before without entering Django:

1. The first time a given URL is asked, the request goes through Django as usual: every
   middleware, the ninja view, the cache. The view registers which cache entry answers that exact
   URL (`TieredCache.remember_route`), and this layer records the final status and headers the
   full stack produced.
2. Next times, if the request is anonymous (no Authorization, API key or session cookie), its Host
   is allowed, and the entry is fresh in this process's L2, the recorded headers are replayed
   with the entry's current bytes: the same answer Django would give, byte for byte, for a few
   microseconds. XFetch early refresh is triggered here exactly as in the view, in the background.

Anything else, and any miss or expiry, goes to Django, so correctness never depends on this
layer; it can be switched off with GPUBROKER_FASTPATH=0. Websockets never pass through it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings
from django.http.request import split_domain_port, validate_host

from providers.cache import shared_cache
from web import ratelimit
from web.metrics import REQUEST_LATENCY

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

FAST_PATHS = {"/api/v2/providers": "api/v2/providers", "/api/v2/providers/ranking": "api/v2/providers/ranking"}
MAX_TEMPLATES = 10_000
# Headers whose presence means the answer may depend on who asks: such requests go to Django.
PERSONAL_HEADERS = {b"authorization", b"x-api-key", b"proxy-authorization"}
# Headers of a response that make it unfit to replay to someone else.
UNREPLAYABLE = {b"set-cookie", b"www-authenticate"}
# Per-client headers: never recorded, each replay adds the current client's own.
PER_CLIENT = ratelimit.RATE_HEADERS


class FastPath:
    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app
        self._templates: OrderedDict[str, list[tuple[bytes, bytes]]] = OrderedDict()
        self._allowed_hosts = list(settings.ALLOWED_HOSTS)
        if settings.DEBUG and not self._allowed_hosts:
            self._allowed_hosts = [".localhost", "127.0.0.1", "[::1]"]
        self._session_cookie = settings.SESSION_COOKIE_NAME.encode() + b"="
        self._latency = {route: REQUEST_LATENCY.labels(route, "GET", "2xx") for route in FAST_PATHS.values()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope["path"] not in FAST_PATHS:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        route = self._route(scope)
        if route is None or not self._eligible(scope):
            await self.app(scope, receive, send)
            return
        # The rate limit is per client, so it is counted here on every eligible request, cached
        # answer or not; Django finds the decision in the scope and does not count it again.
        decision = await ratelimit.check_scope(scope)
        if decision is not None and not decision.allowed:
            await self._refuse(decision, send)
            return
        rate_headers = decision.raw_headers() if decision is not None else []
        headers = self._templates.get(route)
        known = shared_cache().route(route)
        if headers is not None and known is not None:
            cache = shared_cache()
            key, ttl, compute = known
            entry = cache.peek(key)
            now = cache.clock()
            if entry is not None and now < entry.expires_at:
                cache.stats.l2_hits += 1
                cache.maybe_refresh_early(key, entry, ttl, compute, now)
                body = entry.value
                await send({"type": "http.response.start", "status": 200, "headers": [*headers, *rate_headers, (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                self._latency[FAST_PATHS[scope["path"]]].observe(time.perf_counter() - started)
                return
        await self.app(scope, receive, self._recording(route, send))

    @staticmethod
    async def _refuse(decision: ratelimit.Decision, send: Send) -> None:
        # The same 429 RateLimitMiddleware gives, built here without entering Django.
        response = ratelimit.refused(decision)
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.items()]
        body = response.content
        await send({"type": "http.response.start", "status": 429, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _route(scope: Scope) -> str | None:
        try:
            return f"{scope['path']}?{scope.get('query_string', b'').decode('utf-8')}"
        except UnicodeDecodeError:
            return None  # Django decodes the same way and will answer with its own error

    def _eligible(self, scope: Scope) -> bool:
        host = b""
        for name, value in scope["headers"]:
            if name in PERSONAL_HEADERS:
                return False
            if name == b"cookie" and self._session_cookie in value:
                return False
            if name == b"host":
                host = value
        if settings.SECURE_SSL_REDIRECT and scope.get("scheme") != "https" and not self._forwarded_https(scope):
            return False  # Django answers with the redirect
        domain, _ = split_domain_port(host.decode("latin-1"))
        return bool(domain) and validate_host(domain, self._allowed_hosts)

    @staticmethod
    def _forwarded_https(scope: Scope) -> bool:
        header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
        if not header:
            return False
        wanted = header[0].removeprefix("HTTP_").lower().replace("_", "-").encode()
        return any(name == wanted and value.decode("latin-1") == header[1] for name, value in scope["headers"])

    def _recording(self, route: str, send: Send) -> Send:
        """Passes Django's answer through, keeping its status line and headers for next time."""
        state: dict[str, Any] = {}

        async def recording_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["headers"] = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"content-length" and k.lower() not in PER_CLIENT]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                names = {k.lower() for k, _ in state.get("headers", [])}
                if state.get("status") == 200 and not names & UNREPLAYABLE and shared_cache().route(route) is not None:
                    self._templates[route] = state["headers"]
                    self._templates.move_to_end(route)
                    while len(self._templates) > MAX_TEMPLATES:
                        self._templates.popitem(last=False)
            await send(message)

        return recording_send
