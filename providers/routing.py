from django.urls import path

from providers.consumers import PriceFeedConsumer

websocket_urlpatterns = [
    path("ws/providers/", PriceFeedConsumer.as_asgi()),
    path("ws/providers/<slug:provider>/", PriceFeedConsumer.as_asgi()),
]
