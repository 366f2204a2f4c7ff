"""The admin: teams, members and model assignment are editable; runs are a read-only record."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories import make_bare_model, make_run
from training import services
from training.models import RunState


@pytest.fixture
def run(alice):
    run = make_run(alice, make_bare_model("Knight", remote_id="model_k"))
    services.transition(run, RunState.SUBMITTING, expected=[RunState.DRAFT], source="worker",
                        message="Sending to Scenario")  # fmt: skip
    return run


@pytest.mark.parametrize("name", ["team", "membership", "scenariomodel", "trainingrun"])
def test_every_lifecycle_model_has_an_admin_list(admin_client, run, name):
    response = admin_client.get(reverse(f"admin:training_{name}_changelist"))
    assert response.status_code == 200


def test_a_runs_admin_page_shows_its_events_and_edits_nothing(admin_client, run):
    response = admin_client.get(reverse("admin:training_trainingrun_change", args=[run.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Sending to Scenario" in page
    assert 'name="state"' not in page


def test_the_admin_says_why_a_launch_did_not_start(admin_client, run):
    services.transition(run, RunState.NOT_STARTED, expected=[RunState.SUBMITTING],
                        source="worker", error_message="Model is already training")  # fmt: skip
    listing = admin_client.get(reverse("admin:training_trainingrun_changelist")).content.decode()
    assert "Not started: Model is already training" in listing
    page = admin_client.get(reverse("admin:training_trainingrun_change", args=[run.pk]))
    assert "Not started: Model is already training" in page.content.decode()
    filtered = admin_client.get(
        reverse("admin:training_trainingrun_changelist"), {"state__exact": "not_started"}
    )
    assert f"/{run.pk}/change/" in filtered.content.decode()


def test_a_runs_admin_page_hides_secret_parameters(admin_client, run):
    run.parameters = {"rank": 16, "wandbKey": "wandb-secret-123"}
    run.save(update_fields=["parameters"])
    page = admin_client.get(reverse("admin:training_trainingrun_change", args=[run.pk]))
    text = page.content.decode()
    assert "(set, hidden)" in text and "rank" in text
    assert "wandb-secret-123" not in text


def test_staff_assign_a_model_to_a_team(admin_client, run, team_b):
    model = run.model
    url = reverse("admin:training_scenariomodel_change", args=[model.pk])
    response = admin_client.post(url, {"team": team_b.pk})
    assert response.status_code == 302
    model.refresh_from_db()
    assert model.team == team_b
    assert model.name == "Knight"  # what Scenario says is not editable here
