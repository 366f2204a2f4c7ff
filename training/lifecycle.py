"""Keep the ground floor of the training lifecycle: the states and the one way to move a run.

Where each state may go next (TRANSITIONS), the compare-and-set `transition` every change of
`TrainingRun.state` goes through, the audit line of a change that is not one, the lifecycle's
settings, and how its tasks are published (by name). training.services, training.team_queue
and the views build on this module; it builds on none of them.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import partial

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from training import notifications, params, rollups, stamps
from training.models import FINAL_STATES, EventSource, RunEvent, RunState, TrainingRun

log = logging.getLogger(__name__)

S = RunState

# The state machine: where each state may go next. Final states go nowhere.
TRANSITIONS: dict[str, frozenset[str]] = {
    S.DRAFT: frozenset({S.WAITING, S.SUBMITTING, S.CANCELED}),
    # In the team queue (training.team_queue): nothing was sent, so removing it costs nothing.
    S.WAITING: frozenset({S.SUBMITTING, S.CANCELED}),
    # Back to waiting when Scenario refused the trigger for a plan limit or a cooldown.
    S.SUBMITTING: frozenset({S.WAITING, S.QUEUED, S.FAILED, S.NOT_STARTED, S.CANCEL_REQUESTED}),
    S.QUEUED: frozenset({S.RUNNING, S.SUCCEEDED, S.FAILED, S.CANCELED, S.CANCEL_REQUESTED}),
    S.RUNNING: frozenset({S.SUCCEEDED, S.FAILED, S.CANCELED, S.CANCEL_REQUESTED}),
    S.CANCEL_REQUESTED: frozenset({S.SUCCEEDED, S.FAILED, S.CANCELED}),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELED: frozenset(),
    S.NOT_STARTED: frozenset(),
}

# Where a cancel can still be asked: states that may end canceled or go to cancel-requested,
# less cancel-requested itself (already asked).
CANCELABLE_STATES = frozenset(
    state
    for state, targets in TRANSITIONS.items()
    if targets & {S.CANCELED, S.CANCEL_REQUESTED} and state != S.CANCEL_REQUESTED
)

# The only states a trigger is sent from. Leaving them, a run forgets its secret parameters.
SENDING_STATES = frozenset({S.DRAFT, S.WAITING, S.SUBMITTING})
# States the sweep polls; a cancel-requested run only once its launch is confirmed.
POLLED_STATES = frozenset({S.QUEUED, S.RUNNING, S.CANCEL_REQUESTED})

# Publishing gives up quickly when the broker is down: the sweep re-enqueues from the DB.
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2}


def setting(name: str) -> float:
    """Return a lifecycle setting (dashboard/settings.py), read at call time for the tests."""
    return float(getattr(settings, name))


def transition(
    run: TrainingRun,
    to_state: str,
    *,
    expected,
    source: str,
    actor=None,
    message: str = "",
    condition: Q | None = None,
    **fields,
) -> bool:
    """Move the run to `to_state` if it is still in one of `expected`; record a RunEvent.

    Returns True only when this call changed the row: a False means someone else moved the
    run first, and the caller must not act as if it had. `fields` are written in the same
    UPDATE, which also requires `condition` when given. Final states also set finished_at and
    stop polling.
    """
    expected = [expected] if isinstance(expected, str) else list(expected)
    for state in expected:
        if to_state not in TRANSITIONS[state]:
            raise ValueError(f"{state} → {to_state} is not a transition of a training run")
    now = timezone.now()
    if to_state in FINAL_STATES:
        fields.setdefault("finished_at", now)
        fields.setdefault("next_poll_at", None)
    if to_state not in SENDING_STATES and isinstance(run.parameters, dict):
        # A key for an experiment tracker is kept only while the trigger may still go out.
        kept = params.without_secrets(run.parameters)
        if kept != run.parameters:
            fields.setdefault("parameters", kept)
    values = {"state": to_state, "updated_at": now, **fields}
    # Try the state we last saw first: it is almost always the one still in the row.
    for from_state in sorted(expected, key=lambda state: state != run.state):
        with transaction.atomic():
            rows = TrainingRun.objects.filter(pk=run.pk, state=from_state)
            if condition is not None:
                rows = rows.filter(condition)
            changed = rows.update(**values)
            if changed:
                stamps.changed(run.team_id)  # once this commits
                RunEvent.objects.create(
                    run=run,
                    from_state=from_state,
                    to_state=to_state,
                    source=source,
                    actor=actor,
                    message=message,
                )
                if to_state in FINAL_STATES:
                    notifications.record_run_end(run)  # the outbox, in this transaction
                    rollups.add_run(run.pk)  # history's sums, in this transaction too
        if changed:
            for name, value in values.items():
                setattr(run, name, value)
            return True
    return False


def record_event(run: TrainingRun, message: str, *, actor=None) -> None:
    """Write an audit line about a run that does not change its state (a queue move).

    The run's update time moves with it: the run page's live panel compares only that.
    """
    stamps.changed(run.team_id)
    TrainingRun.objects.filter(pk=run.pk).update(updated_at=timezone.now())
    RunEvent.objects.create(
        run=run,
        from_state=run.state,
        to_state=run.state,
        source=EventSource.USER if actor else EventSource.WORKER,
        actor=actor,
        message=message,
    )


def enqueue(task_name: str, *args) -> bool:
    """Publish a task for a run (or a batch of runs). A broker that is down loses nothing: the
    sweep finds the run.

    The task is named, not imported: training.tasks imports the lifecycle, never the reverse.
    """
    options = {"retry_policy": PUBLISH_RETRY_POLICY}
    if task_name in {"submit_run", "cancel_run"}:
        # These hold the submit lease: the worker kills them before the lease runs out.
        lease = setting("SUBMIT_TIMEOUT_SECONDS")
        options.update(time_limit=lease, soft_time_limit=lease * 0.8)
    try:
        current_app.signature(f"training.tasks.{task_name}").apply_async(args, **options)
    except Exception:  # each broker transport raises its own errors
        log.warning(
            "Could not enqueue %s for %s; the sweep will retry", task_name, args, exc_info=True
        )
        return False
    return True


def enqueue_on_commit(task_name: str, *args) -> None:
    """Publish a task once the current transaction commits."""
    transaction.on_commit(partial(enqueue, task_name, *args))


def is_launched(run: TrainingRun) -> bool:
    """Tell whether Scenario confirmed the launch.

    Only a confirmed launch stores a job id or a remote model status, so their presence is
    the proof.
    """
    return bool(run.job_id or run.remote_model_status)


def is_stalled(run: TrainingRun, now: datetime | None = None) -> bool:
    """Tell whether Scenario's state of a launched run has not moved for STALL_AFTER_SECONDS."""
    if run.state not in POLLED_STATES or not is_launched(run):
        return False
    moved = run.remote_updated_at or run.submitted_at
    limit = timedelta(seconds=setting("STALL_AFTER_SECONDS"))
    return moved is not None and (now or timezone.now()) - moved > limit
