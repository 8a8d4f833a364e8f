from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aredis
from asgiref.sync import sync_to_async
from django.db import connections
from django.core.cache import cache
from django.core.management import call_command

from providers import events
from tests.environment import TEST_REDIS_URL


@pytest.fixture(autouse=True)
def _clean_cache() -> Iterator[None]:
    """Each test starts with an empty cache (the test Redis database is ours alone), pages included."""
    from providers.cache import shared_cache
    from web import pagecache

    cache.clear()
    pagecache.reset_page_cache(None)
    pagecache.forget_catalog_memo()
    shared_cache().clear_local()
    yield
    cache.clear()
    shared_cache().clear_local()


@pytest.fixture(autouse=True)
def _plans_survive_flushes(request: pytest.FixtureRequest) -> None:
    """A transactional test's flush empties every table, the plans billing's migration seeds
    included; the next transactional test would find no Free plan. Seed them again for each."""
    marker = request.node.get_closest_marker("django_db")
    if "transactional_db" in request.fixturenames or (marker is not None and marker.kwargs.get("transaction")):
        request.getfixturevalue("_django_db_helper")
        from tests.accounts_and_billing import seed_plans

        seed_plans()


@pytest.fixture
def catalog(db: None) -> None:
    """The sandbox catalog, loaded from the real snapshot."""
    call_command("load_catalog", verbosity=0, stdout=open("/dev/null", "w"))


@pytest.fixture(autouse=True)
async def _close_async_connections() -> AsyncIterator[None]:
    """Async tests reach the ORM from asgiref's worker thread; close its connection afterwards so
    the test database can be dropped at the end of the run."""
    yield
    await sync_to_async(connections.close_all)()


@pytest.fixture(params=["redis", "memory"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[events.StreamBackend]:
    """Event streams in Redis, then in memory (the embedded default): both keep one contract."""
    if request.param == "memory":
        yield events.MemoryStreams()
        return
    client = aredis.Redis.from_url(TEST_REDIS_URL)
    await client.delete(events.DEAD_LETTER)
    yield events.RedisStreams(client)
    await client.aclose()


pytest_plugins = ["tests.accounts_and_billing", "tests.secret_scan", "tests.pods_world"]
