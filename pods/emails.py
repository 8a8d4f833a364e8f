"""The pod's emails (plain text and HTML): ready with its activation link, warnings, stops."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.urls import reverse

from pods.models import Rental

log = logging.getLogger("gpubroker.pods")
SALT = "pods.activation"


def activation_token(rental: Rental) -> str:
    return signing.dumps({"r": rental.pk, "n": rental.activation_nonce}, salt=SALT, compress=True)


def read_token(token: str) -> tuple[int, str]:
    """(rental id, nonce); signing.SignatureExpired past the lifetime, BadSignature if forged."""
    data = signing.loads(token, salt=SALT, max_age=settings.POD_ACTIVATION_LINK_HOURS * 3600)
    return int(data["r"]), str(data["n"])


def new_nonce() -> str:
    return secrets.token_hex(16)


def _send(rental: Rental, template: str, subject: str, context: dict[str, Any]) -> None:
    context = {"rental": rental, "base_url": settings.BASE_URL.rstrip("/"), **context}
    message = EmailMultiAlternatives(subject, render_to_string(f"pods/email/{template}.txt", context), to=[rental.user.email])
    message.attach_alternative(render_to_string(f"pods/email/{template}.html", context), "text/html")
    try:
        message.send()
    except OSError:
        # The pod's state is already right; the page shows the same facts and a resend button.
        log.warning("could not send %s email for rental %s", template, rental.pk, exc_info=True)


def send_ready(rental: Rental) -> None:
    link = settings.BASE_URL.rstrip("/") + reverse("pods:activate", args=[activation_token(rental)])
    _send(rental, "ready", f"Your pod {rental.name} is ready", {"link": link, "hours": settings.POD_ACTIVATION_LINK_HOURS})


def send_warning(rental: Rental, what: str) -> None:
    _send(rental, "warning", f"{rental.name}: 80 % of your {what} is used", {"what": what})


def send_stopped(rental: Rental, reason: str) -> None:
    _send(rental, "stopped", f"{rental.name} was stopped: {reason}", {"reason": reason})
