"""Public pages: what a visitor sees before signing in."""

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET

from providers.catalog import best_offers, featured_gpu_types
from providers.models import Offer, Provider
from providers.query import staleness
from web.pagecache import catalog_memo, shareable, shared_page


def landing_catalog() -> dict[str, Any]:
    """What the landing page shows of the catalog: the same for everyone, rebuilt when prices change."""
    return {
        "rows": best_offers(featured_gpu_types()),
        "providers": list(Provider.objects.all()),
        "offer_count": Offer.objects.count(),
        "stale_since": staleness(),
    }


@require_GET
def landing(request: HttpRequest) -> HttpResponse:
    template = "pages/landing.html#pricing-table" if request.htmx else "pages/landing.html"
    if shareable(request):
        return shared_page(request, f"landing:{template}", lambda extra: (render_to_string(template, {**landing_catalog(), **extra}), 200))
    return render(request, template, catalog_memo("landing", landing_catalog))


@require_GET
def terms(request: HttpRequest) -> HttpResponse:
    return render(request, "pages/terms.html")


@require_GET
def privacy(request: HttpRequest) -> HttpResponse:
    return render(request, "pages/privacy.html")
