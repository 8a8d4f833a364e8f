"""Plans, Checkout return pages, the billing page and the Stripe webhook endpoint."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any

import stripe
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from billing import checkout, gateway, webhooks
from billing.balance_views import balance_context, start_topup, topup_complete  # noqa: F401 (routed in urls)
from billing.entitlements import platform_is_live, standing
from billing.models import CheckoutSession, Invoice, Plan

log = logging.getLogger("gpubroker.billing")
View = Callable[..., HttpResponse]


def _attempt(request: HttpRequest) -> uuid.UUID | None:
    try:
        return uuid.UUID(request.POST.get("attempt", ""))
    except ValueError:
        return None


def _stripe_failure(exc: stripe.StripeError) -> str:
    if isinstance(exc, stripe.APIConnectionError):
        return "We could not reach the payment provider. Nothing was charged; please try again in a minute."
    return f"The payment provider refused the request ({exc.user_message or 'no reason given'}). Nothing was charged."


def _billing_action(view: View) -> View:
    """POST-only, signed-in, with a valid click id; billing and Stripe errors become messages."""

    @wraps(view)
    @login_required
    @require_POST
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        attempt = _attempt(request)
        if attempt is None:
            return render(request, "billing/problem.html", {"title": "Form expired", "problem": "This form is missing its reference (attempt): reload the page and try again."}, status=400)
        try:
            return view(request, attempt, *args, **kwargs)
        except checkout.AlreadySubscribed as exc:
            messages.info(request, str(exc))
            return redirect("billing:overview")
        except (checkout.BillingError, gateway.StripeNotConfigured) as exc:
            return render(request, "billing/problem.html", {"title": "Payment not possible", "problem": str(exc)}, status=409 if isinstance(exc, checkout.BillingError) else 503)
        except stripe.StripeError as exc:
            log.warning("stripe error on %s: %s", request.path, type(exc).__name__)
            return render(request, "billing/problem.html", {"title": "Payment provider problem", "problem": _stripe_failure(exc)}, status=502)

    return wrapper


@require_GET
def plans(request: HttpRequest) -> HttpResponse:
    problems = gateway.problems()
    plans = Plan.objects.offered()
    # ?plan=<slug>: the plan chosen before signing up, highlighted when the person comes back.
    chosen = next((p for p in plans if p.slug == request.GET.get("plan") and not p.is_free), None)
    context = {"plans": plans, "standing": standing(request.user), "payments_problem": problems[0] if problems else "", "attempt": uuid.uuid4(), "chosen_plan": chosen, "chosen_slug": chosen.slug if chosen else ""}
    return render(request, "billing/plans.html", context)


@_billing_action
def start_checkout(request: HttpRequest, attempt: uuid.UUID, slug: str) -> HttpResponse:
    plan = get_object_or_404(Plan, slug=slug, is_active=True)
    success = request.build_absolute_uri(reverse("billing:success")) + "?session_id={CHECKOUT_SESSION_ID}"
    cancel = request.build_absolute_uri(reverse("billing:checkout_canceled")) + f"?attempt={attempt}"
    return redirect(checkout.start_checkout(request.user, plan, attempt, success, cancel))


@login_required
@require_GET
def success(request: HttpRequest) -> HttpResponse:
    session_id = request.GET.get("session_id", "")
    if not session_id.startswith("cs_"):
        return render(request, "billing/problem.html", {"title": "No checkout", "problem": "This page needs the checkout reference Stripe adds to the link (session_id)."}, status=400)
    try:
        row = checkout.complete_return(request.user, session_id)
    except checkout.BillingError as exc:
        return render(request, "billing/problem.html", {"title": "No checkout", "problem": str(exc)}, status=404)
    except stripe.StripeError as exc:
        return render(request, "billing/problem.html", {"title": "Payment provider problem", "problem": _stripe_failure(exc)}, status=502)
    return render(request, "billing/success.html", {"checkout": row, "standing": standing(request.user)})


@login_required
@require_GET
def checkout_canceled(request: HttpRequest) -> HttpResponse:
    try:
        row = checkout.abandon(request.user, uuid.UUID(request.GET.get("attempt", "")))
    except ValueError:
        row = None
    except stripe.StripeError:
        row = None  # the session still expires by itself within 24 hours
    return render(request, "billing/canceled.html", {"checkout": row, "standing": standing(request.user)})


@login_required
@require_GET
def overview(request: HttpRequest) -> HttpResponse:
    current = standing(request.user)
    try:
        keys = gateway.keys_for_mode()
        portal = keys.portal
    except gateway.StripeNotConfigured:
        portal = False
    context = {
        "standing": current,
        "plans": Plan.objects.offered(),
        "invoices": Invoice.objects.filter(user=request.user, subscription__livemode=platform_is_live()).select_related("subscription__plan")[:24],
        "open_checkout": CheckoutSession.objects.filter(user=request.user, status=CheckoutSession.Status.OPEN).first(),
        "portal": portal and bool(current.subscription),
        "attempt": uuid.uuid4(),
        **balance_context(request.user),
    }
    return render(request, "billing/overview.html", context)


@_billing_action
def change_plan(request: HttpRequest, attempt: uuid.UUID, slug: str) -> HttpResponse:
    plan = get_object_or_404(Plan, slug=slug)
    subscription = checkout.change_plan(request.user, plan, attempt)
    if plan.is_free:
        messages.success(request, f"{subscription.plan.name} ends at the end of the period; you then move to Free.")
    else:
        messages.success(request, f"You are now on {subscription.plan.name}. Stripe prorates the difference on your next invoice.")
    return redirect("billing:overview")


@_billing_action
def cancel(request: HttpRequest, attempt: uuid.UUID) -> HttpResponse:
    subscription = checkout.cancel_at_period_end(request.user, attempt)
    messages.success(request, f"{subscription.plan.name} will end at the end of the period; you keep it until then.")
    return redirect("billing:overview")


@_billing_action
def resume(request: HttpRequest, attempt: uuid.UUID) -> HttpResponse:
    subscription = checkout.resume(request.user, attempt)
    messages.success(request, f"{subscription.plan.name} will renew as usual.")
    return redirect("billing:overview")


@_billing_action
def portal(request: HttpRequest, attempt: uuid.UUID) -> HttpResponse:
    return redirect(checkout.portal_url(request.user, request.build_absolute_uri(reverse("billing:overview"))))


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    try:
        keys = gateway.keys_for_mode()
        event = gateway.verify_webhook(request.body, request.headers.get("Stripe-Signature"), keys)
    except gateway.WebhookRejected as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    except gateway.StripeNotConfigured as exc:
        # The reason names variables and key kinds: for the operator's log, not for any caller.
        log.error("stripe webhook refused: payments are not configured: %s", exc)
        return JsonResponse({"error": "payments are not available at the moment; retry later"}, status=503)
    try:
        outcome = webhooks.process(gateway.client(keys), event)
    except stripe.StripeError as exc:
        # Nothing was stored; Stripe delivers again later.
        log.warning("webhook %s %s: stripe call failed (%s); will be retried", event["id"], event["type"], type(exc).__name__)
        return JsonResponse({"error": "could not reach Stripe while handling the event; retry later"}, status=503)
    return JsonResponse({"received": True, "id": event["id"], "outcome": outcome})
