"""The two-tier cache: prebuilt bytes, early refresh in the background, Redis optional."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from providers import query as query_module
from providers.cache import GENERATION_MIN_AGE, L2_MAX_ENTRIES, PRICE_TTL, STATIC_TTL, TieredCache, reset_shared_cache
from tests.environment import TEST_REDIS_URL


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Counter:
    def __init__(self, value: bytes = b"v", delay: float = 0.0) -> None:
        self.calls, self.value, self.delay = 0, value, delay
        self._lock = threading.Lock()

    def __call__(self) -> bytes:
        with self._lock:
            self.calls += 1
        time.sleep(self.delay)
        return self.value + str(self.calls).encode()


@pytest.fixture
def test_redis() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(TEST_REDIS_URL)
    for key in client.scan_iter("test:cache:*"):
        client.delete(key)
    yield client
    for key in client.scan_iter("test:cache:*"):
        client.delete(key)


@pytest.fixture
def private_redis() -> Iterator[tuple[redis.Redis, int]]:
    """A Redis server of our own on a free port, so the test can stop it."""
    assert shutil.which("redis-server"), "redis-server is needed"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    subprocess.run(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "yes"], check=True, capture_output=True)
    client = redis.Redis(port=port, socket_connect_timeout=0.25, socket_timeout=0.25, retry=Retry(NoBackoff(), 0))
    deadline = time.monotonic() + 20  # bounded, and generous: the machine may be busy
    while True:
        try:
            client.ping()
            break
        except redis.RedisError:
            assert time.monotonic() < deadline, "the private redis-server did not start"
            time.sleep(0.05)
    yield client, port
    try:
        client.shutdown(nosave=True)
    except redis.RedisError:
        pass  # already stopped by the test


def test_the_ttls_and_size_are_the_products_rules() -> None:
    assert (PRICE_TTL, STATIC_TTL, L2_MAX_ENTRIES) == (60.0, 300.0, 10_000)


def test_a_hit_returns_the_same_bytes_without_computing() -> None:
    cache, compute = TieredCache(None, clock=Clock()), Counter()
    assert cache.get("k", 60, compute) == b"v1"
    assert cache.get("k", 60, compute) == b"v1"
    assert compute.calls == 1 and cache.stats.l2_hits == 1


def test_l2_is_bounded_least_recently_used_first() -> None:
    cache = TieredCache(None, max_entries=3, clock=Clock())
    for key in "abcd":
        cache.set(key, key.encode(), 60)
    assert len(cache) == 3 and cache.peek("a") is None and cache.peek("d") is not None


def test_a_new_instance_warms_from_redis(test_redis: redis.Redis) -> None:
    clock = Clock()
    first = TieredCache(test_redis, prefix="test:cache:", clock=clock)
    first.get("offers", 60, Counter(b"warm"))
    newcomer, compute = TieredCache(test_redis, prefix="test:cache:", clock=clock), Counter(b"cold")
    assert newcomer.get("offers", 60, compute) == b"warm1"
    assert compute.calls == 0 and newcomer.stats.l1_hits == 1
    assert test_redis.pttl("test:cache:offers") > 55_000  # L1 expires with the entry


def test_two_hundred_requests_at_expiry_compute_at_most_twice(test_redis: redis.Redis) -> None:
    clock = Clock()
    cache = TieredCache(test_redis, prefix="test:cache:", clock=clock)
    compute = Counter(delay=0.05)
    cache.get("hot", 60, compute)
    clock.now += 60.5  # expired everywhere (L2 and, by its PX, L1 soon; the fake clock says so)
    test_redis.delete("test:cache:hot")
    with ThreadPoolExecutor(max_workers=200) as pool:
        answers = list(pool.map(lambda _: cache.get("hot", 60, compute), range(200)))
    assert compute.calls - 1 <= 2
    assert set(answers) <= {b"v2", b"v3"}


def test_early_refresh_runs_in_the_background_without_blocking() -> None:
    clock = Clock()
    cache = TieredCache(None, clock=clock, beta=1000.0)  # a large beta makes XFetch refresh for sure
    release = threading.Event()
    # A first build that takes a while: XFetch scales its early start by how long a build takes.
    slow = Counter(delay=0.3)
    cache.get("k", 60, slow)

    def blocked() -> bytes:
        assert release.wait(30)  # the refresh cannot finish until the test has its answer
        return slow()

    clock.now += 59.9
    assert cache.get("k", 60, blocked) == b"v1"  # the current bytes while the refresh is still blocked
    release.set()
    deadline = time.monotonic() + 30
    while cache.peek("k").value != b"v2":
        assert time.monotonic() < deadline, "the background refresh never landed"
        time.sleep(0.01)
    assert cache.stats.early_refreshes == 1 and slow.calls == 2


def test_far_from_expiry_nothing_is_refreshed() -> None:
    clock = Clock()
    cache, compute = TieredCache(None, clock=clock), Counter()
    cache.get("k", 60, compute)
    for _ in range(500):
        cache.get("k", 60, compute)
    assert compute.calls == 1 and cache.stats.early_refreshes == 0


def test_redis_stopped_mid_way_leaves_l2_serving(private_redis: tuple[redis.Redis, int]) -> None:
    client, _ = private_redis
    cache = TieredCache(client, clock=Clock())
    assert cache.get("a", 60, Counter(b"a")) == b"a1"
    client.shutdown(nosave=True)
    assert cache.get("a", 60, Counter(b"x")) == b"a1"  # L2
    assert cache.get("b", 60, Counter(b"b")) == b"b1"  # computed; storing in L1 fails quietly
    assert cache.stats.redis_errors >= 1


@pytest.mark.django_db
def test_the_api_keeps_answering_when_redis_stops(client, catalog: None, private_redis: tuple[redis.Redis, int]) -> None:
    redis_client, _ = private_redis
    reset_shared_cache(TieredCache(redis_client))
    try:
        first = client.get("/api/v2/providers", {"gpu_type": "A100 80GB", "limit": 5})
        assert first.status_code == 200 and redis_client.dbsize() >= 2  # the page and its snapshot
        redis_client.shutdown(nosave=True)
        again = client.get("/api/v2/providers", {"gpu_type": "A100 80GB", "limit": 5})
        assert again.status_code == 200 and again.content == first.content
        other = client.get("/api/v2/providers", {"gpu_type": "H100 80GB", "limit": 5})
        assert other.status_code == 200 and other.json()["items"]
        following = client.get("/api/v2/providers", {"gpu_type": "A100 80GB", "limit": 5, "cursor": first.json()["next_cursor"]})
        assert following.status_code == 200 and following.json()["items"]
    finally:
        reset_shared_cache(None)


@pytest.mark.django_db(transaction=True)
async def test_a_stampede_through_the_api_recomputes_at_most_twice(catalog: None, monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    import httpx

    from web.asgi import application

    settings.RATE_LIMIT_ENABLED = False  # 201 requests from one client: the cache is under test, not the limit

    clock = Clock()
    reset_shared_cache(TieredCache(redis.Redis.from_url(TEST_REDIS_URL), prefix="test:cache:api:", clock=clock))
    builds = []
    real = query_module.build_first_page

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        builds.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr("providers.query.build_first_page", counting)
    try:
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            url = "/api/v2/providers?gpu_type=L4%2024GB&limit=10"
            assert (await http.get(url)).status_code == 200
            clock.now += 61  # every tier expired
            before = len(builds)
            answers = await asyncio.gather(*(http.get(url) for _ in range(200)))
        assert all(a.status_code == 200 for a in answers)
        assert len(builds) - before <= 2
    finally:
        reset_shared_cache(None)


class InlineExecutor(ThreadPoolExecutor):
    """Runs background work at once, in the caller: the test sees its result without waiting."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def,override]
        fn(*args, **kwargs)


def test_an_entry_built_before_prices_changed_is_rebuilt_once_and_served_meanwhile() -> None:
    generation, monotonic, wall = [7], Clock(), Clock()
    cache = TieredCache(None, clock=wall, executor=InlineExecutor(), generation_source=lambda: generation[0], monotonic=monotonic)
    compute = Counter()
    cache.current_generation()  # the first poll
    assert cache.get("k", 60, compute) == b"v1" and cache.peek("k").generation == 7
    for _ in range(50):
        cache.get("k", 60, compute)
    assert compute.calls == 1  # same generation: a plain hit
    generation[0] = 8
    assert cache.get("k", 60, compute) == b"v1"  # polled less than a second ago: not seen yet
    monotonic.now += 1.0
    cache.get("k", 60, compute)  # the poll sees 8, but the entry is younger than GENERATION_MIN_AGE
    assert compute.calls == 1
    wall.now += GENERATION_MIN_AGE
    cache.get("k", 60, compute)  # now the outdated entry is rebuilt
    assert compute.calls == 2 and cache.peek("k").generation == 8 and cache.stats.generation_refreshes == 1
    for _ in range(50):
        cache.get("k", 60, compute)
    assert compute.calls == 2


def test_a_failing_generation_source_leaves_time_based_expiry_in_charge() -> None:
    def broken() -> int:
        raise RuntimeError("database down")

    cache = TieredCache(None, clock=Clock(), executor=InlineExecutor(), generation_source=broken)
    compute = Counter()
    assert cache.get("k", 60, compute) == b"v1"
    assert cache.get("k", 60, compute) == b"v1" and compute.calls == 1 and cache.generation == 0


def test_the_generation_travels_with_the_entry_through_redis(test_redis: redis.Redis) -> None:
    clock = Clock()
    first = TieredCache(test_redis, prefix="test:cache:", clock=clock, executor=InlineExecutor(), generation_source=lambda: 5)
    first.current_generation()
    first.get("k", 60, Counter(b"warm"))
    newcomer = TieredCache(test_redis, prefix="test:cache:", clock=clock)
    assert newcomer.get_entry("k", 60, Counter(b"cold")).generation == 5
