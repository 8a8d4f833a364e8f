"""`/ws/rentals/{id}/`: the owner hears every change of the pod; anyone else is refused at connect."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from pods import machine
from pods.models import Rental, State
from tests.accounts_and_billing import make_user
from tests.pods_world import SSH_KEY
from web.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


def make_rental(user: Any) -> Rental:
    return Rental.objects.create(
        user=user, name="trainer", request_key="k", provider_slug="cudo", offer_name="intel-ice-lake-a100-pci_1x2v4gb", region="us-carlsbad-1",
        gpu_type="A100 80GB", gpu_count=1, template="pytorch", image="pytorch/pytorch", ports=[{"number": 8888, "label": "Jupyter", "scheme": "http"}],
        ssh_public_key=SSH_KEY, provider_price_per_hour=Decimal("1.3734"), markup_pct=Decimal("10"), price_per_hour=Decimal("1.5107"),
    )


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
    first = await socket.receive_from(timeout=5)
    assert 'id="pod-live"' in first and "Draft" in first
    await sync_to_async(machine.transition)(rental, State.PROVISIONING, "Deploy requested")
    pushed = await socket.receive_from(timeout=5)
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
