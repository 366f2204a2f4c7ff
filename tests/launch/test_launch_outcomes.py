"""Launches whose answer is lost: adopted with their job and bill, settled in seconds.

Services are called in the test's process as the worker would (see test_services_scenario),
except where a real worker must race a hanging trigger.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from simulator import faults
from simulator.models import RequestLog, SimJob
from tests.fixtures.workers import launches
from tests.helpers import poll_until_final, quick_knight
from training import budgets, services
from training.models import RunState, TrainingRun

S = RunState


@pytest.fixture
def knight(scenario):
    return quick_knight(scenario)


def launch(user, model, **parameters) -> TrainingRun:
    return services.launch_run(
        user=user, model=model, parameters=parameters, quote_cost=120.0, quote_discount=0.0
    )


def the_job(model) -> SimJob:
    (job,) = SimJob.objects.filter(model_id=model.remote_id)
    return job


pytestmark = pytest.mark.usefixtures("broker")


# --- a launch adopted after a lost answer carries its job and cost ---------------------------


def test_a_trigger_whose_answer_is_dropped_is_adopted_with_its_job_and_billing(
    scenario, settings, alice, knight
):
    # Scenario starts the training; its answer comes after the client stopped waiting.
    settings.SCENARIO_READ_TIMEOUT = 1.0
    faults.inject(None, method="PUT", path_contains="/train", delay_ms=2500, after_processing=True)
    run = launch(alice, knight)
    services.submit_run(run.pk)
    run.refresh_from_db()

    assert run.state == S.QUEUED
    assert run.job_id == the_job(knight).id
    assert run.outcome_unknown_at is None
    run = poll_until_final(run)
    assert run.state == S.SUCCEEDED
    assert run.cu_cost == the_job(knight).cost
    assert run.remote_job_status == "success"
    assert not run.cost_unknown
    assert SimJob.objects.filter(model_id=knight.remote_id).count() == 1
    assert RequestLog.objects.filter(method="PUT", dry_run=False).count() <= 1


def test_a_launch_adopted_after_a_gateway_503_is_billed_like_any_other(scenario, alice, knight):
    faults.inject(503, method="PUT", path_contains="/train", after_processing=True)
    run = launch(alice, knight)
    services.submit_run(run.pk)
    run = poll_until_final(run)
    assert (run.state, run.job_id) == (S.SUCCEEDED, the_job(knight).id)
    assert run.cu_cost == the_job(knight).cost
    assert [change["status"] for change in run.status_history][-1] == "success"


def test_a_job_found_later_by_the_polls_is_recorded_and_billed(scenario, alice, knight):
    # The answer is lost and the first look-up of the job fails too.
    faults.inject(503, method="PUT", path_contains="/train", after_processing=True)
    faults.inject(429, times=1, method="GET", path_contains="/jobs", retry_after=100)
    run = launch(alice, knight)
    services.submit_run(run.pk)
    run.refresh_from_db()
    assert (run.state, run.job_id) == (S.QUEUED, "")
    run = poll_until_final(run)
    assert run.job_id == the_job(knight).id
    assert run.cu_cost == the_job(knight).cost


def test_a_run_whose_job_cannot_be_found_says_cost_unknown_and_is_not_counted_as_0(
    scenario, client, alice, team_a, knight
):
    faults.inject(503, method="PUT", path_contains="/train", after_processing=True)
    # Scenario lists no job for it, ever.
    faults.inject(
        200,
        times=1000,
        method="GET",
        path_contains="/jobs",
        body=json.dumps({"jobs": []}),
        content_type="application/json",
        after_processing=True,
    )
    run = launch(alice, knight)
    services.submit_run(run.pk)
    run = poll_until_final(run)
    assert run.state == S.SUCCEEDED
    assert (run.job_id, run.cu_cost, run.cost_unknown) == ("", None, True)

    # Its quote stands for it in the budget, not 0.
    assert budgets.status_for(team_a).spent == 120.0
    TrainingRun.objects.filter(pk=run.pk).update(state=S.CANCELED)
    assert budgets.status_for(team_a).spent == 120.0

    client.force_login(alice)
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert "cost unknown" in page
    history = client.get("/history/").content.decode()
    assert "cost unknown" in history


# --- an unknown outcome is settled in seconds -------------------------------------------------


def test_a_read_back_that_fails_is_tried_again_3_seconds_after_the_lost_answer(
    scenario, alice, knight
):
    faults.inject(503, method="PUT", path_contains="/train")  # nothing started
    faults.inject(429, method="GET", path_contains="/models/", retry_after=100)
    run = launch(alice, knight)
    services.submit_run(run.pk)
    run.refresh_from_db()
    assert run.state == S.SUBMITTING
    assert run.next_poll_at - run.outcome_unknown_at == timedelta(seconds=3)
    assert run.triggers_sent == 1

    # The next read-back shows nothing launched: only now is the trigger sent again.
    services.submit_run(run.pk)
    run.refresh_from_db()
    assert (run.state, run.outcome_unknown_at, run.submitted_at) == (S.SUBMITTING, None, None)
    assert launches(knight) == 1
    services.submit_run(run.pk)  # the submit task it published
    run.refresh_from_db()
    assert (run.state, run.triggers_sent) == (S.QUEUED, 2)
    assert launches(knight) == 2
    assert SimJob.objects.filter(model_id=knight.remote_id).count() == 1


def test_the_read_back_schedule_grows_3_10_30_seconds(scenario, alice, knight):
    faults.inject(503, method="PUT", path_contains="/train")
    faults.inject(429, times=10, method="GET", path_contains="/models/", retry_after=100)
    run = launch(alice, knight)
    services.submit_run(run.pk)
    run.refresh_from_db()
    since = run.outcome_unknown_at
    seen = [run.next_poll_at - since]
    for elapsed in (4, 11, 31):
        earlier = since - timedelta(seconds=elapsed)
        TrainingRun.objects.filter(pk=run.pk).update(outcome_unknown_at=earlier)
        run.refresh_from_db()
        services.submit_run(run.pk)
        run.refresh_from_db()
        seen.append(round((run.next_poll_at - timezone.now()).total_seconds()))
    assert seen[0] == timedelta(seconds=3)
    assert seen[1:] == [6, 19, 30]
    assert launches(knight) == 1


def test_a_refused_second_trigger_of_a_launch_that_did_happen_is_adopted_not_failed(
    scenario, alice, knight
):
    stale = scenario.client().get_model(knight.remote_id).raw  # the model before training
    # The first trigger launches, its answer is lost, and two reads still show the model as
    # it was before: the trigger goes out again and Scenario refuses it.
    faults.inject(503, method="PUT", path_contains="/train", after_processing=True)
    faults.inject(
        200,
        times=2,
        method="GET",
        path_contains=f"/models/{knight.remote_id}",
        body=json.dumps({"model": stale}),
        content_type="application/json",
    )
    run = launch(alice, knight)
    services.submit_run(run.pk)
    services.submit_run(run.pk)
    run.refresh_from_db()
    assert run.state == S.QUEUED
    assert run.events.last().message == (
        "Scenario refused a second trigger: adopted the first launch"
    )
    assert run.job_id == the_job(knight).id
    assert launches(knight) == 2
    assert poll_until_final(run).state == S.SUCCEEDED


def test_a_cancel_waiting_on_an_unknown_outcome_is_sent_once_the_launch_shows(
    scenario, alice, bob, knight
):
    faults.inject(503, method="PUT", path_contains="/train", after_processing=True)
    faults.inject(429, times=1, method="GET", path_contains="/models/", retry_after=100)
    run = launch(alice, knight)
    services.submit_run(run.pk)
    run.refresh_from_db()
    assert run.state == S.SUBMITTING and run.outcome_unknown_at is not None
    services.request_cancel(run, bob)
    services.cancel_run(run.pk)
    assert RequestLog.objects.filter(path__endswith="/train/action").count() == 1
    assert poll_until_final(run).state == S.CANCELED


def test_a_cancel_waiting_on_a_launch_that_never_shows_ends_it_after_the_schedule(
    scenario, alice, bob, knight
):
    faults.inject(503, method="PUT", path_contains="/train")  # nothing started
    faults.inject(429, times=1, method="GET", path_contains="/models/", retry_after=100)
    run = launch(alice, knight)
    services.submit_run(run.pk)
    run.refresh_from_db()
    services.request_cancel(run, bob)
    services.cancel_run(run.pk)
    run.refresh_from_db()
    assert run.state == S.CANCEL_REQUESTED  # not yet: the launch may still show
    TrainingRun.objects.filter(pk=run.pk).update(
        outcome_unknown_at=run.outcome_unknown_at - timedelta(seconds=31)
    )
    services.cancel_run(run.pk)
    run.refresh_from_db()
    assert run.state == S.CANCELED
    assert run.events.last().message == "Canceled before the launch reached Scenario"
    assert launches(knight) == 1
    assert not SimJob.objects.filter(model_id=knight.remote_id).exists()
