"""History's rollups: kept in the final transition, rebuilt from the runs, read by the page.

The figures read from the rollups are checked against the exact aggregates over the runs (the
ones the page computed before the rollups, and still computes with a search), for many
filters, readers and date ranges.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import re
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.urls import reverse
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.factories import at, make_bare_model, make_past_run, make_run
from training import figures, lifecycle, reports, rollups
from training.access import visible_runs
from training.models import Membership, Role, RunState, Team, TrainingRun

S = RunState
HISTORY = reverse("history")
TYPES = ("flux.1-lora", "sd-xl-lora", "elevenlabs-voice")
# Most runs end well; some fail, are canceled or never start; a few are still active.
STATES = [S.SUCCEEDED] * 6 + [S.FAILED] * 2 + [S.CANCELED, S.NOT_STARTED, S.RUNNING, S.QUEUED]
STATES += [S.WAITING, S.DRAFT, S.CANCEL_REQUESTED]


# --- a varied history -----------------------------------------------------------------------


@pytest.fixture
def erin(django_user_model, team_b):
    user = django_user_model.objects.create_user("erin", first_name="Erin", last_name="Moss")
    Membership.objects.create(user=user, team=team_b, role=Role.LEAD)
    return user


def make_varied_runs(people, count=220, seed=11) -> list[TrainingRun]:
    """Runs over five months, crossing weeks and months, with gaps in every figure."""
    rng = random.Random(seed)
    models = {kind: [make_bare_model(f"{kind} {i}", kind) for i in range(2)] for kind in TYPES}
    runs = []
    for _ in range(count):
        person = rng.choice(people)
        kind = rng.choice(TYPES)
        state = rng.choice(STATES)
        launched = at("2025-01-01") + dt.timedelta(days=rng.uniform(0, 150))
        ended = state in (S.SUCCEEDED, S.FAILED, S.CANCELED)
        queue = rng.lognormvariate(5, 1.2) if ended or state == S.RUNNING else None
        train = rng.lognormvariate(7, 0.6) if state in (S.SUCCEEDED, S.FAILED) else None
        quote = round(rng.uniform(1, 90), 1) if rng.random() < 0.9 else None
        cost = round(rng.uniform(0, quote or 50), 2) if ended and rng.random() < 0.8 else None
        runs.append(
            make_past_run(
                person, model=rng.choice(models[kind]), model_type=kind, state=state,
                launched=launched, queue=queue, train=train, quote=quote, cost=cost,
            )
        )  # fmt: skip
    return runs


@pytest.fixture
def varied_runs(alice, dave, bob, charlie, erin):
    return make_varied_runs([alice, dave, bob, charlie, erin])


def teams_of(user) -> list[Team]:
    if user.is_staff:
        return list(Team.objects.order_by("name"))
    membership = getattr(user, "membership", None)
    return [membership.team] if membership else []


def from_rollups(user, **params) -> figures.HistoryFigures:
    filters = reports.parse_filters({k: str(v) for k, v in params.items()}, user)
    assert not filters.errors
    return figures.history(user, filters, teams_of(user))


def exact(user, **params) -> figures.HistoryFigures:
    """The figures as the page computed them before the rollups: reports' exact aggregates
    over every matching run, one per figure."""
    filters = reports.parse_filters({k: str(v) for k, v in params.items()}, user)
    runs = reports.apply_filters(visible_runs(user), filters)
    cu_weeks, outcome_weeks = reports.weekly(runs, filters.stack)
    return figures.HistoryFigures(
        totals=reports.totals(runs),
        by_artist=reports.by_artist(runs),
        by_team=reports.by_team(runs) if user.is_staff else [],
        by_month=reports.by_month(runs),
        cu_weeks=cu_weeks,
        outcome_weeks=outcome_weeks,
    )


def close(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def assert_rows(got: list[dict], want: list[dict], keys) -> None:
    assert [row[keys[0]] for row in got] == [row[keys[0]] for row in want]
    for mine, theirs in zip(got, want, strict=True):
        for key in keys:
            assert close(mine[key], theirs[key]), (key, mine, theirs)


FIGURES = ("runs", "succeeded", "failed", "canceled", "not_started", "cu_spent", "queue_mean")
FIGURES += ("train_mean", "success_rate")


def assert_same_figures(got: figures.HistoryFigures, want: figures.HistoryFigures) -> None:
    for name in (*FIGURES[:-1], "cu_quoted"):
        assert close(getattr(got.totals, name), getattr(want.totals, name)), name
    assert got.totals.success_rate == want.totals.success_rate
    for name in ("queue_p90", "train_p90"):
        bucketed, true = getattr(got.totals, name), getattr(want.totals, name)
        assert (bucketed is None) == (true is None), name
        if true is not None and true >= 1:
            assert abs(bucketed / true - 1) <= rollups.P90_WITHIN, (name, bucketed, true)
    assert_rows(got.by_artist, want.by_artist, ("artist", "created_by_id", *FIGURES))
    assert_rows(got.by_team, want.by_team, ("team", "team_id", *FIGURES))
    assert_rows(got.by_month, want.by_month, ("month", *FIGURES))
    assert got.outcome_weeks == want.outcome_weeks
    assert got.cu_weeks.weeks == want.cu_weeks.weeks
    assert got.cu_weeks.keys == want.cu_weeks.keys
    for key in want.cu_weeks.keys:
        assert got.cu_weeks.values[key] == pytest.approx(want.cu_weeks.values[key], abs=1e-6)


def expected_choices(user) -> tuple[list, list]:
    """The menus as they were read from the runs before the rollups."""
    runs = visible_runs(user)
    people = (
        get_user_model()
        .objects.filter(pk__in=runs.values("created_by_id"))
        .order_by("first_name", "last_name", "username")
    )
    types = sorted(set(runs.values_list("model_type", flat=True)))
    return [person.pk for person in people], types


FILTERS = [
    {},
    {"stack": "type"},
    {"state": "failed"},
    {"state": "running"},
    {"state": "not_started"},
    {"type": "sd-xl-lora"},
    {"type": "sd-xl-lora", "stack": "type"},
    {"from": "2025-02-01"},
    {"to": "2025-03-31"},
    {"from": "2025-01-15", "to": "2025-04-10"},  # months, spans and days at both ends
    {"from": "2025-02-01", "to": "2025-02-28"},  # one whole month
    {"from": "2025-02-04", "to": "2025-02-08"},  # inside one week: days only
    {"from": "2025-03-03", "to": "2025-03-09"},  # one whole week
    {"from": "2025-03-09", "to": "2025-03-09"},  # one day
    {"from": "2025-03-20", "to": "2025-03-01"},  # backwards: nothing
    {"from": "2025-01-29", "to": "2025-03-04", "state": "succeeded", "stack": "type"},
    {"type": "flux.1-lora", "from": "2025-02-10", "to": "2025-05-02"},
]


@pytest.mark.parametrize("reader", ["staff", "bob", "alice", "charlie", "erin"])
def test_the_figures_from_rollups_are_those_over_the_runs(request, varied_runs, reader, dave):
    user = request.getfixturevalue(reader)
    others = [{"artist": dave.pk}, {"artist": dave.pk, "type": "flux.1-lora", "stack": "type"}]
    others += [{"artist": dave.pk, "from": "2025-02-12", "to": "2025-04-20", "state": "failed"}]
    if reader in ("staff", "bob", "erin"):
        team = user.membership.team if reader != "staff" else Team.objects.get(name="Team B")
        others += [{"team": team.pk}, {"team": team.pk, "type": "sd-xl-lora", "from": "2025-03-05"}]
    for params in FILTERS + others:
        got, want = from_rollups(user, **params), exact(user, **params)
        assert_same_figures(got, want)


def test_the_weekly_chart_of_many_artists_draws_the_biggest_and_the_others(
    django_user_model, alice, staff, team_a, team_b
):
    crowd = [alice]
    for i in range(11):
        user = django_user_model.objects.create_user(f"artist{i}", first_name=f"Artist {i:02d}")
        Membership.objects.create(user=user, team=team_a if i % 2 else team_b)
        crowd.append(user)
    make_varied_runs(crowd, count=160, seed=5)
    for params in ({}, {"from": "2025-02-10", "to": "2025-04-20"}, {"type": "flux.1-lora"}):
        got, want = from_rollups(staff, **params), exact(staff, **params)
        assert len(want.cu_weeks.keys) == reports.STACK_SERIES + 1  # seven and "Others"
        assert_same_figures(got, want)


def test_the_filter_menus_offer_what_the_reader_can_see(varied_runs, staff, bob, charlie):
    for user in (staff, bob, charlie):
        for params in ({}, {"type": "sd-xl-lora"}, {"q": "flux"}):
            choices = from_rollups(user, **params).choices
            artists, types = expected_choices(user)
            assert [pk for pk, _ in choices.artists] == artists
            assert choices.types == types


def test_a_reader_in_no_team_sees_no_figures(varied_runs, django_user_model):
    loner = django_user_model.objects.create_user("loner")
    found = from_rollups(loner)
    assert (found.totals.runs, found.by_artist, found.by_month) == (0, [], [])
    assert found.choices.artists == [] and found.choices.types == []


def test_days_are_those_of_the_dashboards_time_zone(settings, alice, dave, bob):
    # At 11:00 UTC it is already midnight of the next day in Auckland (UTC+13 in summer).
    settings.TIME_ZONE = "Pacific/Auckland"
    runs = make_varied_runs([alice, dave, bob], count=80, seed=3)
    late = make_past_run(alice, "Late", launched=at("2025-01-31", "11:30"), quote=5, cost=5)
    assert rollups.local_day(late.created_at) == dt.date(2025, 2, 1)
    for params in ({}, {"from": "2025-02-01", "to": "2025-02-01"}, {"to": "2025-01-31"}):
        assert_same_figures(from_rollups(alice, **params), exact(alice, **params))
    assert runs


@pytest.mark.parametrize("reader", ["staff", "bob"])
def test_a_search_on_model_names_is_answered_exactly_from_the_runs(
    client, request, varied_runs, reader, staff
):
    user = request.getfixturevalue(reader)
    for params in ({"q": "sd-xl"}, {"q": "FLUX", "stack": "type"}, {"q": "1", "state": "failed"}):
        got, want = from_rollups(user, **params), exact(user, **params)
        assert_same_figures(got, want)
        assert (got.totals.queue_p90, got.totals.train_p90) == (
            want.totals.queue_p90,
            want.totals.train_p90,
        )  # exact, from the runs
        assert got.totals.p90_within is None
    client.force_login(staff)
    assert 'data-total="p90-note"' not in client.get(HISTORY, {"q": "sd-xl"}).text
    note = client.get(HISTORY).text
    assert 'data-total="p90-note">p90 from duration buckets, within ±15%.<' in note


def without_tokens(page: str) -> str:
    """The page less what changes at each request (the CSRF token, the time of the request)."""
    return re.sub(r'(CSRFToken": |csrfmiddlewaretoken" value=|since=)"?[\w]+', "", page)


def test_one_pass_and_one_query_per_grouping_give_the_same_page(client, varied_runs, staff):
    """On Postgres the page reads each table in one pass (GROUPING SETS); SQLite, and
    Postgres with ONE_PASS off, ask one query per grouping. The pages must be the same."""
    client.force_login(staff)
    pages = {}
    for one_pass in (True, False):
        figures.ONE_PASS = one_pass
        try:
            pages[one_pass] = [
                without_tokens(client.get(HISTORY, params).text)
                for params in ({}, {"stack": "type"}, {"from": "2025-01-15", "to": "2025-04-10"})
            ]
        finally:
            figures.ONE_PASS = True
    assert pages[True] == pages[False]


# --- kept by the lifecycle ------------------------------------------------------------------


def rollup_rows() -> dict:
    """Every rollup row, by table and key, its figures rounded past float noise."""
    rows = {}
    for table in rollups.TABLES:
        columns = [*rollups.key_columns(table), "week", "month", *rollups.sum_columns(table)]
        width = len(rollups.key_columns(table))
        for values in table.model.objects.values_list(*columns):
            figures_ = tuple(round(v, 6) if isinstance(v, float) else v for v in values[width:])
            rows[(table.name, *values[:width])] = figures_
    return rows


def test_the_factories_leave_the_rollups_a_rebuild_makes(varied_runs):
    kept = rollup_rows()
    rollups.rebuild()
    assert rollup_rows() == kept
    assert kept


def test_runs_ended_by_the_lifecycle_are_counted_as_a_rebuild_counts_them(alice, bob, model):
    endings = [
        (S.SUCCEEDED, [S.SUBMITTING, S.QUEUED, S.RUNNING], {"cu_cost": 12.5, "queue_duration": 40}),
        (S.FAILED, [S.SUBMITTING, S.QUEUED, S.RUNNING], {"train_duration": 300.5}),
        (S.CANCELED, [S.SUBMITTING, S.QUEUED, S.CANCEL_REQUESTED], {"queue_duration": 12}),
        (S.NOT_STARTED, [S.SUBMITTING], {}),
        (S.CANCELED, [], {}),
    ]
    for author in (alice, bob):
        for final, path, fields in endings:
            run = make_run(author, model, quote_cu_cost=20)
            for state in path:
                assert lifecycle.transition(run, state, expected=[run.state], source="worker")
            assert lifecycle.transition(run, final, expected=[run.state], source="worker", **fields)
    kept = rollup_rows()
    week, month, runs, *_ = kept[("training_rollupmonth", *month_row_of(run))]
    assert (week, runs) == (None, 4)  # the month's canceled runs of team A
    rollups.rebuild()
    assert rollup_rows() == kept
    totals = from_rollups(bob).totals
    assert (totals.runs, totals.succeeded, totals.failed, totals.canceled) == (10, 2, 2, 4)
    assert totals.cu_spent == 25 and totals.not_started == 2


def month_row_of(run) -> tuple:
    day = rollups.local_day(TrainingRun.objects.get(pk=run.pk).created_at)
    return day.replace(day=1), run.team_id, run.state


def test_a_run_that_ends_twice_is_counted_once(alice, model):
    run = make_run(alice, model, S.RUNNING, quote_cu_cost=10)
    stale = TrainingRun.objects.get(pk=run.pk)
    assert lifecycle.transition(run, S.SUCCEEDED, expected=[S.RUNNING], source="worker")
    # The same end redone (a task run again, a second poll): the compare-and-set refuses it.
    assert not lifecycle.transition(stale, S.SUCCEEDED, expected=[S.RUNNING], source="worker")
    assert not lifecycle.transition(stale, S.FAILED, expected=[S.RUNNING], source="worker")
    totals = from_rollups(alice).totals
    assert (totals.runs, totals.succeeded, totals.failed) == (1, 1, 0)
    kept = rollup_rows()
    rollups.rebuild()
    assert rollup_rows() == kept


def test_a_deleted_run_leaves_the_rollups(varied_runs, staff):
    finals = [run for run in varied_runs if run.is_final]
    finals[0].delete()
    TrainingRun.objects.filter(pk__in=[run.pk for run in finals[1:40]]).delete()
    for run in finals[40:]:
        TrainingRun.objects.filter(pk=run.pk).only("pk").delete()
    kept = rollup_rows()
    rollups.rebuild()
    assert rollup_rows() == kept
    # Every final run is gone, so only active runs are counted, and no empty row is left.
    assert all(table.model.objects.filter(runs__lte=0).count() == 0 for table in rollups.TABLES)
    assert from_rollups(staff).totals.runs == TrainingRun.objects.count()
    assert all(table.model.objects.count() == 0 for table in rollups.TABLES)


def test_deleting_one_of_two_runs_of_a_row_keeps_the_other(alice, model):
    first = make_past_run(alice, model=model, launched=at("2025-03-03"), quote=5, cost=4)
    make_past_run(alice, model=model, launched=at("2025-03-03", "11:00"), quote=7, cost=6)
    first.delete()
    totals = from_rollups(alice).totals
    assert (totals.runs, totals.cu_spent, totals.cu_quoted) == (1, 6, 7)


def test_the_rebuild_command_recomputes_every_row(varied_runs):
    kept = rollup_rows()
    out = StringIO()
    with connection.cursor() as cursor:  # a fix made straight in the database
        cursor.execute("DELETE FROM training_rollupspan")
        cursor.execute("UPDATE training_rollupday SET runs = runs + 5")
    call_command("rebuild_rollups", stdout=out)
    assert "Rollups rebuilt" in out.getvalue() and "training_rollupday" in out.getvalue()
    assert rollup_rows() == kept
    call_command("rebuild_rollups", stdout=StringIO())
    assert rollup_rows() == kept


# --- p90 from buckets -----------------------------------------------------------------------


def exact_percentile(values: list[float], fraction: float) -> float:
    """percentile_cont, as Postgres computes it."""
    ordered = sorted(values)
    rank = fraction * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def bucketed_percentile(values: list[float], fraction: float) -> float:
    counts = [0] * rollups.DURATION_BUCKETS
    for value in values:
        counts[rollups.bucket_of(value)] += 1
    return rollups.bucket_percentile(counts, fraction)


def samples(seed: int) -> dict[str, list[float]]:
    rng = random.Random(seed)
    return {
        "lognormal queue": [rng.lognormvariate(4.8, 1.0) for _ in range(5000)],
        "lognormal train": [rng.lognormvariate(7.2, 0.35) for _ in range(3000)],
        "wide": [rng.lognormvariate(6, 2.5) for _ in range(2000)],
        "uniform": [rng.uniform(1, 100_000) for _ in range(1000)],
        "two humps": [rng.gauss(120, 10) for _ in range(700)]
        + [rng.gauss(5400, 300) for _ in range(300)],
        "one value": [1234.5] * 50,
        "few": [30.0, 45.0, 3600.0],
        "one": [90.0],
        "bounds": [2 ** (k / 5) for k in range(0, 90)],
        "just under bounds": [2 ** (k / 5) * 0.999999 for k in range(1, 90)],
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_p90_from_buckets_is_within_the_bound_of_the_exact_one(seed):
    worst = 0.0
    for name, values in samples(seed).items():
        for fraction in (0.5, 0.9, 0.99):
            true = exact_percentile(values, fraction)
            error = abs(bucketed_percentile(values, fraction) / true - 1)
            assert error <= rollups.P90_WITHIN, (name, fraction, error)
            worst = max(worst, error)
    # The bound is a bucket's width; on smooth data the error is far below it.
    assert worst < rollups.P90_WITHIN
    assert rollups.P90_WITHIN == pytest.approx(0.1487, abs=1e-4)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.floats(min_value=1, max_value=2**18 - 1), min_size=1, max_size=60))
def test_any_durations_between_a_second_and_three_days_keep_the_bound(values):
    true = exact_percentile(values, 0.9)
    assert abs(bucketed_percentile(values, 0.9) / true - 1) <= rollups.P90_WITHIN


def test_the_pages_p90s_are_within_the_bound_of_percentile_cont(varied_runs, staff):
    got = from_rollups(staff).totals
    want = reports.totals(visible_runs(staff))
    assert abs(got.queue_p90 / want.queue_p90 - 1) <= rollups.P90_WITHIN
    assert abs(got.train_p90 / want.train_p90 - 1) <= rollups.P90_WITHIN


def test_no_duration_gives_no_p90():
    assert rollups.bucket_percentile([0] * rollups.DURATION_BUCKETS, 0.9) is None
    assert rollups.bucket_of(None) == rollups.NO_DURATION
    assert bucketed_percentile([0.0, 0.2], 0.9) < 1  # below a second: within the first bucket
