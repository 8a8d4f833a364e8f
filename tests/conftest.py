from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.cache import cache
from django.core.management import call_command


@pytest.fixture(autouse=True)
def _clean_cache() -> Iterator[None]:
    """Each test starts with an empty cache (the test Redis database is ours alone)."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def catalog(db: None) -> None:
    """The sandbox catalog, loaded from the real snapshot."""
    call_command("load_catalog", verbosity=0, stdout=open("/dev/null", "w"))


pytest_plugins = ["tests.accounts_and_billing"]
