"""When a launch will likely be done, from the team's own history of runs like it.

"Like it": the same model type and a dataset of about the same size (half to twice the
images), finished successfully with Scenario's queue and training durations known. The wait
is Scenario's queue time plus one training time for each round of the team's slots that the
runs before it (on Scenario, being sent, waiting) fill. p50 is "likely", p90 is "9 in 10".
With fewer than FORECAST_MIN_RUNS such runs the forecast says history is too thin rather
than guess.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from training.display import about_minutes, clock
from training.models import RunState, ScenarioModel, Team, TrainingRun

HISTORY_RUNS = 50


def percentile(values: list[float], share: float) -> float:
    """Return the nearest-rank percentile of the values (share 0.5 is the median)."""
    ordered = sorted(values)
    rank = max(math.ceil(share * len(ordered)), 1)
    return ordered[rank - 1]


@dataclass(frozen=True)
class Forecast:
    runs: int  # finished runs it comes from
    ahead: int  # the team's runs that go before it: on Scenario, being sent or waiting
    wait: tuple[float, float] = (0.0, 0.0)  # p50, p90 seconds
    train: tuple[float, float] = (0.0, 0.0)
    made_at: datetime | None = None

    @property
    def thin(self) -> bool:
        return self.runs < settings.FORECAST_MIN_RUNS

    def finish(self, share: str) -> datetime | None:
        if self.thin:
            return None
        index = 0 if share == "p50" else 1
        return self.made_at + timedelta(seconds=self.wait[index] + self.train[index])

    @property
    def words(self) -> str:
        """Say the forecast ("Likely done by 16:40; 9 in 10 by 17:05 …"), or why there is none."""
        if self.thin:
            return (
                f"No forecast yet: the team has {self.runs} finished run"
                f"{'' if self.runs == 1 else 's'} like this one, "
                f"{settings.FORECAST_MIN_RUNS} are needed."
            )
        likely, most = (clock(self.finish(s), seconds=False) for s in ("p50", "p90"))
        return (
            f"Likely done by {likely}; 9 in 10 by {most} "
            f"(wait about {about_minutes(self.wait[0])}, "
            f"training about {about_minutes(self.train[0])}; "
            f"from {self.runs} finished runs like it)"
        )


def similar_runs(team: Team, model_type: str, images: int):
    """Find the team's successful runs of this model type with about as many images."""
    runs = TrainingRun.objects.filter(
        team=team,
        model_type=model_type,
        state=RunState.SUCCEEDED,
        queue_duration__isnull=False,
        train_duration__isnull=False,
    )
    if images:
        runs = runs.filter(
            model__training_images_number__gte=math.floor(images / 2),
            model__training_images_number__lte=images * 2,
        )
    return runs.order_by("-finished_at")[:HISTORY_RUNS]


def for_launch(team: Team, model: ScenarioModel, now: datetime | None = None) -> Forecast:
    """Forecast a run of this model launched now, behind the team's waiting runs."""
    from training import team_queue

    now = now or timezone.now()
    team = Team.objects.get(pk=team.pk)  # its limits as they are now
    durations = list(
        similar_runs(team, model.type, model.training_images_number).values_list(
            "queue_duration", "train_duration"
        )
    )
    before = (RunState.DRAFT, RunState.WAITING, *team_queue.SLOT_STATES)
    ahead = TrainingRun.objects.filter(team=team, state__in=before).count()
    return _forecast(team, durations, ahead, now)


def for_waiting(run: TrainingRun, now: datetime | None = None) -> Forecast:
    """Forecast a run waiting in the team queue, from where it stands now."""
    from training import team_queue

    durations = list(
        similar_runs(run.team, run.model_type, run.model.training_images_number).values_list(
            "queue_duration", "train_duration"
        )
    )
    ahead = team_queue.ahead_of(run) + team_queue.busy_slots(run.team_id)
    return _forecast(run.team, durations, ahead, now or timezone.now())


def _forecast(team: Team, durations: list, ahead: int, now: datetime) -> Forecast:
    from training import team_queue

    if len(durations) < settings.FORECAST_MIN_RUNS:
        return Forecast(runs=len(durations), ahead=ahead, made_at=now)
    queued = [q for q, _ in durations]
    trained = [t for _, t in durations]
    train = (percentile(trained, 0.5), percentile(trained, 0.9))
    slots = team_queue.slot_limit(team, now)
    # The runs ahead (on Scenario, sent or waiting) take the slots `slots` at a time; each
    # round before this run's is about one training long.
    rounds = max(math.ceil((ahead + 1 - slots) / slots), 0) if slots else 0
    wait = tuple(
        percentile(queued, share) + rounds * t for share, t in zip((0.5, 0.9), train, strict=True)
    )
    return Forecast(runs=len(durations), ahead=ahead, wait=wait, train=train, made_at=now)


def fields_at_launch(team: Team, model: ScenarioModel) -> dict:
    """Return what a new run stores of its forecast, to be compared with what happened."""
    forecast = for_launch(team, model)
    return {
        "forecast_finish_p50": forecast.finish("p50"),
        "forecast_finish_p90": forecast.finish("p90"),
    }


def error_words(run: TrainingRun) -> str:
    """Compare forecast and actual for a finished run: "done 4 min after the likely time"."""
    if run.forecast_finish_p50 is None or run.finished_at is None:
        return ""
    late = (run.finished_at - run.forecast_finish_p50).total_seconds()
    within = run.forecast_finish_p90 is not None and run.finished_at <= run.forecast_finish_p90
    side = "after" if late > 0 else "before"
    return (
        f"done {about_minutes(abs(late))} {side} the likely time"
        f"{', within the 9 in 10 time' if within else ', past the 9 in 10 time'}"
    )
