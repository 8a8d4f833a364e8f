"""Every app's websocket routes, gathered for `web.asgi`."""

from pods.routing import websocket_urlpatterns as rental_routes
from providers.routing import websocket_urlpatterns as provider_routes

websocket_urlpatterns = [*provider_routes, *rental_routes]
