"""Duplicated and interrupted tasks never launch a training twice.

The simulator's request log is the witness: it records every PUT …/train it received,
whatever became of the answer.
"""

from __future__ import annotations

import time

import pytest
from celery.app.task import Task

from simulator import faults
from tests.factories import mirror
from tests.fixtures.workers import assert_valid_trail, launches, reload
from training import services
from training.models import RunState

S = RunState

pytestmark = [pytest.mark.worker]


@pytest.fixture
def every_task_twice(monkeypatch):
    """Publish every task message twice: launches, cancels, sweeps, polls and retries."""
    publish = Task.apply_async

    def twice(self, *args, **kwargs):
        publish(self, *args, **kwargs)
        return publish(self, *args, **kwargs)

    monkeypatch.setattr(Task, "apply_async", twice)


def test_every_task_delivered_twice_still_launches_each_run_once(
    scenario, celery_worker_thread, fast_lifecycle, every_task_twice, drive, alice, bob
):
    scenario.set_gpu_slots(2)
    names = ["Knight", "Dragon", "Castle", "Will fail"]
    models = [mirror(scenario.create_model(name, images=2)) for name in names]
    runs = [
        services.launch_run(user=alice, model=model, parameters={"maxTrainSteps": 150})
        for model in models
    ]
    canceled = runs[2]
    drive(lambda: reload(canceled).state in {S.QUEUED, S.RUNNING})
    assert services.request_cancel(reload(canceled), bob)
    drive(
        lambda: all(reload(run).is_final for run in runs),
        describe=lambda: [reload(run).state for run in runs],
    )

    runs = [reload(run) for run in runs]
    assert [run.state for run in runs] == [S.SUCCEEDED, S.SUCCEEDED, S.CANCELED, S.FAILED]
    for run, model in zip(runs, models, strict=True):
        assert_valid_trail(run)
        assert launches(model) == 1
    # Each state was entered once, however many tasks raced for it.
    for run in runs:
        states = [event.to_state for event in run.events.all()]
        assert len(states) == len(set(states))


def test_a_worker_killed_mid_submit_is_replaced_without_a_second_launch(
    scenario, worker_processes, settings, drive, alice
):
    settings.SUBMIT_TIMEOUT_SECONDS = 3
    knight = mirror(scenario.create_model("Knight", images=2))
    # Scenario takes a second and a half to answer the launch: time enough to kill the worker.
    faults.inject(None, delay_ms=1500, method="PUT", path_contains="/train")
    first = worker_processes.start()
    run = services.launch_run(user=alice, model=knight, parameters={})

    deadline = time.monotonic() + 30
    while reload(run).state != S.SUBMITTING:
        assert time.monotonic() < deadline, worker_processes.log(0)
        time.sleep(0.05)
    time.sleep(0.5)  # the trigger is on its way, the answer is not back
    worker_processes.kill(first)
    assert reload(run).state == S.SUBMITTING

    worker_processes.start()
    drive(
        lambda: reload(run).state not in {S.DRAFT, S.SUBMITTING},
        timeout=60,
        describe=lambda: f"{reload(run).state}\n{worker_processes.log(1)}",
    )
    run = reload(run)
    assert run.state in {S.QUEUED, S.RUNNING, S.SUCCEEDED}
    assert assert_valid_trail(run)[:3] == ["draft", "submitting", "queued"]
    assert "adopted" in run.events.get(to_state=S.QUEUED).message
    assert launches(knight) == 1
