"""Faults that strike after the simulator carried a request out: a hang, a lost answer."""

from __future__ import annotations

import time

import pytest
from django.core.exceptions import ImproperlyConfigured

from simulator import faults, seed
from simulator.models import SimJob


def test_a_lost_answer_comes_back_as_a_gateway_502_after_the_launch_took_effect(api, settings):  # noqa: F811
    settings.SIMULATOR_FAULTS = "lost=1"
    model = seed.create_model()
    response = api.call("put", f"/models/{model.id}/train", {})
    assert response.status_code == 502
    assert "Bad Gateway" in response.content.decode()
    assert SimJob.objects.filter(model=model).count() == 1


def test_a_hung_answer_comes_late_after_the_launch_took_effect(api, settings):  # noqa: F811
    settings.SIMULATOR_FAULTS = "hang=1,hang_ms=400"
    model = seed.create_model()
    started = time.monotonic()
    response = api.call("put", f"/models/{model.id}/train", {})
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.4
    assert SimJob.objects.filter(model=model).count() == 1


def test_the_late_faults_are_read_from_the_environment():
    rates = faults.parse_rates("503=0.1,429=0.05,hang=0.02,hang_ms=8000,lost=0.03")
    assert (rates.rate_hang, rates.hang_ms, rates.rate_lost) == (0.02, 8000, 0.03)
    assert faults.parse_rates("hang=0.5").hang_ms == faults.HANG_MS_DEFAULT
    with pytest.raises(ImproperlyConfigured):
        faults.parse_rates("lost=2")
