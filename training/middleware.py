"""Response headers that every page of a signed-in person gets."""

from __future__ import annotations

from django.utils.cache import patch_cache_control


def private_pages(get_response):
    """Tell browsers and proxies not to keep what a signed-in person was shown.

    A shared computer's back button or a caching proxy would otherwise hand a team's runs,
    samples and CSV exports to whoever comes next.
    """

    def middleware(request):
        response = get_response(request)
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            patch_cache_control(response, private=True, no_store=True)
        return response

    return middleware
