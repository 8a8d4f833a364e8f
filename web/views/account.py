"""Settings: the account's email and password (allauth pages) and personal API keys."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from billing.entitlements import standing
from billing.models import ApiKey, TooManyKeys


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=60, strip=True, help_text="What the key is for, e.g. “CI pipeline”.")


def _render(request: HttpRequest, form: ApiKeyForm, new_key: str = "", status: int = 200) -> HttpResponse:
    context = {
        "form": form,
        "keys": ApiKey.objects.filter(user=request.user),
        "new_key": new_key,
        "standing": standing(request.user),
    }
    return render(request, "pages/settings.html", context, status=status)


@login_required
@require_GET
def settings_page(request: HttpRequest) -> HttpResponse:
    return _render(request, ApiKeyForm())


@never_cache  # the answer holds the new key in clear: no browser or proxy may keep a copy
@login_required
@require_POST
def create_api_key(request: HttpRequest) -> HttpResponse:
    form = ApiKeyForm(request.POST)
    if not form.is_valid():
        return _render(request, form, status=400)
    try:
        _, raw = ApiKey.issue(request.user, form.cleaned_data["name"])
    except TooManyKeys as exc:
        form.add_error("name", str(exc))
        return _render(request, form, status=400)
    # Rendered, not redirected: the key is shown this once and never stored in clear.
    return _render(request, ApiKeyForm(), new_key=raw, status=201)


@login_required
@require_POST
def revoke_api_key(request: HttpRequest, key_id: int) -> HttpResponse:
    key = get_object_or_404(ApiKey, pk=key_id, user=request.user)
    key.revoke()
    messages.success(request, f"Key {key.prefix}… ({key.name}) is revoked; requests with it now fail.")
    return redirect("settings")
