from django.conf import settings
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from web.navigation import links_for


def platform(request: HttpRequest) -> dict[str, object]:
    """What every page needs to know about the platform: its mode (the banner) and name."""
    return {"platform_mode": settings.GPUBROKER_MODE, "is_live_mode": settings.GPUBROKER_MODE == "live"}


def navigation(request: HttpRequest) -> dict[str, object]:
    """`nav_links`: the header's entries for this person, the current page marked (web.navigation)."""
    return {"nav_links": SimpleLazyObject(lambda: links_for(request))}
