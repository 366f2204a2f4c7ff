"""Fifty runs through a flaky Scenario: every one reaches the right final state, once.

The simulator answers 20% of requests with 503 and 10% with 429 (with Retry-After), at
random, on every endpoint: launches, reads, jobs and cancels.
"""

from __future__ import annotations

import pytest

from simulator import faults
from simulator.models import RequestLog, SimJob
from tests.factories import mirror
from tests.fixtures.workers import assert_valid_trail
from training import services
from training.models import FINAL_STATES, RunState, TrainingRun

S = RunState

pytestmark = [pytest.mark.worker]


@pytest.fixture
def worker_concurrency():
    return 8


def test_fifty_runs_reach_their_final_states_through_503s_and_429s(
    scenario, celery_worker_thread, fast_lifecycle, drive, alice, bob
):
    fast_lifecycle.POLL_RUNNING_SECONDS = fast_lifecycle.POLL_QUEUED_SECONDS = 0.4
    scenario.set_speed(1000)
    scenario.set_gpu_slots(10)
    faults.set_rates(rate_429=0.1, rate_503=0.2)
    plan = {"succeeded": 40, "failed": 5, "canceled": 5}
    expected = {}
    for outcome, count in plan.items():
        for index in range(count):
            name = f"Will fail {index}" if outcome == "failed" else f"{outcome} {index}"
            model = mirror(scenario.create_model(name, images=1))
            # The ones to cancel train long (10 s here), so the cancel always comes first.
            steps = 10000 if outcome == "canceled" else 100
            run = services.launch_run(user=alice, model=model, parameters={"maxTrainSteps": steps})
            expected[run.pk] = outcome

    for run in TrainingRun.objects.filter(
        pk__in=[pk for pk, o in expected.items() if o == "canceled"]
    ):
        services.request_cancel(run, bob)

    def unfinished():
        return TrainingRun.objects.exclude(state__in=FINAL_STATES)

    drive(
        lambda: not unfinished().exists(),
        timeout=90,
        describe=lambda: list(unfinished().values_list("pk", "state", "stage")),
    )
    faults.clear()

    assert RequestLog.objects.filter(status=503).exists()
    assert RequestLog.objects.filter(status=429).exists()
    refused_launches = RequestLog.objects.filter(
        method="PUT", path__endswith="/train", status__in=[429, 503]
    )
    assert refused_launches.exists()
    for run in TrainingRun.objects.select_related("model"):
        assert run.state == expected[run.pk], (run.pk, run.state, run.error_message)
        assert run.finished_at is not None
        assert_valid_trail(run)
        # The simulator's own record of trainings started: never two for one run.
        trainings = SimJob.objects.filter(model_id=run.model.remote_id).count()
        if run.state == S.CANCELED:
            assert trainings <= 1  # a cancel may come before the launch went out
        else:
            assert trainings == 1
        accepted = RequestLog.objects.filter(
            method="PUT", model_id=run.model.remote_id, dry_run=False, status=200
        )
        assert accepted.count() == trainings
        if run.state == S.SUCCEEDED:
            assert run.cu_cost is not None and run.train_duration is not None
        if run.state == S.FAILED:
            assert "diverged" in run.error_message
