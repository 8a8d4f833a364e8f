"""The one JSON API (django-ninja) under /api/v2; each app contributes its routers."""

from ninja import NinjaAPI

from billing.api import router as account_router

api = NinjaAPI(title="GPUBROKER API", version="2", urls_namespace="api")
api.add_router("/", account_router)
