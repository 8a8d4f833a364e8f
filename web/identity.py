"""Who is calling the API, and at which plan's rate: resolved from memory on the hot path.

A caller is the owner of an API key (`X-API-Key: gpb_…` or `Authorization: Bearer gpb_…`), the
user of a signed-in browser session (the session cookie), or else its address. Keys and sessions
are resolved once (key hash → owner → plan; session → user → plan) and kept in an in-process
cache, so an identified request costs a dictionary lookup, like an anonymous one.

The cache is kept true by invalidation, not by a short life: a revoked key, a changed plan or
subscription, a deactivated user or a sign-out is announced on the Redis channel
`gpubroker:identity` after its transaction commits, and every instance (this one included) drops
what it held for that user the moment the message arrives. Without Redis the announcement stays in
the process, which is then the only instance. Entries still expire after `IDENTITY_TTL` seconds,
the backstop for what no signal announces (a grace period running out) and for messages missed
while Redis was unreachable; every (re)subscription also drops everything, since messages may have
been missed before it.

Bad credentials are cached too, but apart and bounded on their own, so a flood of made-up keys can
neither reach the database more than the lookup budget allows (web.ratelimit) nor push real keys
out of memory.

Kept free of request objects: the fast path (ASGI scope) and Django (HttpRequest) both pass
`Credentials` in.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from django.conf import settings

logger = logging.getLogger("gpubroker.identity")

IDENTITY_TTL = 30.0  # seconds an identity is trusted without news; invalidation usually comes first
MAX_IDENTITIES = 50_000  # valid keys and sessions held in memory (the oldest out first)
MAX_UNKNOWN = 10_000  # bad keys and anonymous sessions held apart, so they never evict real ones
CHANNEL = "gpubroker:identity"
EVERYONE = "*"
# Free's rate in the product spec: used only if the seeded Free plan row is missing, so a broken
# database seed limits the API at the documented rate (and logs it) instead of failing every call.
SPEC_FREE_RPS = 10
BEARER = "bearer "


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a request presents: an API key, a session cookie, or neither."""

    api_key: str | None = None
    session_key: str | None = None

    @property
    def needs_lookup_budget(self) -> bool:
        return self.api_key is not None or self.session_key is not None


@dataclass(frozen=True, slots=True)
class Caller:
    """Whom a request counts against (`client`, a counter name) and at how many requests/s."""

    client: str
    rps: int
    user_id: int | None = None


def api_key_from(x_api_key: str | None, authorization: str | None) -> str | None:
    """The raw key of `X-API-Key`, else of `Authorization: Bearer`; None when neither has one."""
    if x_api_key and x_api_key.strip():
        return x_api_key.strip()
    if authorization and authorization[: len(BEARER)].lower() == BEARER and authorization[len(BEARER) :].strip():
        return authorization[len(BEARER) :].strip()
    return None


def session_key_from(cookie_header: str | None, cookie_name: str) -> str | None:
    """The session cookie's value, read as Django's parse_cookie reads it (the last one wins),
    without building every morsel of the header (SimpleCookie costs ~30 µs, this ~1 µs)."""
    if not cookie_header or cookie_name not in cookie_header:
        return None
    found = None
    for chunk in cookie_header.split(";"):
        name, sep, value = chunk.partition("=")
        if sep and name.strip() == cookie_name:
            found = value.strip()
    return found or None


def ip_client(address: str) -> str:
    """The counter name of an address: IPv4 as is, IPv6 by its /64 (one subscriber's whole
    allocation, which a client can rotate through freely)."""
    if ":" not in address:
        return f"ip:{address}"
    try:
        ip = ipaddress.IPv6Address(address.split("%", 1)[0])
    except ValueError:
        return f"ip:{address}"
    if ip.ipv4_mapped is not None:
        return f"ip:{ip.ipv4_mapped}"
    return f"ip:{ipaddress.IPv6Network((int(ip) >> 64 << 64, 64))}"


def _digest(kind: str, secret: str) -> str:
    # The cache key of a credential: never the credential itself, so memory and the invalidation
    # channel hold no secrets. Keys are long random strings: one fast hash is enough.
    return kind + hashlib.sha256(secret.encode()).hexdigest()


class Identities:
    """The in-process identity cache of one instance."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, ttl: float = IDENTITY_TTL, max_known: int = MAX_IDENTITIES, max_unknown: int = MAX_UNKNOWN) -> None:
        self.clock = clock
        self.ttl = ttl
        self.max_known = max_known
        self.max_unknown = max_unknown
        self._free: tuple[float, int] | None = None
        self._known: OrderedDict[str, tuple[float, Caller]] = OrderedDict()
        self._unknown: OrderedDict[str, float] = OrderedDict()
        self._by_user: dict[int, set[str]] = {}
        self._lock = threading.Lock()
        # Bumped by every invalidation: a lookup that started before one must not store what it
        # read, which may be the state the invalidation announced the end of.
        self._epoch = 0
        self.lookups = 0

    # ----- reading, from memory only -----

    def free_cached(self) -> int | None:
        free = self._free
        return free[1] if free is not None and self.clock() < free[0] else None

    def cached(self, credentials: Credentials, address: str) -> Caller | None | bool:
        """The caller if known from memory; False for a refused API key; None when a lookup is needed."""
        free = self.free_cached()
        if free is None:
            return None
        if credentials.api_key is not None:
            found = self._find(_digest("k:", credentials.api_key))
            return found if found is not None else None
        if credentials.session_key is not None:
            found = self._find(_digest("s:", credentials.session_key))
            if found is None:
                return None
            if found is not False:
                return found
        return Caller(ip_client(address), free)

    def _find(self, digest: str) -> Caller | bool | None:
        now = self.clock()
        entry = self._known.get(digest)
        if entry is not None and now < entry[0]:
            return entry[1]
        expires = self._unknown.get(digest)
        if expires is not None and now < expires:
            return False
        return None

    # ----- resolving, from the database -----

    def free(self) -> int:
        cached = self.free_cached()
        if cached is not None:
            return cached
        from billing.models import Plan

        epoch = self._epoch
        try:
            rps = Plan.objects.free().requests_per_second
        except Plan.DoesNotExist as exc:
            logger.error("%s; limiting anonymous API clients at the spec's %d requests/s", exc, SPEC_FREE_RPS)
            rps = SPEC_FREE_RPS
        with self._lock:
            if epoch == self._epoch:
                self._free = (self.clock() + self.ttl, rps)
        return rps

    def resolve(self, credentials: Credentials, address: str) -> Caller | bool:
        """The caller, looking up in the database what memory does not hold; False for a refused
        API key (unknown, revoked, or its owner deactivated)."""
        free = self.free()
        if credentials.api_key is not None:
            found = self._find(_digest("k:", credentials.api_key))
            if found is None:
                found = self._load(_digest("k:", credentials.api_key), lambda: _key_owner(credentials.api_key or ""))
            return found
        if credentials.session_key is not None:
            found = self._find(_digest("s:", credentials.session_key))
            if found is None:
                found = self._load(_digest("s:", credentials.session_key), lambda: _session_user(credentials.session_key or ""))
            if found is not False:
                return found
        return Caller(ip_client(address), free)

    def _load(self, digest: str, owner: Callable[[], Any]) -> Caller | bool:
        from billing.entitlements import current_plan

        epoch = self._epoch
        self.lookups += 1
        user = owner()
        # Per owner, not per key: more keys must not buy more rate.
        caller: Caller | bool = False if user is None else Caller(f"u:{user.pk}", current_plan(user).requests_per_second, user.pk)
        with self._lock:
            if epoch != self._epoch:
                return caller  # invalidated meanwhile: answer this request, remember nothing
            expires = self.clock() + self.ttl
            if isinstance(caller, Caller):
                self._known[digest] = (expires, caller)
                self._known.move_to_end(digest)
                self._by_user.setdefault(user.pk, set()).add(digest)
                while len(self._known) > self.max_known:
                    old, (_, dropped) = self._known.popitem(last=False)
                    self._unlink(old, dropped)
            else:
                self._unknown[digest] = expires
                self._unknown.move_to_end(digest)
                while len(self._unknown) > self.max_unknown:
                    self._unknown.popitem(last=False)
        return caller

    def _unlink(self, digest: str, caller: Caller) -> None:
        owned = self._by_user.get(caller.user_id or 0)
        if owned is not None:
            owned.discard(digest)
            if not owned:
                del self._by_user[caller.user_id or 0]

    # ----- forgetting -----

    def forget(self, what: str) -> None:
        """Applies one invalidation message: `u:<user id>`, `c:<credential digest>` or `*`."""
        with self._lock:
            self._epoch += 1
            if what == EVERYONE:
                self._known.clear()
                self._unknown.clear()
                self._by_user.clear()
                self._free = None
            elif what.startswith("u:") and what[2:].isdigit():
                for digest in self._by_user.pop(int(what[2:]), set()):
                    self._known.pop(digest, None)
            elif what.startswith("c:"):
                entry = self._known.pop(what[2:], None)
                if entry is not None:
                    self._unlink(what[2:], entry[1])
                self._unknown.pop(what[2:], None)

    def __len__(self) -> int:
        return len(self._known) + len(self._unknown)


def _key_owner(raw: str) -> Any | None:
    from billing.models import ApiKey

    api_key = ApiKey.objects.authenticate(raw)
    return None if api_key is None else api_key.user


def _session_user(session_key: str) -> Any | None:
    """The signed-in user of a session, checked exactly as Django's AuthenticationMiddleware does
    (backend, active user, session hash of the current password)."""
    from importlib import import_module

    from django.contrib.auth import get_user

    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user = get_user(SimpleNamespace(session=store))  # type: ignore[arg-type]
    return user if user.is_authenticated else None


def session_digest(session_key: str) -> str:
    return _digest("s:", session_key)


class InvalidationBus:
    """Announces identity changes to every instance through Redis pub/sub (or only to this
    process without Redis) and applies the ones it hears to `identities`."""

    def __init__(self, identities: Identities, url: str | None, channel: str = CHANNEL) -> None:
        self.identities = identities
        self.url = url
        self.channel = channel
        self.subscribed = threading.Event()
        self.heard: deque[str] = deque(maxlen=1000)  # the latest messages heard, for tests
        self._heard_lock = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._publisher: Any = None

    def start(self) -> InvalidationBus:
        if self.url and self._thread is None:
            from providers.cache import fail_fast_redis

            self._publisher = fail_fast_redis(self.url)
            self._thread = threading.Thread(target=self._listen, name="identity-invalidations", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def announce(self, messages: Iterable[str]) -> None:
        """Drops the entries here at once and tells every other instance."""
        messages = list(messages)
        for message in messages:
            self.identities.forget(message)
        if self._publisher is None:
            return
        try:
            pipe = self._publisher.pipeline(transaction=False)
            for message in messages:
                pipe.publish(self.channel, message)
            pipe.execute()
        except Exception as exc:  # the other instances fall back on IDENTITY_TTL
            logger.warning("could not announce identity changes %s (%s); other instances see them within %.0f s", messages, exc, self.identities.ttl)

    def wait_heard(self, message: str, timeout: float) -> bool:
        """For tests: waits until `message` has been heard (and applied)."""
        with self._heard_lock:
            return self._heard_lock.wait_for(lambda: message in self.heard, timeout)

    def _listen(self) -> None:
        import redis

        while not self._stop.is_set():
            pubsub = None
            try:
                client = redis.Redis.from_url(self.url or "", socket_connect_timeout=1, socket_timeout=5, health_check_interval=2)
                pubsub = client.pubsub()
                pubsub.subscribe(self.channel)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        # Whatever was announced before now may have been missed: start afresh.
                        self.identities.forget(EVERYONE)
                        self.subscribed.set()
                    elif message["type"] == "message":
                        data = message["data"]
                        text = data.decode() if isinstance(data, bytes) else str(data)
                        self.identities.forget(text)
                        with self._heard_lock:
                            self.heard.append(text)
                            self._heard_lock.notify_all()
            except Exception as exc:  # Redis unreachable: entries expire by TTL until it is back
                if self.subscribed.is_set():
                    logger.warning("identity invalidations unreachable (%s); retrying", exc)
                self.subscribed.clear()
                self._stop.wait(1.0)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:
                        logger.debug("closing the identity subscription failed", exc_info=True)


_identities: Identities | None = None
_bus: InvalidationBus | None = None
_shared_lock = threading.Lock()


def shared() -> tuple[Identities, InvalidationBus]:
    """This process's identity cache and its bus (on REDIS_URL when set), started on first use."""
    global _identities, _bus
    with _shared_lock:
        if _identities is None or _bus is None:
            _identities = Identities()
            _bus = InvalidationBus(_identities, settings.REDIS_URL).start()
        return _identities, _bus


def identities() -> Identities:
    return shared()[0]


def reset_shared(identities: Identities | None = None, bus: InvalidationBus | None = None) -> None:
    """Replaces (or drops, stopping its listener) the process's cache and bus: for tests."""
    global _identities, _bus
    with _shared_lock:
        old = _bus
        _identities, _bus = identities, bus
    if old is not None and old is not bus:
        old.stop()


def announce(*messages: str) -> None:
    """Announces identity changes once the current transaction commits (at once outside one),
    after dropping them here at once: a lookup must never cache the state being replaced."""
    from django.db import transaction

    local, bus = shared()
    for message in messages:
        local.forget(message)
    transaction.on_commit(lambda: bus.announce(messages))


def _key_changed(instance: Any, **_: Any) -> None:
    announce(f"c:k:{instance.key_hash}")


def _user_plan_changed(instance: Any, **_: Any) -> None:
    announce(f"u:{instance.user_id}")


def _plans_changed(**_: Any) -> None:
    announce(EVERYONE)


def _user_changed(instance: Any, update_fields: Any = None, **_: Any) -> None:
    if update_fields is not None and set(update_fields) <= {"last_login"}:
        return  # every sign-in writes last_login; it changes nobody's identity
    announce(f"u:{instance.pk}")


def _session_ended(instance: Any = None, request: Any = None, **_: Any) -> None:
    key = instance.session_key if instance is not None else getattr(getattr(request, "session", None), "session_key", None)
    if key:
        announce("c:" + session_digest(key))


def connect_signals() -> None:
    """Every change that alters who a credential is or what their plan allows (web.apps)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.signals import user_logged_out
    from django.contrib.sessions.models import Session
    from django.db.models.signals import post_delete, post_save

    from billing.models import ApiKey, Plan, Subscription

    for signal in (post_save, post_delete):
        signal.connect(_key_changed, sender=ApiKey, dispatch_uid=f"identity-key-{signal is post_save}")
        signal.connect(_user_plan_changed, sender=Subscription, dispatch_uid=f"identity-sub-{signal is post_save}")
        signal.connect(_plans_changed, sender=Plan, dispatch_uid=f"identity-plan-{signal is post_save}")
        signal.connect(_user_changed, sender=get_user_model(), dispatch_uid=f"identity-user-{signal is post_save}")
    post_delete.connect(_session_ended, sender=Session, dispatch_uid="identity-session")
    user_logged_out.connect(_session_ended, dispatch_uid="identity-logout")
