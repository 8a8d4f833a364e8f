"""The transactional outbox: events are written with the change they announce, then relayed.

Writing an event is part of the same database transaction as the change, so the two commit or
roll back together; a process killed after the commit loses nothing. Any app publishes its own
events this way, inside its own transaction:

    from providers import outbox

    with transaction.atomic():
        rental.save()
        outbox.enqueue("gpubroker.rental-events", {"rental": rental.pk, "kind": "started"})

The worker's `Relay` publishes unsent rows to their stream (Redis, or the in-process streams of
the embedded default) and stamps them sent. A relay first claims a batch for `CLAIM_SECONDS`
in a short transaction (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so several workers share the
work without waiting on each other), commits, and only then publishes: no outside call runs
while a database lock is held. A relay that dies after publishing but before stamping leaves
its claim to expire and the rows to be published again, so delivery to the streams is at least
once; every event carries a stable `event_id` and consumers wrapped by `once()` drop a copy
they have already taken, which makes it exactly once in effect.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from providers import events
from providers.models import OutboxEvent

logger = logging.getLogger("gpubroker.outbox")

CLAIM_SECONDS = 30.0  # a claimed row is taken over by another relay after this
BATCH = 200
SENT_RETENTION = timedelta(days=1)  # sent rows are kept this long (to look into), then pruned
SEEN_SECONDS = 86400  # how long a consumer remembers an event id; far beyond any redelivery


def enqueue(stream: str, payload: dict[str, Any], *, event_id: uuid.UUID | str | None = None) -> str:
    """Writes one event to the outbox in the caller's transaction; returns its event id.

    Call it inside `transaction.atomic()` with the change it announces. A fixed `event_id` makes
    enqueueing idempotent: a second call with the same id is ignored.
    """
    return enqueue_many([(stream, payload, event_id)])[0]


def enqueue_many(items: Iterable[tuple[str, dict[str, Any], uuid.UUID | str | None]]) -> list[str]:
    """Like `enqueue` for several events at once (one INSERT); ids already in the outbox are skipped."""
    rows = [
        OutboxEvent(event_id=uuid.UUID(str(event_id)) if event_id else uuid.uuid4(), stream=stream, payload=payload)
        for stream, payload, event_id in items
    ]
    OutboxEvent.objects.bulk_create(rows, batch_size=500, ignore_conflicts=True)
    return [str(row.event_id) for row in rows]


def derived_id(*parts: object) -> uuid.UUID:
    """A stable event id for an event derived from another (the same input gives the same id)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, "gpubroker:" + ":".join(str(p) for p in parts))


def event_key(event: events.Event) -> str:
    """The event's stable id (the outbox's), or its stream entry id for one published directly."""
    return str(event.payload.get("event_id") or event.id)


def claim(owner: str, *, now: datetime | None = None, batch: int = BATCH, claim_seconds: float = CLAIM_SECONDS) -> list[OutboxEvent]:
    """Takes up to `batch` unsent rows no live relay holds, oldest first, for `claim_seconds`."""
    now = now or timezone.now()
    with transaction.atomic():
        rows = OutboxEvent.objects.filter(sent_at__isnull=True).exclude(claimed_until__gt=now).order_by("id")
        if connection.features.has_select_for_update_skip_locked:
            # Rows another relay is claiming right now are skipped, not waited for.
            rows = rows.select_for_update(skip_locked=True)
        taken = list(rows[:batch])
        if taken:
            until = now + timedelta(seconds=claim_seconds)
            OutboxEvent.objects.filter(pk__in=[r.pk for r in taken]).update(claimed_by=owner, claimed_until=until)
    return taken


def mark_sent(ids: list[int], *, now: datetime | None = None) -> None:
    OutboxEvent.objects.filter(pk__in=ids).update(sent_at=now or timezone.now())


def prune_sent(*, now: datetime | None = None, retention: timedelta = SENT_RETENTION) -> int:
    deleted, _ = OutboxEvent.objects.filter(sent_at__lt=(now or timezone.now()) - retention).delete()
    return deleted


def unsent() -> int:
    return OutboxEvent.objects.filter(sent_at__isnull=True).count()


def stream_payload(row: OutboxEvent) -> dict[str, Any]:
    return {**row.payload, "event_id": str(row.event_id)}


class Relay:
    """Publishes the outbox to a stream backend; `relay_once` does one batch, `run` loops."""

    def __init__(self, streams: events.StreamBackend, owner: str, *, batch: int = BATCH, claim_seconds: float = CLAIM_SECONDS,
                 clock: Callable[[], datetime] = timezone.now) -> None:
        from channels.db import database_sync_to_async

        self.streams, self.owner, self.batch, self.claim_seconds, self.clock = streams, owner, batch, claim_seconds, clock
        self._claim = database_sync_to_async(claim)
        self._mark_sent = database_sync_to_async(mark_sent)
        self.wake = asyncio.Event()
        self.published = 0

    async def relay_once(self) -> int:
        """Publishes one claimed batch and stamps it sent; returns how many were published."""
        rows = await self._claim(self.owner, now=self.clock(), batch=self.batch, claim_seconds=self.claim_seconds)
        sent: list[int] = []
        try:
            for row in rows:
                await self.publish(row)
                sent.append(row.pk)
        finally:
            # What went out is stamped even if a later publish failed; the rest waits for its claim to end.
            if sent:
                await self._mark_sent(sent, now=self.clock())
        self.published += len(sent)
        return len(sent)

    async def publish(self, row: OutboxEvent) -> str:
        """Hands one row to its stream (a seam for fault tests: a crash here is between commit and publish)."""
        return await events.publish(self.streams, row.stream, stream_payload(row))

    async def drain(self) -> int:
        """Relays batches until none is left that this relay may take."""
        total = 0
        while (count := await self.relay_once()):
            total += count
        return total

    async def run(self, stop: asyncio.Event, poll_seconds: float) -> None:
        """Drains when woken (after a local commit) or every `poll_seconds` (other processes' events)."""
        while not stop.is_set():
            self.wake.clear()
            try:
                await self.drain()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("outbox relay %s failed; retrying", self.owner)
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.wake.wait())]
            try:
                await asyncio.wait(waiters, timeout=poll_seconds, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()


# ----- consumers: each event once per group -----

class MemorySeen:
    """Event ids a consumer group has taken, inside one process (the embedded default)."""

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._owner: OrderedDict[str, str] = OrderedDict()

    async def take(self, group: str, event_id: str, entry_id: str) -> bool:
        key = f"{group}:{event_id}"
        owner = self._owner.setdefault(key, entry_id)
        self._owner.move_to_end(key)
        while len(self._owner) > self.limit:
            self._owner.popitem(last=False)
        return owner == entry_id


class RedisSeen:
    """Event ids a consumer group has taken, shared by every worker through Redis."""

    def __init__(self, client: Any, prefix: str = "gpubroker:seen:", seconds: int = SEEN_SECONDS) -> None:
        self.client, self.prefix, self.seconds = client, prefix, seconds

    async def take(self, group: str, event_id: str, entry_id: str) -> bool:
        key = f"{self.prefix}{group}:{event_id}"
        if await self.client.set(key, entry_id, nx=True, ex=self.seconds):
            return True
        owner = await self.client.get(key)
        return owner is not None and owner.decode() == entry_id


Seen = MemorySeen | RedisSeen


def once(seen: Seen, group: str, handler: Callable[[events.Event], Awaitable[None]]) -> Callable[[events.Event], Awaitable[None]]:
    """Wraps a consumer's handler so a group handles each event id once.

    The first stream entry to carry an event id owns it: a retry of that entry (after a failed
    or interrupted handler) runs again, as at-least-once requires; another entry with the same id
    (the relay published it twice) is acknowledged without running.
    """

    async def handle(event: events.Event) -> None:
        if "event_id" in event.payload and not await seen.take(group, str(event.payload["event_id"]), event.id):
            logger.info("event %s on %s is a copy of one %s already took; dropped", event.payload["event_id"], event.stream, group)
            return
        await handler(event)

    return handle
