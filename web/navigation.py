"""The site's one navigation: every page's header is built from NAVIGATION, for whoever is looking.

To add a page to the header, append a NavEntry (e.g. the pod pages: "Pods", "Deploy"; the staff
console: audience=STAFF). The header marks the entry whose `current` names include the page's
view name with aria-current="page", so a page belongs to exactly one entry.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest
from django.urls import reverse

EVERYONE = "everyone"
VISITOR = "visitor"  # signed out only: sign in, sign up
MEMBER = "member"  # signed in
STAFF = "staff"  # signed in and is_staff


@dataclass(frozen=True)
class NavEntry:
    label: str
    url_name: str
    audience: str = EVERYONE
    # View names (namespaced, as resolver_match.view_name) of the pages this entry stands for;
    # the entry's own url_name is always one of them.
    current: tuple[str, ...] = ()
    # Namespaces whose every page belongs here (e.g. "billing" for all billing pages).
    namespaces: tuple[str, ...] = ()
    prominent: bool = False  # drawn as the primary button (the visitor's "Sign up")

    def is_current(self, view_name: str, namespace: str) -> bool:
        return view_name == self.url_name or view_name in self.current or (bool(namespace) and namespace in self.namespaces)


@dataclass(frozen=True)
class NavLink:
    label: str
    href: str
    is_current: bool
    prominent: bool = False


NAVIGATION: list[NavEntry] = [
    NavEntry("Live prices", "landing"),
    NavEntry("Browse GPUs", "browse"),
    NavEntry("Plans", "plans"),
    NavEntry("Dashboard", "dashboard", MEMBER, namespaces=("pods",)),  # My pods live there; pod pages belong to it
    NavEntry("Billing", "billing:overview", MEMBER, namespaces=("billing",)),
    NavEntry(
        "Settings",
        "settings",
        MEMBER,
        current=("api_key_create", "api_key_revoke", "account_email", "account_change_password", "account_set_password"),
    ),
    NavEntry("Sign in", "account_login", VISITOR, current=("account_reset_password", "account_reset_password_done")),
    NavEntry("Sign up", "account_signup", VISITOR, prominent=True),
]


def _audiences(request: HttpRequest) -> set[str]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {EVERYONE, VISITOR}
    return {EVERYONE, MEMBER, STAFF} if user.is_staff else {EVERYONE, MEMBER}


def links_for(request: HttpRequest, entries: list[NavEntry] | None = None) -> list[NavLink]:
    """The header's links for this request's person, the current page's entry marked."""
    match = getattr(request, "resolver_match", None)
    view_name = match.view_name if match else ""
    namespace = match.namespace if match else ""
    audiences = _audiences(request)
    links = []
    for entry in NAVIGATION if entries is None else entries:
        if entry.audience not in audiences:
            continue
        links.append(NavLink(entry.label, reverse(entry.url_name), entry.is_current(view_name, namespace), entry.prominent))
    return links
