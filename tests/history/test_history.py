"""The history page: filters, sorting, seek pagination, totals, breakdowns and access."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.factories import at, make_bare_model, make_past_run, seed_known_runs
from training import reports
from training.access import visible_runs
from training.models import RunState, TrainingRun

HISTORY = reverse("history")


@pytest.fixture
def known_runs(alice, dave, bob, charlie):
    return seed_known_runs(alice, dave, bob, charlie)


def ids(rows) -> list[int]:
    return [row.pk for row in rows]


def page_ids(client, user, **params) -> list[int]:
    client.force_login(user)
    response = client.get(HISTORY, params)
    assert response.status_code == 200
    return ids(response.context["page"].rows)


def names(known, *keys) -> set[int]:
    return {known[key].pk for key in keys}


# --- access -------------------------------------------------------------------------------


def test_it_asks_anonymous_visitors_to_sign_in(client):
    response = client.get(HISTORY)
    assert response.status_code == 302
    assert reverse("login") in response["Location"]


def test_an_artist_sees_the_runs_of_their_team_only(client, alice, known_runs):
    seen = set(page_ids(client, alice))
    assert seen == names(known_runs, "castle", "castle2", "forest", "voice", "night", "castle3")


def test_staff_see_every_team(client, staff, known_runs):
    assert set(page_ids(client, staff)) == {run.pk for run in known_runs.values()}


def test_an_artist_cannot_reach_another_team_through_the_team_filter(
    client, alice, known_runs, team_b
):
    assert known_runs["desert"].pk not in page_ids(client, alice, team=team_b.pk)


def test_the_team_filter_is_offered_to_leads_and_staff_not_artists(client, alice, bob, staff):
    client.force_login(alice)
    assert 'name="team"' not in client.get(HISTORY).text
    client.force_login(bob)
    assert 'name="team"' in client.get(HISTORY).text
    client.force_login(staff)
    assert 'name="team"' in client.get(HISTORY).text


# --- filters ------------------------------------------------------------------------------


def test_it_filters_by_team(client, staff, known_runs, team_b):
    assert page_ids(client, staff, team=team_b.pk) == [known_runs["desert"].pk]


def test_it_filters_by_artist(client, staff, dave, known_runs):
    assert set(page_ids(client, staff, artist=dave.pk)) == names(known_runs, "forest", "voice")


def test_it_filters_by_model_type(client, staff, known_runs):
    found = set(page_ids(client, staff, type="sd-xl-lora"))
    assert found == names(known_runs, "forest", "night")


def test_it_filters_by_state(client, staff, known_runs):
    assert page_ids(client, staff, state="failed") == [known_runs["castle2"].pk]
    assert page_ids(client, staff, state="running") == [known_runs["castle3"].pk]


def test_it_filters_by_a_date_range_including_both_days(client, staff, known_runs):
    found = set(page_ids(client, staff, **{"from": "2025-02-03", "to": "2025-02-05"}))
    assert found == names(known_runs, "forest", "desert")


def test_an_open_ended_date_range_works_from_either_side(client, staff, known_runs):
    assert set(page_ids(client, staff, **{"from": "2025-03-01"})) == names(
        known_runs, "night", "castle3"
    )
    assert set(page_ids(client, staff, to="2025-01-19")) == names(known_runs, "castle")


def test_it_searches_model_names_ignoring_case(client, staff, known_runs):
    found = set(page_ids(client, staff, q="castle"))
    assert found == names(known_runs, "castle", "castle2", "castle3")
    assert set(page_ids(client, staff, q="FOREST")) == names(known_runs, "forest", "night")


def test_filters_combine(client, staff, alice, known_runs):
    found = page_ids(client, staff, q="castle", artist=alice.pk, state="succeeded")
    assert found == [known_runs["castle"].pk]


def test_bad_filter_values_are_reported_and_ignored_with_a_400(client, staff, known_runs):
    client.force_login(staff)
    response = client.get(HISTORY, {"state": "exploded", "from": "yesterday", "team": "x"})
    assert response.status_code == 400
    assert len(response.context["page"].rows) == len(known_runs)
    assert "From: must be a date like 2025-01-31" in response.text
    assert "State: must be one of the choices" in response.text
    assert "Team: must be a number" in response.text


def test_filters_are_kept_in_sort_paging_and_csv_links(client, staff, known_runs, monkeypatch):
    monkeypatch.setattr(reports, "PAGE_SIZE", 1)
    client.force_login(staff)
    response = client.get(HISTORY, {"q": "castle", "type": "flux.1-lora"})
    for column in response.context["columns"]:
        assert "q=castle" in column["url"] and "type=flux.1-lora" in column["url"]
    assert "q=castle" in response.context["csv_url"]
    assert "type=flux.1-lora" in response.context["pager"]["last"]


# --- sorting ------------------------------------------------------------------------------

# The value each column sorts on, for the known runs; None sorts last either way.
SORT_VALUES = {
    "model": lambda r: r.model.name,
    "type": lambda r: r.model_type,
    "artist": lambda r: r.created_by.first_name,
    "team": lambda r: r.team.name,
    "launched": lambda r: r.created_at,
    "queue": lambda r: r.queue_duration,
    "train": lambda r: r.train_duration,
    "wall": lambda r: (r.finished_at - r.created_at).total_seconds() if r.finished_at else None,
    "state": lambda r: r.state,
    "quoted": lambda r: r.quote_cu_cost,
    "billed": lambda r: r.cu_cost,
    "discount": lambda r: r.cu_discount,
    "epochs": lambda r: 1 + max((s.epoch_index for s in r.samples.all()), default=-1),
    "forecast": lambda r: (
        (r.finished_at - r.forecast_finish_p50).total_seconds() if r.forecast_finish_p50 else None
    ),
}


def expected_order(runs, key: str, descending: bool) -> list[int]:
    read = SORT_VALUES[key]
    present = [r for r in runs if read(r) is not None]
    missing = sorted((r for r in runs if read(r) is None), key=lambda r: r.pk, reverse=descending)
    # Sort by id first, then by value: the stable sort leaves ties in id order.
    present.sort(key=lambda r: r.pk, reverse=descending)
    present.sort(key=read, reverse=descending)
    return ids(present + missing)


def test_every_column_is_sortable():
    assert set(SORT_VALUES) == set(reports.SORTS)


@pytest.mark.parametrize("key", list(SORT_VALUES))
@pytest.mark.parametrize("descending", [False, True], ids=["ascending", "descending"])
def test_it_sorts_on_each_column(client, staff, known_runs, key, descending):
    sort = f"-{key}" if descending else key
    expected = expected_order(known_runs.values(), key, descending)
    assert page_ids(client, staff, sort=sort) == expected


def test_the_newest_run_comes_first_by_default(client, staff, known_runs):
    assert page_ids(client, staff)[0] == known_runs["castle3"].pk


def test_a_header_link_flips_the_direction_of_the_sorted_column(client, staff, known_runs):
    client.force_login(staff)
    columns = {c["key"]: c for c in client.get(HISTORY, {"sort": "queue"}).context["columns"]}
    assert columns["queue"]["active"] and "sort=-queue" in columns["queue"]["url"]
    assert "sort=model" in columns["model"]["url"]  # text starts A→Z
    assert "sort=-billed" in columns["billed"]["url"]  # figures start with the biggest


def test_an_unknown_sort_falls_back_to_newest_first(client, staff, known_runs):
    assert page_ids(client, staff, sort="password") == page_ids(client, staff)


# --- seek pagination ----------------------------------------------------------------------


@pytest.fixture
def many_runs(alice, dave):
    """23 runs with ties and gaps in every sortable figure, to walk page by page."""
    runs = []
    for i in range(23):
        runs.append(
            make_past_run(
                alice if i % 2 else dave,
                f"Model {i % 5}",
                model_type=("flux.1-lora", "sd-xl-lora", "sd-1_5-lora")[i % 3],
                state=(RunState.SUCCEEDED, RunState.FAILED, RunState.RUNNING)[i % 3],
                launched=at(f"2025-01-{1 + i % 9:02d}"),
                queue=None if i % 4 == 0 else float(i % 6) * 10,
                train=None if i % 3 == 2 else float(i % 5) * 100,
                quote=float(i % 7),
                cost=None if i % 3 == 2 else float(i % 4),
                discount=None if i % 2 else 0.5,
                epochs=i % 3,
            )
        )
    return runs


def walk_forward(runs, filters, size):
    seen, cursor = [], ""
    for _ in range(100):
        page = reports.page_of(runs, filters, after=cursor, size=size)
        seen += ids(page.rows)
        if not page.has_next:
            return seen
        cursor = page.next_cursor
    raise AssertionError("pagination did not end")


def walk_backward(runs, filters, size):
    page = reports.page_of(runs, filters, last=True, size=size)
    seen = ids(page.rows)
    while page.has_previous:
        page = reports.page_of(runs, filters, before=page.previous_cursor, size=size)
        seen = ids(page.rows) + seen
    return seen


@pytest.mark.parametrize("key", list(SORT_VALUES))
def test_pages_walked_forward_and_back_cover_every_run_once_in_order(staff, many_runs, key):
    runs = reports.history_rows(visible_runs(staff))
    for sort in (key, f"-{key}"):
        filters = reports.parse_filters({"sort": sort}, staff)
        expected = ids(reports.sorted_runs(runs, filters))
        assert expected == expected_order(many_runs, key, sort.startswith("-"))
        assert walk_forward(runs, filters, size=4) == expected
        assert walk_backward(runs, filters, size=4) == expected


def test_the_page_links_lead_to_the_next_and_previous_pages(client, staff, many_runs, monkeypatch):
    monkeypatch.setattr(reports, "PAGE_SIZE", 10)
    client.force_login(staff)
    first = client.get(HISTORY, {"sort": "queue"})
    assert first.context["pager"]["previous"] == ""
    second = client.get(first.context["pager"]["next"])
    third = client.get(second.context["pager"]["next"])
    assert third.context["pager"]["next"] == ""
    walked = ids(first.context["page"].rows + second.context["page"].rows)
    walked += ids(third.context["page"].rows)
    assert walked == expected_order(many_runs, "queue", descending=False)
    back = client.get(third.context["pager"]["previous"])
    assert ids(back.context["page"].rows) == ids(second.context["page"].rows)
    # The last page is the last full page counted from the end.
    last = client.get(first.context["pager"]["last"])
    assert ids(last.context["page"].rows) == walked[-10:]
    assert last.context["pager"]["next"] == ""
    # "First" leads somewhere from every page but the first; "Last" likewise.
    assert first.context["pager"]["first"] == "" and first.context["pager"]["last"]
    assert last.context["pager"]["last"] == "" and last.context["pager"]["first"]


def test_a_single_page_offers_no_first_or_last_link(client, staff, known_runs):
    client.force_login(staff)
    text = client.get(HISTORY).content.decode()
    pager = text[text.index('class="pager"') :]
    pager = pager[: pager.index("</nav>")]
    assert "<a " not in pager
    assert '<span class="btn small disabled">« First</span>' in pager
    assert '<span class="btn small disabled">Last »</span>' in pager


def test_a_mangled_cursor_is_refused_with_a_400_naming_it(client, staff, many_runs):
    client.force_login(staff)
    response = client.get(HISTORY, {"after": "not-a-cursor!"})
    assert response.status_code == 400
    assert "<code>after</code> is not a cursor of this list" in response.text


def test_a_cursor_from_another_sort_is_ignored(staff, many_runs):
    runs = reports.history_rows(visible_runs(staff))
    by_queue = reports.parse_filters({"sort": "queue"}, staff)
    cursor = reports.page_of(runs, by_queue, size=3).next_cursor
    by_default = reports.parse_filters({}, staff)
    first = reports.page_of(runs, by_default, size=3)
    assert ids(reports.page_of(runs, by_default, after=cursor, size=3).rows) == ids(first.rows)


def test_paging_and_sorting_answer_htmx_with_the_table_alone(client, staff, known_runs):
    client.force_login(staff)
    response = client.get(
        HISTORY, {"sort": "model"}, headers={"HX-Request": "true", "HX-Target": "history-table"}
    )
    assert response.status_code == 200
    assert response.text.lstrip().startswith('<div id="history-table"')
    assert "<html" not in response.text and "Budgets this month" not in response.text
    assert "Castle LoRA" in response.text


def test_page_and_sort_links_work_without_javascript(client, staff, known_runs):
    client.force_login(staff)
    text = client.get(HISTORY).text
    assert 'href="/history/?sort=model" hx-get="/history/?sort=model"' in text


# --- totals and breakdowns ----------------------------------------------------------------


def test_totals_for_every_run(staff, known_runs):
    totals = reports.totals(visible_runs(staff))
    assert (totals.runs, totals.succeeded, totals.failed, totals.canceled) == (7, 4, 1, 1)
    assert totals.success_rate == pytest.approx(4 / 5)
    assert totals.cu_spent == pytest.approx(9 + 4 + 20 + 14 + 3)
    assert totals.cu_quoted == pytest.approx(10 + 12 + 20 + 5 + 15 + 3 + 11)
    assert totals.queue_mean == pytest.approx((60 + 120 + 30 + 240 + 90 + 10 + 45) / 7)
    # Sorted queue times 10 30 45 60 90 120 240: rank 0.9·6 = 5.4, so 120 + 0.4·(240 − 120).
    assert totals.queue_p90 == pytest.approx(168)
    assert totals.train_mean == pytest.approx((600 + 300 + 1200 + 900 + 100) / 5)
    # Sorted train times 100 300 600 900 1200: rank 0.9·4 = 3.6, so 900 + 0.6·300.
    assert totals.train_p90 == pytest.approx(1080)


def test_totals_follow_the_filters(staff, known_runs):
    filters = reports.parse_filters({"type": "sd-xl-lora"}, staff)
    totals = reports.totals(reports.apply_filters(visible_runs(staff), filters))
    assert (totals.runs, totals.succeeded, totals.cu_spent) == (2, 2, 34)
    assert totals.queue_mean == pytest.approx(60)
    assert totals.queue_p90 == pytest.approx(30 + 0.9 * 60)
    assert totals.train_p90 == pytest.approx(900 + 0.9 * 300)


def test_a_single_value_is_its_own_p90_and_no_value_gives_none(staff, known_runs):
    only_desert = visible_runs(staff).filter(pk=known_runs["desert"].pk)
    totals = reports.totals(only_desert)
    assert (totals.queue_p90, totals.train_p90) == (10, 100)
    voice = reports.totals(visible_runs(staff).filter(pk=known_runs["voice"].pk))
    assert voice.train_p90 is None and voice.train_mean is None
    assert voice.success_rate is None  # canceled is not an outcome


def test_totals_of_nothing_are_zero_and_empty(staff, db):
    totals = reports.totals(visible_runs(staff))
    assert (totals.runs, totals.cu_spent, totals.queue_p90, totals.success_rate) == (
        0,
        0,
        None,
        None,
    )


def test_the_page_shows_the_totals(client, alice, known_runs):
    client.force_login(alice)
    text = client.get(HISTORY).text
    # Team A: six runs; 3 succeeded, 1 failed; 9 + 4 + 20 + 14 CU billed.
    assert 'data-total="runs">6<' in text
    assert 'data-total="success-rate">75%<' in text
    assert 'data-total="cu-spent">47<' in text
    assert 'data-total="queue-mean">1 min 38 s<' in text  # (60+120+30+240+90+45)/6 = 97.5


@pytest.fixture
def refused(known_runs, bob):
    """A launch of team A that Scenario refused: quoted, never trained, never billed."""
    run = make_past_run(
        bob, "Castle LoRA", state=RunState.NOT_STARTED, launched=at("2025-03-04"), quote=25,
        model=known_runs["castle"].model,
    )  # fmt: skip
    TrainingRun.objects.filter(pk=run.pk).update(error_message="Model is already training")
    return run


def test_a_launch_that_never_started_is_left_out_of_success_rates(staff, known_runs, refused):
    totals = reports.totals(visible_runs(staff))
    assert (totals.runs, totals.succeeded, totals.failed, totals.canceled) == (8, 4, 1, 1)
    assert totals.not_started == 1
    assert totals.success_rate == pytest.approx(4 / 5)  # as without it
    # Its quote was for a training that never happened: it is neither spent nor quoted.
    assert totals.cu_spent == pytest.approx(9 + 4 + 20 + 14 + 3)
    assert totals.cu_quoted == pytest.approx(10 + 12 + 20 + 5 + 15 + 3 + 11)
    bob_row = next(r for r in reports.by_artist(visible_runs(staff)) if r["artist"] == "Bob")
    assert (bob_row["runs"], bob_row["not_started"], bob_row["success_rate"]) == (2, 1, 1.0)
    march = reports.by_month(visible_runs(staff))[0]
    assert (march["not_started"], march["success_rate"]) == (1, 1.0)
    week = next(p for p in reports.weekly(visible_runs(staff), "type")[1] if p.not_started)
    assert (week.succeeded, week.failed, week.not_started, week.rate) == (1, 0, 1, 1.0)


def test_the_history_filters_and_counts_runs_that_never_started(client, alice, refused):
    assert page_ids(client, alice, state="not_started") == [refused.pk]
    text = client.get(HISTORY).text
    assert '<option value="not_started">Not started</option>' in text
    assert 'data-total="success-rate">75%<' in text  # team A as before: 3 of 4
    assert 'data-total="not-started">1<' in text
    filtered = client.get(HISTORY, {"state": "not_started"}).text
    assert "Not started" in filtered and 'data-total="success-rate">—<' in filtered


def test_the_breakdown_by_artist(staff, known_runs):
    rows = {row["artist"]: row for row in reports.by_artist(visible_runs(staff))}
    assert set(rows) == {"Alice", "Dave", "Bob", "Charlie"}
    assert (rows["Alice"]["runs"], rows["Alice"]["cu_spent"]) == (3, 13)
    assert rows["Alice"]["success_rate"] == pytest.approx(0.5)
    assert rows["Dave"]["queue_mean"] == pytest.approx(135)
    assert rows["Dave"]["success_rate"] == 1.0
    assert [row["artist"] for row in reports.by_artist(visible_runs(staff))][0] == "Dave"


def test_the_breakdown_by_team(staff, known_runs):
    rows = reports.by_team(visible_runs(staff))
    assert [(row["team"], row["runs"], row["cu_spent"]) for row in rows] == [
        ("Team A", 6, 47),
        ("Team B", 1, 3),
    ]
    assert rows[0]["success_rate"] == pytest.approx(0.75)


def test_staff_see_a_table_per_team_and_leads_do_not(client, staff, bob, known_runs):
    client.force_login(staff)
    text = client.get(HISTORY).content.decode()
    by_team = text[text.index('id="by-team"') : text.index('id="by-artist"')]
    assert "<th>Team</th>" in by_team
    assert "<td>Team A</td>" in by_team and "<td>Team B</td>" in by_team
    client.force_login(bob)
    assert 'id="by-team"' not in client.get(HISTORY).text


def test_the_breakdown_by_month(staff, known_runs):
    rows = reports.by_month(visible_runs(staff))
    months = [(row["month"].year, row["month"].month) for row in rows]
    assert months == [(2025, 3), (2025, 2), (2025, 1)]
    counts = [(row["runs"], row["succeeded"], row["cu_spent"]) for row in rows]
    assert counts == [(2, 1, 14), (3, 2, 23), (2, 1, 13)]


def test_the_page_shows_both_breakdowns_in_words(client, staff, known_runs):
    client.force_login(staff)
    text = client.get(HISTORY).content.decode()
    by_artist = text[text.index('id="by-artist"') : text.index('id="by-month"')]
    by_month = text[text.index('id="by-month"') :]
    assert "<th>Artist</th>" in by_artist and "<td>Dave</td>" in by_artist
    assert "<th>Month</th>" in by_month
    assert "<td>March 2025</td>" in by_month and "<td>January 2025</td>" in by_month


def test_the_weekly_cu_series_stacks_by_artist_or_type(staff, known_runs):
    runs = visible_runs(staff)
    by_artist = reports.weekly(runs, "artist")[0]
    assert sum(sum(v) for v in by_artist.values.values()) == pytest.approx(50)
    assert by_artist.keys[0] == "Dave"  # the biggest spender is drawn first
    by_type = reports.weekly(runs, "type")[0]
    assert set(by_type.keys) == {"flux.1-lora", "sd-xl-lora"}
    assert sum(by_type.values["sd-xl-lora"]) == pytest.approx(34)


def test_the_weekly_success_series(staff, known_runs):
    points = reports.weekly(visible_runs(staff), "type")[1]
    assert sum(p.succeeded for p in points) == 4
    assert [p.rate for p in points if p.failed] == [0.0]


def test_the_page_draws_three_svg_charts(client, staff, known_runs):
    client.force_login(staff)
    text = client.get(HISTORY).text
    assert text.count('<svg class="chart"') == 3
    assert "cdn" not in text.split("<svg", 1)[0].lower()


# --- query count --------------------------------------------------------------------------


def _bulk_runs(user, count, model):
    TrainingRun.objects.bulk_create(
        TrainingRun(
            created_by=user,
            team=user.membership.team,
            model=model,
            model_type=model.type,
            state=(RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELED)[i % 3],
            queue_duration=float(i % 50),
            train_duration=float(i % 70) * 10,
            quote_cu_cost=5.0,
            cu_cost=float(i % 5),
        )
        for i in range(count)
    )


def _history_queries(client, params):
    with CaptureQueriesContext(connection) as queries:
        assert client.get(HISTORY, params).status_code == 200
    return len(queries)


@pytest.mark.parametrize("params", [{}, {"sort": "-epochs", "q": "Model"}], ids=["plain", "sorted"])
def test_the_page_uses_as_many_queries_for_1000_runs_as_for_10(
    client, alice, dave, params, django_assert_num_queries
):
    model = make_bare_model("Model")
    _bulk_runs(alice, 5, model)
    _bulk_runs(dave, 5, model)
    client.force_login(alice)
    with_ten = _history_queries(client, params)
    _bulk_runs(alice, 500, model)
    _bulk_runs(dave, 490, model)
    assert TrainingRun.objects.count() == 1000
    with django_assert_num_queries(with_ten):
        client.get(HISTORY, params)


def test_the_htmx_table_uses_few_queries(client, alice, known_runs):
    client.force_login(alice)
    headers = {"HX-Request": "true", "HX-Target": "history-table"}
    with CaptureQueriesContext(connection) as queries:
        client.get(HISTORY, {"sort": "wall"}, headers=headers)
    # The session, the user and their team membership, then the page itself.
    assert len(queries) <= 4


def test_the_filter_form_keeps_the_sort_chosen_in_the_table(client, staff, known_runs):
    client.force_login(staff)
    headers = {"HX-Request": "true", "HX-Target": "history-table"}
    fragment = client.get(HISTORY, {"sort": "-queue"}, headers=headers).text
    assert '<input type="hidden" name="sort" value="-queue" form="history-filters">' in fragment


def test_a_person_in_no_team_sees_an_empty_history(client, django_user_model, known_runs):
    loner = django_user_model.objects.create_user("loner")
    client.force_login(loner)
    response = client.get(HISTORY)
    assert response.status_code == 200
    assert response.context["page"].rows == []
    assert "No runs match these filters." in response.text


def test_the_table_says_how_each_run_ended_against_its_forecast(client, staff, known_runs):
    client.force_login(staff)
    html = client.get(HISTORY, {"sort": "-forecast"}).content.decode()
    rows = {key: html.index(f"#{run.pk}<") for key, run in known_runs.items()}
    # Latest against its forecast first, runs without a forecast last.
    assert rows["castle2"] < rows["night"] < rows["forest"] < rows["castle"]
    assert ">5 min late<" in html and ">10 min early<" in html and ">on time<" in html
