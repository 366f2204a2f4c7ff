"""Words for what a training is doing: stages, states, queue places and progress."""

from __future__ import annotations

from django import template
from django.utils import timezone

from training import services
from training.models import RunState

register = template.Library()

# Scenario's trainingProgress.stage, as an artist would say it.
STAGE_WORDS = {
    "pending": "Waiting for Scenario",
    # Professional voice cloning "requires captcha", solved by the person in Scenario's app.
    "pending-captcha": "Waiting for your captcha",
    "ready-for-captcha": "Waiting for your captcha",
    "queued-for-train": "Waiting in the queue",
    "starting-train": "Starting up",
    "running-train": "Training",
}
# The local state, when Scenario has not said more (or when it is the last word).
STATE_WORDS = {
    RunState.DRAFT: "Preparing the launch",
    RunState.WAITING: "Waiting in the team queue",
    RunState.SUBMITTING: "Sending to Scenario",
    RunState.QUEUED: "Waiting in the queue",
    RunState.RUNNING: "Training",
    RunState.CANCEL_REQUESTED: "Cancel requested",
    RunState.SUCCEEDED: "Finished",
    RunState.FAILED: "Failed",
    RunState.CANCELED: "Canceled",
    RunState.NOT_STARTED: "Not started",
}
JOB_STATUS_WORDS = {
    "queued": "Queued",
    "warming-up": "Warming up",
    "pending": "Pending",
    "in-progress": "In progress",
    "finalizing": "Finalizing",
    "success": "Succeeded",
    "failure": "Failed",
    "canceled": "Canceled",
}

# A Scenario model's status, on the launch form's model cards.
MODEL_STATUS_WORDS = {
    "new": "Never trained",
    "copying": "Being copied",
    "training": "Training now",
    "trained": "Trained",
    "failed": "Last training failed",
    "training-canceled": "Last training canceled",
}


CAPTCHA_STAGES = frozenset({"pending-captcha", "ready-for-captcha"})
# Model statuses a run in flight is expected to show; any other is said as Scenario says it.
IN_FLIGHT_STATUSES = frozenset({"", "training", "trained", "failed", "training-canceled"})


@register.filter
def stage_words(run) -> str:
    """Say what the run is doing: Scenario's stage while it is in flight, else the state.

    A status or stage the dashboard does not know is said in Scenario's own words; a run
    whose state has not moved for a long time is said to be stalled.
    """
    words = _in_flight_words(run)
    return f"Stalled · {words}" if services.is_stalled(run) else words


def _in_flight_words(run) -> str:
    if run.state == RunState.SUBMITTING and getattr(run, "waiting_reason", ""):
        return "Waiting for Scenario's limit"
    if run.state in (RunState.QUEUED, RunState.RUNNING):
        if unknown_remote_state(run):
            return "Scenario says: " + ", ".join(unknown_remote_state(run))
        if run.stage in STAGE_WORDS:
            return STAGE_WORDS[run.stage]
    return STATE_WORDS.get(run.state, run.state)


def unknown_remote_state(run) -> list[str]:
    """The remote status and stage of a run in flight that the dashboard has no words of its
    own for, each as Scenario said it (a known status in its words)."""
    said = []
    status = run.remote_model_status or ""
    if status not in IN_FLIGHT_STATUSES:
        said.append(model_status_words(status).lower())
    if run.stage and run.stage not in STAGE_WORDS:
        said.append(run.stage.replace("-", " "))
    return said


@register.filter
def state_words(state: str) -> str:
    return STATE_WORDS.get(state, state)


@register.filter
def job_status_words(status: str) -> str:
    return JOB_STATUS_WORDS.get(status, (status or "").replace("-", " ").capitalize())


@register.filter
def model_status_words(status: str) -> str:
    return MODEL_STATUS_WORDS.get(status, (status or "").replace("-", " ").capitalize())


@register.filter
def queue_words(position) -> str:
    """Say a place in a queue: 0 → "Next in line", 3 → "3 runs ahead"; unknown → ""."""
    if position is None or position == "":
        return ""
    position = int(position)
    if position <= 0:
        return "Next in line"
    return f"{position} run{'s' if position != 1 else ''} ahead"


@register.filter
def percent(progress) -> int:
    """Turn Scenario's progress (0..1) into a whole percentage, clamped."""
    if progress is None or progress == "":
        return 0
    return max(0, min(100, int(float(progress) * 100)))


@register.filter
def interval(seconds) -> str:
    """Write a refresh interval as htmx reads it ("3000ms")."""
    return f"{int(float(seconds) * 1000)}ms"


@register.simple_tag
def now_us() -> int:
    """Return now in microseconds since the epoch: where the "finished since" watcher starts."""
    now = timezone.now()
    return int(now.timestamp()) * 1_000_000 + now.microsecond
