"""The catalog generation: a number that changes whenever a price is stored or a provider goes
down or comes back (which turns the "prices are stale" notice on or off).

Every change of price or availability writes one `PriceSample` row (providers.ingest), so the
newest sample's id tells price changes apart, shared by every process and instance through the
database, on SQLite as on PostgreSQL, with no extra write on the ingest path; the number of
providers down is folded in. Reading it is a primary-key index lookup and a count over the
providers table; the cache (providers.cache) polls it at most once a second, in a background
thread, and rebuilds what was built under another generation.
"""

from __future__ import annotations

from django.db import connection

from providers.models import HealthStatus, PriceSample, Provider

MAX_PROVIDERS = 1000  # the down count's share of the number; far above the providers there are


def catalog_generation() -> int:
    try:
        newest = PriceSample.objects.order_by("-id").values_list("id", flat=True).first() or 0
        down = Provider.objects.filter(active=True, health_status=HealthStatus.DOWN).count()
        return newest * MAX_PROVIDERS + min(down, MAX_PROVIDERS - 1)
    finally:
        if not connection.in_atomic_block:  # the caller's transaction (a test's) is not ours to end
            connection.close()  # a background thread: give the connection back to the pool at once
