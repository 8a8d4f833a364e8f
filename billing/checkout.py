"""What a user can do with their plan: pay for one through Checkout, change, cancel, resume.

Every request that could move money carries an idempotency key built from the click that
caused it (a UUID rendered into the form), so a double submit or a network retry is one request
at Stripe. A user with a paid plan never gets a second Checkout: they change the subscription.
"""

from __future__ import annotations

from uuid import UUID

import stripe
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from billing import gateway
from billing.entitlements import standing
from billing.models import CheckoutSession, Plan, Subscription
from billing.subscriptions import fulfil_checkout, lock_user, subscription_version, sync_subscription


class BillingError(Exception):
    """Something the user asked for that cannot be done; the message says why, for the page."""


class AlreadySubscribed(BillingError):
    pass


def price_id(api: stripe.StripeClient, plan: Plan) -> str:
    """The Stripe Price for the plan's current amount, created once (found by its lookup key)."""
    found = api.v1.prices.list(params={"lookup_keys": [plan.stripe_lookup_key], "active": True, "limit": 1})
    if found.data:
        return found.data[0].id
    price = api.v1.prices.create(
        params={
            "currency": plan.currency,
            "unit_amount": plan.price_cents,
            "recurring": {"interval": plan.interval},
            "lookup_key": plan.stripe_lookup_key,
            "metadata": {"plan": plan.slug},
            "product_data": {"name": f"GPUBROKER {plan.name}", "metadata": {"plan": plan.slug}},
        },
        options={"idempotency_key": f"gpubroker-price-{plan.stripe_lookup_key}"},
    )
    return price.id


def _close_other_sessions(api: stripe.StripeClient, user: AbstractBaseUser, livemode: bool, keep: UUID, older_than: int | None = None) -> None:
    """Expires the user's other open Checkouts (those recorded before row `older_than`, if given),
    so that only one can ever be paid."""
    others = CheckoutSession.objects.filter(user=user, livemode=livemode, status=CheckoutSession.Status.OPEN).exclude(attempt=keep)
    for old in others.filter(pk__lt=older_than) if older_than is not None else others:
        try:
            api.v1.checkout.sessions.expire(old.stripe_id)
            old.status = CheckoutSession.Status.EXPIRED
            old.save(update_fields=["status"])
        except stripe.InvalidRequestError:
            # Already finished at Stripe: paid (webhook not here yet) or expired.
            session = api.v1.checkout.sessions.retrieve(old.stripe_id).to_dict()
            fulfil_checkout(api, session)
            if session.get("status") == "complete":
                raise AlreadySubscribed(f"Your earlier checkout for {old.plan.name} was paid; your plan is now {old.plan.name}.") from None
            old.status = CheckoutSession.Status.EXPIRED
            old.save(update_fields=["status"])


def _existing_url(user: AbstractBaseUser, plan: Plan, attempt: UUID) -> str | None:
    existing = CheckoutSession.objects.filter(attempt=attempt).first()
    if existing is None:
        return None
    if existing.user_id != user.pk or existing.plan_id != plan.pk:
        raise BillingError("That checkout link was not made for this plan and account; choose the plan again.")
    if existing.status == CheckoutSession.Status.OPEN and existing.url:
        return existing.url
    raise BillingError("That checkout has already ended; choose the plan again.")


def start_checkout(user: AbstractBaseUser, plan: Plan, attempt: UUID, success_url: str, cancel_url: str) -> str:
    """The hosted Checkout page address for `plan`; the same `attempt` always gives the same one.

    Stripe is called with no transaction open and no lock held; only recording the session takes
    the user's lock, briefly. Two starts at once each record theirs under it, so the later one
    sees the earlier and expires it: one session stays open.
    """
    if plan.is_free or not plan.is_active:
        raise BillingError(f"{plan.name} is not a plan you can pay for.")
    keys = gateway.keys_for_mode()
    api = gateway.client(keys)
    if url := _existing_url(user, plan, attempt):
        return url
    current = standing(user)
    if not current.plan.is_free:
        raise AlreadySubscribed(f"You are already on {current.plan.name}: change plans on the billing page.")
    _close_other_sessions(api, user, keys.livemode, keep=attempt)
    session = _create_session(api, keys, user, plan, attempt, success_url, cancel_url)
    with transaction.atomic():
        lock_user(user)
        row, _ = CheckoutSession.objects.get_or_create(
            stripe_id=session.id,
            defaults={"attempt": attempt, "user": user, "plan": plan, "livemode": bool(session.livemode), "url": session.url or ""},
        )
        plan_now = standing(user).plan
    try:
        if not plan_now.is_free:
            raise AlreadySubscribed(f"You are already on {plan_now.name}: change plans on the billing page.")
        _close_other_sessions(api, user, keys.livemode, keep=attempt, older_than=row.pk)
    except AlreadySubscribed:
        # Another checkout of theirs was paid while this one was made: this one must never be.
        api.v1.checkout.sessions.expire(session.id)
        CheckoutSession.objects.filter(pk=row.pk).update(status=CheckoutSession.Status.EXPIRED)
        raise
    return session.url


def _create_session(api: stripe.StripeClient, keys: gateway.StripeKeys, user: AbstractBaseUser, plan: Plan, attempt: UUID, success_url: str, cancel_url: str) -> stripe.checkout.Session:
    params: dict[str, object] = {
        "mode": "subscription",
        "line_items": [{"price": price_id(api, plan), "quantity": 1}],
        "success_url": success_url,
        "cancel_url": cancel_url,
        "client_reference_id": str(user.pk),
        "metadata": {"user_id": str(user.pk), "plan": plan.slug, "attempt": str(attempt)},
        "subscription_data": {"metadata": {"user_id": str(user.pk), "plan": plan.slug}},
    }
    customer = Subscription.objects.filter(user=user, livemode=keys.livemode).exclude(stripe_customer_id="").values_list("stripe_customer_id", flat=True).first()
    try:
        if not customer:
            raise LookupError
        return api.v1.checkout.sessions.create(params={**params, "customer": customer}, options={"idempotency_key": f"gpubroker-checkout-{attempt}"})
    except (LookupError, stripe.InvalidRequestError) as exc:
        if isinstance(exc, stripe.InvalidRequestError) and exc.param != "customer":
            raise
        # No customer yet, or one from another Stripe account (emulator, then real test keys).
        params["customer_email"] = user.email
        return api.v1.checkout.sessions.create(params=params, options={"idempotency_key": f"gpubroker-checkout-{attempt}-email"})


def complete_return(user: AbstractBaseUser, session_id: str) -> CheckoutSession:
    """The customer is back from Checkout: fulfil now rather than wait for the webhook."""
    row = CheckoutSession.objects.filter(stripe_id=session_id, user=user).select_related("plan").first()
    if row is None:
        raise BillingError("We have no checkout with that reference for your account.")
    if row.status != CheckoutSession.Status.COMPLETE:
        api = gateway.client()
        fulfil_checkout(api, api.v1.checkout.sessions.retrieve(session_id).to_dict())
        row.refresh_from_db()
    return row


def abandon(user: AbstractBaseUser, attempt: UUID) -> CheckoutSession | None:
    """The customer left Checkout without paying: expire the session so it can no longer be paid."""
    row = CheckoutSession.objects.filter(attempt=attempt, user=user).select_related("plan").first()
    if row is None or row.status != CheckoutSession.Status.OPEN:
        return row
    api = gateway.client()
    try:
        api.v1.checkout.sessions.expire(row.stripe_id)
        row.status = CheckoutSession.Status.EXPIRED
        row.save(update_fields=["status"])
    except stripe.InvalidRequestError:
        fulfil_checkout(api, api.v1.checkout.sessions.retrieve(row.stripe_id).to_dict())
        row.refresh_from_db()
    return row


def _paid_subscription(user: AbstractBaseUser) -> Subscription:
    current = standing(user)
    if current.plan.is_free or current.subscription is None:
        raise BillingError("You have no paid plan to change; choose one on the plans page.")
    return current.subscription


def _update(user: AbstractBaseUser, subscription: Subscription, params: dict[str, object], key: str) -> Subscription:
    """Changes the subscription at Stripe (no lock held while waiting), then saves its answer."""
    api = gateway.client()
    seen = subscription_version(subscription.stripe_id)
    updated = api.v1.subscriptions.update(subscription.stripe_id, params=params, options={"idempotency_key": key})
    saved = sync_subscription(api, subscription.stripe_id, user_hint=user, data=updated.to_dict(), seen=seen)
    if saved is None:
        raise BillingError("Stripe answered with a plan GPUBROKER does not know; nothing was changed here.")
    return saved


def change_plan(user: AbstractBaseUser, plan: Plan, attempt: UUID) -> Subscription:
    """Moves a paid subscription to another paid plan now, prorated by Stripe."""
    subscription = _paid_subscription(user)
    if plan.is_free:
        return cancel_at_period_end(user, attempt)
    if not plan.is_active:
        raise BillingError(f"{plan.name} is no longer offered.")
    if subscription.in_grace():
        raise BillingError("Your last renewal failed: update your card before changing plans.")
    if plan.pk == subscription.plan_id:
        return resume(user, attempt) if subscription.cancel_at_period_end else subscription
    api = gateway.client()
    item_id = api.v1.subscriptions.retrieve(subscription.stripe_id).to_dict()["items"]["data"][0]["id"]
    params = {
        "items": [{"id": item_id, "price": price_id(api, plan)}],
        "proration_behavior": "create_prorations",
        "cancel_at_period_end": False,
        "metadata": {"plan": plan.slug},
    }
    return _update(user, subscription, params, f"gpubroker-change-{subscription.stripe_id}-{attempt}")


def cancel_at_period_end(user: AbstractBaseUser, attempt: UUID) -> Subscription:
    subscription = _paid_subscription(user)
    return _update(user, subscription, {"cancel_at_period_end": True}, f"gpubroker-cancel-{subscription.stripe_id}-{attempt}")


def resume(user: AbstractBaseUser, attempt: UUID) -> Subscription:
    subscription = _paid_subscription(user)
    return _update(user, subscription, {"cancel_at_period_end": False}, f"gpubroker-resume-{subscription.stripe_id}-{attempt}")


def portal_url(user: AbstractBaseUser, return_url: str) -> str:
    keys = gateway.keys_for_mode()
    if not keys.portal:
        raise BillingError("The Stripe customer portal is not configured (set STRIPE_PORTAL=true once it is set up in Stripe).")
    customer = Subscription.objects.filter(user=user, livemode=keys.livemode).exclude(stripe_customer_id="").values_list("stripe_customer_id", flat=True).first()
    if not customer:
        raise BillingError("You have no payment details with us yet.")
    session = gateway.client(keys).v1.billing_portal.sessions.create(params={"customer": customer, "return_url": return_url})
    return session.url
