from __future__ import annotations

from django.conf import settings


def dashboard(request):
    """Give every page the refresh interval and the signed-in user's membership."""
    user = getattr(request, "user", None)
    membership = None
    if user is not None and user.is_authenticated:
        membership = getattr(user, "membership", None)
    return {
        "refresh_seconds": settings.DASHBOARD_REFRESH_SECONDS,
        "membership": membership,
        "simulator_enabled": settings.SCENARIO_SIMULATOR,
    }
