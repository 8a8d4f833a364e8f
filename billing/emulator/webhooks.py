"""Signs events as Stripe does and delivers them, retrying with backoff like Stripe."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

log = logging.getLogger("gpubroker.billing.emulator")

# Stripe retries failed deliveries for days; the sandbox compresses that into a minute.
RETRY_DELAYS_SECONDS = (1, 2, 4, 8, 15, 30)


def signature_header(payload: str, secret: str, timestamp: int | None = None) -> str:
    """`t=<unix>,v1=<hex HMAC-SHA256 of "t.payload" keyed by the whsec_ secret>`."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.{payload}".encode("utf-8"), hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def encode(event: dict[str, Any]) -> str:
    return json.dumps(event, indent=2)  # Stripe sends pretty-printed JSON


class WebhookSender:
    """Delivers events in order to one endpoint from a background thread; or keeps them.

    Without an endpoint URL (the unit tests) every signed delivery is kept in `outbox` as
    (payload, Stripe-Signature) for the test to hand to the app itself.
    """

    def __init__(self, secret: str, url: str | None = None, post: Callable[..., Any] | None = None) -> None:
        self.secret = secret
        self.url = url
        self.outbox: list[tuple[str, str]] = []
        self.delivered: list[str] = []
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._post = post or httpx.post
        self._thread: threading.Thread | None = None
        if url:
            self._thread = threading.Thread(target=self._run, name="stripe-emulator-webhooks", daemon=True)
            self._thread.start()

    def send(self, event: dict[str, Any]) -> None:
        if self.url:
            self._queue.put(event)
        else:
            payload = encode(event)
            self.outbox.append((payload, signature_header(payload, self.secret)))

    def take(self) -> list[tuple[str, str]]:
        taken, self.outbox = self.outbox, []
        return taken

    def idle(self) -> bool:
        return self._queue.unfinished_tasks == 0

    def close(self) -> None:
        if self._thread:
            self._queue.put(None)
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            try:
                if event is None:
                    return
                self._deliver(event)
            finally:
                self._queue.task_done()

    def _deliver(self, event: dict[str, Any]) -> None:
        payload = encode(event)
        for attempt, delay in enumerate((0, *RETRY_DELAYS_SECONDS)):
            time.sleep(delay)
            headers = {
                "Content-Type": "application/json; charset=utf-8",
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                "Stripe-Signature": signature_header(payload, self.secret),  # fresh timestamp per attempt
            }
            try:
                response = self._post(self.url, content=payload.encode(), headers=headers, timeout=10)
                if 200 <= response.status_code < 300:
                    self.delivered.append(event["id"])
                    return
                log.warning("webhook %s %s: endpoint answered %s (attempt %d)", event["id"], event["type"], response.status_code, attempt + 1)
            except httpx.HTTPError as exc:
                log.warning("webhook %s %s: %s (attempt %d)", event["id"], event["type"], exc, attempt + 1)
        log.error("webhook %s %s: gave up after %d attempts", event["id"], event["type"], len(RETRY_DELAYS_SECONDS) + 1)
