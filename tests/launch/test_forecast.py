"""The launch forecast: from the team's own history, checked against what really happened."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.factories import make_bare_model, make_run, mirror
from tests.fixtures.workers import reload
from training import forecast, services
from training.models import RunState, Team

S = RunState


def seed_history(
    user, *, images: int, trains: list[float], queue: float = 30.0, type_="flux.1-lora"
):
    model = make_bare_model(model_type=type_, images=images, remote_id=f"seed-{images}-{type_}")
    for seconds in trains:
        make_run(
            user, model, state=S.SUCCEEDED, queue_duration=queue, train_duration=seconds,
            finished_at=timezone.now(),
        )  # fmt: skip
    return model


def test_it_forecasts_from_the_p50_and_p90_of_runs_like_the_new_one(alice, db):
    seed_history(alice, images=6, trains=[60.0 * n for n in range(1, 11)])  # 1 to 10 minutes
    seed_history(alice, images=60, trains=[9999.0] * 10)  # another dataset size: left out
    seed_history(alice, images=6, trains=[9999.0] * 10, type_="sdxl-lora")  # another type
    new = make_bare_model(images=5, remote_id="new")
    now = timezone.now()
    result = forecast.for_launch(alice.membership.team, new, now)
    assert result.runs == 10 and not result.thin
    assert result.train == (300.0, 540.0)
    assert result.wait == (30.0, 30.0)
    assert result.finish("p50") == now + timedelta(seconds=330)
    assert result.finish("p90") == now + timedelta(seconds=570)
    assert "Likely done by" in result.words and "9 in 10 by" in result.words


def test_runs_ahead_in_the_team_queue_add_a_training_per_round_of_slots(alice, db):
    new = seed_history(alice, images=5, trains=[100.0] * 5)
    Team.objects.filter(pk=alice.membership.team_id).update(parallel_trainings=2)
    for _ in range(2):
        make_run(alice, new, state=S.RUNNING)
    for n in range(3):
        make_run(alice, new, state=S.WAITING, queue_order=n)
    now = timezone.now()
    result = forecast.for_launch(Team.objects.get(pk=alice.membership.team_id), new, now)
    assert result.ahead == 5
    # Two running, three waiting, two at a time: the new run goes out in the third round.
    assert result.wait == (30.0 + 2 * 100.0, 30.0 + 2 * 100.0)


def test_with_thin_history_it_says_so_instead_of_guessing(alice, client, db):
    model = seed_history(alice, images=5, trains=[100.0, 120.0])
    result = forecast.for_launch(alice.membership.team, model)
    assert result.thin and result.finish("p50") is None
    assert (
        result.words == "No forecast yet: the team has 2 finished runs like this one, 5 are needed."
    )
    run = services.launch_run(user=alice, model=model, parameters={})
    assert run.forecast_finish_p50 is None


@pytest.mark.worker
def test_the_forecast_on_the_teams_history_matches_what_happens(
    scenario, celery_worker_thread, fast_lifecycle, drive, alice, client
):
    Team.objects.filter(pk=alice.membership.team_id).update(parallel_trainings=1)
    scenario.set_speed(25)  # about 6 s a training

    def launch(name):
        model = mirror(scenario.create_model(name, images=1))
        return services.launch_run(user=alice, model=model, parameters={})

    history = [launch(f"History {n}") for n in range(5)]  # back to back through the queue
    drive(lambda: all(reload(run).is_final for run in history), timeout=120)
    assert all(reload(run).state == S.SUCCEEDED for run in history)

    client.force_login(alice)
    form = client.get(reverse("launch"), {"model": history[0].model.remote_id}).content.decode()
    assert "Likely done by" in form

    first, second = launch("Forecast A"), launch("Forecast B")  # B waits for A
    for run in (first, second):
        assert run.forecast_finish_p50 is not None and run.forecast_finish_p90 is not None
    drive(lambda: reload(first).is_final and reload(second).is_final, timeout=120)
    # Scenario's durations leave out the dashboard's own steps (seeing the end, sending the
    # next run): under a second a round with these fast polls.
    slack = timedelta(seconds=3)
    for run in map(reload, (first, second)):
        assert run.state == S.SUCCEEDED
        assert run.forecast_finish_p50 - slack <= run.finished_at <= run.forecast_finish_p90 + slack
    first, second = reload(first), reload(second)
    # B's forecast counted the run ahead of it: one training later than A's.
    gap = (second.forecast_finish_p50 - first.forecast_finish_p50).total_seconds()
    assert gap > 0.8 * (first.train_duration or 0)

    page = client.get(reverse("run_detail", args=[second.pk])).content.decode()
    assert "Forecast at launch: likely done by" in page and "the likely time" in page
