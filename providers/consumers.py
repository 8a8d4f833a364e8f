"""Live offers over websockets: `/ws/providers/` and `/ws/providers/{provider}/`.

Two dialects on the same routes, chosen by the query string:

- HTML (default, for htmx pages): joins `price_updates`; the confirmation is the live badge
  fragment and every message is HTML whose top-level elements carry ids (the landing rows).
  Pages only listen: what they send is ignored.
- JSON (`?format=json`, for API clients and the browse page): the confirmation is
  `{"type": "subscribed", "subscriptions": [...], "errors": [...]}`; then `offers.changed`,
  `price.alert` and `provider.health` messages `{"type": ..., "payload": {...}}`. Clients send
  `{"action": "subscribe" | "unsubscribe", "subscriptions": ["gpu:H100 80GB", ...]}` and
  `{"action": "ping"}` (answered `{"type": "pong"}`). Anything else gets
  `{"type": "error", "field": ..., "reason": ...}` and the socket stays open.

Initial subscriptions: `?subscribe=a,b` (JSON), else `price_updates`; on
`/ws/providers/{provider}/` the provider's own group instead.

Group messages reach the socket through this process's fan-out hub (`providers.fanout`), not a
channel-layer receive per socket. Close codes: 4008 when the client stopped reading and its queue
overflowed, 4029 when a connection cap refused it (JSON clients get an `error` first, with
`field: "connection"`), 1009 (from the server) for a frame over 64 KiB.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs

import orjson
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.template.loader import render_to_string

from providers import fanout
from providers.groups import PRICE_UPDATES, BadSubscription, group_for

logger = logging.getLogger("gpubroker.consumers")

MAX_SUBSCRIPTIONS = 50
MAX_MESSAGE_BYTES = 4096
MAX_SUBSCRIBE_CHARS = 2048  # ?subscribe= longer than this is refused whole, with one error
MAX_ERRORS = 5  # errors listed per answer; the rest are summed up in one more line
CLOSE_TOO_SLOW = 4008
CLOSE_REFUSED = 4029
JSON_TYPES = ("offers.changed", "price.alert", "provider.health")


def json_frame(message: dict[str, Any]) -> str | None:
    if message.get("type") not in JSON_TYPES:
        return None
    return orjson.dumps({"type": message["type"], "payload": message.get("payload")}).decode()


def html_frame(message: dict[str, Any]) -> str | None:
    return message.get("html") if message.get("type") == "price.rows" else None


def _bounded(errors: list[str]) -> list[str]:
    unique = list(dict.fromkeys(errors))
    if len(unique) <= MAX_ERRORS:
        return unique
    return [*unique[:MAX_ERRORS], f"and {len(unique) - MAX_ERRORS} more refused subscriptions"]


class PriceFeedConsumer(AsyncWebsocketConsumer):
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Channels would give every socket its own channel and a blocking layer receive; here the
        # process's hub reads the layer once and this socket only reads its own bounded feed.
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        self.feed: fanout.Feed | None = None
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass
        finally:
            await self._close_feed()

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Only the client's own events arrive here, and none of them touches the database, so
        # Channels' per-message database clean-up (a thread hop each) is not needed.
        kind = message["type"]
        if kind == "websocket.connect":
            await self.websocket_connect(message)
        elif kind == "websocket.receive":
            await self.websocket_receive(message)
        elif kind == "websocket.disconnect":
            await self.websocket_disconnect(message)

    async def connect(self) -> None:
        query = parse_qs(self.scope.get("query_string", b"").decode("utf-8", "replace"))
        self.json_mode = query.get("format", [""])[0] == "json"
        self.subscriptions: dict[str, str] = {}  # subscription as the client named it -> group
        client = self.scope.get("client")
        try:
            self.feed = fanout.hub().open(client[0] if client else None, "websocket")
        except fanout.Refused as refused:
            await self.accept()
            if self.json_mode:
                await self._send_json({"type": "error", "field": "connection", "reason": refused.message})
            await self.close(code=CLOSE_REFUSED, reason=refused.message[:120])
            return
        provider = self.scope["url_route"]["kwargs"].get("provider")
        wanted = [f"provider:{provider}"] if provider else [PRICE_UPDATES]
        errors: list[str] = []
        raw = query.get("subscribe", [""])[0] if self.json_mode else ""
        if len(raw) > MAX_SUBSCRIBE_CHARS:
            wanted, errors = [], [f"subscribe: at most {MAX_SUBSCRIBE_CHARS} characters, got {len(raw)}"]
        elif raw:
            wanted = [s for s in raw.split(",") if s.strip()] or wanted
        await self.accept()
        errors += await self._join(wanted)
        if self.json_mode:
            await self._send_json({"type": "subscribed", "subscriptions": sorted(self.subscriptions), "errors": _bounded(errors)})
        else:
            # The confirmation is a fragment too: it turns the page's "connecting" badge into "live".
            html = render_to_string("providers/live_status.html", {"subscriptions": sorted(self.subscriptions)})
            await self.send(text_data=html)
        dialect, render = ("json", json_frame) if self.json_mode else ("html", html_frame)

        async def deliver(broadcast: fanout.Broadcast) -> None:
            frame = broadcast.frame(dialect, render)
            if frame is not None:
                await self.base_send({"type": "websocket.send", "text": frame})

        async def too_slow() -> None:
            await self.close(code=CLOSE_TOO_SLOW, reason="too slow: messages were waiting faster than they were read; reconnect")

        self.feed.push_to(deliver, too_slow)

    async def disconnect(self, code: int) -> None:
        await self._close_feed()

    async def _close_feed(self) -> None:
        if self.feed is not None:
            self.feed.stop_writing()
            await fanout.hub().close(self.feed)

    async def _join(self, names: list[str]) -> list[str]:
        assert self.feed is not None
        if len(names) > MAX_SUBSCRIPTIONS:
            return [f"at most {MAX_SUBSCRIPTIONS} subscriptions per request, got {len(names)}"]
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
            try:
                await fanout.hub().join(self.feed, group)
            except Exception:
                logger.warning("cannot join group %s", group, exc_info=True)
                errors.append("live updates are unavailable right now; retry shortly")
                break
            self.subscriptions[name] = group
        return errors

    async def _leave(self, names: list[str]) -> None:
        assert self.feed is not None
        for name in names:
            group = self.subscriptions.pop(name.strip(), None)
            if group is not None and group not in self.subscriptions.values():
                await fanout.hub().leave(self.feed, [group])

    async def _send_json(self, content: dict[str, Any]) -> None:
        await self.send(text_data=orjson.dumps(content).decode())

    async def _error(self, field: str, reason: str) -> None:
        await self._send_json({"type": "error", "field": field, "reason": reason})

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not self.json_mode or self.feed is None:
            return  # htmx pages only listen; a refused socket is closing
        if text_data is None or len(text_data) > MAX_MESSAGE_BYTES or len(text_data.encode()) > MAX_MESSAGE_BYTES:
            await self._error("message", f"send JSON text of at most {MAX_MESSAGE_BYTES} bytes")
            return
        try:
            # orjson refuses nesting deeper than 1024 with a ValueError; json.loads would recurse.
            message = orjson.loads(text_data)
            if not isinstance(message, dict):
                raise ValueError
        except ValueError:
            await self._error("message", "not a JSON object")
            return
        action = message.get("action")
        if action == "ping":
            await self._send_json({"type": "pong"})
            return
        if action in ("subscribe", "unsubscribe"):
            names = message.get("subscriptions")
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                await self._error("subscriptions", "expected a list of subscription names")
                return
            errors = await self._join(names) if action == "subscribe" else (await self._leave(names)) or []
            await self._send_json({"type": "subscribed", "subscriptions": sorted(self.subscriptions), "errors": _bounded(errors)})
            return
        await self._error("action", "use subscribe, unsubscribe or ping")
