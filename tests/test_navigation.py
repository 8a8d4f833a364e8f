"""One navigation for every page: the right links for visitors, members and staff, the current page marked."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from tests.accounts_and_billing import make_user, member, user  # noqa: F401  (fixtures)
from web import navigation
from web.navigation import MEMBER, STAFF, NavEntry

pytestmark = pytest.mark.django_db


def header(page: str) -> str:
    return page[page.index('<nav class="nav container" aria-label="Main">') : page.index("</nav>")]


def labels(page: str) -> list[str]:
    return re.findall(r'<a href="[^"]+" class="[^"]*"(?: aria-current="page")?>([^<]+)</a>', header(page))


def current(page: str) -> list[str]:
    return re.findall(r'aria-current="page">([^<]+)</a>', header(page))


def test_a_visitor_sees_the_same_links_on_every_page(client: Client) -> None:
    for path in ("/", "/browse/", "/plans/", "/accounts/login/", "/accounts/signup/", "/terms/", "/privacy/"):
        assert labels(client.get(path).content.decode()) == ["Live prices", "Browse GPUs", "Plans", "Sign in", "Sign up"], path


def test_the_current_page_is_marked_and_only_that_one(client: Client) -> None:
    assert current(client.get("/browse/").content.decode()) == ["Browse GPUs"]
    assert current(client.get("/plans/").content.decode()) == ["Plans"]
    assert current(client.get("/accounts/signup/").content.decode()) == ["Sign up"]
    assert current(client.get("/terms/").content.decode()) == []


def test_a_member_sees_their_pages_the_plan_and_sign_out_everywhere(member: Client) -> None:  # noqa: F811
    for path in ("/", "/browse/", "/plans/", "/dashboard/", "/billing/", "/settings/", "/accounts/email/"):
        page = member.get(path).content.decode()
        assert labels(page) == ["Live prices", "Browse GPUs", "Plans", "Dashboard", "Billing", "Settings"], path
        assert 'data-testid="plan-badge">Free' in header(page).replace("\n", "") and ">Sign out</button>" in header(page), path
    assert current(member.get("/accounts/email/").content.decode()) == ["Settings"]
    assert current(member.get("/billing/").content.decode()) == ["Billing"]


def test_the_phone_menu_is_a_native_disclosure(client: Client) -> None:
    nav = header(client.get("/").content.decode())
    assert '<details class="nav__menu">' in nav and '<summary class="nav__toggle' in nav and ">Menu</summary>" in nav


def test_an_entry_added_to_the_list_shows_for_its_audience_only(client: Client, monkeypatch: Any) -> None:
    monkeypatch.setattr(navigation, "NAVIGATION", [*navigation.NAVIGATION, NavEntry("Console", "metrics", STAFF), NavEntry("Pods", "health", MEMBER)])
    assert "Console" not in labels(client.get("/").content.decode())
    staff = make_user("ops@example.com")
    staff.is_staff = True
    staff.save()
    client.force_login(staff)
    assert labels(client.get("/").content.decode())[-2:] == ["Console", "Pods"]


def test_the_footer_links_to_docs_status_terms_and_privacy(client: Client) -> None:
    page = client.get("/plans/").content.decode()
    footer = page[page.index('<footer class="site-footer') :]
    for href in ('href="/api/v2/docs"', 'href="/health"', 'href="/terms/"', 'href="/privacy/"'):
        assert href in footer
    assert "per hour" not in footer
