"""Is a request from this machine? For what only its operator may see without signing in as staff."""

from __future__ import annotations

import ipaddress

from django.http import HttpRequest


def from_this_machine(request: HttpRequest) -> bool:
    """A loopback peer that no proxy relayed (a proxy on this host would make everyone local)."""
    if "HTTP_X_FORWARDED_FOR" in request.META or "HTTP_FORWARDED" in request.META:
        return False
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


def local_or_staff(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    return from_this_machine(request) or bool(user and user.is_staff)
