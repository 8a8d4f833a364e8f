"""Accounts (django-allauth) as GPUBROKER wants them: emails with HTML and text, clear link pages."""

from __future__ import annotations

from typing import Any

from allauth.account import app_settings as account_settings
from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.models import EmailAddress
from allauth.account.views import ConfirmEmailView
from django.core import signing
from django.http import HttpRequest, HttpResponse
from django.template.loader import select_template


class AccountAdapter(DefaultAccountAdapter):
    def render_mail(self, template_prefix: str, email: str, context: dict[str, Any], headers: dict[str, Any] | None = None) -> Any:
        # Every email goes out with a plain-text and an HTML part: a missing template is a bug.
        select_template([f"{template_prefix}_message.txt"])
        select_template([f"{template_prefix}_message.html"])
        return super().render_mail(template_prefix, email, context, headers)


class ActivationView(ConfirmEmailView):
    """allauth's link view, telling an expired link from a used or broken one."""

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

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.setdefault("link_problem", "")
        return context


def activation_view(request: HttpRequest, key: str) -> HttpResponse:
    return ActivationView.as_view()(request, key=key)
