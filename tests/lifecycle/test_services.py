"""The state machine and the services that need only the database (no Scenario, no worker)."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from tests.factories import make_run
from training import access, remote, services
from training.models import (
    ACTIVE_STATES,
    FINAL_STATES,
    RunEvent,
    RunState,
    TrainingRun,
)

S = RunState


@pytest.fixture
def run(alice, model):
    return make_run(alice, model)


def trail(run):
    return list(run.events.values_list("from_state", "to_state", "source"))


# --- transition -----------------------------------------------------------------------------


def test_a_transition_changes_the_state_once_and_records_it(run):
    assert services.transition(
        run, S.SUBMITTING, expected=[S.DRAFT], source="worker", message="Sending"
    )
    assert run.state == S.SUBMITTING
    run.refresh_from_db()
    assert run.state == S.SUBMITTING
    assert trail(run) == [(S.DRAFT, S.SUBMITTING, "worker")]
    assert run.events.get().message == "Sending"


def test_a_transition_from_a_state_the_run_has_left_does_nothing(run):
    stale = TrainingRun.objects.get(pk=run.pk)
    assert services.transition(run, S.SUBMITTING, expected=[S.DRAFT], source="worker")
    assert not services.transition(stale, S.SUBMITTING, expected=[S.DRAFT], source="worker")
    assert not services.transition(stale, S.CANCELED, expected=[S.DRAFT], source="user")
    run.refresh_from_db()
    assert run.state == S.SUBMITTING
    assert run.events.count() == 1


def test_a_transition_finds_the_state_the_row_is_really_in(run):
    TrainingRun.objects.filter(pk=run.pk).update(state=S.RUNNING)
    assert run.state == S.DRAFT  # what this copy believes
    assert services.transition(
        run, S.CANCEL_REQUESTED, expected=[S.SUBMITTING, S.QUEUED, S.RUNNING], source="user"
    )
    assert trail(run) == [(S.RUNNING, S.CANCEL_REQUESTED, "user")]


def test_a_final_transition_sets_finished_at_and_stops_polling(run):
    TrainingRun.objects.filter(pk=run.pk).update(state=S.RUNNING, next_poll_at=timezone.now())
    assert services.transition(run, S.SUCCEEDED, expected=[S.RUNNING], source="worker")
    run.refresh_from_db()
    assert run.finished_at is not None
    assert run.next_poll_at is None


def test_a_transition_outside_the_state_machine_is_refused(run):
    with pytest.raises(ValueError):
        services.transition(run, S.RUNNING, expected=[S.DRAFT], source="worker")
    with pytest.raises(ValueError):
        services.transition(run, S.QUEUED, expected=[S.SUCCEEDED], source="worker")
    assert run.events.count() == 0


def test_the_transition_writes_extra_fields_in_the_same_update(run):
    assert services.transition(
        run, S.SUBMITTING, expected=[S.DRAFT], source="worker", job_id="job_1", poll_failures=3
    )
    run.refresh_from_db()
    assert (run.job_id, run.poll_failures) == ("job_1", 3)


# --- the remote → local table ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "stage", "local"),
    [
        ("training", "pending", S.QUEUED),
        ("training", "pending-captcha", S.QUEUED),
        ("training", "ready-for-captcha", S.QUEUED),
        ("training", "queued-for-train", S.QUEUED),
        ("training", "starting-train", S.RUNNING),
        ("training", "running-train", S.RUNNING),
        ("trained", None, S.SUCCEEDED),
        ("trained", "running-train", S.SUCCEEDED),
        ("failed", None, S.FAILED),
        ("training-canceled", None, S.CANCELED),
    ],
)
def test_remote_states_map_to_local_states(status, stage, local):
    assert remote.local_state_for(status, stage) == local


def test_an_unknown_remote_state_is_logged_and_kept(caplog):
    with caplog.at_level(logging.WARNING, logger="training.services"):
        assert remote.local_state_for("training", "warming-the-gpus") is None
        assert remote.local_state_for("archived", None) is None
    assert "warming-the-gpus" in caplog.text
    assert "archived" in caplog.text


def is_valid_path(states: list[str]) -> bool:
    """Tell whether a trail of states (from draft) is a path of the state machine."""
    if not states or states[0] != S.DRAFT:
        return False
    return all(b in services.TRANSITIONS[a] for a, b in zip(states, states[1:], strict=False))


def test_valid_paths_follow_the_state_machine():
    assert is_valid_path([S.DRAFT, S.SUBMITTING, S.QUEUED, S.RUNNING, S.SUCCEEDED])
    assert is_valid_path([S.DRAFT, S.SUBMITTING, S.CANCEL_REQUESTED, S.CANCELED])
    assert is_valid_path([S.DRAFT, S.CANCELED])
    assert not is_valid_path([S.DRAFT, S.QUEUED])
    assert not is_valid_path([S.SUBMITTING, S.QUEUED])
    assert not is_valid_path([S.DRAFT, S.SUBMITTING, S.QUEUED, S.SUCCEEDED, S.FAILED])


def test_not_started_is_reached_only_from_submitting_and_leads_nowhere():
    assert is_valid_path([S.DRAFT, S.SUBMITTING, S.NOT_STARTED])
    # Once Scenario has the training it can fail, but no longer "not start".
    sources = {state for state, targets in services.TRANSITIONS.items() if S.NOT_STARTED in targets}
    assert sources == {S.SUBMITTING}
    assert services.TRANSITIONS[S.NOT_STARTED] == frozenset()
    assert S.NOT_STARTED in FINAL_STATES and S.NOT_STARTED not in ACTIVE_STATES


# --- launching ------------------------------------------------------------------------------


def test_a_launch_is_stored_in_draft_and_submitted_once_committed(
    alice, model, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        run = services.launch_run(
            user=alice, model=model, parameters={"nbEpochs": 2}, quote_cost=120.0
        )
    # The submit task, published only after the commit (beside the team's stamp, bumped then).
    tasks = [getattr(callback, "args", ()) for callback in callbacks]
    assert tasks.count(("submit_run", run.pk)) == 1 and len(callbacks) == 2
    run.refresh_from_db()
    assert run.state == S.DRAFT
    assert run.team == alice.membership.team
    assert run.model_type == "flux.1-lora"
    assert (run.parameters, run.quote_cu_cost) == ({"nbEpochs": 2}, 120.0)
    assert run.next_poll_at is not None  # the sweep's safety net if the publish is lost
    event = run.events.get()
    assert (event.to_state, event.source, event.actor) == (S.DRAFT, "user", alice)


def test_a_repeated_idempotency_key_returns_the_first_run(alice, model):
    key = uuid.uuid4()
    first = services.launch_run(user=alice, model=model, parameters={}, idempotency_key=key)
    again = services.launch_run(user=alice, model=model, parameters={}, idempotency_key=key)
    assert again.pk == first.pk
    assert TrainingRun.objects.count() == 1


def test_someone_elses_idempotency_key_is_refused(alice, dave, model):
    key = uuid.uuid4()
    services.launch_run(user=alice, model=model, parameters={}, idempotency_key=key)
    with pytest.raises(services.LaunchRefused):
        services.launch_run(user=dave, model=model, parameters={}, idempotency_key=key)


def test_a_launch_without_a_team_is_refused(staff, model):
    with pytest.raises(services.LaunchRefused, match="team"):
        services.launch_run(user=staff, model=model, parameters={})


def test_a_launch_of_another_teams_model_is_refused(charlie, model, team_a):
    model.team = team_a
    model.save()
    with pytest.raises(services.LaunchRefused, match="not open"):
        services.launch_run(user=charlie, model=model, parameters={})
    assert not TrainingRun.objects.exists()


# --- canceling ------------------------------------------------------------------------------


def test_canceling_a_draft_finishes_it_at_once(alice, run, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        assert services.request_cancel(run, alice)
    assert callbacks == []  # nothing was sent, nothing to tell Scenario
    run.refresh_from_db()
    assert run.state == S.CANCELED
    event = run.events.get()
    assert (event.from_state, event.to_state, event.actor) == (S.DRAFT, S.CANCELED, alice)


@pytest.mark.parametrize("state", [S.SUBMITTING, S.QUEUED, S.RUNNING])
def test_canceling_a_run_on_its_way_asks_for_a_cancel(
    alice, model, state, django_capture_on_commit_callbacks
):
    run = make_run(alice, model, state)
    with django_capture_on_commit_callbacks() as callbacks:
        assert services.request_cancel(run, alice)
    assert len(callbacks) == 1  # the cancel task
    run.refresh_from_db()
    assert run.state == S.CANCEL_REQUESTED
    event = run.events.get()
    assert (event.from_state, event.source, event.actor) == (state, "user", alice)
    assert event.message == "Cancel requested by Alice"  # her name, as the trail shows it


def test_canceling_twice_is_harmless(alice, bob, model, django_capture_on_commit_callbacks):
    run = make_run(alice, model, S.QUEUED)
    with django_capture_on_commit_callbacks() as callbacks:
        assert services.request_cancel(run, alice)
        assert not services.request_cancel(TrainingRun.objects.get(pk=run.pk), bob)
    assert len(callbacks) == 1
    assert run.events.count() == 1


def test_a_finished_run_is_not_canceled(alice, model):
    run = make_run(alice, model, S.SUCCEEDED)
    assert not services.request_cancel(run, alice)
    run.refresh_from_db()
    assert run.state == S.SUCCEEDED


def test_a_lead_cancels_a_teammates_run_but_other_artists_may_not(alice, bob, dave, model):
    run = make_run(alice, model, S.QUEUED)
    with pytest.raises(PermissionDenied):
        services.request_cancel(run, dave)
    assert services.request_cancel(run, bob)
    assert run.events.get().actor == bob


def test_another_team_may_not_cancel(alice, charlie, model):
    run = make_run(alice, model, S.RUNNING)
    with pytest.raises(PermissionDenied):
        services.request_cancel(run, charlie)
    run.refresh_from_db()
    assert run.state == S.RUNNING


# --- the sweep ------------------------------------------------------------------------------


def test_the_sweep_claims_due_runs_and_leaves_the_rest(
    alice, model, django_capture_on_commit_callbacks, settings
):
    settings.POLL_BY_LIST = (
        False  # one task a run (batches: tests/lifecycle/test_workers_list_poll)
    )
    now = timezone.now()
    past, future = now - timedelta(seconds=1), now + timedelta(minutes=5)
    due = [
        make_run(alice, model, S.QUEUED, next_poll_at=past, job_id="job_1"),
        make_run(alice, model, S.RUNNING, next_poll_at=past, job_id="job_2"),
        make_run(alice, model, S.DRAFT, next_poll_at=past),
        make_run(alice, model, S.SUBMITTING, next_poll_at=past, submitted_at=past),
    ]
    make_run(alice, model, S.RUNNING, next_poll_at=future, job_id="job_3")
    make_run(alice, model, S.SUCCEEDED, next_poll_at=past)
    with django_capture_on_commit_callbacks() as callbacks:
        assert services.sweep() == len(due)
    assert len(callbacks) == len(due)
    for run in due:
        run.refresh_from_db()
        assert run.next_poll_at > now


def test_two_sweeps_never_claim_the_same_run(alice, model, django_capture_on_commit_callbacks):
    past = timezone.now() - timedelta(seconds=1)
    make_run(alice, model, S.RUNNING, next_poll_at=past, job_id="job_1")
    with django_capture_on_commit_callbacks() as callbacks:
        assert services.sweep() == 1
        assert services.sweep() == 0
    assert len(callbacks) == 1


def test_a_sweep_that_read_a_run_before_another_claimed_it_gets_nothing(alice, model):
    past = timezone.now() - timedelta(seconds=1)
    run = make_run(alice, model, S.RUNNING, next_poll_at=past, job_id="job_1")
    seen_by_a, seen_by_b = TrainingRun.objects.get(pk=run.pk), TrainingRun.objects.get(pk=run.pk)
    delay = timedelta(seconds=2)
    assert services._claim_due(seen_by_a, timezone.now(), delay)
    assert not services._claim_due(seen_by_b, timezone.now(), delay)


def test_the_sweep_picks_up_runs_with_no_poll_time(
    alice, model, django_capture_on_commit_callbacks
):
    make_run(alice, model, S.DRAFT, next_poll_at=None)
    with django_capture_on_commit_callbacks() as callbacks:
        assert services.sweep() == 1
    assert len(callbacks) == 1


def test_polls_wait_longer_deep_in_a_queue_than_while_running(settings):
    running = services._poll_delay(S.RUNNING, {"stage": "running-train"})
    second = services._poll_delay(S.QUEUED, {"stage": "queued-for-train", "queue_position": 1})
    deep = services._poll_delay(S.QUEUED, {"stage": "queued-for-train", "queue_position": 12})
    assert running < second < deep
    assert deep <= timedelta(seconds=services.setting("POLL_MAX_SECONDS"))


def test_the_run_next_in_line_is_polled_as_often_as_a_training_one(settings):
    running = services._poll_delay(S.RUNNING, {"stage": "running-train"})
    next_in_line = services._poll_delay(
        S.QUEUED, {"stage": "queued-for-train", "queue_position": 0}
    )
    unknown_place = services._poll_delay(S.QUEUED, {"stage": "pending", "queue_position": None})
    assert next_in_line == running
    assert unknown_place == timedelta(seconds=settings.POLL_QUEUED_SECONDS)


def test_a_training_about_to_end_is_looked_at_just_after_its_expected_end(settings):
    settings.POLL_RUNNING_SECONDS = 2
    ending = services._poll_delay(S.RUNNING, {"stage": "running-train", "remaining_ms": 500})
    far = services._poll_delay(S.RUNNING, {"stage": "running-train", "remaining_ms": 60_000})
    assert ending == timedelta(seconds=0.5 + services.END_MARGIN_SECONDS)
    assert far == timedelta(seconds=2)
    # A queued run's remaining time includes the queue: it sets no earlier poll.
    queued = services._poll_delay(
        S.QUEUED, {"stage": "queued-for-train", "queue_position": 0, "remaining_ms": 500}
    )
    assert queued == timedelta(seconds=2)


def test_failed_polls_back_off_but_honour_retry_after():
    delays = [services._error_delay(failures, None) for failures in range(1, 6)]
    assert delays == sorted(delays)
    assert delays[0] < delays[-1]
    assert services._error_delay(1, 45.0) == 45.0
    assert services._error_delay(30, None) == services.setting("POLL_MAX_SECONDS")


# --- members --------------------------------------------------------------------------------


def test_adding_a_member_creates_the_team_and_the_user(db):
    membership = access.add_member("Team C", "erin", "lead", password="long-enough-pw")
    assert membership.team.name == "Team C"
    assert membership.role == "lead"
    assert membership.user.check_password("long-enough-pw")


def test_adding_an_existing_member_changes_their_team_and_role(alice, team_b):
    access.add_member("Team B", "alice", "lead")
    alice.refresh_from_db()
    assert (alice.membership.team, alice.membership.role) == (team_b, "lead")
    assert alice.has_usable_password()  # kept, since no new one was given


def test_no_event_is_written_without_a_state_change(run):
    services.transition(run, S.SUBMITTING, expected=[S.DRAFT], source="worker")
    services.transition(run, S.SUBMITTING, expected=[S.DRAFT], source="worker")
    assert RunEvent.objects.filter(run=run).count() == 1
