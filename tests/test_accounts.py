"""Sign-in, sign-out, password reset and change, email change, and allauth's rate limits."""

from __future__ import annotations

import re

import pytest
from allauth.account.models import EmailAddress
from django.core import mail
from django.test import Client

from tests.accounts_and_billing import PASSWORD, make_user

pytestmark = pytest.mark.django_db
NEW_PASSWORD = "another-long-passphrase-42"


def test_sign_in_and_sign_out() -> None:
    make_user()
    client = Client()
    response = client.post("/accounts/login/", {"login": "ada@example.com", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/dashboard/"
    assert client.get("/dashboard/").status_code == 200
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/dashboard/")["Location"].startswith("/accounts/login/")


def test_a_wrong_password_is_refused_with_a_message() -> None:
    make_user()
    response = Client().post("/accounts/login/", {"login": "ada@example.com", "password": "wrong-password"})
    assert response.status_code == 200
    assert "The email address and/or password you specified are not correct." in response.content.decode()


def test_password_reset_by_emailed_link() -> None:
    make_user()
    client = Client()
    assert client.post("/accounts/password/reset/", {"email": "ada@example.com"}).status_code == 302
    message = mail.outbox[0]
    assert message.alternatives and "Choose a new password" in message.alternatives[0][0]
    link = re.search(r"http://testserver(/accounts/password/reset/key/\S+/)", message.body).group(1)
    form_page = client.get(link)
    assert form_page.status_code == 302  # allauth moves the key into the session
    response = client.post(form_page["Location"], {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert response.status_code == 302
    assert Client().login(username="ada", password=NEW_PASSWORD)


def test_password_change_needs_the_old_password(member: Client) -> None:
    bad = member.post("/accounts/password/change/", {"oldpassword": "nope", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert bad.status_code == 200 and "Please type your current password." in bad.content.decode()
    good = member.post("/accounts/password/change/", {"oldpassword": PASSWORD, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert good.status_code == 302
    assert any(m.subject == "GPUBROKER: Password Changed" for m in mail.outbox)


def test_email_change_takes_effect_only_once_the_new_address_is_confirmed(member: Client) -> None:
    response = member.post("/accounts/email/", {"action_add": "", "email": "ada.new@example.com"})
    assert response.status_code == 302
    assert EmailAddress.objects.get(email="ada@example.com").primary
    confirmation = next(m for m in mail.outbox if m.to == ["ada.new@example.com"])
    link = re.search(r"http://testserver(/accounts/confirm-email/[-:\w]+/)", confirmation.body).group(1)
    member.get(link)  # opening it only shows the button
    assert not EmailAddress.objects.get(email="ada.new@example.com").verified
    member.post(link)
    assert EmailAddress.objects.get(email="ada.new@example.com").verified
    assert not EmailAddress.objects.filter(email="ada@example.com").exists()  # ACCOUNT_CHANGE_EMAIL replaces it


def test_failed_sign_ins_are_rate_limited() -> None:
    make_user()
    client = Client()
    for _ in range(5):
        client.post("/accounts/login/", {"login": "ada@example.com", "password": "wrong-password"})
    response = client.post("/accounts/login/", {"login": "ada@example.com", "password": PASSWORD})
    assert response.status_code == 200  # the right password too, until the window passes
    assert "Too many failed login attempts" in response.content.decode()


def test_sign_ups_are_rate_limited_per_address() -> None:
    client = Client()
    statuses = [
        client.post("/accounts/signup/", {"email": f"user{i}@example.com", "password1": PASSWORD, "password2": PASSWORD}).status_code
        for i in range(21)
    ]
    assert statuses[:20] == [302] * 20
    assert statuses[20] == 429


def test_account_pages_use_the_product_layout() -> None:
    for path in ("/accounts/login/", "/accounts/signup/", "/accounts/password/reset/"):
        page = Client().get(path).content.decode()
        assert 'class="site-header"' in page and 'class="card auth__card"' in page, path
        assert "/static/css/app.css" in page


def test_every_account_email_has_a_text_and_an_html_part() -> None:
    from allauth.account.adapter import get_adapter

    user = make_user()
    context = {"user": user, "email": user.email, "activate_url": "http://x/a/", "password_reset_url": "http://x/r/", "signup_url": "http://x/s/",
               "from_email": "a@x", "to_email": "b@x", "deleted_email": "c@x", "ip": "127.0.0.1", "user_agent": "<script>", "timestamp": "now"}
    for prefix in ("email_confirmation_signup", "email_confirmation", "password_reset_key", "unknown_account", "account_already_exists",
                   "password_changed", "password_set", "password_reset", "email_changed", "email_confirm", "email_deleted"):
        message = get_adapter().render_mail(f"account/email/{prefix}", user.email, context)
        assert message.body.strip(), prefix
        html = dict((mime, body) for body, mime in message.alternatives).get("text/html", "")
        assert "<html" in html, prefix
        assert "<script>" not in html, prefix  # user-controlled values are escaped in HTML
