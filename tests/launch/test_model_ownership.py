"""Teams never see each other's work: a model belongs to the team of its first launch.

Alice and Bob are team A, Charlie team B. An unassigned model is open to both teams until
someone launches it; a model staff marked shared stays open to both, and its picker card never
shows a sample produced by another team's run.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories import make_model
from tests.fixtures.workers import reload
from tests.html import read_form
from tests.launch_form import URL, estimate, post
from training import access, services
from training.models import EpochSample, RunState, ScenarioModel, TrainingRun


def picker(client) -> str:
    return client.get(URL).content.decode()


def test_after_alices_launch_charlie_no_longer_sees_or_launches_the_model(
    scenario, client, alice, bob, charlie, knight
):
    client.force_login(charlie)
    assert "Knight portraits" in picker(client), "an untrained, unassigned model is open to all"
    client.force_login(alice)
    assert "Knight portraits" in picker(client)

    form = read_form(estimate(client, knight, {"nbEpochs": "4"}))
    response = post(client, knight, action="launch", base=form.post_data())
    run = TrainingRun.objects.get()
    assert response.status_code == 302 and run.created_by == alice
    assert reload(knight).team == alice.membership.team

    client.force_login(bob)
    assert "Knight portraits" in picker(client), "Alice's team lead still has it"
    client.force_login(charlie)
    assert "Knight portraits" not in picker(client)
    page = client.get(URL, {"model": knight.remote_id}).content.decode()
    assert "not one your team can train" in page
    assert post(client, knight, base={}, action="estimate").status_code == 400
    assert post(client, knight, base={}, action="launch").status_code == 400
    with pytest.raises(services.LaunchRefused):
        services.launch_run(user=charlie, model=knight, parameters={"nbEpochs": 4})
    assert TrainingRun.objects.count() == 1
    assert client.get(reverse("run_detail", args=[run.pk])).status_code == 404


@pytest.mark.django_db
def test_of_two_teams_claiming_one_model_at_once_only_the_first_gets_it(team_a, team_b):
    model = make_model("flux.1-lora")
    # Both passed the picker's check while the model was still nobody's.
    assert access.claim_model(model, team_a) is True
    assert access.claim_model(model, team_b) is False
    assert reload(model).team == team_a
    assert access.claim_model(model, team_a) is True, "the owner launches it again"


@pytest.mark.django_db
def test_a_launch_that_is_refused_leaves_the_model_unclaimed(alice, team_a):
    team_a.monthly_cu_budget = 10
    team_a.save()
    model = make_model("flux.1-lora")
    with pytest.raises(services.LaunchRefused, match="budget"):
        services.launch_run(user=alice, model=model, parameters={}, quote_cost=50)
    assert reload(model).team is None and not TrainingRun.objects.exists()


@pytest.mark.django_db
def test_staff_mark_a_model_shared_in_the_admin(client, django_user_model, alice):
    model = make_model("flux.1-lora", team=alice.membership.team)
    admin = django_user_model.objects.create_superuser("admin", password="x")
    client.force_login(admin)
    url = reverse("admin:training_scenariomodel_change", args=[model.pk])
    assert 'name="shared"' in client.get(url).content.decode()
    response = client.post(url, {"team": model.team_id, "shared": "on"})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert reload(model).shared is True


@pytest.mark.worker
def test_a_shared_model_never_shows_charlie_the_sample_of_alices_run(
    scenario, fast_lifecycle, celery_worker_thread, drive, client, alice, charlie, knight
):
    run = services.launch_run(
        user=alice, model=knight, parameters={"nbEpochs": 2, "samplePrompts": ["a knight"]}
    )
    drive(lambda: reload(run).is_final, describe=lambda: reload(run).state)
    assert reload(run).state == RunState.SUCCEEDED
    services.sync_models(scenario.client())
    knight.refresh_from_db()
    samples = set(EpochSample.objects.filter(run=run).values_list("url", flat=True))
    # As on Scenario: after the training, the model's thumbnail is one of its samples.
    assert knight.thumbnail_url in samples
    client.force_login(charlie)
    assert "Knight portraits" not in picker(client)

    ScenarioModel.objects.filter(pk=knight.pk).update(shared=True)
    page = picker(client)
    assert "Knight portraits" in page, "staff shared it with every team"
    assert not any(url in page for url in samples), "a sample of Alice's run leaked"
    assert knight.training_images[0]["url"] in page, "the model's own training image instead"
    assert "status-trained" not in page, "no status pill from another team's training"
    shared_run = services.launch_run(user=charlie, model=knight, parameters={"nbEpochs": 2})
    assert shared_run.team == charlie.membership.team
    assert reload(knight).team == alice.membership.team and reload(knight).shared


@pytest.mark.django_db
def test_the_owning_team_still_sees_its_models_latest_sample(client, alice):
    make_model(
        "flux.1-lora",
        team=alice.membership.team,
        thumbnail_url="https://cdn.example.test/their-own-sample.png",
    )
    client.force_login(alice)
    assert "https://cdn.example.test/their-own-sample.png" in picker(client)
