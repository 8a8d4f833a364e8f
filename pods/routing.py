from django.urls import path

from pods.consumers import RentalConsumer

websocket_urlpatterns = [
    path("ws/rentals/<int:rental_id>/", RentalConsumer.as_asgi()),
]
