"""What a user does with a pod: deploy, stop, start, scale, terminate, activate.

Every provider call happens outside any transaction or row lock; the state change that follows
is a checked transition (`pods.machine`). Deploying is idempotent per (user, request key).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing import ledger
from billing.entitlements import platform_is_live
from billing.models import LedgerKind
from billing.subscriptions import lock_user
from pods import cloud, emails, machine, money
from pods.images import TEMPLATES
from pods.models import Rental, RentalEvent, State
from providers.models import Offer


@dataclass(frozen=True)
class PodConfig:
    """A deploy request, validated by the wizard's forms or the API's schema."""

    name: str
    gpu_count: int
    template: str
    disk_gb: int
    ssh_public_key: str
    duration_hours: int | None = None
    allow_failover: bool = False
    spend_cap: Decimal | None = None

    def fingerprint(self, offer: Offer) -> str:
        body = {**self.__dict__, "spend_cap": str(self.spend_cap) if self.spend_cap is not None else None, "offer": offer.pk}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class RequestConflict(Exception):
    """The same request key was used before with another request."""


def offer_for_count(offer: Offer, gpu_count: int) -> Offer | None:
    """The provider's offer of the same GPU in the same region with `gpu_count` GPUs."""
    if offer.gpu_count == gpu_count:
        return offer
    return Offer.objects.filter(provider=offer.provider, gpu_type=offer.gpu_type, region=offer.region, gpu_count=gpu_count).order_by("price_per_hour").first()


def deploy(user: AbstractBaseUser, offer: Offer, config: PodConfig, request_key: str) -> tuple[Rental, bool]:
    """Creates the pod (state provisioning) or returns the one this request made; (rental, created).

    Raises money.Refused (plan, balance, caps), RequestConflict, AdapterError (re-quote failed).
    """
    fingerprint = config.fingerprint(offer)
    existing = Rental.objects.filter(user=user, request_key=request_key).first()
    if existing:
        if existing.request_fingerprint != fingerprint:
            raise RequestConflict("this Idempotency-Key was used for another request")
        return existing, False
    target = offer_for_count(offer, config.gpu_count)
    if target is None:
        raise money.Refused("gpu_count", f"{offer.provider.name} has no {config.gpu_count} × {offer.gpu_type} offer in {offer.region or 'this region'}.")
    quote = cloud.requote(target)  # outside any transaction: the provider may be slow
    if quote.availability == "unavailable" and not config.allow_failover:
        raise money.Refused("offer", f"{target.provider.name} has no capacity for {target.name} right now; choose another offer or allow automatic failover.")
    costs = money.costs(quote.provider_price)
    template = TEMPLATES[config.template]
    now = timezone.now()
    try:
        with transaction.atomic():
            lock_user(user)  # one deploy at a time per user, so the pod limit holds
            money.check_can_start(user, costs.per_hour, config.spend_cap)
            rental = Rental.objects.create(
                user=user, name=config.name, livemode=platform_is_live(), request_key=request_key, request_fingerprint=fingerprint,
                offer=target, provider_slug=target.provider.slug, offer_name=target.name, region=target.region,
                gpu_type=target.gpu_type, gpu_count=target.gpu_count, template=template.slug, image=template.image,
                ports=[p.__dict__ for p in template.ports], disk_gb=config.disk_gb, ssh_public_key=config.ssh_public_key.strip(),
                duration_hours=config.duration_hours, ends_at=None, allow_failover=config.allow_failover, spend_cap=config.spend_cap,
                provider_price_per_hour=costs.provider_per_hour, markup_pct=costs.markup_pct, price_per_hour=costs.per_hour,
            )
            machine.record(rental, RentalEvent.Kind.STEP, f"Price re-quoted from the {quote.source}: {ledger.dollars(quote.provider_price)}/h before markup, {ledger.dollars(costs.per_hour)}/h charged", at=now)
            machine.transition(rental, State.PROVISIONING, f"Deploy requested: {target.gpu_count} × {target.gpu_type} at {target.provider.name}")
    except IntegrityError:
        # The other half of a double submit created it first.
        return deploy(user, offer, config, request_key)
    return rental, True


def _provider_call(rental: Rental, method: str) -> None:
    if rental.instance_id:
        cloud.call(rental.provider_slug, lambda adapter: getattr(adapter, method)(rental.instance_id))


# The loop posts usage at most once a minute per pod (one ledger row, not one per second); stop,
# terminate and scale post the last seconds at once. Checks in between add the unposted seconds.
METER_ROW_SECONDS = 60


def pending(rental: Rental, now: Any = None) -> Decimal:
    """What the pod has used since it was last metered (whole seconds), not yet in the ledger."""
    if rental.state not in (State.AWAITING_ACTIVATION, State.RUNNING) or rental.metered_until is None:
        return Decimal(0)
    seconds = max(0, int(((now or timezone.now()) - rental.metered_until).total_seconds()))
    return rental.price_per_hour * seconds / 3600


def cost_so_far(rental: Rental, now: Any = None) -> Decimal:
    """Everything the pod has cost, by the second: the ledger plus the seconds not posted yet."""
    return ledger.spent_on(rental.subject, rental.livemode) + pending(rental, now)


def meter(rental: Rental, now: Any = None, min_seconds: int = 1) -> Decimal:
    """Charges the pod's usage since it was last metered, by the whole second; returns the charge."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = Rental.objects.select_for_update().get(pk=rental.pk)
        if locked.state not in (State.AWAITING_ACTIVATION, State.RUNNING) or locked.metered_until is None:
            return Decimal(0)
        seconds = int((now - locked.metered_until).total_seconds())
        if seconds < max(1, min_seconds):
            return Decimal(0)
        amount = locked.price_per_hour * seconds / 3600
        start = locked.metered_until
        ledger.post(locked.user, -amount, LedgerKind.USAGE, f"{locked.subject}:usage:{start.isoformat()}",
                    f"{locked.name}: {seconds} s at {ledger.dollars(locked.price_per_hour)}/h", subject=locked.subject,
                    livemode=locked.livemode, at=now)
        locked.metered_until = start + timedelta(seconds=seconds)
        locked.save(update_fields=["metered_until", "updated_at"])
    rental.refresh_from_db()
    return amount


def stop(rental: Rental, reason: str = "Stopped by you", now: Any = None) -> Rental:
    if not machine.can(rental, State.STOPPED):
        raise machine.TransitionRefused(rental, State.STOPPED)
    meter(rental, now)
    cloud.call(rental.provider_slug, lambda adapter: adapter.stop(rental.instance_id))  # type: ignore[attr-defined]
    meter(rental, now)
    return machine.transition(rental, State.STOPPED, reason, metered_until=None)


def start(rental: Rental) -> Rental:
    if not machine.can(rental, State.RUNNING) or rental.state != State.STOPPED:
        raise machine.TransitionRefused(rental, State.RUNNING)
    money.check_can_start(rental.user, rental.price_per_hour, rental.spend_cap - ledger.spent_on(rental.subject) if rental.spend_cap else None, new_pod=False)
    state = cloud.call(rental.provider_slug, lambda adapter: adapter.start(rental.instance_id))  # type: ignore[attr-defined]
    return machine.transition(rental, State.RUNNING, "Started again on its kept storage", metered_until=timezone.now(),
                              ssh_host=state.ssh_host or rental.ssh_host, ssh_port=state.ssh_port or rental.ssh_port)


def terminate(rental: Rental) -> Rental:
    """Ends the pod: the provider instance is terminated, usage charged, a receipt row written."""
    if not machine.can(rental, State.TERMINATED):
        raise machine.TransitionRefused(rental, State.TERMINATED)
    meter(rental)
    _provider_call(rental, "terminate")
    meter(rental)
    with transaction.atomic():
        rental = machine.transition(rental, State.TERMINATED, "Terminated", metered_until=None)
        final = ledger.spent_on(rental.subject, livemode=rental.livemode)
        ledger.post(rental.user, Decimal(0), LedgerKind.RECEIPT, f"{rental.subject}:receipt",
                    f"{rental.name} terminated: {rental.uptime()} s of uptime, final cost ${final:.4f}",
                    subject=rental.subject, livemode=rental.livemode)
        Rental.objects.filter(pk=rental.pk).update(final_cost=final)
    rental.refresh_from_db()
    return rental


def scale(rental: Rental, gpu_count: int) -> Rental:
    """Moves the pod to the provider's offer with `gpu_count` GPUs: re-quote, then re-provision."""
    if rental.state not in (State.RUNNING, State.STOPPED):
        raise machine.TransitionRefused(rental, State.PROVISIONING)
    if gpu_count == rental.gpu_count:
        raise money.Refused("gpu_count", f"The pod already has {gpu_count} GPU{'s' if gpu_count != 1 else ''}.")
    base = rental.offer or Offer.objects.filter(provider__slug=rental.provider_slug, name=rental.offer_name, region=rental.region).first()
    target = offer_for_count(base, gpu_count) if base else None
    if target is None:
        raise money.Refused("gpu_count", f"{rental.provider_slug} has no {gpu_count} × {rental.gpu_type} offer in {rental.region or 'this region'}.")
    quote = cloud.requote(target)
    costs = money.costs(quote.provider_price)
    money.check_can_start(rental.user, costs.per_hour, None, new_pod=False)
    meter(rental)
    _provider_call(rental, "terminate")  # this provider cannot resize in place: a new instance
    meter(rental)
    return machine.transition(
        rental, State.PROVISIONING,
        f"Scaling from {rental.gpu_count} to {target.gpu_count} GPUs: re-quoted {ledger.dollars(costs.per_hour)}/h; re-provisioning",
        offer=target, offer_name=target.name, gpu_count=target.gpu_count, provider_price_per_hour=costs.provider_per_hour,
        markup_pct=costs.markup_pct, price_per_hour=costs.per_hour, provision_attempt=rental.provision_attempt + 1,
        instance_id="", ssh_host="", ssh_port=None, metered_until=None, step="Waiting for the provider",
    )


def activate(rental: Rental, nonce: str) -> bool:
    """Uses the pod-ready link once: the pod is running. False if the link was used or replaced."""
    with transaction.atomic():
        locked = Rental.objects.select_for_update().get(pk=rental.pk)
        if not nonce or locked.activation_nonce != nonce or locked.state != State.AWAITING_ACTIVATION:
            return False
        machine.transition(locked, State.RUNNING, "Activated from the pod-ready email", activation_nonce="", activated_at=timezone.now())
    rental.refresh_from_db()
    return True


def resend_ready(rental: Rental) -> None:
    """A fresh pod-ready link (the old one stops working)."""
    if rental.state != State.AWAITING_ACTIVATION:
        raise machine.TransitionRefused(rental, State.RUNNING)
    with transaction.atomic():
        Rental.objects.filter(pk=rental.pk).update(activation_nonce=emails.new_nonce())
        rental.refresh_from_db()
        machine.record(rental, RentalEvent.Kind.STEP, "A new pod-ready link was sent")
    emails.send_ready(rental)


__all__ = ["PodConfig", "RequestConflict", "deploy", "stop", "start", "terminate", "scale", "activate", "resend_ready", "meter", "pending", "cost_so_far"]
