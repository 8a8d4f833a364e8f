"""The deploy wizard (Configure -> Review -> Deploy), the pod's page and its actions, activation."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core import signing
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from billing import ledger
from billing.entitlements import standing as plan_standing
from pods import actions, cloud, emails, engine, machine, money
from pods.forms import ConfigureForm, ScaleForm, sibling_offers
from pods.images import TEMPLATES, port_rows
from pods.models import Draft, Rental, State
from providers.adapters.base import AdapterError
from providers.models import Offer

log = logging.getLogger("gpubroker.pods")


def owned_rental(request: HttpRequest, rental_id: int) -> Rental:
    """The signed-in user's pod, or 404: another user's pod does not exist for them."""
    return get_object_or_404(Rental.objects.select_related("user", "offer__provider", "failover_offer__provider"), pk=rental_id, user=request.user)


def owned_draft(request: HttpRequest, token: str) -> Draft:
    try:
        return get_object_or_404(Draft.objects.select_related("offer__provider", "rental"), token=token, user=request.user)
    except signing.BadSignature:
        raise Http404 from None


def _redirect(request: HttpRequest, url: str) -> HttpResponse:
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


# ----- the wizard -----

@login_required
@require_GET
def start(request: HttpRequest, offer_id: int) -> HttpResponse:
    """Deploy on an offer row: a draft for it (the unfinished one, if any), then Configure."""
    offer = get_object_or_404(Offer.objects.select_related("provider"), pk=offer_id)
    draft = Draft.objects.filter(user=request.user, offer=offer, rental__isnull=True).order_by("-updated_at").first()
    draft = draft or Draft.objects.create(user=request.user, offer=offer)
    return redirect("pods:configure", token=draft.token)


def _initial(draft: Draft) -> dict[str, Any]:
    offer = draft.offer
    template = TEMPLATES["pytorch"]
    return {"name": "", "gpu_count": offer.gpu_count, "region": offer.region, "template": template.slug, "disk_gb": max(50, template.min_disk_gb),
            "run_mode": "until_stopped", "allow_failover": True, **draft.data}


@login_required
@require_http_methods(["GET", "POST"])
def configure(request: HttpRequest, token: str) -> HttpResponse:
    draft = owned_draft(request, token)
    if draft.rental_id:
        return redirect("pods:detail", rental_id=draft.rental_id)
    if request.method == "POST":
        form = ConfigureForm(request.POST, offer=draft.offer)
        if form.is_valid():
            draft.data = form.draft_data()
            draft.save(update_fields=["data", "updated_at"])
            return _redirect(request, reverse("pods:review", kwargs={"token": draft.token}))
        # Keep what was typed, even when invalid: Back or a refresh shows it again.
        draft.data = {**draft.data, **{k: v for k, v in request.POST.items() if k in form.fields}}
        draft.save(update_fields=["data", "updated_at"])
        # htmx swaps only 2xx answers: the partial with its inline errors is a 200 to htmx.
        status = 200 if request.htmx else 400
    else:
        form = ConfigureForm(initial=_initial(draft), offer=draft.offer)
        status = 200
    context = {"draft": draft, "offer": draft.offer, "form": form, "templates": TEMPLATES.values(), "step": "configure"}
    template = "pods/configure.html#configure-form" if request.htmx else "pods/configure.html"
    return render(request, template, context, status=status)


def _config(data: dict[str, Any]) -> actions.PodConfig:
    return actions.PodConfig(
        name=data["name"], gpu_count=int(data["gpu_count"]), template=data["template"], disk_gb=int(data["disk_gb"]),
        ssh_public_key=data["ssh_public_key"], duration_hours=int(data["duration_hours"]) if data.get("run_mode") == "duration" and data.get("duration_hours") else None,
        allow_failover=bool(data.get("allow_failover")), spend_cap=Decimal(data["spend_cap"]) if data.get("spend_cap") else None,
    )


def _complete(draft: Draft) -> bool:
    form = ConfigureForm({k: v for k, v in draft.data.items() if v is not None and v is not False}, offer=draft.offer)
    return "offer_id" in draft.data and form.is_valid()


@login_required
@require_GET
def review(request: HttpRequest, token: str) -> HttpResponse:
    draft = owned_draft(request, token)
    if draft.rental_id:
        return redirect("pods:detail", rental_id=draft.rental_id)
    if not _complete(draft):
        messages.info(request, "Finish configuring the pod first.")
        return redirect("pods:configure", token=draft.token)
    target = get_object_or_404(Offer.objects.select_related("provider"), pk=draft.data["offer_id"])
    config = _config(draft.data)
    context: dict[str, Any] = {"draft": draft, "offer": target, "config": config, "template": TEMPLATES[config.template], "step": "review",
                               "plan": plan_standing(request.user).plan}
    try:
        quote = cloud.requote(target)  # at this moment, from the provider: not the cache
    except AdapterError as exc:
        context["quote_error"] = f"{target.provider.name} did not give a price just now ({exc.detail}). Try again, or go back and choose another offer."
        return render(request, "pods/review.html", context, status=503)
    costs = money.costs(quote.provider_price)
    now = money.standing(request.user)
    refusal = None
    try:
        money.check_can_start(request.user, costs.per_hour, config.spend_cap)
    except money.Refused as exc:
        refusal = exc
    context.update(quote=quote, costs=costs, listed=target.price_per_hour, listed_age=target.last_updated, listed_source=target.get_source_display(),
                   moved=quote.provider_price != target.price_per_hour, standing=now, time_left=money.duration_label(now.time_left(costs.per_hour)), refusal=refusal,
                   balance=ledger.dollars(now.balance))
    return render(request, "pods/review.html", context)


@login_required
@require_POST
def deploy(request: HttpRequest, token: str) -> HttpResponse:
    """Deploy: idempotent per draft, so a double submit is one pod."""
    draft = owned_draft(request, token)
    if draft.rental_id:
        return _redirect(request, reverse("pods:detail", kwargs={"rental_id": draft.rental_id}))
    if not _complete(draft):
        return redirect("pods:configure", token=draft.token)
    target = get_object_or_404(Offer.objects.select_related("provider"), pk=draft.data["offer_id"])
    try:
        rental, _ = actions.deploy(request.user, target, _config(draft.data), f"draft:{draft.token}")
    except money.Refused as exc:
        messages.error(request, exc.reason)
        return _redirect(request, reverse("pods:review", kwargs={"token": draft.token}))
    except AdapterError as exc:
        messages.error(request, f"{target.provider.name} did not answer ({exc.detail}); nothing was started. Try again.")
        return _redirect(request, reverse("pods:review", kwargs={"token": draft.token}))
    Draft.objects.filter(pk=draft.pk, rental__isnull=True).update(rental=rental)
    return _redirect(request, reverse("pods:detail", kwargs={"rental_id": rental.pk}))


# ----- the pod -----

def detail_context(rental: Rental) -> dict[str, Any]:
    host = rental.ssh_host
    ports = port_rows(rental.ports)
    urls = [(p.label, f"{p.scheme}://{host}:{p.number}/" if p.scheme == "http" else f"{host}:{p.number}") for p in ports] if host else []
    cost = actions.cost_so_far(rental)
    counts = sorted({o.gpu_count for o in sibling_offers(rental.offer) if o.region == rental.region}) if rental.offer else []
    return {
        "rental": rental, "events": list(rental.events.all()), "cost": cost, "urls": urls, "uptime": rental.uptime(),
        "connect": rental.state == State.RUNNING, "scale_form": ScaleForm(counts=counts, current=rental.gpu_count) if len(counts) > 1 else None,
        "cap_share": (cost / rental.spend_cap * 100) if rental.spend_cap else None,
        "monthly": _monthly_share(rental),
        "can": {name: machine.can(rental, to) for name, to in (("stop", State.STOPPED), ("start", State.RUNNING), ("terminate", State.TERMINATED))},
        "live": rental.state in engine.WORKING_STATES,
    }


def _monthly_share(rental: Rental) -> tuple[Decimal, Decimal] | None:
    """(cap, percent used) of the owner's monthly cap when 80 % or more is used, for the warning."""
    cap = money.monthly_cap(rental.user)
    if not cap:
        return None
    share = ledger.spent_this_month(rental.user, rental.livemode) / cap * 100
    return (cap, share) if share >= 80 else None


@login_required
@require_GET
def detail(request: HttpRequest, rental_id: int) -> HttpResponse:
    rental = owned_rental(request, rental_id)
    template = "pods/detail.html#pod-live" if request.htmx else "pods/detail.html"
    return render(request, template, {**detail_context(rental), "plan": plan_standing(request.user).plan})


def _act(request: HttpRequest, rental: Rental, work: Any, done: str) -> HttpResponse:
    try:
        work()
        messages.success(request, done)
    except machine.TransitionRefused as exc:
        messages.error(request, f"Not possible now: {exc}.")
    except money.Refused as exc:
        messages.error(request, exc.reason)
    except AdapterError as exc:
        messages.error(request, f"The provider did not answer ({exc.detail}); nothing changed. Try again.")
    return _redirect(request, reverse("pods:detail", kwargs={"rental_id": rental.pk}))


@login_required
@require_POST
def stop(request: HttpRequest, rental_id: int) -> HttpResponse:
    rental = owned_rental(request, rental_id)
    return _act(request, rental, lambda: actions.stop(rental), "The pod is stopped; its storage is kept and billing has paused.")


@login_required
@require_POST
def start_again(request: HttpRequest, rental_id: int) -> HttpResponse:
    rental = owned_rental(request, rental_id)
    return _act(request, rental, lambda: actions.start(rental), "The pod is running again.")


@login_required
@require_POST
def terminate(request: HttpRequest, rental_id: int) -> HttpResponse:
    rental = owned_rental(request, rental_id)

    def work() -> None:
        ended = actions.terminate(rental)
        messages.info(request, f"Final cost: ${ended.final_cost or 0:.4f} (a receipt line is in your ledger).")

    return _act(request, rental, work, "The pod is terminated.")


@login_required
@require_POST
def scale(request: HttpRequest, rental_id: int) -> HttpResponse:
    rental = owned_rental(request, rental_id)
    counts = sorted({o.gpu_count for o in sibling_offers(rental.offer) if o.region == rental.region}) if rental.offer else []
    form = ScaleForm(request.POST, counts=counts, current=rental.gpu_count)
    if not form.is_valid():
        messages.error(request, "Choose one of the GPU counts this provider offers here.")
        return _redirect(request, reverse("pods:detail", kwargs={"rental_id": rental.pk}))
    return _act(request, rental, lambda: actions.scale(rental, form.cleaned_data["gpu_count"]), "Re-quoted and re-provisioning with the new GPU count.")


@login_required
@require_POST
def accept_failover(request: HttpRequest, rental_id: int) -> HttpResponse:
    rental = owned_rental(request, rental_id)
    offer = rental.failover_offer
    if rental.state != State.FAILED or offer is None:
        messages.error(request, "There is no proposed offer for this pod any more.")
        return _redirect(request, reverse("pods:detail", kwargs={"rental_id": rental.pk}))

    def work() -> None:
        money.check_can_start(rental.user, money.with_markup(offer.price_per_hour), rental.spend_cap, new_pod=False)
        engine.take(rental, offer, f"You accepted {offer.provider.name}")

    return _act(request, rental, work, f"Provisioning on {offer.provider.name}.")


# ----- the pod-ready link -----

@login_required
@require_GET
def activate(request: HttpRequest, token: str) -> HttpResponse:
    try:
        rental_id, nonce = emails.read_token(token)
    except signing.SignatureExpired:
        rental_id, nonce = _unsigned_rental(token), ""
        rental = Rental.objects.filter(pk=rental_id, user=request.user).first() if rental_id else None
        return render(request, "pods/link_problem.html", {"problem": "expired", "rental": rental}, status=410)
    except signing.BadSignature:
        return render(request, "pods/link_problem.html", {"problem": "broken", "rental": None}, status=400)
    rental = owned_rental(request, rental_id)
    if not actions.activate(rental, nonce):
        if rental.state == State.RUNNING and not rental.activation_nonce:
            return render(request, "pods/link_problem.html", {"problem": "used", "rental": rental}, status=410)
        return render(request, "pods/link_problem.html", {"problem": "replaced", "rental": rental}, status=410)
    messages.success(request, "Your pod is running. Connection details are below.")
    return redirect("pods:detail", rental_id=rental.pk)


def _unsigned_rental(token: str) -> int | None:
    """The rental an expired link named (read without trusting it, only to offer a resend)."""
    try:
        data = signing.loads(token, salt=emails.SALT)  # no max_age: expired but genuinely ours
        return int(data["r"])
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        return None


@login_required
@require_POST
def resend(request: HttpRequest, rental_id: int) -> HttpResponse:
    rental = owned_rental(request, rental_id)
    return _act(request, rental, lambda: actions.resend_ready(rental), f"A new pod-ready link was sent to {request.user.email}.")
