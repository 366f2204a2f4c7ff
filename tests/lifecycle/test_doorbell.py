"""Scenario's training events as a doorbell: a ring makes a run due for a poll, never more."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from simulator import clock
from simulator.lifecycle import Schedule
from tests.factories import make_run, mirror
from tests.fixtures.workers import reload
from training import services
from training.models import RunState, TeamHooks

S = RunState
TOKEN = "doorbell-token-of-team-a"
LONG_POLL_SECONDS = 12.0


@pytest.fixture
def hooks(team_a):
    return TeamHooks.objects.create(team=team_a, doorbell_token=TOKEN)


def ring(client, token=TOKEN, payload=None, **extra):
    body = json.dumps(payload if payload is not None else {})
    return client.post(
        reverse("doorbell", args=[token]), body, content_type="application/json", **extra
    )


def later():
    return timezone.now() + timedelta(minutes=10)


def test_a_wrong_token_is_a_404(client, hooks, alice, model):
    run = make_run(alice, model, S.RUNNING, job_id="job_1", next_poll_at=later())
    response = ring(client, "not-the-token", {"modelId": model.remote_id})
    assert response.status_code == 404
    assert reload(run).next_poll_at > timezone.now()


def test_an_event_makes_the_models_run_due_and_changes_nothing_else(
    client, broker, hooks, alice, model
):
    run = make_run(alice, model, S.RUNNING, job_id="job_1", next_poll_at=later())
    payload = {"event": "model.training.completed", "modelId": model.remote_id}
    response = ring(client, payload=payload)
    assert response.status_code == 202
    assert response.json() == {"polling": run.pk}
    run = reload(run)
    assert run.state == S.RUNNING  # the event is not taken as the run's end
    assert run.next_poll_at <= timezone.now()
    assert list(run.events.all()) == []


def test_rings_within_the_interval_bring_the_next_poll_only_to_its_end(
    client, broker, hooks, alice, model, settings
):
    settings.DOORBELL_INTERVAL_SECONDS = 5
    run = make_run(alice, model, S.RUNNING, job_id="job_1", next_poll_at=later())
    assert ring(client, payload={"data": {"model": {"id": model.remote_id}}}).status_code == 202
    type(run).objects.filter(pk=run.pk).update(next_poll_at=later())  # as the poll would
    for _ in range(20):
        ring(client, payload={"modelId": model.remote_id})
    due = reload(run).next_poll_at
    assert timezone.now() < due <= timezone.now() + timedelta(seconds=5)


def test_an_event_for_another_teams_model_or_a_run_not_launched_does_nothing(
    client, hooks, charlie, alice, model
):
    theirs = make_run(charlie, model, S.RUNNING, job_id="job_1", next_poll_at=later())
    unsent = make_run(alice, model, S.SUBMITTING, next_poll_at=later())
    response = ring(client, payload={"modelId": model.remote_id})
    assert response.json() == {"polling": None}
    assert reload(theirs).next_poll_at > timezone.now()
    assert reload(unsent).next_poll_at > timezone.now()


def test_a_body_that_is_not_json_is_a_400_and_get_is_refused(client, hooks):
    url = reverse("doorbell", args=[TOKEN])
    assert client.post(url, "{not json", content_type="application/json").status_code == 400
    assert client.get(url).status_code == 405


# --- How soon a run's end shows, with and without -------------------------------------------


def seconds_from_end_to_dashboard(scenario, drive, user, name: str) -> float:
    """Train a model; how long after Scenario's end of it the dashboard had the run final."""
    model = mirror(scenario.create_model(name, images=1))
    run = services.launch_run(user=user, model=model, parameters={})
    drive(lambda: reload(run).is_final, timeout=60, describe=lambda: reload(run).state)
    run = reload(run)
    assert run.state == S.SUCCEEDED
    schedule = Schedule.load(clock.now())
    ended_on_scenario = schedule.state(schedule.timeline(run.job_id)).updated_at
    return (run.finished_at - ended_on_scenario).total_seconds()


@pytest.mark.worker
def test_the_doorbell_shows_a_runs_end_sooner_than_the_next_poll(
    scenario, celery_worker_thread, drive, alice, settings, live_server, capsys
):
    # Long polls make the difference visible: without the doorbell, the end shows at the
    # next poll; with it, as soon as Scenario's event arrives.
    settings.POLL_RUNNING_SECONDS = settings.POLL_QUEUED_SECONDS = LONG_POLL_SECONDS
    settings.POLL_MAX_SECONDS = LONG_POLL_SECONDS
    settings.POLL_QUEUE_STEP_SECONDS = 0
    scenario.set_speed(20)  # about six seconds of training: the end comes past the interval
    TeamHooks.objects.create(team=alice.membership.team, doorbell_token=TOKEN)

    without = seconds_from_end_to_dashboard(scenario, drive, alice, "Knight")
    settings.SIMULATOR_WEBHOOK_URL = live_server.url + reverse("doorbell", args=[TOKEN])
    with_bell = seconds_from_end_to_dashboard(scenario, drive, alice, "Dragon")

    with capsys.disabled():
        print(
            f"\nA run's end shown on the dashboard {without:.2f} s after Scenario's end without"
            f" the doorbell, {with_bell:.2f} s with it (polls every {LONG_POLL_SECONDS:g} s)"
        )
    assert with_bell < without


@pytest.mark.django_db
def test_a_token_that_could_not_be_one_is_a_404_without_a_lookup(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.post(
            "/hooks/scenario/a%00b/", data=b"{}", content_type="application/json"
        )
    assert response.status_code == 404
