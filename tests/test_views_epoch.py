""" "Use this epoch" asks Scenario (the simulator, over HTTP) and says what happened in words."""

from __future__ import annotations

import time

import pytest
from django.urls import reverse

from simulator import faults
from simulator.models import SimModel
from tests.test_views import HTMX
from training.models import EpochSample, RunState, ScenarioModel, TrainingRun


def _trained_remote_model(scenario, epochs=2):
    """A model the simulator has finished training, with its epochs' samples."""
    scenario.set_speed(2000)
    remote = scenario.create_model("Flux portrait v3", images=4)
    client = scenario.client()
    client.trigger(remote.id, {"nbEpochs": epochs, "samplePrompts": ["a portrait"]})
    deadline = time.monotonic() + 20
    model = client.get_model(remote.id)
    while model.status != "trained" and time.monotonic() < deadline:
        time.sleep(0.1)
        model = client.get_model(remote.id)
    assert model.status == "trained"
    return model


def _run_for(user, model) -> TrainingRun:
    local = ScenarioModel.objects.create(remote_id=model.id, name=model.name, type=model.type)
    run = TrainingRun.objects.create(
        created_by=user,
        team=user.membership.team,
        model=local,
        model_type=local.type,
        state=RunState.SUCCEEDED,
        parameters={"nbEpochs": len(model.epochs), "samplePrompts": ["a portrait"]},
    )
    for index, epoch in enumerate(model.epochs):
        asset = epoch.assets[0]
        EpochSample.objects.create(
            run=run,
            epoch=epoch.epoch,
            epoch_index=index,
            prompt_index=0,
            prompt="a portrait",
            asset_id=asset.asset_id,
            url=asset.url,
        )
    return run


@pytest.mark.django_db(transaction=True)
def test_use_this_epoch_sets_the_models_epoch_on_scenario(scenario, client, alice):
    model = _trained_remote_model(scenario)
    run = _run_for(alice, model)
    first = model.epochs[0].epoch
    client.force_login(alice)
    response = client.post(reverse("run_use_epoch", args=[run.pk]), {"epoch": first}, **HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert "Epoch 1 is now the model&#x27;s epoch." in html
    assert '<span class="pill in-use">In use</span>' in html
    assert SimModel.objects.get(id=model.id).selected_epoch == first


@pytest.mark.django_db(transaction=True)
def test_a_refusal_from_scenario_is_said_in_words_not_a_500(scenario, client, bob):
    model = _trained_remote_model(scenario)
    run = _run_for(bob, model)
    faults.inject(503, times=10, method="PUT", path_contains=model.id)
    client.force_login(bob)
    response = client.post(
        reverse("run_use_epoch", args=[run.pk]), {"epoch": model.epochs[0].epoch}, **HTMX
    )
    assert response.status_code == 200
    assert "Scenario did not switch the epoch" in response.content.decode()
    assert SimModel.objects.get(id=model.id).selected_epoch == ""


@pytest.mark.django_db(transaction=True)
def test_without_javascript_the_answer_comes_back_as_a_message(scenario, client, alice):
    model = _trained_remote_model(scenario)
    run = _run_for(alice, model)
    client.force_login(alice)
    response = client.post(
        reverse("run_use_epoch", args=[run.pk]), {"epoch": model.epochs[1].epoch}, follow=True
    )
    assert "Epoch 2 is now the model&#x27;s epoch." in response.content.decode()
