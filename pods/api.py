"""The rentals API under /api/v2: the same rules as the pages, by API key or session.

Errors keep /api/v2's one shape, `{"error": ..., "errors": [{"field", "reason"}]}`: 422 for bad
input (each field and why), 402 when the balance does not cover the first hour, 403 for the
plan's pod limit or a spend cap, 404 for a pod that is not the caller's, 409 for a move the
state machine refuses or an Idempotency-Key reused with another body, 503 when the provider
does not answer.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Field, Header, Router, Schema, Status
from ninja.security import django_auth
from pydantic import StrictBool, StrictInt, StrictStr

from billing.api import ApiKeyAuth
from billing.models import ApiKey
from pods import actions, machine, money
from pods.forms import ConfigureForm
from pods.images import TEMPLATES
from pods.models import Rental
from providers.adapters.base import AdapterError
from providers.models import Offer

router = Router(tags=["rentals"], auth=[ApiKeyAuth(), django_auth])

EXAMPLE_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl you@laptop"


class ProvisionIn(Schema):
    # Strict JSON types: the schema says boolean and integer, so 0 or "2" is refused, not coerced.
    offer_id: StrictInt = Field(description="An offer from GET /providers")
    name: StrictStr = Field(description="Lower-case letters, digits and dashes")
    gpu_count: StrictInt | None = Field(None, description="Default: the offer's own count")
    template: StrictStr = Field("pytorch", description=f"One of: {', '.join(TEMPLATES)}")
    disk_gb: StrictInt = 50
    ssh_public_key: StrictStr = Field(description="An OpenSSH public key")
    duration_hours: StrictInt | None = Field(None, description="Stop after this many hours; empty: until stopped")
    allow_failover: StrictBool = False
    spend_cap: Decimal | None = Field(None, description="Stop the pod once it has cost this much (USD)")

    model_config = {"json_schema_extra": {"examples": [{"offer_id": 42, "name": "llama-finetune", "template": "pytorch", "disk_gb": 80, "ssh_public_key": EXAMPLE_KEY, "allow_failover": True, "spend_cap": "50.00"}]}}


class ScaleIn(Schema):
    gpu_count: StrictInt

    model_config = {"json_schema_extra": {"examples": [{"gpu_count": 2}]}}


class EventOut(Schema):
    at: datetime
    kind: str
    from_state: str
    to_state: str
    message: str


class RentalOut(Schema):
    id: int
    name: str
    state: str
    step: str
    provider: str
    offer_name: str
    region: str
    gpu_type: str
    gpu_count: int
    template: str
    image: str
    price_per_hour: Decimal = Field(description="Charged per hour, markup included")
    provider_price_per_hour: Decimal
    markup_pct: Decimal
    cost_so_far: Decimal
    final_cost: Decimal | None
    uptime_seconds: int
    ssh_command: str | None = Field(description="Once the pod is running")
    created_at: datetime
    events: list[EventOut]


class RentalList(Schema):
    items: list[RentalOut]


class ErrorOut(Schema):
    error: str
    errors: list[dict[str, str]] = []


def _user(request: HttpRequest) -> Any:
    return request.auth.user if isinstance(request.auth, ApiKey) else request.auth  # type: ignore[attr-defined]


def _out(rental: Rental) -> dict[str, Any]:
    return {
        "id": rental.pk, "name": rental.name, "state": rental.state, "step": rental.step, "provider": rental.provider_slug,
        "offer_name": rental.offer_name, "region": rental.region, "gpu_type": rental.gpu_type, "gpu_count": rental.gpu_count,
        "template": rental.template, "image": rental.image, "price_per_hour": rental.price_per_hour,
        "provider_price_per_hour": rental.provider_price_per_hour, "markup_pct": rental.markup_pct,
        "cost_so_far": actions.cost_so_far(rental).quantize(Decimal("0.000001")), "final_cost": rental.final_cost,
        "uptime_seconds": rental.uptime(), "ssh_command": rental.ssh_command if rental.state == "running" else None,
        "created_at": rental.created_at, "events": list(rental.events.values("at", "kind", "from_state", "to_state", "message")),
    }


def _error(request: HttpRequest, status: int, error: str, field: str, reason: str) -> HttpResponse:
    from web.api import api  # noqa: PLC0415  (the one NinjaAPI renders every response)

    return api.create_response(request, {"error": error, "errors": [{"field": field, "reason": reason}]}, status=status)


def _refused(request: HttpRequest, exc: money.Refused) -> HttpResponse:
    status = 402 if exc.field == "balance" else 403 if exc.field in ("plan", "monthly_cap", "spend_cap") else 422
    return _error(request, status, "refused", exc.field, exc.reason)


def _owned(request: HttpRequest, rental_id: int) -> Rental | None:
    return Rental.objects.filter(pk=rental_id, user=_user(request)).select_related("user", "offer__provider").first()


ERRORS = {402: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut, 503: ErrorOut}


@router.post("/rentals/provision", response={200: RentalOut, 201: RentalOut, **ERRORS}, summary="Deploy a pod on an offer (idempotent by Idempotency-Key)",
             description="The price is re-quoted from the provider now; the first hour must be covered by the balance. The same Idempotency-Key with the same body returns the same pod (200); with another body it is 409.")
def provision(request: HttpRequest, body: ProvisionIn, idempotency_key: str = Header(..., alias="Idempotency-Key", min_length=8, max_length=120)) -> Any:
    user = _user(request)
    offer = Offer.objects.select_related("provider").filter(pk=body.offer_id).first()
    if offer is None:
        return _error(request, 422, "invalid parameters", "offer_id", "no such offer")
    form = ConfigureForm({
        "name": body.name, "gpu_count": body.gpu_count or offer.gpu_count, "region": offer.region, "template": body.template,
        "disk_gb": body.disk_gb, "run_mode": "duration" if body.duration_hours else "until_stopped", "duration_hours": body.duration_hours or "",
        "spend_cap": body.spend_cap if body.spend_cap is not None else "", "ssh_public_key": body.ssh_public_key,
        **({"allow_failover": "on"} if body.allow_failover else {}),
    }, offer=offer)
    if not form.is_valid():
        errors = [{"field": name if name != "__all__" else "request", "reason": str(message)} for name, messages in form.errors.items() for message in messages]
        from web.api import api  # noqa: PLC0415

        return api.create_response(request, {"error": "invalid parameters", "errors": errors}, status=422)
    data = form.cleaned_data
    config = actions.PodConfig(name=data["name"], gpu_count=data["gpu_count"], template=data["template"], disk_gb=data["disk_gb"],
                               ssh_public_key=data["ssh_public_key"], duration_hours=data.get("duration_hours"),
                               allow_failover=data["allow_failover"], spend_cap=data.get("spend_cap"))
    try:
        rental, created = actions.deploy(user, data["target_offer"], config, f"api:{idempotency_key}")
    except actions.RequestConflict as exc:
        return _error(request, 409, "idempotency key reused", "Idempotency-Key", str(exc))
    except money.Refused as exc:
        return _refused(request, exc)
    except AdapterError as exc:
        return _error(request, 503, "provider unavailable", "offer_id", exc.detail)
    return Status(201 if created else 200, _out(rental))


@router.get("/rentals", response=RentalList, summary="Your pods, newest first")
def list_rentals(request: HttpRequest) -> dict[str, Any]:
    return {"items": [_out(r) for r in Rental.objects.filter(user=_user(request)).select_related("user")[:100]]}


@router.get("/rentals/{rental_id}", response={200: RentalOut, 404: ErrorOut}, summary="One of your pods, with its history")
def get_rental(request: HttpRequest, rental_id: int) -> Any:
    rental = _owned(request, rental_id)
    return _out(rental) if rental else _error(request, 404, "not found", "rental_id", "no such rental")


def _act(request: HttpRequest, rental_id: int, work: Any) -> Any:
    rental = _owned(request, rental_id)
    if rental is None:
        return _error(request, 404, "not found", "rental_id", "no such rental")
    try:
        return Status(200, _out(work(rental)))
    except machine.TransitionRefused as exc:
        return _error(request, 409, "not possible in this state", "state", str(exc))
    except money.Refused as exc:
        return _refused(request, exc)
    except AdapterError as exc:
        return _error(request, 503, "provider unavailable", "rental_id", exc.detail)


@router.post("/rentals/{rental_id}/scale", response={200: RentalOut, **ERRORS}, summary="Change the GPU count: re-quote, then re-provision")
def scale(request: HttpRequest, rental_id: int, body: ScaleIn) -> Any:
    return _act(request, rental_id, lambda rental: actions.scale(rental, body.gpu_count))


@router.post("/rentals/{rental_id}/stop", response={200: RentalOut, **ERRORS}, summary="Stop (storage kept, billing paused)")
def stop(request: HttpRequest, rental_id: int) -> Any:
    return _act(request, rental_id, actions.stop)


@router.post("/rentals/{rental_id}/start", response={200: RentalOut, **ERRORS}, summary="Start a stopped pod again")
def start(request: HttpRequest, rental_id: int) -> Any:
    return _act(request, rental_id, actions.start)


@router.delete("/rentals/{rental_id}", response={200: RentalOut, **ERRORS}, summary="Terminate; the answer carries the final cost")
def terminate(request: HttpRequest, rental_id: int) -> Any:
    return _act(request, rental_id, actions.terminate)
