"""The signed-in home shows the plan and its limits as the database has them."""

from __future__ import annotations

import pytest
from django.test import Client

from billing.models import Plan
from tests.accounts_and_billing import Stripe, subscribe

pytestmark = pytest.mark.django_db


def test_the_dashboard_needs_a_signed_in_user() -> None:
    response = Client().get("/dashboard/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/?next=/dashboard/"


def test_a_free_member_sees_free_limits_in_the_founding_layout(member: Client) -> None:
    page = member.get("/dashboard/").content.decode()
    for link in ('href="/dashboard/" class="nav__link" aria-current="page">Dashboard', ">Browse GPUs<", ">Plans<", 'href="/billing/"', 'href="/settings/"'):
        assert link in page
    assert 'data-testid="plan-badge">Free' in page.replace("\n", "")
    assert "Welcome, ada@<wbr>example.com" in page
    assert "10 req/s" in page and ">1<" in page


def test_the_limits_follow_the_plan_rows(member: Client) -> None:
    Plan.objects.filter(slug="free").update(requests_per_second=12, max_pods=2)
    page = member.get("/dashboard/").content.decode()
    assert "12 req/s" in page and ">2<" in page


def test_a_pro_member_sees_pro_limits(member: Client, stripe_emulator: Stripe) -> None:
    subscribe(member, stripe_emulator, "pro")
    page = member.get("/dashboard/").content.decode()
    assert 'data-testid="dashboard-plan">Pro<' in page
    assert "100 req/s" in page and ">10<" in page
