"""Plans, subscriptions, Stripe Checkout and webhooks, and the Stripe sandbox emulator.

The only package that imports stripe. Built by the billing issue; nothing here yet.
"""
