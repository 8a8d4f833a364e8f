"""Who is calling: API keys (either header) and signed-in sessions resolved from memory, counted
at their owner's plan through the fast path, and kept true across instances by invalidation."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from importlib import import_module
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.core.asgi import get_asgi_application
from django.test import Client
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from billing.models import ApiKey, Plan, Subscription, SubscriptionStatus
from providers.cache import TieredCache, reset_shared_cache
from tests.accounts_and_billing import make_user
from tests.environment import TEST_REDIS_URL
from web import identity
from web.fastpath import FastPath
from web.identity import Credentials, Identities, InvalidationBus, ip_client
from web.ratelimit import RateLimiter, reset_shared_limiter
from web.serving import uvicorn_command

URL = "/api/v2/providers?limit=2"
HEALTH = "/api/v2/providers/health"
EVENT_DEADLINE = 10.0  # seconds a test waits for a pub/sub message before failing; it usually takes ms


class FrozenClock:
    """A clock that never moves: an identity can only change by invalidation, never by its TTL."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def seed_plans() -> None:
    for plan in import_module("billing.migrations.0002_seed_plans").PLANS:
        Plan.objects.get_or_create(slug=plan["slug"], defaults=plan)


def subscribed(email: str, plan: str) -> Any:
    seed_plans()
    user = make_user(email)
    Subscription.objects.create(
        user=user, plan=Plan.objects.get(slug=plan), stripe_id=f"sub_{uuid.uuid4().hex[:8]}", stripe_customer_id="cus_x", status=SubscriptionStatus.ACTIVE
    )
    return user


def key_of(email: str, plan: str) -> tuple[Any, str]:
    user = subscribed(email, plan)
    return user, ApiKey.issue(user, "integration")[1]


@pytest.fixture
def channel() -> str:
    return f"test:identity:{uuid.uuid4().hex}"


@pytest.fixture
def limiter(settings: Any) -> Iterator[RateLimiter]:
    settings.RATE_LIMIT_ENABLED = True
    settings.RATE_LIMIT_MULTIPLIER = 1
    # A generous timeout: on a busy machine a slow round trip must not pass for Redis down.
    shared = RateLimiter(TEST_REDIS_URL, prefix=f"test:rl:{uuid.uuid4().hex}:", clock=FrozenClock(), timeout=5)
    reset_shared_limiter(shared)
    yield shared
    reset_shared_limiter(None)


@pytest.fixture
def instance_a(channel: str, limiter: RateLimiter) -> Iterator[tuple[Identities, InvalidationBus]]:
    """This process's identity cache, announcing on a channel of the test's own."""
    identities = Identities(clock=FrozenClock())
    bus = InvalidationBus(identities, TEST_REDIS_URL, channel=channel).start()
    identity.reset_shared(identities, bus)
    assert bus.subscribed.wait(EVENT_DEADLINE), "instance A never subscribed"
    yield identities, bus
    identity.reset_shared(None)


@pytest.fixture
def instance_b(channel: str) -> Iterator[tuple[Identities, InvalidationBus]]:
    """A second instance: its own identity cache and subscription, sharing only Redis."""
    identities = Identities(clock=FrozenClock())
    bus = InvalidationBus(identities, TEST_REDIS_URL, channel=channel).start()
    assert bus.subscribed.wait(EVENT_DEADLINE), "instance B never subscribed"
    yield identities, bus
    bus.stop()


@pytest.fixture
async def asgi(catalog: None) -> AsyncIterator[Any]:
    reset_shared_cache(TieredCache(None))
    django_app = get_asgi_application()
    reached: list[str] = []

    async def counting(scope, receive, send):  # type: ignore[no-untyped-def]
        reached.append(scope["path"])
        await django_app(scope, receive, send)

    def client(ip: str = "198.51.100.1", identities: Identities | None = None, app: Any = None) -> httpx.AsyncClient:
        front = app or FastPath(counting, identities=identities)
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=front, client=(ip, 40000)), base_url="http://localhost")

    client.reached = reached  # type: ignore[attr-defined]
    client.django = django_app  # type: ignore[attr-defined]
    yield client
    reset_shared_cache(None)


# ----- across instances -----


@pytest.mark.django_db(transaction=True)
async def test_a_revoked_key_is_refused_by_a_second_instance_sharing_redis(asgi: Any, instance_a: Any, instance_b: Any) -> None:
    b_identities, b_bus = instance_b
    _, raw = await sync_to_async(key_of)("ent@example.com", "enterprise")
    async with asgi(identities=b_identities) as b:
        before = [await b.get(URL, headers={"X-API-Key": raw}) for _ in range(2)]
        assert [r.status_code for r in before] == [200, 200] and before[1].headers["x-ratelimit-limit"] == "1000"
        assert asgi.reached == ["/api/v2/providers"]  # B answers the second from memory
        # Revoked through instance A's code path (the model, its signal, A's announcement).
        key = await sync_to_async(ApiKey.objects.get)()
        await sync_to_async(key.revoke)()
        assert await asyncio.to_thread(b_bus.wait_heard, f"c:k:{key.key_hash}", EVENT_DEADLINE), "B never heard of the revocation"
        after = await b.get(URL, headers={"X-API-Key": raw})
    # B's clock is frozen, so its entry never expired: the announcement alone made it look again.
    assert after.status_code == 401 and after.json()["error"] == "invalid API key"
    assert b_identities.lookups == 2


@pytest.mark.django_db(transaction=True)
async def test_a_plan_change_reaches_the_limiter_of_every_instance_at_once(asgi: Any, instance_a: Any, instance_b: Any) -> None:
    b_identities, b_bus = instance_b
    user, raw = await sync_to_async(key_of)("upgrade@example.com", "pro")
    async with asgi(identities=b_identities) as b:
        assert (await b.get(URL, headers={"X-API-Key": raw})).headers["x-ratelimit-limit"] == "100"

        def upgrade() -> None:
            subscription = Subscription.objects.get(user=user)
            subscription.plan = Plan.objects.get(slug="enterprise")
            subscription.save()

        # Creating the subscription announced `u:<pk>` too, and B may hear it late. Announcements
        # arrive in order, so once B has heard a marker sent now, the next `u:<pk>` is the upgrade's.
        marker = f"c:marker-{user.pk}"
        await sync_to_async(identity.announce)(marker)
        assert await asyncio.to_thread(b_bus.wait_heard, marker, EVENT_DEADLINE), "B never heard the marker"
        with b_bus._heard_lock:
            b_bus.heard.clear()
        await sync_to_async(upgrade)()
        assert await asyncio.to_thread(b_bus.wait_heard, f"u:{user.pk}", EVENT_DEADLINE), "B never heard of the plan change"
        assert (await b.get(URL, headers={"X-API-Key": raw})).headers["x-ratelimit-limit"] == "1000"
        a = asgi()  # instance A (the process's own cache) sees it too
        async with a:
            assert (await a.get(URL, headers={"X-API-Key": raw})).headers["x-ratelimit-limit"] == "1000"


def test_a_lookup_that_straddles_an_invalidation_remembers_nothing() -> None:
    identities = Identities(clock=FrozenClock())

    def owner_read_before_the_change() -> None:
        identities.forget("u:7")  # the change lands while the lookup is reading the database

    assert identities._load("k:abc", owner_read_before_the_change) is False
    assert len(identities) == 0  # not cached: the next request looks again


# ----- credentials -----


@pytest.mark.django_db(transaction=True)
async def test_a_bearer_key_works_like_x_api_key(asgi: Any, instance_a: Any) -> None:
    _, raw = await sync_to_async(key_of)("bearer@example.com", "pro")
    async with asgi() as http:
        listed = [await http.get(URL, headers={"Authorization": f"Bearer {raw}"}) for _ in range(2)]
        account = await http.get("/api/v2/account", headers={"Authorization": f"Bearer {raw}"})
        wrong = await http.get(URL, headers={"Authorization": "Bearer gpb_made_up_key"})
    assert [r.status_code for r in listed] == [200, 200] and {r.headers["x-ratelimit-limit"] for r in listed} == {"100"}
    assert account.status_code == 200 and account.json()["email"] == "bearer@example.com"
    assert wrong.status_code == 401


@pytest.mark.django_db(transaction=True)
async def test_an_enterprise_key_gets_enterprise_limits_through_the_fast_path_for_all_its_keys_together(asgi: Any, instance_a: Any) -> None:
    user, first = await sync_to_async(key_of)("big@example.com", "enterprise")
    second = await sync_to_async(lambda: ApiKey.issue(user, "second")[1])()
    async with asgi(ip="203.0.113.50") as http:
        answers = [await http.get(URL, headers={"X-API-Key": first if n % 2 else second}) for n in range(1001)]
    assert [a.status_code for a in answers] == [200] * 1000 + [429]
    assert answers[0].headers["x-ratelimit-limit"] == "1000" and answers[999].headers["x-ratelimit-remaining"] == "0"
    assert answers[0].headers["x-ratelimit-reset"] == "1" and answers[1000].headers["x-ratelimit-reset"] == answers[1000].headers["retry-after"]
    assert asgi.reached == ["/api/v2/providers"]  # one trip through Django; a thousand from memory


@pytest.mark.django_db(transaction=True)
async def test_a_signed_in_session_counts_for_its_user_at_their_plan_until_they_sign_out(asgi: Any, instance_a: Any) -> None:
    user = await sync_to_async(subscribed)("member@example.com", "pro")
    browser = Client()
    await sync_to_async(browser.force_login)(user)
    cookie = f"theme=dark; sessionid={browser.cookies['sessionid'].value}"
    async with asgi() as http:
        signed_in = [await http.get(URL, headers={"Cookie": cookie}) for _ in range(2)]
        await sync_to_async(browser.post)("/accounts/logout/")
        signed_out = await http.get(URL, headers={"Cookie": cookie})
    assert {r.headers["x-ratelimit-limit"] for r in signed_in} == {"100"} and asgi.reached == ["/api/v2/providers"]
    # The ended session is an anonymous visitor again: Free, by address, still answered.
    assert signed_out.status_code == 200 and signed_out.headers["x-ratelimit-limit"] == "10"


@pytest.mark.django_db(transaction=True)
async def test_made_up_keys_reach_the_database_only_within_the_lookup_budget(asgi: Any, instance_a: Any) -> None:
    identities, _ = instance_a
    _, real = await sync_to_async(key_of)("real@example.com", "pro")
    async with asgi(ip="203.0.113.60") as http:
        assert (await http.get(URL, headers={"X-API-Key": real})).status_code == 200
        flood = [await http.get(URL, headers={"X-API-Key": f"gpb_{uuid.uuid4().hex[:8]}_{uuid.uuid4().hex}"}) for _ in range(40)]
        still = await http.get(URL, headers={"X-API-Key": real})
    statuses = [r.status_code for r in flood]
    # The real key's lookup spent one of this address's 10 lookups in this second.
    assert statuses == [401] * 9 + [429] * 31
    assert identities.lookups == 10  # the real key and nine made-up ones; the rest never left memory
    assert still.status_code == 200 and still.headers["x-ratelimit-limit"] == "100"


@pytest.mark.django_db
def test_bad_credentials_are_bounded_apart_and_never_evict_real_ones() -> None:
    identities = Identities(clock=FrozenClock(), max_known=3, max_unknown=5)
    real = [Credentials(api_key=key_of(f"owner{n}@example.com", "pro")[1]) for n in range(3)]
    for credentials in real:
        identities.resolve(credentials, "192.0.2.1")
    for n in range(200):
        assert identities.resolve(Credentials(api_key=f"gpb_{n:08x}_junk"), "192.0.2.1") is False
    assert len(identities) == 3 + 5  # the junk holds its own five places
    assert all(isinstance(identities.cached(c, "192.0.2.1"), identity.Caller) for c in real)


# ----- addresses -----


def test_ipv6_clients_are_counted_per_64_and_mapped_ipv4_as_ipv4() -> None:
    assert ip_client("2001:db8:1:2:aaaa::1") == ip_client("2001:db8:1:2:ffff:ffff:ffff:ffff") == "ip:2001:db8:1:2::/64"
    assert ip_client("2001:db8:1:3::1") != ip_client("2001:db8:1:2::1")
    assert ip_client("::ffff:198.51.100.7") == ip_client("198.51.100.7") == "ip:198.51.100.7"


@pytest.mark.django_db
def test_a_64_holder_cannot_rotate_addresses_past_its_limit(limiter: RateLimiter) -> None:
    local = Identities()
    identity.reset_shared(local, InvalidationBus(local, None))
    client = Client()
    answers = [client.get(HEALTH, REMOTE_ADDR=f"2001:db8:77:1::{n:x}").status_code for n in range(1, 12)]
    assert answers == [200] * 10 + [429]
    assert client.get(HEALTH, REMOTE_ADDR="2001:db8:77:2::1").status_code == 200  # the next /64 is someone else
    identity.reset_shared(None)


@pytest.mark.django_db(transaction=True)
async def test_behind_trusted_proxies_every_client_keeps_its_own_limit(asgi: Any, instance_a: Any, settings: Any) -> None:
    assert settings.FORWARDED_ALLOW_IPS == "127.0.0.1,::1"
    assert uvicorn_command("web.asgi:application", "127.0.0.1", 8000)[-2:] == ["--forwarded-allow-ips", "127.0.0.1,::1"]
    # The same middleware and the same setting uvicorn is started with (web.serving).
    served = ProxyHeadersMiddleware(FastPath(asgi.django), trusted_hosts=settings.FORWARDED_ALLOW_IPS)
    async with asgi(ip="127.0.0.1", app=served) as balancer, asgi(ip="198.51.100.66", app=served) as stranger:
        per_client = [await balancer.get(URL, headers={"X-Forwarded-For": f"10.1.0.{n}"}) for n in range(30)]
        spoofed = [await stranger.get(URL, headers={"X-Forwarded-For": f"10.2.0.{n}"}) for n in range(11)]
    assert {r.status_code for r in per_client} == {200} and {r.headers["x-ratelimit-remaining"] for r in per_client} == {"9"}
    # A peer that is not a trusted proxy cannot pick its address: all 11 count against it.
    assert [r.status_code for r in spoofed] == [200] * 10 + [429]


@pytest.mark.django_db(transaction=True)
async def test_x_forwarded_proto_is_believed_only_from_a_trusted_proxy(asgi: Any, instance_a: Any, settings: Any) -> None:
    settings.SECURE_SSL_REDIRECT = True
    # SecurityMiddleware reads the setting when the handler is built.
    served = ProxyHeadersMiddleware(FastPath(get_asgi_application()), trusted_hosts=settings.FORWARDED_ALLOW_IPS)
    async with asgi(ip="127.0.0.1", app=served) as balancer, asgi(ip="198.51.100.67", app=served) as stranger:
        trusted = await balancer.get(URL, headers={"X-Forwarded-Proto": "https"})
        spoofed = await stranger.get(URL, headers={"X-Forwarded-Proto": "https"})
    assert trusted.status_code == 200
    assert spoofed.status_code == 301 and spoofed.headers["location"].startswith("https://")


# ----- refusals built by the fast path -----


@pytest.mark.django_db(transaction=True)
async def test_the_fast_paths_refusals_carry_the_same_headers_as_djangos(asgi: Any, instance_a: Any, limiter: RateLimiter) -> None:
    def headers(response: httpx.Response) -> list[tuple[str, str]]:
        return sorted((k, v) for k, v in response.headers.multi_items() if k != "content-length")

    async with asgi(ip="198.51.100.80") as fast, asgi(ip="198.51.100.81", app=asgi.django) as plain:
        await fast.get(URL)
        await plain.get(URL)
        fast_401 = await fast.get(URL, headers={"X-API-Key": "gpb_made_up_key"})
        plain_401 = await plain.get(URL, headers={"X-API-Key": "gpb_made_up_key"})
        for _ in range(8):
            await fast.get(URL)
            await plain.get(URL)
        fast_429, plain_429 = await fast.get(URL), await plain.get(URL)
    assert asgi.reached == ["/api/v2/providers"]  # the fast path answered its refusals itself
    assert (fast_401.status_code, fast_429.status_code, plain_401.status_code, plain_429.status_code) == (401, 429, 401, 429)
    assert headers(fast_401) == headers(plain_401) and headers(fast_429) == headers(plain_429)
    assert fast_429.content == plain_429.content
    assert dict(headers(fast_429))["x-content-type-options"] == "nosniff" and "referrer-policy" in dict(headers(fast_429))


@pytest.mark.django_db(transaction=True)
async def test_offer_detail_and_health_are_answered_from_memory_for_a_key_and_a_missing_offer_never_is(asgi: Any, instance_a: Any) -> None:
    from providers.models import Offer

    _, raw = await sync_to_async(key_of)("detail@example.com", "pro")
    offer_id = await sync_to_async(lambda: Offer.objects.values_list("id", flat=True).first())()
    async with asgi() as http:
        detail = [await http.get(f"/api/v2/providers/{offer_id}", headers={"X-API-Key": raw}) for _ in range(3)]
        health = [await http.get(HEALTH, headers={"X-API-Key": raw}) for _ in range(3)]
        missing = [await http.get("/api/v2/providers/999999999", headers={"X-API-Key": raw}) for _ in range(2)]
    assert [r.status_code for r in detail + health] == [200] * 6 and detail[2].json()["id"] == offer_id
    assert detail[2].content == detail[0].content and detail[2].headers["x-ratelimit-limit"] == "100"
    assert [r.status_code for r in missing] == [404, 404]
    assert asgi.reached == [f"/api/v2/providers/{offer_id}", HEALTH, "/api/v2/providers/999999999", "/api/v2/providers/999999999"]
