"""The Scenario client against the simulator and its fault switch, over real HTTP."""

from __future__ import annotations

import logging
import socket
import time

import pytest

from simulator import faults
from simulator.models import RequestLog, SimJob
from tests.fixtures.simulator import TEST_API_KEY, TEST_API_SECRET
from training.scenario import (
    AlreadyTraining,
    AuthError,
    BadRequest,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    ResponseShapeError,
    ScenarioClient,
    ScenarioError,
    Unavailable,
)

HTML_PAGE = (
    "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    "<body><h1>Bad Gateway</h1><p>nginx</p></body></html>"
)


def statuses(method: str, path_end: str) -> list[int]:
    logs = RequestLog.objects.filter(method=method, path__endswith=path_end).order_by("at", "id")
    return list(logs.values_list("status", flat=True))


def real_trains(model_id: str) -> int:
    return RequestLog.objects.filter(
        method="PUT", path__endswith="/train", dry_run=False, model_id=model_id
    ).count()


# --- retries on reads ---------------------------------------------------------------------------


def test_it_waits_out_a_429_with_retry_after_and_succeeds(scenario):
    model = scenario.create_model()
    faults.inject(429, retry_after=1, method="GET", path_contains=model.id)

    assert scenario.client().get_model(model.id).id == model.id

    assert statuses("GET", model.id) == [429, 200]


def test_it_retries_a_503_on_a_read(scenario):
    model = scenario.create_model()
    faults.inject(503, method="GET", path_contains=model.id)

    assert scenario.client().get_model(model.id).status == "new"

    assert statuses("GET", model.id) == [503, 200]


def test_it_gives_back_a_retry_after_longer_than_it_may_wait(scenario):
    model = scenario.create_model()
    faults.inject(429, retry_after=60, method="GET", path_contains=model.id)

    with pytest.raises(RateLimited) as caught:
        scenario.client(max_retry_after=5).get_model(model.id)

    assert caught.value.retry_after == 60
    assert caught.value.transient
    assert statuses("GET", model.id) == [429]


def test_it_waits_for_retry_after_only_within_its_budget_for_the_call(scenario):
    model = scenario.create_model()
    faults.inject(429, times=3, retry_after=1, method="GET", path_contains=model.id)

    with pytest.raises(RateLimited):
        scenario.client(max_retry_after=1.5).get_model(model.id)

    assert statuses("GET", model.id) == [429, 429], "waited 1 s once, then gave the answer back"


def test_it_gives_up_on_reads_after_a_few_tries(scenario):
    model = scenario.create_model()
    faults.inject(503, times=10, method="GET", path_contains=model.id)

    with pytest.raises(Unavailable) as caught:
        scenario.client(retries=2, backoff_factor=0.01).get_model(model.id)

    assert caught.value.status == 503
    assert caught.value.transient
    assert statuses("GET", model.id) == [503, 503, 503]


def test_it_follows_pagination_tokens(scenario):
    ids = {scenario.create_model(f"Model {n}", images=1).id for n in range(5)}

    listed = [m.id for m in scenario.client().iter_models(page_size=2)]

    assert sorted(listed) == sorted(ids)
    assert statuses("GET", "/models") == [200, 200, 200]


# --- errors people can read ------------------------------------------------------------------


def test_a_400_surfaces_its_message(scenario, scenario_schemas):
    model = scenario.create_model()

    with pytest.raises(BadRequest) as caught, scenario_schemas.sending_invalid_requests():
        scenario.client().trigger(model.id, {"rank": 999})

    assert caught.value.status == 400
    assert "rank" in caught.value.message
    assert not caught.value.transient


def test_an_injected_400_body_is_shown_as_is(scenario):
    model = scenario.create_model()
    faults.inject(400, body='{"message": "Your plan allows 2 parallel trainings"}')

    with pytest.raises(BadRequest, match="Your plan allows 2 parallel trainings"):
        scenario.client().trigger(model.id, {})


def test_an_html_error_page_gives_a_clear_error(scenario):
    model = scenario.create_model()
    faults.inject(500, method="GET", body=HTML_PAGE, content_type="text/html")

    with pytest.raises(Unavailable) as caught:
        scenario.client().get_model(model.id)

    assert caught.value.status == 500
    assert "502 Bad Gateway" in caught.value.message
    assert "<" not in caught.value.message


def test_an_empty_error_body_gives_a_clear_error(scenario):
    model = scenario.create_model()
    faults.inject(500, method="GET", body="", content_type="text/plain")

    with pytest.raises(ScenarioError) as caught:
        scenario.client().get_model(model.id)

    assert caught.value.status == 500
    assert "empty body" in caught.value.message


def test_a_success_that_is_not_json_is_a_shape_error(scenario):
    model = scenario.create_model()
    faults.inject(
        200, method="GET", body="<html><body>Welcome</body></html>", content_type="text/html"
    )

    with pytest.raises(ResponseShapeError):
        scenario.client().get_model(model.id)


def test_a_wrong_type_on_a_required_field_is_a_shape_error(scenario):
    model = scenario.create_model()
    body = '{"model": {"id": "%s", "type": "flux.1-lora", "status": 3, "trainingImagesNumber": 1}}'
    faults.inject(200, method="GET", body=body % model.id, content_type="application/json")

    with pytest.raises(ResponseShapeError, match="status"):
        scenario.client().get_model(model.id)


def test_unknown_models_and_jobs_are_not_found(scenario):
    client = scenario.client()

    with pytest.raises(NotFound):
        client.get_model("model_nope")
    with pytest.raises(NotFound):
        client.get_job("job_nope")


def test_a_wrong_secret_is_an_auth_error(scenario):
    client = ScenarioClient(scenario.url, TEST_API_KEY, "not-the-secret")

    with pytest.raises(AuthError) as caught:
        client.get_model("model_any")

    assert caught.value.status == 401
    assert not caught.value.transient


def test_an_unreachable_scenario_is_unavailable(scenario):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = ScenarioClient(f"http://127.0.0.1:{port}/v1", "k", "s", retries=1, backoff_factor=0)

    with pytest.raises(Unavailable):
        client.get_model("model_any")
    # Nothing was sent, so even a launch is simply unavailable, not of unknown outcome.
    with pytest.raises(Unavailable):
        client.trigger("model_any", {})


# --- launching exactly once ------------------------------------------------------------------


def test_a_dry_run_is_a_quote_and_starts_nothing(scenario):
    model = scenario.create_model(images=4)

    quote = scenario.client().quote(model.id, {"nbEpochs": 2}, training_images_count=30)

    assert quote.cost > 0 and quote.discount > 0  # 30 simulated images earn a discount
    assert statuses("PUT", "/train") == [269]
    assert real_trains(model.id) == 0
    assert not SimJob.objects.exists()


def test_the_trigger_refuses_a_success_without_a_job(scenario):
    model = scenario.create_model()
    faults.inject(269, method="PUT", body='{"creativeUnitsCost": 120, "creativeUnitsDiscount": 0}')

    with pytest.raises(ResponseShapeError, match="no job"):
        scenario.client().trigger(model.id, {})

    assert not SimJob.objects.exists()


def test_a_429_on_the_trigger_is_rate_limited_and_not_retried(scenario):
    model = scenario.create_model()
    faults.inject(429, retry_after=7, method="PUT", path_contains="/train")

    with pytest.raises(RateLimited) as caught:
        scenario.client().trigger(model.id, {})

    assert caught.value.retry_after == 7
    assert real_trains(model.id) == 1
    assert scenario.client().get_model(model.id).status == "new"


def test_a_lost_trigger_answer_is_outcome_unknown_and_reconciles_by_reading_back(scenario):
    model = scenario.create_model()
    faults.inject(502, method="PUT", path_contains="/train", after_processing=True)
    client = scenario.client()

    with pytest.raises(OutcomeUnknown) as caught:
        client.trigger(model.id, {})

    assert caught.value.transient
    assert real_trains(model.id) == 1, "never retried"
    assert client.get_model(model.id).status == "training", "it did start"
    with pytest.raises(AlreadyTraining, match="already training"):
        client.trigger(model.id, {})


def test_a_trigger_that_times_out_is_outcome_unknown(scenario):
    model = scenario.create_model()
    faults.inject(None, method="PUT", path_contains="/train", delay_ms=1500, after_processing=True)

    with pytest.raises(OutcomeUnknown):
        scenario.client(read_timeout=0.5).trigger(model.id, {})

    # The simulator logs the request once its slow answer is out.
    for _ in range(100):
        if real_trains(model.id):
            break
        time.sleep(0.05)
    assert real_trains(model.id) == 1
    assert scenario.client().get_model(model.id).status == "training"


def test_other_endpoints_round_trip(scenario):
    client = scenario.client()
    created = client.create_model(name="Fresh", type="flux.1-lora")
    assert created.status == "new" and created.name == "Fresh"

    by_asset = client.add_training_image(created.id, asset_id="asset_abc", name="a.png")
    pixel = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    by_data = client.add_training_image(
        created.id, data_url=pixel + "YPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==", name="b.png"
    )
    assert by_asset.id == "asset_abc" and by_data.url
    assert client.get_model(created.id).training_images_number == 2

    launch = client.trigger(created.id, {"nbEpochs": 2})
    job = client.cancel_job(launch.job.id)
    assert job.status == "canceled"
    assert client.get_model(created.id).status == "training-canceled"
    with pytest.raises(BadRequest, match="not training"):
        client.cancel_training(created.id)


def test_it_can_choose_an_epoch_of_a_trained_model(scenario):
    scenario.set_speed(400)
    client = scenario.client()
    model = scenario.create_model(images=1)
    with pytest.raises(BadRequest, match="trained"):
        client.set_epoch(model.id, "000001")
    client.trigger(model.id, {"nbEpochs": 2})
    for _ in range(200):
        trained = client.get_model(model.id)
        if trained.status == "trained":
            break
    assert trained.raw["epoch"] == "000002"

    assert client.set_epoch(model.id, "000001").raw["epoch"] == "000001"
    with pytest.raises(BadRequest, match="does not exist"):
        client.set_epoch(model.id, "000009")


# --- secrets ---------------------------------------------------------------------------------


def test_secrets_never_show_in_logs_errors_or_reprs(scenario, caplog):
    caplog.set_level(logging.DEBUG)
    model = scenario.create_model()
    client = scenario.client(retries=1, backoff_factor=0)
    faults.inject(503, times=3, method="GET")
    faults.inject(502, method="PUT", after_processing=True)
    errors = []
    for call in (
        lambda: client.get_model(model.id),
        lambda: client.trigger(model.id, {}),
        lambda: client.get_model("model_missing"),
        lambda: ScenarioClient(scenario.url, TEST_API_KEY, "wrong").get_model(model.id),
    ):
        with pytest.raises(ScenarioError) as caught:
            call()
        errors.append(caught.value)

    shown = [caplog.text, repr(client), str(vars(client)), repr(client.session.auth)]
    shown += [text for e in errors for text in (str(e), repr(e), str(vars(e)), str(e.__cause__))]
    for text in shown:
        assert TEST_API_KEY not in text
        assert TEST_API_SECRET not in text
