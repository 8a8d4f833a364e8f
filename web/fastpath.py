"""A lean ASGI fast path in front of Django for the hottest cached reads of public data.

Django's ASGI handler costs ~0.5 ms of CPU per request, which caps one process near 1-2k
requests/s whatever the view does (see README, "Deployment"). This layer answers a request it has
seen before without entering Django:

1. The first time a given URL is asked, the request goes through Django as usual: every
   middleware, the ninja view, the cache. The view registers which cache entry answers that exact
   URL (`TieredCache.remember_route`), and this layer records the final status and headers the
   full stack produced (never the per-client rate headers, never a Set-Cookie).
2. Next times, if its Host is allowed (exactly one Host header) and the entry is fresh in this
   process's L2, the recorded headers are replayed with the entry's current bytes: the same answer
   Django would give, byte for byte, for a few microseconds. XFetch early refresh is triggered here
   exactly as in the view, in the background.

Anonymous callers, API keys (`X-API-Key`, `Authorization: Bearer`) and signed-in sessions are all
served this way: the data is public, only the rate limit is personal. The caller is resolved from
the in-process identity cache (web.identity) and counted at their own plan (web.ratelimit), so
each answer carries that caller's own rate-limit headers; a refused key gets the 401, and a caller
past their rate the 429, that Django would give, security headers included.

Anything else (other Authorization schemes, misses, expiries, errors) goes to Django, so
correctness never depends on this layer; it can be switched off with GPUBROKER_FASTPATH=0.
Websockets never pass through it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings
from django.http import HttpResponse
from django.http.request import split_domain_port, validate_host
from django.middleware.security import SecurityMiddleware

from providers.cache import shared_cache
from web import identity, ratelimit
from web.identity import Credentials
from web.metrics import REQUEST_LATENCY

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# The public reads this layer may answer (path -> route label of the latency metric); each is
# answered only for URLs whose view remembered the cache entry that answers them.
FAST_PATHS = {
    "/api/v2/providers": "api/v2/providers",
    "/api/v2/providers/ranking": "api/v2/providers/ranking",
    "/api/v2/providers/health": "api/v2/providers/health",
}
OFFER_PREFIX = "/api/v2/providers/"
OFFER_LABEL = "api/v2/providers/{offer_id}"
MAX_TEMPLATES = 10_000
MAX_HOSTS = 1_000
# Headers whose meaning only Django knows: such requests go to Django.
UNHANDLED_HEADERS = {b"proxy-authorization"}
# Headers that must appear at most once to be read here (Django refuses or joins repeats).
SINGLE_HEADERS = {b"host", b"x-api-key", b"authorization"}
# Headers of a response that make it unfit to replay to someone else.
UNREPLAYABLE = {b"set-cookie", b"www-authenticate"}
# Per-client headers: never recorded, each replay adds the current client's own.
PER_CLIENT = ratelimit.RATE_HEADERS


class _ScopeRequest:
    """What SecurityMiddleware asks of a request, for answers built without Django."""

    def __init__(self, scope: Scope) -> None:
        self._secure = scope.get("scheme") == "https"

    def is_secure(self) -> bool:
        return self._secure


class FastPath:
    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], *, identities: identity.Identities | None = None, limiter: ratelimit.RateLimiter | None = None) -> None:
        self.app = app
        # The process's own unless given (tests run two instances side by side in one process).
        self._identities = identities
        self._limiter = limiter
        self._templates: OrderedDict[str, list[tuple[bytes, bytes]]] = OrderedDict()
        self._allowed_hosts = list(settings.ALLOWED_HOSTS)
        if settings.DEBUG and not self._allowed_hosts:
            self._allowed_hosts = [".localhost", "127.0.0.1", "[::1]"]
        self._session_cookie = settings.SESSION_COOKIE_NAME
        self._ssl_redirect = settings.SECURE_SSL_REDIRECT
        # Host header -> allowed: a handful of values, each validated once (~8 µs saved a request).
        self._hosts: dict[bytes, bool] = {}
        self._latency = {route: REQUEST_LATENCY.labels(route, "GET", "2xx") for route in [*FAST_PATHS.values(), OFFER_LABEL]}
        # Django's own security headers for the refusals answered here (Django's 429 and 401
        # pass through SecurityMiddleware too).
        self._security = SecurityMiddleware(lambda request: HttpResponse())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        label = _label(scope["path"]) if scope["type"] == "http" and scope["method"] == "GET" else None
        if label is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        route = self._route(scope)
        credentials = self._credentials(scope) if route is not None else None
        if credentials is None:
            await self.app(scope, receive, send)
            return
        # The rate limit is per client, so it is counted here on every eligible request, cached
        # answer or not; Django finds the verdict in the scope and does not count it again.
        verdict = await ratelimit.check_scope(scope, credentials, self._limiter, self._identities)
        if verdict is not None:
            refusal = verdict.refusal()
            if refusal is not None:
                await self._send_built(refusal, scope, send)
                return
        rate_headers = verdict.decision.raw_headers() if verdict is not None else []
        headers = self._templates.get(route)
        known = shared_cache().route(route)
        if headers is not None and known is not None:
            cache = shared_cache()
            key, ttl, compute = known
            entry = cache.peek(key)
            now = cache.clock()
            # An empty entry stands for "no such offer": Django answers that with its 404.
            if entry is not None and entry.value and now < entry.expires_at:
                cache.stats.l2_hits += 1
                cache.maybe_refresh_early(key, entry, ttl, compute, now)
                body = entry.value
                await send({"type": "http.response.start", "status": 200, "headers": [*headers, *rate_headers, (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                self._latency[label].observe(time.perf_counter() - started)
                return
        await self.app(scope, receive, self._recording(route, send))

    async def _send_built(self, response: HttpResponse, scope: Scope, send: Send) -> None:
        # The same refusal RateLimitMiddleware gives, with the headers SecurityMiddleware adds.
        response = self._security.process_response(_ScopeRequest(scope), response)
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.items()]
        body = response.content
        await send({"type": "http.response.start", "status": response.status_code, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _route(scope: Scope) -> str | None:
        try:
            return f"{scope['path']}?{scope.get('query_string', b'').decode('utf-8')}"
        except UnicodeDecodeError:
            return None  # Django decodes the same way and will answer with its own error

    def _credentials(self, scope: Scope) -> Credentials | None:
        """The request's credentials if this layer may answer it, else None (Django will)."""
        seen: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            if name in UNHANDLED_HEADERS:
                return None
            if name in SINGLE_HEADERS:
                if name in seen:
                    return None  # Django answers two Host headers with 400; repeats are its call
                seen[name] = value
            elif name == b"cookie":
                seen[b"cookie"] = seen[b"cookie"] + b"; " + value if b"cookie" in seen else value
        authorization = seen.get(b"authorization")
        api_key = identity.api_key_from(_text(seen.get(b"x-api-key")), _text(authorization))
        if authorization is not None and api_key is None and not seen.get(b"x-api-key"):
            return None  # another scheme (Basic, ...): Django decides
        if self._ssl_redirect and scope.get("scheme") != "https":
            return None  # Django answers with the redirect
        if not self._host_allowed(seen.get(b"host", b"")):
            return None
        return Credentials(api_key, identity.session_key_from(_text(seen.get(b"cookie")), self._session_cookie))

    def _host_allowed(self, host: bytes) -> bool:
        allowed = self._hosts.get(host)
        if allowed is None:
            domain, _ = split_domain_port(host.decode("latin-1"))
            allowed = bool(domain) and validate_host(domain, self._allowed_hosts)
            if len(self._hosts) >= MAX_HOSTS:
                self._hosts.clear()  # junk Host headers cannot grow this without bound
            self._hosts[host] = allowed
        return allowed

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


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None


def _label(path: str) -> str | None:
    """The metric route of a path this layer may answer, or None."""
    label = FAST_PATHS.get(path)
    if label is None and path.startswith(OFFER_PREFIX) and path[len(OFFER_PREFIX) :].isascii() and path[len(OFFER_PREFIX) :].isdigit():
        return OFFER_LABEL  # one offer's detail, /api/v2/providers/{offer_id}
    return label
