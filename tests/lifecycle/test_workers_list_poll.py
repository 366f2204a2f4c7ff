"""Polls by listing: one GET /models?status=training refreshes every training run at once.

A model is read alone only once it has left "training", for its final state and its
trainingStats; during a training no GET /models/{id} is sent for it.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from simulator import faults
from simulator.models import RequestLog
from tests.factories import make_bare_model, make_run, mirror
from tests.fixtures.workers import assert_valid_trail, reload
from training import leases, services
from training.models import RunState, TrainingRun

S = RunState
PROMPTS = ["a knight in silver armour", "a castle at dusk"]

pytestmark = [pytest.mark.worker]


def _reads_of(model_id: str, *, since, until) -> int:
    return RequestLog.objects.filter(
        method="GET", path__endswith=f"/models/{model_id}", at__gte=since, at__lte=until
    ).count()


def _model_reads() -> int:
    return RequestLog.objects.filter(method="GET", path__regex=r"/models/[^/]+$").count()


def _listings() -> int:
    return RequestLog.objects.filter(method="GET", path__endswith="/models").count()


def test_runs_train_to_their_end_from_listings_with_no_model_read_while_training(
    scenario, celery_worker_thread, fast_lifecycle, drive, alice
):
    scenario.set_gpu_slots(3)
    scenario.set_speed(60)
    models = [mirror(scenario.create_model(f"Knight {i}", images=2)) for i in range(6)]
    runs = [
        services.launch_run(
            user=alice,
            model=model,
            parameters={"nbEpochs": 2, "samplePrompts": PROMPTS, "maxTrainSteps": 100},
        )
        for model in models
    ]
    drive(
        lambda: all(reload(run).is_final for run in runs),
        timeout=120,
        describe=lambda: [reload(run).state for run in runs],
    )

    assert _listings() > 0
    for run in map(reload, runs):
        assert assert_valid_trail(run)[-3:] == ["queued", "running", "succeeded"]
        assert run.train_duration and run.queue_duration is not None and run.cu_cost > 0
        assert run.status_history[-1]["status"] == "success"
        assert run.samples.count() == 4
        # While it trained, the listings told everything: no read of its model alone.
        during = _reads_of(run.model.remote_id, since=run.submitted_at, until=run.train_ended_at)
        assert during == 0, f"run {run.pk}: {during} reads of its model while it trained"
        # Once it left "training", one read (or a few, if a poll raced) gave its final state.
        assert _reads_of(run.model.remote_id, since=run.train_ended_at, until=timezone.now()) >= 1


def test_with_listing_off_each_run_reads_its_own_model(
    scenario, celery_worker_thread, fast_lifecycle, drive, alice, settings
):
    settings.POLL_BY_LIST = False
    scenario.set_speed(60)
    run = services.launch_run(
        user=alice, model=mirror(scenario.create_model("Knight", images=2)), parameters={}
    )
    drive(lambda: reload(run).is_final, timeout=120, describe=lambda: reload(run).state)
    run = reload(run)
    assert run.state == S.SUCCEEDED
    assert _listings() == 0
    assert _reads_of(run.model.remote_id, since=run.submitted_at, until=run.train_ended_at) > 0


def _due_launched_runs(user, model_factory, count: int) -> list:
    past = timezone.now() - timedelta(seconds=5)
    return [
        make_run(
            user,
            model_factory(i),
            S.RUNNING,
            job_id=f"job_{i}",
            remote_model_status="training",
            stage="running-train",
            next_poll_at=past,
        )
        for i in range(count)
    ]


def test_a_sweep_claims_a_batch_with_one_update_and_sends_one_task(
    db, alice, django_capture_on_commit_callbacks
):
    runs = _due_launched_runs(alice, lambda i: make_bare_model(remote_id=f"model_{i}"), 40)
    with CaptureQueriesContext(connection) as queries:
        with django_capture_on_commit_callbacks() as sent:
            claimed = services.sweep()
    assert claimed == 40
    updates = [q["sql"] for q in queries if q["sql"].startswith('UPDATE "training_trainingrun"')]
    assert len(updates) == 1  # every run polls at the running interval: one claim
    assert len(sent) == 1  # one poll_listed task for the batch
    for run in map(reload, runs):
        assert run.next_poll_at > timezone.now() and run.last_polled_at is not None
    # Claimed runs are not due again: a second sweep finds nothing to send.
    with django_capture_on_commit_callbacks() as again:
        assert services.sweep() == 0
    assert again == []


def test_a_429_on_the_listing_puts_the_whole_batch_off_with_one_request(scenario, alice, settings):
    settings.SCENARIO_MAX_RETRY_AFTER = 0  # the client does not wait and ask again itself
    models = [mirror(scenario.create_model(f"Knight {i}", images=2)) for i in range(5)]
    runs = _due_launched_runs(alice, lambda i: models[i], 5)
    RequestLog.objects.all().delete()
    faults.inject(429, times=1, method="GET", path_contains="/models", retry_after=7)
    before = timezone.now()
    services.poll_listed([run.pk for run in runs])
    assert RequestLog.objects.count() == 1  # the listing only, not one request per run
    for run in map(reload, runs):
        assert run.next_poll_at >= before + timedelta(seconds=7)
        assert run.state == S.RUNNING


def test_a_model_missing_from_the_listing_is_read_on_its_own(scenario, celery_worker_thread, alice):
    """A model that left "training" is read alone: here, one never launched on Scenario."""
    model = mirror(scenario.create_model("Knight", images=2))
    (run,) = _due_launched_runs(alice, lambda i: model, 1)
    RequestLog.objects.all().delete()
    services.poll_listed([run.pk])
    assert _listings() == 1
    # The worker runs the poll of its own that the listing sent.
    deadline = time.monotonic() + 20
    while not RequestLog.objects.filter(path__endswith=f"/models/{model.remote_id}").exists():
        assert time.monotonic() < deadline, "the model was never read on its own"
        time.sleep(0.05)


def _training_on_scenario(scenario, alice, count: int) -> list:
    """Runs whose models train on Scenario now, as a sweep would find them due."""
    models = [mirror(scenario.create_model(f"Knight {i}", images=2)) for i in range(count)]
    client = scenario.client()
    jobs = [client.trigger(model.remote_id, {}).job.id for model in models]
    runs = _due_launched_runs(alice, lambda i: models[i], count)
    for run, job in zip(runs, jobs, strict=True):
        run.job_id = job
        run.save(update_fields=["job_id"])
    return runs


def test_a_batch_makes_the_runs_it_held_due_again_once_it_is_done(scenario, alice, settings):
    runs = _training_on_scenario(scenario, alice, 3)
    assert services.sweep() == 3  # its batch goes to the broker; no worker takes it here
    held = reload(runs[0]).next_poll_at
    assert held >= timezone.now() + timedelta(seconds=settings.POLL_RUNNING_SECONDS * 2)
    assert {reload(run).next_poll_at for run in runs} == {held}  # one claim for the batch
    services.poll_listed([run.pk for run in runs], held.isoformat())
    soon = timezone.now() + timedelta(seconds=settings.POLL_RUNNING_SECONDS)
    for run in map(reload, runs):
        assert run.next_poll_at <= soon


def test_a_large_listing_is_applied_in_chunks_by_several_tasks_from_one_list_call(
    scenario, alice, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(services, "APPLY_CHUNK", 2)
    scenario.set_speed(1)  # every training stays pending through the test
    runs = _training_on_scenario(scenario, alice, 5)
    RequestLog.objects.all().delete()
    sent = []
    monkeypatch.setattr(services, "enqueue", lambda name, *args: sent.append((name, args)))
    services.poll_listed([run.pk for run in runs], "")
    assert _listings() == 1 and _model_reads() == 0  # the listing, and the news of jobs
    assert [name for name, _ in sent] == ["apply_listed", "apply_listed"]
    chunks = [args[0] for _, args in sent]
    assert chunks == [[runs[2].pk, runs[3].pk], [runs[4].pk]]
    # The first chunk is applied here; the others (made "running-train") wait for their task.
    assert [reload(run).stage for run in runs] == ["pending"] * 2 + ["running-train"] * 3
    for _, args in sent:  # as another worker process would, from the listing it carries
        assert set(args[1]) == {TrainingRun.objects.get(pk=pk).model.remote_id for pk in args[0]}
        services.apply_listed(*args)
    assert [reload(run).stage for run in runs] == ["pending"] * 5
    assert _listings() == 1 and _model_reads() == 0  # still no other listing, no model read


def test_a_run_handed_to_its_own_poll_is_due_again_when_that_poll_is_done(
    scenario, alice, settings
):
    model = mirror(scenario.create_model("Knight", images=2))  # never launched: not listed
    (run,) = _due_launched_runs(alice, lambda i: model, 1)
    assert services.sweep() == 1
    held = reload(run).next_poll_at
    services.poll_run(run.pk, held.isoformat())
    assert reload(run).next_poll_at <= timezone.now() + timedelta(
        seconds=settings.POLL_RUNNING_SECONDS
    )


def test_applying_a_listing_costs_the_same_queries_for_3_runs_or_12(scenario, alice):
    scenario.set_speed(1)  # every training stays pending through the test

    def queries_to_apply(count: int) -> int:
        runs = _training_on_scenario(scenario, alice, count)
        TrainingRun.objects.filter(pk__in=[run.pk for run in runs]).update(
            state=S.QUEUED,
            stage="pending",  # what the listing says: no job to read
        )
        with CaptureQueriesContext(connection) as queries:
            services.poll_listed([run.pk for run in runs], "")
        for run in map(reload, runs):
            assert run.remaining_ms is not None and run.updated_at > run.created_at  # written
        return len(queries)

    assert queries_to_apply(3) == queries_to_apply(12)


def test_no_second_listing_goes_out_while_one_is_under_way(scenario, alice, monkeypatch):
    sent = []
    monkeypatch.setattr(services, "enqueue_on_commit", lambda name, *args: sent.append(name))
    first = _training_on_scenario(scenario, alice, 3)
    assert services.sweep() == 3
    assert sent == ["poll_listed"]
    held = reload(first[0]).next_poll_at
    later = _due_launched_runs(alice, lambda i: make_bare_model(remote_id=f"later_{i}"), 2)
    assert services.sweep() == 0  # due, but they wait for the listing under way
    assert sent == ["poll_listed"]
    assert all(reload(run).next_poll_at < timezone.now() for run in later)
    services.poll_listed([run.pk for run in first], held.isoformat())  # its task is done
    assert _listings() == 1
    assert services.sweep() == 2
    assert sent == ["poll_listed", "poll_listed"]


def test_a_listing_takes_along_the_runs_due_within_half_an_interval(
    db, alice, settings, django_capture_on_commit_callbacks
):
    settings.POLL_RUNNING_SECONDS = 10
    due, soon, later = _due_launched_runs(
        alice, lambda i: make_bare_model(remote_id=f"model_{i}"), 3
    )
    now = timezone.now()
    TrainingRun.objects.filter(pk=soon.pk).update(next_poll_at=now + timedelta(seconds=4))
    TrainingRun.objects.filter(pk=later.pk).update(next_poll_at=now + timedelta(seconds=8))
    with django_capture_on_commit_callbacks():
        assert services.sweep() == 2
    assert reload(due).last_polled_at is not None and reload(soon).last_polled_at is not None
    assert reload(later).last_polled_at is None


def test_runs_only_due_soon_send_no_listing_yet(
    db, alice, settings, django_capture_on_commit_callbacks
):
    settings.POLL_RUNNING_SECONDS = 10
    (run,) = _due_launched_runs(alice, lambda i: make_bare_model(remote_id="model_0"), 1)
    TrainingRun.objects.filter(pk=run.pk).update(next_poll_at=timezone.now() + timedelta(seconds=4))
    with django_capture_on_commit_callbacks() as sent:
        assert services.sweep() == 0
    assert sent == []


def test_the_next_listing_may_go_out_while_this_one_applies_its_own_chunk(
    scenario, alice, monkeypatch
):
    runs = _training_on_scenario(scenario, alice, 2)
    assert services.sweep() == 2
    held = reload(runs[0]).next_poll_at
    free_while_applying = []
    apply = services._apply_listed

    def applying(chunk, training, held_until):
        later = timezone.now() + timedelta(seconds=30)
        free_while_applying.append(leases.take_listing(timezone.now(), later))
        leases.release_listing(later)
        apply(chunk, training, held_until)

    monkeypatch.setattr(services, "_apply_listed", applying)
    services.poll_listed([run.pk for run in runs], held.isoformat())
    assert free_while_applying == [True]
