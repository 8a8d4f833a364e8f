"""Live-update subscriptions and the Channels group behind each.

Clients speak in subscriptions: `price_updates`, `health_status`, `availability`,
`provider:{slug}`, `gpu:{type}` and `region:{name}`. Channels group names may only hold letters,
digits, `-`, `_` and `.`, so each maps to a safe group name: "gpu:H100 80GB" -> "gpu.h100-80gb".
"""

from __future__ import annotations

import re

from django.utils.text import slugify

PRICE_UPDATES = "price_updates"
HEALTH_STATUS = "health_status"
AVAILABILITY = "availability"
TOPICS = (PRICE_UPDATES, HEALTH_STATUS, AVAILABILITY)
SCOPED = ("provider", "gpu", "region")
_SAFE = re.compile(r"^[a-zA-Z0-9\-_.]{1,99}$")


class BadSubscription(ValueError):
    pass


def group_for(subscription: str) -> str:
    """The Channels group of a subscription, or BadSubscription saying why not."""
    subscription = subscription.strip()
    if subscription in TOPICS:
        return subscription
    kind, sep, name = subscription.partition(":")
    if not sep or kind not in SCOPED:
        raise BadSubscription(f"unknown subscription {subscription[:60]!r}; use {', '.join(TOPICS)} or provider:, gpu:, region: with a name")
    slug = slugify(name)
    group = f"{kind}.{slug}"
    if not slug or not _SAFE.match(group):
        raise BadSubscription(f"{kind}: needs a name of letters, digits and dashes (at most 90 characters)")
    return group


def provider_group(slug: str) -> str:
    return group_for(f"provider:{slug}")


def gpu_group(gpu_type: str) -> str:
    return group_for(f"gpu:{gpu_type}")


def region_group(region: str) -> str:
    return group_for(f"region:{region}")
