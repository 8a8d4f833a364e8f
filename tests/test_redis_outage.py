"""Redis stopped in the middle of traffic: pages, the API and signing in keep answering, limits keep
holding in each instance, and everything goes back to Redis when it returns."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from django.core.asgi import get_asgi_application
from django.core.cache import caches
from django.test import Client
from redis.backoff import NoBackoff
from redis.retry import Retry

from providers.cache import TieredCache, fail_fast_redis, reset_shared_cache
from tests.accounts_and_billing import PASSWORD, make_user
from tests.test_identity import seed_plans
from web import fallback_cache, identity
from web.fastpath import FastPath
from web.identity import Identities, InvalidationBus
from web.ratelimit import RateLimiter, reset_shared_limiter

HEALTH = "/api/v2/providers/health"
LIST = "/api/v2/providers?limit=2"


class PrivateRedis:
    """A redis-server of the test's own on a free port, which it may stop and start again."""

    def __init__(self) -> None:
        assert shutil.which("redis-server"), "redis-server is needed"
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.client = redis.Redis(port=self.port, socket_connect_timeout=0.25, socket_timeout=0.25, retry=Retry(NoBackoff(), 0))

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "yes"]
        subprocess.run(args, check=True, capture_output=True)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                return
            except redis.RedisError:
                assert time.monotonic() < deadline, "the private redis-server did not start"
                time.sleep(0.02)

    def stop(self) -> None:
        try:
            self.client.shutdown(nosave=True)
        except redis.RedisError:
            pass  # already stopped


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def on_private_redis(private_redis: PrivateRedis, settings: Any, catalog: None) -> Iterator[tuple[PrivateRedis, Clock, Clock]]:
    """Every Redis user of the app (cache, limiter, response cache, identity bus) on the private server."""
    settings.CACHES = {
        "default": {
            "BACKEND": "web.fallback_cache.FallbackRedisCache",
            "LOCATION": private_redis.url,
            "KEY_PREFIX": "gpubroker",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 5, "SOCKET_TIMEOUT": 5},
        }
    }
    settings.RATE_LIMIT_ENABLED = True
    settings.RATE_LIMIT_MULTIPLIER = 1
    wall, cache_clock = Clock(1_000_000.0), Clock(time.monotonic())
    caches["default"].clock = cache_clock
    reset_shared_limiter(RateLimiter(private_redis.url, clock=wall, timeout=5))  # slow is not down; stopped is refused at once
    reset_shared_cache(TieredCache(fail_fast_redis(private_redis.url)))
    identities = Identities()
    bus = InvalidationBus(identities, private_redis.url).start()
    identity.reset_shared(identities, bus)
    assert bus.subscribed.wait(10)
    yield private_redis, wall, cache_clock
    identity.reset_shared(None)
    reset_shared_limiter(None)
    reset_shared_cache(None)


def sign_in(client: Client, email: str, password: str) -> int:
    return client.post("/accounts/login/", {"login": email, "password": password}).status_code


def refused_sign_in(client: Client, email: str, password: str) -> tuple[int, bool]:
    """(status, whether allauth said there were too many failed attempts)."""
    answer = client.post("/accounts/login/", {"login": email, "password": password})
    return answer.status_code, b"Too many failed login attempts" in answer.content


def api_burst(n: int, ip: str) -> list[int]:
    """n cached reads through the ASGI fast path, as the server answers them."""

    async def run() -> list[int]:
        transport = httpx.ASGITransport(app=FastPath(get_asgi_application()), client=(ip, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            return [(await http.get(LIST)).status_code for _ in range(n)]

    return asyncio.run(run())


@pytest.mark.django_db(transaction=True)
def test_redis_stopped_during_a_burst_of_pages_api_and_sign_ins_gives_no_5xx_limits_per_instance_and_recovers(on_private_redis: Any) -> None:
    server, wall, cache_clock = on_private_redis
    seed_plans()  # a transactional test before this one may have emptied the seeded tables
    make_user("ada@example.com")
    browser = Client(REMOTE_ADDR="198.51.100.10")
    before = [browser.get("/accounts/login/").status_code, sign_in(Client(), "ada@example.com", PASSWORD), browser.get(HEALTH).status_code]
    before += api_burst(3, "198.51.100.11")
    assert set(before) <= {200, 302}
    assert server.client.keys("gpubroker:rl:*")  # the counts were in Redis

    server.stop()
    statuses: list[int] = []
    # Pages and sign-in pages: allauth's counters live in the cache, which now stands in locally.
    statuses += [browser.get(path).status_code for path in ("/", "/accounts/login/", "/accounts/signup/", "/accounts/password/reset/")]
    good = Client(REMOTE_ADDR="198.51.100.12")
    statuses.append(sign_in(good, "ada@example.com", PASSWORD))
    assert statuses[-1] == 302 and good.get("/dashboard/").status_code == 200  # signed in without Redis
    signups = [Client(REMOTE_ADDR="198.51.100.13").post("/accounts/signup/", {"email": f"new{n}@example.com", "password1": PASSWORD, "password2": PASSWORD}).status_code for n in range(2)]
    resets = [Client(REMOTE_ADDR="198.51.100.14").post("/accounts/password/reset/", {"email": "ada@example.com"}).status_code for _ in range(2)]
    # Wrong passwords: allauth allows 5 per address and account per 5 minutes, here in process.
    attacker = Client(REMOTE_ADDR="198.51.100.15")
    attempts = [refused_sign_in(attacker, "ada@example.com", "wrong password!") for _ in range(7)]
    failures = [status for status, _ in attempts]
    api_sync = [browser.get(HEALTH).status_code for _ in range(11)]
    api_fast = api_burst(11, "198.51.100.16")
    statuses += signups + resets + failures + api_sync + api_fast
    assert not [s for s in statuses if s >= 500]
    assert signups == [302, 302] and resets == [302, 302]
    assert failures == [200] * 7
    assert [limited for _, limited in attempts] == [False] * 5 + [True] * 2  # the limit held without Redis
    # The API limits still hold, in this instance: 1 of browser's 10 was spent before Redis stopped,
    # and was counted there, so this instance counts its own 10 now.
    assert api_sync == [200] * 10 + [429] and api_fast == [200] * 10 + [429]

    server.start()
    wall.now += 6  # past the limiter's and the cache's retry pause
    cache_clock.now += 6
    assert identity.shared()[1].subscribed.wait(10), "the identity bus did not resubscribe"
    after = [browser.get("/accounts/login/").status_code, sign_in(Client(REMOTE_ADDR="198.51.100.17"), "ada@example.com", PASSWORD)]
    after += [browser.get(HEALTH).status_code] + api_burst(2, "198.51.100.18")
    assert after == [200, 302, 200, 200, 200]
    # Back in Redis: the limiter's counters, and allauth's counters through the cache.
    assert server.client.keys("gpubroker:rl:ip:198.51.100.18:*")
    assert server.client.keys("gpubroker:*allauth:rl:*:login:*198.51.100.17")
    assert caches["default"].redis_errors >= 1


def test_without_the_fallback_a_down_redis_cache_raises(private_redis: PrivateRedis) -> None:
    """What sign-in met before: django-redis itself raises, which Django turns into a 500."""
    from django_redis.cache import RedisCache

    plain = RedisCache(private_redis.url, {"OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.25, "SOCKET_TIMEOUT": 0.25}})
    fallback = fallback_cache.FallbackRedisCache(private_redis.url, {"OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.25, "SOCKET_TIMEOUT": 0.25}})
    private_redis.stop()
    with pytest.raises(redis.ConnectionError):  # django-redis re-raises the cause of ConnectionInterrupted
        plain.get("k")
    assert fallback.add("k", 1, 60) is True and fallback.get("k") == 1 and fallback.add("k", 2, 60) is False
    assert fallback.redis_errors == 1  # then Redis is left alone for a few seconds
