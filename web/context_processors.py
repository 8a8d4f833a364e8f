from django.conf import settings
from django.http import HttpRequest


def platform(request: HttpRequest) -> dict[str, object]:
    """What every page needs to know about the platform: its mode (the banner) and name."""
    return {"platform_mode": settings.GPUBROKER_MODE, "is_live_mode": settings.GPUBROKER_MODE == "live"}
