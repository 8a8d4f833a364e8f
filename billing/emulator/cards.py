"""Stripe's test cards and the messages Stripe's hosted page shows for them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Decline:
    code: str
    decline_code: str
    message: str


# docs.stripe.com/testing: numbers that succeed, and those that fail in a given way.
SUCCEEDS = {
    "4242424242424242": "visa",
    "4000056655665556": "visa",
    "5555555555554444": "mastercard",
    "378282246310005": "amex",
}
DECLINES = {
    "4000000000000002": Decline("card_declined", "generic_decline", "Your card was declined."),
    "4000000000009995": Decline("card_declined", "insufficient_funds", "Your card has insufficient funds."),
    "4000000000009987": Decline("card_declined", "lost_card", "Your card was declined."),
    "4000000000000069": Decline("expired_card", "expired_card", "Your card has expired."),
    "4000000000000127": Decline("incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect."),
    "4000000000000119": Decline("processing_error", "processing_error", "An error occurred while processing your card. Try again in a little bit."),
}
NOT_A_TEST_CARD = Decline(
    "card_declined",
    "test_mode_live_card",
    "Your card was declined. Your request was in test mode, but used a non test card. For a list of valid test cards, visit: https://stripe.com/docs/testing.",
)


def digits(number: str) -> str:
    return "".join(ch for ch in number if not ch.isspace())


def luhn_ok(number: str) -> bool:
    if not number.isdigit() or not 12 <= len(number) <= 19:
        return False
    total = 0
    for index, ch in enumerate(reversed(number)):
        value = int(ch)
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def outcome(number: str) -> Decline | None:
    """None when the card pays; otherwise how it is declined."""
    if number in SUCCEEDS:
        return None
    return DECLINES.get(number, NOT_A_TEST_CARD)


def brand(number: str) -> str:
    if number in SUCCEEDS:
        return SUCCEEDS[number]
    return {"4": "visa", "5": "mastercard", "3": "amex"}.get(number[:1], "unknown")
