"""Plans, subscriptions, Stripe Checkout and webhooks, API keys, and the Stripe sandbox emulator.

The only package that imports stripe (through `billing.gateway`). Never imports `web` or
`admin_console`; they see plans and limits through `billing.models` and `billing.entitlements`.
"""
