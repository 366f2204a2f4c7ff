"""A cancel against a real worker: it waits neither for a hanging trigger nor behind polls."""

from __future__ import annotations

import time

import pytest
from celery.signals import task_prerun

from simulator import faults
from simulator.models import RequestLog, SimJob
from tests.factories import mirror
from tests.fixtures.workers import reload, worker_thread
from training import services, tasks
from training.models import RunState

S = RunState

pytestmark = [pytest.mark.worker]


@pytest.mark.parametrize(
    "launch_took_effect",
    [True, False],
    ids=["the launch took effect at once", "the launch lands after the client gave up"],
)
def test_a_cancel_during_a_trigger_that_hangs_past_the_read_timeout_reaches_scenario_in_15_s(
    scenario, settings, celery_worker_thread, fast_lifecycle, drive, alice, bob, launch_took_effect
):
    settings.SUBMIT_TIMEOUT_SECONDS = 60.0  # the real lease: the cancel must not wait it out
    settings.SCENARIO_READ_TIMEOUT = 4.0
    scenario.set_speed(5)  # a long training: the cancel finds it still running
    model = mirror(scenario.create_model("Hanging", images=2))
    faults.inject(
        None,
        method="PUT",
        path_contains="/train",
        delay_ms=6000,
        after_processing=launch_took_effect,
    )
    run = services.launch_run(user=alice, model=model, parameters={})
    drive(lambda: reload(run).triggers_sent == 1, describe=lambda: reload(run).state)

    assert services.request_cancel(reload(run), bob)
    asked = reload(run).events.last().at
    drive(lambda: reload(run).is_final, timeout=40, describe=lambda: reload(run).state)

    assert reload(run).state == S.CANCELED
    cancel = RequestLog.objects.filter(path__endswith="/train/action", status=200).first()
    assert cancel is not None, "the cancel never reached Scenario"
    assert (cancel.at - asked).total_seconds() < 15
    (job,) = SimJob.objects.filter(model_id=model.remote_id)
    assert job.canceled_at is not None
    assert reload(run).job_id == job.id


def test_a_worker_takes_a_cancel_before_the_polls_queued_ahead_of_it(broker, transactional_db):
    for run_id in range(1, 21):
        tasks.poll_run.delay(run_id)  # runs that do not exist: each returns at once
    services.enqueue("cancel_run", 99)
    order: list[str] = []

    def record(sender=None, **kwargs):
        order.append(sender.name.rsplit(".", 1)[-1])

    task_prerun.connect(record, weak=False)
    try:
        with worker_thread(concurrency=1):
            deadline = 200
            while len(order) < 21 and deadline:
                time.sleep(0.05)
                deadline -= 1
    finally:
        task_prerun.disconnect(record)
    assert order[0] == "cancel_run", order
    assert order.count("poll_run") == 20
