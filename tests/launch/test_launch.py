"""The training form: the picker, the fields of each type, validation, quotes and launches."""

from __future__ import annotations

import uuid

import pytest
from django.urls import reverse

from simulator import faults
from simulator.models import RequestLog
from tests.factories import IMAGES, make_model, make_run
from tests.helpers import HTMX_HEADERS, launched
from tests.html import read_form
from tests.launch_form import URL, estimate, page_form, post, quote_cost, sim_requests
from training import display, params
from training.models import TrainingRun


def shown(value) -> str:
    """A default as its input shows it."""
    if value is None:
        return ""
    return display.number(value) if isinstance(value, int | float) else str(value)


# --- The picker -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_picker_lists_trainable_models_with_images_and_status(client, alice, team_b):
    make_model("flux.1-lora", images=12, name="Knight")
    make_model("flux.1-krea-lora", images=0, name="Empty sketchbook")
    make_model("flux.1", images=12, name="Base model, not trainable")
    make_model("sd-xl-lora", images=12, name="Other team's", team=team_b)
    client.force_login(alice)
    page = client.get(URL).content.decode()
    assert "Knight" in page and "12 images" in page and "trained" in page
    assert "Empty sketchbook" in page and "No training images yet" in page
    assert "?model=model_flux_1-krea-lora_0" not in page
    assert "not trainable" not in page and "Other team" not in page


@pytest.mark.django_db
def test_a_model_without_images_cannot_be_opened(client, alice):
    empty = make_model("flux.1-lora", images=0)
    client.force_login(alice)
    response = client.get(URL, {"model": empty.remote_id})
    assert "No training images yet" in response.content.decode()
    assert read_form(response).parameter_names() == set()
    response = post(client, empty, base={}, action="estimate")
    assert response.status_code == 400


@pytest.mark.django_db
def test_another_teams_model_cannot_be_opened(client, alice, team_b):
    theirs = make_model("flux.1-lora", team=team_b)
    client.force_login(alice)
    response = client.get(URL, {"model": theirs.remote_id})
    assert "not one your team can train" in response.content.decode()
    assert post(client, theirs, base={}, action="launch").status_code == 400


@pytest.mark.django_db
def test_picking_a_model_with_htmx_swaps_the_body_only(client, alice):
    model = make_model("elevenlabs-voice")
    client.force_login(alice)
    response = client.get(URL, {"model": model.remote_id}, headers=HTMX_HEADERS)
    body = response.content.decode()
    assert body.lstrip().startswith('<div class="launch" id="launch-body">')
    assert "<html" not in body and 'id="params-elevenlabs-voice"' in body


def test_the_launch_page_needs_a_sign_in(client, db):
    assert client.get(URL).status_code == 302


# --- Must show 1: exactly the table's fields, with the defaults for 12 images -----------------


@pytest.mark.django_db
@pytest.mark.parametrize("model_type", params.TRAINABLE_TYPES)
def test_the_form_has_exactly_the_tables_fields_with_defaults_for_12_images(
    client, alice, model_type
):
    model = make_model(model_type, images=12)
    client.force_login(alice)
    form = page_form(client, model)
    expected = {f.name for f in params.fields_for(model_type) if not f.legacy}
    assert form.parameter_names() == expected
    defaults = params.defaults_for(model_type, 12)
    for f in params.family_for(model_type).form_fields:
        if f.is_list:
            assert form.value(f.name) == ""
        elif f.kind == params.BOOL:
            assert form.value(f.name) is bool(defaults.get(f.name))
        elif f.kind == params.ENUM:
            assert form.value(f.name) == defaults.get(f.name, ""), f.name
        else:
            assert form.value(f.name) == shown(defaults.get(f.name, "")), f.name


@pytest.mark.django_db
def test_the_form_for_12_images_shows_the_computed_steps(client, alice):
    client.force_login(alice)
    assert page_form(client, make_model("flux.1-lora")).value("maxTrainSteps") == "1200"
    assert page_form(client, make_model("sd-1_5")).value("maxTrainSteps") == "900"
    # SDXL's maxTrainSteps is offered but left empty: Scenario's images × 175 applies.
    sdxl = page_form(client, make_model("sd-xl-lora"))
    assert "maxTrainSteps" in sdxl.parameter_names() and sdxl.value("maxTrainSteps") == ""


@pytest.mark.django_db
def test_advanced_fields_are_folded_away(client, alice):
    client.force_login(alice)
    page = client.get(URL, {"model": make_model("flux.1-lora").remote_id}).content.decode()
    advanced = page[page.index('<details class="advanced"') :]
    assert 'name="rank"' in advanced and 'name="maxTrainSteps"' not in advanced
    assert '<details class="advanced">' in page  # closed


# --- Must show 2: bounds through the form, nothing sent to Scenario ---------------------------


def bounded_fields(model_type):
    family = params.family_for(model_type)
    return [f for f in family.form_fields if f.minimum is not None or f.maximum is not None]


def edge_values(f):
    """(accepted, refused) values at each bound, as typed into the form."""
    step = 1 if f.kind == params.INTEGER else None
    pairs = []
    if f.minimum is not None:
        low = f.minimum
        if f.exclusive_minimum:
            pairs.append(("1e-12", display.number(low)))
        else:
            below = low - step if step else low - abs(low) * 1e-6 - 1e-12
            pairs.append((display.number(low), repr(below)))
    if f.maximum is not None:
        high = f.maximum
        above = high + step if step else high + abs(high) * 1e-6
        pairs.append((display.number(high), repr(above)))
    return pairs


@pytest.mark.parametrize("model_type", ["flux.1-lora", "qwen-image-lora", "sd-1_5", "sd-xl-lora"])
def test_each_bound_is_accepted_and_the_value_just_outside_is_refused(
    scenario, client, alice, model_type
):
    model = make_model(model_type, images=12)
    client.force_login(alice)
    base = page_form(client, model).post_data()
    steps_field = "maxTrainSteps" if "maxTrainSteps" in base else "numTextTrainSteps"
    checked = 0
    for f in bounded_fields(model_type):
        for accepted, refused in edge_values(f):
            extra = {steps_field: "40000"} if f.name == "validationFrequency" else {}
            if f.name == "validationFrequency" and model_type == "sd-1_5":
                extra = {"maxTrainSteps": "40000"}
            form = read_form(post(client, model, {f.name: accepted, **extra}, base=base))
            assert form.error(f.name) == "", (f.name, accepted)
            form = read_form(post(client, model, {f.name: refused}, "estimate", base=base))
            assert form.error(f.name), (f.name, refused)
            assert "ready" not in form.ids["quote-panel"]["class"]
            checked += 1
    assert checked >= 2
    assert not RequestLog.objects.exists()


@pytest.mark.django_db
def test_a_field_is_checked_when_it_is_left(client, alice):
    model = make_model("flux.1-lora")
    client.force_login(alice)
    data = {**page_form(client, model).post_data(), "model": model.remote_id, "rank": "65"}
    response = client.post(
        reverse("launch_validate"), data, headers={**HTMX_HEADERS, "HX-Trigger-Name": "rank"}
    )
    body = response.content.decode()
    assert 'id="err-rank" hx-swap-oob="true"' in body
    assert "Must be at most 64." in body
    assert 'id="quote-panel" hx-swap-oob="true"' in body


@pytest.mark.django_db
def test_cross_field_errors_show_under_their_field(client, alice):
    model = make_model("sd-1_5")
    client.force_login(alice)
    form = read_form(post(client, model, {"maxTrainSteps": "100", "validationFrequency": "101"}))
    assert "(100)" in form.error("validationFrequency")
    assert form.error("maxTrainSteps") == ""


@pytest.mark.django_db
def test_source_images_go_with_every_prompt_or_none(client, alice):
    model = make_model("flux.1-kontext-lora")
    client.force_login(alice)
    rows = {"samplePrompts": ["a", "b"], "sampleSourceImages": [IMAGES[0]["id"], ""]}
    form = read_form(post(client, model, rows))
    assert "every sample prompt, or for none" in form.error("sampleSourceImages")
    rows["sampleSourceImages"] = [IMAGES[0]["id"], "asset_not_mine"]
    assert "training images" in read_form(post(client, model, rows)).error("sampleSourceImages")
    rows["sampleSourceImages"] = [IMAGES[0]["id"], IMAGES[1]["id"]]
    assert read_form(post(client, model, rows)).error("sampleSourceImages") == ""


@pytest.mark.django_db
def test_fields_of_another_type_are_refused_not_sent(client, alice):
    model = make_model("elevenlabs-voice")
    client.force_login(alice)
    page = post(client, model, {"rank": "16"}, "estimate").content.decode()
    assert "rank: Not accepted for elevenlabs-voice." in page
    assert "quote-panel ready" not in page


# --- Without JavaScript ---------------------------------------------------------------------


@pytest.mark.django_db
def test_prompt_rows_are_added_and_removed_by_plain_posts(client, alice):
    model = make_model("flux.1-lora")
    client.force_login(alice)
    response = post(client, model, {"samplePrompts": "a knight"}, "add_prompt")
    assert "<html" in response.content.decode()
    form = read_form(response)
    assert form.post_data()["samplePrompts"] == ["a knight", ""]
    rows = {"samplePrompts": ["first", "second", "third"]}
    form = read_form(post(client, model, rows, "remove_prompt:1"))
    assert form.post_data()["samplePrompts"] == ["first", "third"]


@pytest.mark.django_db
def test_a_preset_fills_its_values(client, alice):
    model = make_model("flux.1-lora", images=30)
    client.force_login(alice)
    form = read_form(post(client, model, action="preset:large"))
    assert (form.value("learningRate"), form.value("nbEpochs")) == ("0.0002", "7")
    assert (
        'class="btn small preset suggested"'
        in client.get(URL, {"model": model.remote_id}).content.decode()
    )


@pytest.mark.django_db
def test_launching_without_a_quote_is_refused(client, alice):
    model = make_model("flux.1-lora")
    client.force_login(alice)
    page = post(client, model, action="launch").content.decode()
    assert "Estimate the cost of these parameters before launching." in page
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
def test_a_forged_quote_is_ignored(client, alice):
    model = make_model("flux.1-lora")
    client.force_login(alice)
    page = post(client, model, {"quote_id": "x" * 80}, "launch").content.decode()
    assert "before launching" in page and not TrainingRun.objects.exists()
    assert "That estimate is not one of yours" in page


# --- Must show 4: dry run and launch against the simulator ------------------------------------


def test_the_quote_shown_is_the_simulators(scenario, client, alice, knight):
    client.force_login(alice)
    values = {"nbEpochs": "8", "samplePrompts": ["a knight", "a horse"]}
    shown_cost = quote_cost(estimate(client, knight, values))
    sent = {"maxTrainSteps": 1200, "nbEpochs": 8, "samplePrompts": ["a knight", "a horse"]}
    assert sim_requests(dry_run=True).count() == 1
    assert shown_cost == scenario.client().quote(knight.remote_id, sent).cost


def test_identical_estimates_are_asked_once(scenario, client, alice, knight):
    client.force_login(alice)
    first = quote_cost(estimate(client, knight, {"rank": "32"}))
    second = quote_cost(estimate(client, knight, {"rank": "32"}))
    assert first == second and sim_requests(dry_run=True).count() == 1
    estimate(client, knight, {"rank": "8"})
    assert sim_requests(dry_run=True).count() == 2


@pytest.mark.worker
def test_a_launch_makes_one_run_and_one_trigger(
    scenario, fast_lifecycle, celery_worker_thread, drive, client, alice, knight
):
    client.force_login(alice)
    form = read_form(estimate(client, knight, {"nbEpochs": "6"}))
    response = post(client, knight, action="launch", base=form.post_data())
    run = TrainingRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("run_detail", args=[run.pk])
    # What the form showed is sent, Scenario's documented defaults included.
    assert run.parameters == {
        "maxTrainSteps": 1200,
        "nbEpochs": 6,
        "learningRate": 0.0001,
        "learningRateTextEncoder": 0.00001,
        "rank": 16,
    }
    assert run.quote_cu_cost == quote_cost(estimate(client, knight, {"nbEpochs": "6"}))
    assert run.created_by == alice and run.idempotency_key == uuid.UUID(
        form.hidden("idempotency_key")
    )
    # The worker sends the trigger: exactly one real one reaches Scenario.
    drive(lambda: launched(run), describe=lambda: run.state)
    assert sim_requests(dry_run=False, model_id=knight.remote_id).count() == 1


@pytest.mark.worker
def test_a_double_submit_makes_one_run(
    scenario, fast_lifecycle, celery_worker_thread, drive, client, alice, knight
):
    client.force_login(alice)
    data = read_form(estimate(client, knight)).post_data()
    first = post(client, knight, action="launch", base=data)
    second = post(client, knight, action="launch", base=data)
    third = post(client, knight, action="launch", base=data, headers=HTMX_HEADERS)
    run = TrainingRun.objects.get()
    assert first["Location"] == second["Location"] == reverse("run_detail", args=[run.pk])
    assert third["HX-Redirect"] == reverse("run_detail", args=[run.pk])
    drive(lambda: launched(run), describe=lambda: run.state)
    assert sim_requests(dry_run=False).count() == 1


def test_a_changed_parameter_after_quoting_forces_a_new_quote(scenario, client, alice, knight):
    client.force_login(alice)
    data = read_form(estimate(client, knight)).post_data()
    response = post(client, knight, {"nbEpochs": "12"}, "launch", base=data)
    page = response.content.decode()
    assert "The parameters changed since the estimate" in page
    assert not TrainingRun.objects.exists()
    form = read_form(response)
    assert form.hidden("quote_id") is None
    # Estimating the new parameters asks Scenario again, and then the launch goes through.
    data = read_form(estimate(client, knight, {"nbEpochs": "12"})).post_data()
    assert sim_requests(dry_run=True).count() == 2
    assert post(client, knight, action="launch", base=data).status_code == 302
    assert TrainingRun.objects.get().parameters["nbEpochs"] == 12


def test_the_quote_goes_stale_when_a_field_is_left_changed(scenario, client, alice, knight):
    client.force_login(alice)
    data = read_form(estimate(client, knight)).post_data()
    unchanged = client.post(reverse("launch_validate"), {**data, "model": knight.remote_id})
    assert 'name="quote_id"' in unchanged.content.decode()
    changed = client.post(
        reverse("launch_validate"), {**data, "model": knight.remote_id, "rank": "8"}
    )
    assert "changed since the estimate" in changed.content.decode()
    assert 'name="quote_id"' not in changed.content.decode()


def test_a_remote_error_shows_in_words(scenario, client, alice, knight):
    client.force_login(alice)
    faults.inject(
        400,
        path_contains="/train",
        body='{"message": "Model is already training"}',
        content_type="application/json",
    )
    page = estimate(client, knight).content.decode()
    assert "Model is already training" in page
    assert "quote-panel ready" not in page


def test_an_unavailable_scenario_shows_in_words(scenario, client, alice, knight):
    client.force_login(alice)
    faults.inject(503, path_contains="/train")
    page = estimate(client, knight).content.decode()
    assert "Scenario did not answer" in page and "Try again in a moment" in page


def test_an_htmx_estimate_returns_the_form_only(scenario, client, alice, knight):
    client.force_login(alice)
    body = estimate(client, knight, headers=HTMX_HEADERS).content.decode()
    assert '<form id="launch-form"' in body and "<html" not in body
    assert "quote-panel ready" in body


def test_the_refresh_button_resyncs_the_models(scenario, client, alice, settings):
    settings.MODEL_REFRESH_INTERVAL_SECONDS = 0
    client.force_login(alice)
    scenario.create_model("Fresh voice", "elevenlabs-voice", images=3)
    response = client.post(reverse("launch_refresh"), follow=True)
    assert "Models refreshed from Scenario (1)." in response.content.decode()
    assert "Fresh voice" in response.content.decode()
    faults.inject(401, path_contains="/models")
    response = client.post(reverse("launch_refresh"), follow=True)
    assert response.status_code == 200
    assert "Could not refresh the models." in response.content.decode()


# --- Train again ----------------------------------------------------------------------------


def past_run(user, model, parameters):
    return make_run(user, model, "succeeded", parameters=parameters)


@pytest.mark.django_db
def test_train_again_prefills_the_past_runs_parameters(client, alice):
    model = make_model("flux.1-lora")
    run = past_run(
        alice,
        model,
        {"maxTrainSteps": 800, "nbEpochs": 4, "samplePrompts": ["a"], "wandbKey": "secret"},
    )
    client.force_login(alice)
    response = client.get(URL, {"from_run": run.pk})
    form = read_form(response)
    assert form.value("maxTrainSteps") == "800" and form.value("nbEpochs") == "4"
    assert form.post_data()["samplePrompts"] == ["a"]
    assert form.value("wandbKey") == ""
    assert form.value("learningRate") == "0.0001"
    assert f"run #{run.pk}" in response.content.decode()


@pytest.mark.django_db
def test_train_again_is_for_runs_the_user_may_see(client, alice, charlie):
    theirs = past_run(charlie, make_model("flux.1-lora"), {})
    client.force_login(alice)
    assert client.get(URL, {"from_run": theirs.pk}).status_code == 404
    assert client.get(URL, {"from_run": "nope"}).status_code == 400


@pytest.mark.django_db
def test_an_htmx_post_for_a_model_without_images_reloads_the_page(client, alice):
    empty = make_model("flux.1-lora", images=0)
    client.force_login(alice)
    response = post(client, empty, base={}, action="estimate", headers=HTMX_HEADERS)
    assert response["HX-Redirect"] == f"{URL}?model={empty.remote_id}"


@pytest.mark.django_db
def test_odd_digits_in_control_fields_are_ignored(client, alice):
    model = make_model("flux.1-lora")
    client.force_login(alice)
    values = {"from_run": "١٢", "samplePrompts": ["a", "b"]}
    response = post(client, model, values, "remove_prompt:١")
    assert response.status_code == 200
    assert read_form(response).post_data()["samplePrompts"] == ["a", "b"]
