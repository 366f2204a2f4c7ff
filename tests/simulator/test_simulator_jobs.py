"""GET /jobs in the simulator: newest first, filtered by type and status, page by page.

Every answer is checked against Scenario's GetJobsResponse schema by the schemas fixture.
"""

from __future__ import annotations

from datetime import timedelta

from simulator import seed
from tests.fixtures.simulator_api import T0


def launch(api, model, at, **parameters) -> str:  # noqa: F811
    api.at(at)
    return api.ok("put", f"/models/{model.id}/train", {"parameters": parameters})["job"]["jobId"]


def test_it_lists_jobs_newest_first_with_the_model_their_metadata_names(api):  # noqa: F811
    knight, voice = seed.create_model("Knight"), seed.create_model("Voice", "elevenlabs-voice")
    first = launch(api, knight, T0)
    second = launch(api, voice, T0 + timedelta(seconds=5))

    jobs = api.ok("get", "/jobs")["jobs"]
    assert [job["jobId"] for job in jobs] == [second, first]
    assert [job["metadata"]["input"]["modelId"] for job in jobs] == [voice.id, knight.id]
    assert "billing" not in jobs[0]  # the documented list item has none: GET /jobs/{id} has


def test_it_filters_by_type_types_and_status(api):  # noqa: F811
    flux, voice = seed.create_model("Knight"), seed.create_model("Voice", "elevenlabs-voice")
    flux_job = launch(api, flux, T0)
    voice_job = launch(api, voice, T0 + timedelta(seconds=1))
    api.at(T0 + timedelta(seconds=2))

    def ids(query):
        return [job["jobId"] for job in api.ok("get", f"/jobs?{query}")["jobs"]]

    assert ids("type=flux-model-training") == [flux_job]
    assert ids("types=model-training,flux-model-training") == [voice_job, flux_job]
    # "types" wins over "type".
    assert ids("type=flux-model-training&types=model-training") == [voice_job]
    assert ids("status=pending") == [voice_job, flux_job]
    assert ids("status=success") == []


def test_it_pages_with_a_token_and_bounds_the_page_size(api):  # noqa: F811
    model = seed.create_model("Knight")
    jobs = []
    for index in range(12):
        jobs.append(launch(api, model, T0 + timedelta(days=index)))
        api.ok("post", f"/models/{model.id}/train/action", {"action": "cancel"})
    api.at(T0 + timedelta(days=20))

    first = api.ok("get", "/jobs")
    assert len(first["jobs"]) == 10  # the documented default
    rest = api.ok("get", f"/jobs?paginationToken={first['nextPaginationToken']}")
    assert "nextPaginationToken" not in rest
    listed = [job["jobId"] for job in first["jobs"] + rest["jobs"]]
    assert listed == list(reversed(jobs))

    assert api.refused("get", "/jobs?pageSize=201").startswith("pageSize must be between 1 and 200")
    assert api.refused("get", "/jobs?pageSize=0")
    assert api.refused("get", "/jobs?paginationToken=nonsense") == "paginationToken is not valid"


def test_the_client_finds_a_model_s_training_job_started_after_a_moment(scenario):
    knight, dragon = scenario.create_model("Knight", images=1), scenario.create_model("Dragon")
    client = scenario.client()
    earlier = client.trigger(knight.id, {}).job
    client.cancel_training(knight.id)
    client.trigger(dragon.id, {})
    later = client.trigger(knight.id, {}).job

    found = client.find_training_job(knight.id, since=later.created_at - timedelta(seconds=1))
    assert found.id == later.id and found.model_id == knight.id
    assert client.find_training_job(knight.id, since=earlier.created_at).id == later.id
    assert client.find_training_job(knight.id, since=later.created_at + timedelta(hours=1)) is None
