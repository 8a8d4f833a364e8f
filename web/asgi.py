"""ASGI entry point: HTTP through Django, websockets through Channels (served by daphne)."""

import os
import sys
from importlib import import_module

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "web.settings")

from web.config import ConfigError  # noqa: E402

try:
    import_module(os.environ["DJANGO_SETTINGS_MODULE"])
except ConfigError as exc:
    sys.exit(f"GPUBROKER configuration error: {exc}")

from django.core.asgi import get_asgi_application  # noqa: E402

# Sets Django up; must run before anything imports models (consumers, routing).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from django.conf import settings  # noqa: E402

from web.embedded import with_embedded_worker  # noqa: E402
from web.fastpath import FastPath  # noqa: E402
from web.routing import websocket_urlpatterns  # noqa: E402

application = with_embedded_worker(
    ProtocolTypeRouter(
        {
            # The hottest cached read skips Django's ASGI handler once Django has answered it (web.fastpath).
            "http": FastPath(django_asgi_app) if settings.FASTPATH_ENABLED else django_asgi_app,
            "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
        }
    )
)
