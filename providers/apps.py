from django.apps import AppConfig


class ProvidersConfig(AppConfig):
    name = "providers"
    verbose_name = "GPU providers and offers"

    def ready(self) -> None:
        # Registers JSONField's `has_element` lookup before any query can spell it (an unknown
        # lookup on a JSONField would silently read as a key named "has_element").
        from providers import query  # noqa: F401
