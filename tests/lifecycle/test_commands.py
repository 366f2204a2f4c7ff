"""The management commands, which go through the same services as the web pages."""

from __future__ import annotations

import json
import subprocess
import sys
from io import StringIO

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from simulator.models import RequestLog
from tests.factories import make_bare_model, make_run, mirror
from tests.fixtures.workers import worker_environment
from training.models import Membership, RunState, ScenarioModel, Team, TrainingRun

S = RunState


def run_command(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def model(db):
    return make_bare_model("Knight", images=4, remote_id="model_knight")


# --- member ---------------------------------------------------------------------------------


def test_member_creates_the_team_and_the_user(db):
    out = run_command("member", "Team C", "erin", "--role", "lead", "--password", "pw-long-one")
    assert "erin" in out and "Team C" in out
    membership = Membership.objects.get(user__username="erin")
    assert (membership.team.name, membership.role) == ("Team C", "lead")
    assert membership.user.check_password("pw-long-one")


def test_member_moves_someone_and_changes_their_role(alice, team_b):
    run_command("member", "Team B", "alice", "--role", "lead")
    alice.refresh_from_db()
    assert (alice.membership.team, alice.membership.role) == (team_b, "lead")
    assert Team.objects.count() == 2


def test_member_refuses_an_unknown_role(db):
    with pytest.raises(CommandError):
        run_command("member", "Team C", "erin", "--role", "boss")


# --- train ----------------------------------------------------------------------------------


def test_train_refuses_bad_parameters_with_a_clear_message(alice, model):
    with pytest.raises(CommandError) as raised:
        run_command("train", model.remote_id, "--as", "alice", "--param", "rank=1000",
                    "--param", "colour=blue")  # fmt: skip
    message = str(raised.value)
    assert "rank" in message and "colour" in message
    assert not TrainingRun.objects.exists()


def test_train_refuses_a_malformed_param(alice, model):
    with pytest.raises(CommandError, match="NAME=VALUE"):
        run_command("train", model.remote_id, "--as", "alice", "--param", "rank")


def test_train_refuses_unknown_people_and_models(alice, model):
    with pytest.raises(CommandError, match="No user"):
        run_command("train", model.remote_id, "--as", "nobody")
    with pytest.raises(CommandError, match="sync_models"):
        run_command("train", "model_nowhere", "--as", "alice")


def test_train_refuses_a_model_of_another_team(charlie, model, team_a):
    model.team = team_a
    model.save()
    with pytest.raises(CommandError, match="may not train"):
        run_command("train", model.remote_id, "--as", "charlie")


def test_train_prints_the_quote_on_a_dry_run(scenario, alice):
    knight = mirror(scenario.create_model("Knight", images=3))
    out = run_command("train", knight.remote_id, "--as", "alice", "--dry-run",
                      "--param", "nbEpochs=2")  # fmt: skip
    assert out.startswith("Quote: ") and "CU" in out
    assert not TrainingRun.objects.exists()
    launched = RequestLog.objects.filter(method="PUT", dry_run=False, model_id=knight.remote_id)
    assert launched.count() == 0


def test_train_launches_and_prints_the_run_id(scenario, broker, alice):
    knight = mirror(scenario.create_model("Knight", images=3))
    prompts = ["--param", "samplePrompts=a knight", "--param", "samplePrompts=a castle"]
    out = run_command("train", knight.remote_id, "--as", "alice", "--param", "nbEpochs=2", *prompts)
    run = TrainingRun.objects.get()
    assert out.strip() == str(run.pk)
    assert run.state == S.DRAFT  # a worker submits it
    assert run.created_by.username == "alice"
    assert run.parameters["nbEpochs"] == 2
    assert run.parameters["samplePrompts"] == ["a knight", "a castle"]
    assert run.quote_cu_cost and run.quote_cu_cost > 0


def test_train_records_a_training_its_quote_started_and_launches_no_second(scenario, broker, alice):
    from simulator.models import SimJob

    rogue = mirror(scenario.create_model("Rogue ignores-dry-run", images=2))
    out = run_command("train", rogue.remote_id, "--as", "alice", "--param", "nbEpochs=2")
    run = TrainingRun.objects.get()
    assert out.strip() == str(run.pk)
    assert run.state == S.QUEUED and run.job_id == SimJob.objects.get().id
    assert not RequestLog.objects.filter(dry_run=False, path__endswith="/train").exists()


def test_a_failing_command_exits_non_zero(scenario, alice):
    # A real process, against the test database, as an operator's script would run it.
    result = subprocess.run(
        [sys.executable, "manage.py", "train", "model_nowhere", "--as", "alice"],
        env=worker_environment(),
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "sync_models" in result.stderr


# --- runs -----------------------------------------------------------------------------------


def test_runs_lists_state_stage_progress_and_cost(alice, model):
    make_run(alice, model, S.RUNNING, stage="running-train", progress=0.5, remaining_ms=90_000)
    make_run(alice, model, S.SUCCEEDED, cu_cost=123.5, train_duration=300)
    out = run_command("runs")
    assert "running-train" in out and "50%" in out and "1m30s" in out
    assert "succeeded" in out and "123.5" in out and "5m00s" in out


def test_runs_active_leaves_finished_runs_out(alice, model):
    active = make_run(alice, model, S.QUEUED, queue_position=3)
    make_run(alice, model, S.FAILED)
    rows = json.loads(run_command("runs", "--active", "--json"))
    assert [row["id"] for row in rows] == [active.pk]
    assert rows[0]["queue_position"] == 3
    assert rows[0]["state"] == "queued"


def test_runs_says_in_words_why_a_launch_did_not_start(alice, model):
    refused = make_run(alice, model, S.NOT_STARTED, error_message="Model is already training")
    running = make_run(alice, model, S.RUNNING)
    assert "Not started: Model is already training" in run_command("runs")
    rows = {row["id"]: row for row in json.loads(run_command("runs", "--json"))}
    assert rows[refused.pk]["state"] == "not_started"
    assert rows[refused.pk]["outcome"] == "Not started: Model is already training"
    assert rows[running.pk]["outcome"] == ""
    assert refused.pk not in [
        row["id"] for row in json.loads(run_command("runs", "--active", "--json"))
    ]


def test_runs_says_when_there_are_none(db):
    assert "No runs" in run_command("runs")


# --- cancel ---------------------------------------------------------------------------------


def test_cancel_asks_for_a_cancel_like_the_web_page(alice, bob, model, broker):
    run = make_run(alice, model, S.RUNNING)
    out = run_command("cancel", str(run.pk), "--as", "bob")
    assert "cancel requested" in out.lower()
    run.refresh_from_db()
    assert run.state == S.CANCEL_REQUESTED
    assert run.events.get().actor == get_user_model().objects.get(username="bob")
    assert "already" in run_command("cancel", str(run.pk), "--as", "alice")


def test_cancel_follows_the_permission_rules(alice, dave, charlie, model):
    run = make_run(alice, model, S.RUNNING)
    with pytest.raises(CommandError, match="may not cancel"):
        run_command("cancel", str(run.pk), "--as", "dave")
    with pytest.raises(CommandError, match="No run"):
        run_command("cancel", str(run.pk), "--as", "charlie")
    run.refresh_from_db()
    assert run.state == S.RUNNING


# --- sync_models ----------------------------------------------------------------------------


def test_sync_models_pulls_the_model_list(scenario):
    scenario.create_model("Knight", images=2)
    scenario.create_model("Dragon", images=1)
    assert "Synced 2 models" in run_command("sync_models")
    assert set(ScenarioModel.objects.values_list("name", flat=True)) == {"Knight", "Dragon"}
