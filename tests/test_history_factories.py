"""Runs with known figures for the history, compare and budget tests (no tests in here)."""

from __future__ import annotations

import datetime as dt
from itertools import count

from training.models import FINAL_STATES, EpochSample, RunState, ScenarioModel, TrainingRun

_serial = count(1)
UTC = dt.UTC


def at(day: str, time: str = "10:00") -> dt.datetime:
    return dt.datetime.fromisoformat(f"{day}T{time}").replace(tzinfo=UTC)


def make_model(name: str, model_type: str = "flux.1-lora", team=None) -> ScenarioModel:
    return ScenarioModel.objects.create(
        remote_id=f"model_{next(_serial)}", name=name, type=model_type, team=team
    )


def make_run(
    user,
    name: str = "Model",
    *,
    model_type: str = "flux.1-lora",
    state: str = RunState.SUCCEEDED,
    launched: dt.datetime | None = None,
    queue: float | None = None,
    train: float | None = None,
    quote: float | None = None,
    cost: float | None = None,
    discount: float | None = None,
    epochs: int = 0,
    prompts: tuple[str, ...] = ("a castle at dawn",),
    parameters: dict | None = None,
    wall: float | None = None,
    team=None,
    model=None,
) -> TrainingRun:
    """A run of `user`'s team launched at `launched`, finished `wall` seconds later if final."""
    team = team or user.membership.team
    model = model or make_model(name, model_type)
    run = TrainingRun.objects.create(
        created_by=user,
        team=team,
        model=model,
        model_type=model_type,
        state=state,
        parameters=parameters or {},
        queue_duration=queue,
        train_duration=train,
        quote_cu_cost=quote,
        cu_cost=cost,
        cu_discount=discount,
    )
    launched = launched or at("2025-01-01")
    finished = None
    if state in FINAL_STATES:
        finished = launched + dt.timedelta(
            seconds=wall if wall is not None else (queue or 0) + (train or 0) + 30
        )
    started = ended = None
    if queue is not None and train is not None:
        started = launched + dt.timedelta(seconds=queue + 10)
        ended = started + dt.timedelta(seconds=train)
    # created_at is auto_now_add: the launch time is written after the insert.
    TrainingRun.objects.filter(pk=run.pk).update(
        created_at=launched, finished_at=finished, train_started_at=started, train_ended_at=ended
    )
    add_samples(run, epochs, prompts)
    run.refresh_from_db()
    return run


def add_samples(run: TrainingRun, epochs: int, prompts: tuple[str, ...]) -> None:
    EpochSample.objects.bulk_create(
        EpochSample(
            run=run,
            epoch=f"epoch_{run.pk}_{e}",
            epoch_index=e,
            prompt_index=p,
            prompt=prompt,
            asset_id=f"asset_{run.pk}_{e}_{p}",
            url=f"https://cdn.example.test/{run.pk}/{e}/{p}.png",
        )
        for e in range(epochs)
        for p, prompt in enumerate(prompts)
    )


def seed_known_runs(alice, dave, bob, charlie) -> dict[str, TrainingRun]:
    """Seven runs with figures worked out by hand in the tests; six in team A, one in B."""
    return {
        "castle": make_run(
            alice, "Castle LoRA", state="succeeded", launched=at("2025-01-06"),
            queue=60, train=600, quote=10, cost=9, discount=1, epochs=3, wall=700,
        ),
        "castle2": make_run(
            alice, "Castle v2", state="failed", launched=at("2025-01-20"),
            queue=120, train=300, quote=12, cost=4, discount=0, epochs=1, wall=450,
        ),
        "forest": make_run(
            dave, "Forest", model_type="sd-xl-lora", state="succeeded", launched=at("2025-02-03"),
            queue=30, train=1200, quote=20, cost=20, discount=2, epochs=5, wall=1300,
        ),
        "voice": make_run(
            dave, "Robot voice", model_type="elevenlabs-voice", state="canceled",
            launched=at("2025-02-10"), queue=240, quote=5, wall=260,
        ),
        "night": make_run(
            bob, "Forest night", model_type="sd-xl-lora", state="succeeded",
            launched=at("2025-03-03"), queue=90, train=900, quote=15, cost=14, epochs=4, wall=1000,
        ),
        "desert": make_run(
            charlie, "Desert", state="succeeded", launched=at("2025-02-05"),
            queue=10, train=100, quote=3, cost=3, epochs=2, wall=150,
        ),
        "castle3": make_run(
            alice, "Castle v3", state="running", launched=at("2025-03-10"), queue=45, quote=11,
        ),
    }  # fmt: skip
