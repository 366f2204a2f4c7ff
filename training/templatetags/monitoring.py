"""Words for what a training is doing: stages, states, queue places and progress."""

from __future__ import annotations

from django import template
from django.utils import timezone

from training import lifecycle, remote
from training.models import RunState

register = template.Library()

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


@register.filter
def stage_words(run) -> str:
    """Say what the run is doing: Scenario's stage while it is in flight, else the state.

    A status or stage the dashboard does not know is said in Scenario's own words; a run
    whose state has not moved for a long time is said to be stalled.
    """
    words = _in_flight_words(run)
    return f"Stalled · {words}" if lifecycle.is_stalled(run) else words


def _in_flight_words(run) -> str:
    if run.state == RunState.SUBMITTING and getattr(run, "waiting_reason", ""):
        return "Waiting for Scenario's limit"
    if run.state in (RunState.QUEUED, RunState.RUNNING):
        if unknown_remote_state(run):
            return "Scenario says: " + ", ".join(unknown_remote_state(run))
        if run.stage in remote.STAGES:
            return remote.STAGES[run.stage].words
    return STATE_WORDS.get(run.state, run.state)


def unknown_remote_state(run) -> list[str]:
    """The remote status and stage of a run in flight that the dashboard has no words of its
    own for, each as Scenario said it (a known status in its words)."""
    said = []
    status = run.remote_model_status or ""
    if status not in remote.IN_FLIGHT_STATUSES:
        said.append(remote.model_status_words(status).lower())
    if run.stage and run.stage not in remote.STAGES:
        said.append(run.stage.replace("-", " "))
    return said


@register.filter
def state_words(state: str) -> str:
    return STATE_WORDS.get(state, state)


register.filter("job_status_words", remote.job_status_words)
register.filter("model_status_words", remote.model_status_words)


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
