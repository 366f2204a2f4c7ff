"""Words for what a training is doing: stages, queue places, durations and remaining time."""

from __future__ import annotations

from urllib.parse import urlsplit

from django import template
from django.utils import timezone

from training import remote
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
    from training import lifecycle  # it imports this module, through notifications

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
    """0 → "Next in line", 1 → "1 run ahead", 3 → "3 runs ahead"; unknown → ""."""
    if position is None or position == "":
        return ""
    position = int(position)
    if position <= 0:
        return "Next in line"
    return f"{position} run{'s' if position != 1 else ''} ahead"


@register.filter
def duration(seconds) -> str:
    """A length of time for people: "45 s", "3 min 20 s", "1 h 5 min"; unknown → "—"."""
    if seconds is None or seconds == "":
        return "—"
    total = max(0, round(float(seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


@register.filter
def remaining(milliseconds) -> str:
    """Remaining time in the same words as the page's countdown (static/js/app.js)."""
    if milliseconds is None or milliseconds == "":
        return "—"
    return duration(max(0, int(milliseconds)) / 1000)


@register.filter
def web_url(url) -> str:
    """The URL when it is http(s), else "": Scenario's data must not become a javascript: or
    data: link in a page."""
    text = str(url or "").strip()
    return text if urlsplit(text).scheme.lower() in {"http", "https"} else ""


@register.filter
def percent(progress) -> int:
    """Scenario's progress (0..1) as a whole percentage, clamped."""
    if progress is None or progress == "":
        return 0
    return max(0, min(100, int(float(progress) * 100)))


@register.filter
def cu(value) -> str:
    """Creative Units: "120 CU", "12.5 CU"; unknown → "—"."""
    if value is None or value == "":
        return "—"
    number = float(value)
    shown = f"{number:,.0f}" if number == int(number) else f"{number:,.1f}"
    return f"{shown} CU"


@register.filter
def interval(seconds) -> str:
    """A refresh interval as htmx reads it ("3000ms")."""
    return f"{int(float(seconds) * 1000)}ms"


@register.filter
def person(user) -> str:
    if user is None:
        return "someone"
    return user.get_full_name() or user.get_username()


@register.simple_tag
def now_us() -> int:
    """Now in microseconds since the epoch: where the "finished since" watcher starts."""
    now = timezone.now()
    return int(now.timestamp()) * 1_000_000 + now.microsecond
