""" "Use this epoch" asks Scenario (the simulator, over HTTP), says what happened in words, and
the run remembers the epoch Scenario accepted."""

from __future__ import annotations

import time

import pytest
from django.urls import reverse

from simulator import faults
from simulator.models import SimModel
from tests.factories import add_samples, make_bare_model, make_run, make_sent_run
from tests.helpers import HTMX
from training import services
from training.models import EpochSample, RunEvent, RunState, TrainingRun


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
    local = make_bare_model(model.name, model.type, remote_id=model.id)
    run = make_run(
        user, local, RunState.SUCCEEDED,
        parameters={"nbEpochs": len(model.epochs), "samplePrompts": ["a portrait"]},
    )  # fmt: skip
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
def test_a_503_from_scenario_is_said_in_words_not_a_500(scenario, client, bob):
    model = _trained_remote_model(scenario)
    run = _run_for(bob, model)
    faults.inject(503, times=10, method="PUT", path_contains=model.id)
    client.force_login(bob)
    response = client.post(
        reverse("run_use_epoch", args=[run.pk]), {"epoch": model.epochs[0].epoch}, **HTMX
    )
    html = response.content.decode()
    assert response.status_code == 200
    # A 503 to a write may come after Scenario acted: the words say so, and to try again.
    assert "Scenario may not have switched the epoch" in html
    assert "Try again." in html
    # The first epoch was not taken: Scenario still uses its default, the last one.
    assert "In use" not in html.split('<tr data-epoch="1"')[1].split("</tr>")[0]
    assert "In use" in html.split('<tr data-epoch="2"')[1].split("</tr>")[0]
    assert SimModel.objects.get(id=model.id).selected_epoch == ""
    assert TrainingRun.objects.get(pk=run.pk).selected_epoch == ""


@pytest.mark.django_db(transaction=True)
def test_an_epoch_of_a_model_scenario_has_not_trained_is_refused_in_words(scenario, client, alice):
    remote = scenario.create_model("Flux portrait v4", images=4)
    local = make_bare_model(remote.name, remote.type, remote_id=remote.id)
    run = make_sent_run(alice, RunState.SUCCEEDED, model=local)
    add_samples(run, epochs=2, prompts=1)
    client.force_login(alice)
    response = client.post(
        reverse("run_use_epoch", args=[run.pk]), {"epoch": f"epoch-{run.pk}-0"}, **HTMX
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "Scenario did not switch the epoch: epoch can only be set on a trained model" in html
    assert 'class="error-box epoch-notice"' in html
    assert "In use" not in html.split('<tr data-epoch="1"')[1].split("</tr>")[0]
    assert html.count("Use this epoch") == 2
    assert TrainingRun.objects.get(pk=run.pk).selected_epoch == ""


@pytest.mark.django_db(transaction=True)
def test_without_javascript_the_answer_comes_back_as_a_message(scenario, client, alice):
    model = _trained_remote_model(scenario)
    run = _run_for(alice, model)
    client.force_login(alice)
    response = client.post(
        reverse("run_use_epoch", args=[run.pk]), {"epoch": model.epochs[1].epoch}, follow=True
    )
    assert "Epoch 2 is now the model&#x27;s epoch." in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_the_chosen_epoch_is_still_in_use_after_a_reload(scenario, client, alice):
    model = _trained_remote_model(scenario, epochs=3)
    run = _run_for(alice, model)
    second = model.epochs[1].epoch
    client.force_login(alice)
    client.post(reverse("run_use_epoch", args=[run.pk]), {"epoch": second}, **HTMX)

    run.refresh_from_db()
    assert (run.selected_epoch, run.selected_epoch_by) == (second, alice)
    # Not a change of state: the audit trail stays as it was.
    assert not RunEvent.objects.filter(run=run).exists()
    for page in (
        client.get(reverse("run_detail", args=[run.pk])),
        client.get(reverse("run_samples", args=[run.pk]), **HTMX),
    ):
        html = page.content.decode()
        chosen = html.split('<tr data-epoch="2"')[1].split("</tr>")[0]
        assert 'class="in-use"' in chosen
        assert '<span class="pill in-use">In use</span>' in chosen
        assert "chosen by Alice" in chosen
        assert '<button class="btn small" type="button" disabled>Use this epoch</button>' in chosen
        assert html.count('<button class="btn small" type="submit">Use this epoch</button>') == 2
        assert html.count("In use</span>") == 1


@pytest.mark.django_db(transaction=True)
def test_a_failed_second_choice_keeps_the_first(scenario, client, bob, alice):
    model = _trained_remote_model(scenario)
    run = _run_for(alice, model)
    first, second = (epoch.epoch for epoch in model.epochs)
    client.force_login(bob)
    url = reverse("run_use_epoch", args=[run.pk])
    client.post(url, {"epoch": first}, **HTMX)
    faults.inject(400, times=1, method="PUT", path_contains=model.id)
    html = client.post(url, {"epoch": second}, **HTMX).content.decode()

    assert "Scenario did not switch the epoch" in html
    assert "Epoch 1" in html.split("In use")[0].rsplit("<tr", 1)[1]
    run.refresh_from_db()
    assert (run.selected_epoch, run.selected_epoch_by) == (first, bob)
    assert SimModel.objects.get(id=model.id).selected_epoch == first


@pytest.mark.django_db(transaction=True)
def test_without_javascript_a_refusal_comes_back_as_a_message(scenario, client, alice):
    model = _trained_remote_model(scenario)
    run = _run_for(alice, model)
    faults.inject(503, times=10, method="PUT", path_contains=model.id)
    client.force_login(alice)
    response = client.post(
        reverse("run_use_epoch", args=[run.pk]), {"epoch": model.epochs[0].epoch}, follow=True
    )
    assert response.status_code == 200
    assert "Scenario may not have switched the epoch" in response.content.decode()
    assert TrainingRun.objects.get(pk=run.pk).selected_epoch == ""


@pytest.mark.django_db
def test_choosing_an_epoch_on_a_later_run_of_the_model_frees_the_earlier_one(alice, bob):
    earlier = make_sent_run(alice, RunState.SUCCEEDED)
    later = make_sent_run(alice, RunState.SUCCEEDED, model=earlier.model)
    other_model = make_sent_run(alice, RunState.SUCCEEDED)
    services.record_epoch_choice(earlier, "000002", alice)
    services.record_epoch_choice(other_model, "000001", alice)
    services.record_epoch_choice(later, "000003", bob)

    chosen = dict(TrainingRun.objects.values_list("pk", "selected_epoch"))
    assert chosen == {earlier.pk: "", later.pk: "000003", other_model.pk: "000001"}
    assert TrainingRun.objects.get(pk=earlier.pk).selected_epoch_by is None
    assert TrainingRun.objects.get(pk=later.pk).selected_epoch_by == bob


@pytest.mark.django_db
def test_an_epoch_chosen_by_someone_since_deleted_is_still_in_use(client, alice, staff):
    run = make_sent_run(alice, RunState.SUCCEEDED)
    add_samples(run, epochs=2, prompts=1)
    services.record_epoch_choice(run, f"epoch-{run.pk}-1", staff)
    staff.delete()
    client.force_login(alice)
    html = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert html.count("In use</span>") == 1
    assert "chosen by" not in html


@pytest.mark.django_db
def test_a_run_whose_model_was_trained_again_offers_no_epoch_to_use(client, alice):
    earlier = make_sent_run(alice, RunState.SUCCEEDED)
    add_samples(earlier, epochs=2, prompts=1)
    services.record_epoch_choice(earlier, f"epoch-{earlier.pk}-1", alice)
    make_sent_run(alice, RunState.RUNNING, model=earlier.model)
    client.force_login(alice)

    for url in (
        reverse("run_detail", args=[earlier.pk]),
        reverse("run_samples", args=[earlier.pk]),
    ):
        html = client.get(url, **HTMX).content.decode()
        assert "These epochs can no longer be picked: the model was trained again" in html
        assert "Use this epoch" not in html and "In use</span>" not in html
    response = client.post(
        reverse("run_use_epoch", args=[earlier.pk]), {"epoch": f"epoch-{earlier.pk}-0"}, **HTMX
    )
    assert response.status_code == 400
    assert "latest finished training" in response.content.decode()
