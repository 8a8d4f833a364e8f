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
