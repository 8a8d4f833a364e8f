"""Pods: renting a GPU offer as a running instance, from the wizard to the final receipt.

Uses `providers` (offers, the adapters' provisioning interface) and `billing` (plan limits, the
prepaid ledger); neither of those imports this app.
"""
