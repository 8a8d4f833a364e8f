"""The deploy wizard, the pod's page and its actions, the pod-ready link, and who may see a pod."""

from __future__ import annotations

import re
import time
from decimal import Decimal
from typing import Any

import pytest
from django.core import mail, signing
from django.test import Client

from pods import emails, engine
from pods.models import Draft, Rental, State
from tests.accounts_and_billing import make_user
from tests.pods_world import SSH_KEY, World, a100, fund

pytestmark = pytest.mark.django_db

GOOD = {"name": "trainer", "gpu_count": "1", "region": "us-carlsbad-1", "template": "pytorch", "disk_gb": "50", "run_mode": "until_stopped", "ssh_public_key": SSH_KEY, "allow_failover": "on"}


def open_wizard(client: Client) -> str:
    response = client.get(f"/pods/new/{a100().pk}/")
    assert response.status_code == 302
    return response["Location"]  # /pods/drafts/<token>/configure/


def configured(client: Client, **changes: str) -> str:
    url = open_wizard(client)
    response = client.post(url, {**GOOD, **changes})
    assert response.status_code == 302, response.content.decode()[:2000]
    return response["Location"]


def deployed(client: Client, world: World) -> Rental:
    review = configured(client)
    response = client.post(review.replace("/review/", "/deploy/"))
    assert response.status_code == 302
    return Rental.objects.get(pk=int(response["Location"].strip("/").split("/")[-1]))


@pytest.mark.parametrize(("field", "value", "reason"), [
    ("name", "Bad Name!", "lower-case letters, digits and dashes"),
    ("gpu_count", "3", "Select a valid choice"),
    ("disk_gb", "5", "greater than or equal to 10"),
    ("disk_gb", "20", "needs at least 30 GB"),
    ("ssh_public_key", "ssh-ed25519 not-a-key", "not a valid OpenSSH public key"),
    ("ssh_public_key", "-----BEGIN OPENSSH PRIVATE KEY----- abc", "That is a private key"),
    ("ssh_public_key", "", "This field is required"),
    ("template", "windows", "Select a valid choice"),
    ("run_mode", "duration", "Say how many hours"),
])
def test_configure_shows_each_bad_answer_inline_and_keeps_the_draft(world: World, member: Client, field: str, value: str, reason: str) -> None:
    url = open_wizard(member)
    response = member.post(url, {**GOOD, field: value}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200  # htmx swaps only 2xx answers; without htmx it is a 400
    assert member.post(url, {**GOOD, field: value}).status_code == 400
    body = response.content.decode()
    error_field = "duration_hours" if field == "run_mode" else field  # a duration needs its hours
    assert reason in body and f'id="id_{error_field}_errors"' in body and 'aria-invalid="true"' in body
    assert "<html" not in body  # the htmx partial, not the page
    draft = Draft.objects.get()
    assert draft.data["name"] == (value if field == "name" else "trainer")  # what was typed is kept
    again = member.get(url).content.decode()
    assert 'value="trainer"' in again or field == "name"


def test_review_requotes_through_the_adapter_and_shows_costs_with_markup(world: World, member: Client, user: Any) -> None:
    fund(user)
    body = member.get(configured(member)).content.decode()
    offer = a100()
    per_hour = (offer.price_per_hour * Decimal("1.1")).quantize(Decimal("0.0001"))
    assert f"${per_hour}" in body and "incl. 10 % platform markup" in body
    assert "from the sandbox market" in body and "not the cached list" in body
    assert f"${per_hour * 24:.2f}" in body and f"${per_hour * 730:.2f}" in body
    assert "0 of 1 in use (Free)" in body
    assert "lasts about" in body and 'data-testid="price-moved"' not in body
    assert re.search(r'<button type="submit" class="btn btn--primary" >Deploy</button>', body)  # enabled


def test_review_says_so_when_the_provider_now_asks_another_price(world: World, member: Client, user: Any) -> None:
    fund(user)
    review = configured(member)
    offer = a100()
    offer.price_per_hour = offer.price_per_hour + Decimal("0.5")  # the list is older than the provider's price
    offer.save(update_fields=["price_per_hour"])
    body = member.get(review).content.decode()
    assert 'data-testid="price-moved"' in body and "The price changed" in body


def test_review_without_balance_refuses_with_the_reason(world: World, member: Client) -> None:
    body = member.get(configured(member)).content.decode()
    assert 'data-testid="refusal"' in body and "first hour covered" in body
    assert re.search(r'<button type="submit" class="btn btn--primary" disabled>Deploy</button>', body)


def test_a_double_submit_of_deploy_makes_one_pod(world: World, member: Client, user: Any) -> None:
    fund(user)
    deploy_url = configured(member).replace("/review/", "/deploy/")
    first = member.post(deploy_url)
    second = member.post(deploy_url)
    assert first["Location"] == second["Location"]
    assert Rental.objects.count() == 1 and Rental.objects.get().state == State.PROVISIONING


def test_the_pod_page_shows_progress_and_after_activation_the_connection(world: World, member: Client, user: Any) -> None:
    fund(user)
    rental = deployed(member, world)
    page = member.get(f"/pods/{rental.pk}/").content.decode()
    assert "Provisioning" in page and f'ws-connect="/ws/rentals/{rental.pk}/"' in page and 'hx-trigger="every 3s"' in page
    engine.tick()
    world.boot()
    engine.tick()
    partial = member.get(f"/pods/{rental.pk}/", HTTP_HX_REQUEST="true").content.decode()
    assert "Ready: waiting for activation" in partial and "<html" not in partial
    link = re.search(r"http://[^\s]+/pods/activate/[^\s/]+/", mail.outbox[-1].body).group(0)
    activated = member.get(link.split("8000", 1)[1] if "8000" in link else "/" + link.split("/", 3)[3], follow=True)
    body = activated.content.decode()
    rental.refresh_from_db()
    assert rental.state == State.RUNNING
    assert f"ssh root@{rental.ssh_host}" in body and f"http://{rental.ssh_host}:8888/" in body
    used = member.get("/" + link.split("/", 3)[3])
    assert used.status_code == 410 and "already used" in used.content.decode()


def test_an_expired_link_has_its_own_page_and_a_resend(world: World, member: Client, user: Any, monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    fund(user)
    rental = deployed(member, world)
    engine.tick()
    world.boot()
    engine.tick()
    rental.refresh_from_db()
    real = time.time
    monkeypatch.setattr(signing.time, "time", lambda: real() - settings.POD_ACTIVATION_LINK_HOURS * 3600 - 60)
    old = emails.activation_token(rental)
    monkeypatch.setattr(signing.time, "time", real)
    response = member.get(f"/pods/activate/{old}/")
    assert response.status_code == 410 and "has expired" in response.content.decode() and "Send a new link" in response.content.decode()
    sent = len(mail.outbox)
    member.post(f"/pods/{rental.pk}/resend-link/")
    assert len(mail.outbox) == sent + 1
    rental.refresh_from_db()
    assert rental.state == State.AWAITING_ACTIVATION
    assert member.get(f"/pods/activate/{emails.activation_token(rental)}/").status_code == 302


def test_a_forged_link_is_refused(world: World, member: Client) -> None:
    response = member.get("/pods/activate/not-a-token/")
    assert response.status_code == 400 and "not valid" in response.content.decode()


def test_stop_start_scale_terminate_from_the_page(world: World, member: Client, user: Any) -> None:
    fund(user)
    rental = deployed(member, world)
    engine.tick()
    world.boot()
    engine.tick()
    rental.refresh_from_db()
    member.get(f"/pods/activate/{emails.activation_token(rental)}/")
    member.post(f"/pods/{rental.pk}/stop/")
    assert Rental.objects.get(pk=rental.pk).state == State.STOPPED
    member.post(f"/pods/{rental.pk}/start/")
    assert Rental.objects.get(pk=rental.pk).state == State.RUNNING
    member.post(f"/pods/{rental.pk}/scale/", {"gpu_count": "2"})
    assert Rental.objects.get(pk=rental.pk).gpu_count == 2
    page = member.post(f"/pods/{rental.pk}/terminate/", follow=True).content.decode()
    assert "Final cost" in page and Rental.objects.get(pk=rental.pk).state == State.TERMINATED
    assert "terminated:" in member.get("/billing/").content.decode()


def test_a_refused_action_is_a_message_not_an_error(world: World, member: Client, user: Any) -> None:
    fund(user)
    rental = deployed(member, world)
    page = member.post(f"/pods/{rental.pk}/start/", follow=True)
    assert page.status_code == 200 and "Not possible now" in page.content.decode()


@pytest.mark.parametrize("path", ["/pods/{id}/", "/pods/{id}/stop/", "/pods/{id}/start/", "/pods/{id}/terminate/", "/pods/{id}/scale/", "/pods/{id}/failover/", "/pods/{id}/resend-link/"])
def test_another_users_pod_is_404_on_every_page(world: World, member: Client, user: Any, path: str) -> None:
    fund(user)
    rental = deployed(member, world)
    eve = Client()
    eve.force_login(make_user("eve@example.com"))
    url = path.format(id=rental.pk)
    response = eve.get(url) if path == "/pods/{id}/" else eve.post(url)
    assert response.status_code == 404
    assert Rental.objects.get(pk=rental.pk).state == State.PROVISIONING


def test_another_users_draft_and_link_are_404(world: World, member: Client, user: Any) -> None:
    fund(user)
    review = configured(member)
    eve = Client()
    eve.force_login(make_user("eve@example.com"))
    assert eve.get(review).status_code == 404
    assert eve.post(review.replace("/review/", "/deploy/")).status_code == 404
    rental = deployed(member, world)
    rental.activation_nonce = "x" * 32
    assert eve.get(f"/pods/activate/{emails.activation_token(rental)}/").status_code == 404


def test_the_wizard_needs_a_signed_in_user(world: World) -> None:
    response = Client().get(f"/pods/new/{a100().pk}/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_offer_rows_have_a_deploy_action(world: World, member: Client) -> None:
    browse = member.get("/browse/?gpu_type=A100+80GB").content.decode()
    assert re.search(r'href="/pods/new/\d+/"[^>]*>Deploy</a>', browse)
    landing = Client().get("/").content.decode()
    assert re.search(r'href="/pods/new/\d+/"[^>]*>Deploy</a>', landing)


def test_the_dashboard_shows_my_pods_stats_and_activity(world: World, member: Client, user: Any) -> None:
    fund(user)
    rental = deployed(member, world)
    page = member.get("/dashboard/").content.decode()
    assert f'href="/pods/{rental.pk}/">trainer</a>' in page and "Provisioning" in page
    assert re.search(r'data-testid="stat-active-pods"[\s\S]*?<p class="stat__value">1</p>', page)
    assert "Deploy requested" in page and "+ Deploy new pod" in page
    partial = member.get("/dashboard/", HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in partial and "trainer" in partial
    eve = Client()
    eve.force_login(make_user("eve@example.com"))
    assert "trainer" not in eve.get("/dashboard/").content.decode()


def test_the_pod_page_warns_at_80_percent_of_the_monthly_cap(world: World, member: Client, user: Any) -> None:
    from billing import ledger
    from billing.models import LedgerKind
    from pods.models import SpendCap

    fund(user)
    rental = deployed(member, world)
    assert 'data-testid="monthly-cap-warning"' not in member.get(f"/pods/{rental.pk}/").content.decode()
    SpendCap.objects.create(user=user, monthly_cap=Decimal("10"))
    ledger.post(user, Decimal("-8.5"), LedgerKind.USAGE, "test:usage", "usage", subject=rental.subject)
    page = member.get(f"/pods/{rental.pk}/").content.decode()
    assert 'data-testid="monthly-cap-warning"' in page and "85 % of your monthly spend cap is used" in page


def test_savings_are_measured_against_the_median_price_of_the_gpu_type(world: World, user: Any) -> None:
    from pods import summary

    fund(user)
    rental = deployed_direct(user)
    median = summary.median_per_gpu("A100 80GB")
    rental.uptime_seconds = 7200
    assert summary.savings([rental]) == (max(Decimal(0), median - rental.provider_price_per_hour) * 2).quantize(Decimal("0.01"))


def deployed_direct(user: Any) -> Rental:
    from pods import actions
    from tests.pods_world import config

    return actions.deploy(user, a100(), config(), "direct")[0]
