"""Live price feed for pages: `/ws/providers/` joins the `price_updates` group."""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer
from django.template.loader import render_to_string

from providers.live import PRICE_UPDATES_GROUP


class PriceFeedConsumer(AsyncWebsocketConsumer):
    groups_joined: tuple[str, ...] = (PRICE_UPDATES_GROUP,)

    async def connect(self) -> None:
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        # The confirmation is a fragment too: it turns the page's "connecting" badge into "live".
        await self.send(
            text_data=render_to_string("providers/live_status.html", {"subscriptions": self.groups_joined})
        )

    async def disconnect(self, code: int) -> None:
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def price_rows(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["html"])
