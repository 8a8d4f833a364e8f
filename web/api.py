"""The one NinjaAPI of GPUBROKER, under /api/v2 (OpenAPI docs at /api/v2/docs).

Errors share one shape: `{"error": "...", "errors": [{"field": ..., "reason": ...}]}`; invalid
parameters are a 422 naming each field and why, never a 500.
"""

from __future__ import annotations

import logging
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from billing.api import router as account_router
from pods.api import router as rentals_router
from providers.api import analytics, router as offers
from providers.query import QueryError

logger = logging.getLogger("gpubroker.api")

ERROR_SCHEMA = {
    "type": "object", "required": ["error"],
    "properties": {
        "error": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object", "required": ["field", "reason"],
                                              "properties": {"field": {"type": "string"}, "reason": {"type": "string"}}}},
    },
}
# Answers any operation can give besides its own: documented on every operation, so a client (and
# the fuzzer in tests/test_api_fuzz.py) knows each status it may meet.
COMMON_ERRORS = {
    "429": "Over the plan's rate (Retry-After says when to retry)",
    "500": "Unexpected server error (the same JSON shape; nothing is half-done)",
}


class GpubrokerAPI(NinjaAPI):
    def get_openapi_schema(self, *, path_prefix: str | None = None, path_params: dict[str, Any] | None = None) -> Any:
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        for methods in schema["paths"].values():
            for operation in methods.values():
                # An operation whose parameters depend on each other describes them itself.
                if "x-parameters" in operation:
                    operation["parameters"] = operation.pop("x-parameters")
                responses = operation.setdefault("responses", {})
                errors = dict(COMMON_ERRORS)
                if operation.get("parameters") or operation.get("requestBody"):
                    errors["422"] = "Invalid parameters: each field and why"
                if operation.get("requestBody"):
                    errors["400"] = "The body is not JSON"
                if operation.get("security"):
                    errors["401"] = "No valid X-API-Key"
                for status, description in errors.items():
                    responses.setdefault(status, {"description": description, "content": {"application/json": {"schema": ERROR_SCHEMA}}})
        return schema

api = GpubrokerAPI(
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
    if sep and all(part.isidentifier() or part.isdigit() for part in named.split(".")):
        if field == "request":
            field = named
        elif field != named and not field.endswith("." + named):
            field = f"{field}.{named}"
        reason = rest
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
    error = "invalid parameters" if exc.status == 422 else "not found"
    return api.create_response(request, {"error": error, "errors": [{"field": exc.field, "reason": exc.reason}]}, status=exc.status)


@api.exception_handler(AuthenticationError)
def unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    body = {"error": "unauthorized", "errors": [{"field": "X-API-Key", "reason": "missing, unknown or revoked API key"}]}
    return api.create_response(request, body, status=401)


@api.exception_handler(Exception)
def unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    # An API client gets JSON even for a bug, never Django's HTML page (and no internals).
    logger.exception("unhandled error in %s %s", request.method, request.path)
    return api.create_response(request, {"error": "internal error", "errors": []}, status=500)


def unknown_path(request: HttpRequest, rest: str) -> HttpResponse:
    """Any other path under /api/v2: the API's JSON 404, not Django's HTML page."""
    body = {"error": "not found", "errors": [{"field": "path", "reason": "no API operation here; the operations are listed at /api/v2/docs"}]}
    return JsonResponse(body, status=404)
