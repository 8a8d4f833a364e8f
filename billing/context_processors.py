from __future__ import annotations

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from billing.entitlements import standing


def plan(request: HttpRequest) -> dict[str, object]:
    """`billing_standing` for the signed-in layout's plan badge; read only when a page uses it."""
    return {"billing_standing": SimpleLazyObject(lambda: standing(request.user))}
