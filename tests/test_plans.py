"""Plans are data seeded by a migration; the plans page compares them and routes each choice."""

from __future__ import annotations

import pytest
from django.test import Client

from billing.models import Plan

pytestmark = pytest.mark.django_db


def test_the_three_plans_are_seeded_with_the_specified_limits() -> None:
    plans = {p.slug: (p.price_cents, p.requests_per_second, p.max_pods, p.webhooks) for p in Plan.objects.all()}
    assert plans == {
        "free": (0, 10, 1, False),
        "pro": (4900, 100, 10, False),
        "enterprise": (49900, 1000, None, True),
    }


def test_the_plans_page_compares_the_plans() -> None:
    page = Client().get("/plans/").content.decode()
    assert 'aria-label="Plan comparison"' in page
    for text in ("$49", "$499", "10 req/s", "100 req/s", "1000 req/s", "Unlimited"):
        assert text in page


def test_a_visitor_is_asked_to_sign_up_and_a_member_gets_checkout_buttons(member: Client) -> None:
    visitor = Client().get("/plans/").content.decode()
    assert "Start free" in visitor and "Sign up for Pro" in visitor and 'name="attempt"' not in visitor
    member = member.get("/plans/").content.decode()
    assert 'action="/billing/checkout/pro/"' in member and 'action="/billing/checkout/enterprise/"' in member
    assert "Your plan" in member  # Free is theirs


def test_free_goes_straight_to_the_dashboard(member: Client) -> None:
    Plan.objects.filter(slug="free").update(sort_order=0)
    page = Client().get("/plans/").content.decode()
    assert 'href="/accounts/signup/"' in page
    member.get("/plans/")
    assert member.get("/dashboard/").status_code == 200


def test_staff_changes_to_a_plan_show_on_the_page() -> None:
    Plan.objects.filter(slug="pro").update(price_cents=5900, requests_per_second=150)
    page = Client().get("/plans/").content.decode()
    assert "$59" in page and "150 req/s" in page


def test_a_plan_taken_off_sale_is_not_offered(member: Client) -> None:
    Plan.objects.filter(slug="enterprise").update(is_active=False)
    assert "Enterprise" not in Client().get("/plans/").content.decode()
    assert member.post("/billing/checkout/enterprise/", {"attempt": "6f1c1b7e-4a53-4d55-9e51-8f4d2c3a2b10"}).status_code == 404
