"""Keep one Scenario client per thread, for the configured Scenario, so calls reuse connections."""

from __future__ import annotations

import threading

from django.conf import settings

from training.scenario import ScenarioClient

_clients = threading.local()


def get() -> ScenarioClient:
    """Return this thread's client for the configured Scenario, made anew when settings change."""
    key = (settings.SCENARIO_API_URL, settings.SCENARIO_API_KEY, settings.SCENARIO_API_SECRET,
           settings.SCENARIO_CONNECT_TIMEOUT, settings.SCENARIO_READ_TIMEOUT,
           settings.SCENARIO_MAX_RETRY_AFTER)  # fmt: skip
    cached = getattr(_clients, "cached", None)
    if cached is None or cached[0] != key:
        if cached is not None:
            cached[1].close()
        cached = _clients.cached = (key, ScenarioClient.from_settings())
    return cached[1]


def close() -> None:
    """Close this thread's Scenario client and its kept-alive connections."""
    cached = getattr(_clients, "cached", None)
    if cached is not None:
        cached[1].close()
        _clients.cached = None
