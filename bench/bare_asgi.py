"""The baseline: a bare Django view returning prebuilt bytes, no middleware, under the same server.

Served as `uvicorn bench.bare_asgi:application` with BENCH_BODY_FILE naming the bytes to return.
"""

import os

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import path

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    SECRET_KEY="bench-only-not-a-secret",
)

with open(os.environ["BENCH_BODY_FILE"], "rb") as handle:
    BODY = handle.read()


def offers(request: HttpRequest) -> HttpResponse:
    return HttpResponse(BODY, content_type="application/json")


urlpatterns = [path("api/v2/providers", offers)]

from django.core.asgi import get_asgi_application  # noqa: E402

application = get_asgi_application()
