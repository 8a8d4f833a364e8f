"""A database that is saturated or unreachable answers 503 with Retry-After, never 500.

Every PostgreSQL connection comes from a bounded pool (and SQLite from a bounded gate,
web/db/sqlite3): when all are busy a request waits DATABASE_POOL_TIMEOUT seconds, then the
driver raises an OperationalError. So does a database that is restarting. Wherever that happens
(a view, a middleware saving the session, a template's context processor), Django hands it to
`handler500`; this one tells those apart from real bugs and answers them as a temporary refusal:
JSON in the API's error shape under /api/v2, a plain page elsewhere. The page is rendered without
context processors, since they may need the database that just failed.
"""

from __future__ import annotations

import logging
import sys

import orjson
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, HttpResponseServerError
from django.template import loader
from django.views.defaults import server_error as django_server_error

logger = logging.getLogger("gpubroker.overload")

RETRY_AFTER_SECONDS = 1
API_PREFIX = "/api/"


def database_unavailable(exc: BaseException | None) -> bool:
    """True for a connection that could not be had (pool timeout, server down or restarting)."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, OperationalError | InterfaceError):
            return True
        exc, seen = exc.__cause__, seen + 1
    return False


def busy_response(request: HttpRequest) -> HttpResponse:
    if request.path.startswith(API_PREFIX):
        body = {"error": "service busy", "errors": [{"field": "database", "reason": "no database connection came free in time; retry shortly"}]}
        response = HttpResponse(orjson.dumps(body), content_type="application/json", status=503)
    else:
        html = loader.get_template("503.html").render({"retry_after": RETRY_AFTER_SECONDS, "path": request.path})
        response = HttpResponse(html, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response


def server_error(request: HttpRequest, template_name: str = "500.html") -> HttpResponse:
    """Django's handler500, called inside the `except` that caught the error."""
    exc = sys.exc_info()[1]
    if database_unavailable(exc):
        logger.warning("database unavailable for %s %s: %s", request.method, request.path, type(exc).__name__)
        return busy_response(request)
    response = django_server_error(request, template_name)
    return response if isinstance(response, HttpResponse) else HttpResponseServerError()
