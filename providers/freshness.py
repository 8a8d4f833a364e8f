"""The price generation: a number that grows whenever a price is stored.

Every change of price or availability writes one `PriceSample` row (providers.ingest), so the
newest sample's id is a generation counter shared by every process and instance through the
database, on SQLite as on PostgreSQL, with no extra write on the ingest path. Reading it is one
primary-key index lookup; the cache (providers.cache) polls it at most once a second, in a
background thread, and rebuilds what was built under an older generation.
"""

from __future__ import annotations

from django.db import connection

from providers.models import PriceSample


def newest_price_id() -> int:
    try:
        return PriceSample.objects.order_by("-id").values_list("id", flat=True).first() or 0
    finally:
        connection.close()  # a background thread: give the connection back to the pool at once
