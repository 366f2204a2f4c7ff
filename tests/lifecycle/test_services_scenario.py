"""The lifecycle services against the simulator over real HTTP, called in the test's process.

Each test plays the part of the worker by calling the service functions the tasks call, so
an exact interleaving (a lost answer, a dead worker's stale lease, a cancel just before the
send) can be set up deterministically. The worker tests run the same code through Celery.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from simulator import faults
from simulator.models import RequestLog, SimModel
from tests.factories import mirror
from tests.fixtures.workers import launches
from tests.helpers import launch, poll_until, poll_until_final, quick_knight
from training import scenario_client, services
from training.models import RunState, ScenarioModel, TrainingRun
from training.scenario import TryAgain

S = RunState
PROMPTS = ["a knight in silver armour", "a castle at dusk"]


def states(run) -> list[str]:
    return [S.DRAFT] + list(run.events.exclude(from_state="").values_list("to_state", flat=True))


# Launches publish their submit task as the web does; the broker keeps it, no worker runs it.
pytestmark = pytest.mark.usefixtures("broker")


@pytest.fixture
def knight(scenario):
    return quick_knight(scenario)


# --- launching ------------------------------------------------------------------------------


def test_a_run_goes_from_launch_to_succeeded_with_samples_stats_and_billing(
    scenario, alice, knight
):
    run = launch(alice, knight, nbEpochs=2, samplePrompts=PROMPTS)
    services.submit_run(run.pk)
    run.refresh_from_db()
    assert run.state == S.QUEUED
    assert run.job_id.startswith("job_")
    assert run.quote_cu_cost and run.quote_cu_cost > 0
    assert run.remote_model_status == "training"

    run = poll_until_final(run)
    assert states(run) == [S.DRAFT, S.SUBMITTING, S.QUEUED, S.RUNNING, S.SUCCEEDED]
    assert (run.progress, run.remaining_ms) == (1.0, 0)
    assert run.train_started_at and run.train_ended_at and run.train_duration
    assert run.queue_duration is not None
    assert run.cu_cost and run.cu_cost > 0
    assert run.remote_job_status == "success"
    assert [change["status"] for change in run.status_history][-1] == "success"
    assert run.finished_at is not None
    samples = list(run.samples.values_list("epoch_index", "prompt_index", "prompt"))
    assert samples == [
        (0, 0, PROMPTS[0]),
        (0, 1, PROMPTS[1]),
        (1, 0, PROMPTS[0]),
        (1, 1, PROMPTS[1]),
    ]
    assert launches(knight) == 1


def test_submitting_a_run_twice_sends_one_trigger(scenario, alice, knight):
    run = launch(alice, knight)
    services.submit_run(run.pk)
    services.submit_run(run.pk)
    run.refresh_from_db()
    assert run.state == S.QUEUED
    assert launches(knight) == 1
    assert states(run) == [S.DRAFT, S.SUBMITTING, S.QUEUED]


def test_a_launch_whose_answer_was_lost_is_adopted_not_sent_again(scenario, alice, knight):
    # Scenario starts the training, then the answer is lost (a gateway 503).
    faults.inject(503, method="PUT", path_contains="/train", after_processing=True)
    run = launch(alice, knight)
    services.submit_run(run.pk)
    run.refresh_from_db()
    assert run.state == S.QUEUED
    assert run.events.last().message == "Launch confirmed on Scenario"
    assert launches(knight) == 1
    assert poll_until_final(run).state == S.SUCCEEDED
    assert launches(knight) == 1


def test_a_launch_answered_without_a_job_is_adopted_if_it_started(scenario, alice, knight):
    faults.inject(200, method="PUT", path_contains="/train", body="{}", after_processing=True)
    run = launch(alice, knight)
    services.submit_run(run.pk)
    run.refresh_from_db()
    assert run.state == S.QUEUED
    assert launches(knight) == 1


def test_a_launch_answered_without_a_job_fails_if_nothing_started(scenario, alice, knight):
    faults.inject(200, method="PUT", path_contains="/train", body="{}")
    run = launch(alice, knight)
    services.submit_run(run.pk)
    run.refresh_from_db()
    assert run.state == S.FAILED
    assert "no job" in run.error_message


def test_a_submission_left_by_a_dead_worker_is_adopted_when_scenario_has_it(
    scenario, alice, knight, settings
):
    run = launch(alice, knight)
    # The dead worker's trigger went through; then it died before storing anything.
    scenario.client().trigger(knight.remote_id, {})
    stale = timezone.now() - timedelta(seconds=settings.SUBMIT_TIMEOUT_SECONDS + 1)
    TrainingRun.objects.filter(pk=run.pk).update(state=S.SUBMITTING, submitted_at=stale)
    services.submit_run(run.pk)
    run.refresh_from_db()
    assert run.state == S.QUEUED
    assert run.remote_model_status == "training"
    assert launches(knight) == 1


def test_a_submission_left_by_a_dead_worker_is_sent_when_scenario_never_got_it(
    scenario, alice, knight, settings
):
    run = launch(alice, knight)
    stale = timezone.now() - timedelta(seconds=settings.SUBMIT_TIMEOUT_SECONDS + 1)
    TrainingRun.objects.filter(pk=run.pk).update(state=S.SUBMITTING, submitted_at=stale)
    services.submit_run(run.pk)
    run.refresh_from_db()
    assert run.state == S.QUEUED
    assert launches(knight) == 1


def test_a_submission_in_progress_is_left_alone(scenario, alice, knight):
    run = launch(alice, knight)
    TrainingRun.objects.filter(pk=run.pk).update(state=S.SUBMITTING, submitted_at=timezone.now())
    services.submit_run(run.pk)  # a duplicate delivery while the first holds the lease
    run.refresh_from_db()
    assert run.state == S.SUBMITTING
    assert launches(knight) == 0


def test_a_refused_launch_is_not_started_with_scenarios_message(scenario, alice):
    empty = mirror(scenario.create_model("Empty", images=0))
    run = launch(alice, empty)
    services.submit_run(run.pk)
    run.refresh_from_db()
    assert run.state == S.NOT_STARTED
    assert run.error_message == "Model has no training images"
    assert run.events.last().message == "Scenario refused the launch: Model has no training images"
    assert run.finished_at is not None and run.next_poll_at is None


def test_a_model_already_training_elsewhere_leaves_the_run_not_started(scenario, alice, knight):
    scenario.client().trigger(knight.remote_id, {})  # someone else's training
    run = launch(alice, knight)
    services.submit_run(run.pk)
    run.refresh_from_db()
    assert run.state == S.NOT_STARTED
    assert run.error_message == "Model is already training"
    assert run.outcome == "Not started: Model is already training"
    assert not services.is_launched(run)
    assert launches(knight, status=400) == 1


def test_a_launch_refused_after_its_cancel_was_requested_ends_canceled(scenario, alice, knight):
    scenario.set_speed(5)  # someone else's training, long enough to outlast the test
    scenario.client().trigger(knight.remote_id, {})
    faults.inject(None, method="PUT", path_contains="/train", delay_ms=800)
    run = launch(alice, knight)

    def submit():
        try:
            services.submit_run(run.pk)
        finally:
            scenario_client.close()
            connection.close()

    worker = threading.Thread(target=submit)
    worker.start()
    # Wait for the last check before sending (it counts the trigger), not for SUBMITTING: a
    # cancel between the two rightly keeps the trigger from going out at all.
    for _ in range(500):
        if TrainingRun.objects.filter(pk=run.pk, triggers_sent=1).exists():
            break
        time.sleep(0.01)
    # The trigger is on its way (the answer takes 0.8 s) when the cancel comes in.
    assert services.request_cancel(TrainingRun.objects.get(pk=run.pk), alice)
    worker.join(timeout=10)
    run.refresh_from_db()
    assert run.state == S.CANCELED
    assert run.error_message == "Model is already training"
    assert states(run)[-2:] == [S.CANCEL_REQUESTED, S.CANCELED]


def test_a_rate_limited_launch_is_retried_and_sent_once(scenario, alice, knight):
    faults.inject(429, method="PUT", path_contains="/train", retry_after=7)
    run = launch(alice, knight)
    with pytest.raises(TryAgain) as raised:
        services.submit_run(run.pk)
    assert raised.value.retry_after == 7
    run.refresh_from_db()
    assert (run.state, run.submitted_at) == (S.SUBMITTING, None)  # the lease is free again
    services.submit_run(run.pk)  # the retry
    run.refresh_from_db()
    assert run.state == S.QUEUED
    succeeded = RequestLog.objects.filter(
        method="PUT", path__endswith="/train", dry_run=False, status=200
    )
    assert succeeded.count() == 1


# --- canceling ------------------------------------------------------------------------------


def test_a_cancel_before_the_trigger_went_out_means_it_never_goes_out(scenario, alice, knight):
    run = launch(alice, knight)
    lease = timezone.now()
    assert services.transition(
        run, S.SUBMITTING, expected=[S.DRAFT], source="worker", submitted_at=lease
    )
    # The user cancels between the worker's claim and its send.
    services.request_cancel(TrainingRun.objects.get(pk=run.pk), alice)
    services._launch(run, lease, reconcile=False)
    run.refresh_from_db()
    assert run.state == S.CANCELED
    assert launches(knight) == 0
    assert states(run) == [S.DRAFT, S.SUBMITTING, S.CANCEL_REQUESTED, S.CANCELED]


def test_a_cancel_while_a_retry_waits_settles_without_sending(scenario, alice, knight):
    faults.inject(429, method="PUT", path_contains="/train", retry_after=1)
    run = launch(alice, knight)
    with pytest.raises(TryAgain):
        services.submit_run(run.pk)
    services.request_cancel(TrainingRun.objects.get(pk=run.pk), alice)
    services.cancel_run(run.pk)
    services.submit_run(run.pk)  # the retry arrives after the cancel: nothing to send
    run.refresh_from_db()
    assert run.state == S.CANCELED
    assert RequestLog.objects.filter(method="PUT", dry_run=False, status=200).count() == 0


def test_a_cancel_of_a_queued_run_is_confirmed(scenario, alice, knight):
    scenario.set_gpu_slots(1)
    occupier = scenario.client()
    occupier.trigger(scenario.create_model("Occupier", images=1).id, {"maxTrainSteps": 5000})
    run = launch(alice, knight)
    services.submit_run(run.pk)
    run = poll_until(run, lambda r: r.stage == "queued-for-train")
    assert services.request_cancel(run, alice)
    services.cancel_run(run.pk)
    run.refresh_from_db()
    assert run.state == S.CANCELED
    assert states(run) == [S.DRAFT, S.SUBMITTING, S.QUEUED, S.CANCEL_REQUESTED, S.CANCELED]
    assert run.events.filter(to_state=S.CANCEL_REQUESTED).get().actor == alice
    assert run.remote_job_status == "canceled"


def test_a_cancel_of_a_running_run_is_confirmed_with_billing(scenario, alice, bob, knight):
    scenario.set_speed(30)
    run = launch(alice, knight)
    services.submit_run(run.pk)
    run = poll_until(run, lambda r: r.state == S.RUNNING)
    assert services.request_cancel(run, bob)
    services.cancel_run(run.pk)
    services.cancel_run(run.pk)  # twice is harmless
    run = poll_until_final(run)
    assert run.state == S.CANCELED
    assert run.cu_cost is not None
    assert run.events.filter(to_state=S.CANCEL_REQUESTED).get().actor == bob


def test_a_cancel_that_arrives_after_the_end_is_recorded_honestly(scenario, alice, knight):
    run = launch(alice, knight)
    services.submit_run(run.pk)
    run.refresh_from_db()
    remote = scenario.client()
    deadline = time.monotonic() + 30
    while remote.get_model(knight.remote_id).status == "training":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert services.request_cancel(run, alice)  # locally it still looks queued
    services.cancel_run(run.pk)
    run.refresh_from_db()
    assert run.state == S.SUCCEEDED
    assert "already finished" in run.events.last().message
    assert run.cu_cost is not None


# --- polling --------------------------------------------------------------------------------


def test_a_failing_model_ends_failed_with_its_message(scenario, alice):
    scenario.set_speed(300)
    doomed = mirror(scenario.create_model("Will fail", images=2))
    run = launch(alice, doomed)
    services.submit_run(run.pk)
    run = poll_until_final(run)
    assert run.state == S.FAILED
    assert "diverged" in run.error_message
    assert run.events.last().message == run.error_message


def test_a_model_deleted_on_scenario_fails_the_run(scenario, alice, knight):
    run = launch(alice, knight)
    services.submit_run(run.pk)
    SimModel.objects.filter(pk=knight.remote_id).delete()
    services.poll_run(run.pk)
    run.refresh_from_db()
    assert run.state == S.FAILED
    assert "no longer exists" in run.error_message


def test_polls_of_an_unchanged_run_write_nothing(scenario, alice, knight, settings):
    start = timezone.now()
    settings.SIMULATOR_FROZEN_CLOCK = start
    run = launch(alice, knight, samplePrompts=PROMPTS, nbEpochs=4)
    services.submit_run(run.pk)
    # Half-way through the training: at 300× pending takes 0.07 s, starting 0.1 s, then
    # 0.67 s for 200 steps.
    settings.SIMULATOR_FROZEN_CLOCK = start + timedelta(seconds=0.5)
    services.poll_run(run.pk)
    run.refresh_from_db()
    assert run.state == S.RUNNING
    assert run.samples.exists()
    updated = run.updated_at

    with CaptureQueriesContext(connection) as queries:
        services.poll_run(run.pk)
        services.poll_run(run.pk)
    writes = [q["sql"] for q in queries if not q["sql"].lstrip().upper().startswith("SELECT")]
    assert writes == []
    run.refresh_from_db()
    assert run.updated_at == updated


def test_failed_polls_back_off_and_honour_retry_after(scenario, alice, knight, settings):
    settings.SCENARIO_MAX_RETRY_AFTER = 1  # longer waits are handed back, not slept through
    run = launch(alice, knight)
    services.submit_run(run.pk)
    faults.inject(429, method="GET", path_contains="/models/", retry_after=40)
    before = timezone.now()
    services.poll_run(run.pk)
    run.refresh_from_db()
    assert run.poll_failures == 1
    assert run.next_poll_at >= before + timedelta(seconds=40)
    services.poll_run(run.pk)  # the next poll works again and resets the count
    run.refresh_from_db()
    assert run.poll_failures == 0


def test_polls_of_a_finished_or_missing_run_do_nothing(scenario, alice, knight):
    run = launch(alice, knight)
    services.request_cancel(run, alice)
    services.poll_run(run.pk)
    services.submit_run(run.pk)
    services.cancel_run(run.pk)
    services.poll_run(run.pk + 1000)
    assert RequestLog.objects.count() == 0


# --- models ---------------------------------------------------------------------------------


def test_sync_models_mirrors_every_page_and_keeps_team_assignments(scenario, team_a):
    created = [scenario.create_model(f"Model {i:03d}", images=0) for i in range(103)]
    first = mirror(created[0], team=team_a)
    assert services.sync_models() == 103
    assert ScenarioModel.objects.count() == 103
    first.refresh_from_db()
    assert first.team == team_a
    assert first.synced_at is not None
    assert RequestLog.objects.filter(method="GET", path__endswith="/models").count() >= 2
