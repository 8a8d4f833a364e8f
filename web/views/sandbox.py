"""SANDBOX conveniences: the mailbox that shows what the mail sink caught (404 in LIVE).

The mail holds activation and password-reset links, so a sandbox reachable beyond this machine
shows it only to requests from this machine and to signed-in staff (403 for anyone else).
"""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from web.access import local_or_staff
from web.mailsink import MailStore


def sandbox_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if settings.GPUBROKER_MODE != "sandbox":
            raise Http404("The sandbox mailbox exists only in SANDBOX mode.")
        if not local_or_staff(request):
            raise PermissionDenied("The sandbox mailbox is shown only on this machine or to staff.")
        return view(request, *args, **kwargs)

    return wrapper


@sandbox_only
@require_http_methods(["GET", "POST"])
def mailbox(request: HttpRequest) -> HttpResponse:
    store = MailStore(settings.SANDBOX_MAILBOX_DIR)
    if request.method == "POST":
        messages.success(request, f"Deleted {store.clear()} messages.")
        return redirect("sandbox_mailbox")
    return render(request, "pages/sandbox_mailbox.html", {"mails": store.messages()})


@sandbox_only
@require_http_methods(["GET"])
def message(request: HttpRequest, message_id: str) -> HttpResponse:
    mail = MailStore(settings.SANDBOX_MAILBOX_DIR).get(message_id)
    if mail is None:
        raise Http404("No such message in the sandbox mailbox.")
    return render(request, "pages/sandbox_message.html", {"mail": mail})
