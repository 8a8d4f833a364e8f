"""The one NinjaAPI of GPUBROKER, under /api/v2 (OpenAPI docs at /api/v2/docs).

Errors share one shape: `{"error": "...", "errors": [{"field": ..., "reason": ...}]}`; invalid
parameters are a 422 naming each field and why, never a 500.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import HttpError, ValidationError

from billing.api import router as account_router
from pods.api import router as rentals_router
from providers.api import analytics, router as offers
from providers.query import QueryError

api = NinjaAPI(
    title="GPUBROKER API",
    version="2",
    description="Live GPU offers across providers: filter, rank, decide, watch.",
    urls_namespace="api-v2",
)
api.add_router("", offers)
api.add_router("", analytics)
api.add_router("", account_router)
api.add_router("", rentals_router)


def _field(loc: list[object]) -> str:
    # ninja prefixes the source ("query", "body", "path") and the schema's parameter name.
    parts = [str(p) for p in loc if p not in ("query", "body", "path", "params", "header")]
    return ".".join(parts) or "request"


def _error(error: dict[str, object]) -> dict[str, str]:
    field, reason = _field(list(error.get("loc", ()))), str(error.get("msg", "invalid"))
    # Checks across fields are written "field: reason" (pydantic prefixes "Value error, ").
    reason = reason.removeprefix("Value error, ")
    named, sep, rest = reason.partition(": ")
    if sep and named.isidentifier():
        field, reason = (f"{field}.{named}" if field != "request" else named), rest
    return {"field": field, "reason": reason}


@api.exception_handler(ValidationError)
def validation_failed(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    return api.create_response(request, {"error": "invalid parameters", "errors": [_error(e) for e in exc.errors]}, status=422)


@api.exception_handler(HttpError)
def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    # ninja raises HttpError(400, "Cannot parse request body") for a body that is not JSON.
    body: dict[str, object] = {"error": str(exc)}
    if exc.status_code == 400 and "parse request body" in str(exc):
        body["errors"] = [{"field": "body", "reason": "not valid JSON"}]
    return api.create_response(request, body, status=exc.status_code)


@api.exception_handler(QueryError)
def query_failed(request: HttpRequest, exc: QueryError) -> HttpResponse:
    return api.create_response(request, {"error": "invalid parameters", "errors": [{"field": exc.field, "reason": exc.reason}]}, status=422)
