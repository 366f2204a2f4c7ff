"""Answers that are a whole page or a fragment of it, depending on the HX-Request header.

One URL answers both ways, so a browser must neither reuse one answer for the other (Vary)
nor keep either (no-store): after a fragment was swapped in under a pushed URL, Back would
otherwise show the bare fragment, unstyled and without its menu.
"""

from __future__ import annotations

from functools import wraps

from django.utils.cache import patch_cache_control, patch_vary_headers


def vary_on_htmx(response):
    """Mark an answer that depends on HX-Request: cached apart, and not stored at all."""
    patch_vary_headers(response, ("HX-Request",))
    patch_cache_control(response, private=True, no_store=True)
    return response


def page_or_fragment(view):
    """Decorate a view that answers a page, or a fragment for htmx, at the same URL."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        return vary_on_htmx(view(request, *args, **kwargs))

    return wrapper
