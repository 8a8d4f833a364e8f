from django.urls import path

from web.views import health, public

urlpatterns = [
    path("", public.landing, name="landing"),
    path("health", health.health, name="health"),
]
