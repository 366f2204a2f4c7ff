"""The CSV export: the filtered, visible runs, streamed row by row."""

from __future__ import annotations

import csv
import io

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.factories import make_past_run, seed_known_runs
from training import reports
from training.models import RunState, TrainingRun

CSV = reverse("history_csv")


@pytest.fixture
def known_runs(alice, dave, bob, charlie):
    return seed_known_runs(alice, dave, bob, charlie)


def export(client, user, **params) -> tuple[object, list[dict]]:
    client.force_login(user)
    response = client.get(CSV, params)
    assert response.status_code == 200
    body = b"".join(response.streaming_content).decode()
    return response, list(csv.DictReader(io.StringIO(body)))


def test_it_streams_a_csv_attachment(client, staff, known_runs):
    response, rows = export(client, staff)
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="training-history-')
    assert len(rows) == 7


def test_the_header_names_every_column(client, staff, known_runs):
    client.force_login(staff)
    body = b"".join(client.get(CSV).streaming_content).decode()
    assert body.splitlines()[0].split(",") == reports.CSV_HEADER


def test_a_row_holds_the_run_figures(client, staff, known_runs):
    _, rows = export(client, staff)
    castle = next(row for row in rows if row["id"] == str(known_runs["castle"].pk))
    assert castle == {
        "id": str(known_runs["castle"].pk),
        "model": "Castle LoRA",
        "model_id": known_runs["castle"].model.remote_id,
        "type": "flux.1-lora",
        "artist": "Alice",
        "team": "Team A",
        "launched_at": "2025-01-06T10:00:00+00:00",
        "queue_seconds": "60",
        "train_seconds": "600",
        "wall_seconds": "700",
        "state": "succeeded",
        "cu_quoted": "10",
        "cu_billed": "9",
        "cu_discount": "1",
        "epochs": "3",
        "finished_at": "2025-01-06T10:11:40+00:00",
        "forecast_finish_p50": "",
        "forecast_finish_p90": "",
        "forecast_miss_seconds": "",
        "outcome": "Succeeded",
    }


def test_a_row_holds_the_forecast_made_at_launch(client, staff, known_runs):
    _, rows = export(client, staff)
    forest = next(row for row in rows if row["id"] == str(known_runs["forest"].pk))
    assert forest["forecast_finish_p50"] == "2025-02-03T10:31:40+00:00"
    assert forest["forecast_finish_p90"] == "2025-02-03T10:39:40+00:00"
    assert forest["forecast_miss_seconds"] == "-600"


def test_the_outcome_says_why_a_run_failed_or_never_started(client, staff, alice):
    refused = make_past_run(alice, "Creature concepts", state=RunState.NOT_STARTED, quote=40)
    failed = make_past_run(alice, "Doomed", state=RunState.FAILED, quote=40)
    TrainingRun.objects.filter(pk=refused.pk).update(error_message="Model is already training")
    TrainingRun.objects.filter(pk=failed.pk).update(error_message="training diverged")
    running = make_past_run(alice, "Going", state=RunState.RUNNING)
    _, rows = export(client, staff)
    by_id = {row["id"]: row for row in rows}
    assert by_id[str(refused.pk)]["state"] == "not_started"
    assert by_id[str(refused.pk)]["outcome"] == "Not started: Model is already training"
    assert by_id[str(refused.pk)]["cu_billed"] == ""
    assert by_id[str(failed.pk)]["outcome"] == "Failed: training diverged"
    assert by_id[str(running.pk)]["outcome"] == "Running"


def test_missing_figures_are_empty_cells(client, staff, known_runs):
    _, rows = export(client, staff)
    running = next(row for row in rows if row["id"] == str(known_runs["castle3"].pk))
    assert (running["train_seconds"], running["cu_billed"], running["wall_seconds"]) == ("", "", "")
    assert running["finished_at"] == "" and running["epochs"] == "0"


def test_it_exports_the_filtered_set_in_the_chosen_order(client, staff, known_runs):
    _, rows = export(client, staff, type="sd-xl-lora", sort="billed")
    assert [row["model"] for row in rows] == ["Forest night", "Forest"]


def test_it_exports_only_what_the_reader_may_see(client, charlie, known_runs):
    _, rows = export(client, charlie)
    assert [row["model"] for row in rows] == ["Desert"]


def test_names_with_commas_quotes_and_new_lines_survive(client, staff, alice):
    make_past_run(alice, 'Castle, "v4"\nnew line')
    _, rows = export(client, staff)
    assert rows[0]["model"] == 'Castle, "v4"\nnew line'


def test_a_name_that_a_spreadsheet_would_run_as_a_formula_is_defused(client, staff, alice):
    make_past_run(alice, '=HYPERLINK("http://x")')
    _, rows = export(client, staff)
    assert rows[0]["model"] == '\'=HYPERLINK("http://x")'


def test_anonymous_visitors_get_no_csv(client, known_runs):
    response = client.get(CSV)
    assert response.status_code == 302


def test_rows_are_read_only_while_the_response_streams(client, staff, known_runs):
    client.force_login(staff)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(CSV)
    assert not [q for q in queries if "training_trainingrun" in q["sql"]]
    with CaptureQueriesContext(connection) as queries:
        body = b"".join(response.streaming_content)
    assert [q for q in queries if "training_trainingrun" in q["sql"]]
    assert body.count(b"\n") == 8
