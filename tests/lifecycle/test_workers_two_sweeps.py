"""Sweeps in two worker processes at once: the team queue dispatches each run once."""

from __future__ import annotations

import pytest

from tests.factories import mirror
from tests.fixtures.workers import FAST, assert_valid_trail, launches, reload
from training import services
from training.models import ACTIVE_STATES, RunEvent, RunState, Team

S = RunState

pytestmark = [pytest.mark.worker]


def test_sweeps_in_two_worker_processes_never_dispatch_one_run_twice(
    scenario, worker_processes, drive, alice
):
    Team.objects.filter(pk=alice.membership.team_id).update(parallel_trainings=2)
    scenario.set_speed(40)
    models = [mirror(scenario.create_model(f"Knight {i}", images=1)) for i in range(8)]
    for _ in range(2):  # two processes of two: up to four sweeps at the same moment
        worker_processes.start(**FAST)
    runs = [services.launch_run(user=alice, model=model, parameters={}) for model in models]
    on_scenario_at_once = []

    def all_ended() -> bool:
        states = [reload(run).state for run in runs]
        on_scenario_at_once.append(
            sum(state in ACTIVE_STATES - {S.DRAFT, S.WAITING} for state in states)
        )
        return all(state not in ACTIVE_STATES for state in states)

    drive(all_ended, timeout=180, describe=lambda: [reload(run).state for run in runs])

    assert max(on_scenario_at_once) <= 2  # never past the team's limit
    assert any(reload(run).events.filter(to_state=S.WAITING).exists() for run in runs)
    for run, model in zip(runs, models, strict=True):
        run = reload(run)
        assert run.state == S.SUCCEEDED
        assert assert_valid_trail(run)[-3:] == ["queued", "running", "succeeded"]
        assert launches(model, status=200) == 1  # one trigger accepted, none refused
        assert RunEvent.objects.filter(run=run, to_state=S.SUBMITTING).count() == 1
