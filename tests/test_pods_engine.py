"""Pods through the rentals loop: provisioning, activation, metering, budgets, failover, limits."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone

from billing import ledger
from billing.models import LedgerEntry, Plan, Subscription
from pods import actions, engine, machine, money
from pods.models import Rental, RentalEvent, SpendCap, State
from providers.adapters.base import AdapterError
from providers.models import Offer
from tests.accounts_and_billing import make_user
from tests.pods_world import World, a100, config, fund, make_rental

pytestmark = pytest.mark.django_db


def deploy(user: Any, key: str = "k1", **overrides: Any) -> Rental:
    rental, _ = actions.deploy(user, a100(), config(**overrides), key)
    return rental


def provisioned(world: World, user: Any, **overrides: Any) -> Rental:
    rental = deploy(user, **overrides)
    engine.tick()
    world.boot()
    engine.tick()
    rental.refresh_from_db()
    return rental


def states(rental: Rental) -> list[str]:
    return list(rental.events.filter(kind="transition").values_list("to_state", flat=True))


def test_a_deploy_is_provisioning_with_a_requoted_price_and_the_markup(world: World, user: Any) -> None:
    fund(user)
    rental = deploy(user)
    offer = a100()
    assert rental.state == State.PROVISIONING
    assert rental.provider_price_per_hour == offer.price_per_hour
    assert rental.price_per_hour == (offer.price_per_hour * Decimal("1.10")).quantize(Decimal("0.0001"))
    assert states(rental) == ["provisioning"]
    assert "re-quoted from the sandbox market" in rental.events.first().message


def test_the_same_request_twice_makes_one_pod_and_another_body_is_a_conflict(world: World, user: Any) -> None:
    fund(user)
    first = deploy(user, "same")
    again, created = actions.deploy(user, a100(), config(), "same")
    assert (again.pk, created) == (first.pk, False)
    with pytest.raises(actions.RequestConflict):
        actions.deploy(user, a100(), config(name="other"), "same")
    assert Rental.objects.count() == 1


def test_provisioning_runs_to_awaiting_activation_with_the_pod_ready_email(world: World, user: Any) -> None:
    fund(user)
    rental = deploy(user)
    engine.tick()
    rental.refresh_from_db()
    assert rental.state == State.PROVISIONING and rental.instance_id.startswith("sbx-cudo-")
    assert rental.step == "waiting for a host with capacity"
    world.boot()
    engine.tick()
    rental.refresh_from_db()
    assert rental.state == State.AWAITING_ACTIVATION
    assert rental.ssh_host == f"{rental.instance_id}.sandbox.gpubroker.invalid" and rental.metered_until is not None
    assert states(rental) == ["provisioning", "awaiting_activation"]
    [email] = mail.outbox
    assert email.subject == "Your pod trainer is ready" and "/pods/activate/" in email.body
    assert "Activate and connect" in email.alternatives[0][0]


def test_a_loop_killed_after_the_provider_call_resumes_to_exactly_one_instance(world: World, user: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    fund(user)
    rental = deploy(user)

    def die(*args: Any, **kwargs: Any) -> Any:  # the process dies right after the provider answered
        raise SystemExit("killed")

    from django.db.models.query import QuerySet

    real_update = QuerySet.update
    monkeypatch.setattr(QuerySet, "update", lambda self, **kw: die() if "instance_id" in kw else real_update(self, **kw))
    with pytest.raises(SystemExit):
        engine.advance(Rental.objects.get(pk=rental.pk))
    monkeypatch.setattr(QuerySet, "update", real_update)
    assert Rental.objects.get(pk=rental.pk).instance_id == ""
    Rental.objects.filter(pk=rental.pk).update(lease_owner="", lease_until=None)
    world.boot()
    engine.tick()
    engine.tick()
    rental.refresh_from_db()
    assert rental.state == State.AWAITING_ACTIVATION
    instances = {record for record in world.store._records if world.store._records[record]["name"] == rental.instance_name}
    assert instances == {rental.instance_id}


def test_activation_makes_it_running_once(world: World, user: Any) -> None:
    fund(user)
    rental = provisioned(world, user)
    nonce = rental.activation_nonce
    assert actions.activate(rental, nonce)
    assert rental.state == State.RUNNING and rental.activated_at is not None
    assert not actions.activate(rental, nonce)  # used: nothing more happens


def test_running_is_metered_by_the_second_into_the_ledger(world: World, user: Any) -> None:
    fund(user)
    rental = provisioned(world, user)
    start = rental.metered_until
    charged = actions.meter(rental, start + timedelta(seconds=90, milliseconds=400))
    assert charged == rental.price_per_hour * 90 / 3600
    assert rental.metered_until == start + timedelta(seconds=90)
    assert actions.meter(rental, start + timedelta(seconds=90, milliseconds=900)) == 0  # under a second: later
    assert ledger.balance(user) == Decimal("100") - charged.quantize(Decimal("0.000001"))
    assert ledger.balance(user) == ledger.ledger_sum(user)


def test_the_loop_posts_usage_once_a_minute_and_stop_posts_the_last_seconds(world: World, user: Any) -> None:
    fund(user)
    rental = provisioned(world, user)
    start = rental.metered_until
    engine.enforce(rental, start + timedelta(seconds=59))
    assert not LedgerEntry.objects.filter(kind="usage").exists()
    assert actions.cost_so_far(rental, start + timedelta(seconds=59)) == rental.price_per_hour * 59 / 3600
    engine.enforce(rental, start + timedelta(seconds=61))
    assert LedgerEntry.objects.filter(kind="usage").count() == 1
    actions.stop(rental, now=start + timedelta(seconds=75))
    assert LedgerEntry.objects.filter(kind="usage").count() == 2
    assert ledger.balance(user) == ledger.ledger_sum(user)


def test_unposted_seconds_count_towards_zero_balance(world: World, user: Any) -> None:
    fund(user, "2")
    rental = provisioned(world, user)
    ledger.post(user, Decimal("-0.5"), "usage", "test:drain", "drain")  # left: 1.5, under one hour
    seconds_to_empty = int(Decimal("1.5") / (rental.price_per_hour / 3600)) + 1
    assert engine.stop_reason(rental, rental.metered_until + timedelta(seconds=seconds_to_empty)) == "your balance is used up"
    assert engine.stop_reason(rental, rental.metered_until + timedelta(seconds=30)) == ""


def test_zero_balance_stops_the_pod_with_an_email(world: World, user: Any) -> None:
    fund(user, "2")
    rental = provisioned(world, user)
    actions.activate(rental, rental.activation_nonce)
    mail.outbox.clear()
    engine.enforce(rental, rental.metered_until + timedelta(hours=2))
    rental.refresh_from_db()
    assert rental.state == State.STOPPED
    assert ledger.balance(user) <= 0
    assert "balance is used up" in rental.events.last().message
    assert [m.subject for m in mail.outbox] == ["trainer was stopped: your balance is used up"]
    assert world.store.get(rental.instance_id)["stopped_at"] is not None


def test_the_pod_cap_warns_at_80_percent_then_stops_at_the_cap(world: World, user: Any) -> None:
    fund(user)
    rental = provisioned(world, user, spend_cap=Decimal("2.00"))
    at = rental.metered_until
    per_second = rental.price_per_hour / 3600
    engine.enforce(rental, at + timedelta(seconds=int(Decimal("1.70") / per_second)))
    rental.refresh_from_db()
    assert rental.state == State.AWAITING_ACTIVATION and rental.warned_cap_at is not None
    assert rental.events.filter(kind="warning").count() == 1
    engine.enforce(rental, at + timedelta(seconds=int(Decimal("1.80") / per_second)))
    assert rental.events.filter(kind="warning").count() == 1  # once
    engine.enforce(rental, at + timedelta(seconds=int(Decimal("2.01") / per_second)))
    rental.refresh_from_db()
    assert rental.state == State.STOPPED and "spend cap of $2.00" in rental.events.last().message
    assert [m.subject for m in mail.outbox][-2:] == ["trainer: 80 % of your pod's spend cap is used", "trainer was stopped: it reached its spend cap of $2.00"]


def test_the_monthly_cap_refuses_a_pod_it_cannot_cover(world: World, user: Any) -> None:
    fund(user)
    SpendCap.objects.create(user=user, monthly_cap=Decimal("1.00"))
    with pytest.raises(money.Refused) as refused:
        deploy(user)
    assert refused.value.field == "monthly_cap" and not Rental.objects.exists()


def test_the_monthly_cap_stops_a_running_pod(world: World, user: Any) -> None:
    fund(user)
    SpendCap.objects.create(user=user, monthly_cap=Decimal("3.00"))
    rental = provisioned(world, user)
    engine.enforce(rental, rental.metered_until + timedelta(hours=3))
    rental.refresh_from_db()
    assert rental.state == State.STOPPED and "monthly spend cap of $3.00" in rental.events.last().message


def test_a_pod_needs_its_first_hour_covered(world: World, user: Any) -> None:
    fund(user, "1")
    with pytest.raises(money.Refused) as refused:
        deploy(user)
    assert refused.value.field == "balance" and "first hour" in refused.value.reason


def test_free_allows_one_pod_and_pro_ten(world: World, user: Any) -> None:
    fund(user, "500")
    deploy(user, "a")
    with pytest.raises(money.Refused) as refused:
        deploy(user, "b")
    assert refused.value.field == "plan" and "Free plan allows 1 pod" in refused.value.reason
    Subscription.objects.create(user=user, plan=Plan.objects.get(slug="pro"), stripe_id="sub_x", stripe_customer_id="cus_x", status="active")
    for index in range(9):
        deploy(user, f"pro-{index}")
    with pytest.raises(money.Refused):
        deploy(user, "eleventh")
    assert Rental.objects.filter(user=user).count() == 10


def test_a_terminated_pod_frees_its_plan_slot_and_gets_a_receipt(world: World, user: Any) -> None:
    fund(user)
    rental = provisioned(world, user)
    actions.meter(rental, rental.metered_until + timedelta(seconds=60))
    rental = actions.terminate(rental)
    assert rental.state == State.TERMINATED and rental.final_cost is not None and rental.final_cost > 0
    receipt = LedgerEntry.objects.get(reference=f"{rental.subject}:receipt")
    assert receipt.amount == 0 and f"final cost ${rental.final_cost:.4f}" in receipt.description
    assert world.store.get(rental.instance_id)["terminated_at"] is not None
    deploy(user, "next")  # Free's one pod is free again


def test_stop_then_start_runs_again_and_bills_only_while_running(world: World, user: Any) -> None:
    fund(user)
    rental = provisioned(world, user)
    actions.activate(rental, rental.activation_nonce)
    rental = actions.stop(rental)
    assert rental.state == State.STOPPED and rental.metered_until is None
    before = ledger.balance(user)
    engine.tick()
    assert ledger.balance(user) == before
    rental = actions.start(rental)
    assert rental.state == State.RUNNING and rental.metered_until is not None
    assert states(rental) == ["provisioning", "awaiting_activation", "running", "stopped", "running"]


@pytest.mark.parametrize(("state", "action"), [
    ("provisioning", "stop"), ("provisioning", "start"), ("awaiting_activation", "start"), ("running", "start"),
    ("terminated", "stop"), ("terminated", "start"), ("terminated", "terminate"), ("failed", "stop"),
])
def test_refused_transitions_raise_and_change_nothing(world: World, user: Any, state: str, action: str) -> None:
    fund(user)
    rental = deploy(user)
    Rental.objects.filter(pk=rental.pk).update(state=state)
    rental.refresh_from_db()
    events = rental.events.count()
    with pytest.raises(machine.TransitionRefused):
        getattr(actions, action)(rental)
    rental.refresh_from_db()
    assert rental.state == state and rental.events.count() == events


def test_every_allowed_transition_is_one_history_row_and_every_other_is_refused(user: Any) -> None:
    rental = make_rental(user)
    for source in State:
        for target in State:
            Rental.objects.filter(pk=rental.pk).update(state=source)
            rental.refresh_from_db()
            before = rental.events.count()
            if target in machine.ALLOWED[source]:
                machine.transition(rental, target, f"{source} to {target}")
                event = rental.events.last()
                assert rental.events.count() == before + 1
                assert (event.from_state, event.to_state, rental.state) == (source, target, target)
            else:
                with pytest.raises(machine.TransitionRefused):
                    machine.transition(rental, target, "refused")
                rental.refresh_from_db()
                assert rental.events.count() == before and rental.state == source


def test_scaling_requotes_and_reprovisions_with_the_new_gpu_count(world: World, user: Any) -> None:
    fund(user)
    rental = provisioned(world, user)
    actions.activate(rental, rental.activation_nonce)
    old_instance = rental.instance_id
    rental = actions.scale(rental, 2)
    two = Offer.objects.get(provider__slug="cudo", region="us-carlsbad-1", gpu_type="A100 80GB", name="intel-ice-lake-a100-pci_2x8v16gb")
    assert rental.state == State.PROVISIONING and rental.gpu_count == 2 and rental.offer_name == two.name
    assert rental.price_per_hour == money.with_markup(two.price_per_hour)
    assert world.store.get(old_instance)["terminated_at"] is not None
    engine.tick()
    world.boot()
    engine.tick()
    rental.refresh_from_db()
    assert rental.state == State.RUNNING and rental.instance_id != old_instance  # already activated: no new email round


def test_failover_takes_the_cheapest_equivalent_offer_on_another_provider(world: World, user: Any) -> None:
    fund(user)
    world.cloud.market.settings = type(world.cloud.market.settings)(**{**world.cloud.market.settings.__dict__, "provision_failure_rate": 1.0})
    rental = deploy(user, allow_failover=True)
    engine.tick()
    world.boot()
    engine.tick()
    rental.refresh_from_db()
    expected = (Offer.objects.filter(gpu_type="A100 80GB", gpu_count=1).exclude(availability_status="unavailable")
                .exclude(provider__slug="cudo").order_by("price_per_hour", "pk").first())
    assert rental.state == State.PROVISIONING
    assert (rental.provider_slug, rental.offer_name) == (expected.provider.slug, expected.name)
    assert rental.failed_providers == ["cudo"]
    failover = rental.events.filter(kind="failover").last()
    assert "failed at cudo" in failover.message and expected.provider.name in failover.message


def test_without_automatic_failover_the_pod_fails_and_proposes_the_equivalent(world: World, user: Any) -> None:
    fund(user)
    world.cloud.market.settings = type(world.cloud.market.settings)(**{**world.cloud.market.settings.__dict__, "provision_failure_rate": 1.0})
    rental = deploy(user)
    engine.tick()
    world.boot()
    engine.tick()
    rental.refresh_from_db()
    assert rental.state == State.FAILED and rental.failover_offer is not None
    assert rental.failover_offer.provider.slug != "cudo" and rental.failover_offer.gpu_type == "A100 80GB"


def test_failover_skips_offers_beyond_the_budget(world: World, user: Any) -> None:
    fund(user, "2")
    rental = deploy(user)
    rental.failed_providers = []
    for offer in engine.equivalent_offers(rental):
        assert money.with_markup(offer.price_per_hour) <= Decimal("2")


def test_another_users_deploy_is_not_counted_against_mine(world: World, user: Any) -> None:
    other = make_user("eve@example.com")
    fund(user)
    fund(other)
    deploy(other, "x")
    deploy(user, "x")
    assert Rental.objects.filter(user=user).count() == 1 and Rental.objects.filter(user=other).count() == 1


def test_a_provider_blip_during_provisioning_is_retried_not_failed(world: World, user: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    fund(user)
    rental = deploy(user)
    from providers.adapters.base import FailureKind

    def blip(*args: Any, **kwargs: Any) -> Any:
        raise AdapterError("cudo", FailureKind.UNAVAILABLE, "503")

    monkeypatch.setattr(world.cloud, "provision", blip)
    engine.tick()
    rental.refresh_from_db()
    assert rental.state == State.PROVISIONING and "did not answer" in rental.step
    monkeypatch.undo()
    engine.tick()
    rental.refresh_from_db()
    assert rental.instance_id


def test_the_events_of_a_pod_are_in_order(world: World, user: Any) -> None:
    fund(user)
    rental = provisioned(world, user)
    times = list(rental.events.values_list("at", flat=True))
    assert times == sorted(times) and RentalEvent.objects.filter(rental=rental).count() >= 4
    assert timezone.now() >= times[-1]
