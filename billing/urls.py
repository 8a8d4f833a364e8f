from django.urls import path

from billing import views

app_name = "billing"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("checkout/<slug:slug>/", views.start_checkout, name="checkout"),
    path("checkout-complete/", views.success, name="success"),
    path("checkout-canceled/", views.checkout_canceled, name="checkout_canceled"),
    path("change/<slug:slug>/", views.change_plan, name="change"),
    path("cancel/", views.cancel, name="cancel"),
    path("resume/", views.resume, name="resume"),
    path("portal/", views.portal, name="portal"),
    path("top-up/", views.start_topup, name="topup"),
    path("top-up/complete/", views.topup_complete, name="topup_complete"),
    path("stripe/webhook/", views.stripe_webhook, name="stripe_webhook"),
]
