from django.urls import path

from web import metrics
from web.api import api
from web.views import browse, health, public

urlpatterns = [
    path("", public.landing, name="landing"),
    path("health", health.health, name="health"),
    path("api/v2/", api.urls),
    path("metrics", metrics.metrics, name="metrics"),
    path("browse/", browse.browse, name="browse"),
]
