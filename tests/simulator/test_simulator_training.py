"""A training driven through the client against the running simulator, over real HTTP."""

from __future__ import annotations

import time
from xml.etree import ElementTree

import pytest
import requests

from simulator.models import RequestLog, SimJob
from training.scenario import Model

SVG = "{http://www.w3.org/2000/svg}"
POLL_SECONDS = 0.05
MAX_POLLS = 600  # 30 s at most, whatever the machine


def poll(client, model_id, until, *, seen=None):
    """Poll the model until `until(model)` holds; remember every answer in `seen`."""
    for _ in range(MAX_POLLS):
        model = client.get_model(model_id)
        if seen is not None:
            seen.append(model)
        if until(model):
            return model
        time.sleep(POLL_SECONDS)
    pytest.fail(f"model {model_id} never got there; last status {model.status}")


def decode_sample(url: str) -> ElementTree.Element:
    """Fetch a sample image over HTTP (no auth, like a browser) and parse the SVG."""
    response = requests.get(url, timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/svg+xml"
    root = ElementTree.fromstring(response.content)
    assert root.tag == f"{SVG}svg"
    return root


def stages(seen: list[Model]) -> list[str]:
    result = []
    for model in seen:
        stage = model.training_progress.stage if model.training_progress else model.status
        if not result or result[-1] != stage:
            result.append(stage)
    return result


PROMPTS = ["a knight in silver armour", "a castle at dusk"]


def test_a_training_goes_from_quote_to_trained_with_samples_and_billing(scenario):
    scenario.set_gpu_slots(1)
    scenario.set_speed(60)
    client = scenario.client()
    first = scenario.create_model("Occupier one", images=1)
    second = scenario.create_model("Occupier two", images=1)
    knight = scenario.create_model("Knight", images=2)
    parameters = {"nbEpochs": 2, "samplePrompts": PROMPTS}

    # Dry run: a quote answered with 269, and nothing starts.
    quote = client.quote(knight.id, parameters)
    assert quote.cost > 0
    assert client.get_model(knight.id).status == "new"
    assert not SimJob.objects.filter(model=knight).exists()
    dry = RequestLog.objects.get(model_id=knight.id, method="PUT", dry_run=True)
    assert dry.status == 269

    # Two trainings ahead of ours take the only GPU slot and the first place in the queue.
    client.trigger(first.id, {})
    client.trigger(second.id, {})
    launch = client.trigger(knight.id, parameters)
    assert launch.job.status == "pending"
    assert launch.model.status == "training"

    seen: list[Model] = []
    trained = poll(client, knight.id, lambda m: m.status != "training", seen=seen)

    assert stages(seen)[:4] == ["pending", "queued-for-train", "starting-train", "running-train"]
    positions = [m.training_progress.position for m in seen if _stage(m) == "queued-for-train"]
    assert positions[0] >= 1 and positions[-1] == 0
    assert positions == sorted(positions, reverse=True), "the queue position only falls"
    running = [m.training_progress for m in seen if _stage(m) == "running-train"]
    progress = [p.progress for p in running]
    assert progress == sorted(progress) and progress[-1] > progress[0], "progress rises"
    remaining = [p.remaining_ms for p in running]
    assert remaining == sorted(remaining, reverse=True), "remaining time shrinks"
    epochs_seen = [len(m.epochs) for m in seen]
    assert epochs_seen == sorted(epochs_seen), "epochs appear one by one"

    assert trained.status == "trained"
    assert [e.epoch for e in trained.epochs] == ["000001", "000002"]
    samples = {}
    for epoch in trained.epochs:
        assert len(epoch.assets) == len(PROMPTS)
        for index, asset in enumerate(epoch.assets):
            root = decode_sample(asset.url)
            assert root.get("data-epoch") == epoch.epoch
            assert PROMPTS[index] in root.find(f"{SVG}title").text
            samples[(epoch.epoch, index)] = root.find(f"{SVG}rect").get("fill")
    assert len(set(samples.values())) == len(samples), "every epoch and prompt looks different"

    stats = trained.training_stats
    assert stats.started_at < stats.ended_at
    assert stats.queue_duration > 0 and stats.train_duration > 0
    job = client.get_job(launch.job.id)
    assert job.status == "success"
    assert [c.status for c in job.status_history][-1] == "success"
    assert job.billing.cu_cost == quote.cost
    assert job.billing.cu_discount == quote.discount


def test_a_second_training_is_canceled_mid_run(scenario):
    scenario.set_speed(60)
    client = scenario.client()
    model = scenario.create_model("Dragon", images=3)
    launch = client.trigger(model.id, {"nbEpochs": 3, "samplePrompts": ["a dragon"]})

    running = poll(
        client, model.id, lambda m: _stage(m) == "running-train" and m.training_progress.progress
    )
    assert running.training_progress.progress < 1
    canceled = client.cancel_training(model.id)

    assert canceled.status == "training-canceled"
    assert canceled.training_progress is None
    job = client.get_job(launch.job.id)
    assert job.status == "canceled"
    assert 0 < job.progress < 1
    assert job.billing.cu_cost < launch.quote.cost, "a canceled run pays only what it used"
    # It stays canceled: the clock moving on changes nothing.
    time.sleep(0.2)
    assert client.get_model(model.id).status == "training-canceled"


def test_a_model_named_fail_fails_part_way_with_an_error(scenario):
    scenario.set_speed(200)
    client = scenario.client()
    model = scenario.create_model("Will fail", images=1)
    launch = client.trigger(model.id, {"nbEpochs": 4, "samplePrompts": ["a wizard"]})

    failed = poll(client, model.id, lambda m: m.status != "training")

    assert failed.status == "failed"
    assert 0 < len(failed.epochs) < 4, "some epochs were done before it failed"
    job = client.get_job(launch.job.id)
    assert job.status == "failure"
    assert "diverged" in job.error
    assert job.billing.cu_cost == 0


def _stage(model: Model) -> str | None:
    return model.training_progress.stage if model.training_progress else None
