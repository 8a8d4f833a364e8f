"""The balance part of the billing page: the ledger, the top-up form and its Checkout return."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import stripe
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from billing import gateway, ledger, topups

log = logging.getLogger("gpubroker.billing")


def balance_context(user: Any, form_error: str = "", amount: str = "") -> dict[str, Any]:
    return {
        "balance": ledger.balance(user),
        "ledger_entries": ledger.entries(user)[:50],
        "topup_presets": [cents // 100 for cents in topups.PRESET_AMOUNTS_CENTS],
        "topup_errors": [form_error] if form_error else [],
        "topup_amount": amount or "25",
        "topup_attempt": uuid.uuid4(),
    }


def _form_again(request: HttpRequest, error: str, status: int) -> HttpResponse:
    """The top-up form with its error, inline: the partial for htmx, else the billing page."""
    context = balance_context(request.user, error, request.POST.get("amount", ""))
    if request.htmx:  # htmx swaps only 2xx answers: the form with its inline error is a 200 to htmx
        return render(request, "billing/overview.html#topup-form", context, status=200)
    from billing.views import overview  # the page with every other section

    response = overview(request)
    messages.error(request, error)
    response.status_code = status
    return response


@login_required
@require_POST
def start_topup(request: HttpRequest) -> HttpResponse:
    try:
        attempt = uuid.UUID(request.POST.get("attempt", ""))
    except ValueError:
        return _form_again(request, "This form is missing its reference: reload the page and try again.", 400)
    try:
        cents = topups.parse_amount(request.POST.get("amount", ""))
        success = request.build_absolute_uri(reverse("billing:topup_complete")) + "?session_id={CHECKOUT_SESSION_ID}"
        cancel = request.build_absolute_uri(reverse("billing:overview")) + "#balance"
        url = topups.start_topup(request.user, cents, attempt, success, cancel)
    except topups.TopUpRefused as exc:
        return _form_again(request, str(exc), 400)
    except gateway.StripeNotConfigured as exc:
        return _form_again(request, str(exc), 503)
    except stripe.StripeError as exc:
        log.warning("stripe error on top-up: %s", type(exc).__name__)
        return _form_again(request, "The payment provider could not start the payment. Nothing was charged; try again in a minute.", 502)
    if request.htmx:
        from django_htmx.http import HttpResponseClientRedirect

        return HttpResponseClientRedirect(url)
    return redirect(url)


@login_required
@require_GET
def topup_complete(request: HttpRequest) -> HttpResponse:
    session_id = request.GET.get("session_id", "")
    try:
        row = topups.complete_return(request.user, session_id) if session_id.startswith("cs_") else None
    except stripe.StripeError:
        row = None  # the webhook credits it anyway
        messages.info(request, "Your payment is being confirmed; the balance updates within a minute.")
    if row is None and session_id.startswith("cs_"):
        messages.error(request, "We have no top-up with that reference for your account.")
    elif row is not None and row.status == row.Status.PAID:
        messages.success(request, f"{ledger.dollars(row.amount_cents / 100)} was added to your balance.")
    elif row is not None:
        messages.info(request, "Your payment is being confirmed; the balance updates within a minute.")
    return redirect(reverse("billing:overview") + "#balance")
