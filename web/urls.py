from django.urls import include, path

from billing import views as billing_views
from web import metrics
from web.accounts import activation_view, signup_view
from web.api import api, unknown_path
from web.views import account, browse, dashboard, health, public, sandbox

urlpatterns = [
    path("", public.landing, name="landing"),
    path("health", health.health, name="health"),
    path("terms/", public.terms, name="terms"),
    path("privacy/", public.privacy, name="privacy"),
    path("plans/", billing_views.plans, name="plans"),
    path("dashboard/", dashboard.dashboard, name="dashboard"),
    path("settings/", account.settings_page, name="settings"),
    path("settings/api-keys/", account.create_api_key, name="api_key_create"),
    path("settings/api-keys/<int:key_id>/revoke/", account.revoke_api_key, name="api_key_revoke"),
    path("billing/", include("billing.urls")),
    path("pods/", include("pods.urls")),
    # Before allauth's own: the same link, with pages telling expired, used and broken apart.
    path("accounts/confirm-email/<str:key>/", activation_view, name="account_confirm_email"),
    path("accounts/signup/", signup_view, name="account_signup"),  # knows the plan it came from
    path("accounts/", include("allauth.urls")),
    path("api/v2/", api.urls),
    path("api/v2/<path:rest>", unknown_path),
    path("sandbox/mailbox/", sandbox.mailbox, name="sandbox_mailbox"),
    path("sandbox/mailbox/<str:message_id>/", sandbox.message, name="sandbox_message"),
    path("metrics", metrics.metrics, name="metrics"),
    path("browse/", browse.browse, name="browse"),
]

# A saturated or unreachable database answers 503 with Retry-After, not 500 (web/overload.py).
handler500 = "web.overload.server_error"
