from django.apps import AppConfig


class WebConfig(AppConfig):
    name = "web"
    verbose_name = "GPUBROKER web"

    def ready(self) -> None:
        # Revocations and plan changes reach the identity cache of every instance (web.identity).
        from web.identity import connect_signals

        connect_signals()
