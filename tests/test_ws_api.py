"""The JSON websocket dialect and the SSE stream: subscriptions, ping/pong, clean-up."""

from __future__ import annotations

import asyncio

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from providers.groups import BadSubscription, group_for
from web.asgi import application

ORIGIN = [(b"origin", b"http://localhost")]
WAIT = 10  # seconds: a bound on waiting for a message, never a measure of anything


async def until(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    """Waits for `condition()` to hold, bounded by WAIT."""
    deadline = asyncio.get_running_loop().time() + WAIT
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def connect(path: str = "/ws/providers/?format=json") -> tuple[WebsocketCommunicator, dict]:
    communicator = WebsocketCommunicator(application, path, headers=ORIGIN)
    connected, _ = await communicator.connect()
    assert connected
    return communicator, await communicator.receive_json_from(timeout=WAIT)


async def members(group: str) -> int:
    layer = get_channel_layer()
    return await layer.connection(layer.consistent_hash(group)).zcard(layer._group_key(group))


def test_subscriptions_map_to_safe_group_names() -> None:
    assert group_for("price_updates") == "price_updates"
    assert group_for("gpu:H100 80GB") == "gpu.h100-80gb"
    assert group_for("region:us-east-1") == "region.us-east-1"
    assert group_for("provider:Vast.ai") == "provider.vastai"
    for bad in ("prices", "gpu:", "zone:eu", "gpu:" + "x" * 120):
        with pytest.raises(BadSubscription):
            group_for(bad)


async def test_json_clients_get_a_confirmation_listing_their_subscriptions() -> None:
    communicator, hello = await connect("/ws/providers/?format=json&subscribe=gpu:H100 80GB,health_status,nonsense")
    assert hello["type"] == "subscribed" and hello["subscriptions"] == ["gpu:H100 80GB", "health_status"]
    assert "nonsense" in hello["errors"][0]
    await communicator.disconnect()


async def test_subscribe_unsubscribe_and_ping() -> None:
    communicator, hello = await connect()
    assert hello["subscriptions"] == ["price_updates"]
    await communicator.send_json_to({"action": "subscribe", "subscriptions": ["provider:aws", "region:eu-west-1"]})
    assert (await communicator.receive_json_from(timeout=WAIT))["subscriptions"] == ["price_updates", "provider:aws", "region:eu-west-1"]
    assert await members("provider.aws") == 1
    await communicator.send_json_to({"action": "unsubscribe", "subscriptions": ["provider:aws"]})
    assert (await communicator.receive_json_from(timeout=WAIT))["subscriptions"] == ["price_updates", "region:eu-west-1"]
    assert await members("provider.aws") == 0
    await communicator.send_json_to({"action": "ping"})
    assert await communicator.receive_json_from(timeout=WAIT) == {"type": "pong"}
    await communicator.disconnect()
    assert await members("region.eu-west-1") == 0 and await members("price_updates") == 0


async def test_bad_messages_get_an_error_naming_the_field() -> None:
    communicator, _ = await connect()
    await communicator.send_to(text_data="not json")
    assert (await communicator.receive_json_from(timeout=WAIT))["field"] == "message"
    await communicator.send_json_to({"action": "dance"})
    assert (await communicator.receive_json_from(timeout=WAIT))["field"] == "action"
    await communicator.send_json_to({"action": "subscribe", "subscriptions": "gpu:A100"})
    assert (await communicator.receive_json_from(timeout=WAIT))["field"] == "subscriptions"
    await communicator.disconnect()


async def test_group_messages_reach_json_clients_as_data_and_html_pages_as_rows() -> None:
    json_client, _ = await connect()
    html_client = WebsocketCommunicator(application, "/ws/providers/", headers=ORIGIN)
    assert (await html_client.connect())[0]
    await html_client.receive_from(timeout=WAIT)  # the live badge
    layer = get_channel_layer()
    await layer.group_send("price_updates", {"type": "offers.changed", "payload": {"changes": [{"offer_id": 1}]}})
    await layer.group_send("price_updates", {"type": "price.rows", "html": '<tr id="gpu-row-x"></tr>'})
    assert await json_client.receive_json_from(timeout=WAIT) == {"type": "offers.changed", "payload": {"changes": [{"offer_id": 1}]}}
    assert await html_client.receive_from(timeout=WAIT) == '<tr id="gpu-row-x"></tr>'
    # Each got its own dialect only: the next thing either receives is a marker sent now.
    await layer.group_send("price_updates", {"type": "offers.changed", "payload": {"marker": True}})
    assert await json_client.receive_json_from(timeout=WAIT) == {"type": "offers.changed", "payload": {"marker": True}}
    await layer.group_send("price_updates", {"type": "price.rows", "html": "<i id=marker></i>"})
    assert await html_client.receive_from(timeout=WAIT) == "<i id=marker></i>"
    await json_client.disconnect()
    await html_client.disconnect()


async def test_the_provider_route_subscribes_to_that_provider() -> None:
    communicator, hello = await connect("/ws/providers/runpod/?format=json")
    assert hello["subscriptions"] == ["provider:runpod"]
    await get_channel_layer().group_send("provider.runpod", {"type": "provider.health", "payload": {"provider": "runpod", "health_status": "down"}})
    assert (await communicator.receive_json_from(timeout=WAIT))["payload"]["health_status"] == "down"
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_the_sse_stream_sends_offer_changes() -> None:
    scope = {"type": "http", "method": "GET", "path": "/api/v2/providers/stream", "raw_path": b"/api/v2/providers/stream",
             "query_string": b"subscribe=gpu:H100 80GB", "headers": [(b"host", b"localhost")], "scheme": "http",
             "server": ("localhost", 80), "client": ("127.0.0.1", 5000), "root_path": "", "http_version": "1.1", "asgi": {"version": "3.0"}}
    sent: list[dict] = []
    disconnect = asyncio.Event()

    requested = []

    async def receive() -> dict:
        if not requested:
            requested.append(True)
            return {"type": "http.request", "body": b"", "more_body": False}
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    task = asyncio.create_task(application(scope, receive, send))
    await until(lambda: any(m.get("body", b"").startswith(b"event: subscribed") for m in sent), "the subscription")
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 200 and (b"Content-Type", b"text/event-stream") in start["headers"]
    await get_channel_layer().group_send("gpu.h100-80gb", {"type": "offers.changed", "payload": {"changes": [{"offer_id": 5}]}})
    await until(lambda: any(b"event: offers" in m.get("body", b"") for m in sent), "the offers event")
    body = b"".join(m.get("body", b"") for m in sent)
    assert b'event: offers\ndata: {"changes":[{"offer_id":5}]}\n\n' in body
    disconnect.set()
    await asyncio.wait_for(task, WAIT)
    assert await members("gpu.h100-80gb") == 0


@pytest.mark.django_db
def test_the_sse_stream_refuses_unknown_subscriptions(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/api/v2/providers/stream", {"subscribe": "everything"})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "subscribe"
