"""A small stateful Stripe-compatible server for SANDBOX when no Stripe test account is set.

The app reaches it through the official stripe SDK with `base_addresses={"api": url}`, so the
same code runs against real Stripe test mode. It implements what GPUBROKER uses: checkout
sessions (create, retrieve, expire), customers, products, prices, subscriptions (retrieve,
update, cancel), invoices, billing portal sessions; a hosted checkout page that honours Stripe's
test cards; and webhooks signed exactly as Stripe signs them (`Stripe-Signature: t=...,v1=...`).

`manage.py stripe_emulator` serves it; `EmulatorServer` runs it in a thread for the tests.
"""

from billing.emulator.server import EmulatorServer
from billing.emulator.state import Emulator, StripeError

__all__ = ["Emulator", "EmulatorServer", "StripeError"]
