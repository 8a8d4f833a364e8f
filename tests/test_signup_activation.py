"""Sign-up → activation email → the link activates the account and signs the user in."""

from __future__ import annotations

import re
import time
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client

from tests.accounts_and_billing import PASSWORD, make_user

LINK = re.compile(r"https?://[^\s\"<>]+/accounts/confirm-email/[-:\w]+/")
pytestmark = pytest.mark.django_db


def sign_up(client: Client, email: str = "new@example.com", next_url: str = "") -> Any:
    form = {"email": email, "password1": PASSWORD, "password2": PASSWORD}
    return client.post("/accounts/signup/", {**form, "next": next_url} if next_url else form)


def activation_link(message: mail.EmailMessage) -> str:
    match = LINK.search(message.body)
    assert match, message.body
    return match.group(0)


def test_signing_up_sends_an_activation_email_with_text_and_html_parts() -> None:
    client = Client()
    response = sign_up(client)
    assert response.status_code == 302 and response["Location"] == "/accounts/confirm-email/"
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["new@example.com"]
    assert message.subject == "GPUBROKER: Activate your account"
    html = dict((mime, body) for body, mime in message.alternatives)["text/html"]
    link = activation_link(message)
    assert f'href="{link}"' in html
    assert "Activate my account" in html
    # Not yet active: the account cannot be used before the link is opened.
    assert not EmailAddress.objects.get(email="new@example.com").verified
    assert "Check your email" in client.get("/accounts/confirm-email/").content.decode()


def test_opening_the_link_changes_nothing_and_shows_one_button() -> None:
    # A mail scanner or prefetcher opens every link: that GET must not activate or sign in.
    client = Client()
    sign_up(client)
    link = activation_link(mail.outbox[0])
    for _ in range(2):
        response = client.get(link)
        assert response.status_code == 200
        page = response.content.decode()
        assert f"<form class=\"form\" method=\"post\" action=\"{urlsplit(link).path}\"" in page, page[page.index("<main"):page.index("</main>")]
        assert "Activate and sign in" in page
    assert not EmailAddress.objects.get(email="new@example.com").verified
    assert client.get("/dashboard/").status_code == 302


def test_the_button_activates_the_account_and_signs_the_user_in() -> None:
    client = Client()
    sign_up(client)
    response = client.post(activation_link(mail.outbox[0]))
    assert response.status_code == 302 and response["Location"] == "/dashboard/"
    assert EmailAddress.objects.get(email="new@example.com").verified
    dashboard = client.get("/dashboard/")
    assert dashboard.status_code == 200
    assert "Welcome, new@<wbr>example.com" in dashboard.content.decode()


def test_signing_up_from_a_plan_comes_back_signed_in_to_that_plan() -> None:
    client = Client()
    form = client.get("/accounts/signup/?next=/plans/%3Fplan%3Dpro").content.decode()
    assert "Sign up for Pro" in form and 'name="next" value="/plans/?plan=pro"' in form
    sign_up(client, next_url="/plans/?plan=pro")
    link = activation_link(mail.outbox[0])
    assert "?next=%2Fplans%2F%3Fplan%3Dpro" in mail.outbox[0].body  # the link itself remembers the plan
    page = client.get(link + "?next=%2Fplans%2F%3Fplan%3Dpro").content.decode()
    assert 'name="next" value="/plans/?plan=pro"' in page
    response = client.post(link, {"next": "/plans/?plan=pro"})
    assert response.status_code == 302 and response["Location"] == "/plans/?plan=pro"
    plans = client.get(response["Location"]).content.decode()
    assert plans.count('data-testid="chosen-plan"') == 1 and "Choose Pro" in plans


def test_a_next_pointing_elsewhere_is_not_put_in_the_link() -> None:
    sign_up(Client(), next_url="https://evil.example.com/")
    assert "next=" not in mail.outbox[0].body


def test_a_link_opened_in_another_browser_activates_and_asks_to_sign_in_to_continue() -> None:
    sign_up(Client(), next_url="/plans/?plan=pro")
    other = Client()
    response = other.post(activation_link(mail.outbox[0]), {"next": "/plans/?plan=pro"})
    assert response.status_code == 302 and response["Location"] == "/accounts/login/?next=%2Fplans%2F%3Fplan%3Dpro"
    assert EmailAddress.objects.get(email="new@example.com").verified
    assert other.get("/dashboard/").status_code == 302  # not signed in there
    signed_in = other.post(response["Location"], {"login": "new@example.com", "password": PASSWORD, "next": "/plans/?plan=pro"})
    assert signed_in.status_code == 302 and signed_in["Location"] == "/plans/?plan=pro"


def test_a_reused_link_says_the_account_is_already_active() -> None:
    client = Client()
    sign_up(client)
    link = activation_link(mail.outbox[0])
    client.post(link)
    response = client.get(link)
    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-link-problem="used"' in page and "already been used" in page


def test_an_expired_link_says_it_expired_and_how_to_get_a_new_one() -> None:
    client = Client()
    four_days_ago = time.time() - 4 * 86400
    with mock.patch("django.core.signing.time.time", return_value=four_days_ago):
        sign_up(client)
    response = client.get(activation_link(mail.outbox[0]))
    assert response.status_code == 410
    page = response.content.decode()
    assert 'data-link-problem="expired"' in page and "This link has expired" in page
    assert not EmailAddress.objects.get(email="new@example.com").verified


def test_an_invalid_link_says_it_is_not_valid() -> None:
    response = Client().get("/accounts/confirm-email/MQ:1tampered:not-a-real-signature/")
    assert response.status_code == 400
    assert 'data-link-problem="invalid"' in response.content.decode()


def test_an_unactivated_account_cannot_sign_in_and_gets_a_fresh_link() -> None:
    make_user("late@example.com", verified=False)
    response = Client().post("/accounts/login/", {"login": "late@example.com", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/accounts/confirm-email/"
    assert len(mail.outbox) == 1 and LINK.search(mail.outbox[0].body)


def test_signing_up_twice_with_one_address_creates_one_account_and_reveals_nothing() -> None:
    first = sign_up(Client())
    second = sign_up(Client())
    assert get_user_model().objects.filter(email="new@example.com").count() == 1
    # The same answer either way, so the sign-up form cannot be used to probe for accounts.
    assert (second.status_code, second["Location"]) == (first.status_code, first["Location"])


def test_a_bad_sign_up_gets_field_errors() -> None:
    response = Client().post("/accounts/signup/", {"email": "not-an-email", "password1": "short", "password2": "other"})
    assert response.status_code == 200
    page = response.content.decode()
    assert "field--invalid" in page and "Enter a valid email address." in page
    assert not mail.outbox
