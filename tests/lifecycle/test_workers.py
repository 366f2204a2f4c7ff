"""Real Celery workers running the lifecycle against the simulator over HTTP.

The sweep is driven from the test loop: `drive` publishes the sweep task through the broker
every tenth of a second (as beat does every SWEEP_INTERVAL_SECONDS), and the worker runs it.
"""

from __future__ import annotations

import pytest

from tests.factories import mirror
from tests.fixtures.workers import (
    assert_valid_trail,
    broker_unreachable,
    launches,
    reload,
    worker_thread,
)
from training import services
from training.models import RunState

S = RunState
PROMPTS = ["a knight in silver armour", "a castle at dusk"]

pytestmark = [pytest.mark.worker]


def test_runs_reach_their_final_states_through_a_real_worker(
    scenario, celery_worker_thread, fast_lifecycle, drive, alice, bob
):
    scenario.set_gpu_slots(2)
    models = {
        name: mirror(scenario.create_model(name, images=2))
        for name in ("Knight", "Dragon", "Castle", "Will fail")
    }

    def launch(name, **parameters):
        return services.launch_run(user=alice, model=models[name], parameters=parameters)

    # Two slow trainings fill both GPU slots.
    scenario.set_speed(50)
    knight = launch("Knight", nbEpochs=2, samplePrompts=PROMPTS, maxTrainSteps=100)
    dragon = launch("Dragon", maxTrainSteps=5000)
    drive(lambda: all(reload(r).state in {S.QUEUED, S.RUNNING} for r in (knight, dragon)))

    # A third waits in Scenario's queue and is canceled there.
    scenario.set_speed(100)
    castle = launch("Castle")
    drive(lambda: reload(castle).state == S.QUEUED)
    assert services.request_cancel(reload(castle), alice)
    drive(lambda: reload(castle).is_final, describe=lambda: reload(castle).state)

    # The long one is canceled by the team lead once it runs.
    drive(lambda: reload(dragon).state == S.RUNNING)
    assert services.request_cancel(reload(dragon), bob)
    drive(lambda: reload(dragon).is_final, describe=lambda: reload(dragon).state)

    # A model that fails part-way, in the slot the cancel freed.
    doomed = launch("Will fail")
    drive(
        lambda: reload(knight).is_final and reload(doomed).is_final,
        describe=lambda: f"knight {reload(knight).state}, doomed {reload(doomed).state}",
    )

    knight, castle, dragon, doomed = map(reload, (knight, castle, dragon, doomed))
    assert assert_valid_trail(knight) == ["draft", "submitting", "queued", "running", "succeeded"]
    assert knight.job_id and knight.remote_job_status == "success"
    assert knight.train_started_at and knight.train_ended_at and knight.train_duration
    assert knight.queue_duration is not None
    assert knight.cu_cost > 0 and knight.cu_discount is not None
    assert knight.status_history[-1]["status"] == "success"
    assert list(knight.samples.values_list("epoch_index", "prompt")) == [
        (0, PROMPTS[0]), (0, PROMPTS[1]), (1, PROMPTS[0]), (1, PROMPTS[1]),
    ]  # fmt: skip

    assert assert_valid_trail(castle)[-3:] == ["queued", "cancel_requested", "canceled"]
    assert castle.events.get(to_state=S.CANCEL_REQUESTED).actor == alice
    assert assert_valid_trail(dragon)[-3:] == ["running", "cancel_requested", "canceled"]
    assert dragon.events.get(to_state=S.CANCEL_REQUESTED).actor == bob
    assert dragon.cu_cost is not None  # billed for the part it ran

    assert assert_valid_trail(doomed)[-1] == "failed"
    assert "diverged" in doomed.error_message
    assert doomed.events.last().message == doomed.error_message

    for model in models.values():
        assert launches(model) == 1


def test_a_launch_made_while_the_broker_is_down_goes_out_once_it_is_back(
    scenario, broker, fast_lifecycle, drive, alice, caplog
):
    knight = mirror(scenario.create_model("Knight", images=2))
    with broker_unreachable():
        run = services.launch_run(user=alice, model=knight, parameters={})
    assert "Could not enqueue submit_run" in caplog.text
    assert reload(run).state == S.DRAFT  # accepted and stored, not lost
    assert launches(knight) == 0

    with worker_thread():
        drive(lambda: reload(run).is_final, describe=lambda: reload(run).state)
    run = reload(run)
    assert run.state == S.SUCCEEDED
    assert assert_valid_trail(run)[:3] == ["draft", "submitting", "queued"]
    assert launches(knight) == 1
