"""Where the dashboard read Scenario's reference differently, each fix against the simulator.

Every test talks to the simulator over real HTTP and plays the worker by calling the service
functions the tasks call (as test_services_scenario.py does), so each situation is set
up exactly: a fourth training image, a typed default, a captcha, a dry run that launched, a
plan limit, a cooldown, a stage nobody knows, a stall, polls that never succeed, what Scenario
says it trained with, and epochs without sample images.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from simulator import faults, lifecycle
from simulator.models import SimJob, SimModel
from tests.factories import mirror
from tests.helpers import launch, poll_until, quick_knight
from tests.html import read_form
from tests.launch_form import estimate, post
from training import params, services, team_queue
from training import scenario as api
from training.models import RunEvent, RunState, ScenarioModel, Team, TrainingRun
from training.scenario import TryAgain

S = RunState
pytestmark = pytest.mark.usefixtures("broker")


def submitted(user, model, **parameters) -> TrainingRun:
    run = launch(user, model, **parameters)
    services.submit_run(run.pk)
    run.refresh_from_db()
    return run


def page(client, user, run) -> str:
    client.force_login(user)
    response = client.get(reverse("run_detail", args=[run.pk]))
    assert response.status_code == 200
    return response.content.decode()


@pytest.fixture
def knight(scenario):
    return quick_knight(scenario)


# --- GET /models lists only the first 3 training images ------------------------------------


def test_the_fourth_training_image_of_a_model_can_be_a_sample_source(scenario, client, alice):
    sim = scenario.create_model("Paladin", images=5)
    listed = next(m for m in scenario.client().iter_models() if m.id == sim.id)
    assert len(listed.training_images) == 3  # "the first 3 training images of the model"

    services.sync_models()
    model = ScenarioModel.objects.get(remote_id=sim.id)
    fourth = sim.images.order_by("created_at")[3].asset_id
    assert [image["id"] for image in model.training_images][3] == fourth

    client.force_login(alice)
    values = {"samplePrompts": ["a paladin at dawn"], "sampleSourceImages": [fourth]}
    response = estimate(client, model, values)
    assert "Not one of this model" not in response.content.decode()
    assert read_form(response).hidden("quote_id")


def test_a_sync_does_not_read_each_model_again_once_it_holds_all_its_images(scenario):
    from simulator.models import RequestLog

    sim = scenario.create_model("Paladin", images=5)
    services.sync_models()
    services.sync_models()
    reads = RequestLog.objects.filter(method="GET", path__endswith=f"/models/{sim.id}")
    assert reads.count() == 1


# --- A typed value is always sent --------------------------------------------------------------


def test_a_typed_rank_equal_to_scenarios_default_reaches_scenario(scenario, client, alice, knight):
    client.force_login(alice)
    form = read_form(estimate(client, knight, {"rank": "16", "nbEpochs": "2"}))
    response = post(client, knight, action="launch", base=form.post_data())
    assert response.status_code == 302
    run = TrainingRun.objects.get()
    assert run.parameters["rank"] == 16
    services.submit_run(run.pk)
    assert SimJob.objects.get().parameters["rank"] == 16


# --- Scenario's hint beside a failed run's error ---------------------------------------------


def test_a_failed_run_shows_scenarios_hint_beside_its_error(scenario, client, alice):
    scenario.set_speed(300)
    model = mirror(scenario.create_model("Failing knight", images=2))
    run = poll_until(submitted(alice, model, nbEpochs=2), lambda r: r.is_final)
    assert run.state == S.FAILED
    assert run.error_hint == lifecycle.FAILURE_HINT
    html = page(client, alice, run)
    assert "Scenario's hint:" in html and run.error_hint in html
    assert "loss became NaN" in html


# --- Professional voice cloning waits for a captcha ------------------------------------------


def test_a_professional_voice_clone_says_scenario_waits_for_the_users_captcha(
    scenario, client, alice
):
    scenario.set_speed(4)  # the 20 s of pending last 5 s
    voice = mirror(scenario.create_model("Narrator", type="elevenlabs-voice", images=2))
    run = submitted(alice, voice, cloneType="professional", language="en")
    run = poll_until(run, lambda r: r.stage in {"pending-captcha", "ready-for-captcha"})
    html = page(client, alice, run)
    assert "Scenario is waiting for you to solve a captcha in Scenario's app." in html
    assert "Waiting for your captcha" in html


def test_an_instant_voice_clone_asks_for_no_captcha(scenario, client, alice):
    scenario.set_speed(4)
    voice = mirror(scenario.create_model("Narrator", type="elevenlabs-voice", images=2))
    run = poll_until(submitted(alice, voice, cloneType="instant"), lambda r: r.stage)
    assert run.stage == "pending"
    assert "solve a captcha" not in page(client, alice, run)


# --- A dry run that launched ---------------------------------------------------------------


def test_a_dry_run_answer_with_a_job_raises_instead_of_quoting(scenario):
    sim = scenario.create_model("Rogue ignores-dry-run", images=2)
    with pytest.raises(api.DryRunLaunched) as raised:
        scenario.client().quote(sim.id, {"nbEpochs": 2})
    assert raised.value.launch.job.id == SimJob.objects.get().id


def test_a_dry_run_that_launched_is_recorded_as_a_run_and_said_loudly(scenario, client, alice):
    scenario.set_speed(2)
    model = mirror(scenario.create_model("Rogue ignores-dry-run", images=2))
    client.force_login(alice)
    response = post(client, model, {"nbEpochs": "2"}, "estimate")
    run = TrainingRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("run_detail", args=[run.pk])
    assert run.state == S.QUEUED and run.job_id == SimJob.objects.get().id
    assert "STARTED A TRAINING" in run.events.first().message
    html = client.get(response["Location"]).content.decode()
    assert "Scenario STARTED A TRAINING when only a cost estimate was asked for" in html


# --- A plan limit or a cooldown is not a failed training ----------------------------------


def test_a_launch_past_the_plans_parallel_limit_waits_and_goes_out_when_a_place_frees(
    scenario, settings, client, alice
):
    settings.SIMULATOR_PARALLEL_TRAININGS = 1
    settings.LAUNCH_LIMIT_PROBE_SECONDS = 30
    scenario.set_speed(2)
    first = submitted(alice, mirror(scenario.create_model("First", images=2)), nbEpochs=2)
    assert first.state == S.QUEUED
    second_model = mirror(scenario.create_model("Second", images=2))
    second = submitted(alice, second_model, nbEpochs=2)

    assert second.state == S.WAITING and not second.error_message
    assert "parallel trainings" in second.waiting_reason
    team = second.team
    team.refresh_from_db()
    assert team.learned_limit == 1  # what ran when Scenario said no
    assert 25 < (team.learned_limit_probe_at - timezone.now()).total_seconds() <= 30
    html = page(client, alice, second)
    assert "The launch is waiting, not failed." in html and "parallel trainings" in html
    assert team_queue.dispatch(team.pk) == 0  # no slot: nothing is sent

    scenario.client().cancel_training(first.model.remote_id)
    poll_until(first, lambda run: run.is_final)
    assert team_queue.dispatch(team.pk) == 1  # what the sweep does once a slot is free
    services.submit_run(second.pk)
    second.refresh_from_db()
    assert second.state == S.QUEUED and second.waiting_reason == ""
    assert SimJob.objects.filter(model_id=second_model.remote_id).count() == 1


def test_a_cooldown_429_waits_for_its_remaining_seconds_without_failing(
    scenario, client, alice, knight
):
    body = {"message": "Too many launches: cool down", "details": {"remainingSeconds": 42}}
    faults.inject(429, method="PUT", path_contains="/train", body=json.dumps(body),
                  content_type="application/json")  # fmt: skip
    run = submitted(alice, knight, nbEpochs=2)
    assert run.state == S.WAITING and not run.error_message
    assert "wait 42 s" in run.waiting_reason
    team = run.team
    team.refresh_from_db()
    assert 40 < (team.cooldown_until - timezone.now()).total_seconds() <= 42
    assert team_queue.dispatch(team.pk) == 0
    Team.objects.filter(pk=team.pk).update(cooldown_until=timezone.now())  # the pause is over
    assert team_queue.dispatch(team.pk) == 1
    services.submit_run(run.pk)
    run.refresh_from_db()
    assert run.state == S.QUEUED


def test_a_plain_rate_limit_still_retries_through_the_task(scenario, alice, knight):
    faults.inject(429, method="PUT", path_contains="/train", retry_after=1)
    run = launch(alice, knight, nbEpochs=2)
    with pytest.raises(TryAgain):
        services.submit_run(run.pk)
    run.refresh_from_db()
    assert run.state == S.SUBMITTING and run.waiting_reason == ""


# --- Unknown states, stalls and give-up points ----------------------------------------------


def _answer_model_as(scenario, remote_id: str, **changes) -> None:
    """Make the simulator's next GET of the model answer its real body, changed."""
    body = dict(scenario.client().get_model(remote_id).raw)
    progress = dict(body.get("trainingProgress") or {})
    progress.update(changes.pop("trainingProgress", {}))
    body.update(changes, trainingProgress=progress)
    faults.inject(200, method="GET", path_contains=f"/models/{remote_id}",
                  body=json.dumps({"model": body}), content_type="application/json")  # fmt: skip


def test_an_unknown_status_and_stage_are_said_and_a_stalled_run_is_settled_by_the_lead(
    scenario, settings, client, alice, bob
):
    settings.STALL_AFTER_SECONDS = 600
    scenario.set_speed(0.5)
    model = mirror(scenario.create_model("Knight", images=2))
    run = submitted(alice, model, nbEpochs=2)
    an_hour_ago = int((time.time() - 3600) * 1000)
    progress = {"stage": "waiting-for-gpu", "updatedAt": an_hour_ago}
    _answer_model_as(scenario, model.remote_id, status="copying", trainingProgress=progress)
    services.poll_run(run.pk)
    run.refresh_from_db()

    assert run.state == S.QUEUED  # not guessed into another state
    assert (run.remote_model_status, run.stage) == ("copying", "waiting-for-gpu")
    assert services.is_stalled(run)
    # Polled rarely from now on, not every few seconds.
    assert (run.next_poll_at - timezone.now()).total_seconds() > settings.POLL_QUEUED_SECONDS
    html = page(client, alice, run)
    assert "Stalled · Scenario says: being copied, waiting for gpu" in html
    assert "A team lead can settle it." in html and "Settle it as failed" not in html
    assert client.post(reverse("run_settle", args=[run.pk])).status_code == 403

    html = page(client, bob, run)
    assert "Settle it as failed" in html
    response = client.post(reverse("run_settle", args=[run.pk]))
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.state == S.FAILED
    event = run.events.last()
    assert event.actor == bob and event.to_state == S.FAILED
    assert "Settled by" in event.message and "copying" in event.message
    assert "Settled by" in page(client, bob, run)


def test_a_run_that_moves_is_not_stalled_and_cannot_be_settled(
    scenario, settings, client, bob, knight
):
    settings.STALL_AFTER_SECONDS = 600
    run = submitted(bob, knight, nbEpochs=2)
    assert not services.is_stalled(run)
    client.force_login(bob)
    client.post(reverse("run_settle", args=[run.pk]))
    run.refresh_from_db()
    assert run.state == S.QUEUED
    assert not RunEvent.objects.filter(run=run, message__startswith="Settled").exists()


def test_polls_that_never_succeed_end_the_run_failed_saying_why(
    scenario, settings, client, alice, knight
):
    settings.POLL_GIVE_UP_FAILURES = 3
    scenario.set_speed(0.5)
    run = submitted(alice, knight, nbEpochs=2)
    faults.inject(401, times=10, method="GET", path_contains=f"/models/{knight.remote_id}")
    for _ in range(3):
        services.poll_run(run.pk)
    run.refresh_from_db()
    assert run.state == S.FAILED
    assert "could not be read 3 times in a row" in run.error_message
    assert "may still be training on Scenario" in page(client, alice, run)


def test_a_launch_that_meets_only_transient_failures_gives_up_saying_why(
    scenario, settings, alice, knight
):
    settings.LAUNCH_GIVE_UP_SECONDS = 60
    faults.inject(429, times=5, method="PUT", path_contains="/train")
    run = launch(alice, knight, nbEpochs=2)
    TrainingRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(hours=2))
    services.submit_run(run.pk)
    run.refresh_from_db()
    assert run.state == S.FAILED
    assert run.error_message.startswith("Gave up launching after 120 minutes")
    assert not SimJob.objects.exists()


# --- What Scenario says it trained with, beside what was sent ------------------------------


def test_the_run_page_shows_what_scenario_trained_with_and_marks_each_difference(
    scenario, client, alice, knight
):
    run = poll_until(submitted(alice, knight, nbEpochs=2), lambda r: r.is_final)
    assert run.remote_parameters["rank"] == 16  # filled in by Scenario, never sent
    assert "rank" not in run.parameters
    html = page(client, alice, run)
    assert "Scenario says it used" in html
    rank_row = parameter_row(html, "rank")
    assert "not sent" in rank_row and "16" in rank_row and "differs" in rank_row
    assert "differs" not in parameter_row(html, "nbEpochs")


def parameter_row(html: str, name: str) -> str:
    """The row of the parameters table for one parameter name."""
    rows = html[html.index('<table class="table params') :].split("</table>")[0].split("<tr")
    return next(row for row in rows if f'mono">{name}</div>' in row)


# --- Epochs without sample images ------------------------------------------------------------


def test_a_flux_run_without_sample_prompts_can_still_have_its_epoch_picked(
    scenario, client, alice, knight
):
    run = poll_until(submitted(alice, knight, nbEpochs=2), lambda r: r.is_final)
    assert run.state == S.SUCCEEDED and not run.samples.exists()
    assert run.epoch_names == ["000001", "000002"]
    html = page(client, alice, run)
    assert html.count("Use this epoch") == 2  # the last one, in use, is a disabled button
    assert "these epochs have no images, and any of them can still be used" in html

    response = client.post(reverse("run_use_epoch", args=[run.pk]), {"epoch": "000001"})
    assert response.status_code == 302
    assert SimModel.objects.get(pk=knight.remote_id).selected_epoch == "000001"
    run.refresh_from_db()
    assert run.selected_epoch == "000001"


# --- Bounds and availability, as both readings now agree ------------------------------------


@pytest.mark.parametrize(
    ("model_type", "parameters"),
    [
        ("sd-xl-lora", {"learningRateTextEncoder": 0.001}),
        ("sd-xl-lora", {"maxTrainSteps": 40000}),
        ("sd-1_5", {"learningRateTextEncoder": 0.001}),
        ("zimage-lora", {"maxTrainSteps": 500, "learningRateTextEncoder": 0.0005}),
        ("elevenlabs-voice", {"cloneType": "professional", "age": "old", "gender": "male"}),
    ],
)
def test_what_the_table_now_offers_scenario_takes(scenario, model_type, parameters):
    clean, errors = params.validate(model_type, parameters, 2)
    assert errors == {}
    sim = scenario.create_model("Any", type=model_type, images=2)
    sent = params.request_parameters(model_type, clean, 2)
    assert scenario.client().quote(sim.id, sent).cost > 0


def test_sdxl_text_encoder_rate_above_the_maximum_is_refused_by_both(scenario, scenario_schemas):
    assert (
        "learningRateTextEncoder"
        in params.validate("sd-xl-lora", {"learningRateTextEncoder": 0.002})[1]
    )
    sim = scenario.create_model("Any", type="sd-xl-lora", images=2)
    with scenario_schemas.sending_invalid_requests():
        with pytest.raises(api.BadRequest, match="learningRateTextEncoder"):
            scenario.client().quote(sim.id, {"learningRateTextEncoder": 0.002})
