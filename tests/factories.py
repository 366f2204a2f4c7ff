"""Test data written straight to the database: models, runs, their samples and events.

- `make_model`: a dashboard model, trainable with 12 images unless told otherwise.
- `mirror`: the dashboard's copy of a simulated model, as sync_models makes it.
- `make_run`: a run of a given model in any state, nothing more than what is given.
- `make_sent_run`: a run as the worker would have left it once sent (job, parameters).
- `make_past_run`: a run launched on a given day, with its durations and costs, for history.

A run made final here is also counted in history's rollups, as the final transition counts it.
"""

from __future__ import annotations

import datetime as dt
from itertools import count

from django.utils import timezone

from training import rollups, stamps
from training.models import (
    FINAL_STATES,
    EpochSample,
    EventSource,
    RunEvent,
    RunState,
    ScenarioModel,
    TrainingRun,
)

FLUX = "flux.1-lora"
IMAGES = [
    {"id": f"asset_img{i}", "name": f"knight-{i}.png", "url": f"https://example.test/{i}.png"}
    for i in range(3)
]
_serial = count(1)


def at(day: str, time: str = "10:00") -> dt.datetime:
    """Return the UTC moment of `day` (ISO date) at `time`."""
    return dt.datetime.fromisoformat(f"{day}T{time}").replace(tzinfo=dt.UTC)


def make_model(model_type=FLUX, images=12, remote_id=None, **fields) -> ScenarioModel:
    """Create a trained model of `model_type` with `images` training images.

    Its remote id says its type and image count unless given (model_flux_1-lora_12).
    """
    remote_id = remote_id or f"model_{model_type.replace('.', '_')}_{images}"
    return ScenarioModel.objects.create(
        remote_id=remote_id,
        name=fields.pop("name", f"Knight {model_type}"),
        type=model_type,
        status=fields.pop("status", "trained"),
        training_images_number=images,
        training_images=fields.pop("training_images", IMAGES if images else []),
        **fields,
    )


def make_bare_model(
    name="", model_type=FLUX, *, images=0, remote_id=None, **fields
) -> ScenarioModel:
    """Create a model with only what is given: no status, no list of training images."""
    remote_id = remote_id or f"model_{next(_serial)}"
    fields = {"status": "", "training_images": []} | fields
    return make_model(model_type, images, remote_id, name=name, **fields)


def mirror(sim_model, team=None) -> ScenarioModel:
    """Create the dashboard's copy of a simulated model, as sync_models makes it."""
    return ScenarioModel.objects.create(
        remote_id=sim_model.id,
        name=sim_model.name,
        type=sim_model.type,
        training_images_number=sim_model.images.count(),
        team=team,
    )


def make_run(user, model, state=RunState.DRAFT, **fields) -> TrainingRun:
    """Create a run in any state, made directly (as if the lifecycle had brought it there)."""
    run = _create_run(user, model, state, **fields)
    if state in FINAL_STATES:
        rollups.add_run(run.pk)
    return run


def _create_run(user, model, state, **fields) -> TrainingRun:
    return TrainingRun.objects.create(
        created_by=user,
        team=fields.pop("team", None) or user.membership.team,
        model=model,
        model_type=fields.pop("model_type", model.type),
        state=state,
        **fields,
    )


def make_sent_run(user, state=RunState.RUNNING, *, name=None, **fields) -> TrainingRun:
    """Create a run as the worker would have left it: sent, with a job and parameters."""
    number = next(_serial)
    model = fields.pop("model", None) or make_bare_model(
        name or f"Flux portrait v{number}", images=12, remote_id=f"model-{number}"
    )
    sent = {
        "model_type": FLUX,
        "parameters": {"nbEpochs": 4, "samplePrompts": ["a portrait", "a castle"]},
        "job_id": f"job-{number}",
        "submitted_at": timezone.now() - dt.timedelta(minutes=3),
    }
    if state in FINAL_STATES:
        sent["finished_at"] = timezone.now()
    return make_run(user, model, state, **(sent | fields))


def make_past_run(
    user,
    name: str = "Model",
    *,
    model_type: str = FLUX,
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
    """Create a run launched at `launched`, finished `wall` seconds later if final."""
    model = model or make_bare_model(name, model_type)
    run = _create_run(
        user, model, state, team=team, model_type=model_type, parameters=parameters or {},
        queue_duration=queue, train_duration=train, quote_cu_cost=quote, cu_cost=cost,
        cu_discount=discount,
    )  # fmt: skip
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
    if state in FINAL_STATES:
        rollups.add_run(run.pk)  # once launched on its day
    add_samples(run, epochs, prompts)
    run.refresh_from_db()
    return run


def add_samples(run: TrainingRun, epochs: int = 2, prompts: int | tuple[str, ...] = 2) -> None:
    """Add one sample per epoch and prompt; `prompts` is their texts or how many."""
    texts = [f"prompt {p + 1}" for p in range(prompts)] if isinstance(prompts, int) else prompts
    EpochSample.objects.bulk_create(
        EpochSample(
            run=run,
            epoch=f"epoch-{run.pk}-{epoch}",
            epoch_index=epoch,
            prompt_index=prompt,
            prompt=text,
            asset_id=f"asset-{run.pk}-{epoch}-{prompt}",
            url=f"https://cdn.example.com/{run.pk}/{epoch}/{prompt}.png",
        )
        for epoch in range(epochs)
        for prompt, text in enumerate(texts)
    )


def add_event(run, to_state, actor=None, source=EventSource.WORKER, from_state="") -> RunEvent:
    """Add an audit line to the run's trail."""
    return RunEvent.objects.create(
        run=run, from_state=from_state, to_state=to_state, source=source, actor=actor
    )


def finish(run, state=RunState.SUCCEEDED, **fields) -> None:
    """Move a run to a final state the way services do: state, finished_at and updated_at,
    and its team's stamp (at once: a test's transaction never commits)."""
    now = timezone.now()
    rollups.remove_run(run.pk)  # if it was final already, it is counted again as it ends now
    TrainingRun.objects.filter(pk=run.pk).update(
        state=state, finished_at=now, updated_at=now, **fields
    )
    rollups.add_run(run.pk)
    stamps.write([run.team_id])


def seed_known_runs(alice, dave, bob, charlie) -> dict[str, TrainingRun]:
    """Create seven runs with figures worked out by hand in the tests; six in team A, one in B."""
    runs = {
        "castle": make_past_run(
            alice, "Castle LoRA", state="succeeded", launched=at("2025-01-06"),
            queue=60, train=600, quote=10, cost=9, discount=1, epochs=3, wall=700,
        ),
        "castle2": make_past_run(
            alice, "Castle v2", state="failed", launched=at("2025-01-20"),
            queue=120, train=300, quote=12, cost=4, discount=0, epochs=1, wall=450,
        ),
        "forest": make_past_run(
            dave, "Forest", model_type="sd-xl-lora", state="succeeded", launched=at("2025-02-03"),
            queue=30, train=1200, quote=20, cost=20, discount=2, epochs=5, wall=1300,
        ),
        "voice": make_past_run(
            dave, "Robot voice", model_type="elevenlabs-voice", state="canceled",
            launched=at("2025-02-10"), queue=240, quote=5, wall=260,
        ),
        "night": make_past_run(
            bob, "Forest night", model_type="sd-xl-lora", state="succeeded",
            launched=at("2025-03-03"), queue=90, train=900, quote=15, cost=14, epochs=4, wall=1000,
        ),
        "desert": make_past_run(
            charlie, "Desert", state="succeeded", launched=at("2025-02-05"),
            queue=10, train=100, quote=3, cost=3, epochs=2, wall=150,
        ),
        "castle3": make_past_run(
            alice, "Castle v3", state="running", launched=at("2025-03-10"), queue=45, quote=11,
        ),
    }  # fmt: skip
    # Forecasts made at launch: castle2 ended 5 min after its likely time, forest 10 min before.
    for key, miss in (("castle2", 300), ("forest", -600), ("night", 10)):
        run = runs[key]
        run.forecast_finish_p50 = run.finished_at - dt.timedelta(seconds=miss)
        run.forecast_finish_p90 = run.forecast_finish_p50 + dt.timedelta(minutes=8)
        run.save(update_fields=["forecast_finish_p50", "forecast_finish_p90"])
    return runs
