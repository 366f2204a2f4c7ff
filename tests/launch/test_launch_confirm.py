"""Before the launch: a confirmation that shows the quote, and everything that would refuse the
launch said on the form first (the model already training, no team, the override tick)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories import make_model, make_run
from tests.helpers import HTMX_HEADERS, page_of
from tests.html import read_form
from tests.launch_form import URL, estimate, post, quote_cost
from training.models import RunState, TrainingRun

# --- The confirmation -----------------------------------------------------------------------


def test_the_launch_button_leads_to_a_confirmation_that_shows_the_quote(
    scenario, client, alice, knight
):
    client.force_login(alice)
    response = estimate(client, knight, {"nbEpochs": "6", "samplePrompts": ["a knight"]})
    cost = quote_cost(response)
    data = read_form(response).post_data()
    confirmation = post(client, knight, action="confirm", base=data)
    page = page_of(confirmation)
    assert "<html" in page and "Confirm the launch" in page
    assert quote_cost(confirmation) == cost
    assert "Epochs</dt><dd>6" in page and "a knight" in page
    assert not TrainingRun.objects.exists()
    # Its own button launches, with what the form held.
    launch = post(client, knight, action="launch", base=read_form(confirmation).post_data())
    run = TrainingRun.objects.get()
    assert launch["Location"] == reverse("run_detail", args=[run.pk])
    # What the form showed is what is sent, its pre-filled defaults included.
    assert run.parameters == {
        "maxTrainSteps": 1200,
        "nbEpochs": 6,
        "samplePrompts": ["a knight"],
        "learningRate": 1e-4,
        "learningRateTextEncoder": 1e-5,
        "rank": 16,
    }
    assert run.quote_cu_cost == cost


def test_the_confirmation_goes_back_to_the_form_with_its_values(scenario, client, alice, knight):
    client.force_login(alice)
    data = read_form(estimate(client, knight, {"nbEpochs": "6"})).post_data()
    confirmation = read_form(post(client, knight, action="confirm", base=data))
    back = post(client, knight, action="edit", base=confirmation.post_data())
    form = read_form(back)
    assert form.value("nbEpochs") == "6" and "quote-panel ready" in page_of(back)
    assert not TrainingRun.objects.exists()


def test_with_htmx_the_confirmation_replaces_the_form_in_place(scenario, client, alice, knight):
    client.force_login(alice)
    data = read_form(estimate(client, knight)).post_data()
    body = page_of(post(client, knight, action="confirm", base=data, headers=HTMX_HEADERS))
    opening = '<form id="launch-form" class="card launch-form launch-confirm"'
    assert body.lstrip().startswith(opening)
    assert "<html" not in body and 'value="launch"' in body
    assert "hx-confirm" not in body  # the page asks, not a dialog


def test_the_form_launch_button_does_not_launch_by_itself(scenario, client, alice, knight):
    client.force_login(alice)
    page = page_of(estimate(client, knight))
    assert 'name="action" value="confirm"' in page
    assert 'name="action" value="launch"' not in page and "hx-confirm" not in page


# --- The model is training now --------------------------------------------------------------


def active_run(user, model, state):
    return make_run(user, model, state)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "state, words",
    [
        (RunState.DRAFT, "preparing the launch"),
        (RunState.SUBMITTING, "sending to scenario"),
        (RunState.QUEUED, "waiting in the queue"),
        (RunState.RUNNING, "training"),
    ],
)
def test_the_form_says_before_the_quote_who_is_training_the_model(client, alice, bob, state, words):
    model = make_model("flux.1-lora")
    run = active_run(bob, model, state)
    client.force_login(alice)
    page = page_of(client.get(URL, {"model": model.remote_id}))
    notice = page[page.index('id="training-now"') : page.index('id="quote-panel"')]
    assert "This model is training now" in notice
    assert f'href="{reverse("run_detail", args=[run.pk])}"' in notice
    assert f"run #{run.pk}" in notice and "launched by Bob" in notice
    assert f"({words})" in notice


@pytest.mark.django_db
def test_the_training_notice_stays_while_the_form_is_used(client, alice, bob):
    model = make_model("flux.1-lora")
    active_run(bob, model, RunState.QUEUED)
    client.force_login(alice)
    for action in ("add_prompt", "preset:medium"):
        assert "This model is training now" in page_of(post(client, model, action=action))


@pytest.mark.django_db
def test_a_finished_run_is_not_training_now(client, alice, bob):
    model = make_model("flux.1-lora")
    for state in (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELED):
        active_run(bob, model, state)
    client.force_login(alice)
    assert 'id="training-now"' not in page_of(client.get(URL, {"model": model.remote_id}))


@pytest.mark.django_db
def test_another_teams_run_is_mentioned_but_not_shown(client, alice, charlie):
    shared = make_model("flux.1-lora")  # assigned to no team: open to both
    run = active_run(charlie, shared, RunState.RUNNING)
    client.force_login(alice)
    page = page_of(client.get(URL, {"model": shared.remote_id}))
    assert "This model is training now</strong> for another team" in page
    assert f"run #{run.pk}" not in page and "Charlie" not in page


# --- Not offered when it will be refused ----------------------------------------------------


def test_staff_outside_a_team_are_told_before_the_quote_that_they_cannot_launch(
    scenario, client, staff, knight
):
    client.force_login(staff)
    page = page_of(client.get(URL, {"model": knight.remote_id}))
    assert page.count("Only members of a team can launch trainings") == 1
    assert 'value="confirm"' not in page
    # They may still see what it would cost, and are still not offered a launch.
    response = estimate(client, knight)
    assert "quote-panel ready" in page_of(response) and 'value="confirm"' not in page_of(response)
    data = read_form(response).post_data()
    refused = post(client, knight, action="confirm", base=data)
    assert "Confirm the launch" not in page_of(refused)
    assert page_of(refused).count("Only members of a team can launch trainings") == 1
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
def test_the_dashboard_offers_a_new_training_only_to_team_members(client, alice, staff):
    client.force_login(alice)
    assert "+ New training" in page_of(client.get(reverse("home")))
    client.force_login(staff)
    assert "+ New training" not in page_of(client.get(reverse("home")))
