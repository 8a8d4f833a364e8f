"""Telling open pages that a pod changed: one Channels group per rental."""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger("gpubroker.pods")


def group(rental_id: int) -> str:
    return f"rental.{rental_id}"


def announce(rental_id: int) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group(rental_id), {"type": "rental.changed", "rental": rental_id})
    except Exception:  # a page not updating must never undo or fail a transition
        log.warning("could not announce rental %s", rental_id, exc_info=True)
