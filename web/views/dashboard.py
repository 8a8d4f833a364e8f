"""The signed-in home: the plan, what it allows, and where to go next."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from billing.entitlements import standing
from billing.models import ApiKey, Plan
from pods.summary import overview as pods_overview


@login_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    local, _, domain = request.user.email.partition("@")
    context = {
        "standing": standing(request.user),
        "api_key_count": ApiKey.objects.filter(user=request.user).active().count(),
        # Where a missing feature can be had, named as an offer ("on Enterprise"), not as a plan.
        "webhook_plans": [plan.name for plan in Plan.objects.offered() if plan.webhooks],
        "email_parts": (local, domain),
        **pods_overview(request.user),
    }
    return render(request, "pages/dashboard.html#my-pods" if request.htmx else "pages/dashboard.html", context)
