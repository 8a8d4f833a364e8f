"""The rentals loop: drives each pod through provisioning, meters running pods, enforces money.

One `tick` looks at every pod that needs the provider or the meter. Each pod is taken under a
short lease on its row (so several loops never work on one pod at once) and moved by:

- provisioning: ask the adapter for an instance named after the rental and its attempt (the
  provider's idempotency key, so a loop killed between the call and saving the id asks again and
  gets the same instance), then poll it; ready -> awaiting_activation with the pod-ready email;
  failed or no capacity -> failover to the next equivalent offer, or failed;
- awaiting activation / running: charge the seconds since last metered into the ledger; stop the
  pod at zero balance, at the monthly or the pod's cap, or at the end of its duration, with an
  email; warn once at 80 % of a cap.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from datetime import datetime, timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from billing import ledger
from pods import actions, cloud, emails, machine, money
from pods.models import Rental, RentalEvent, SpendCap, State
from providers.adapters.base import AdapterError, FailureKind, InstanceState, ProvisionRequest
from providers.models import Availability, Offer

log = logging.getLogger("gpubroker.pods")
LEASE_SECONDS = 60
WORKING_STATES = (State.PROVISIONING, State.AWAITING_ACTIVATION, State.RUNNING)


def owner_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _claim(rental_id: int, owner: str, now: datetime) -> bool:
    taken = Rental.objects.filter(pk=rental_id).filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now) | Q(lease_owner=owner))
    return bool(taken.update(lease_owner=owner, lease_until=now + timedelta(seconds=LEASE_SECONDS)))


def _release(rental_id: int, owner: str) -> None:
    Rental.objects.filter(pk=rental_id, lease_owner=owner).update(lease_owner="", lease_until=None)


def tick(now: datetime | None = None, owner: str | None = None) -> list[int]:
    """One pass over the pods that need work; returns the ids it looked at."""
    owner = owner or owner_name()
    seen = []
    for rental_id in Rental.objects.filter(state__in=WORKING_STATES).values_list("pk", flat=True):
        at = now or timezone.now()
        if not _claim(rental_id, owner, at):
            continue
        try:
            rental = Rental.objects.select_related("user").get(pk=rental_id)
            if rental.state == State.PROVISIONING:
                advance(rental)
            else:
                enforce(rental, at)
            seen.append(rental_id)
        except Exception:
            log.exception("rental %s: the loop failed on it; next tick tries again", rental_id)
        finally:
            _release(rental_id, owner)
    return seen


# ----- provisioning -----

def _request(rental: Rental) -> ProvisionRequest:
    return ProvisionRequest(offer_name=rental.offer_name, region=rental.region, gpu_count=rental.gpu_count, image=rental.image,
                            name=rental.instance_name, env={"GPUBROKER_POD": str(rental.pk), "PUBLIC_KEY": rental.ssh_public_key})


def _step(rental: Rental, text: str) -> None:
    if rental.step != text:
        with transaction.atomic():
            Rental.objects.filter(pk=rental.pk).update(step=text)
            rental.step = text
            machine.record(rental, RentalEvent.Kind.STEP, text)


def advance(rental: Rental) -> None:
    try:
        if not rental.instance_id:
            state = cloud.call(rental.provider_slug, lambda adapter: adapter.provision(_request(rental)))
            saved = Rental.objects.filter(pk=rental.pk, instance_id="", provision_attempt=rental.provision_attempt).update(instance_id=state.instance_id)
            if saved:
                rental.instance_id = state.instance_id
                machine.record(rental, RentalEvent.Kind.STEP, f"Instance {state.instance_id} requested from {rental.provider_slug}")
            else:
                rental.refresh_from_db()
        else:
            state = cloud.call(rental.provider_slug, lambda adapter: adapter.instance_state(rental.instance_id))
    except AdapterError as exc:
        if exc.kind in (FailureKind.NO_CAPACITY, FailureKind.BAD_RESPONSE):
            fail_over(rental, exc.detail)
        else:  # a blip of the provider's API: the same request is asked again next tick
            _step(rental, f"The provider did not answer ({exc.kind.value}); asking again")
        return
    if state.status in ("pending", "provisioning"):
        _step(rental, state.detail or state.status.capitalize())
    elif state.status == "running":
        ready(rental, state)
    elif state.status == "failed":
        fail_over(rental, state.detail or "the provider reported a failure")


def ready(rental: Rental, state: InstanceState) -> None:
    now = timezone.now()
    fields = {"ssh_host": state.ssh_host or "", "ssh_port": state.ssh_port, "metered_until": now, "step": "Running at the provider"}
    if rental.duration_hours and rental.ends_at is None:
        fields["ends_at"] = now + timedelta(hours=rental.duration_hours)
    if rental.activated_at:  # a re-provision (scale, failover) of a pod already in use
        machine.transition(rental, State.RUNNING, f"Instance {state.instance_id} is running", **fields)
        return
    with transaction.atomic():
        machine.transition(rental, State.AWAITING_ACTIVATION, f"Instance {state.instance_id} is ready; the pod-ready email was sent",
                           activation_nonce=emails.new_nonce(), **fields)
        transaction.on_commit(lambda: emails.send_ready(Rental.objects.select_related("user").get(pk=rental.pk)))


# ----- failover -----

def tried_providers(rental: Rental) -> set[str]:
    return {rental.provider_slug, *rental.failed_providers}


def equivalent_offers(rental: Rental) -> list[Offer]:
    """Same GPU type and count on another provider, cheapest first, within what the user can pay."""
    standing = money.standing(rental.user)
    budget = standing.balance if standing.cap_left is None else min(standing.balance, standing.cap_left)
    candidates = (Offer.objects.filter(gpu_type=rental.gpu_type, gpu_count=rental.gpu_count)
                  .exclude(availability_status=Availability.UNAVAILABLE).exclude(provider__slug__in=tried_providers(rental))
                  .select_related("provider").order_by("price_per_hour", "pk"))
    fits = []
    for offer in candidates:
        per_hour = money.with_markup(offer.price_per_hour)
        if per_hour <= budget and (rental.spend_cap is None or per_hour <= rental.spend_cap):
            fits.append(offer)
    return fits


def fail_over(rental: Rental, reason: str) -> None:
    """The provider could not give the pod: move to the next equivalent offer, or offer it, or fail."""
    if rental.instance_id:
        try:  # never leave a broken instance billing at the provider
            cloud.call(rental.provider_slug, lambda adapter: adapter.terminate(rental.instance_id))
        except AdapterError:
            log.warning("rental %s: could not terminate failed instance %s", rental.pk, rental.instance_id)
    failed = sorted({*rental.failed_providers, rental.provider_slug})
    Rental.objects.filter(pk=rental.pk).update(failed_providers=failed)
    rental.failed_providers = failed
    options = equivalent_offers(rental)
    note = f"{rental.gpu_count} × {rental.gpu_type} failed at {rental.provider_slug}: {reason}"
    if options and rental.allow_failover:
        take(rental, options[0], note)
        return
    with transaction.atomic():
        machine.record(rental, RentalEvent.Kind.FAILOVER, note + (f"; {options[0].provider.name} offers the same at {ledger.dollars(money.with_markup(options[0].price_per_hour))}/h" if options else "; no equivalent offer fits the budget"))
        machine.transition(rental, State.FAILED, f"Provisioning failed: {reason}", failover_offer=options[0] if options else None,
                           instance_id="", step=reason[:200])


def take(rental: Rental, offer: Offer, note: str) -> Rental:
    """Re-provisions the pod on `offer` (automatic failover or the user accepting the proposal)."""
    per_hour = money.with_markup(offer.price_per_hour)
    with transaction.atomic():
        machine.record(rental, RentalEvent.Kind.FAILOVER, f"{note}; moving to {offer.provider.name} {offer.name} at {ledger.dollars(per_hour)}/h")
        if rental.state != State.PROVISIONING:
            machine.transition(rental, State.PROVISIONING, f"Failover to {offer.provider.name}")
        Rental.objects.filter(pk=rental.pk).update(
            offer=offer, provider_slug=offer.provider.slug, offer_name=offer.name, region=offer.region,
            provider_price_per_hour=offer.price_per_hour, markup_pct=money.markup_pct(), price_per_hour=per_hour,
            provision_attempt=rental.provision_attempt + 1, instance_id="", failover_offer=None, step="Waiting for the provider",
        )
    rental.refresh_from_db()
    return rental


# ----- money while it runs -----

def enforce(rental: Rental, now: datetime) -> None:
    actions.meter(rental, now, min_seconds=actions.METER_ROW_SECONDS)
    if rental.state not in (State.AWAITING_ACTIVATION, State.RUNNING):
        return
    reason = stop_reason(rental, now)
    if reason:
        try:
            actions.stop(rental, f"Stopped automatically: {reason}", now)
        except AdapterError as exc:
            log.warning("rental %s: could not stop (%s); trying again next tick", rental.pk, exc)
            return
        emails.send_stopped(rental, reason)
        return
    warn(rental, now)


def stop_reason(rental: Rental, now: datetime) -> str:
    """Why the pod must stop now, counting the seconds not yet posted to the ledger; or ""."""
    unposted = actions.pending(rental, now)
    if ledger.balance(rental.user, livemode=rental.livemode) - unposted <= 0:
        return "your balance is used up"
    if rental.ends_at and now >= rental.ends_at:
        return f"its {rental.duration_hours} h duration ended"
    if rental.spend_cap is not None and ledger.spent_on(rental.subject, rental.livemode) + unposted >= rental.spend_cap:
        return f"it reached its spend cap of {ledger.dollars(rental.spend_cap)}"
    cap = money.monthly_cap(rental.user)
    if cap is not None and ledger.spent_this_month(rental.user, rental.livemode, now) + unposted >= cap:
        return f"your monthly spend cap of {ledger.dollars(cap)} is reached"
    return ""


def warn(rental: Rental, now: datetime) -> None:
    unposted = actions.pending(rental, now)
    if rental.spend_cap and rental.warned_cap_at is None and ledger.spent_on(rental.subject, rental.livemode) + unposted >= rental.spend_cap * money.WARN_SHARE:
        if Rental.objects.filter(pk=rental.pk, warned_cap_at__isnull=True).update(warned_cap_at=now):
            machine.record(rental, RentalEvent.Kind.WARNING, f"80 % of the pod's spend cap ({ledger.dollars(rental.spend_cap)}) is used")
            emails.send_warning(rental, "pod's spend cap")
    cap = SpendCap.objects.filter(user=rental.user).first()
    month = ledger.month_start(now).date()
    if cap and cap.monthly_cap and cap.warned_month != month and ledger.spent_this_month(rental.user, rental.livemode, now) + unposted >= cap.monthly_cap * money.WARN_SHARE:
        if SpendCap.objects.filter(pk=cap.pk).exclude(warned_month=month).update(warned_month=month):
            machine.record(rental, RentalEvent.Kind.WARNING, f"80 % of your monthly spend cap ({ledger.dollars(cap.monthly_cap)}) is used")
            emails.send_warning(rental, "monthly spend cap")


# ----- the loop -----

async def run(stop: asyncio.Event, tick_seconds: float | None = None) -> None:
    """Ticks until `stop` is set (the `run_pods` command, and the server in the embedded default)."""
    interval = tick_seconds or settings.POD_TICK_SECONDS
    owner = owner_name()
    while not stop.is_set():
        try:
            await sync_to_async(tick, thread_sensitive=False)(owner=owner)
        except Exception:
            log.exception("rentals tick failed")
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except TimeoutError:
            pass


__all__ = ["tick", "run", "advance", "enforce", "fail_over", "take", "equivalent_offers"]
