"""Parsing Scenario's answers into the client's small typed objects, and reading error bodies."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests

from training.scenario import (
    AlreadyTraining,
    AuthError,
    BadRequest,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    ResponseShapeError,
    ScenarioClient,
    Unavailable,
    error_for,
    parse_job,
    parse_model,
    parse_quote,
)

MODEL = {
    "id": "model_abc",
    "capabilities": ["txt2img"],
    "collectionIds": [],
    "createdAt": "2025-01-02T03:04:05.678Z",
    "custom": True,
    "exampleAssetIds": [],
    "privacy": "private",
    "source": "scenario",
    "status": "training",
    "tags": [],
    "trainingImagesNumber": 12,
    "type": "flux.1-lora",
    "updatedAt": "2025-01-02T03:05:00.000Z",
    "name": "Knight",
    "parameters": {"nbEpochs": 2, "samplePrompts": ["a knight"]},
    "trainingProgress": {
        "stage": "running-train",
        "updatedAt": 1735787100000,
        "progress": 0.5,
        "remainingTimeMs": 60000,
        "startedAt": 1735787000000,
    },
    "epochs": [{"epoch": "000001", "assets": [{"assetId": "asset_1", "url": "https://cdn/1.png"}]}],
    "thumbnail": {"assetId": "asset_1", "url": "https://cdn/1.png"},
    "trainingImages": [
        {
            "id": "asset_t",
            "automaticCaptioning": "",
            "createdAt": "2025-01-02T03:04:05.678Z",
            "description": "",
            "downloadUrl": "https://cdn/t.png",
            "name": "t.png",
        }
    ],
    "somethingNew": {"nested": True},
}
JOB = {
    "createdAt": "2025-01-02T03:04:05.678Z",
    "jobId": "job_xyz",
    "jobType": "flux-model-training",
    "metadata": {"error": "out of memory", "assetIds": ["asset_1"]},
    "progress": 0.6,
    "status": "failure",
    "statusHistory": [
        {"date": "2025-01-02T03:04:05.678Z", "status": "queued"},
        {"date": "2025-01-02T03:09:05.000Z", "status": "failure"},
    ],
    "updatedAt": "2025-01-02T03:09:05.000Z",
    "billing": {"cuCost": 0, "cuDiscount": 0},
}


def test_it_parses_a_model_and_keeps_the_raw_json():
    model = parse_model(MODEL)

    assert (model.id, model.name, model.type, model.status) == (
        "model_abc",
        "Knight",
        "flux.1-lora",
        "training",
    )
    assert model.training_images_number == 12
    progress = model.training_progress
    assert progress.stage == "running-train" and progress.progress == 0.5
    assert progress.remaining_ms == 60000 and progress.position is None
    assert progress.started_at == datetime.fromtimestamp(1735787000, tz=UTC)
    assert model.epochs[0].epoch == "000001"
    assert model.epochs[0].assets[0].url == "https://cdn/1.png"
    assert model.thumbnail_url == "https://cdn/1.png"
    assert model.training_images[0].name == "t.png"
    assert model.parameters["nbEpochs"] == 2
    assert model.raw["somethingNew"] == {"nested": True}, "unknown fields are kept, not used"
    assert model.job_id == "" and model.error == ""


def test_a_model_with_only_its_required_fields_parses():
    minimal = {k: MODEL[k] for k in ("id", "type", "status", "trainingImagesNumber")}
    model = parse_model(minimal)
    assert model.training_progress is None and model.training_stats is None
    assert model.epochs == [] and model.parameters == {} and model.name == ""


def test_training_stats_are_read_as_dates_and_seconds():
    trained = dict(MODEL, status="trained", trainingProgress=None)
    trained["trainingStats"] = {
        "startedAt": "2025-01-02T03:10:00.000Z",
        "endedAt": "2025-01-02T03:40:00.000Z",
        "queueDuration": 12.5,
        "trainDuration": 1800,
    }
    stats = parse_model(trained).training_stats
    assert stats.ended_at - stats.started_at == timedelta(minutes=30)
    assert stats.queue_duration == 12.5 and stats.train_duration == 1800.0


@pytest.mark.parametrize(
    ("field", "value"),
    [("id", 42), ("status", None), ("trainingImagesNumber", "12"), ("type", ["flux"])],
)
def test_a_wrong_type_on_a_required_model_field_is_a_clear_error(field, value):
    broken = dict(MODEL, **{field: value})
    with pytest.raises(ResponseShapeError, match=field):
        parse_model(broken)


def test_a_mistyped_optional_field_is_ignored():
    odd = dict(MODEL, parameters="not an object", thumbnail=3)
    model = parse_model(odd)
    assert model.parameters == {} and model.thumbnail_url == ""


def test_it_parses_a_job_with_history_billing_and_error():
    job = parse_job(JOB)
    assert (job.id, job.type, job.status, job.progress) == (
        "job_xyz",
        "flux-model-training",
        "failure",
        0.6,
    )
    assert [c.status for c in job.status_history] == ["queued", "failure"]
    assert job.status_history[0].date == datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    assert job.billing.cu_cost == 0 and job.error == "out of memory"


def test_a_job_without_billing_is_fine_but_one_without_history_is_not():
    assert parse_job({k: v for k, v in JOB.items() if k != "billing"}).billing is None
    with pytest.raises(ResponseShapeError, match="statusHistory"):
        parse_job({k: v for k, v in JOB.items() if k != "statusHistory"})
    bad_date = copy.deepcopy(JOB)
    bad_date["statusHistory"][0]["date"] = "yesterday"
    with pytest.raises(ResponseShapeError, match="date"):
        parse_job(bad_date)


def test_a_quote_needs_a_cost_and_defaults_the_discount():
    assert parse_quote({"creativeUnitsCost": 120}).discount == 0
    with pytest.raises(ResponseShapeError, match="creativeUnitsCost"):
        parse_quote({"creativeUnitsCost": "120"})


# --- error bodies -------------------------------------------------------------------------------


def answer(status, body=b"", content_type="application/json", headers=None):
    """A requests.Response as it would come off the wire."""
    response = requests.Response()
    response.status_code = status
    response._content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response.headers["Content-Type"] = content_type
    response.headers.update(headers or {})
    response.reason = requests.status_codes._codes.get(status, ("",))[0].replace("_", " ")
    response.encoding = "utf-8"
    return response


@pytest.mark.parametrize(
    ("status", "body", "kind", "message"),
    [
        (400, {"message": "rank: too big"}, BadRequest, "rank: too big"),
        (400, {"error": {"message": "nested"}}, BadRequest, "nested"),
        (400, {"message": "Model is already training"}, AlreadyTraining, "already training"),
        (409, {"detail": "conflict"}, AlreadyTraining, "conflict"),
        (401, {"message": "Unauthorized"}, AuthError, "Unauthorized"),
        (404, b"", NotFound, "empty body"),
        (503, b"<html><body><h1>Down for maintenance</h1></body></html>", Unavailable, "Down"),
        (500, b"<html><body>plain words</body></html>", Unavailable, "plain words"),
        (502, b"   ", Unavailable, "empty body"),
    ],
)
def test_error_answers_map_to_readable_errors(status, body, kind, message):
    error = error_for(answer(status, body), write=False)
    assert type(error) is kind
    assert message in error.message
    assert error.status == status


def test_a_5xx_to_a_write_is_of_unknown_outcome():
    assert isinstance(error_for(answer(504, b""), write=True), OutcomeUnknown)


def test_a_long_message_is_cut_short():
    error = error_for(answer(400, {"message": "x" * 5000}), write=False)
    assert len(error.message) <= 300


def test_retry_after_is_read_as_seconds_a_date_or_remaining_seconds():
    in_a_minute = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    by_date = error_for(answer(429, b"", headers={"Retry-After": in_a_minute}), write=True)
    assert isinstance(by_date, RateLimited) and 50 < by_date.retry_after <= 60
    by_body = error_for(answer(429, {"message": "Cooldown", "remainingSeconds": 42}), write=True)
    assert by_body.retry_after == 42 and by_body.transient


def test_the_client_repr_shows_no_credentials():
    client = ScenarioClient("https://api.example.com/v1", "key-123", "secret-456")
    assert "key-123" not in repr(client) and "secret-456" not in repr(client)
    assert repr(client) == "<ScenarioClient https://api.example.com/v1>"
