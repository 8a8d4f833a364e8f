"""Accounts (django-allauth) as GPUBROKER wants them: emails with HTML and text, clear link pages."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from allauth.account import app_settings as account_settings
from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.models import EmailAddress
from allauth.account.utils import get_next_redirect_url
from allauth.account.views import ConfirmEmailView, SignupView
from django.core import signing
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.loader import select_template
from django.urls import reverse
from django.utils.http import urlencode

from billing.models import Plan


class AccountAdapter(DefaultAccountAdapter):
    def render_mail(self, template_prefix: str, email: str, context: dict[str, Any], headers: dict[str, Any] | None = None) -> Any:
        # Every email goes out with a plain-text and an HTML part: a missing template is a bug.
        select_template([f"{template_prefix}_message.txt"])
        select_template([f"{template_prefix}_message.html"])
        return super().render_mail(template_prefix, email, context, headers)

    def get_email_confirmation_url(self, request: HttpRequest, emailconfirmation: Any) -> str:
        # The link carries where the person was going (e.g. the plan they chose), so it survives
        # a mail client on another device, where the sign-up's session is not there to remember it.
        url = super().get_email_confirmation_url(request, emailconfirmation)
        next_url = get_next_redirect_url(request) if request is not None else None
        return f"{url}?{urlencode({'next': next_url})}" if next_url else url


class ActivationView(ConfirmEmailView):
    """allauth's link view, telling an expired link from a used or broken one.

    Opening the link (GET) only shows a page with one button: mail scanners and prefetchers open
    links too, and must neither activate the account nor spend the sign-in (settings:
    ACCOUNT_CONFIRM_EMAIL_ON_GET = False). The button's POST activates, signs in when the sign-up
    happened in this browser, and continues to `next`.
    """

    def link_problem(self) -> tuple[str, int]:
        key = self.kwargs["key"]
        try:
            pk = signing.loads(key, salt=account_settings.SALT)
        except signing.BadSignature:
            return "invalid", 400
        address = EmailAddress.objects.filter(pk=pk).first()
        if address is None:
            return "invalid", 400
        if address.verified:
            return "used", 200
        return "expired", 410

    def get(self, *args: Any, **kwargs: Any) -> HttpResponse:
        response = super().get(*args, **kwargs)
        if self.object is None and hasattr(response, "context_data"):
            problem, status = self.link_problem()
            response.context_data["link_problem"] = problem
            response.status_code = status
        return response

    def respond(self, success: bool) -> HttpResponse:
        if success and not self.request.user.is_authenticated:
            # Activated from another browser or device: allauth signs in only where the sign-up
            # happened, so ask for the password here and still continue to where they were going.
            login = reverse("account_login")
            next_url = self.get_next_url()
            return redirect(f"{login}?{urlencode({'next': next_url})}" if next_url else login)
        return super().respond(success)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.setdefault("link_problem", "")
        return context


def activation_view(request: HttpRequest, key: str) -> HttpResponse:
    return ActivationView.as_view()(request, key=key)


def chosen_plan(next_url: str | None) -> Plan | None:
    """The paid plan a visitor picked on the plans page, carried as `next=/plans/?plan=<slug>`."""
    if not next_url:
        return None
    slug = parse_qs(urlsplit(next_url).query).get("plan", [""])[0]
    return Plan.objects.offered().filter(slug=slug).first() if slug else None


class PlanAwareSignupView(SignupView):
    """allauth's sign-up, telling the visitor which plan they are signing up for."""

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["chosen_plan"] = chosen_plan(get_next_redirect_url(self.request))
        return context


def signup_view(request: HttpRequest) -> HttpResponse:
    return PlanAwareSignupView.as_view()(request)
