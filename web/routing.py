"""Every app's websocket routes, gathered for `web.asgi`."""

from providers.routing import websocket_urlpatterns as provider_routes

websocket_urlpatterns = [*provider_routes]
