from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.core.cache import cache
from django.core.management import call_command


@pytest.fixture(autouse=True)
def _clean_cache() -> Iterator[None]:
    """Each test starts with an empty cache (the test Redis database is ours alone), the process's
    L2 included: its pages would otherwise outlive the test database they were built from."""
    from providers.cache import shared_cache

    cache.clear()
    shared_cache().clear_local()
    yield
    cache.clear()
    shared_cache().clear_local()


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


pytest_plugins = ["tests.accounts_and_billing"]
