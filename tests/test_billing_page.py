"""The billing page: plan, renewal, payment status, invoices; upgrade, downgrade, cancel; and a
failed renewal that keeps the plan through a grace period, then drops to Free."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from billing.entitlements import current_plan, standing
from billing.models import Subscription
from tests.accounts_and_billing import Stripe, attempt_from, deliver_all, subscribe

pytestmark = pytest.mark.django_db


def click(member: Client, path: str) -> Any:
    return member.post(path, {"attempt": attempt_from(member.get("/billing/").content.decode())})


def failed_renewal(member: Client, user: Any, stripe: Stripe, card: str) -> Subscription:
    """A Pro subscription whose renewal was just refused with `card`, every event delivered."""
    subscribe(member, stripe, "pro")
    sub = Subscription.objects.get(user=user)
    stripe.renew(sub.stripe_id, card=card)
    deliver_all(Client(), stripe.events())
    sub.refresh_from_db()
    return sub


def test_a_free_member_sees_free_and_no_invoices(member: Client) -> None:
    page = member.get("/billing/").content.decode()
    assert 'data-testid="billing-plan"' in page and "No payment needed" in page and "No invoices yet" in page


def test_a_pro_member_sees_plan_renewal_status_and_the_invoice(member: Client, user: Any, stripe_emulator: Stripe) -> None:
    subscribe(member, stripe_emulator, "pro")
    sub = Subscription.objects.get(user=user)
    page = member.get("/billing/").content.decode()
    assert "$49 / month" in page and "Paid" in page
    assert sub.current_period_end.strftime("%-d %b %Y") in page
    assert "$49.00" in page and "/i/in_" in page  # the invoice, linked to Stripe's hosted copy


def test_upgrading_moves_the_subscription_to_enterprise(member: Client, user: Any, stripe_emulator: Stripe) -> None:
    subscribe(member, stripe_emulator, "pro")
    response = click(member, "/billing/change/enterprise/")
    assert response.status_code == 302
    assert current_plan(user).slug == "enterprise"
    assert Subscription.objects.count() == 1  # the same subscription, changed; never a second one
    deliver_all(Client(), stripe_emulator.events())
    assert current_plan(user).slug == "enterprise"


def test_downgrading_to_free_cancels_at_period_end_and_keeps_pro_until_then(member: Client, user: Any, stripe_emulator: Stripe) -> None:
    subscribe(member, stripe_emulator, "pro")
    assert click(member, "/billing/cancel/").status_code == 302
    current = standing(user)
    assert current.plan.slug == "pro" and current.ends_at is not None
    assert "Cancels at period end" in member.get("/billing/").content.decode()
    assert click(member, "/billing/resume/").status_code == 302
    assert standing(user).ends_at is None
    click(member, "/billing/cancel/")
    stripe_emulator.renew(Subscription.objects.get(user=user).stripe_id)  # the period ends
    deliver_all(Client(), stripe_emulator.events())
    assert current_plan(user).slug == "free"


def test_a_failed_renewal_is_shown_and_keeps_the_plan_through_the_grace_period(member: Client, user: Any, stripe_emulator: Stripe) -> None:
    sub = failed_renewal(member, user, stripe_emulator, "4000000000009995")
    assert sub.status == "past_due" and sub.grace_until is not None
    assert current_plan(user).slug == "pro"
    page = member.get("/billing/").content.decode()
    assert 'data-testid="payment-failed"' in page and "Renewal failed" in page
    assert "Your last renewal payment failed" in member.get("/dashboard/").content.decode()
    # A plan change waits until the card works again.
    assert click(member, "/billing/change/enterprise/").status_code == 409


def test_after_the_grace_period_the_account_drops_to_free(member: Client, user: Any, stripe_emulator: Stripe) -> None:
    sub = failed_renewal(member, user, stripe_emulator, "4000000000000002")
    later = sub.grace_until + timedelta(seconds=1)
    assert standing(user, now=later).plan.slug == "free"
    assert standing(user, now=sub.grace_until - timedelta(seconds=1)).plan.slug == "pro"
    Subscription.objects.filter(pk=sub.pk).update(grace_until=timezone.now() - timedelta(minutes=1))
    assert "Moved to Free" in member.get("/billing/").content.decode()
    assert current_plan(user).slug == "free"


def test_a_paid_retry_ends_the_grace_period(member: Client, user: Any, stripe_emulator: Stripe) -> None:
    subscribe(member, stripe_emulator, "pro")
    sub = Subscription.objects.get(user=user)
    stripe_emulator.renew(sub.stripe_id, card="4000000000000002")
    stripe_emulator.state.subscription(sub.stripe_id)["status"] = "active"
    stripe_emulator.renew(sub.stripe_id)
    deliver_all(Client(), stripe_emulator.events())
    sub.refresh_from_db()
    assert (sub.status, sub.payment_failed_at, sub.grace_until) == ("active", None, None)


def test_the_portal_link_opens_stripes_portal_when_configured(member: Client, stripe_emulator: Stripe, settings: Any) -> None:
    subscribe(member, stripe_emulator, "pro")
    response = click(member, "/billing/portal/")
    assert response.status_code == 302 and response["Location"].startswith(f"{stripe_emulator.url}/p/session/bps_")
    settings.STRIPE_PORTAL = "false"
    page = member.get("/billing/").content.decode()
    assert "/billing/portal/" not in page
    assert click(member, "/billing/portal/").status_code == 409


def test_subscriptions_from_sandbox_do_not_count_in_live(member: Client, user: Any, stripe_emulator: Stripe, settings: Any) -> None:
    subscribe(member, stripe_emulator, "pro")
    settings.GPUBROKER_MODE = "live"
    assert current_plan(user).slug == "free"


def test_the_billing_page_needs_a_signed_in_user() -> None:
    assert Client().get("/billing/")["Location"].startswith("/accounts/login/")
