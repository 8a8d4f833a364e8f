"""Base for GPUBROKER's middleware that serve both sync and async stacks without a thread hop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest


class HybridMiddleware:
    """Sync and async capable: under ASGI `is_async` is true and `__call__` must return the
    coroutine of the subclass's async variant, so Django never adapts it in a thread."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)
