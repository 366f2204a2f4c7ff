"""Hostile request parameters get a 400 that names them: one test per reproduction of a 500."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories import add_samples, make_sent_run
from tests.helpers import HTMX, forged_cursor
from training import reports, request_params
from training.models import RunState

HUGE_ID = str(2**63)


def refused(response, name: str) -> bool:
    return response.status_code == 400 and f"<code>{name}</code>" in response.text


@pytest.fixture
def signed_in(client, alice):
    client.force_login(alice)
    return client


# --- the dashboard's live fragments -----------------------------------------------------


@pytest.mark.parametrize(
    "since", ["100000000000000000000", "-100000000000000000000", "253402300800000000", "²"]
)
def test_the_finished_watcher_refuses_a_moment_out_of_range(signed_in, since):
    response = signed_in.get(reverse("runs_finished"), {"since": since}, **HTMX)
    assert refused(response, "since")


@pytest.mark.parametrize("ids", ["²", "1," + "9" * 4300, HUGE_ID, "-1", "١٢"])
def test_the_board_refuses_ids_that_are_not_ids(signed_in, ids):
    response = signed_in.get(reverse("home_board"), {"ids": ids}, **HTMX)
    assert refused(response, "ids")


def test_the_board_still_reads_a_list_of_ids(signed_in, alice):
    run = make_sent_run(alice, RunState.RUNNING)
    response = signed_in.get(reverse("home_board"), {"ids": f"{run.pk}, {run.pk},"}, **HTMX)
    assert response.status_code == 200


def test_the_board_reads_hundreds_of_ids_but_not_more_than_it_shows(signed_in):
    many = ",".join(str(n) for n in range(1, 1001))
    assert signed_in.get(reverse("home_board"), {"ids": many}, **HTMX).status_code == 200
    response = signed_in.get(reverse("home_board"), {"ids": many + ",1001"}, **HTMX)
    assert refused(response, "ids")


# --- compare and history ----------------------------------------------------------------


@pytest.mark.parametrize("runs", ["²,1", f"{HUGE_ID},1", "1," + "9" * 4300])
def test_compare_refuses_run_numbers_that_are_not_ids(signed_in, runs):
    response = signed_in.get(reverse("compare"), {"runs": runs})
    assert response.status_code == 400
    assert "runs must be a number from 1 to" in response.text


@pytest.mark.parametrize("name", ["artist", "team"])
def test_history_refuses_an_id_past_a_64_bit_integer(client, staff, name):
    client.force_login(staff)
    response = client.get(reverse("history"), {name: HUGE_ID})
    assert response.status_code == 400
    assert f"{name.capitalize()}: must be a number from 1 to" in response.text


def test_history_refuses_the_last_day_python_knows(client, staff):
    client.force_login(staff)
    response = client.get(reverse("history"), {"to": "9999-12-31"})
    assert response.status_code == 400
    assert "To: must be a date between 1900-01-01 and 9998-12-31" in response.text


@pytest.mark.parametrize(
    "cursor",
    [
        forged_cursor("launched", "9999-12-31T23:59:59-05:00", 1),
        forged_cursor("launched", "0001-01-01T00:00:00+05:00", 1),
        forged_cursor("launched", "2025-01-01T00:00:00+00:00", 2**70),
        forged_cursor("launched", "2025-01-01T00:00:00+00:00", "1"),
        forged_cursor("launched", "\ud800", 1),
        forged_cursor("launched", "\x00", 1),
        "not-a-cursor!",
        "%00",
    ],
)
@pytest.mark.parametrize("name", ["after", "before"])
def test_history_refuses_a_cursor_it_could_not_have_made(client, staff, alice, cursor, name):
    make_sent_run(alice, RunState.SUCCEEDED)
    client.force_login(staff)
    table = {**HTMX, "HTTP_HX_TARGET": "history-table"}
    response = client.get(reverse("history"), {name: cursor}, **table)
    assert refused(response, name)


def test_history_refuses_a_text_cursor_holding_a_lone_surrogate(client, staff):
    client.force_login(staff)
    cursor = forged_cursor("model", "\udfff", 1)
    response = client.get(reverse("history"), {"sort": "model", "after": cursor})
    assert refused(response, "after")


@pytest.mark.parametrize("name", ["q", "type", "after"])
def test_history_refuses_a_nul_byte_in_text(client, staff, name):
    client.force_login(staff)
    response = client.get(reverse("history"), {name: "castle\x00"})
    assert response.status_code == 400


def test_history_refuses_text_longer_than_a_filter_holds(client, staff):
    client.force_login(staff)
    response = client.get(reverse("history"), {"q": "x" * 1000})
    assert response.status_code == 400
    assert "Q: is too long (at most 200 characters)" in response.text


@pytest.mark.parametrize("who", ["anonymous", "alice"])
def test_a_query_string_longer_than_a_front_server_takes_is_refused(client, alice, who):
    if who == "alice":
        client.force_login(alice)
    response = client.get(reverse("history"), {"q": "x" * 100_000})
    assert response.status_code == 414
    assert "<code>query string</code> is too long" in response.text


@pytest.mark.parametrize(
    "query",
    [{"to": "9999-12-31"}, {"q": "\x00"}, {"type": "\x00"}, {"artist": HUGE_ID}, {"team": "²"}],
)
def test_the_csv_export_refuses_a_bad_filter_before_it_streams(client, staff, alice, query):
    make_sent_run(alice, RunState.SUCCEEDED)
    client.force_login(staff)
    response = client.get(reverse("history_csv"), query)
    assert response.status_code == 400
    assert not response.streaming
    assert response["Content-Type"].startswith("text/html")
    assert f"<code>{next(iter(query))}</code>" in response.text


# --- the launch pages and the epoch post ------------------------------------------------


def test_the_launch_page_refuses_a_nul_byte_in_the_model(signed_in):
    assert refused(signed_in.get(reverse("launch"), {"model": "m\x00"}), "model")


def test_a_launch_post_refuses_a_nul_byte_in_the_model(signed_in):
    response = signed_in.post(reverse("launch"), {"model": "\x00", "action": "estimate"}, **HTMX)
    assert refused(response, "model")


@pytest.mark.parametrize("url", ["launch_validate", "launch_refresh"])
def test_the_launch_helpers_refuse_a_nul_byte_in_the_model(signed_in, url):
    assert refused(signed_in.post(reverse(url), {"model": "\x00"}, **HTMX), "model")


@pytest.mark.parametrize("from_run", [HUGE_ID, "²", "\x00"])
def test_train_again_refuses_a_run_number_that_is_not_an_id(signed_in, from_run):
    assert refused(signed_in.get(reverse("launch"), {"from_run": from_run}), "from_run")


def test_the_epoch_post_refuses_a_nul_byte(client, alice):
    run = make_sent_run(alice, RunState.SUCCEEDED)
    add_samples(run)
    client.force_login(alice)
    response = client.post(reverse("run_use_epoch", args=[run.pk]), {"epoch": "\x00"}, **HTMX)
    assert refused(response, "epoch")


# --- the parser itself ------------------------------------------------------------------


def test_ids_are_ascii_digits_within_a_64_bit_key():
    assert request_params.parse_id(" 42 ", "id") == 42
    assert request_params.parse_id(str(request_params.MAX_ID), "id") == request_params.MAX_ID
    for raw in ("0", "-1", "١", "²", "1e3", "0x10", HUGE_ID, ""):
        with pytest.raises(request_params.BadParameter):
            request_params.parse_id(raw, "id")


def test_a_cursor_for_another_sort_is_still_ignored_not_refused():
    cursor = reports.encode_cursor("queue", 12.5, 3)
    assert reports.decode_cursor(cursor, "launched") is None
    assert reports.decode_cursor(cursor, "queue") == (12.5, 3)
