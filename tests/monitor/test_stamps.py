"""The team stamp: every write a live page shows moves it, bookkeeping does not.

The writes of a training's own life are checked against the simulator in
tests/lifecycle/test_live_stamps.py; here, each write that happens off that path (a lead's
queue move, an epoch choice, a settle, a cancel, the admin, a rename) and the bookkeeping of
polls and sends. The tests are transactional: a stamp moves once its write commits.
"""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.contrib.auth.models import update_last_login
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from tests.factories import add_samples, make_run, make_sent_run
from tests.helpers import HTMX
from training import doorbell, leases, scenario, services, stamps, team_queue
from training.models import (
    EpochSample,
    RunEvent,
    RunState,
    ScenarioModel,
    Team,
    TeamHooks,
    TeamStamp,
    TrainingRun,
)

S = RunState
pytestmark = pytest.mark.django_db(transaction=True)


def version(team_id) -> int:
    return TeamStamp.objects.get(team_id=team_id).version


class Board:
    """A signed-in dashboard polling its board: does the next poll render (200) or not (204)?"""

    def __init__(self, user):
        self.client = Client()
        self.client.force_login(user)
        self.token = self._token(self.client.get(reverse("home_board"), **HTMX))

    @staticmethod
    def _token(response) -> str:
        return response.content.decode().split("token=")[1].split("&")[0]

    def moved(self) -> bool:
        response = self.client.get(reverse("home_board"), {"token": self.token}, **HTMX)
        if response.status_code == 204:
            return False
        assert response.status_code == 200
        self.token = self._token(response)
        return True


class Panel:
    """A signed-in run page polling its live panel."""

    def __init__(self, user, run):
        self.client = Client()
        self.client.force_login(user)
        self.url = reverse("run_live", args=[run.pk])
        self.poll = self._poll(self.client.get(self.url, **HTMX))

    @staticmethod
    def _poll(response) -> str:
        return response.content.decode().split('hx-get="')[1].split('"')[0].replace("&amp;", "&")

    def moved(self) -> bool:
        response = self.client.get(self.poll, **HTMX)
        if response.status_code == 204:
            return False
        self.poll = self._poll(response) if 'hx-get="' in response.content.decode() else ""
        return True


# --- Writes off a training's own path --------------------------------------------------------


def _waiting(user, order: int) -> TrainingRun:
    return make_sent_run(user, S.WAITING, job_id="", queue_order=order, submitted_at=None)


def test_a_leads_queue_move_moves_the_board_and_the_moved_runs_panel(alice, bob):
    first, second = _waiting(alice, 1), _waiting(alice, 2)
    board, panel, other_panel = Board(alice), Panel(alice, second), Panel(alice, first)
    assert not board.moved() and not panel.moved()
    team_queue.move(second, bob, "top")
    assert board.moved()
    assert panel.moved() and other_panel.moved()  # "1 ahead" became "0 ahead", and back
    assert not board.moved() and not panel.moved()


def test_a_new_waiting_reason_moves_the_board(alice):
    Team.objects.filter(pk=alice.membership.team_id).update(parallel_trainings=0)
    run = _waiting(alice, 1)
    board, panel = Board(alice), Panel(alice, run)
    team_queue.dispatch(run.team_id)  # no free slot: it says why it waits
    assert TrainingRun.objects.get(pk=run.pk).waiting_reason == team_queue.FREE_SLOT
    assert board.moved() and panel.moved()
    team_queue.dispatch(run.team_id)  # the same reason again: nothing to show
    assert not board.moved() and not panel.moved()


def test_a_fresher_quote_moves_the_stamp(alice, settings):
    settings.QUEUE_QUOTE_MAX_AGE_SECONDS = 0
    run = make_sent_run(alice, S.SUBMITTING, job_id="", quote_cu_cost=10.0)
    TrainingRun.objects.filter(pk=run.pk).update(quoted_at=timezone.now() - timedelta(hours=1))
    run.refresh_from_db()
    before = version(run.team_id)
    quotes = SimpleNamespace(quote=lambda *args: scenario.Quote(cost=12.0, discount=0.0, raw={}))
    assert team_queue.refresh_quote(run, quotes)
    assert version(run.team_id) > before


def test_choosing_an_epoch_moves_the_stamp_of_every_team_whose_run_held_it(alice, bob, charlie):
    older = make_sent_run(charlie, S.SUCCEEDED, selected_epoch="epoch-a")
    run = make_sent_run(alice, S.SUCCEEDED, model=older.model)
    mine, theirs = version(run.team_id), version(older.team_id)
    services.record_epoch_choice(run, "epoch-b", bob)
    assert version(run.team_id) > mine and version(older.team_id) > theirs


def test_settling_a_stalled_run_moves_the_board(alice, bob):
    moved = timezone.now() - timedelta(days=1)
    run = make_sent_run(alice, S.RUNNING, remote_model_status="training", remote_updated_at=moved)
    board, panel = Board(bob), Panel(bob, run)
    assert "stalled" in panel.poll  # the clock made it stalled: its token says so
    assert services.settle_stalled(run, bob)
    assert board.moved() and panel.moved()


def test_a_cancel_request_moves_the_board_and_the_panel(alice):
    run = make_sent_run(alice, S.RUNNING)
    board, panel = Board(alice), Panel(alice, run)
    assert services.request_cancel(run, alice)
    assert board.moved() and panel.moved()


def test_samples_alone_move_the_board_and_the_panel(alice):
    run = make_sent_run(alice, S.RUNNING, remote_model_status="training", epoch_names=["e1"])
    board, panel = Board(alice), Panel(alice, run)
    model = scenario.parse_model(
        {
            "id": run.model.remote_id,
            "type": "flux.1-lora",
            "status": "training",
            "trainingImagesNumber": 12,
            "epochs": [{"epoch": "e1", "assets": [{"assetId": "a1", "url": "https://x.test/1"}]}],
        }
    )
    assert services.apply_snapshot(run, model, None)  # only the sample is new
    assert board.moved()
    assert panel.moved() and "samples=1" in panel.poll


# --- The admin and other saves ---------------------------------------------------------------


def test_the_admin_deleting_a_run_moves_its_teams_board(admin_client, alice):
    run = make_sent_run(alice, S.FAILED)
    add_samples(run, epochs=2)
    board = Board(alice)
    response = admin_client.post(
        reverse("admin:training_trainingrun_delete", args=[run.pk]), {"post": "yes"}
    )
    assert response.status_code == 302
    assert not TrainingRun.objects.filter(pk=run.pk).exists()
    assert board.moved()


def test_the_admin_changing_a_team_moves_its_stamp(admin_client, alice):
    team = Team.objects.get(pk=alice.membership.team_id)
    before = version(team.pk)
    response = admin_client.post(
        reverse("admin:training_team_change", args=[team.pk]),
        {
            "name": team.name,
            "monthly_cu_budget": "",
            "parallel_trainings": "3",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
            "memberships-MIN_NUM_FORMS": "0",
            "memberships-MAX_NUM_FORMS": "1000",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert version(team.pk) > before


def test_saves_and_deletes_of_runs_samples_and_events_move_the_stamp(alice, model):
    run = make_run(alice, model, S.RUNNING)
    team = run.team_id
    for write in (
        lambda: run.save(),
        lambda: EpochSample.objects.create(
            run=run, epoch="e", epoch_index=0, prompt_index=0, asset_id="a", url="https://x.test"
        ),
        lambda: RunEvent.objects.create(run=run, to_state=S.RUNNING, source="worker"),
        lambda: EpochSample.objects.get(run=run).delete(),
        lambda: run.delete(),
    ):
        before = version(team)
        write()
        assert version(team) == before + 1


def test_a_run_deleted_through_a_deferred_queryset_moves_the_stamp(alice, model):
    run = make_run(alice, model, S.SUCCEEDED)
    add_samples(run, 1, 1)
    before = version(run.team_id)
    # The deleted instances hold their pk only: the team is read before the row goes.
    TrainingRun.objects.filter(pk=run.pk).only("pk").delete()
    assert not TrainingRun.objects.filter(pk=run.pk).exists()
    assert version(run.team_id) == before + 1


def test_a_renamed_person_moves_the_stamp_of_the_teams_of_their_runs(alice, charlie, model):
    make_run(alice, model, S.RUNNING)
    mine, theirs = version(alice.membership.team_id), version(charlie.membership.team_id)
    alice.first_name = "Alicia"
    alice.save()
    assert version(alice.membership.team_id) == mine + 1
    assert version(charlie.membership.team_id) == theirs
    update_last_login(type(alice), alice)  # a sign-in writes last_login only
    assert version(alice.membership.team_id) == mine + 1


def test_a_model_renamed_on_scenario_moves_the_stamp_of_its_runs_teams(scenario, alice):
    remote = scenario.create_model("Knight", images=2)
    services.sync_models(scenario.client())
    run = make_sent_run(alice, S.SUCCEEDED, model=ScenarioModel.objects.get(remote_id=remote.id))
    before = version(run.team_id)
    services.sync_models(scenario.client())  # nothing changed
    assert version(run.team_id) == before
    type(remote).objects.filter(pk=remote.pk).update(name="Knight, renamed")
    services.sync_models(scenario.client())
    assert version(run.team_id) == before + 1


# --- Bookkeeping moves nothing ---------------------------------------------------------------


@pytest.mark.usefixtures("broker")
def test_claims_leases_and_the_doorbell_move_no_stamp(alice):
    due = timezone.now() - timedelta(seconds=1)
    polled = make_sent_run(alice, S.RUNNING, remote_model_status="training", next_poll_at=due)
    sending = make_sent_run(alice, S.SUBMITTING, job_id="", submitted_at=None, next_poll_at=due)
    board, panels = Board(alice), [Panel(alice, polled), Panel(alice, sending)]
    before = version(alice.membership.team_id)
    assert services.sweep() == 2  # a listed poll claimed, a submit claimed
    assert leases.take(TrainingRun.objects.get(pk=sending.pk)) is not None  # a submit's lease
    hooks = TeamHooks.objects.create(team_id=polled.team_id, doorbell_token="bell")
    assert doorbell.ring(hooks, {"modelId": polled.model.remote_id}) is not None
    assert version(alice.membership.team_id) == before
    assert not board.moved() and not any(panel.moved() for panel in panels)


# --- How a stamp moves -----------------------------------------------------------------------


def test_a_transaction_bumps_each_team_once_after_it_commits(alice, charlie):
    a, b = alice.membership.team_id, charlie.membership.team_id
    before = version(a), version(b)
    with transaction.atomic():
        stamps.changed(a)
        stamps.changed(a, b)
        stamps.changed(a)
        assert (version(a), version(b)) == before  # nothing before the commit
    assert (version(a), version(b)) == (before[0] + 1, before[1] + 1)


def test_a_rolled_back_write_bumps_nothing(alice, charlie):
    a, b = alice.membership.team_id, charlie.membership.team_id
    before = version(a), version(b)
    with pytest.raises(RuntimeError), transaction.atomic():
        stamps.changed(a)
        raise RuntimeError("undone")
    assert version(a) == before[0]
    with transaction.atomic():
        try:
            with transaction.atomic():  # a savepoint, rolled back with its bump
                stamps.changed(a)
                raise RuntimeError("undone")
        except RuntimeError:
            pass
        stamps.changed(b)
    # (A write rolled back in a savepoint after the transaction had a bump may leave its team
    # in that bump: one needless render, never a missed one.)
    assert (version(a), version(b)) == (before[0], before[1] + 1)


def test_a_batch_coalesces_its_bumps(alice):
    team = alice.membership.team_id
    before = version(team)
    with CaptureQueriesContext(connection) as queries, stamps.coalesced():
        for _ in range(50):
            with transaction.atomic():
                stamps.changed(team)
        assert version(team) == before  # flushed at the end of the batch
    updates = [q for q in queries.captured_queries if 'UPDATE "training_teamstamp"' in q["sql"]]
    assert len(updates) == 1
    assert version(team) == before + 1


def test_a_team_is_stamped_when_it_is_made_and_a_missing_stamp_is_made_by_its_first_bump():
    team = Team.objects.create(name="New team")
    assert version(team.pk) == 0
    TeamStamp.objects.filter(team=team).delete()
    stamps.changed(team.pk)
    assert version(team.pk) == 1
