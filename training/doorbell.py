"""Scenario's training events as a doorbell: a ring makes a run due for a poll, nothing more.

Scenario can call a team's URL on model.training.started|completed|failed|cancelled. Its
payload and signature are not documented, so an event is never taken as the run's state: it
only makes the launched run of the model it names due now, and publishes its poll. Rings are
rate-limited per model (DOORBELL_INTERVAL_SECONDS: a ring within it only brings the next poll
to its end), and the URL carries the team's secret token, so a forged call costs at most one
extra poll.
"""

from __future__ import annotations

from datetime import timedelta

from django.core.cache import cache
from django.utils import timezone

from training import lifecycle
from training.models import TeamHooks, TrainingRun


def ring(hooks: TeamHooks, payload: object) -> TrainingRun | None:
    """Make the named model's launched run due for a poll now; return it, if there was one."""
    model_id = model_id_in(payload)
    run = _launched_run(hooks, model_id) if model_id else None
    if run is None:
        return None
    now = timezone.now()
    if _first_ring_in_a_while(model_id):
        TrainingRun.objects.filter(pk=run.pk).update(next_poll_at=now)
        lifecycle.enqueue("poll_run", run.pk)
    else:
        # Rung again too soon (the end right after the start): the sweep polls it when the
        # interval is over, not at its next poll, which may be much later.
        soon = now + timedelta(seconds=lifecycle.setting("DOORBELL_INTERVAL_SECONDS"))
        TrainingRun.objects.filter(pk=run.pk, next_poll_at__gt=soon).update(next_poll_at=soon)
    return run


def _launched_run(hooks: TeamHooks, model_id: str) -> TrainingRun | None:
    runs = TrainingRun.objects.filter(
        team_id=hooks.team_id, model__remote_id=model_id, state__in=lifecycle.POLLED_STATES
    ).order_by("-created_at")
    return next((run for run in runs if lifecycle.is_launched(run)), None)


def model_id_in(payload: object) -> str:
    """The model an event is about, wherever a plausible payload puts it."""
    if not isinstance(payload, dict):
        return ""
    for holder in (payload, payload.get("data")):
        if not isinstance(holder, dict):
            continue
        model = holder.get("model")
        candidates = [holder.get("modelId"), model.get("id") if isinstance(model, dict) else None]
        for candidate in candidates:
            if isinstance(candidate, str) and 0 < len(candidate) <= 100:
                return candidate
    return ""


def _first_ring_in_a_while(model_id: str) -> bool:
    interval = lifecycle.setting("DOORBELL_INTERVAL_SECONDS")
    return interval <= 0 or cache.add(f"doorbell:{model_id}", True, timeout=interval)
