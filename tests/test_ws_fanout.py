"""Live-update fan-out (providers.fanout): slow clients, connection caps, hostile frames, and two
real server processes sharing Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from collections import deque
from typing import Any

import orjson
import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import connection
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from providers.consumers import CLOSE_REFUSED, CLOSE_TOO_SLOW, MAX_MESSAGE_BYTES
from providers import fanout
from providers.fanout import address_key
from tests.environment import TEST_REDIS_URL
from web.asgi import application
from web.serving import uvicorn_command

ROOT = Path(__file__).resolve().parent.parent
ORIGIN = [(b"origin", b"http://localhost")]
OFFERS = {"type": "offers.changed", "payload": {"changes": [{"offer_id": 1}]}}


def metric(name: str, **labels: str) -> float:
    # Only the fan-out's own metrics: the registry's other collectors query the database.
    for family in (*fanout.DROPPED.collect(), *fanout.REFUSED.collect()):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def websocket_scope(path: str, query: bytes, client: str) -> dict[str, Any]:
    return {"type": "websocket", "path": path, "raw_path": path.encode(), "query_string": query, "headers": [(b"host", b"localhost"), *ORIGIN],
            "scheme": "ws", "server": ("localhost", 80), "client": (client, 40000), "subprotocols": [], "asgi": {"version": "3.0"}}


class RawSocket:
    """The application driven as a server drives it; `stalled` makes every write wait, as a
    server's send waits while a client that stopped reading leaves its buffers full."""

    def __init__(self, client: str = "10.0.0.1", stalled: bool = False) -> None:
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()
        self.writable = asyncio.Event()
        self.stalled = stalled
        self.client = client
        self.task: asyncio.Task[None] | None = None

    async def open(self, query: bytes = b"format=json") -> dict[str, Any]:
        await self.incoming.put({"type": "websocket.connect"})
        self.task = asyncio.create_task(application(websocket_scope("/ws/providers/", query, self.client), self.incoming.get, self._send))
        await self.wait_for(lambda: any(m["type"] == "websocket.send" for m in self.sent))
        return orjson.loads(self.frames()[0])

    async def _send(self, message: dict[str, Any]) -> None:
        if self.stalled and message["type"] == "websocket.send" and self.frames():
            await self.writable.wait()
        self.sent.append(message)
        self.arrived.set()

    def frames(self) -> list[str]:
        return [m["text"] for m in self.sent if m["type"] == "websocket.send"]

    async def wait_for(self, condition: Any, timeout: float = 30.0) -> None:
        async def until() -> None:
            while not condition():
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(until(), timeout)

    async def close(self) -> None:
        await self.incoming.put({"type": "websocket.disconnect", "code": 1000})
        self.writable.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, 30)


async def test_a_client_that_stops_reading_never_delays_the_others_and_is_cut_off_and_counted(settings: Any) -> None:
    settings.WS_QUEUE_MESSAGES = 3
    dropped_before = metric("gpubroker_ws_dropped_total", transport="websocket")
    fast, slow = RawSocket("10.0.0.1"), RawSocket("10.0.0.2", stalled=True)
    await fast.open()
    await slow.open()
    layer = get_channel_layer()
    for n in range(10):
        await layer.group_send("price_updates", {"type": "offers.changed", "payload": {"n": n}})
    await fast.wait_for(lambda: len(fast.frames()) == 11)
    assert [orjson.loads(f)["payload"]["n"] for f in fast.frames()[1:]] == list(range(10))
    assert metric("gpubroker_ws_dropped_total", transport="websocket") == dropped_before + 1
    # Once its connection takes writes again, the laggard is told why and closed.
    slow.writable.set()
    await slow.wait_for(lambda: any(m["type"] == "websocket.close" for m in slow.sent))
    close = next(m for m in slow.sent if m["type"] == "websocket.close")
    assert close["code"] == CLOSE_TOO_SLOW and "too slow" in close["reason"]
    assert len(slow.frames()) <= 1 + 1 + 3  # confirmation, the stalled write, at most a full queue
    await fast.close()
    await slow.close()


async def test_the_per_address_cap_refuses_the_next_connection_with_a_reason(settings: Any) -> None:
    settings.WS_MAX_CONNECTIONS_PER_ADDRESS = 2
    refused_before = metric("gpubroker_ws_refused_total", reason="per_address")
    first, second, third = RawSocket("10.0.0.7"), RawSocket("10.0.0.7"), RawSocket("10.0.0.7")
    assert (await first.open())["type"] == "subscribed"
    assert (await second.open())["type"] == "subscribed"
    error = await third.open()
    assert error == {"type": "error", "field": "connection", "reason": "too many live connections from your address: at most 2; close one first"}
    await third.wait_for(lambda: any(m["type"] == "websocket.close" for m in third.sent))
    assert next(m for m in third.sent if m["type"] == "websocket.close")["code"] == CLOSE_REFUSED
    assert metric("gpubroker_ws_refused_total", reason="per_address") == refused_before + 1
    elsewhere = RawSocket("10.0.0.8")
    assert (await elsewhere.open())["type"] == "subscribed"
    # A closed socket frees its place.
    await first.close()
    again = RawSocket("10.0.0.7")
    assert (await again.open())["type"] == "subscribed"
    for sock in (second, third, elsewhere, again):
        await sock.close()


@pytest.mark.django_db
def test_metrics_show_the_caps_and_the_drops(client: Client, settings: Any) -> None:
    async def open_and_close() -> None:
        sock = RawSocket("10.0.0.9")
        await sock.open()
        await sock.close()

    async_to_sync(open_and_close)()
    body = client.get("/metrics").content.decode()
    assert f"gpubroker_ws_connections_per_address_limit {float(settings.WS_MAX_CONNECTIONS_PER_ADDRESS)}" in body
    assert f"gpubroker_ws_connections_limit {float(settings.WS_MAX_CONNECTIONS)}" in body
    assert 'gpubroker_ws_dropped_total{transport="websocket"}' in body or "# HELP gpubroker_ws_dropped_total" in body
    assert "# HELP gpubroker_ws_refused_total" in body


def test_ipv6_clients_are_counted_per_64_and_ipv4_mapped_as_ipv4() -> None:
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:10.1.2.3") == "10.1.2.3"
    assert address_key(None) == "unknown"


async def test_deeply_nested_json_gets_an_error_not_a_crash() -> None:
    communicator = WebsocketCommunicator(application, "/ws/providers/?format=json", headers=ORIGIN)
    assert (await communicator.connect())[0]
    await communicator.receive_json_from(timeout=10)
    # 2,000 levels deep, under the size cap: json.loads would raise RecursionError here.
    for nested in ("[" * 2000 + "]" * 2000, "[" * 2040 + "{}" + "]" * 2040):
        await communicator.send_to(text_data=nested)
        assert await communicator.receive_json_from(timeout=10) == {"type": "error", "field": "message", "reason": "not a JSON object"}
    await communicator.send_to(text_data=" " * (MAX_MESSAGE_BYTES + 1))
    assert (await communicator.receive_json_from(timeout=10))["reason"] == f"send JSON text of at most {MAX_MESSAGE_BYTES} bytes"
    await communicator.send_json_to({"action": "ping"})
    assert await communicator.receive_json_from(timeout=10) == {"type": "pong"}
    await communicator.disconnect()


async def test_a_long_subscribe_of_junk_gets_one_bounded_answer() -> None:
    junk = ",".join(f"junk{n}" for n in range(1200))[:8192]
    communicator = WebsocketCommunicator(application, f"/ws/providers/?format=json&subscribe={junk}", headers=ORIGIN)
    assert (await communicator.connect())[0]
    answer = await communicator.receive_from(timeout=10)
    assert len(answer) < 1000
    assert json.loads(answer) == {"type": "subscribed", "subscriptions": [], "errors": ["subscribe: at most 2048 characters, got 8192"]}
    # Many bad names in one message: at most a handful listed, the rest summed up.
    await communicator.send_json_to({"action": "subscribe", "subscriptions": [f"junk{n}" for n in range(40)]})
    answer = await communicator.receive_json_from(timeout=10)
    assert len(answer["errors"]) == 6 and answer["errors"][-1] == "and 35 more refused subscriptions"
    await communicator.send_json_to({"action": "subscribe", "subscriptions": ["price_updates"] * 51})
    assert (await communicator.receive_json_from(timeout=10))["errors"] == ["at most 50 subscriptions per request, got 51"]
    await communicator.disconnect()


# The fuzz: whatever a client sends, the JSON socket answers exactly one documented message per
# frame and stays open (a ping afterwards still gets its pong).
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
actions = st.fixed_dictionaries(
    {"action": st.sampled_from(["subscribe", "unsubscribe", "ping", "dance", ""])},
    optional={"subscriptions": st.lists(st.sampled_from(["price_updates", "gpu:H100 80GB", "region:eu-west-1", "provider:aws", "zone:x", "gpu:"]) | st.text(max_size=30), max_size=8) | json_values},
)
frames = st.one_of(
    actions.map(lambda m: {"text": json.dumps(m)}),
    json_values.map(lambda v: {"text": json.dumps(v)}),
    st.text(max_size=200).map(lambda t: {"text": t}),
    st.binary(max_size=200).map(lambda b: {"bytes": b}),
    st.integers(1, 5000).map(lambda depth: {"text": "[" * depth + "]" * depth}),
)
DOCUMENTED = {"error": {"message", "action", "subscriptions"}, "pong": None, "subscribed": None}


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(frames, min_size=1, max_size=8))
def test_any_frame_gets_one_documented_answer_and_the_socket_stays_open(sent: list[dict[str, Any]]) -> None:
    async def exchange() -> None:
        communicator = WebsocketCommunicator(application, "/ws/providers/?format=json", headers=ORIGIN)
        assert (await communicator.connect())[0]
        await communicator.receive_json_from(timeout=10)
        for frame in sent:
            await communicator.send_input({"type": "websocket.receive", **frame})
            answer = await communicator.receive_output(timeout=10)
            assert answer["type"] == "websocket.send", answer
            message = orjson.loads(answer["text"])
            assert message["type"] in DOCUMENTED, message
            if message["type"] == "error":
                assert message["field"] in DOCUMENTED["error"] and isinstance(message["reason"], str)
            if message["type"] == "subscribed":
                assert isinstance(message["subscriptions"], list) and isinstance(message["errors"], list) and len(message["errors"]) <= 6
        await communicator.send_json_to({"action": "ping"})
        assert await communicator.receive_json_from(timeout=10) == {"type": "pong"}
        await communicator.disconnect()

    async_to_sync(exchange)()


# Two real server processes, started as web/serving.py starts them, sharing the test Redis.
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_listening(port: int, server: subprocess.Popen[bytes], deadline: float) -> None:
    while True:
        assert server.poll() is None, server.communicate()[0].decode()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            assert time.monotonic() < deadline, f"the server on port {port} never listened"
            time.sleep(0.1)


@pytest.mark.django_db(transaction=True)
def test_two_server_processes_sharing_redis_both_deliver_an_event_to_their_own_sockets() -> None:
    from websockets.sync.client import connect

    db = connection.settings_dict
    env = {**os.environ, "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}", "REDIS_URL": TEST_REDIS_URL}
    ports = [_free_port(), _free_port()]
    servers = [subprocess.Popen(uvicorn_command("web.asgi:application", "127.0.0.1", port), cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for port in ports]
    sockets = []
    opened = contextlib.ExitStack()
    try:
        deadline = time.monotonic() + 60
        for port, server in zip(ports, servers):
            _wait_until_listening(port, server, deadline)
        for port in ports:
            sock = opened.enter_context(connect(f"ws://127.0.0.1:{port}/ws/providers/?format=json&subscribe=gpu:H100%2080GB", origin="http://localhost", open_timeout=10))
            sockets.append(sock)
            assert json.loads(sock.recv(timeout=10))["subscriptions"] == ["gpu:H100 80GB"]
        async_to_sync(get_channel_layer().group_send)("gpu.h100-80gb", OFFERS)
        for sock in sockets:
            assert json.loads(sock.recv(timeout=10)) == OFFERS
    finally:
        opened.close()
        for server in servers:
            server.terminate()
        for server in servers:
            server.communicate(timeout=15)


async def test_the_hub_fans_out_on_the_in_memory_layer_of_the_embedded_default() -> None:
    from channels.layers import InMemoryChannelLayer

    from providers.fanout import FanoutHub

    hub = FanoutHub(InMemoryChannelLayer(capacity=10_000))
    feeds = [hub.open(f"10.0.1.{n}", "websocket") for n in range(3)]
    for feed in feeds[:2]:
        await hub.join(feed, "gpu.h100-80gb")
    await hub.join(feeds[2], "region.eu-west-1")
    await hub.layer.group_send("gpu.h100-80gb", OFFERS)
    for feed in feeds[:2]:
        broadcast = await asyncio.wait_for(feed.next(), 10)
        assert broadcast is not None and broadcast.message == OFFERS
    assert feeds[2]._queue == deque()
    for feed in feeds:
        await hub.close(feed)
    assert hub.layer.groups == {}


def sse_scope(client: str) -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": "/api/v2/providers/stream", "raw_path": b"/api/v2/providers/stream",
            "query_string": b"subscribe=price_updates", "headers": [(b"host", b"localhost")], "scheme": "http",
            "server": ("localhost", 80), "client": (client, 5000), "root_path": "", "http_version": "1.1", "asgi": {"version": "3.0"}}


@pytest.mark.django_db(transaction=True)
async def test_the_sse_stream_shares_the_per_address_cap_and_answers_429_past_it(settings: Any) -> None:
    settings.WS_MAX_CONNECTIONS_PER_ADDRESS = 1
    sock = RawSocket("10.0.2.1")
    await sock.open()
    sent: list[dict[str, Any]] = []
    done = asyncio.Event()
    requested: list[bool] = []

    async def receive() -> dict[str, Any]:
        if not requested:
            requested.append(True)
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    await asyncio.wait_for(application(sse_scope("10.0.2.1"), receive, send), 10)
    assert sent[0]["status"] == 429
    assert orjson.loads(b"".join(m.get("body", b"") for m in sent[1:])) == {
        "error": "too many connections",
        "errors": [{"field": "connection", "reason": "too many live connections from your address: at most 1; close one first"}]}
    await sock.close()


def test_start_up_refuses_a_connection_cap_below_one() -> None:
    result = subprocess.run([sys.executable, "-c", "import web.asgi"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "web.settings", "WS_MAX_CONNECTIONS_PER_ADDRESS": "0"})
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == ["GPUBROKER configuration error: WS_MAX_CONNECTIONS_PER_ADDRESS: must be at least 1, got 0"]
