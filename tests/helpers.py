"""Helpers shared by test modules: HTMX requests, reading pages, launching and polling runs."""

from __future__ import annotations

import base64
import json
import time

import pytest

from tests.factories import mirror
from training import services
from training.models import RunState, ScenarioModel, TrainingRun

# A request as htmx sends it: as the test client's WSGI environ, or as its `headers=`.
HTMX = {"HTTP_HX_REQUEST": "true"}
HTMX_HEADERS = {"HX-Request": "true"}


def forged_cursor(*items) -> str:
    """Return a cursor shaped like reports.encode_cursor's, around values it never writes."""
    raw = json.dumps(list(items)).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def page_of(response) -> str:
    """Return the response's body as text."""
    return response.content.decode()


def synced_knight(scenario) -> ScenarioModel:
    """Return a Flux LoRA model with 12 images on the simulator, mirrored by sync_models."""
    remote = scenario.create_model("Knight portraits", "flux.1-lora", images=12)
    services.sync_models(scenario.client())
    return ScenarioModel.objects.get(remote_id=remote.id)


def quick_knight(scenario) -> ScenarioModel:
    """Return the mirror of a two-image simulated model whose trainings take about a second."""
    scenario.set_speed(300)
    return mirror(scenario.create_model("Knight", images=2))


def launched(run) -> bool:
    """Say whether the worker has sent the run's trigger and Scenario took it."""
    run.refresh_from_db()
    return bool(run.job_id) or run.state in (RunState.QUEUED, RunState.RUNNING) or run.is_final


def launch(user, model, **parameters) -> TrainingRun:
    """Launch a run as the form would, without a quote."""
    return services.launch_run(user=user, model=model, parameters=parameters)


def poll_until(run, predicate, *, polls=400, pause=0.02) -> TrainingRun:
    """Poll the run in this process until `predicate(run)` holds; fail the test if it never does."""
    for _ in range(polls):
        services.poll_run(run.pk)
        run.refresh_from_db()
        if predicate(run):
            return run
        time.sleep(pause)
    pytest.fail(f"run {run.pk} never got there: {run.state} ({run.stage})")


def poll_until_final(run, *, polls=400, pause=0.05) -> TrainingRun:
    """Poll the run in this process until it is final."""
    return poll_until(run, lambda run: run.is_final, polls=polls, pause=pause)
