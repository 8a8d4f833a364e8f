"""`manage.py run_worker` as a real process: sandbox refreshes reach the database, the streams and
open websockets through Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from channels.testing import WebsocketCommunicator
from django.db import connection

from providers.models import PriceSample, Provider
from tests.environment import TEST_REDIS_URL
from web.asgi import application

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.django_db(transaction=True)


def _worker_env() -> dict[str, str]:
    settings = connection.settings_dict
    database = f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}"
    return {**os.environ, "DATABASE_URL": database, "REDIS_URL": TEST_REDIS_URL, "SANDBOX_REFRESH_SECONDS": "0.5"}


async def test_a_worker_process_refreshes_providers_and_pushes_changes(catalog: None) -> None:
    from asgiref.sync import sync_to_async

    await sync_to_async(lambda: Provider.objects.exclude(slug__in=["aws", "runpod"]).update(active=False))()
    streams = redis.Redis.from_url(TEST_REDIS_URL)
    streams.delete("gpubroker.price-updates", "gpubroker.provider-events", "gpubroker.price-alerts")
    for key in streams.scan_iter("gpubroker:lease:*"):
        streams.delete(key)
    communicator = WebsocketCommunicator(application, "/ws/providers/?format=json&subscribe=provider:aws", headers=[(b"origin", b"http://localhost")])
    assert (await communicator.connect())[0]
    await communicator.receive_json_from(timeout=2)

    worker = subprocess.Popen([sys.executable, "manage.py", "run_worker"], cwd=ROOT, env=_worker_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        # provider:aws also carries the worker's health checks, in whichever order they finish.
        message = await communicator.receive_json_from(timeout=20)
        while message["type"] != "offers.changed":
            assert message["type"] == "provider.health", message
            message = await communicator.receive_json_from(timeout=20)
        assert message["payload"]["changes"]
        assert {c["provider"] for c in message["payload"]["changes"]} == {"aws"}
        assert streams.xlen("gpubroker.price-updates") >= 1
        assert await sync_to_async(PriceSample.objects.filter(offer__provider__slug="aws").exists)()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            aws = await sync_to_async(Provider.objects.get)(slug="aws")
            if aws.last_health_check is not None:
                break
            await asyncio.sleep(0.2)
        assert aws.health_status in ("healthy", "degraded", "down") and aws.last_refresh_at is not None
        groups = {g["name"].decode() for g in streams.xinfo_groups("gpubroker.price-updates")}
        assert groups == {"analytics", "fanout"}
    finally:
        worker.send_signal(signal.SIGTERM)
        output = worker.communicate(timeout=15)[0].decode()
        await communicator.disconnect()
    assert worker.returncode == 0, output
    assert "worker: stopped" in output


# A real worker, stopped dead at one of the two points where a crash used to lose an event: after
# the ingest committed but before anything reached the streams, or after publishing but before
# the outbox row was stamped sent. Only that one step is replaced (by a hang), so the process is
# SIGKILLed exactly there; everything before it is the worker's own code.
CRASHING_WORKER = """
import asyncio, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "web.settings")
import django
django.setup()
import httpx
from django.conf import settings
from providers.worker import WorkerSettings, build_worker

async def hang(*args, **kwargs):
    print("crash point reached", flush=True)
    await asyncio.Event().wait()

async def main():
    async with httpx.AsyncClient() as client:
        worker = await build_worker(redis_url=settings.REDIS_URL, mode="sandbox", settings=WorkerSettings(), client=client)
        worker.relay.claim_seconds = 1.0  # so the restarted worker takes the claim over soon
        if sys.argv[1] == "after-commit":
            worker.publish_pending = hang
        else:  # after-publish: the stream has the events, the outbox does not know it
            worker.relay._mark_sent = hang
        await worker.refresh("aws")

asyncio.run(main())
"""


def _reset_streams(client: redis.Redis) -> None:
    client.delete("gpubroker.price-updates", "gpubroker.provider-events", "gpubroker.price-alerts")
    for pattern in ("gpubroker:lease:*", "gpubroker:seen:*"):
        for key in client.scan_iter(pattern):
            client.delete(key)


def _stream_event_ids(client: redis.Redis) -> list[str]:
    import orjson

    return [orjson.loads(fields[b"data"]).get("event_id") for _, fields in client.xrange("gpubroker.price-updates")]


def _groups_done(client: redis.Redis, stream: str) -> bool:
    groups = client.xinfo_groups(stream)
    return bool(groups) and all(g["pending"] == 0 and g["lag"] == 0 for g in groups)


@pytest.mark.parametrize("crash", ["after-commit", "after-publish"])
async def test_a_worker_killed_between_commit_and_publish_still_delivers_each_event_exactly_once(catalog: None, crash: str) -> None:
    from asgiref.sync import sync_to_async
    from channels.layers import get_channel_layer

    from providers.groups import provider_group
    from providers.models import OutboxEvent

    await sync_to_async(lambda: Provider.objects.exclude(slug="aws").update(active=False))()
    streams = redis.Redis.from_url(TEST_REDIS_URL)
    _reset_streams(streams)
    env = _worker_env()

    crashing = subprocess.Popen([sys.executable, "-c", CRASHING_WORKER, crash], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        line = await asyncio.wait_for(asyncio.to_thread(crashing.stdout.readline), 60)
        assert line == b"crash point reached\n", line + crashing.stdout.read()
    finally:
        crashing.send_signal(signal.SIGKILL)
        crashing.wait(timeout=15)
    assert crashing.returncode == -signal.SIGKILL

    lost = await sync_to_async(lambda: list(OutboxEvent.objects.filter(stream="gpubroker.price-updates").values_list("event_id", "sent_at")))()
    event_ids = {str(event_id) for event_id, _ in lost}
    assert event_ids and all(sent_at is None for _, sent_at in lost)  # committed, never marked sent
    published = _stream_event_ids(streams)
    assert (sorted(published) == sorted(event_ids)) if crash == "after-publish" else published == []

    # What a page subscribed to provider:aws receives, kept in a channel of our own and read once
    # everything is in (no reader idles meanwhile).
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(provider_group("aws"), channel)
    # The restart: a real worker process, refreshing rarely so its own events stay few.
    worker = subprocess.Popen([sys.executable, "manage.py", "run_worker"], cwd=ROOT, env={**env, "SANDBOX_REFRESH_SECONDS": "30"},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            unsent = await sync_to_async(OutboxEvent.objects.filter(event_id__in=event_ids, sent_at__isnull=True).count)()
            if unsent == 0 and _groups_done(streams, "gpubroker.price-updates"):
                break
            assert time.monotonic() < deadline and worker.poll() is None, f"{unsent} events still unsent"
            await asyncio.sleep(0.1)
        # Every consumer group has acknowledged everything; a marker sent now arrives after all
        # that the fan-out pushed, so everything before it is everything the page will ever get.
        await layer.group_send(provider_group("aws"), {"type": "offers.changed", "payload": {"event_id": "end-marker"}})
        received: list[str] = []
        while True:
            message = await asyncio.wait_for(layer.receive(channel), 20)
            event_id = message.get("payload", {}).get("event_id")
            if event_id == "end-marker":
                break
            if message["type"] == "offers.changed":
                received.append(event_id)
    finally:
        worker.send_signal(signal.SIGTERM)
        output = worker.communicate(timeout=15)[0].decode()
        await layer.group_discard(provider_group("aws"), channel)
    assert worker.returncode == 0, output
    # Each event reached the page once, though the second case published it twice.
    assert sorted(e for e in received if e in event_ids) == sorted(event_ids)
    republished = _stream_event_ids(streams)
    assert all(republished.count(e) == (2 if crash == "after-publish" else 1) for e in event_ids), republished
    for event_id in event_ids:  # and analytics too took each once: by the first entry that carried it
        first_entry = next(entry for entry, fields in streams.xrange("gpubroker.price-updates") if event_id.encode() in fields[b"data"])
        assert streams.get(f"gpubroker:seen:gpubroker.price-updates:analytics:{event_id}") == first_entry
