"""Creates the bench's callers through the real models and prints them as JSON (run with the
bench's environment): an Enterprise subscriber's API key (`ApiKey.issue`) and a signed-in
session cookie (Django's session store, as a sign-in leaves it)."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "web.settings")
django.setup()

import orjson  # noqa: E402
from allauth.account.models import EmailAddress  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from billing.models import ApiKey, Plan, Subscription, SubscriptionStatus  # noqa: E402


def main() -> None:
    user = get_user_model().objects.create_user("bench@example.com", "bench@example.com", "bench-password-not-secret")
    EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
    Subscription.objects.create(
        user=user, plan=Plan.objects.get(slug="enterprise"), stripe_id="sub_bench", stripe_customer_id="cus_bench",
        status=SubscriptionStatus.ACTIVE, current_period_end=timezone.now() + timezone.timedelta(days=30),
    )
    _, raw_key = ApiKey.issue(user, "bench")
    client = Client()
    client.force_login(user)
    print(orjson.dumps({"api_key": raw_key, "session": client.cookies[settings.SESSION_COOKIE_NAME].value,
                        "cookie_name": settings.SESSION_COOKIE_NAME}).decode())


if __name__ == "__main__":
    main()
