"""Live offers over websockets: `/ws/providers/` and `/ws/providers/{provider}/`.

Two dialects on the same routes, chosen by the query string:

- HTML (default, for htmx pages): joins `price_updates`; the confirmation is the live badge
  fragment and every message is HTML whose top-level elements carry ids (the landing rows).
- JSON (`?format=json`, for API clients and the browse page): the confirmation is
  `{"type": "subscribed", "subscriptions": [...]}`; then `offers.changed`, `price.alert` and
  `provider.health` messages `{"type": ..., "payload": {...}}`. Clients send
  `{"action": "subscribe" | "unsubscribe", "subscriptions": ["gpu:H100 80GB", ...]}` and
  `{"action": "ping"}` (answered `{"type": "pong"}`). Unknown input gets `{"type": "error", ...}`.

Initial subscriptions: `?subscribe=a,b` (JSON), else `price_updates`; on
`/ws/providers/{provider}/` the provider's own group instead. Every group is left on disconnect.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncWebsocketConsumer
from django.template.loader import render_to_string

from providers.groups import PRICE_UPDATES, BadSubscription, group_for

MAX_SUBSCRIPTIONS = 50
MAX_MESSAGE_BYTES = 4096


class PriceFeedConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        query = parse_qs(self.scope.get("query_string", b"").decode("utf-8", "replace"))
        self.json_mode = query.get("format", [""])[0] == "json"
        self.subscriptions: dict[str, str] = {}  # subscription as the client named it -> group
        provider = self.scope["url_route"]["kwargs"].get("provider")
        wanted = [f"provider:{provider}"] if provider else [PRICE_UPDATES]
        if self.json_mode and query.get("subscribe"):
            wanted = [s for s in query["subscribe"][0].split(",") if s.strip()] or wanted
        await self.accept()
        errors = await self._join(wanted)
        if self.json_mode:
            await self._send_json({"type": "subscribed", "subscriptions": sorted(self.subscriptions), "errors": errors})
        else:
            # The confirmation is a fragment too: it turns the page's "connecting" badge into "live".
            html = render_to_string("providers/live_status.html", {"subscriptions": sorted(self.subscriptions)})
            await self.send(text_data=html)

    async def disconnect(self, code: int) -> None:
        for group in set(getattr(self, "subscriptions", {}).values()):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def _join(self, names: list[str]) -> list[str]:
        errors = []
        for name in names:
            name = name.strip()
            if name in self.subscriptions:
                continue
            if len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
                errors.append(f"at most {MAX_SUBSCRIPTIONS} subscriptions")
                break
            try:
                group = group_for(name)
            except BadSubscription as exc:
                errors.append(str(exc))
                continue
            self.subscriptions[name] = group
            await self.channel_layer.group_add(group, self.channel_name)
        return errors

    async def _leave(self, names: list[str]) -> None:
        for name in names:
            group = self.subscriptions.pop(name.strip(), None)
            if group is not None and group not in self.subscriptions.values():
                await self.channel_layer.group_discard(group, self.channel_name)

    async def _send_json(self, content: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(content, separators=(",", ":")))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not self.json_mode:
            return  # htmx pages only listen
        if text_data is None or len(text_data) > MAX_MESSAGE_BYTES:
            await self._send_json({"type": "error", "field": "message", "reason": f"send JSON text of at most {MAX_MESSAGE_BYTES} bytes"})
            return
        try:
            message = json.loads(text_data)
            if not isinstance(message, dict):
                raise ValueError
        except ValueError:
            await self._send_json({"type": "error", "field": "message", "reason": "not a JSON object"})
            return
        action = message.get("action")
        if action == "ping":
            await self._send_json({"type": "pong"})
            return
        if action in ("subscribe", "unsubscribe"):
            names = message.get("subscriptions")
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                await self._send_json({"type": "error", "field": "subscriptions", "reason": "expected a list of subscription names"})
                return
            errors = await self._join(names) if action == "subscribe" else (await self._leave(names)) or []
            await self._send_json({"type": "subscribed", "subscriptions": sorted(self.subscriptions), "errors": errors})
            return
        await self._send_json({"type": "error", "field": "action", "reason": "use subscribe, unsubscribe or ping"})

    # Group messages. HTML pages get the rendered rows; JSON clients get data.
    async def price_rows(self, event: dict[str, Any]) -> None:
        if not self.json_mode:
            await self.send(text_data=event["html"])

    async def offers_changed(self, event: dict[str, Any]) -> None:
        if self.json_mode:
            await self._send_json({"type": "offers.changed", "payload": event["payload"]})

    async def price_alert(self, event: dict[str, Any]) -> None:
        if self.json_mode:
            await self._send_json({"type": "price.alert", "payload": event["payload"]})

    async def provider_health(self, event: dict[str, Any]) -> None:
        if self.json_mode:
            await self._send_json({"type": "provider.health", "payload": event["payload"]})
