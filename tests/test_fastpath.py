"""The ASGI fast path answers repeated anonymous cached reads exactly as Django would, without it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from django.core.asgi import get_asgi_application

from providers.cache import TieredCache, reset_shared_cache
from web.fastpath import FastPath

pytestmark = pytest.mark.django_db(transaction=True)
URL = "/api/v2/providers?gpu_type=A100%2080GB&limit=5"


class Clock:
    now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def http(catalog: None) -> AsyncIterator[tuple[httpx.AsyncClient, list[str], Clock]]:
    clock = Clock()
    reset_shared_cache(TieredCache(None, clock=clock))
    django_app = get_asgi_application()
    reached: list[str] = []

    async def counting(scope, receive, send):  # type: ignore[no-untyped-def]
        reached.append(scope["path"])
        await django_app(scope, receive, send)

    transport = httpx.ASGITransport(app=FastPath(counting))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        yield client, reached, clock
    reset_shared_cache(None)


def comparable(response: httpx.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
    # The rate-limit count left differs by design between two requests of one client.
    return response.status_code, response.content, sorted(i for i in response.headers.multi_items() if i[0] != "x-ratelimit-remaining")


async def test_a_repeated_anonymous_read_skips_django_with_the_same_answer(http) -> None:  # type: ignore[no-untyped-def]
    client, reached, _ = http
    first = await client.get(URL)
    assert first.status_code == 200 and reached == ["/api/v2/providers"]
    second = await client.get(URL)
    assert reached == ["/api/v2/providers"]  # Django not entered again
    assert comparable(second) == comparable(first)
    assert second.headers["x-content-type-options"] == "nosniff" and second.headers["x-frame-options"] == "DENY"


async def test_a_repeated_anonymous_ranking_skips_django_with_the_same_answer(http) -> None:  # type: ignore[no-untyped-def]
    client, reached, _ = http
    ranking = "/api/v2/providers/ranking?gpu_type=H100%2080GB&weights=price:0.6,performance:0.4&top=5"
    first = await client.get(ranking)
    assert first.status_code == 200 and first.json()["items"]
    second = await client.get(ranking)
    assert reached == ["/api/v2/providers/ranking"]
    assert comparable(second) == comparable(first)


async def test_requests_only_django_can_judge_always_go_to_django(http) -> None:  # type: ignore[no-untyped-def]
    client, reached, _ = http
    await client.get(URL)
    await client.get(URL, headers={"Authorization": "Basic dXNlcjpwYXNz"})  # not a scheme read here
    await client.get(URL, headers={"Proxy-Authorization": "Basic dXNlcjpwYXNz"})
    foreign = await client.get(URL, headers={"Host": "evil.example"})
    assert foreign.status_code == 400
    await client.get(URL.replace("limit=5", "limit=6"))  # a URL not seen yet
    assert len(reached) == 5


async def test_two_host_headers_get_djangos_400_not_an_answer_from_memory(http) -> None:  # type: ignore[no-untyped-def]
    client, reached, _ = http
    await client.get(URL)
    twice = await client.get(URL, headers=[("Host", "evil.example"), ("Host", "localhost")])
    assert twice.status_code == 400 and len(reached) == 2


async def test_an_expired_entry_goes_back_through_django(http) -> None:  # type: ignore[no-untyped-def]
    client, reached, clock = http
    await client.get(URL)
    await client.get(URL)
    clock.now += 61
    await client.get(URL)
    assert len(reached) == 2


async def test_invalid_requests_are_never_answered_from_memory(http) -> None:  # type: ignore[no-untyped-def]
    client, reached, _ = http
    for _ in range(2):
        assert (await client.get("/api/v2/providers?limit=0")).status_code == 422
    assert len(reached) == 2
