"""Live progress of one pod: `/ws/rentals/{id}/`, for its owner only.

Anyone else (or nobody signed in) is refused at connect, before the handshake completes, exactly
like a pod that does not exist. Each change of the pod (a transition, a provider step, a charge)
is sent as the page's `#pod-live` fragment, which htmx's ws extension swaps in by id.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.template.loader import render_to_string

from pods.live import group
from pods.models import Rental


def _fragment(rental_id: int, user_id: int, csrf_token: str) -> str | None:
    from pods.views import detail_context

    rental = Rental.objects.select_related("user", "offer__provider", "failover_offer__provider").filter(pk=rental_id, user_id=user_id).first()
    if rental is None:
        return None
    # The forms in the fragment post without htmx, so they carry the page's CSRF secret (the cookie).
    return render_to_string("pods/detail.html#pod-live", {**detail_context(rental), "csrf_token": csrf_token})


def _owns(rental_id: int, user_id: int) -> bool:
    return Rental.objects.filter(pk=rental_id, user_id=user_id).exists()


class RentalConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        self.rental_id = int(self.scope["url_route"]["kwargs"]["rental_id"])
        self.user_id = getattr(user, "pk", None)
        if not getattr(user, "is_authenticated", False) or not await database_sync_to_async(_owns)(self.rental_id, self.user_id):
            await self.close(code=4404)  # the same for another user's pod and for one that does not exist
            return
        cookies: dict[str, str] = self.scope.get("cookies", {})
        self.csrf_token = cookies.get(settings.CSRF_COOKIE_NAME, "")
        self.joined = group(self.rental_id)
        await self.channel_layer.group_add(self.joined, self.channel_name)
        await self.accept()
        await self.rental_changed({})

    async def disconnect(self, code: int) -> None:
        if getattr(self, "joined", None):
            await self.channel_layer.group_discard(self.joined, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        pass  # the page only listens

    async def rental_changed(self, event: dict[str, Any]) -> None:
        html = await database_sync_to_async(_fragment)(self.rental_id, self.user_id, self.csrf_token)
        if html is None:
            await self.close(code=4404)
            return
        await self.send(text_data=html)
