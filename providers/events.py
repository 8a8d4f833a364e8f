"""Event streams with at-least-once delivery: Redis Streams, or the same semantics in memory.

Streams: `gpubroker.price-updates` (what a refresh changed), `gpubroker.provider-events` (health
and circuit changes), `gpubroker.price-alerts` (significant changes and anomalies), and
`gpubroker.dead-letter` (events that could not be processed).

A consumer reads in a consumer group and acknowledges an event only after its handler returned.
An event whose handler raised, or whose consumer died before acknowledging, stays pending and is
claimed again after a backoff that doubles with each delivery (1 s, 2 s, 4 s... up to 60 s), by
any consumer of the group, including the same one after a restart. After `max_deliveries`
attempts, or at once when it cannot even be decoded (a poison event), it moves to the dead-letter
stream with the reason, and is acknowledged so it stops blocking the group.

Handlers must be idempotent, since a crash between the work and the acknowledgement repeats it.
Without Redis (the embedded default) `MemoryStreams` keeps the same contract inside the process.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

logger = logging.getLogger("gpubroker.events")

PRICE_UPDATES = "gpubroker.price-updates"
PROVIDER_EVENTS = "gpubroker.provider-events"
PRICE_ALERTS = "gpubroker.price-alerts"
DEAD_LETTER = "gpubroker.dead-letter"
STREAM_MAXLEN = 100_000  # approximate trim: a few days of sandbox updates


@dataclass(frozen=True)
class Entry:
    id: str
    fields: dict[str, bytes]


@dataclass(frozen=True)
class PendingEntry:
    id: str
    consumer: str
    idle_ms: int
    deliveries: int


@dataclass(frozen=True)
class Event:
    id: str
    stream: str
    payload: dict[str, Any]
    deliveries: int


class StreamBackend(Protocol):
    async def add(self, stream: str, fields: dict[str, bytes]) -> str: ...
    async def ensure_group(self, stream: str, group: str) -> None: ...
    async def read_new(self, stream: str, group: str, consumer: str, count: int, block_ms: int) -> list[Entry]: ...
    async def pending(self, stream: str, group: str, count: int) -> list[PendingEntry]: ...
    async def claim(self, stream: str, group: str, consumer: str, min_idle_ms: int, ids: list[str]) -> list[Entry]: ...
    async def read(self, stream: str, entry_id: str) -> Entry | None: ...
    async def ack(self, stream: str, group: str, entry_id: str) -> None: ...
    async def lag(self, stream: str, group: str) -> int: ...


def _decode(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStreams:
    def __init__(self, client: Any) -> None:
        self.client = client  # a redis.asyncio.Redis

    @classmethod
    def from_url(cls, url: str) -> RedisStreams:
        import redis.asyncio as aredis

        return cls(aredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10))

    async def add(self, stream: str, fields: dict[str, bytes]) -> str:
        return _decode(await self.client.xadd(stream, fields, maxlen=STREAM_MAXLEN, approximate=True))

    async def ensure_group(self, stream: str, group: str) -> None:
        import redis

        try:
            # "0": a group created after events were published still gets them (bounded by MAXLEN).
            await self.client.xgroup_create(stream, group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _entries(self, raw: Any) -> list[Entry]:
        return [Entry(_decode(entry_id), {_decode(k): v for k, v in (fields or {}).items()}) for entry_id, fields in raw if fields is not None]

    async def read_new(self, stream: str, group: str, consumer: str, count: int, block_ms: int) -> list[Entry]:
        # BLOCK 0 means "forever" to Redis; a zero here means "do not wait".
        answer = await self.client.xreadgroup(group, consumer, {stream: ">"}, count=count, block=block_ms or None)
        return [entry for _, raw in answer or [] for entry in self._entries(raw)]

    async def pending(self, stream: str, group: str, count: int) -> list[PendingEntry]:
        rows = await self.client.xpending_range(stream, group, min="-", max="+", count=count)
        return [
            PendingEntry(_decode(r["message_id"]), _decode(r["consumer"]), int(r["time_since_delivered"]), int(r["times_delivered"]))
            for r in rows
        ]

    async def claim(self, stream: str, group: str, consumer: str, min_idle_ms: int, ids: list[str]) -> list[Entry]:
        return self._entries(await self.client.xclaim(stream, group, consumer, min_idle_time=min_idle_ms, message_ids=ids))

    async def read(self, stream: str, entry_id: str) -> Entry | None:
        entries = self._entries(await self.client.xrange(stream, min=entry_id, max=entry_id))
        return entries[0] if entries else None

    async def ack(self, stream: str, group: str, entry_id: str) -> None:
        await self.client.xack(stream, group, entry_id)

    async def lag(self, stream: str, group: str) -> int:
        for info in await self.client.xinfo_groups(stream):
            if _decode(info["name"]) == group:
                return int(info.get("lag") or 0) + int(info.get("pending") or 0)
        return 0


@dataclass
class _Group:
    next_index: int = 0
    pending: dict[str, list[Any]] = field(default_factory=dict)  # id -> [consumer, delivered_at, count]


class MemoryStreams:
    """Streams inside one process, with Redis's consumer-group semantics (for the embedded default)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._streams: dict[str, list[Entry]] = {}
        self._groups: dict[tuple[str, str], _Group] = {}
        self._seq = itertools.count(1)

    async def add(self, stream: str, fields: dict[str, bytes]) -> str:
        entry = Entry(f"{int(time.time() * 1000)}-{next(self._seq)}", dict(fields))
        entries = self._streams.setdefault(stream, [])
        entries.append(entry)
        if len(entries) > STREAM_MAXLEN:
            del entries[: len(entries) - STREAM_MAXLEN]
            for (name, _), group in self._groups.items():
                if name == stream:
                    group.next_index = max(0, group.next_index - (len(entries) + 1 - STREAM_MAXLEN))
        return entry.id

    async def ensure_group(self, stream: str, group: str) -> None:
        self._streams.setdefault(stream, [])
        self._groups.setdefault((stream, group), _Group())

    async def read_new(self, stream: str, group: str, consumer: str, count: int, block_ms: int) -> list[Entry]:
        state = self._groups[(stream, group)]
        deadline = self.clock() + block_ms / 1000
        while True:
            entries = self._streams.get(stream, [])
            fresh = entries[state.next_index : state.next_index + count]
            if fresh:
                state.next_index += len(fresh)
                now = self.clock()
                for entry in fresh:
                    state.pending[entry.id] = [consumer, now, 1]
                return fresh
            if self.clock() >= deadline:
                return []
            await asyncio.sleep(0.02)

    async def pending(self, stream: str, group: str, count: int) -> list[PendingEntry]:
        state = self._groups[(stream, group)]
        now = self.clock()
        return [
            PendingEntry(entry_id, consumer, int((now - at) * 1000), deliveries)
            for entry_id, (consumer, at, deliveries) in list(state.pending.items())[:count]
        ]

    async def claim(self, stream: str, group: str, consumer: str, min_idle_ms: int, ids: list[str]) -> list[Entry]:
        state = self._groups[(stream, group)]
        now = self.clock()
        claimed = []
        for entry_id in ids:
            slot = state.pending.get(entry_id)
            if slot is None or (now - slot[1]) * 1000 < min_idle_ms:
                continue
            state.pending[entry_id] = [consumer, now, slot[2] + 1]
            entry = await self.read(stream, entry_id)
            if entry is not None:
                claimed.append(entry)
        return claimed

    async def read(self, stream: str, entry_id: str) -> Entry | None:
        return next((e for e in self._streams.get(stream, []) if e.id == entry_id), None)

    async def ack(self, stream: str, group: str, entry_id: str) -> None:
        self._groups[(stream, group)].pending.pop(entry_id, None)

    async def lag(self, stream: str, group: str) -> int:
        state = self._groups.get((stream, group))
        if state is None:
            return 0
        return len(self._streams.get(stream, [])) - state.next_index + len(state.pending)


def encode(payload: dict[str, Any]) -> dict[str, bytes]:
    return {"data": orjson.dumps(payload)}


async def publish(backend: StreamBackend, stream: str, payload: dict[str, Any]) -> str:
    return await backend.add(stream, encode(payload))


Handler = Callable[[Event], Awaitable[None]]


class StreamConsumer:
    """One consumer of a group: new events, retries with backoff, dead letters."""

    def __init__(
        self,
        backend: StreamBackend,
        stream: str,
        group: str,
        consumer: str,
        handler: Handler,
        *,
        batch: int = 50,
        block_ms: int = 1000,
        max_deliveries: int = 5,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
    ) -> None:
        self.backend, self.stream, self.group, self.consumer, self.handler = backend, stream, group, consumer, handler
        self.batch, self.block_ms, self.max_deliveries = batch, block_ms, max_deliveries
        self.backoff_base, self.backoff_max = backoff_base, backoff_max
        self._errors: dict[str, str] = {}
        self.processed = 0
        self.dead_lettered = 0

    def backoff_ms(self, deliveries: int) -> int:
        return int(min(self.backoff_max, self.backoff_base * 2 ** max(0, deliveries - 1)) * 1000)

    async def run(self, stop: asyncio.Event) -> None:
        await self.backend.ensure_group(self.stream, self.group)
        while not stop.is_set():
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("consumer %s/%s failed to poll; retrying", self.group, self.consumer)
                await asyncio.sleep(1.0)

    async def poll_once(self, block_ms: int | None = None) -> int:
        """Handles due retries, then new events (waiting up to `block_ms`); returns how many."""
        handled = await self._retry_due()
        entries = await self.backend.read_new(self.stream, self.group, self.consumer, self.batch, self.block_ms if block_ms is None else block_ms)
        for entry in entries:
            handled += await self._handle(entry, deliveries=1)
        return handled

    async def _retry_due(self) -> int:
        handled = 0
        for pending in await self.backend.pending(self.stream, self.group, self.batch):
            if pending.deliveries >= self.max_deliveries:
                entry = await self.backend.read(self.stream, pending.id)
                reason = self._errors.pop(pending.id, "handler kept failing")
                await self._dead_letter(entry or Entry(pending.id, {}), f"gave up after {pending.deliveries} deliveries: {reason}", pending.deliveries)
                continue
            if pending.idle_ms < self.backoff_ms(pending.deliveries):
                continue
            for entry in await self.backend.claim(self.stream, self.group, self.consumer, self.backoff_ms(pending.deliveries), [pending.id]):
                handled += await self._handle(entry, deliveries=pending.deliveries + 1)
        return handled

    async def _handle(self, entry: Entry, deliveries: int) -> int:
        try:
            payload = orjson.loads(entry.fields["data"])
            if not isinstance(payload, dict):
                raise ValueError("payload is not an object")
        except (KeyError, ValueError) as exc:
            # Retrying cannot fix an event that cannot be read: straight to the dead letters.
            await self._dead_letter(entry, f"undecodable event: {exc}", deliveries)
            return 0
        try:
            await self.handler(Event(entry.id, self.stream, payload, deliveries))
        except asyncio.CancelledError:
            raise  # the consumer is stopping: the event stays pending for whoever comes next
        except Exception as exc:
            self._errors[entry.id] = f"{type(exc).__name__}: {exc}"[:500]
            logger.warning("event %s on %s failed (delivery %d): %s", entry.id, self.stream, deliveries, exc)
            return 0
        await self.backend.ack(self.stream, self.group, entry.id)
        self._errors.pop(entry.id, None)
        self.processed += 1
        return 1

    async def _dead_letter(self, entry: Entry, reason: str, deliveries: int) -> None:
        fields = {
            "stream": self.stream.encode(),
            "group": self.group.encode(),
            "id": entry.id.encode(),
            "reason": reason.encode(),
            "deliveries": str(deliveries).encode(),
            "data": entry.fields.get("data", b""),
        }
        await self.backend.add(DEAD_LETTER, fields)
        await self.backend.ack(self.stream, self.group, entry.id)
        self.dead_lettered += 1
        logger.error("event %s on %s moved to %s: %s", entry.id, self.stream, DEAD_LETTER, reason)
