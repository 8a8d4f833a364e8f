"""What the pages say is true: lowest prices are the lowest, ✓ means included, limits read right."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client

from billing.models import Plan
from providers.catalog import best_offers
from providers.models import Availability, Offer
from tests.accounts_and_billing import member, user  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db


def row_html(page: str, row_id: str) -> str:
    start = page.index(f'id="{row_id}"')
    return page[start : page.index("</tr>", start)]


def test_lowest_price_is_the_cheapest_offer_with_capacity_and_best_match_is_labelled(client: Client, catalog: None) -> None:
    offers = Offer.objects.filter(gpu_type="H100 80GB")
    cheapest = min((o for o in offers if o.availability_status != Availability.UNAVAILABLE), key=lambda o: o.price_per_gpu_hour)
    # Make the cheapest one plainly the lowest, and an even cheaper one without capacity that must not count.
    Offer.objects.filter(pk=cheapest.pk).update(price_per_hour=Decimal("0.0100") * cheapest.gpu_count)
    gone = offers.exclude(pk=cheapest.pk).first()
    Offer.objects.filter(pk=gone.pk).update(price_per_hour=Decimal("0.0050") * gone.gpu_count, availability_status=Availability.UNAVAILABLE)
    row = best_offers(["H100 80GB"])[0]
    assert row.lowest.offer_id == cheapest.pk and row.lowest.price_per_gpu_hour == Decimal("0.01")

    page = client.get("/").content.decode()
    assert ">Lowest price</th>" in page and ">Best match</th>" in page and "Best price" not in page
    html = row_html(page, row.row_id)
    lowest = re.search(r'data-testid="lowest-price">.*?<span class="price">\$([\d.]+)</span>', html).group(1)
    match = re.search(r'data-testid="best-match"><span class="price">\$([\d.]+)</span>', html).group(1)
    assert lowest == "0.01" and match == str(row.price_per_gpu_hour)


def test_regions_show_one_style_with_the_raw_name_on_hover(client: Client, catalog: None) -> None:
    Offer.objects.filter(gpu_type="H100 80GB").update(price_per_hour=Decimal("99"))
    cheapest = Offer.objects.filter(gpu_type="H100 80GB").first()
    Offer.objects.filter(pk=cheapest.pk).update(region="CA-MTL-1", availability_status=Availability.AVAILABLE, price_per_hour=Decimal("0.01"))
    html = row_html(client.get("/").content.decode(), "gpu-row-h100-80gb")
    assert '<span class="region" title="Provider\'s name: CA-MTL-1">Montreal 1, Canada</span>' in html
    assert "any region" not in html and ">default<" not in html


def test_the_plans_page_marks_features_truthfully(client: Client) -> None:
    page = client.get("/plans/").content.decode()
    free = page[page.index('data-plan="free"') : page.index('data-plan="pro"')]
    enterprise = page[page.index('data-plan="enterprise"') :]
    assert '<li class="feature feature--no"><span class="visually-hidden">Not included: </span>Signed webhooks</li>' in free
    assert '<li class="feature feature--yes">Signed webhooks</li>' in enterprise
    compare = page[page.index('<th scope="row">Signed webhooks</th>') :]
    compare = compare[: compare.index("</tr>")]
    marks = re.findall(r'mark--(yes|no)', compare)
    assert marks == ["yes" if plan.webhooks else "no" for plan in Plan.objects.offered()]


def test_sign_up_for_a_plan_carries_the_plan(client: Client) -> None:
    page = client.get("/plans/").content.decode()
    assert 'href="/accounts/signup/?next=/plans/%3Fplan%3Dpro"' in page
    signup = client.get("/accounts/signup/?next=/plans/%3Fplan%3Dpro").content.decode()
    assert 'data-testid="chosen-plan"' in signup and "You chose <strong>Pro</strong> ($49 / month)" in signup


def test_the_dashboard_says_which_plans_have_what_this_one_lacks(member: Client) -> None:  # noqa: F811
    page = member.get("/dashboard/").content.decode()
    stat = page[page.index('data-testid="limit-webhooks"') :]
    stat = stat[: stat.index("</div>")]
    assert "Not on Free" in stat and "Available on Enterprise" in stat
    assert 'href="/browse/">Browse live GPU prices' in page


def test_a_cancelled_checkout_says_what_happened_and_what_to_do(member: Client) -> None:  # noqa: F811
    page = member.get("/billing/checkout-canceled/?attempt=not-a-uuid").content.decode()
    assert "closed without a payment. Nothing was charged; you are still on Free." in page
    assert "If your card was declined" in page and "without paying" not in page


def test_terms_and_privacy_are_real_pages(client: Client) -> None:
    terms = client.get("/terms/")
    privacy = client.get("/privacy/")
    assert terms.status_code == privacy.status_code == 200
    assert "Plans and payment" in terms.content.decode() and "never see or store your card number" in terms.content.decode()
    assert "SHA-256 hash" in privacy.content.decode() and "no advertising or tracking cookies" in privacy.content.decode()
