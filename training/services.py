"""Run the training lifecycle: one state machine over TrainingRun, kept in step with Scenario.

Every change of `TrainingRun.state` goes through `transition` (training.lifecycle), a
compare-and-set UPDATE that also writes a RunEvent. Workers call the functions below through
thin Celery tasks; views and management commands call `launch_run` and `request_cancel`.

Launching safely. A run is written in draft and enqueued on commit; the sweep re-enqueues
it if the broker lost it. Only the holder of the submit lease (training.leases) sends the
trigger, and only after checking (again by compare-and-set) that no cancel came first.
Whoever takes over a lease asks Scenario first whether an earlier attempt already launched
the training, and adopts it instead of triggering again. That is what keeps it to at most
one launch per run, whatever the broker, the network or the workers do.

Secret parameters (an experiment tracker's key) are stored with the run only while a trigger
may still be sent, in draft and submitting: `transition` redacts them on the way out.

A trigger whose answer was lost sets `outcome_unknown_at`: the model is read back then and on
the READ_BACK_SECONDS schedule until it shows whether the launch happened. An adopted launch
finds its job in GET /jobs, so that it is billed like any other.

When Scenario does not move. A launch refused for an account limit (the plan's parallel
trainings, a cooldown) waits in submitting with its reason, and the sweep sends it again later;
it never fails for that. A run whose remote state has not moved for STALL_AFTER_SECONDS is
stalled: polled rarely, shown as such, and a lead may settle it. Transient failures that never
end have a give-up point (POLL_GIVE_UP_FAILURES, LAUNCH_GIVE_UP_SECONDS) and a failed state that
says why.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta
from typing import NoReturn

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from training import (
    access,
    budgets,
    forecast,
    leases,
    remote,
    scenario,
    scenario_client,
    stamps,
    team_queue,
)
from training.display import person
from training.lifecycle import (
    POLLED_STATES,
    TRANSITIONS,
    enqueue,
    enqueue_on_commit,
    is_launched,
    is_stalled,
    setting,
    transition,
)
from training.models import (
    ACTIVE_STATES,
    FINAL_STATES,
    EpochSample,
    EventSource,
    RunEvent,
    RunState,
    ScenarioModel,
    Team,
    TrainingRun,
)

log = logging.getLogger(__name__)

S = RunState

# Scenario's clock and ours may disagree a little when we ask "did this start after our run?".
# Small, so a training that ended just before a relaunch is not taken for the relaunch.
LAUNCH_CLOCK_SKEW = timedelta(seconds=10)
# The most runs one sweep claims: one listing of ceil(N / 500) pages serves the polled ones.
SWEEP_BATCH = 5000
# GET /models takes pages of at most 500 ("maximum value is 500").
LIST_PAGE_SIZE = 500
# Listed runs applied by one task: a listing of many runs is shared among worker processes.
APPLY_CHUNK = 100
# A run Scenario expects to end within an interval is looked at this long after that end.
END_MARGIN_SECONDS = 0.2
# A batch of listed polls holds its runs this long at most: the batch re-arms each run when
# it is done, and a batch whose task was lost is claimed again once the hold is over.
BATCH_HOLD_SECONDS = 30.0
# After a trigger's answer was lost, the model is read back this many seconds after, then
# every last step, until it shows whether the launch happened.
READ_BACK_SECONDS = (3.0, 10.0, 30.0)


class LaunchRefused(Exception):
    """Refuse a launch to the user; `message` says why, in words for them."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def settle_stalled(run: TrainingRun, user) -> bool:
    """Let a lead end a stalled run: failed, with who settled it and what Scenario last said.

    Nothing is sent to Scenario. Returns False when the run is no longer stalled (it moved,
    or ended, in the meantime).
    """
    if not access.may_settle(user, run):
        raise PermissionDenied("Only the team's lead may settle a stalled run.")
    if not is_stalled(run):
        return False
    moved = run.remote_updated_at or run.submitted_at
    said = ", ".join(part for part in (run.remote_model_status, run.stage) if part) or "nothing"
    message = (
        f"Settled by {person(user)}: Scenario's state had not moved since "
        f"{moved:%Y-%m-%d %H:%M} UTC (it last said {said}). It may still exist on Scenario."
    )
    return transition(
        run,
        S.FAILED,
        expected=[run.state],
        source=EventSource.USER,
        actor=user,
        message=message,
        error_message=message,
    )


# --- Launch and cancel (called by views and commands) ---------------------------------------


def launch_run(
    *,
    user,
    model: ScenarioModel,
    parameters: dict,
    quote_cost: float | None = None,
    quote_discount: float | None = None,
    idempotency_key=None,
    override_budget: bool = False,
) -> TrainingRun:
    """Store a new run in draft and enqueue its submission once the row is committed.

    A repeated idempotency key returns the run the first request made. Raises LaunchRefused
    when the user has no team, the model is not open to their team, or the quote would take
    the team over its monthly CU budget (unless a lead overrides, see _check_budget).
    """
    if idempotency_key is not None:
        existing = _run_for_key(user, idempotency_key)
        if existing is not None:
            return existing
    membership = access.membership_of(user)
    if membership is None:
        raise LaunchRefused("Only members of a team can launch trainings.")
    if not access.trainable_models(user).filter(pk=model.pk).exists():
        raise LaunchRefused(f"The model {model} is not open to {membership.team}.")
    try:
        with transaction.atomic():
            if not access.claim_model(model, membership.team):
                raise LaunchRefused(f"The model {model} now belongs to another team.")
            override_note = _check_budget(user, membership.team, quote_cost, override_budget)
            run = _create_draft(
                user=user,
                team=membership.team,
                model=model,
                parameters=parameters,
                quote_cu_cost=quote_cost,
                quote_cu_discount=quote_discount,
                idempotency_key=idempotency_key,
                budget_override=bool(override_note),
                quoted_at=timezone.now() if quote_cost is not None else None,
                **forecast.fields_at_launch(membership.team, model),
                message=f"Launched. {override_note}" if override_note else "Launched",
            )
    except IntegrityError:
        # Two requests with one key raced; the other one's run is the launch.
        existing = _run_for_key(user, idempotency_key) if idempotency_key else None
        if existing is None:
            raise
        return existing
    enqueue_on_commit("submit_run", run.pk)
    return run


def record_unasked_launch(*, user, model: ScenarioModel, parameters: dict, launch) -> TrainingRun:
    """Record a training Scenario started when only a dry run (a quote) was asked for.

    It is a real training, billed like one: it becomes a run, queued and followed like any
    other, and its trail says loudly how it began.
    """
    membership = access.membership_of(user)
    if membership is None:
        raise LaunchRefused("Only members of a team can launch trainings.")
    message = (
        f"Scenario STARTED A TRAINING (job {launch.job.id or 'unnamed'}) when only a cost "
        "estimate was asked for"
    )
    run = _create_draft(
        user=user, team=membership.team, model=model, parameters=parameters, message=message
    )
    now = timezone.now()
    transition(run, S.SUBMITTING, expected=[S.DRAFT], source=EventSource.WORKER,
               message=message, submitted_at=now)  # fmt: skip
    fields = _launch_fields(run, launch)
    _confirm_launch(run, fields, f"Adopted the training the dry run started ({fields['job_id']})")
    return run


def _launch_fields(run: TrainingRun, launch: scenario.Launch) -> dict:
    """Return the run's fields from a launch answer: the snapshot, the job, its quote."""
    fields = _snapshot_fields(run, launch.model, launch.job)
    fields["job_id"] = launch.job.id or fields.get("job_id", "")
    if launch.quote is not None:
        fields.update(quote_cu_cost=launch.quote.cost, quote_cu_discount=launch.quote.discount)
    return fields


def _run_for_key(user, key) -> TrainingRun | None:
    run = TrainingRun.objects.filter(idempotency_key=key).first()
    if run is not None and run.created_by_id != user.pk:
        raise LaunchRefused("This launch form was already used by someone else.")
    return run


def _check_budget(user, team: Team, quote_cost: float | None, override: bool) -> str:
    """Refuse a launch past the team's monthly budget; return the audit note of an override.

    Returns "" when the quote fits. A lead (or staff) who asked to override gets the note
    that goes into the run's first RunEvent; anyone else is refused with the reason.
    """
    # Lock the team row until the run is stored: two launches at once must not both fit into
    # the same remaining CU.
    team = Team.objects.select_for_update().get(pk=team.pk)
    refusal = budgets.check(team, quote_cost)
    if refusal is None:
        return ""
    if not override:
        raise LaunchRefused(refusal)
    if not budgets.can_override(user, team):
        raise LaunchRefused(f"Only a team lead can launch past the budget. {refusal}")
    return budgets.override_note(user, team, quote_cost)


def _create_draft(
    *, user, model: ScenarioModel, message: str = "Launched", **values
) -> TrainingRun:
    grace = timedelta(seconds=setting("SUBMIT_GRACE_SECONDS"))
    with transaction.atomic():
        run = TrainingRun.objects.create(
            created_by=user,
            model=model,
            model_type=model.type,
            state=S.DRAFT,
            next_poll_at=timezone.now() + grace,
            **values,
        )
        RunEvent.objects.create(
            run=run, to_state=S.DRAFT, source=EventSource.USER, actor=user, message=message
        )
    return run


def request_cancel(run: TrainingRun, user) -> bool:
    """Ask for the run to be canceled, with the web page's permission rules.

    A draft is canceled at once (nothing was sent). A run on its way to or at Scenario
    becomes cancel_requested and a cancel task is enqueued. Returns False when there was
    nothing to do (already cancel-requested or finished): cancelling twice is harmless.
    """
    if not access.can_cancel(user, run):
        raise PermissionDenied("You may not cancel this run.")
    who = person(user)
    if run.state == S.WAITING and transition(
        run,
        S.CANCELED,
        expected=[S.WAITING],
        source=EventSource.USER,
        actor=user,
        message=f"Removed from the team queue by {who}; nothing was sent or spent",
    ):
        return True
    if run.state == S.DRAFT and transition(
        run,
        S.CANCELED,
        expected=[S.DRAFT],
        source=EventSource.USER,
        actor=user,
        message=f"Canceled by {who} before it was sent",
    ):
        return True
    if transition(
        run,
        S.CANCEL_REQUESTED,
        expected=[S.SUBMITTING, S.QUEUED, S.RUNNING],
        source=EventSource.USER,
        actor=user,
        message=f"Cancel requested by {who}",
    ):
        enqueue_on_commit("cancel_run", run.pk)
        return True
    return False


# --- The model's epoch -----------------------------------------------------------------------


def record_epoch_choice(run: TrainingRun, epoch: str, user) -> None:
    """Remember the epoch Scenario has just accepted as the run's model's, and who chose it.

    Not a state change: no RunEvent, and updated_at stays the date of Scenario's last snapshot.
    A model uses one epoch, so an earlier run of the same model no longer holds it.
    """
    with transaction.atomic():
        others = TrainingRun.objects.filter(model_id=run.model_id).exclude(pk=run.pk)
        others = others.exclude(selected_epoch="")
        # A shared model's earlier runs may be other teams'.
        stamps.changed(run.team_id, *others.values_list("team_id", flat=True).distinct())
        others.update(selected_epoch="", selected_epoch_by=None)
        TrainingRun.objects.filter(pk=run.pk).update(selected_epoch=epoch, selected_epoch_by=user)
    run.selected_epoch, run.selected_epoch_by = epoch, user


# --- Submitting -----------------------------------------------------------------------------


def submit_run(run_id: int) -> None:
    """Send the run's trigger to Scenario, at most once, or adopt a launch that already went out.

    Raises a TryAgain (a transient ScenarioError) for a failure before anything was sent.
    """
    run = _active_run(run_id)
    if run is None:
        return
    if run.state == S.DRAFT:
        if team_queue.queue_draft(run):
            _launch(run, run.submitted_at, reconcile=False)
    elif run.state == S.SUBMITTING and run.outcome_unknown_at is not None:
        _settle_unknown(run, scenario_client.get())
    elif run.state == S.SUBMITTING:
        lease = leases.take(run)
        if lease is not None:  # the earlier attempt died or gave up: ask Scenario first
            # A run just sent from the team queue (no lease, no trigger yet): nothing to look for.
            sent_before = run.triggers_sent > 0 or run.submitted_at is not None
            _launch(run, lease, reconcile=sent_before)
    elif run.state == S.CANCEL_REQUESTED and not is_launched(run):
        _settle_unlaunched_cancel(run)


def _launch(run: TrainingRun, lease: datetime, *, reconcile: bool) -> None:
    client = scenario_client.get()
    if reconcile:
        model = _reconcile(run, client, lease)
        if model is None or _launch_visible(model, run):
            return
    run.submitted_at = lease
    if not team_queue.refresh_quote(run, client):
        return
    lease = leases.renew(run, lease)
    if lease is None:
        _lost_lease(run)
        return
    try:
        launch = client.trigger(run.model.remote_id, run.parameters)
    except scenario.OutcomeUnknown as error:
        _outcome_unknown(run, client, error, lease)
        return
    except scenario.ResponseShapeError as error:
        _answer_not_understood(run, client, error)
        return
    except scenario.ScenarioError as error:
        if getattr(error, "launch_limit", ""):
            team_queue.wait_for_limit(run, lease, error)
            return
        if error.transient:
            leases.release(run, lease)
            if _gave_up(run, error):
                return
            raise
        if isinstance(error, scenario.AlreadyTraining) and team_queue.other_run_is_training(run):
            team_queue.wait_for_model(run, lease)
        elif isinstance(error, scenario.AlreadyTraining) and run.triggers_sent > 1:
            _second_trigger_refused(run, client, error)
        elif _is_refusal(error):
            _not_started(run, error)
        else:
            _refused(run, error)
        return
    fields = _launch_fields(run, launch)
    _confirm_launch(run, fields, f"Scenario accepted the launch (job {fields['job_id']})")


def _reconcile(run: TrainingRun, client, lease: datetime) -> scenario.Model | None:
    """Read the remote model; adopt the launch if an earlier attempt made it. None: stop here."""
    try:
        model = client.get_model(run.model.remote_id)
    except scenario.NotFound:
        _fail(run, "The model no longer exists on Scenario.")
        return None
    except scenario.ScenarioError as error:
        if error.transient:
            leases.release(run, lease)
            if _gave_up(run, error):
                return None
            raise
        _refused(run, error)
        return None
    if _launch_visible(model, run):
        fields = _adoption_fields(run, client, model)
        _confirm_launch(run, fields, "Scenario was already training it: adopted that launch")
    return model


def _launch_visible(model: scenario.Model, run: TrainingRun) -> bool:
    """Tell whether the remote model shows a training started after this run was created."""
    since = _launch_horizon(run)
    if model.status == remote.TRAINING_STATUS:
        started = model.training_progress.started_at if model.training_progress else None
        return started is None or started >= since
    if model.status in remote.FINAL_STATUSES and model.training_stats is not None:
        started = model.training_stats.started_at
        return started is not None and started >= since
    return False


def _confirm_launch(run: TrainingRun, fields: dict, message: str) -> None:
    """Record that Scenario has the training: queued, or still cancel-requested."""
    fields.update(poll_failures=0, waiting_reason="")
    fields.setdefault("remote_updated_at", timezone.now())
    fields["next_poll_at"] = timezone.now() + _poll_delay(S.QUEUED, fields)
    if transition(
        run, S.QUEUED, expected=[S.SUBMITTING], source=EventSource.WORKER, message=message, **fields
    ):
        team_queue.learn_accepted_launch(run)
        return
    # A cancel came in while the trigger was on its way: keep it, record the launch, send it.
    if _record_launch_while_canceling(run, fields):
        log.info("Run %s was launched after its cancel was requested; canceling it", run.pk)
        enqueue_on_commit("cancel_run", run.pk)


def _record_launch_while_canceling(run: TrainingRun, fields: dict) -> bool:
    fields["next_poll_at"] = timezone.now() + _poll_delay(S.CANCEL_REQUESTED, fields)
    return _write_snapshot(run, fields, state=S.CANCEL_REQUESTED)


def _gave_up(run: TrainingRun, error: scenario.ScenarioError) -> bool:
    """End a launch failed, saying why, once transient failures have kept it from going out
    for LAUNCH_GIVE_UP_SECONDS. A launch waiting for a plan limit is never given up, and time
    spent in the team queue does not count."""
    sent = run.events.filter(from_state=S.WAITING, to_state=S.SUBMITTING).order_by("-at")
    sent = sent.values_list("at", flat=True)
    waited = (timezone.now() - (sent.first() or run.created_at)).total_seconds()
    if run.waiting_reason or waited <= setting("LAUNCH_GIVE_UP_SECONDS"):
        return False
    return _fail(
        run,
        f"Gave up launching after {waited / 60:.0f} minutes of failures on Scenario's side "
        f"(the last: {error.message}). Nothing was started; launch it again when Scenario "
        "answers.",
        expected=[S.SUBMITTING],
    )


def _outcome_unknown(run: TrainingRun, client, error: scenario.ScenarioError, lease) -> None:
    """Note when a trigger may have reached Scenario unanswered, and read the model back now.

    Until a read-back tells, the run keeps its lease and nobody triggers again; the sweep
    brings the next read-back on the READ_BACK_SECONDS schedule.
    """
    log.warning("Launch of run %s has an unknown outcome: %s", run.pk, error)
    now = timezone.now()
    TrainingRun.objects.filter(
        pk=run.pk,
        state__in=[S.SUBMITTING, S.CANCEL_REQUESTED],
        submitted_at=lease,
        job_id="",
        remote_model_status="",  # a cancel already found and recorded the launch
    ).update(outcome_unknown_at=now)
    run.refresh_from_db()
    if run.outcome_unknown_at is not None and not run.is_final:
        _settle_unknown(run, client)


def _settle_unknown(run: TrainingRun, client) -> None:
    """Read the model back after a lost trigger answer and act on what it shows.

    The launch shows: adopt it, with its job, and send a waiting cancel at once. It does not:
    trigger again (Scenario refuses a second launch of a training model, so a launch that
    shows up late cannot train twice), or, when a cancel is waiting, settle the run canceled
    once the whole schedule has passed without the launch showing. The model cannot be read:
    read it again at the next step of the schedule.
    """
    try:
        model = client.get_model(run.model.remote_id)
    except scenario.NotFound:
        _fail(run, "The model no longer exists on Scenario.")
        return
    except scenario.ScenarioError as error:
        log.info("Read-back of run %s failed (%s); trying again soon", run.pk, error)
        _schedule_read_back(run)
        return
    if _launch_visible(model, run):
        fields = _adoption_fields(run, client, model)
        if run.state == S.CANCEL_REQUESTED:
            if _record_launch_while_canceling(run, fields):
                _send_cancel(run)
            return
        _confirm_launch(run, fields, "Launch confirmed on Scenario")
    elif run.state == S.CANCEL_REQUESTED:
        if timezone.now() - run.outcome_unknown_at >= timedelta(seconds=READ_BACK_SECONDS[-1]):
            _cancel_unsent(run)
        else:
            _schedule_read_back(run)
    elif leases.free_after_read_back(run):
        log.info("Run %s: the read-back shows no launch; triggering again", run.pk)
        enqueue("submit_run", run.pk)


def _schedule_read_back(run: TrainingRun) -> None:
    """Look at the model again at the next step of READ_BACK_SECONDS after the lost answer;
    with a cancel waiting, every first step, so that it goes out soon after the launch shows."""
    now, since = timezone.now(), run.outcome_unknown_at
    steps = [since + timedelta(seconds=step) for step in READ_BACK_SECONDS]
    due = next((moment for moment in steps if moment > now), None)
    due = due or now + timedelta(seconds=READ_BACK_SECONDS[-1])
    if run.state == S.CANCEL_REQUESTED:
        due = min(due, now + timedelta(seconds=READ_BACK_SECONDS[0]))
    TrainingRun.objects.filter(
        pk=run.pk, state=run.state, outcome_unknown_at=since, job_id="", remote_model_status=""
    ).update(next_poll_at=due)


def _second_trigger_refused(run: TrainingRun, client, error: scenario.ScenarioError) -> None:
    """Adopt the first launch when a trigger sent again after a lost answer was refused.

    "Already training": the first one launched after all. Only a training that is not this
    run's ends it.
    """
    log.warning("Scenario refused the second trigger of run %s (%s); adopting", run.pk, error)
    try:
        model = client.get_model(run.model.remote_id)
    except scenario.ScenarioError as read_error:
        _outcome_unknown(run, client, read_error, run.submitted_at)
        return
    if _launch_visible(model, run):
        fields = _adoption_fields(run, client, model)
        _confirm_launch(run, fields, "Scenario refused a second trigger: adopted the first launch")
    else:
        _not_started(run, error)


def _adoption_fields(run: TrainingRun, client, model: scenario.Model) -> dict:
    """Return the snapshot of a launch adopted by reading it back, with its job if found.

    The model names no job: GET /jobs does. A failed look-up is tried again by the polls.
    """
    job = None
    try:
        job = client.find_training_job(run.model.remote_id, since=_launch_horizon(run))
    except scenario.ScenarioError as error:
        log.info("Could not look up the job of run %s: %s", run.pk, error)
    fields = _snapshot_fields(run, model, job)
    if job is not None:
        fields["job_id"] = job.id
    fields["outcome_unknown_at"] = None
    return fields


def _launch_horizon(run: TrainingRun) -> datetime:
    """Return the earliest moment a training of this run can have been created on Scenario."""
    return run.created_at - LAUNCH_CLOCK_SKEW


def _answer_not_understood(run: TrainingRun, client, error: scenario.ScenarioError) -> None:
    """Look whether a training started, after a 2xx answer without a job, before failing it."""
    log.warning("Scenario's answer to the launch of run %s was not understood: %s", run.pk, error)
    if _read_back(run, client) is False:
        _refused(run, error)


def _read_back(run: TrainingRun, client) -> bool | None:
    """Adopt the launch if the remote model shows it. None when the model could not be read
    (the lease stays taken: whoever takes it over reconciles first)."""
    try:
        model = client.get_model(run.model.remote_id)
    except scenario.ScenarioError:
        return None
    if not _launch_visible(model, run):
        return False
    _confirm_launch(run, _adoption_fields(run, client, model), "Launch confirmed on Scenario")
    return True


def _refused(run: TrainingRun, error: scenario.ScenarioError) -> None:
    message = error.message or str(error)
    if not _fail(run, message, expected=[S.SUBMITTING]):
        _cancel_refused(run, message)


def _is_refusal(error: scenario.ScenarioError) -> bool:
    """Tell whether Scenario read the trigger and said no (a 4xx): then nothing started."""
    return error.status is not None and 400 <= error.status < 500


def _not_started(run: TrainingRun, error: scenario.ScenarioError) -> None:
    """End the run not started: Scenario refused its trigger ("Model is already training").

    Nothing started, so nothing failed and nothing is owed. A cancel that came first still
    ends it canceled.
    """
    message = error.message or str(error)
    if not transition(
        run,
        S.NOT_STARTED,
        expected=[S.SUBMITTING],
        source=EventSource.WORKER,
        message=f"Scenario refused the launch: {message}",
        error_message=message,
    ):
        _cancel_refused(run, message)


def _cancel_refused(run: TrainingRun, message: str) -> None:
    transition(
        run,
        S.CANCELED,
        expected=[S.CANCEL_REQUESTED],
        source=EventSource.WORKER,
        message=f"Canceled; Scenario had refused the launch: {message}",
        error_message=message,
    )


def _lost_lease(run: TrainingRun) -> None:
    """Settle a run whose pre-send check failed: a cancel came first (the trigger never goes
    out), or a newer attempt took over."""
    run.refresh_from_db()
    if run.state == S.CANCEL_REQUESTED:
        _cancel_unsent(run)


def _cancel_unsent(run: TrainingRun) -> None:
    transition(
        run,
        S.CANCELED,
        expected=[S.CANCEL_REQUESTED],
        source=EventSource.WORKER,
        message="Canceled before the launch reached Scenario",
    )


# --- Polling --------------------------------------------------------------------------------


def poll_run(run_id: int, held_until: str = "") -> None:
    """Read the run's model (and job when needed) and store what changed; nothing otherwise.

    A run a listing handed over (`held_until`, its claim) is due again after its usual
    interval once this is done, however the poll went.
    """
    run = _active_run(run_id)
    if run is None or run.state not in POLLED_STATES or not is_launched(run):
        return
    client = scenario_client.get()
    try:
        model = client.get_model(run.model.remote_id)
    except scenario.NotFound:
        _fail(run, "The model no longer exists on Scenario.")
        return
    except scenario.ScenarioError as error:
        _poll_failed(run, error)
        return
    _refresh(run, client, model)
    if run.state == S.CANCEL_REQUESTED and model.status == remote.TRAINING_STATUS:
        # Still training: the cancel may have been lost on its way. Sending it again is harmless.
        enqueue_on_commit("cancel_run", run.pk)
    if held_until:
        _rearm([run], datetime.fromisoformat(held_until))


def poll_listed(run_ids: list[int], held_until: str = "") -> None:
    """Refresh the runs a sweep claimed from one listing of Scenario's training models.

    ceil(N / 500) list calls serve N runs. The listed runs are applied in chunks: the first
    here, the others by other worker processes at the same time (apply_listed), each with
    its part of the listing. A model no longer listed has left "training": its final state
    and trainingStats need a read of its own (poll_run). A failed listing puts the whole
    batch off at once. A run this batch holds (`held_until`, the sweep's claim) is due again
    after its usual interval when its chunk is done: the next poll is never sent while this
    one is under way. The listing lease is given back once the listing is shared out: the
    next listing may go out while chunks are still applied.
    """
    try:
        first, training = _list_and_share(_polled_runs(run_ids), held_until)
    finally:
        if held_until:  # whatever happened
            leases.release_listing(datetime.fromisoformat(held_until))
    if first:
        _apply_listed(first, training, held_until)


def _list_and_share(
    runs: list[TrainingRun], held_until: str
) -> tuple[list[TrainingRun], dict[str, scenario.Model]]:
    """List the training models and share the listed runs out in chunks, all but the first.

    Returns the first chunk, to be applied by this task, and the listing; nothing when the
    listing failed. A run whose model is not listed gets a read of its own.
    """
    if not runs:
        return [], {}
    client = scenario_client.get()
    try:
        listed = client.iter_models(status=remote.TRAINING_STATUS, page_size=LIST_PAGE_SIZE)
        training = {model.id: model for model in listed}
    except scenario.ScenarioError as error:
        _listing_failed(runs, error)
        return [], {}
    found = []
    for run in runs:
        if run.model.remote_id in training:
            found.append(run)
        else:
            enqueue("poll_run", run.pk, held_until)
    chunks = [found[start : start + APPLY_CHUNK] for start in range(0, len(found), APPLY_CHUNK)]
    for chunk in chunks[1:]:
        part = {run.model.remote_id: training[run.model.remote_id].raw for run in chunk}
        enqueue("apply_listed", [run.pk for run in chunk], part, held_until)
    return (chunks[0] if chunks else []), training


def apply_listed(run_ids: list[int], listing: dict[str, dict], held_until: str = "") -> None:
    """Apply a chunk of a listing (model id → the model as listed) to the runs it holds."""
    training = {model_id: scenario.parse_model(raw) for model_id, raw in listing.items()}
    runs = [run for run in _polled_runs(run_ids) if run.model.remote_id in training]
    _apply_listed(runs, training, held_until)


def _polled_runs(run_ids: list[int]) -> list[TrainingRun]:
    """Load the runs that are still polled and launched, with their models, in one query."""
    runs = (
        TrainingRun.objects.filter(pk__in=run_ids, state__in=POLLED_STATES)
        .select_related("model")
        .order_by("pk")
    )
    return [run for run in runs if is_launched(run)]


def _apply_listed(
    runs: list[TrainingRun], training: dict[str, scenario.Model], held_until: str
) -> None:
    client = scenario_client.get()
    # Each run's transition commits on its own; the team stamps move once per flush.
    with stamps.coalesced():
        batch = SnapshotBatch(runs)
        for run in runs:
            model = training[run.model.remote_id]
            _refresh(run, client, model, needs_job=_job_has_news, batch=batch)
            if run.state == S.CANCEL_REQUESTED:
                enqueue_on_commit("cancel_run", run.pk)  # still training: the cancel may be lost
        batch.write()
    if held_until:
        _rearm(runs, datetime.fromisoformat(held_until))


def _rearm(runs: list[TrainingRun], held_until: datetime) -> None:
    """Make the runs a batch still holds due again, one UPDATE per interval.

    Due one interval after the sweep claimed them (last_polled_at), or now if the batch took
    longer: a run's polls follow one another at its interval, not at the interval plus the
    time the batch took.
    """
    by_due: dict[datetime, list[int]] = defaultdict(list)
    now = timezone.now()
    for run in runs:
        snapshot = {"stage": run.stage, "queue_position": run.queue_position,
                    "remote_updated_at": run.remote_updated_at,
                    "remaining_ms": run.remaining_ms}  # fmt: skip
        claimed = run.last_polled_at or now
        due = max(now, claimed + _poll_delay(run.state, snapshot))
        by_due[due].append(run.pk)
    for due, pks in by_due.items():
        TrainingRun.objects.filter(pk__in=pks, next_poll_at=held_until).update(next_poll_at=due)


def _listing_failed(runs: list[TrainingRun], error: scenario.ScenarioError) -> None:
    """Put a batch off after a failed listing, or poll its runs one by one if it cannot work."""
    if not error.transient:
        log.warning("Listing training models failed (%s); polling %d runs one by one",
                    error, len(runs))  # fmt: skip
        for run in runs:
            enqueue("poll_run", run.pk)
        return
    delay = max(setting("POLL_RUNNING_SECONDS") * 4, error.retry_after or 0.0)
    log.info("Listing training models failed (%s); %d runs wait %.1fs", error, len(runs), delay)
    later = timezone.now() + timedelta(seconds=min(delay, setting("POLL_MAX_SECONDS")))
    TrainingRun.objects.filter(pk__in=[run.pk for run in runs]).update(next_poll_at=later)


def _job_has_news(run: TrainingRun, model: scenario.Model) -> bool:
    """Tell whether the job holds something the list does not: a new status, or the bill.

    Its status moves with the stage (and to "finalizing" when progress reaches 1); progress
    within a stage is in the list already.
    """
    if model.status in remote.FINAL_STATUSES:
        return True
    progress = model.training_progress
    if progress is None:
        return False
    finalizing = progress.progress >= 1 and (run.progress or 0) < 1
    return (progress.stage or "") != run.stage or finalizing


def _refresh(run: TrainingRun, client, model: scenario.Model, needs_job=None, batch=None) -> bool:
    needs_job = needs_job or _needs_job
    job, found = None, {}
    job_id = run.job_id or model.job_id
    if not job_id:
        found = _look_up_job(run, client, model)
        if found is None:
            return False
        job_id = found.get("job_id", "")
    if job_id and needs_job(run, model):
        try:
            job = client.get_job(job_id)
        except scenario.NotFound:
            job = None
        except scenario.ScenarioError as error:
            if model.status in remote.FINAL_STATUSES:
                _poll_failed(run, error)  # the billing matters: try again soon
                return False
            log.info("Could not read job %s of run %s: %s", job_id, run.pk, error)
    return apply_snapshot(run, model, job, found, batch=batch)


def _look_up_job(run: TrainingRun, client, model: scenario.Model) -> dict | None:
    """Look for the job of a launch adopted without one: the fields to store, or None when
    the look-up failed on a run that has ended (its bill matters: the poll tries again soon).

    A run that has ended without its job being found is marked cost_unknown.
    """
    ended = model.status in remote.FINAL_STATUSES
    try:
        job = client.find_training_job(run.model.remote_id, since=_launch_horizon(run))
    except scenario.ScenarioError as error:
        if ended:
            _poll_failed(run, error)
            return None
        log.info("Could not look up the job of run %s: %s", run.pk, error)
        return {}
    if job is not None:
        return {"job_id": job.id}
    if ended:
        log.warning("Run %s ended and Scenario lists no job for it: cost unknown", run.pk)
        return {"cost_unknown": True}
    return {}


def _needs_job(run: TrainingRun, model: scenario.Model) -> bool:
    """Tell whether to read the job: it holds the status history and the billing."""
    if model.status in remote.FINAL_STATUSES:
        return True
    progress = model.training_progress
    if progress is None:
        return False
    return (progress.stage or "", progress.progress) != (run.stage, run.progress)


def apply_snapshot(
    run: TrainingRun,
    model: scenario.Model,
    job: scenario.Job | None,
    extra: dict | None = None,
    *,
    batch: SnapshotBatch | None = None,
) -> bool:
    """Store the remote snapshot, new epoch samples and the state it implies. Wrote anything?

    `extra` are more fields to store with it (a job found by looking it up). With a `batch`,
    a snapshot that changes no state is left to it, to be written with the others.
    """
    snapshot = {**_snapshot_fields(run, model, job), **(extra or {})}
    fields = {name: value for name, value in snapshot.items() if getattr(run, name) != value}
    if "remote_updated_at" not in snapshot and REMOTE_MOVES & fields.keys():
        # Scenario gave no date for this state: it moved when a poll first saw it.
        fields["remote_updated_at"] = timezone.now()
    if run.poll_failures:
        fields["poll_failures"] = 0
    target = remote.local_state_for(model.status, _stage(model))
    moves = bool(target) and target != run.state and target in TRANSITIONS[run.state]
    if batch is not None and not moves:
        return batch.add(run, model, fields)
    # Samples first: a worker killed between the two must not leave a finished run, never
    # polled again, without its last epoch's samples.
    stored = _store_samples(run, model)
    wrote = False
    if moves:
        fields.update(_final_fields(target, model, job))
        if target not in FINAL_STATES:
            fields["next_poll_at"] = _next_poll(run, target, fields)
        wrote = transition(
            run,
            target,
            expected=[run.state],
            source=EventSource.WORKER,
            message=_transition_message(run.state, target, model, job),
            **fields,
        )
    elif fields or stored:
        # New samples alone still move updated_at: the run page's panel compares only that.
        fields["next_poll_at"] = _next_poll(run, run.state, fields)
        wrote = _write_snapshot(run, fields)
    return stored or wrote


REMOTE_MOVES = frozenset({"remote_model_status", "stage", "queue_position", "progress"})


def _next_poll(run: TrainingRun, state: str, fields: dict) -> datetime:
    names = ("stage", "queue_position", "remote_updated_at", "remaining_ms")
    snapshot = {name: fields.get(name, getattr(run, name)) for name in names}
    return timezone.now() + _poll_delay(state, snapshot)


def _write_snapshot(run: TrainingRun, fields: dict, state: str | None = None) -> bool:
    """Write snapshot fields without a state change, if the run is still in `state`."""
    state = state or run.state
    now = timezone.now()
    written = TrainingRun.objects.filter(pk=run.pk, state=state).update(updated_at=now, **fields)
    if written:
        stamps.changed(run.team_id)
        run.state = state
        for name, value in fields.items():
            setattr(run, name, value)
    return bool(written)


def _stage(model: scenario.Model) -> str | None:
    return model.training_progress.stage if model.training_progress else None


def _snapshot_fields(run: TrainingRun, model: scenario.Model, job: scenario.Job | None) -> dict:
    """Return the run's fields as the remote model (and job) describe them now."""
    fields: dict = {"remote_model_status": model.status or ""}
    progress = model.training_progress
    if progress is not None:
        fields.update(
            stage=progress.stage or "",
            queue_position=progress.position,
            progress=progress.progress,
            remaining_ms=progress.remaining_ms,
        )
    if progress is not None and progress.updated_at is not None:
        fields["remote_updated_at"] = progress.updated_at
    if isinstance(model.raw.get("parameters"), dict):
        fields["remote_parameters"] = model.parameters
    if model.epochs:
        fields["epoch_names"] = [epoch.epoch for epoch in model.epochs]
    if model.job_id and not run.job_id:
        fields["job_id"] = model.job_id
    stats = model.training_stats
    if stats is not None:
        fields.update(
            train_started_at=stats.started_at,
            train_ended_at=stats.ended_at,
            queue_duration=stats.queue_duration,
            train_duration=stats.train_duration,
        )
    if job is not None:
        fields["remote_job_status"] = job.status or ""
        fields["status_history"] = [
            {"date": change.date.isoformat(), "status": change.status}
            for change in job.status_history
        ]
        if job.billing is not None:
            fields.update(cu_cost=job.billing.cu_cost, cu_discount=job.billing.cu_discount)
    error = model.error or (job.error if job is not None else "")
    if error:
        fields["error_message"] = error
    if job is not None and job.hint:
        fields["error_hint"] = job.hint
    return fields


def _final_fields(target: str, model: scenario.Model, job: scenario.Job | None) -> dict:
    if target == S.SUCCEEDED:
        return {"progress": 1.0, "remaining_ms": 0, "queue_position": None}
    if target == S.FAILED and not (model.error or (job and job.error)):
        return {"error_message": "Scenario reported the training as failed."}
    return {}


def _transition_message(from_state, target, model, job) -> str:
    if target == S.RUNNING:
        return "Training started"
    if target == S.FAILED:
        return model.error or (job.error if job else "") or "Scenario reported the training failed"
    if from_state == S.CANCEL_REQUESTED and target == S.SUCCEEDED:
        return "The training had already finished when the cancel reached Scenario"
    if from_state == S.CANCEL_REQUESTED and target == S.CANCELED:
        return "Scenario confirmed the cancel"
    if target == S.CANCELED:
        return "Canceled on Scenario"
    return "Training finished"


def _store_samples(run: TrainingRun, model: scenario.Model) -> bool:
    """Add the epoch samples not stored yet; the prompt comes from samplePrompts by index."""
    if not any(epoch.assets for epoch in model.epochs):
        return False
    have = set(run.samples.values_list("epoch_index", "prompt_index"))
    new = _new_samples(run, model, have)
    # Two polls may race here; the unique constraint keeps one row per epoch and prompt.
    EpochSample.objects.bulk_create(new, ignore_conflicts=True)
    if new:
        stamps.changed(run.team_id)  # bulk_create sends no signal
    return bool(new)


def _new_samples(run: TrainingRun, model: scenario.Model, have: set) -> list[EpochSample]:
    """Return the samples the model lists that are not in `have` (epoch, prompt) yet."""
    prompts = run.parameters.get("samplePrompts") or []
    return [
        EpochSample(
            run=run,
            epoch=epoch.epoch,
            epoch_index=epoch_index,
            prompt_index=prompt_index,
            prompt=prompts[prompt_index] if prompt_index < len(prompts) else "",
            asset_id=asset.asset_id,
            url=asset.url,
        )
        for epoch_index, epoch in enumerate(model.epochs)
        for prompt_index, asset in enumerate(epoch.assets)
        if (epoch_index, prompt_index) not in have
    ]


class SnapshotBatch:
    """The snapshots of many runs that change no state, written together.

    One query reads which samples the runs have, one INSERT adds the new ones, and one UPDATE
    per state writes the fields: a listing of hundreds of runs costs a few queries, not a few
    per run. Each UPDATE still requires the state the run was read in, so a run that moved
    meanwhile (a cancel asked) keeps what its mover wrote.
    """

    def __init__(self, runs: list[TrainingRun]):
        self.have: dict[int, set] = defaultdict(set)
        keys = EpochSample.objects.filter(run__in=runs).values_list(
            "run_id", "epoch_index", "prompt_index"
        )
        for run_id, epoch_index, prompt_index in keys:
            self.have[run_id].add((epoch_index, prompt_index))
        self.samples: list[EpochSample] = []
        self.changed: dict[str, list[TrainingRun]] = defaultdict(list)
        self.names: dict[str, set[str]] = defaultdict(set)

    def add(self, run: TrainingRun, model: scenario.Model, fields: dict) -> bool:
        new = _new_samples(run, model, self.have[run.pk])
        self.samples.extend(new)
        # New samples alone still move updated_at: the run page's panel compares only that.
        if fields or new:
            for name, value in fields.items():
                setattr(run, name, value)
            self.changed[run.state].append(run)
            self.names[run.state].update(fields)
        return bool(new or fields)

    def write(self) -> None:
        # Samples first, as apply_snapshot does.
        EpochSample.objects.bulk_create(self.samples, ignore_conflicts=True)
        now = timezone.now()
        for state, runs in self.changed.items():
            for run in runs:
                run.updated_at = now
            _update_each(runs, sorted(self.names[state] | {"updated_at"}), state)
        # Neither the INSERT nor the UPDATE sends a signal.
        stamps.changed(*{run.team_id for runs in self.changed.values() for run in runs})


def _update_each(runs: list[TrainingRun], names: list[str], state: str) -> None:
    """Write the fields `names` of each run still in `state`, one statement for all rows.

    One parameterised UPDATE sent for every row at once (executemany): Django's bulk_update
    builds a CASE per field and row, which cost more than the database's work.
    """
    meta, quote = TrainingRun._meta, connection.ops.quote_name
    fields = [meta.get_field(name) for name in names]
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in fields)
    sql = (
        f"UPDATE {quote(meta.db_table)} SET {assignments} "
        f"WHERE {quote(meta.pk.column)} = %s AND {quote(meta.get_field('state').column)} = %s"
    )
    rows = [
        [field.get_db_prep_save(getattr(run, field.attname), connection) for field in fields]
        + [run.pk, state]
        for run in runs
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def _poll_failed(run: TrainingRun, error: scenario.ScenarioError) -> None:
    failures = run.poll_failures + 1
    if failures >= setting("POLL_GIVE_UP_FAILURES"):
        _fail(
            run,
            f"Gave up following this run: Scenario could not be read {failures} times in a "
            f"row (the last: {error.message or error}). It may still be training on Scenario.",
        )
        return
    delay = _error_delay(failures, error.retry_after)
    log.info("Poll of run %s failed (%s); next try in %.1fs", run.pk, error, delay)
    TrainingRun.objects.filter(pk=run.pk, state=run.state).update(
        poll_failures=failures, next_poll_at=timezone.now() + timedelta(seconds=delay)
    )


def _poll_delay(state: str, snapshot: dict) -> timedelta:
    """Return when to poll next: soon while running or next in line, later the deeper in the queue.

    The run next in line may start any moment: polled as often as a training one, its page
    stops saying "waiting" soon after Scenario starts it.
    """
    next_in_line = snapshot.get("queue_position") == 0
    moved = snapshot.get("remote_updated_at")
    stall = timedelta(seconds=setting("STALL_AFTER_SECONDS"))
    if moved is not None and timezone.now() - moved > stall:
        # Stalled (an unknown state, or Scenario stuck): look rarely until someone settles it.
        seconds = setting("POLL_MAX_SECONDS")
    elif state == S.CANCEL_REQUESTED:
        seconds = setting("POLL_CANCEL_SECONDS")
    elif state == S.RUNNING or snapshot.get("stage") in remote.FAST_POLL_STAGES or next_in_line:
        seconds = setting("POLL_RUNNING_SECONDS")
        remaining = snapshot.get("remaining_ms")
        if state == S.RUNNING and remaining is not None:
            # Look again just after Scenario expects the training to end, if that is sooner:
            # its end then shows at the next poll, not up to an interval later.
            seconds = min(seconds, remaining / 1000 + END_MARGIN_SECONDS)
    else:
        ahead = snapshot.get("queue_position") or 0
        seconds = setting("POLL_QUEUED_SECONDS") + ahead * setting("POLL_QUEUE_STEP_SECONDS")
    return timedelta(seconds=min(seconds, setting("POLL_MAX_SECONDS")))


def _error_delay(failures: int, retry_after: float | None) -> float:
    """Return the backoff after failed polls, never sooner than Scenario's Retry-After."""
    backoff = setting("POLL_RUNNING_SECONDS") * 2 ** min(failures, 16)
    return max(min(backoff, setting("POLL_MAX_SECONDS")), retry_after or 0.0)


# --- Canceling ------------------------------------------------------------------------------


def cancel_run(run_id: int) -> None:
    """Send the cancel of a cancel-requested run to Scenario; polls confirm it.

    Raises a TryAgain for a failure that may pass.
    """
    run = _active_run(run_id)
    if run is None or run.state != S.CANCEL_REQUESTED:
        return
    if is_launched(run):
        _send_cancel(run)
    else:
        _settle_unlaunched_cancel(run)


def _send_cancel(run: TrainingRun) -> None:
    client = scenario_client.get()
    try:
        model = client.cancel_training(run.model.remote_id)
    except scenario.NotFound:
        _fail(run, "The model no longer exists on Scenario.")
        return
    except scenario.ScenarioError as error:
        if error.transient:
            raise
        # Typically "not training": it finished first. Read what really happened.
        log.info("Scenario refused the cancel of run %s: %s", run.pk, error)
        try:
            model = client.get_model(run.model.remote_id)
        except scenario.ScenarioError as read_error:
            _retry(read_error)
    _refresh(run, client, model)
    if run.state == S.CANCEL_REQUESTED:
        # Look again soon rather than at a deep-queue interval.
        soon = timezone.now() + timedelta(seconds=setting("POLL_CANCEL_SECONDS"))
        TrainingRun.objects.filter(
            pk=run.pk, state=S.CANCEL_REQUESTED, next_poll_at__gt=soon
        ).update(next_poll_at=soon)


def _settle_unlaunched_cancel(run: TrainingRun) -> None:
    """Settle a cancel that came before Scenario confirmed the launch: cancel there if it did.

    While a trigger's answer is lost, the read-back schedule decides. While a submit holds a
    live lease (its trigger may be on its way), the model is read now and every few seconds:
    a launch that shows is canceled at once, and the submit settles the rest.
    """
    client = scenario_client.get()
    if run.outcome_unknown_at is not None:
        _settle_unknown(run, client)
        return
    lease = leases.take(run)
    if lease is None:
        _cancel_if_launched(run, client)
        return
    try:
        model = client.get_model(run.model.remote_id)
    except scenario.NotFound:
        model = None
    except scenario.ScenarioError as error:
        leases.release(run, lease)
        _retry(error)
    if model is not None and _launch_visible(model, run):
        if _record_launch_while_canceling(run, _adoption_fields(run, client, model)):
            _send_cancel(run)
        return
    _cancel_unsent(run)


def _cancel_if_launched(run: TrainingRun, client) -> None:
    """Send the cancel now if the launch of a trigger still on its way already shows."""
    try:
        model = client.get_model(run.model.remote_id)
    except scenario.ScenarioError:
        model = None
    if model is not None and _launch_visible(model, run):
        if _record_launch_while_canceling(run, _adoption_fields(run, client, model)):
            _send_cancel(run)
        return
    soon = timezone.now() + timedelta(seconds=READ_BACK_SECONDS[0])
    TrainingRun.objects.filter(
        pk=run.pk, state=S.CANCEL_REQUESTED, job_id="", remote_model_status=""
    ).update(next_poll_at=soon)


# --- The sweep ------------------------------------------------------------------------------


def sweep() -> int:
    """Claim the runs that are due and fan out their tasks; returns how many were claimed.

    A run is due when its next_poll_at has passed: queued, running and cancel-requested runs
    for a poll, drafts the broker may have lost, and submissions whose lease ran out. Polls
    of launched runs go out in batches, one listing of Scenario's training models each
    (POLL_BY_LIST). The due rows are locked and skipped by a second sweep running at once,
    so each is claimed once, and a batch is claimed with one UPDATE.
    """
    now = timezone.now()
    # Waiting runs are not due: the team queue sends them when a slot frees.
    claimed = team_queue.dispatch_all()
    # A listing also takes the runs due within half an interval: it serves them at no extra
    # cost, and the runs its chunks made due at slightly different times poll together again.
    soon = now + timedelta(seconds=setting("POLL_RUNNING_SECONDS") / 2)
    due = (
        TrainingRun.objects.filter(state__in=ACTIVE_STATES - {S.WAITING})
        .filter(Q(next_poll_at__lte=soon) | Q(next_poll_at__isnull=True))
        .order_by(F("next_poll_at").asc(nulls_first=True))
        .only("state", "next_poll_at", "stage", "queue_position", "job_id", "remote_model_status")
    )
    by_list: list[int] = []
    listing_due = False
    with transaction.atomic():
        for run in due.select_for_update(skip_locked=True)[:SWEEP_BATCH]:
            task_name, delay = _sweep_plan(run)
            is_due = run.next_poll_at is None or run.next_poll_at <= now
            if task_name == "poll_run" and _polled_by_list(run):
                by_list.append(run.pk)
                listing_due = listing_due or is_due
            elif is_due and _claim_due(run, now, delay):  # only a listing takes runs early
                claimed += 1
                enqueue_on_commit(task_name, run.pk)
        if listing_due:
            claimed += _claim_batch(by_list, now)
    return claimed


def _polled_by_list(run: TrainingRun) -> bool:
    return bool(setting("POLL_BY_LIST")) and run.state in POLLED_STATES and is_launched(run)


def _claim_batch(pks: list[int], now: datetime) -> int:
    """Claim locked due runs for listed polls with one UPDATE, and send one listing for all.

    The claim holds them until their batch re-arms them (BATCH_HOLD_SECONDS at most). While
    an earlier listing is under way they stay due: the next sweep after it sends them.
    """
    if not pks:
        return 0
    hold = min(setting("POLL_MAX_SECONDS"), BATCH_HOLD_SECONDS)
    held_until = now + timedelta(seconds=hold)
    if not leases.take_listing(now, held_until):
        return 0
    TrainingRun.objects.filter(pk__in=pks).update(next_poll_at=held_until, last_polled_at=now)
    enqueue_on_commit("poll_listed", pks, held_until.isoformat())
    return len(pks)


def _sweep_plan(run: TrainingRun) -> tuple[str, timedelta]:
    """Return the task a due run needs, and when to look again if that task is lost."""
    if run.state in {S.DRAFT, S.SUBMITTING}:
        return "submit_run", leases.length()
    if run.state == S.CANCEL_REQUESTED and not is_launched(run):
        return "cancel_run", leases.length()
    return "poll_run", _poll_delay(
        run.state, {"stage": run.stage, "queue_position": run.queue_position}
    )


def _claim_due(run: TrainingRun, now: datetime, delay: timedelta) -> bool:
    """Move next_poll_at forward only if it is still what this sweep read (works everywhere:
    a conditional UPDATE, no row locks)."""
    due_filter = (
        Q(next_poll_at__isnull=True)
        if run.next_poll_at is None
        else Q(next_poll_at=run.next_poll_at)
    )
    values = {"next_poll_at": now + delay}
    if run.state in POLLED_STATES:
        values["last_polled_at"] = now
    return bool(TrainingRun.objects.filter(due_filter, pk=run.pk, state=run.state).update(**values))


# --- Models ---------------------------------------------------------------------


def sync_models(client=None) -> int:
    """Mirror every page of GET /models into ScenarioModel, keeping team assignments.

    A model the complete list no longer names was deleted on Scenario: it is marked gone
    (out of the picker) rather than deleted, so its runs keep their history. One that comes
    back is back.
    """
    client = client or scenario_client.get()
    now = timezone.now()
    count = 0
    names = dict(ScenarioModel.objects.values_list("remote_id", "name"))
    renamed = []
    for model in client.iter_models():
        images = _all_training_images(client, model)
        if model.id in names and names[model.id] != (model.name or ""):
            renamed.append(model.id)
        ScenarioModel.objects.update_or_create(
            remote_id=model.id,
            defaults={
                "name": model.name or "",
                "type": model.type or "",
                "status": model.status or "",
                "training_images_number": model.training_images_number or 0,
                "training_images": images,
                "thumbnail_url": model.thumbnail_url or "",
                "synced_at": now,
                "gone_at": None,
            },
        )
        count += 1
    # Only after the last page: a listing that failed half-way says nothing about the rest.
    not_listed = Q(synced_at__lt=now) | Q(synced_at__isnull=True)
    ScenarioModel.objects.filter(not_listed, gone_at__isnull=True).update(gone_at=now)
    if renamed:  # live pages name the model of each run
        teams = TrainingRun.objects.filter(model__remote_id__in=renamed).values_list("team_id")
        stamps.changed(*teams.distinct().values_list("team_id", flat=True))
    return count


def _all_training_images(client, model: scenario.Model) -> list[dict]:
    """Return every training image of a listed model, as the mirror stores them.

    GET /models lists only "the first 3 training images of the model. To retrieve the full set
    of images, get it by modelId": when the list is short of trainingImagesNumber, read the
    model itself, unless the mirror already holds that many.
    """
    images = model.training_images
    if len(images) < model.training_images_number:
        stored = ScenarioModel.objects.filter(remote_id=model.id).values("training_images").first()
        held = (stored or {}).get("training_images") or []
        listed = [image.id for image in images]
        if (
            len(held) == model.training_images_number
            and [image.get("id") for image in held[: len(listed)]] == listed
        ):
            return held
        try:
            images = client.get_model(model.id).training_images
        except scenario.NotFound:
            pass  # deleted since it was listed: the next sync marks it gone
    return [{"id": image.id, "name": image.name, "url": image.url} for image in images]


# --- Helpers --------------------------------------------------------------------------------


def _active_run(run_id: int) -> TrainingRun | None:
    """Return the run, or None when it is gone or finished: tasks then have nothing to do."""
    run = TrainingRun.objects.select_related("model").filter(pk=run_id).first()
    if run is None or run.is_final:
        return None
    return run


def _retry(error: scenario.ScenarioError) -> NoReturn:
    """Raise so that the task runs again, whether the error is transient or not: until the
    model can be read, a cancel's outcome is unknown."""
    if error.transient:
        raise error
    raise scenario.TryAgain(error.message or str(error)) from error


def _fail(run: TrainingRun, message: str, expected=None) -> bool:
    expected = expected or [run.state]
    return transition(
        run,
        S.FAILED,
        expected=[state for state in expected if S.FAILED in TRANSITIONS[state]],
        source=EventSource.WORKER,
        message=message,
        error_message=message,
    )
