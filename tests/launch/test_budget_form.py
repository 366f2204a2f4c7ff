"""The team's budget where people launch: the bar on the dashboard and the training form, the
warning next to an over-budget quote, the artist's refusal and the lead's override."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.factories import make_model, make_past_run
from tests.fixtures.workers import launches
from tests.helpers import HTMX_HEADERS, launched
from tests.html import read_form
from tests.launch_form import estimate, post, quote_cost
from training.models import RunState, TrainingRun

BUDGET = 2000
OVERRUN = 40


@pytest.fixture
def spent_1500(team_a, alice, dave):
    """Team A: a 2,000 CU budget, 1,200 billed and 300 quoted on a queued run this month."""
    team_a.monthly_cu_budget = BUDGET
    team_a.save()
    now = timezone.now()
    make_past_run(alice, "Billed", launched=now, quote=1250, cost=1200)
    make_past_run(dave, "Queued", state=RunState.QUEUED, launched=now, quote=300)
    return team_a


# --- The bar, with known figures ------------------------------------------------------------


@pytest.mark.django_db
def test_the_dashboard_shows_the_teams_budget_bar(client, alice, spent_1500):
    client.force_login(alice)
    page = client.get(reverse("home")).content.decode()
    month = timezone.localtime().strftime("%B")
    assert 'class="budget ok"' in page
    assert "1,500 / 2,000 CU" in page
    assert f"500 CU left in {month}" in page
    assert "1,200 billed, 300 committed by runs not billed yet" in page
    assert 'max="100" value="75.0"' in page


@pytest.mark.django_db
def test_the_dashboard_says_by_how_much_the_team_is_over(client, bob, spent_1500):
    make_past_run(bob, "Big", launched=timezone.now(), cost=560)
    client.force_login(bob)
    page = client.get(reverse("home")).content.decode()
    assert 'class="budget over"' in page and "Over by 60 CU" in page


@pytest.mark.django_db
def test_the_board_refresh_does_not_carry_the_bar(client, alice, spent_1500):
    client.force_login(alice)
    fragment = client.get(reverse("home_board"), headers=HTMX_HEADERS).content.decode()
    assert 'id="board"' in fragment and 'class="budget' not in fragment


@pytest.mark.django_db
def test_staff_in_no_team_see_no_budget_bar(client, staff, spent_1500):
    client.force_login(staff)
    assert 'class="budget' not in client.get(reverse("home")).content.decode()
    model = make_model("flux.1-lora")
    page = client.get(reverse("launch"), {"model": model.remote_id}).content.decode()
    assert 'id="launch-form"' in page and 'class="budget' not in page


@pytest.mark.django_db
def test_the_form_shows_the_budget_bar_by_the_quote_panel(client, alice, spent_1500):
    model = make_model("flux.1-lora")
    client.force_login(alice)
    page = client.get(reverse("launch"), {"model": model.remote_id}).content.decode()
    panel = page[page.index('id="quote-panel"') :]
    assert '<div class="quote-budget">' in panel
    assert "1,500 / 2,000 CU" in panel and "500 CU left in" in panel


@pytest.mark.django_db
def test_the_picker_alone_has_no_quote_panel_and_no_bar(client, alice, spent_1500):
    client.force_login(alice)
    assert 'class="budget' not in client.get(reverse("launch")).content.decode()


# --- Over budget, against the simulator -----------------------------------------------------


def spend_up_to_overrun(client, model, user, overrun=OVERRUN) -> float:
    """Give Team A a 2,000 CU budget with just enough spent that the default quote goes
    `overrun` CU past it; return the quote."""
    cost = quote_cost(estimate(client, model))
    team = user.membership.team
    team.monthly_cu_budget = BUDGET
    team.save()
    make_past_run(user, "Earlier", launched=timezone.now(), cost=BUDGET - cost + overrun)
    return cost


def launch_button(page: str) -> str:
    """The form's launch button's opening tag (it asks for the confirmation)."""
    match = re.search(r'<button class="btn primary"[^>]*value="confirm"[^>]*>', page, re.S)
    assert match, "no launch button"
    return match.group(0)


def over_message(overrun=OVERRUN) -> str:
    return f"This run would take Team A {overrun} CU over its 2,000 CU monthly budget."


def test_a_quote_that_fits_says_nothing_about_the_budget(scenario, client, bob, knight):
    client.force_login(bob)
    spend_up_to_overrun(client, knight, bob, overrun=0)
    page = estimate(client, knight).content.decode()
    assert "quote-panel ready" in page and "would take Team A" not in page
    assert 'name="override_budget"' not in page
    assert " disabled" not in launch_button(page)
    form = read_form(estimate(client, knight))
    assert post(client, knight, action="launch", base=form.post_data()).status_code == 302
    assert TrainingRun.objects.filter(model=knight).get().budget_override is False


def test_an_artist_sees_why_the_launch_button_is_disabled(scenario, client, alice, knight):
    client.force_login(alice)
    cost = spend_up_to_overrun(client, knight, alice)
    page = estimate(client, knight).content.decode()
    assert over_message() in page
    assert "Only a team lead can launch past the budget." in page
    assert 'name="override_budget"' not in page
    button = launch_button(page)
    assert " disabled" in button and 'aria-describedby="over-budget-why"' in button
    # The bar beside it has the figures the warning comes from.
    assert f"{BUDGET - cost + OVERRUN:,.0f} / 2,000 CU" in page


def test_an_artists_over_budget_launch_is_refused_in_words(scenario, client, alice, knight):
    client.force_login(alice)
    cost = spend_up_to_overrun(client, knight, alice)
    data = read_form(estimate(client, knight)).post_data()
    # The button is disabled, but a post that reaches the server anyway is refused there.
    response = post(client, knight, action="launch", base=data)
    page = response.content.decode()
    assert response.status_code == 200
    spent = BUDGET - cost + OVERRUN
    assert (
        f"This run&#x27;s quote of {cost:,.0f} CU would take Team A over its monthly budget: "
        f"{spent:,.0f} of 2,000 CU are spent or committed this month" in page
    )
    # Asking to override does not help an artist.
    data["override_budget"] = ["true"]
    page = post(client, knight, action="launch", base=data, headers=HTMX_HEADERS).content.decode()
    assert "Only a team lead can launch past the budget." in page
    assert '<form id="launch-form"' in page and "<html" not in page
    assert not TrainingRun.objects.filter(model=knight).exists()
    assert launches(knight) == 0


def test_the_lead_is_offered_an_explicit_override(scenario, client, bob, knight):
    client.force_login(bob)
    spend_up_to_overrun(client, knight, bob)
    response = estimate(client, knight)
    page = response.content.decode()
    assert over_message() in page and "Launch anyway (over budget)" in page
    assert page.count("As the team's lead you may launch past the budget") == 1
    assert "A team lead can override" not in page
    form = read_form(response)
    assert form.value("override_budget") is False
    button = launch_button(page)
    assert " disabled" not in button
    # Without the tick the form says, once and before any confirmation, where to tick.
    page = post(client, knight, action="confirm", base=form.post_data()).content.decode()
    assert page.count("Tick “Launch anyway” to launch past the budget.") == 1
    assert page.count(over_message()) == 1
    assert "A team lead can override" not in page
    assert "Confirm the launch" not in page
    # With the tick, the confirmation repeats the overrun beside the quote.
    data = form.post_data()
    data["override_budget"] = ["true"]
    page = post(client, knight, action="confirm", base=data).content.decode()
    assert "Confirm the launch" in page and over_message() in page
    assert not TrainingRun.objects.filter(model=knight).exists()


def test_leaving_a_field_keeps_the_bar_the_warning_and_the_ticked_box(
    scenario, client, bob, knight
):
    client.force_login(bob)
    spend_up_to_overrun(client, knight, bob)
    data = read_form(estimate(client, knight)).post_data()
    data["override_budget"] = ["true"]
    page = client.post(reverse("launch_validate"), {**data, "model": knight.remote_id})
    page = page.content.decode()
    assert '<div class="quote-budget">' in page and over_message() in page
    assert re.search(r'name="override_budget" value="true"\s+checked', page)
    # A new estimate is a new overrun: the box must be ticked again.
    form = read_form(estimate(client, knight, {"nbEpochs": "12", "override_budget": "true"}))
    assert form.value("override_budget") is False


@pytest.mark.worker
def test_the_leads_override_launches_and_the_trail_names_the_lead(
    scenario, fast_lifecycle, celery_worker_thread, drive, client, bob, knight
):
    client.force_login(bob)
    cost = spend_up_to_overrun(client, knight, bob)
    data = read_form(estimate(client, knight)).post_data()
    data["override_budget"] = ["true"]
    response = post(client, knight, action="launch", base=data)
    run = TrainingRun.objects.get(model=knight)
    assert response.status_code == 302
    assert response["Location"] == reverse("run_detail", args=[run.pk])
    assert run.budget_override is True and run.quote_cu_cost == cost
    event = run.events.get(to_state=RunState.DRAFT)
    assert (event.actor, event.source) == (bob, "user")
    spent = BUDGET - cost + OVERRUN
    assert event.message == (
        f"Launched. Budget override by Bob: launched for {cost:,.0f} CU with {spent:,.0f} of "
        "2,000 CU already spent or committed this month."
    )
    # The worker sends exactly one trigger to Scenario.
    drive(lambda: launched(run), describe=lambda: run.state)
    assert launches(knight) == 1
