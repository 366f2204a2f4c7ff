"""What a page or a refresh costs in queries, with one run and with many.

Counted over the whole request. An unchanged live refresh costs three queries: loading the
session, loading the user, and one small read of its token (the board: the team's stamp,
touching no run). A live refresh that renders costs one more: the rows it shows, read after
the token. A fragment read on demand (the samples grid, the audit trail, the finished
watcher) costs three. Pages cost a constant number, whatever the number of runs, epochs or
events.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories import add_event, add_samples, make_sent_run
from tests.helpers import HTMX
from training import services
from training.models import EventSource, RunState

FRAGMENT_BUDGET = 3
# A live refresh that renders: the token's read comes first, then the rows.
RENDER_BUDGET = FRAGMENT_BUDGET + 1
PAGE_BUDGET = 8


def _runs(user, count, *, epochs, state=RunState.RUNNING):
    runs = [make_sent_run(user, state) for _ in range(count)]
    for run in runs:
        add_samples(run, epochs=epochs, prompts=2)
        add_event(run, RunState.DRAFT, actor=user, source=EventSource.USER)
        add_event(run, state)
    return runs


@pytest.fixture(params=[(1, 1), (12, 6)], ids=["one run", "many runs"])
def runs(request, alice, dave):
    count, epochs = request.param
    made = _runs(alice, count, epochs=epochs)
    made += _runs(dave, count, epochs=epochs, state=RunState.SUCCEEDED)
    return made


@pytest.fixture(params=["alice", "bob", "staff"])
def viewer(request, client, alice, bob, staff):
    person = {"alice": alice, "bob": bob, "staff": staff}[request.param]
    client.force_login(person)
    return person


@pytest.mark.django_db
def test_a_board_refresh_that_renders_costs_at_most_four_queries(
    client, runs, viewer, django_assert_max_num_queries
):
    ids = ",".join(str(run.pk) for run in runs)
    with django_assert_max_num_queries(RENDER_BUDGET):
        response = client.get(reverse("home_board"), {"ids": ids}, **HTMX)
    assert response.status_code == 200


@pytest.mark.django_db
def test_an_unchanged_board_refresh_costs_the_session_the_user_and_the_stamp(
    client, runs, viewer, django_assert_num_queries
):
    ids = ",".join(str(run.pk) for run in runs)
    html = client.get(reverse("home_board"), {"ids": ids}, **HTMX).content.decode()
    token = html.split("token=")[1].split("&")[0]
    with django_assert_num_queries(FRAGMENT_BUDGET) as captured:
        response = client.get(reverse("home_board"), {"token": token, "ids": ids}, **HTMX)
    assert response.status_code == 204
    stamp = captured.captured_queries[-1]["sql"]
    assert "training_teamstamp" in stamp and "training_trainingrun" not in stamp


@pytest.mark.django_db
def test_the_finished_watcher_costs_at_most_three_queries(
    client, runs, viewer, django_assert_max_num_queries
):
    with django_assert_max_num_queries(FRAGMENT_BUDGET):
        response = client.get(reverse("runs_finished"), {"since": "1"}, **HTMX)
    assert response.status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "budget"),
    [("run_live", RENDER_BUDGET), ("run_samples", FRAGMENT_BUDGET), ("run_trail", FRAGMENT_BUDGET)],
)
def test_a_run_fragment_costs_a_constant_number_of_queries(
    client, runs, viewer, name, budget, django_assert_max_num_queries
):
    for run in (runs[0], runs[-1]):
        with django_assert_max_num_queries(budget):
            response = client.get(reverse(name, args=[run.pk]), **HTMX)
        assert response.status_code == 200


@pytest.mark.django_db
def test_an_unchanged_live_panel_costs_the_session_the_user_and_one_small_query(
    client, runs, viewer, django_assert_num_queries
):
    url = reverse("run_live", args=[runs[0].pk])
    html = client.get(url, **HTMX).content.decode()
    poll = html.split('hx-get="')[1].split('"')[0].replace("&amp;", "&")
    with django_assert_num_queries(FRAGMENT_BUDGET) as captured:
        response = client.get(poll, **HTMX)
    assert response.status_code == 204
    token = captured.captured_queries[-1]["sql"]
    assert "training_scenariomodel" not in token and "auth_user" not in token  # no joins to show


@pytest.mark.django_db
def test_fragments_of_another_teams_run_cost_no_more(
    client, alice, charlie, django_assert_max_num_queries
):
    run = _runs(alice, 1, epochs=2)[0]
    client.force_login(charlie)
    for name in ("run_live", "run_samples", "run_trail"):
        with django_assert_max_num_queries(FRAGMENT_BUDGET):
            assert client.get(reverse(name, args=[run.pk]), **HTMX).status_code == 404


@pytest.mark.django_db
def test_the_dashboard_costs_the_same_with_one_run_or_many(
    client, alice, dave, django_assert_num_queries
):
    client.force_login(alice)
    _runs(alice, 1, epochs=1)
    with django_assert_num_queries(_count(client, reverse("home"))) as one:
        client.get(reverse("home"))
    _runs(alice, 10, epochs=5)
    _runs(dave, 12, epochs=3, state=RunState.SUCCEEDED)
    with django_assert_num_queries(len(one.captured_queries)):
        client.get(reverse("home"))
    assert len(one.captured_queries) <= PAGE_BUDGET


@pytest.mark.django_db
def test_the_run_page_costs_the_same_with_one_epoch_or_many(
    client, alice, django_assert_num_queries
):
    client.force_login(alice)
    small, large = _runs(alice, 1, epochs=1)[0], _runs(alice, 1, epochs=10)[0]
    for _ in range(8):
        add_event(large, RunState.RUNNING)
    queries = _count(client, reverse("run_detail", args=[small.pk]))
    assert queries <= PAGE_BUDGET
    with django_assert_num_queries(queries):
        client.get(reverse("run_detail", args=[large.pk]))


@pytest.mark.django_db
def test_a_chosen_epoch_costs_the_run_page_and_its_grid_no_more(
    client, alice, bob, django_assert_num_queries, django_assert_max_num_queries
):
    client.force_login(alice)
    plain, chosen = (_runs(alice, 1, epochs=3, state=RunState.SUCCEEDED)[0] for _ in range(2))
    services.record_epoch_choice(chosen, f"epoch-{chosen.pk}-1", bob)
    queries = _count(client, reverse("run_detail", args=[plain.pk]))
    with django_assert_num_queries(queries):
        html = client.get(reverse("run_detail", args=[chosen.pk])).content.decode()
    assert "chosen by Bob" in html
    with django_assert_max_num_queries(FRAGMENT_BUDGET):
        html = client.get(reverse("run_samples", args=[chosen.pk]), **HTMX).content.decode()
    assert "chosen by Bob" in html


def _count(client, url) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured.captured_queries)
