from django.apps import AppConfig


class PodsConfig(AppConfig):
    name = "pods"
    verbose_name = "Pods"
    default_auto_field = "django.db.models.BigAutoField"
