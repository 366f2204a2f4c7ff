"""Monthly CU budgets: what counts as spent, the refusal message, who may override, the bar."""

from __future__ import annotations

import datetime as dt

import pytest
from django.template.loader import render_to_string
from django.utils import timezone

from tests.factories import make_bare_model, make_past_run
from training import budgets, services
from training.models import RunState, TrainingRun

NOW = dt.datetime(2025, 3, 15, 12, 0, tzinfo=dt.UTC)
THIS_MONTH = dt.datetime(2025, 3, 2, 9, 0, tzinfo=dt.UTC)
LAST_MONTH = dt.datetime(2025, 2, 27, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def budgeted(team_a):
    team_a.monthly_cu_budget = 100
    team_a.save()
    return team_a


@pytest.fixture
def spending(budgeted, alice, dave, charlie):
    """Team A this month: 30 billed + 25 quoted on active runs = 55 of 100."""
    make_past_run(alice, "Billed", launched=THIS_MONTH, quote=22, cost=20)
    make_past_run(dave, "Failed but billed", state=RunState.FAILED, launched=THIS_MONTH, cost=10)
    make_past_run(alice, "Queued", state=RunState.QUEUED, launched=THIS_MONTH, quote=15)
    make_past_run(alice, "Draft", state=RunState.DRAFT, launched=THIS_MONTH, quote=10)
    # Costs nothing: canceled or failed before any bill.
    make_past_run(alice, "Canceled", state=RunState.CANCELED, launched=THIS_MONTH, quote=40)
    make_past_run(dave, "Failed", state=RunState.FAILED, launched=THIS_MONTH, quote=40)
    # Not this month, not this team.
    make_past_run(alice, "February", launched=LAST_MONTH, quote=50, cost=50)
    make_past_run(charlie, "Team B", launched=THIS_MONTH, quote=60, cost=60)
    return budgeted


def test_spent_counts_bills_plus_quotes_of_runs_not_billed_yet(spending):
    status = budgets.status_for(spending, now=NOW)
    assert (status.billed, status.committed, status.spent) == (30, 25, 55)
    assert status.remaining == 45
    assert (status.percent, status.level) == (55.0, "ok")


def test_a_launch_that_never_started_costs_nothing_whatever_its_quote(spending, alice):
    make_past_run(alice, "Refused", state=RunState.NOT_STARTED, launched=THIS_MONTH, quote=40)
    status = budgets.status_for(spending, now=NOW)
    assert (status.billed, status.committed, status.spent) == (30, 25, 55)
    # It leaves room for the launch that does go ahead.
    assert budgets.check(spending, 45, now=NOW) is None


def test_a_run_counts_in_the_month_it_was_launched(spending):
    february = budgets.status_for(spending, now=dt.datetime(2025, 2, 10, tzinfo=dt.UTC))
    assert february.spent == 50


def test_the_month_follows_the_dashboard_time_zone(settings):
    settings.TIME_ZONE = "America/New_York"
    start, end = budgets.month_bounds(dt.datetime(2025, 3, 1, 3, 0, tzinfo=dt.UTC))
    # 3 am UTC on 1 March is still February in New York.
    assert (start.month, start.day, start.hour) == (2, 1, 0)
    assert (end.month, end.day) == (3, 1)


def test_the_bar_turns_amber_near_the_limit_and_red_past_it(spending, alice):
    make_past_run(alice, "More", launched=THIS_MONTH, cost=30)
    assert budgets.status_for(spending, now=NOW).level == "near"
    make_past_run(alice, "Too much", launched=THIS_MONTH, cost=30)
    status = budgets.status_for(spending, now=NOW)
    assert (status.level, status.percent, status.remaining) == ("over", 100.0, -15)


def test_a_team_without_a_budget_is_unlimited(team_b, charlie):
    make_past_run(charlie, "Anything", launched=THIS_MONTH, cost=5000)
    status = budgets.status_for(team_b, now=NOW)
    assert (status.limited, status.level, status.remaining) == (False, "unlimited", None)
    assert budgets.check(team_b, 1_000_000, now=NOW) is None


def test_a_quote_that_fits_passes(spending):
    assert budgets.check(spending, 45, now=NOW) is None


def test_a_quote_over_the_budget_is_refused_with_the_figures(spending):
    message = budgets.check(spending, 46, now=NOW)
    assert message == (
        "This run's quote of 46 CU would take Team A over its monthly budget: "
        "55 of 100 CU are spent or committed this month, 45 CU left. A team lead can override."
    )


def test_without_a_quote_only_a_team_already_at_its_budget_is_refused(spending, alice):
    assert budgets.check(spending, None, now=NOW) is None
    make_past_run(alice, "Rest", launched=THIS_MONTH, cost=45)
    assert budgets.check(spending, None, now=NOW) == (
        "Team A has used 100 of its 100 CU budget this month. A team lead can override."
    )


def test_the_lead_and_staff_may_override_artists_and_other_leads_may_not(
    budgeted, alice, bob, staff, django_user_model, team_b
):
    from training.models import Membership, Role

    other_lead = django_user_model.objects.create_user("erin")
    Membership.objects.create(user=other_lead, team=team_b, role=Role.LEAD)
    assert budgets.can_override(bob, budgeted)
    assert budgets.can_override(staff, budgeted)
    assert not budgets.can_override(alice, budgeted)
    assert not budgets.can_override(other_lead, budgeted)


def test_the_override_note_says_who_and_how_much(spending, bob):
    note = budgets.override_note(bob, spending, 80, now=NOW)
    assert note == (
        "Budget override by Bob: launched for 80 CU with 55 of 100 CU already spent or "
        "committed this month."
    )


def test_status_for_a_user_is_their_team_and_none_for_staff(spending, alice, staff):
    assert budgets.status_for_user(alice, now=NOW).team == spending
    assert budgets.status_for_user(staff, now=NOW) is None


def test_statuses_for_many_teams_take_one_query(spending, team_b, django_assert_num_queries):
    with django_assert_num_queries(1):
        statuses = budgets.statuses_for([spending, team_b], now=NOW)
    assert [s.spent for s in statuses] == [55, 60]


def test_the_budget_bar_partial(spending):
    html = render_to_string(
        "training/_budget.html", {"budget": budgets.status_for(spending, now=NOW)}
    )
    assert "55 / 100 CU" in html
    assert 'max="100" value="55.0"' in html
    assert "45 CU left in March" in html
    assert "25 committed by runs not billed yet" in html
    assert 'class="budget ok"' in html


def test_the_budget_bar_says_by_how_much_a_team_is_over(spending, alice):
    make_past_run(alice, "Big", launched=THIS_MONTH, cost=70)
    html = render_to_string(
        "training/_budget.html", {"budget": budgets.status_for(spending, now=NOW)}
    )
    assert "Over by 25 CU" in html and 'class="budget over"' in html


def test_the_budget_bar_renders_nothing_without_a_team():
    assert render_to_string("training/_budget.html", {"budget": None}).strip() == ""


def test_the_history_page_shows_the_budget_of_the_readers_team(client, spending, alice):
    client.force_login(alice)
    text = client.get("/history/").text
    assert "Budgets this month" in text and "/ 100 CU" in text


# --- enforcement at launch ----------------------------------------------------------------


@pytest.fixture
def open_model():
    return make_bare_model("Castle", "flux.1-lora")


@pytest.fixture
def nearly_spent(budgeted, alice):
    """Team A has 90 of its 100 CU spent this month."""
    make_past_run(alice, "Earlier", launched=timezone.now(), cost=90)
    return budgeted


def test_a_launch_that_fits_the_budget_goes_ahead(nearly_spent, alice, open_model):
    run = services.launch_run(user=alice, model=open_model, parameters={}, quote_cost=10)
    assert (run.state, run.budget_override) == (RunState.DRAFT, False)
    assert run.events.get().message == "Launched"


def test_a_launch_over_the_budget_is_refused_with_a_clear_message(nearly_spent, alice, open_model):
    with pytest.raises(services.LaunchRefused) as refused:
        services.launch_run(user=alice, model=open_model, parameters={}, quote_cost=11)
    assert refused.value.message == (
        "This run's quote of 11 CU would take Team A over its monthly budget: "
        "90 of 100 CU are spent or committed this month, 10 CU left. A team lead can override."
    )
    assert not TrainingRun.objects.filter(model=open_model).exists()


def test_an_artist_cannot_override_the_budget(nearly_spent, alice, open_model):
    with pytest.raises(services.LaunchRefused, match="Only a team lead can launch past"):
        services.launch_run(
            user=alice, model=open_model, parameters={}, quote_cost=50, override_budget=True
        )
    assert not TrainingRun.objects.filter(model=open_model).exists()


def test_a_lead_overrides_and_the_audit_trail_says_who_and_how_much(nearly_spent, bob, open_model):
    run = services.launch_run(
        user=bob, model=open_model, parameters={}, quote_cost=50, override_budget=True
    )
    assert run.budget_override is True
    event = run.events.get()
    assert (event.to_state, event.source, event.actor) == (RunState.DRAFT, "user", bob)
    assert event.message == (
        "Launched. Budget override by Bob: launched for 50 CU with 90 of 100 CU already "
        "spent or committed this month."
    )


def test_an_override_that_was_not_needed_is_not_recorded(budgeted, bob, open_model):
    run = services.launch_run(
        user=bob, model=open_model, parameters={}, quote_cost=5, override_budget=True
    )
    assert run.budget_override is False
    assert run.events.get().message == "Launched"


def test_an_active_run_counts_against_the_next_launch(budgeted, alice, open_model):
    services.launch_run(user=alice, model=open_model, parameters={}, quote_cost=60)
    with pytest.raises(services.LaunchRefused, match="60 of 100 CU"):
        services.launch_run(user=alice, model=open_model, parameters={}, quote_cost=60)


def test_a_team_without_a_budget_launches_freely(team_b, charlie, open_model):
    run = services.launch_run(user=charlie, model=open_model, parameters={}, quote_cost=10**6)
    assert run.budget_override is False


def test_the_form_names_the_overrun_in_cu(spending):
    status = budgets.status_for(spending, now=NOW)
    assert budgets.overrun(status, 45) == 0 and budgets.overrun_message(status, 45) == ""
    assert budgets.overrun(status, 85) == 40
    assert budgets.overrun_message(status, 85) == (
        "This run would take Team A 40 CU over its 100 CU monthly budget."
    )


def test_no_overrun_without_a_budget_a_quote_or_a_team(team_b):
    unlimited = budgets.status_for(team_b, now=NOW)
    assert budgets.overrun(unlimited, 10**6) == 0
    assert budgets.overrun(None, 10) == 0
