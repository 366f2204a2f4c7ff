"""Driving the launch form as a browser would: open it, post it, read its quote."""

from __future__ import annotations

import re

from simulator.models import RequestLog
from tests.html import read_form

URL = "/launch/"


def sim_requests(**filters):
    """Return the …/train requests the simulator logged."""
    return RequestLog.objects.filter(path__endswith="/train", **filters)


def page_form(client, model):
    """Open the form for `model` and read it."""
    response = client.get(URL, {"model": model.remote_id})
    assert response.status_code == 200
    return read_form(response)


def post(client, model, values=None, action="", headers=None, base=None):
    """Post the form as a browser would: what the page showed, changed by `values`."""
    data = dict(base) if base is not None else page_form(client, model).post_data()
    data["model"] = [model.remote_id]
    for name, value in (values or {}).items():
        data[name] = value if isinstance(value, list) else [value]
    if action:
        data["action"] = [action]
    return client.post(URL, data, headers=headers or {})


def estimate(client, model, values=None, headers=None):
    """Ask for a quote and check the form answered."""
    response = post(client, model, values, "estimate", headers=headers)
    assert response.status_code == 200
    return response


def quote_cost(response) -> float:
    """Return the quoted cost the page shows."""
    match = re.search(r'data-quote-cost="([^"]+)"', response.content.decode())
    assert match, "no quote on the page"
    return float(match.group(1))
