"""Hypothesis over the HTML forms' fields (browse filters, sign-up, login, password reset, the
API-key form): whatever is typed, the answer is never a 5xx, and refused input says why on the
page (a form error), never silently."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.django_db

FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
# Anything a browser can send: any text (NUL and control characters included), long or empty.
typed = st.one_of(st.text(max_size=300), st.sampled_from(["", " ", "\x00", "-1", "1e309", "NaN", "0" * 200, "H100 80GB,,", "💥" * 50]))
BROWSE_FIELDS = ("gpu_type", "region", "availability", "provider", "max_price", "min_gpu_memory", "gpu_count", "sort", "cursor",
                 "w_price", "w_performance", "w_availability", "w_reliability")


def _error_shown(content: bytes) -> bool:
    text = content.decode("utf-8", "replace").lower()
    return any(word in text for word in ("error", "must", "invalid", "enter a valid", "required", "not", "at most", "expected"))


@override_settings(RATE_LIMIT_ENABLED=False)  # the fuzzer's pace is not what is tested here
@FUZZ
@given(st.dictionaries(st.sampled_from(BROWSE_FIELDS), typed, max_size=6))
def test_browse_filters_never_answer_a_server_error_and_name_what_is_wrong(client: Client, catalog: None, params: dict[str, str]) -> None:
    response = client.get("/browse/", params)
    assert response.status_code in (200, 422), (params, response.status_code)
    if response.status_code == 422:
        assert _error_shown(response.content), params


@FUZZ
@given(email=typed, password=typed)
def test_sign_up_never_answers_a_server_error(client: Client, email: str, password: str) -> None:
    response = client.post(reverse("account_signup"), {"email": email, "password1": password, "password2": password})
    assert response.status_code < 500, (email, password)
    if response.status_code == 200:  # the form again: it says why
        assert _error_shown(response.content)


@FUZZ
@given(login=typed, password=typed)
def test_login_never_answers_a_server_error(client: Client, login: str, password: str) -> None:
    response = client.post(reverse("account_login"), {"login": login, "password": password})
    assert response.status_code < 500, (login, password)
    if response.status_code == 200:
        assert _error_shown(response.content)


@FUZZ
@given(email=typed)
def test_password_reset_never_answers_a_server_error(client: Client, email: str) -> None:
    assert client.post(reverse("account_reset_password"), {"email": email}).status_code < 500, email


@FUZZ
@given(name=typed)
def test_the_api_key_form_never_answers_a_server_error(client: Client, name: str) -> None:
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username="form-fuzz", defaults={"email": "form-fuzz@example.com"})
    client.force_login(user)
    response = client.post(reverse("api_key_create"), {"name": name})
    assert response.status_code in (201, 400), (name, response.status_code)
    if response.status_code == 400:
        assert _error_shown(response.content), name
