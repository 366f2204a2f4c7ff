"""The simulator's endpoints, rules and clock, called in-process with a frozen clock."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from simulator import faults, parameters, pricing, seed, spec
from simulator.lifecycle import Schedule
from simulator.models import RequestLog, SimJob
from tests.fixtures.simulator_api import T0


def timeline_of(job_id: str):
    return Schedule.load(T0 + timedelta(days=1)).timeline(job_id)


# --- auth and logging ---------------------------------------------------------------------------


def test_it_refuses_requests_without_the_right_basic_auth(api):
    model = seed.create_model()
    missing = api.call("get", f"/models/{model.id}", auth=False)
    wrong = api.client.get(
        f"/sim/v1/models/{model.id}",
        HTTP_AUTHORIZATION="Basic " + base64.b64encode(b"api-key:nope").decode(),
    )

    assert missing.status_code == wrong.status_code == 401
    assert missing.json() == {"message": "Unauthorized"}
    assert list(RequestLog.objects.values_list("status", flat=True)) == [401, 401]


def test_it_logs_every_request_with_its_model_and_dry_run_flag(api):
    model = seed.create_model()
    api.ok("put", f"/models/{model.id}/train?dryRun=true", {}, status=269)
    launched = api.ok("put", f"/models/{model.id}/train", {})
    api.ok("get", f"/jobs/{launched['job']['jobId']}")

    logs = list(RequestLog.objects.values_list("method", "model_id", "dry_run", "status"))
    assert logs == [
        ("PUT", model.id, True, 269),
        ("PUT", model.id, False, 200),
        ("GET", model.id, False, 200),
    ]


def test_unknown_paths_answer_json_404(api):
    response = api.call("get", "/does/not/exist")
    assert response.status_code == 404
    assert response.json()["message"]


def test_a_wrong_method_is_refused(api):
    model = seed.create_model()
    assert api.call("post", f"/models/{model.id}/train", {}).status_code == 405


# --- training rules -----------------------------------------------------------------------------


def test_it_refuses_a_bad_parameter_naming_the_field(api):
    model = seed.create_model()
    message = api.refused("put", f"/models/{model.id}/train", {"parameters": {"rank": 999}})
    assert "rank" in message
    assert not SimJob.objects.exists()


def test_it_refuses_a_parameter_the_model_type_does_not_accept(api):
    model = seed.create_model()
    body = {"parameters": {"noSuchThing": 1}}
    assert "noSuchThing" in api.refused("put", f"/models/{model.id}/train", body)


def test_it_refuses_a_parameter_of_another_trainer_in_the_reference_s_words(api):
    model = seed.create_model(type="sd-1_5")
    message = api.refused("put", f"/models/{model.id}/train", {"parameters": {"rank": 8}})
    assert message == (
        "Invalid parameters: rank is not taken by SD 1.5 training "
        "(Only available for SDXL (deprecated), Flux LoRA and Musubi training)"
    )


def test_a_voice_clone_takes_no_image_training_parameter(api):
    model = seed.create_model(type="elevenlabs-voice")
    body = {"parameters": {"learningRate": 0.0001}}
    message = api.refused("put", f"/models/{model.id}/train", body)
    assert message == (
        "Invalid parameters: learningRate is not taken by ElevenLabs voice training: "
        "it is a parameter of image trainers"
    )


def test_it_refuses_a_number_sent_as_text_or_null(api):
    model = seed.create_model()
    body = {"parameters": {"rank": "16", "nbEpochs": None}}
    message = api.refused("put", f"/models/{model.id}/train", body)
    assert "rank must be a number, not a string" in message
    assert "nbEpochs must be a number, not null" in message


def test_it_reads_bounds_per_trainer_from_the_reference(api):
    sdxl = seed.create_model(type="sd-xl-lora")
    too_high = {"parameters": {"learningRateTextEncoder": 0.002}}
    message = api.refused("put", f"/models/{sdxl.id}/train", too_high)
    assert "learningRateTextEncoder must be at most 0.001 for SDXL LoRA training" in message
    musubi = seed.create_model(type="qwen-image-lora")
    wide = {"parameters": {"rank": 128, "maxTrainSteps": 900, "learningRateTextEncoder": 1e-4}}
    assert api.ok("put", f"/models/{musubi.id}/train?dryRun=true", wide, status=269)


def test_it_sizes_an_sdxl_run_by_its_two_step_fields(api):
    model = seed.create_model(type="sd-xl-lora", images=2)
    body = {"parameters": {"numTextTrainSteps": 100, "numUNetTrainSteps": 500}}
    api.ok("put", f"/models/{model.id}/train", body)
    job = SimJob.objects.get()
    assert (job.steps, job.epochs, job.job_type) == (600, 0, "model-training")


def test_it_refuses_to_train_a_model_type_that_is_not_trainable(api):
    model = seed.create_model(type="flux.1-pro")
    assert "cannot be trained" in api.refused("put", f"/models/{model.id}/train", {})


def test_it_refuses_a_model_without_training_images(api):
    model = seed.create_model(images=0)
    assert "no training images" in api.refused("put", f"/models/{model.id}/train", {})


def test_it_answers_404_for_an_unknown_model(api):
    assert "not found" in api.refused("put", "/models/model_nope/train", {}, status=404)


def test_it_refuses_to_launch_a_model_that_is_already_training(api):
    model = seed.create_model()
    api.ok("put", f"/models/{model.id}/train", {})
    message = api.refused("put", f"/models/{model.id}/train", {})
    assert message == "Model is already training"
    assert SimJob.objects.count() == 1


def test_it_refuses_to_cancel_a_model_that_is_not_training(api):
    model = seed.create_model()
    body = {"action": "cancel"}
    assert api.refused("post", f"/models/{model.id}/train/action", body) == "Model is not training"


def test_it_refuses_to_cancel_a_job_that_has_ended(api):
    model = seed.create_model()
    job_id = api.ok("put", f"/models/{model.id}/train", {})["job"]["jobId"]
    api.at(timeline_of(job_id).done + timedelta(seconds=1))
    assert "ended" in api.refused("post", f"/jobs/{job_id}/action", {"action": "cancel"})


def test_it_only_knows_the_cancel_action(api):
    model = seed.create_model()
    api.ok("put", f"/models/{model.id}/train", {})
    assert "cancel" in api.refused("post", f"/models/{model.id}/train/action", {"action": "pause"})


def test_a_malformed_body_is_refused(api):
    model = seed.create_model()
    with api.schemas.sending_invalid_requests():
        response = api.call("put", f"/models/{model.id}/train", raw="{not json")
    assert response.status_code == 400
    assert "JSON" in response.json()["message"]


# --- dry run and price --------------------------------------------------------------------------


def test_a_dry_run_quotes_by_the_documented_formula_and_starts_nothing(api):
    model = seed.create_model(images=6)
    body = {"parameters": {"nbEpochs": 3, "samplePrompts": ["a", "b"]}}

    quote = api.ok("put", f"/models/{model.id}/train?dryRun=true", body, status=269)

    expected = pricing.quote(
        spec.FLUX_LORA,
        images=6,
        steps=parameters.training_steps("flux.1-lora", body["parameters"], 6),
        epochs=parameters.epochs("flux.1-lora", body["parameters"]),
        prompts=2,
    )
    assert quote["creativeUnitsCost"] == expected.cost
    assert quote["creativeUnitsDiscount"] == expected.discount == 0
    assert 100 <= expected.cost <= 500
    assert quote["model"]["status"] == "new"
    assert not SimJob.objects.exists()


def test_a_dry_run_can_simulate_the_image_count(api):
    model = seed.create_model(images=2)
    path = f"/models/{model.id}/train?dryRun=true"

    few = api.ok("put", path, {}, status=269)
    many = api.ok("put", path + "&trainingImagesCount=25", {}, status=269)

    assert many["creativeUnitsCost"] > few["creativeUnitsCost"]
    assert many["creativeUnitsDiscount"] > 0, "20 images or more earn the volume discount"


def test_the_price_is_billed_by_outcome():
    price = pricing.Price(cost=200.0, discount=10.0)
    assert pricing.billed(price, outcome="success", progress=1) == price
    assert pricing.billed(price, outcome="canceled", progress=0.25).cost == 50
    assert pricing.billed(price, outcome="canceled", progress=0).cost == 0
    assert pricing.billed(price, outcome="failure", progress=0.6).cost == 0


# --- the clock and the queue --------------------------------------------------------------------


def test_answers_are_derived_from_stored_facts_and_the_clock(api, transactional_db):
    model = seed.create_model(images=2)
    job_id = api.ok("put", f"/models/{model.id}/train", {"parameters": {"nbEpochs": 2}})["job"][
        "jobId"
    ]
    t = timeline_of(job_id)
    rows_before = list(SimJob.objects.values())

    api.at(t.train_start + (t.train_end - t.train_start) * 0.3)
    first = api.call("get", f"/models/{model.id}").content
    connections.close_all()  # as good as a restart: nothing lives in the process
    again = api.call("get", f"/models/{model.id}").content
    assert first == again

    api.at(t.train_start + (t.train_end - t.train_start) * 0.7)
    later = api.ok("get", f"/models/{model.id}")["model"]
    assert (
        later["trainingProgress"]["progress"]
        > json.loads(first)["model"]["trainingProgress"]["progress"]
    )
    assert list(SimJob.objects.values()) == rows_before, "reading changes nothing stored"


def test_a_job_keeps_the_time_scale_it_was_requested_with(api):
    model = seed.create_model()
    job_id = api.ok("put", f"/models/{model.id}/train", {})["job"]["jobId"]
    done = timeline_of(job_id).done

    api.settings.SIMULATOR_TIME_SCALE = 1000.0
    assert timeline_of(job_id).done == done


def job(name, requested, *, train=100.0, canceled=None, fail=False):
    """An unsaved job with only what the queue walk reads (time scale 1, 60 s around it)."""
    return SimpleNamespace(
        id=name,
        model_id=f"model_{name}",
        requested_at=T0 + timedelta(seconds=requested),
        canceled_at=T0 + timedelta(seconds=canceled) if canceled is not None else None,
        time_scale=1.0,
        train_seconds=train,
        will_fail=fail,
        epochs=2,
        steps=100,
        cost=100.0,
        discount=0.0,
    )


def walk(jobs, at, slots=2):
    return Schedule.walk(jobs, T0 + timedelta(seconds=at), slots)


def test_the_queue_is_first_in_first_out_over_the_gpu_slots():
    jobs = [job("a", 0), job("b", 1), job("c", 2), job("d", 3)]
    # Each takes its slot 20 s after the request, and holds it 30 + 100 + 10 = 140 s.
    schedule = walk(jobs, at=30)
    a, b, c, d = (schedule.timeline(j.id) for j in jobs)
    assert (a.start - T0).seconds == 20 and (b.start - T0).seconds == 21
    assert c.start == a.stop and d.start == b.stop

    positions = [schedule.state(t).position for t in (c, d)]
    assert positions == [0, 1]
    later = walk(jobs, at=160.5)
    assert later.state(later.timeline("d")).position == 0


def test_a_canceled_waiting_job_frees_no_slot_but_moves_the_queue():
    jobs = [job("a", 0), job("b", 1, canceled=50), job("c", 2)]
    schedule = walk(jobs, at=60, slots=1)
    a, b, c = (schedule.timeline(j.id) for j in jobs)
    assert b.start is None
    assert c.start == a.stop
    assert schedule.state(c).position == 0
    assert schedule.state(b).job_status == "canceled"


def test_a_canceled_running_job_frees_its_slot_at_once():
    jobs = [job("a", 0, canceled=100), job("b", 1)]
    schedule = walk(jobs, at=120, slots=1)
    assert schedule.timeline("b").start == T0 + timedelta(seconds=100)
    assert schedule.state(schedule.timeline("a")).model_status == "training-canceled"


def test_a_failing_job_fails_part_way_and_frees_its_slot():
    jobs = [job("a", 0, fail=True), job("b", 1)]
    schedule = walk(jobs, at=400, slots=1)
    a = schedule.timeline("a")
    state = schedule.state(a)
    assert state.job_status == "failure" and state.error
    assert 0 < state.progress < 1
    assert schedule.timeline("b").start == a.fail_at


# --- models, images, epochs ---------------------------------------------------------------------


def test_models_are_listed_page_by_page(api):
    # Created at the same (frozen) moment, so listed by id.
    ids = sorted(seed.create_model(f"M{n}", images=4).id for n in range(5))
    first = api.ok("get", "/models?pageSize=2")
    assert [m["id"] for m in first["models"]] == ids[:2]
    assert len(first["models"][0]["trainingImages"]) == 3, "a listing shows three images"
    second = api.ok("get", f"/models?pageSize=2&paginationToken={first['nextPaginationToken']}")
    third = api.ok("get", f"/models?pageSize=2&paginationToken={second['nextPaginationToken']}")
    assert [m["id"] for m in second["models"] + third["models"]] == ids[2:]
    assert "nextPaginationToken" not in third
    assert "pageSize" in api.refused("get", "/models?pageSize=0")
    assert "paginationToken" in api.refused("get", "/models?paginationToken=garbage!")


def test_a_model_is_created_with_a_known_type_only(api):
    created = api.ok("post", "/models", {"name": "New", "type": "qwen-image-lora"})["model"]
    assert created["status"] == "new" and created["trainingImagesNumber"] == 0
    assert "type" in api.refused("post", "/models", {"name": "New", "type": "banana"})


def test_a_training_image_by_data_url_is_served_back(api):
    model = seed.create_model(images=0)
    payload = b"\x89PNG\r\n\x1a\nnot-really-a-png"
    data_url = "data:image/png;base64," + base64.b64encode(payload).decode()
    added = api.ok(
        "post", f"/models/{model.id}/training-images", {"data": data_url, "name": "me.png"}
    )["trainingImage"]

    served = api.client.get(added["downloadUrl"])
    assert served.status_code == 200
    assert served["Content-Type"] == "image/png"
    assert served.content == payload
    bad = {"data": "data:image/png;base64,@@@"}
    assert "base64" in api.refused("post", f"/models/{model.id}/training-images", bad)


def test_training_images_cannot_change_during_training(api):
    model = seed.create_model()
    api.ok("put", f"/models/{model.id}/train", {})
    body = {"assetId": "asset_late"}
    assert "training" in api.refused("post", f"/models/{model.id}/training-images", body)


def test_samples_exist_only_once_their_epoch_is_done(api):
    model = seed.create_model()
    body = {"parameters": {"nbEpochs": 2, "samplePrompts": ["a fox"]}}
    job_id = api.ok("put", f"/models/{model.id}/train", body)["job"]["jobId"]
    t = timeline_of(job_id)
    url = f"/sim/v1/samples/{job_id}/000002/0.svg"

    api.at(t.train_start + (t.train_end - t.train_start) * 0.6)
    model_now = api.ok("get", f"/models/{model.id}")["model"]
    assert [e["epoch"] for e in model_now["epochs"]] == ["000001"]
    assert api.client.get(url).status_code == 404

    api.at(t.done)
    assert api.client.get(url).status_code == 200


# --- faults ---------------------------------------------------------------------------------------


def test_random_rates_fail_api_calls_but_not_pictures(api):
    model = seed.create_model(images=1)
    image_url = api.ok("get", f"/models/{model.id}")["model"]["trainingImages"][0]["downloadUrl"]
    faults.set_rates(rate_503=1.0)

    assert api.call("get", f"/models/{model.id}").status_code == 503
    assert api.client.get(image_url).status_code == 200

    faults.clear()
    assert api.call("get", f"/models/{model.id}").status_code == 200


def test_default_rates_come_from_settings(api, settings):
    settings.SIMULATOR_FAULTS = "429=1"
    response = api.call("get", "/models")
    assert response.status_code == 429
    assert response["Retry-After"] == "1"

    settings.SIMULATOR_FAULTS = "429=lots"
    with pytest.raises(ImproperlyConfigured):
        faults.current_rates()


def test_an_injected_rule_fires_the_given_number_of_times_on_matching_requests(api):
    model = seed.create_model()
    faults.inject(503, times=2, method="GET", path_contains="/models/")

    assert api.call("get", "/models").status_code == 200, "path does not match"
    codes = [api.call("get", f"/models/{model.id}").status_code for _ in range(3)]
    assert codes == [503, 503, 200]


def test_picture_urls_can_name_the_public_address(api, settings):
    model = seed.create_model(images=1)
    settings.SIMULATOR_PUBLIC_URL = "http://localhost:8001/sim/v1/"

    image = api.ok("get", f"/models/{model.id}")["model"]["trainingImages"][0]

    assert image["downloadUrl"] == f"http://localhost:8001/sim/v1/assets/{image['id']}"


def test_the_documented_example_price_holds():
    steps = parameters.training_steps("flux.1-lora", {}, 10)
    price = pricing.quote(spec.FLUX_LORA, images=10, steps=steps, epochs=10, prompts=3)
    assert (steps, price.cost, price.discount) == (1000, 180, 0)


def test_only_trainers_with_epochs_list_epochs(api):
    voice = seed.create_model("Narrator", "elevenlabs-voice", images=2)
    job_id = api.ok("put", f"/models/{voice.id}/train", {})["job"]["jobId"]
    api.at(timeline_of(job_id).done)

    trained = api.ok("get", f"/models/{voice.id}")["model"]

    assert trained["status"] == "trained"
    assert "epochs" not in trained and "epoch" not in trained
    assert trained["capabilities"] == ["txt2audio"]


# --- the kept queue walk and the list's status filter -------------------------------------------


def _placements(schedule: Schedule) -> list[tuple]:
    return [
        (t.job.id, t.order, t.start, t.stop, t.canceled, schedule.state(t).position)
        for t in schedule.timelines
    ]


def _walked_afresh(now: datetime, slots: int) -> Schedule:
    return Schedule.walk(SimJob.objects.order_by("requested_at", "id"), now, slots)


def test_the_kept_walk_is_the_walk_made_afresh_after_each_launch_cancel_and_delete(api):
    api.settings.SIMULATOR_GPU_SLOTS = 2
    models = [seed.create_model(name=f"Knight {i}") for i in range(6)]
    later = T0
    for i, model in enumerate(models):
        later = T0 + timedelta(seconds=5 * i)
        api.at(later)
        api.ok("put", f"/models/{model.id}/train", {})
        now = later + timedelta(seconds=1)
        assert _placements(Schedule.load(now)) == _placements(_walked_afresh(now, 2))
    api.at(later + timedelta(seconds=40))  # the first two run, four wait
    api.ok("post", f"/models/{models[0].id}/train/action", {"action": "cancel"})
    now = later + timedelta(seconds=41)
    kept = Schedule.load(now)
    assert _placements(kept) == _placements(_walked_afresh(now, 2))
    assert kept.timeline(SimJob.objects.get(model=models[2]).id).start is not None
    models[3].delete()  # the job goes with it
    assert _placements(Schedule.load(now)) == _placements(_walked_afresh(now, 2))
    assert len(Schedule.load(now).timelines) == 5


def test_an_unchanged_schedule_is_not_walked_again(api, django_assert_num_queries):
    model = seed.create_model()
    api.ok("put", f"/models/{model.id}/train", {})
    Schedule.load(T0 + timedelta(seconds=1))
    with django_assert_num_queries(1):  # the stamp only
        later = Schedule.load(T0 + timedelta(seconds=100))
    assert later.now == T0 + timedelta(seconds=100)
    assert later.state(later.latest_for(model.id)).job_status == "in-progress"


def _store_job(model, requested_at: datetime) -> SimJob:
    return SimJob.objects.create(
        model=model, job_type="flux.1-lora", image_count=5, steps=100, epochs=1,
        train_seconds=60.0, time_scale=1.0, cost=1.0, discount=0.0, requested_at=requested_at,
    )  # fmt: skip


def test_a_launch_places_its_job_after_the_kept_walk_without_walking_the_others(
    api, django_assert_num_queries
):
    api.settings.SIMULATOR_GPU_SLOTS = 2
    models = [seed.create_model(name=f"Knight {i}") for i in range(4)]
    for i, model in enumerate(models[:3]):
        api.at(T0 + timedelta(seconds=i))
        api.ok("put", f"/models/{model.id}/train", {})
    now = T0 + timedelta(seconds=10)
    kept = Schedule.load(now)
    _store_job(models[3], requested_at=now)  # as a launch on another server would
    later = now + timedelta(seconds=1)
    with django_assert_num_queries(2):  # the stamp, and the one new job
        extended = Schedule.load(later)
    assert _placements(extended) == _placements(_walked_afresh(later, 2))
    # The kept placements themselves, not a new walk's equal ones.
    assert all(a is b for a, b in zip(extended.timelines, kept.timelines, strict=False))
    assert len(kept.timelines) == 3  # and an answer still reading it saw no change


def test_a_job_stored_out_of_request_order_makes_the_walk_anew(api):
    api.settings.SIMULATOR_GPU_SLOTS = 1
    first, second, late = (seed.create_model(name=n) for n in ("First", "Second", "Late"))
    api.ok("put", f"/models/{first.id}/train", {})
    api.at(T0 + timedelta(seconds=60))
    api.ok("put", f"/models/{second.id}/train", {})
    now = T0 + timedelta(seconds=61)
    Schedule.load(now)
    # Requested before the last kept job, committed after it (two servers, one slow).
    _store_job(late, requested_at=T0 + timedelta(seconds=30))
    schedule = Schedule.load(now + timedelta(seconds=1))
    assert [t.job.model_id for t in schedule.timelines] == [first.id, late.id, second.id]
    assert _placements(schedule) == _placements(_walked_afresh(now + timedelta(seconds=1), 1))


def test_a_clock_before_the_newest_job_sees_only_what_was_requested_by_then(api):
    first, second = seed.create_model(name="First"), seed.create_model(name="Second")
    api.ok("put", f"/models/{first.id}/train", {})
    api.at(T0 + timedelta(seconds=60))
    api.ok("put", f"/models/{second.id}/train", {})
    Schedule.load(T0 + timedelta(seconds=61))
    earlier = Schedule.load(T0 + timedelta(seconds=30))
    assert [t.job.model_id for t in earlier.timelines] == [first.id]


def test_queue_positions_count_the_jobs_still_waiting_ahead(api):
    models = [seed.create_model(name=f"Knight {i}") for i in range(5)]
    for i, model in enumerate(models):
        api.at(T0 + timedelta(seconds=i))
        api.ok("put", f"/models/{model.id}/train", {})
    api.at(T0 + timedelta(seconds=30))
    api.ok("post", f"/models/{models[2].id}/train/action", {"action": "cancel"})
    positions = [
        api.ok("get", f"/models/{m.id}")["model"].get("trainingProgress", {}).get("position")
        for m in models
    ]
    # One slot: the first trains, the third was canceled while waiting.
    assert positions == [None, 0, None, 1, 2]


def test_the_model_list_filters_by_status_and_takes_pages_of_500(api):
    training, trained, new = (seed.create_model(name=n) for n in ("Training", "Trained", "New"))
    api.ok("put", f"/models/{trained.id}/train", {})
    api.at(T0 + timedelta(days=1))
    api.ok("put", f"/models/{training.id}/train", {})

    def listed(query: str) -> list[str]:
        return [m["id"] for m in api.ok("get", f"/models?{query}")["models"]]

    assert listed("status=training&pageSize=500") == [training.id]
    assert listed("status=trained") == [trained.id]
    assert listed("status=new") == [new.id]
    assert listed("status=failed") == []
    assert "between 1 and 500" in api.refused("get", "/models?pageSize=501")


def test_a_page_of_models_costs_the_same_queries_for_3_models_or_30(api):
    def queries_for_a_page() -> int:
        with CaptureQueriesContext(connection) as queries:
            api.ok("get", "/models?pageSize=500")
        return len(queries)

    for i in range(3):
        seed.create_model(name=f"Knight {i}")
    few = queries_for_a_page()
    for i in range(27):
        seed.create_model(name=f"Squire {i}")
    assert queries_for_a_page() == few
