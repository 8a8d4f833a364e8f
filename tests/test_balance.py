"""The prepaid balance: an append-only ledger, top-ups through Checkout in payment mode."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings as hsettings
from hypothesis import strategies as st

from billing import ledger, topups
from billing.models import AppendOnly, Balance, LedgerEntry, LedgerKind, TopUp
from tests.accounts_and_billing import Stripe, deliver_all, local_path, make_user

pytestmark = pytest.mark.django_db


def topup_attempt(page: str) -> str:
    match = re.search(r'name="attempt" value="([0-9a-f-]{36})"[^>]*>\s*<div class="field', page)
    assert match, "the billing page has no top-up form"
    return match.group(1)


def start_topup(client: Client, amount: str = "25") -> Any:
    attempt = topup_attempt(client.get("/billing/").content.decode())
    return client.post("/billing/top-up/", {"attempt": attempt, "amount": amount})


movement = st.tuples(st.sampled_from(["topup", "usage", "refund"]), st.decimals(min_value=Decimal("0.000001"), max_value=Decimal("5000"), places=6))


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(moves=st.lists(movement, max_size=25), replays=st.lists(st.integers(min_value=0, max_value=24), max_size=5))
def test_the_ledger_rows_always_sum_to_the_balance(user: Any, moves: list[tuple[str, Decimal]], replays: list[int]) -> None:
    run = uuid.uuid4().hex
    sign = {"topup": 1, "usage": -1, "refund": 1}
    expected = ledger.balance(user)
    references = []
    for index, (kind, amount) in enumerate(moves):
        reference = f"test:{run}:{index}"
        references.append((reference, kind, amount))
        ledger.post(user, sign[kind] * amount, kind, reference, f"{kind} {amount}")
        expected += sign[kind] * amount
    for index in replays:  # posting an event again changes nothing
        if index < len(references):
            reference, kind, amount = references[index]
            _, created = ledger.post(user, sign[kind] * amount, kind, reference, "again")
            assert not created
    assert ledger.balance(user) == expected == ledger.ledger_sum(user)
    newest = LedgerEntry.objects.filter(user=user).first()
    assert newest is None or newest.balance_after == expected


def test_ledger_rows_cannot_be_edited_or_deleted(user: Any) -> None:
    entry, _ = ledger.post(user, Decimal("10"), LedgerKind.TOPUP, "t:1", "ten")
    entry.amount = Decimal("1000")
    with pytest.raises(AppendOnly):
        entry.save()
    with pytest.raises(AppendOnly):
        entry.delete()
    with pytest.raises(AppendOnly):
        LedgerEntry.objects.filter(user=user).update(amount=Decimal("1000"))
    with pytest.raises(AppendOnly):
        LedgerEntry.objects.filter(user=user).delete()
    assert ledger.balance(user) == Decimal("10")


def test_balances_are_kept_apart_per_mode(user: Any) -> None:
    ledger.post(user, Decimal("5"), LedgerKind.TOPUP, "t:sandbox", "sandbox money", livemode=False)
    assert ledger.balance(user, livemode=True) == Decimal("0")
    assert ledger.balance(user, livemode=False) == Decimal("5")


def test_a_top_up_opens_a_payment_mode_checkout_for_the_amount(member: Client, user: Any, stripe_emulator: Stripe) -> None:
    response = start_topup(member, "25.50")
    assert response.status_code == 302
    session = stripe_emulator.state.db["checkout.session"][response["Location"].rsplit("/", 1)[1]]
    assert session["mode"] == "payment" and session["amount_total"] == 2550
    assert session["client_reference_id"] == str(user.pk)
    price = stripe_emulator.state.db["price"][session["_line_items"][0]["price"]]
    assert price["recurring"] is None and price["type"] == "one_time"
    assert TopUp.objects.get(user=user).status == "open"


def test_a_double_submit_of_the_top_up_form_makes_one_session(member: Client, stripe_emulator: Stripe) -> None:
    attempt = topup_attempt(member.get("/billing/").content.decode())
    first = member.post("/billing/top-up/", {"attempt": attempt, "amount": "10"})
    second = member.post("/billing/top-up/", {"attempt": attempt, "amount": "10"})
    assert first["Location"] == second["Location"]
    assert len(stripe_emulator.state.db["checkout.session"]) == 1 and TopUp.objects.count() == 1


def test_the_paid_webhook_credits_the_balance_once_however_often_it_arrives(member: Client, user: Any, stripe_emulator: Stripe) -> None:
    url = start_topup(member, "40")["Location"]
    assert stripe_emulator.pay(url, "4242424242424242").status_code == 303
    deliveries = stripe_emulator.events()
    assert [body.count('"checkout.session.completed"') for body, _ in deliveries][-1] == 1
    deliver_all(Client(), deliveries)
    deliver_all(Client(), deliveries)  # Stripe delivers again: nothing changes
    assert ledger.balance(user) == Decimal("40")
    assert LedgerEntry.objects.filter(user=user, kind="topup").count() == 1
    assert TopUp.objects.get(user=user).status == "paid"


def test_coming_back_from_checkout_credits_at_once_and_the_webhook_adds_nothing(member: Client, user: Any, stripe_emulator: Stripe) -> None:
    paid = stripe_emulator.pay(start_topup(member, "15")["Location"], "4242424242424242")
    back = member.get(local_path(paid.headers["location"]), follow=True)
    assert "$15.00 was added to your balance." in back.content.decode()
    deliver_all(Client(), stripe_emulator.events())
    assert ledger.balance(user) == Decimal("15") == ledger.ledger_sum(user)
    page = member.get("/billing/").content.decode()
    assert "15.00 USD" in page and "Top-up by card ($15.00)" in page


def test_a_declined_card_credits_nothing(member: Client, user: Any, stripe_emulator: Stripe) -> None:
    assert stripe_emulator.pay(start_topup(member, "15")["Location"], "4000000000000002").status_code == 402
    assert stripe_emulator.events() == []
    assert ledger.balance(user) == Decimal("0")


@pytest.mark.parametrize(("amount", "reason"), [("abc", "Enter an amount in dollars"), ("2", "Top up between $5 and $10,000."), ("10.001", "Enter an amount in dollars"), ("99999", "Top up between $5 and $10,000.")])
def test_a_bad_amount_is_an_inline_error_and_no_session(member: Client, stripe_emulator: Stripe, amount: str, reason: str) -> None:
    attempt = topup_attempt(member.get("/billing/").content.decode())
    response = member.post("/billing/top-up/", {"attempt": attempt, "amount": amount}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200  # htmx swaps only 2xx answers
    assert member.post("/billing/top-up/", {"attempt": attempt, "amount": amount}).status_code == 400
    body = response.content.decode()
    assert reason in body and 'aria-invalid="true"' in body and f'value="{amount}"' in body
    assert stripe_emulator.state.db["checkout.session"] == {}


def test_a_session_paid_for_another_user_is_not_credited_to_the_wrong_one(member: Client, user: Any, stripe_emulator: Stripe) -> None:
    url = start_topup(member, "20")["Location"]
    stripe_emulator.pay(url, "4242424242424242")
    other = Client()
    other.force_login(make_user("eve@example.com"))
    response = other.get(f"/billing/top-up/complete/?session_id={url.rsplit('/', 1)[1]}", follow=True)
    assert "no top-up with that reference" in response.content.decode()
    assert not Balance.objects.exclude(user=user).exists()


def test_parse_amount_takes_dollars_and_cents() -> None:
    assert topups.parse_amount("$1,234.50") == 123450


def test_the_emulator_refuses_a_recurring_price_in_payment_mode_as_stripe_does(stripe_emulator: Stripe) -> None:
    import stripe as stripe_sdk

    from billing import gateway

    api = gateway.client()
    price = api.v1.prices.create(params={"currency": "usd", "unit_amount": 100, "recurring": {"interval": "month"}, "product_data": {"name": "x"}})
    with pytest.raises(stripe_sdk.InvalidRequestError) as refused:
        api.v1.checkout.sessions.create(params={"mode": "payment", "success_url": "http://x/", "line_items": [{"price": price.id, "quantity": 1}]})
    assert refused.value.param == "line_items[0][price]" and "recurring price" in str(refused.value)
