"""At-least-once events: nothing is lost when a consumer dies, poison ends in the dead letters."""

from __future__ import annotations

import asyncio
import uuid

from providers import events
from providers.events import DEAD_LETTER, RedisStreams, StreamConsumer


def stream_name() -> str:
    return f"test.events.{uuid.uuid4().hex[:8]}"


async def dead_letters(backend: events.StreamBackend) -> list[dict[str, bytes]]:
    if isinstance(backend, RedisStreams):
        return [fields for _, fields in await backend.client.xrange(DEAD_LETTER)]
    return [entry.fields for entry in backend._streams.get(DEAD_LETTER, [])]


async def test_an_event_is_processed_once_and_acknowledged(backend: events.StreamBackend) -> None:
    stream, seen = stream_name(), []

    async def handle(event: events.Event) -> None:
        seen.append(event.payload)

    consumer = StreamConsumer(backend, stream, "g", "c1", handle, block_ms=50)
    await backend.ensure_group(stream, "g")
    await events.publish(backend, stream, {"n": 1})
    assert await consumer.poll_once() == 1
    assert await consumer.poll_once() == 0
    assert seen == [{"n": 1}] and await backend.pending(stream, "g", 10) == []


async def test_a_consumer_killed_before_acknowledging_leaves_the_event_for_its_restart(backend: events.StreamBackend) -> None:
    stream = stream_name()
    received = asyncio.Event()

    async def dies_midway(event: events.Event) -> None:
        received.set()
        await asyncio.Event().wait()  # the process is killed here, before the ack

    first = StreamConsumer(backend, stream, "g", "worker-1", dies_midway, block_ms=50)
    await backend.ensure_group(stream, "g")
    await events.publish(backend, stream, {"offer": 7})
    stop = asyncio.Event()
    task = asyncio.create_task(first.run(stop))
    await asyncio.wait_for(received.wait(), 5)
    task.cancel()  # killed
    await asyncio.gather(task, return_exceptions=True)
    assert [p.consumer for p in await backend.pending(stream, "g", 10)] == ["worker-1"]

    processed = []

    async def works(event: events.Event) -> None:
        processed.append((event.payload, event.deliveries))

    # No backoff, so the retry is due at once: the test does not wait on the clock.
    restarted = StreamConsumer(backend, stream, "g", "worker-1", works, block_ms=50, backoff_base=0.0)
    assert await restarted.poll_once(block_ms=0) == 1
    assert processed == [({"offer": 7}, 2)]
    assert await backend.pending(stream, "g", 10) == []


async def test_a_failing_handler_is_retried_with_backoff_then_dead_lettered(backend: events.StreamBackend) -> None:
    stream, attempts = stream_name(), []

    async def always_fails(event: events.Event) -> None:
        attempts.append(event.deliveries)
        raise RuntimeError("downstream refused")

    consumer = StreamConsumer(backend, stream, "g", "c", always_fails, block_ms=20, max_deliveries=3, backoff_base=60.0)
    assert [consumer.backoff_ms(n) for n in (1, 2, 3)] == [60_000, 60_000, 60_000]  # capped at backoff_max
    consumer.backoff_max = 600.0
    assert [consumer.backoff_ms(n) for n in (1, 2, 3)] == [60_000, 120_000, 240_000]  # doubling
    await backend.ensure_group(stream, "g")
    await events.publish(backend, stream, {"bad": True})
    await consumer.poll_once()
    assert attempts == [1]
    await consumer.poll_once(block_ms=0)
    assert attempts == [1]  # not retried before its backoff (a minute away)
    consumer.backoff_base = 0.0  # from here every retry is due at once: no waiting on the clock
    for _ in range(3):  # two retries, then the give-up
        await consumer.poll_once(block_ms=0)
    assert attempts == [1, 2, 3]
    letters = await dead_letters(backend)
    mine = [f for f in letters if f[b"stream" if isinstance(backend, RedisStreams) else "stream"] in (stream.encode(),)]
    assert len(mine) == 1
    reason = mine[0][b"reason" if isinstance(backend, RedisStreams) else "reason"]
    assert b"gave up after 3 deliveries" in reason and b"downstream refused" in reason
    assert await backend.pending(stream, "g", 10) == []


async def test_a_poison_event_goes_straight_to_the_dead_letters(backend: events.StreamBackend) -> None:
    stream, handled = stream_name(), []

    async def handle(event: events.Event) -> None:
        handled.append(event)

    consumer = StreamConsumer(backend, stream, "g", "c", handle, block_ms=20)
    await backend.ensure_group(stream, "g")
    await backend.add(stream, {"data": b"{not json"})
    await events.publish(backend, stream, {"fine": 1})
    await consumer.poll_once()
    assert [e.payload for e in handled] == [{"fine": 1}]
    letters = await dead_letters(backend)
    key = b"data" if isinstance(backend, RedisStreams) else "data"
    assert any(f[key] == b"{not json" for f in letters)
    assert await backend.pending(stream, "g", 10) == []


async def test_two_consumers_of_a_group_share_the_work_without_duplicates(backend: events.StreamBackend) -> None:
    stream, seen = stream_name(), []

    async def handle(event: events.Event) -> None:
        seen.append(event.payload["n"])

    await backend.ensure_group(stream, "g")
    for n in range(20):
        await events.publish(backend, stream, {"n": n})
    a = StreamConsumer(backend, stream, "g", "a", handle, batch=5, block_ms=10)
    b = StreamConsumer(backend, stream, "g", "b", handle, batch=5, block_ms=10)
    for _ in range(3):
        await a.poll_once()
        await b.poll_once()
    assert sorted(seen) == list(range(20)) and a.processed > 0 and b.processed > 0
