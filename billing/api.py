"""API-key authentication for the JSON API, and the key holder's account and plan limits."""

from __future__ import annotations

from datetime import timedelta

from django.http import HttpRequest
from django.utils import timezone
from ninja import Router, Schema
from ninja.security import APIKeyHeader, HttpBearer

from billing.models import ApiKey

# last_used_at is for people, not accounting: write it at most once a minute per key.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _authenticate(raw: str | None) -> ApiKey | None:
    api_key = ApiKey.objects.authenticate(raw or "")
    if api_key is None:
        return None
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    return api_key


class ApiKeyAuth(APIKeyHeader):
    """`X-API-Key: gpb_…`; `request.auth` is the ApiKey, whose `.plan` is the owner's plan now."""

    param_name = "X-API-Key"

    def authenticate(self, request: HttpRequest, key: str | None) -> ApiKey | None:
        return _authenticate(key)


class BearerKeyAuth(HttpBearer):
    """The same key as `Authorization: Bearer gpb_…`, the way most HTTP clients send a token."""

    def authenticate(self, request: HttpRequest, token: str) -> ApiKey | None:
        return _authenticate(token)


# Either header; ninja tries them in order.
API_KEY_AUTH = [ApiKeyAuth(), BearerKeyAuth()]


class PlanOut(Schema):
    slug: str
    name: str
    requests_per_second: int
    max_pods: int | None
    webhooks: bool


class AccountOut(Schema):
    email: str
    key_prefix: str
    plan: PlanOut


router = Router(tags=["account"])


@router.get("/account", auth=API_KEY_AUTH, response=AccountOut, summary="The key's owner and the plan tier it carries")
def account(request: HttpRequest) -> dict[str, object]:
    key: ApiKey = request.auth  # type: ignore[attr-defined]
    plan = key.plan
    return {
        "email": key.user.email,
        "key_prefix": key.prefix,
        "plan": {"slug": plan.slug, "name": plan.name, "requests_per_second": plan.requests_per_second, "max_pods": plan.max_pods, "webhooks": plan.webhooks},
    }
