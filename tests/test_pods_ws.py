"""`/ws/rentals/{id}/`: the owner hears every change of the pod; anyone else is refused at connect."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from pods import machine
from pods.models import State
from tests.accounts_and_billing import make_user
from tests.pods_world import make_rental
from web.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


def headers_for(user: Any | None) -> list[tuple[bytes, bytes]]:
    headers = [(b"origin", b"http://localhost")]
    if user is not None:
        client = Client()
        client.force_login(user)
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}; csrftoken=abcdefghijklmnopqrstuvwxyz012345".encode()))
    return headers


async def test_the_owner_gets_the_pod_now_and_after_each_transition() -> None:
    user = await sync_to_async(make_user)()
    rental = await sync_to_async(make_rental)(user)
    socket = WebsocketCommunicator(application, f"/ws/rentals/{rental.pk}/", headers=await sync_to_async(headers_for)(user))
    connected, _ = await socket.connect()
    assert connected
    first = await socket.receive_from(timeout=30)
    assert 'id="pod-live"' in first and "Draft" in first
    await sync_to_async(machine.transition)(rental, State.PROVISIONING, "Deploy requested")
    pushed = await socket.receive_from(timeout=30)
    assert "Provisioning" in pushed and "Deploy requested" in pushed
    assert 'name="csrfmiddlewaretoken" value="abcdefghijklmnopqrstuvwxyz012345"' in pushed
    await socket.disconnect()


@pytest.mark.parametrize("who", ["stranger", "anonymous"])
async def test_anyone_but_the_owner_is_refused_at_connect(who: str) -> None:
    owner = await sync_to_async(make_user)()
    rental = await sync_to_async(make_rental)(owner)
    other = await sync_to_async(make_user)("eve@example.com") if who == "stranger" else None
    socket = WebsocketCommunicator(application, f"/ws/rentals/{rental.pk}/", headers=await sync_to_async(headers_for)(other))
    connected, code = await socket.connect()
    assert not connected and code == 4404


async def test_a_pod_that_does_not_exist_is_refused_the_same_way() -> None:
    user = await sync_to_async(make_user)()
    socket = WebsocketCommunicator(application, "/ws/rentals/999999/", headers=await sync_to_async(headers_for)(user))
    connected, code = await socket.connect()
    assert not connected and code == 4404
