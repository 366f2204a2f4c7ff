"""Hold the team queue: launches that cannot start now wait here, and the sweep sends them in order.

A run waits (state `waiting`, nothing sent to Scenario) when its team has no free slot (its
own `parallel_trainings`, or the plan cap Scenario's 429 "parallel-training" taught), when its
model is already training in another of the team's runs, or while Scenario's cooldown lasts.
The sweep dispatches the next waiting run when a slot frees: the highest priority first, then
the first to come. The claim is one conditional UPDATE that counts the team's busy slots in
its WHERE clause (under a lock on the team row where the database has row locks), so two
sweeps never dispatch the same run, nor more runs than there are slots. From submitting on,
the submit lease keeps it to one launch.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Count, Exists, Q
from django.utils import timezone

from training import budgets, leases, lifecycle, scenario, stamps
from training.display import clock, cu_amount, person
from training.models import EventSource, RunState, Team, TrainingRun

log = logging.getLogger(__name__)

S = RunState

# The states that hold one of the team's slots on Scenario (or are about to).
SLOT_STATES = (S.SUBMITTING, S.QUEUED, S.RUNNING, S.CANCEL_REQUESTED)
FREE_SLOT = "Waiting for a free slot"


def ordered(runs):
    """Waiting runs in the order they are sent: priority first, then first come."""
    return runs.filter(state=S.WAITING).order_by("-priority", "queue_order", "pk")


def busy_slots(team_id: int) -> int:
    return TrainingRun.objects.filter(team_id=team_id, state__in=SLOT_STATES).count()


def _on_scenario(team_id: int) -> int:
    """Count the team's runs Scenario has confirmed and not yet ended."""
    launched = (S.QUEUED, S.RUNNING, S.CANCEL_REQUESTED)
    return TrainingRun.objects.filter(team_id=team_id, state__in=launched).count()


def slot_limit(team: Team, now: datetime) -> int | None:
    """Return how many runs the team may have on Scenario now; None: no limit of ours.

    A learned plan cap allows one more run once its probe time has passed.
    """
    limits = [team.parallel_trainings]
    if team.learned_limit is not None:
        probing = team.learned_limit_probe_at is None or team.learned_limit_probe_at <= now
        limits.append(team.learned_limit + (1 if probing else 0))
    limits = [limit for limit in limits if limit is not None]
    return min(limits) if limits else None


def ahead_of(run: TrainingRun) -> int:
    """Count the team's waiting runs that will be sent before this one."""
    if run.state != S.WAITING:
        return 0
    later = Q(priority__lt=run.priority) | Q(priority=run.priority, queue_order__gt=run.queue_order)
    later |= Q(priority=run.priority, queue_order=run.queue_order, pk__gt=run.pk)
    return (
        ordered(TrainingRun.objects.filter(team_id=run.team_id))
        .exclude(later)
        .exclude(pk=run.pk)
        .count()
    )


def position_words(run: TrainingRun) -> str:
    """Say why the run waits and how many runs are ahead: "Waiting for a free slot: 2 ahead"."""
    return f"{run.waiting_reason or FREE_SLOT}: {ahead_of(run)} ahead"


# --- Claiming a slot ------------------------------------------------------------------------


def _slot_condition(run: TrainingRun, limit: int | None) -> Q:
    """Return the WHERE clause of a claim: a slot is free and the run's model is not training."""
    model_busy = TrainingRun.objects.filter(model_id=run.model_id, state__in=SLOT_STATES)
    condition = ~Exists(model_busy)
    if limit is not None:
        free = (
            Team.objects.filter(pk=run.team_id)
            .annotate(busy=Count("runs", filter=Q(runs__state__in=SLOT_STATES)))
            .filter(busy__lt=limit)
            .values("pk")
        )
        condition &= Q(team_id__in=free)
    return condition


def claim(run: TrainingRun, *, from_state: str, lease: datetime | None, message: str) -> bool:
    """Move the run into submitting if its team has a free slot; False when it must wait.

    A draft also waits while other runs of its team wait, and, where slots are counted, while
    older drafts are not yet sent: they came first. A team without a limit counts nothing,
    so its claims neither lock its row nor queue launches made at the same moment.
    """
    now = timezone.now()
    with transaction.atomic():
        team = Team.objects.get(pk=run.team_id)
        if slot_limit(team, now) is not None:
            # Postgres: one claim per team at a time, so each one counts the others' slots.
            team = Team.objects.select_for_update().get(pk=run.team_id)
        if team.cooldown_until is not None and team.cooldown_until > now:
            return False
        limit = slot_limit(team, now)
        condition = _slot_condition(run, limit)
        if from_state == S.DRAFT:
            earlier = Q(state=S.WAITING)
            if limit is not None:
                earlier |= Q(state=S.DRAFT, pk__lt=run.pk)
            condition &= ~Exists(TrainingRun.objects.filter(earlier, team_id=run.team_id))
        claimed = lifecycle.transition(
            run,
            S.SUBMITTING,
            expected=[from_state],
            source=EventSource.WORKER if from_state == S.DRAFT else EventSource.SWEEP,
            message=message,
            condition=condition,
            submitted_at=lease,
            waiting_reason="",
            queue_position=None,
            next_poll_at=now + (leases.length() if lease else _grace()),
        )
        if claimed and team.learned_limit is not None:
            _after_probe(team, now)
    return claimed


def _after_probe(team: Team, now: datetime) -> None:
    """Make the next claim wait a probe interval: a claim past the learned cap is the probe."""
    if busy_slots(team.pk) > team.learned_limit:
        probe = timedelta(seconds=lifecycle.setting("LAUNCH_LIMIT_PROBE_SECONDS"))
        Team.objects.filter(pk=team.pk).update(learned_limit_probe_at=now + probe)


def _grace() -> timedelta:
    return timedelta(seconds=lifecycle.setting("SUBMIT_GRACE_SECONDS"))


def wait(run: TrainingRun, *, from_state: str, reason: str, **fields) -> bool:
    """Put the run in the team queue; a run coming back from submitting keeps its place."""
    if from_state == S.DRAFT:
        fields.setdefault("queue_order", run.pk)
    return lifecycle.transition(
        run,
        S.WAITING,
        expected=[from_state],
        source=EventSource.WORKER,
        message=reason,
        waiting_reason=reason,
        next_poll_at=None,
        **fields,
    )


def reason_to_wait(run: TrainingRun) -> str:
    """Say why a run that could not claim a slot waits, in words for its page."""
    now = timezone.now()
    team = Team.objects.get(pk=run.team_id)
    if team.cooldown_until is not None and team.cooldown_until > now:
        return f"Scenario asked for a pause between launches until {clock(team.cooldown_until)}"
    others = TrainingRun.objects.filter(model_id=run.model_id, state__in=SLOT_STATES)
    if others.exclude(pk=run.pk).exists():
        return f"Waiting for {run.model} to finish its current training"
    return FREE_SLOT


def queue_draft(run: TrainingRun) -> bool:
    """Send a new launch's draft into submitting, or into the queue; True when it may launch."""
    now = timezone.now()
    if claim(run, from_state=S.DRAFT, lease=now, message="Sending to Scenario"):
        return True
    wait(run, from_state=S.DRAFT, reason=reason_to_wait(run))
    return False


# --- Dispatching (the sweep) ----------------------------------------------------------------


def dispatch_all() -> int:
    """Send the next waiting runs of every team that has a free slot; returns how many."""
    teams = TrainingRun.objects.filter(state=S.WAITING).values_list("team_id", flat=True)
    return sum(dispatch(team_id) for team_id in set(teams))


def dispatch(team_id: int) -> int:
    """Claim the team's waiting runs in order while slots are free; enqueue their submits."""
    team = Team.objects.get(pk=team_id)
    budget = budgets.status_for(team)
    over_budget = budget is not None and budget.limited and budget.spent > budget.budget
    sent = 0
    for run in ordered(TrainingRun.objects.filter(team_id=team_id).select_related("model")):
        if over_budget and not run.budget_override:
            _note(run, _over_budget_words(budget))
            continue
        if claim(run, from_state=S.WAITING, lease=None, message="Sent from the team queue"):
            lifecycle.enqueue_on_commit("submit_run", run.pk)
            sent += 1
            continue
        reason = reason_to_wait(run)
        _note(run, reason)
        if reason == FREE_SLOT or reason.startswith("Scenario asked"):
            break  # no slot for anyone behind it either
    return sent


def _note(run: TrainingRun, reason: str) -> None:
    if run.waiting_reason != reason:
        if TrainingRun.objects.filter(pk=run.pk, state=S.WAITING).update(waiting_reason=reason):
            stamps.changed(run.team_id)


def _over_budget_words(budget) -> str:
    return (
        f"Waiting: {budget.team.name} has {cu_amount(budget.spent)} of its "
        f"{cu_amount(budget.budget)} CU budget spent or committed this month, "
        "so this run would go over it"
    )


# --- Scenario said wait ---------------------------------------------------------------------


def wait_for_limit(run: TrainingRun, lease: datetime, error: scenario.RateLimited) -> None:
    """Put a run back into the queue: Scenario refused its trigger for a plan cap or a cooldown.

    The cap becomes the team's learned limit (what runs now, probed again after
    LAUNCH_LIMIT_PROBE_SECONDS); a cooldown holds every launch of the team until it ends.
    """
    now = timezone.now()
    if error.cooldown is not None:
        until = now + timedelta(seconds=max(error.cooldown, 1.0))
        Team.objects.filter(pk=run.team_id).update(cooldown_until=until)
    else:
        probe = timedelta(seconds=lifecycle.setting("LAUNCH_LIMIT_PROBE_SECONDS"))
        Team.objects.filter(pk=run.team_id).update(
            learned_limit=_on_scenario(run.team_id),
            learned_limit_probe_at=now + probe,
        )
    log.info("Launch of run %s waits in the team queue: %s", run.pk, error.launch_limit)
    lifecycle.transition(
        run,
        S.WAITING,
        expected=[S.SUBMITTING],
        source=EventSource.WORKER,
        message=error.launch_limit,
        condition=Q(submitted_at=lease),
        submitted_at=None,
        waiting_reason=error.launch_limit,
        next_poll_at=None,
    )


def learn_accepted_launch(run: TrainingRun) -> None:
    """Raise the learned cap to what runs now when Scenario took one run more than it."""
    busy = _on_scenario(run.team_id)
    Team.objects.filter(pk=run.team_id, learned_limit__lt=busy).update(learned_limit=busy)


def other_run_is_training(run: TrainingRun) -> bool:
    """Tell whether another active run of ours holds the run's model ("already training")."""
    others = TrainingRun.objects.filter(model_id=run.model_id, state__in=SLOT_STATES)
    return others.exclude(pk=run.pk).exists()


def wait_for_model(run: TrainingRun, lease: datetime) -> None:
    """Wait for another of our runs to end: Scenario refused, the model is training in it."""
    lifecycle.transition(
        run,
        S.WAITING,
        expected=[S.SUBMITTING],
        source=EventSource.WORKER,
        message="Scenario says the model is already training: waiting for that training to end",
        condition=Q(submitted_at=lease),
        submitted_at=None,
        waiting_reason=f"Waiting for {run.model} to finish its current training",
        next_poll_at=None,
    )


# --- Fresh quotes at dispatch ---------------------------------------------------------------


def refresh_quote(run: TrainingRun, client) -> bool:
    """Ask again for a quote older than QUEUE_QUOTE_MAX_AGE_SECONDS; False: back to waiting.

    A new price that takes the team past its budget (counting this run at its new price) puts
    the run back in the queue with the reason; a lead's override stands.
    """
    max_age = timedelta(seconds=lifecycle.setting("QUEUE_QUOTE_MAX_AGE_SECONDS"))
    quoted = run.quoted_at or run.created_at
    if timezone.now() - quoted <= max_age:
        return True
    try:
        fresh = client.quote(run.model.remote_id, run.parameters)
    except scenario.ScenarioError as error:
        log.info("Could not refresh the quote of run %s: %s", run.pk, error)
        return True  # the launch answer carries the price anyway
    TrainingRun.objects.filter(pk=run.pk).update(
        quote_cu_cost=fresh.cost, quote_cu_discount=fresh.discount, quoted_at=timezone.now()
    )
    stamps.changed(run.team_id)
    old, run.quote_cu_cost, run.quoted_at = run.quote_cu_cost, fresh.cost, timezone.now()
    status = budgets.status_for(run.team)
    if run.budget_override or not status.limited or status.spent <= status.budget:
        return True
    reason = (
        f"The quote rose from {cu_amount(old or 0)} to {cu_amount(fresh.cost)} CU since "
        f"launch: {_over_budget_words(status)}"
    )
    lifecycle.transition(
        run,
        S.WAITING,
        expected=[S.SUBMITTING],
        source=EventSource.WORKER,
        message=reason,
        condition=Q(submitted_at=run.submitted_at),
        submitted_at=None,
        waiting_reason=reason,
        next_poll_at=None,
    )
    return False


# --- Leads and artists ----------------------------------------------------------------------


class QueueRefused(Exception):
    pass


def move(run: TrainingRun, user, action: str, priority: int | None = None) -> str:
    """Move a waiting run (a lead's call): to the top, up, down, or to a priority. Audited."""
    from training import access

    if not access.may_settle(user, run):
        raise QueueRefused("Only the team's lead may reorder the queue.")
    with transaction.atomic():
        Team.objects.select_for_update().get(pk=run.team_id)
        run = TrainingRun.objects.select_for_update().get(pk=run.pk)
        if run.state != S.WAITING:
            raise QueueRefused("This run is no longer waiting in the team queue.")
        queue = list(ordered(TrainingRun.objects.filter(team_id=run.team_id)))
        index = next(i for i, other in enumerate(queue) if other.pk == run.pk)
        if action == "top":
            first = queue[0]
            values = {"priority": first.priority, "queue_order": first.queue_order - 1}
            words = "Moved to the top of the team queue"
        elif action in {"up", "down"}:
            other_index = index - 1 if action == "up" else index + 1
            if not 0 <= other_index < len(queue):
                return "It is already there."
            other = queue[other_index]
            values = {"priority": other.priority, "queue_order": other.queue_order}
            TrainingRun.objects.filter(pk=other.pk).update(
                priority=run.priority, queue_order=run.queue_order
            )
            words = f"Moved {action} in the team queue"
        elif action == "priority" and priority is not None:
            values = {"priority": priority}
            words = f"Priority set to {priority}"
        else:
            raise QueueRefused("Say how to move the run.")
        TrainingRun.objects.filter(pk=run.pk).update(**values)
        lifecycle.record_event(run, f"{words} by {person(user)}", actor=user)  # bumps the stamp
    return words
