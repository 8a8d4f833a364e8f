from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Plans, subscriptions and payments"

    def ready(self) -> None:
        from billing import checks  # noqa: F401 - registers the Stripe configuration check
