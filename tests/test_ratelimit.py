"""Plan-tier API rate limits: per client, sliding, shared through Redis, with a fallback in process."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import uuid
from importlib import import_module
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import redis
from django.core.asgi import get_asgi_application
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from billing.models import ApiKey, Plan, Subscription, SubscriptionStatus
from providers.cache import TieredCache, reset_shared_cache
from tests.accounts_and_billing import make_user
from tests.environment import TEST_REDIS_URL
from web.fastpath import FastPath
from web import identity
from web.identity import Identities, InvalidationBus
from web.ratelimit import RateLimiter, reset_shared_limiter

HEALTH = "/api/v2/providers/health"
START = 1_000_000.0  # a whole second: window boundaries are at whole multiples


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def prefix() -> str:
    return f"test:rl:{uuid.uuid4().hex}:"


@pytest.fixture
def test_redis(prefix: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(TEST_REDIS_URL)
    yield client
    for key in client.scan_iter(prefix + "*"):
        client.delete(key)


@pytest.fixture
def limiter(test_redis: redis.Redis, clock: Clock, prefix: str, settings: Any) -> Iterator[RateLimiter]:
    """The shared limiter on the test Redis with a frozen clock, plan rates as sold (multiplier 1)."""
    settings.RATE_LIMIT_ENABLED = True
    settings.RATE_LIMIT_MULTIPLIER = 1
    # A generous timeout: on a busy machine a slow round trip must not pass for Redis down.
    shared = RateLimiter(TEST_REDIS_URL, prefix=prefix, clock=clock, timeout=5)
    reset_shared_limiter(shared)
    identities = Identities()
    identity.reset_shared(identities, InvalidationBus(identities, None))
    yield shared
    reset_shared_limiter(None)
    identity.reset_shared(None)


def dead_redis() -> str:
    """The URL of a port nobody listens on: every command fails at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def statuses(client: Client, n: int, **extra: str) -> list[int]:
    return [client.get(HEALTH, **extra).status_code for _ in range(n)]


def pro_key() -> str:
    # A transactional test before this one may have emptied the tables the migration seeded.
    for plan in import_module("billing.migrations.0002_seed_plans").PLANS:
        Plan.objects.get_or_create(slug=plan["slug"], defaults=plan)
    user = make_user("pro@example.com")
    Subscription.objects.create(
        user=user, plan=Plan.objects.get(slug="pro"), stripe_id="sub_pro", stripe_customer_id="cus_pro", status=SubscriptionStatus.ACTIVE
    )
    return ApiKey.issue(user, "load test")[1]


# ----- Django (the middleware) -----


@pytest.mark.django_db
def test_anonymous_clients_get_429_with_retry_after_past_the_free_rate(limiter: RateLimiter) -> None:
    client = Client()
    answers = [client.get(HEALTH) for _ in range(10)]
    assert [a.status_code for a in answers] == [200] * 10
    assert [a["X-RateLimit-Remaining"] for a in answers] == [str(n) for n in range(9, -1, -1)]
    assert {a["X-RateLimit-Limit"] for a in answers} == {"10"}
    refused = client.get(HEALTH)
    assert refused.status_code == 429
    assert refused.json() == {"error": "rate limit exceeded", "errors": [{"field": "rate", "reason": "over 10 requests per second; retry in 2 s"}]}
    # 1.1 s: into the next second, these 10 still weigh 10 until a tenth of it has passed.
    assert refused["Retry-After"] == "2" and refused["X-RateLimit-Remaining"] == "0" and refused["X-RateLimit-Limit"] == "10"


@pytest.mark.django_db
def test_every_api_answer_carries_the_headers_and_other_pages_are_not_limited(limiter: RateLimiter) -> None:
    client = Client()
    invalid = client.get("/api/v2/analytics/price-history")
    assert invalid.status_code == 422 and invalid["X-RateLimit-Remaining"] == "9"
    unauthorized = client.get("/api/v2/account")
    assert unauthorized.status_code == 401 and unauthorized["X-RateLimit-Remaining"] == "8"
    assert "X-RateLimit-Limit" not in client.get("/health")
    assert "X-RateLimit-Limit" not in client.get("/api/v2x")  # not under the prefix


@pytest.mark.django_db
def test_another_ip_is_not_affected(limiter: RateLimiter) -> None:
    client = Client()
    assert statuses(client, 11) == [200] * 10 + [429]
    assert statuses(client, 10, REMOTE_ADDR="203.0.113.7") == [200] * 10
    assert client.get(HEALTH).status_code == 429


@pytest.mark.django_db
def test_a_pro_users_api_key_gets_pros_rate_not_its_ip(limiter: RateLimiter) -> None:
    raw = pro_key()
    client = Client()
    assert statuses(client, 11) == [200] * 10 + [429]  # the IP is spent
    answers = [client.get(HEALTH, HTTP_X_API_KEY=raw) for _ in range(101)]
    assert [a.status_code for a in answers] == [200] * 100 + [429]
    assert answers[0]["X-RateLimit-Limit"] == "100" and answers[0]["X-RateLimit-Remaining"] == "99"


@pytest.mark.django_db
def test_an_unknown_key_is_refused_with_401_and_counts_against_its_ip(limiter: RateLimiter) -> None:
    client = Client()
    answers = [client.get(HEALTH, HTTP_X_API_KEY="gpb_made_up") for _ in range(11)]
    assert [a.status_code for a in answers] == [401] * 10 + [429]
    assert answers[0].json()["errors"] == [{"field": "X-API-Key", "reason": "unknown or revoked API key; create one on your account's API keys page"}]
    assert answers[0]["WWW-Authenticate"] == 'Bearer realm="api"' and answers[0]["X-RateLimit-Remaining"] == "9"
    assert client.get(HEALTH).status_code == 429


@pytest.mark.django_db
def test_sandbox_multiplies_the_rate_and_the_switch_turns_it_off(limiter: RateLimiter, settings: Any) -> None:
    settings.RATE_LIMIT_MULTIPLIER = 3
    client = Client()
    assert statuses(client, 31) == [200] * 30 + [429]
    settings.RATE_LIMIT_ENABLED = False
    answer = client.get(HEALTH)
    assert answer.status_code == 200 and "X-RateLimit-Limit" not in answer


@pytest.mark.django_db
def test_the_window_slides(limiter: RateLimiter, clock: Clock) -> None:
    client = Client()
    assert statuses(client, 11) == [200] * 10 + [429]
    clock.now = START + 1.5  # the last window still weighs half: 5 of 10 are left, not a fresh 10
    assert statuses(client, 6) == [200] * 5 + [429]
    clock.now = START + 2.25  # the 5 of the last window weigh 3.75: 6 more fit
    assert statuses(client, 7) == [200] * 6 + [429]


@pytest.mark.django_db
def test_retry_after_is_when_a_request_fits_again(limiter: RateLimiter, clock: Clock) -> None:
    client = Client()
    statuses(client, 10)
    clock.now = START + 0.5
    assert client.get(HEALTH)["Retry-After"] == "1"  # 0.6 s, rounded up to whole seconds
    clock.now = START + 1.05
    assert client.get(HEALTH).status_code == 429
    clock.now = START + 1.11  # the 10 now weigh 8.9
    assert client.get(HEALTH).status_code == 200


@pytest.mark.django_db
def test_refused_requests_are_not_counted(limiter: RateLimiter, clock: Clock) -> None:
    client = Client()
    assert statuses(client, 50) == [200] * 10 + [429] * 40  # a client hammering past its rate...
    clock.now = START + 2.0
    assert statuses(client, 10) == [200] * 10  # ...is limited to its rate, not locked out


@pytest.mark.django_db
def test_redis_down_falls_back_to_limiting_in_process_without_errors(limiter: RateLimiter, clock: Clock) -> None:
    fallback = RateLimiter(dead_redis(), clock=clock)
    reset_shared_limiter(fallback)
    client = Client()
    assert statuses(client, 11) == [200] * 10 + [429]
    assert statuses(client, 5, REMOTE_ADDR="203.0.113.7") == [200] * 5
    assert fallback.redis_errors == 1  # then Redis is left alone for a few seconds, not retried per request


def test_redis_unset_limits_in_process(clock: Clock) -> None:
    local = RateLimiter(None, clock=clock)
    assert [local.hit("ip:a", 3).allowed for _ in range(4)] == [True, True, True, False]
    assert local.hit("ip:a", 3).retry_after == 1 and local.hit("ip:b", 3).allowed


def test_instances_sharing_redis_share_the_count(test_redis: redis.Redis, prefix: str) -> None:
    # Another process (another instance) spends 6 of the 10 in this second.
    other = (
        "import redis, sys; from web.ratelimit import RateLimiter; "
        f"lim = RateLimiter({TEST_REDIS_URL!r}, prefix={prefix!r}, clock=lambda: {START + 0.1}); "
        "sys.exit(0 if all(lim.hit('ip:shared', 10).allowed for _ in range(6)) else 1)"
    )
    subprocess.run([sys.executable, "-c", other], check=True)
    here = RateLimiter(TEST_REDIS_URL, prefix=prefix, clock=Clock(START + 0.2), timeout=5)
    assert [here.hit("ip:shared", 10).allowed for _ in range(5)] == [True] * 4 + [False]


@pytest.mark.django_db
def test_identities_come_from_memory_and_a_plan_change_reaches_them_at_once(limiter: RateLimiter) -> None:
    raw = pro_key()
    identities = identity.identities()
    client = Client()
    assert client.get(HEALTH, HTTP_X_API_KEY=raw)["X-RateLimit-Limit"] == "100"
    with CaptureQueriesContext(connection) as queries:
        assert client.get(HEALTH, HTTP_X_API_KEY=raw)["X-RateLimit-Limit"] == "100"
        assert client.get(HEALTH, HTTP_X_API_KEY="gpb_made_up").status_code == 401
        assert client.get(HEALTH, HTTP_X_API_KEY="gpb_made_up").status_code == 401
    # The known key from memory; the made-up one looked up once, then remembered as refused.
    assert identities.lookups == 2 and len([q for q in queries if "billing_apikey" in q["sql"]]) == 1
    subscription = Subscription.objects.get(stripe_id="sub_pro")
    subscription.status = SubscriptionStatus.CANCELED
    subscription.save()
    assert client.get(HEALTH, HTTP_X_API_KEY=raw)["X-RateLimit-Limit"] == "10"  # no TTL waited for


# ----- ASGI: the fast path and Django's async middleware -----


@pytest.fixture
async def asgi(catalog: None, limiter: RateLimiter) -> AsyncIterator[tuple[list[str], Any]]:
    reset_shared_cache(TieredCache(None))
    django_app = get_asgi_application()
    reached: list[str] = []

    async def counting(scope, receive, send):  # type: ignore[no-untyped-def]
        reached.append(scope["path"])
        await django_app(scope, receive, send)

    def client(ip: str = "198.51.100.1") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=FastPath(counting), client=(ip, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://localhost")

    yield reached, client
    reset_shared_cache(None)


URL = "/api/v2/providers?limit=2"


@pytest.mark.django_db(transaction=True)
async def test_the_fast_path_is_limited_per_client_and_counts_once(asgi: tuple[list[str], Any]) -> None:
    reached, client = asgi
    async with client() as http:
        answers = [await http.get(URL) for _ in range(10)]
        assert [a.status_code for a in answers] == [200] * 10
        assert reached == ["/api/v2/providers"]  # answered from memory after the first
        # Counted once per request, whether Django answered it or the fast path did.
        assert [a.headers["x-ratelimit-remaining"] for a in answers] == [str(n) for n in range(9, -1, -1)]
        refused = await http.get(URL)
    assert refused.status_code == 429 and reached == ["/api/v2/providers"]
    assert refused.json()["errors"] == [{"field": "rate", "reason": "over 10 requests per second; retry in 2 s"}]
    assert refused.headers["retry-after"] == "2" and refused.headers["x-ratelimit-limit"] == "10"
    async with client("198.51.100.2") as other:
        fresh = await other.get(URL)
    assert fresh.status_code == 200 and fresh.headers["x-ratelimit-remaining"] == "9"


@pytest.mark.django_db(transaction=True)
async def test_an_api_key_is_answered_from_memory_at_its_plan(asgi: tuple[list[str], Any]) -> None:
    from asgiref.sync import sync_to_async

    reached, client = asgi
    raw = await sync_to_async(pro_key)()
    async with client() as http:
        answers = [await http.get(HEALTH, headers={"X-API-Key": raw}) for _ in range(101)]
    assert [a.status_code for a in answers] == [200] * 100 + [429]
    assert answers[0].headers["x-ratelimit-limit"] == "100" and answers[99].headers["x-ratelimit-remaining"] == "0"
    assert reached == [HEALTH]  # Django answered the first; the fast path every other, at Pro's rate


async def test_a_burst_on_the_event_loop_is_counted_in_one_batch_exactly(test_redis: redis.Redis, prefix: str, clock: Clock) -> None:
    limiter = RateLimiter(TEST_REDIS_URL, prefix=prefix, clock=clock, timeout=5)
    decisions = await asyncio.gather(*(limiter.ahit("ip:10.0.0.9", 10) for _ in range(30)))
    assert [d.allowed for d in decisions] == [True] * 10 + [False] * 20  # arrival order, as one by one
    assert [d.remaining for d in decisions[:10]] == list(range(9, -1, -1))
    # The refused twenty gave their counts back: Redis holds exactly the ten that went through.
    assert int(test_redis.get(f"{prefix}ip:10.0.0.9:{int(clock() // 1)}")) == 10
    # Another client in the same burst has its own count.
    other = await asyncio.gather(limiter.ahit("ip:10.0.0.9", 10), limiter.ahit("ip:10.0.0.10", 10))
    assert [d.allowed for d in other] == [False, True]


async def test_the_event_loop_path_falls_back_in_process_when_redis_is_down(clock: Clock) -> None:
    limiter = RateLimiter(dead_redis(), clock=clock)
    decisions = await asyncio.gather(*(limiter.ahit("ip:10.0.0.11", 3) for _ in range(5)))
    assert [d.allowed for d in decisions] == [True, True, True, False, False]
    assert limiter.redis_errors == 1


# ----- hardening (issue 15: items 5, 6, 13) -----


@pytest.mark.django_db
def test_a_plan_of_zero_requests_per_second_is_refused_by_validation_and_by_the_database() -> None:
    from django.core.exceptions import ValidationError
    from django.db import IntegrityError, transaction

    plan = Plan(slug="nothing", name="Nothing", requests_per_second=0)
    with pytest.raises(ValidationError) as invalid:
        plan.full_clean()
    assert "requests_per_second" in invalid.value.message_dict
    with pytest.raises(IntegrityError), transaction.atomic():
        plan.save()


async def test_a_zero_limit_is_refused_without_ever_hanging_the_event_loop(test_redis: redis.Redis, prefix: str, clock: Clock) -> None:
    limiter = RateLimiter(TEST_REDIS_URL, prefix=prefix, clock=clock, timeout=5)
    zero, normal = await asyncio.wait_for(asyncio.gather(limiter.ahit("u:1", 0), limiter.ahit("u:2", 5)), timeout=10)
    assert (zero.allowed, zero.retry_after, normal.allowed) == (False, 1, True)
    assert not limiter.hit("u:1", 0).allowed and limiter.redis_errors == 0


async def test_a_failing_decision_still_answers_every_waiting_request_and_the_next_ones(test_redis: redis.Redis, prefix: str, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    limiter = RateLimiter(TEST_REDIS_URL, prefix=prefix, clock=clock, timeout=5)
    calls = {"n": 0}
    real = corecalc_window_decide()

    def broken_once(*args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a bug in the decision")
        return real(*args)

    monkeypatch.setattr("web.ratelimit.corecalc.window_decide", broken_once)
    # Bounded waits: before the fix these futures were never resolved and the loop hung forever.
    first = await asyncio.wait_for(asyncio.gather(*(limiter.ahit("ip:a", 5) for _ in range(3))), timeout=10)
    assert [d.allowed for d in first] == [True, True, True]
    later = await asyncio.wait_for(limiter.ahit("ip:b", 5), timeout=10)
    assert later.allowed and later.limit == 5


def corecalc_window_decide() -> Any:
    import corecalc

    return corecalc.window_decide


def test_a_refund_after_its_counter_expired_leaves_no_counter_behind(test_redis: redis.Redis, prefix: str, clock: Clock) -> None:
    limiter = RateLimiter(TEST_REDIS_URL, prefix=prefix, clock=clock, timeout=5)
    assert [limiter.hit("ip:r", 1).allowed for _ in range(2)] == [True, False]
    current = f"{prefix}ip:r:{int(START)}"
    assert int(test_redis.get(current)) == 1  # the refused one was given back
    test_redis.delete(current)  # the counter expires between the count and the refund
    limiter._give_back(keys=[current], args=[1])
    assert test_redis.exists(current) == 0  # before the fix: -1, and no TTL


async def test_a_stray_negative_counter_neither_raises_nor_passes_for_redis_down(test_redis: redis.Redis, prefix: str, clock: Clock) -> None:
    limiter = RateLimiter(TEST_REDIS_URL, prefix=prefix, clock=clock, timeout=5)
    test_redis.set(f"{prefix}ip:n:{int(START) - 1}", -1)  # what an old refund could leave
    assert limiter.hit("ip:n", 3).allowed
    assert (await limiter.ahit("ip:n", 3)).allowed
    assert limiter.redis_errors == 0


@pytest.fixture
def unix_redis(tmp_path: Any) -> Iterator[str]:
    """A private Redis listening only on a unix socket."""
    import shutil
    import time

    assert shutil.which("redis-server"), "redis-server is needed"
    path = tmp_path / "redis.sock"
    server = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", str(path), "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    client = redis.Redis(unix_socket_path=str(path))
    for _ in range(200):
        try:
            client.ping()
            break
        except (redis.RedisError, OSError):
            time.sleep(0.02)
    yield f"unix://{path}?db=2"
    server.terminate()
    server.wait(timeout=10)


async def test_a_unix_socket_redis_url_is_used_by_the_event_loop_client_too(unix_redis: str, clock: Clock) -> None:
    limiter = RateLimiter(unix_redis, prefix="rl:", clock=clock)
    decisions = await asyncio.gather(*(limiter.ahit("ip:u", 2) for _ in range(3)))
    assert [d.allowed for d in decisions] == [True, True, False] and limiter.redis_errors == 0
    # Counted in that server (db 2), not in process: another instance sees the count.
    assert int(redis.Redis.from_url(unix_redis).get(f"rl:ip:u:{int(START)}")) == 2


async def test_a_rediss_url_gives_the_event_loop_client_tls(clock: Clock) -> None:
    from redis.asyncio.connection import SSLConnection

    limiter = RateLimiter("rediss://:secret@redis.example.com:6380/0", clock=clock)
    batch = limiter._loop_batch()
    pool = batch.client.connection_pool
    assert pool.connection_class is SSLConnection
    assert pool.connection_kwargs["host"] == "redis.example.com" and pool.connection_kwargs["password"] == "secret"
