"""The schema check every test runs (tests/fixtures/schemas.py) catches what it should.

Missing required fields and wrong types are problems, unknown extra fields are not; the
primary reference's amendments to the Swagger subset all still matter; and the check sees
the dashboard's client talking to the simulator over real HTTP.
"""

from __future__ import annotations

import copy

import pytest

from simulator import render
from tests import scenario_api
from tests.scenario_api import schemas
from training.scenario import ScenarioError


def _schema(method: str, path: str, status: int = 200) -> dict:
    operation = schemas.operation_for(method, path)
    assert operation is not None, (method, path)
    return schemas.response_schema(operation, status)


JOB = {
    "createdAt": "2025-01-01T00:00:00.000Z",
    "jobId": "job_1",
    "jobType": "flux-model-training",
    "metadata": {},
    "progress": 0,
    "status": "queued",
    "statusHistory": [],
    "updatedAt": "2025-01-01T00:00:00.000Z",
}


MODEL = {
    "id": "model_1",
    "capabilities": ["txt2img"],
    "collectionIds": [],
    "createdAt": "2025-01-01T00:00:00.000Z",
    "custom": True,
    "exampleAssetIds": [],
    "privacy": "private",
    "source": "scenario",
    "status": "new",
    "tags": [],
    "trainingImagesNumber": 3,
    "type": "qwen-image-lora",
    "updatedAt": "2025-01-01T00:00:00.000Z",
}


def test_a_valid_answer_has_no_problems_and_extra_fields_are_allowed():
    body = {"job": {**JOB, "somethingNew": {"any": "shape"}}, "alsoNew": 1}
    assert schemas.problems(_schema("GET", "/jobs/job_1"), body, "job") == []


def test_a_missing_required_field_is_a_problem():
    job = {k: v for k, v in JOB.items() if k != "jobId"}
    found = schemas.problems(_schema("GET", "/jobs/job_1"), {"job": job}, "job")
    assert found == ["job: job: 'jobId' is a required property"]


def test_a_wrong_type_or_a_null_is_a_problem():
    schema = _schema("GET", "/jobs/job_1")
    assert schemas.problems(schema, {"job": {**JOB, "progress": "0.5"}}, "job")
    assert schemas.problems(schema, {"job": {**JOB, "progress": None}}, "job")
    assert schemas.problems(schema, {"job": {**JOB, "status": "exploded"}}, "job")


def test_x_nullable_lets_null_through_and_nothing_else_does():
    schema = {"type": "object", "properties": {"a": {"type": "string", "x-nullable": True}}}
    assert schemas.nullable(schema) == 1
    assert schemas.problems(schema, {"a": None}, "x") == []
    assert schemas.problems(schema, {"a": 3}, "x")
    assert schemas.nullable(copy.deepcopy(scenario_api.subset())) == 0  # none in today's subset


def test_a_request_is_checked_against_its_body_schema():
    operation = schemas.operation_for("PUT", "/models/model_1/train")
    assert schemas.problems(operation.request, {"parameters": {"rank": 2}}, "r") == []
    assert schemas.problems(operation.request, {"parameters": {"nbEpochs": "2"}}, "r")
    assert schemas.problems(operation.request, {"parameters": {"optimizeFor": "all"}}, "r")


def test_a_dry_run_answer_needs_no_job_but_a_launch_does():
    quote = {"model": MODEL, "creativeUnitsCost": 100, "creativeUnitsDiscount": 0}
    assert schemas.problems(_schema("PUT", "/models/m/train", 269), quote, "dry run") == []
    assert schemas.problems(_schema("PUT", "/models/m/train", 200), quote, "launch")


def test_literal_paths_win_over_templated_ones():
    operation = schemas.operation_for("PUT", "/models/m/training-images/pairs")
    assert operation.template == "/models/{modelId}/training-images/pairs"
    assert schemas.operation_for("GET", "/models/m/train") is None


@pytest.mark.parametrize("amendment", schemas.PRIMARY_WINS, ids=lambda a: a.name)
def test_every_amendment_of_the_subset_still_changes_it(amendment):
    assert amendment.apply(copy.deepcopy(scenario_api.subset())) > 0


def test_the_client_s_exchanges_with_the_simulator_are_checked(scenario, scenario_schemas):
    model = scenario.create_model(images=2)
    client = scenario.client()
    client.quote(model.id, {"nbEpochs": 2})
    launch = client.trigger(model.id, {"nbEpochs": 2, "samplePrompts": ["a knight"]})
    client.get_job(launch.job.id)
    client.get_model(model.id)
    # Two requests with a body, and four answers.
    assert scenario_schemas.checked == 6
    assert scenario_schemas.problems == []


def test_an_answer_out_of_shape_is_caught(scenario, scenario_schemas, monkeypatch):
    model = scenario.create_model(images=1)
    client = scenario.client()
    job_id = client.trigger(model.id, {}).job.id
    job = render.Renderer.job
    monkeypatch.setattr(
        render.Renderer, "job", lambda self, t: {**job(self, t), "progress": "half"}
    )

    with pytest.raises(ScenarioError):
        client.get_job(job_id)

    assert scenario_schemas.problems == [
        f"answer 200 to GET /sim/v1/jobs/{job_id}: job/progress: 'half' is not of type 'number'"
    ]
    scenario_schemas.problems.clear()  # seen; the test itself passes
