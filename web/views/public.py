"""Public pages: what a visitor sees before signing in."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from providers.catalog import best_offers, featured_gpu_types
from providers.models import Offer, Provider
from providers.query import staleness


@require_GET
def landing(request: HttpRequest) -> HttpResponse:
    rows = best_offers(featured_gpu_types())
    context = {
        "rows": rows,
        "providers": Provider.objects.all(),
        "offer_count": Offer.objects.count(),
        "stale_since": staleness(),
    }
    template = "pages/landing.html#pricing-table" if request.htmx else "pages/landing.html"
    return render(request, template, context)


@require_GET
def terms(request: HttpRequest) -> HttpResponse:
    return render(request, "pages/terms.html")


@require_GET
def privacy(request: HttpRequest) -> HttpResponse:
    return render(request, "pages/privacy.html")
