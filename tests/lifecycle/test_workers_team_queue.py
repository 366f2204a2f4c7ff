"""The team queue with real workers against the simulator: launches past a limit wait, in order.

Every run ends on Scenario with exactly one accepted trigger, read from the simulator's own
request log; a waiting run sends none.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from simulator.models import RequestLog
from tests.factories import mirror
from tests.fixtures.workers import assert_valid_trail, reload
from training import services, team_queue
from training.models import RunEvent, RunState, Team, TrainingRun

S = RunState

pytestmark = [pytest.mark.worker]


def accepted_triggers(run) -> int:
    return RequestLog.objects.filter(
        method="PUT", path__endswith="/train", dry_run=False, model_id=run.model.remote_id,
        status__lt=300,
    ).count()  # fmt: skip


def refused_triggers(status: int = 429) -> int:
    return RequestLog.objects.filter(
        method="PUT", path__endswith="/train", dry_run=False, status=status
    ).count()


def launch_six(scenario, alice):
    models = [mirror(scenario.create_model(f"Model {n}", images=1)) for n in range(6)]
    return [services.launch_run(user=alice, model=model, parameters={}) for model in models]


def positions(runs) -> list[int]:
    waiting = [reload(run) for run in runs if reload(run).state == S.WAITING]
    return sorted(team_queue.ahead_of(run) + 1 for run in waiting)


def dispatched_at(run) -> int:
    """The id of the event that took the run out of the team queue (ids grow with time)."""
    return RunEvent.objects.get(run=run, from_state=S.WAITING, to_state=S.SUBMITTING).pk


def on_scenario(runs) -> int:
    return sum(reload(run).state in {S.QUEUED, S.RUNNING} for run in runs)


def check_all_end_with_one_accepted_trigger(runs) -> None:
    for run in map(reload, runs):
        assert run.state == S.SUCCEEDED, (run.pk, run.state, run.error_message)
        assert accepted_triggers(run) == 1
        assert_valid_trail(run)


def test_with_a_team_limit_of_two_six_launches_start_two_and_queue_four_in_order(
    scenario, celery_worker_thread, fast_lifecycle, drive, alice, bob, client
):
    Team.objects.filter(pk=alice.membership.team_id).update(parallel_trainings=2)
    scenario.set_speed(25)  # about 6 s a training: time to look at the queue
    runs = launch_six(scenario, alice)

    drive(
        lambda: on_scenario(runs) == 2 and positions(runs) == [1, 2, 3, 4],
        describe=lambda: [reload(run).state for run in runs],
    )
    assert not any(reload(run).is_final for run in runs)
    assert refused_triggers() == 0  # a waiting run sends no trigger
    waiting = sorted(
        (reload(run) for run in runs if reload(run).state == S.WAITING), key=team_queue.ahead_of
    )
    page = client_as(client, alice).get(reverse("run_detail", args=[waiting[1].pk]))
    assert "Waiting for a free slot: 1 ahead" in page.content.decode()

    fourth = waiting[3]
    response = client_as(client, bob).post(
        reverse("run_queue", args=[fourth.pk]), {"action": "top"}
    )
    assert response.status_code == 302
    assert team_queue.ahead_of(reload(fourth)) == 0
    assert RunEvent.objects.filter(run=fourth, actor=bob, message__contains="top").exists()

    drive(lambda: all(reload(run).is_final for run in runs), timeout=120)
    check_all_end_with_one_accepted_trigger(runs)
    first_out = min(waiting, key=dispatched_at)
    assert first_out.pk == fourth.pk


def test_a_plan_cap_of_two_teaches_the_team_its_limit_and_the_rest_wait(
    scenario, celery_worker_thread, fast_lifecycle, drive, alice, settings
):
    settings.SIMULATOR_PARALLEL_TRAININGS = 2
    settings.LAUNCH_LIMIT_PROBE_SECONDS = 600  # no probe during the test
    scenario.set_speed(25)
    runs = launch_six(scenario, alice)

    drive(
        lambda: on_scenario(runs) == 2 and positions(runs) == [1, 2, 3, 4],
        describe=lambda: [reload(run).state for run in runs],
    )
    assert Team.objects.get(pk=alice.membership.team_id).learned_limit == 2
    refused_at_first = refused_triggers()
    assert 1 <= refused_at_first <= 4  # launches sent before Scenario's answer taught the cap

    drive(lambda: all(reload(run).is_final for run in runs), timeout=120)
    check_all_end_with_one_accepted_trigger(runs)
    assert refused_triggers() == refused_at_first  # after the lesson, nothing is sent blindly


def test_a_second_launch_of_a_training_model_waits_for_the_first_to_end(
    scenario, celery_worker_thread, fast_lifecycle, drive, alice
):
    scenario.set_speed(25)
    model = mirror(scenario.create_model("Busy", images=1))
    first = services.launch_run(user=alice, model=model, parameters={})
    drive(lambda: reload(first).state in {S.QUEUED, S.RUNNING})
    second = services.launch_run(user=alice, model=model, parameters={})
    drive(lambda: reload(second).state == S.WAITING)
    assert "Busy to finish its current training" in reload(second).waiting_reason

    drive(lambda: reload(second).is_final, timeout=120)
    first, second = reload(first), reload(second)
    assert first.state == second.state == S.SUCCEEDED
    assert second.train_started_at >= first.train_ended_at
    assert accepted_triggers(first) == 2  # one per run: both of the same model
    assert refused_triggers(400) == refused_triggers(409) == 0
    assert "waiting" in assert_valid_trail(second)


def client_as(client, user):
    client.force_login(user)
    return client


def test_the_queue_never_holds_a_run_of_another_team(alice, charlie, db):
    # A guard for the tests above: positions count only the run's own team.
    from tests.factories import make_bare_model, make_run

    model = make_bare_model(remote_id="m-1")
    mine = make_run(alice, model, state=S.WAITING, queue_order=2)
    make_run(charlie, model, state=S.WAITING, queue_order=1)
    assert team_queue.ahead_of(mine) == 0
    assert TrainingRun.objects.filter(state=S.WAITING).count() == 2
