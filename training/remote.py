"""Read Scenario's status words: one row per value it reports, and what each means here.

Scenario reports three kinds of values about a training: the model's status, the model's
trainingProgress.stage while it trains, and the job's status. Each value has one row below:
the local state it implies, the step of the run page's timeline it marks, the words people
see, and how often a run showing it is polled. Everything else (the lifecycle's remote →
local table, the timeline, the template filters, the poll speed) is read from these rows, so
a new value Scenario adds is one new row here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from training.models import RunState

log = logging.getLogger(__name__)

S = RunState

# The run page's timeline, in order; a remote value marks the step it belongs to.
LAUNCHED, QUEUED, STARTING, TRAINING, FINISHED = (
    "launched",
    "queued",
    "starting",
    "running",
    "finished",
)
TIMELINE = (LAUNCHED, QUEUED, STARTING, TRAINING, FINISHED)

# How often a run showing a value is polled: as often as a training one, or less often the
# deeper it waits in Scenario's queue.
POLL_FAST = "fast"
POLL_BY_PLACE = "by place in the queue"


@dataclass(frozen=True)
class Value:
    """Hold what one remote value means: its words, local state, timeline step, poll speed.

    `state` is None when the value implies no local state by itself; `final` marks Scenario's
    last word on a training (the bill is due); `captcha` a stage that waits for a person.
    """

    words: str
    state: str | None = None
    step: str | None = None
    poll: str = POLL_BY_PLACE
    final: bool = False
    captcha: bool = False


# The model status under which trainingProgress.stage says where the training is.
TRAINING_STATUS = "training"

# A Scenario model's status (GET /models/{id}), in the words of the launch form's model cards.
MODEL_STATUSES: dict[str, Value] = {
    "new": Value("Never trained"),
    "copying": Value("Being copied"),
    TRAINING_STATUS: Value("Training now"),
    "trained": Value("Trained", state=S.SUCCEEDED, final=True),
    "failed": Value("Last training failed", state=S.FAILED, final=True),
    "training-canceled": Value("Last training canceled", state=S.CANCELED, final=True),
}

# trainingProgress.stage while the model status is "training", as an artist would say it.
STAGES: dict[str, Value] = {
    "pending": Value("Waiting for Scenario", state=S.QUEUED, step=QUEUED),
    # Professional voice cloning "requires captcha", solved by the person in Scenario's app.
    "pending-captcha": Value("Waiting for your captcha", state=S.QUEUED, step=QUEUED, captcha=True),
    "ready-for-captcha": Value(
        "Waiting for your captcha", state=S.QUEUED, step=QUEUED, captcha=True
    ),
    "queued-for-train": Value("Waiting in the queue", state=S.QUEUED, step=QUEUED),
    "starting-train": Value("Starting up", state=S.RUNNING, step=STARTING, poll=POLL_FAST),
    "running-train": Value("Training", state=S.RUNNING, step=TRAINING, poll=POLL_FAST),
}

# A job's status (GET /jobs/{id}) and its status history. "pending" comes first, before
# "queued", and marks no step: it belongs to the queue, not to the start, and the queue's
# time is when the job was queued.
JOB_STATUSES: dict[str, Value] = {
    "queued": Value("Queued", step=QUEUED),
    "warming-up": Value("Warming up", step=STARTING),
    "pending": Value("Pending"),
    "in-progress": Value("In progress", step=TRAINING),
    "finalizing": Value("Finalizing", step=TRAINING),
    "success": Value("Succeeded", step=FINISHED, final=True),
    "failure": Value("Failed", step=FINISHED, final=True),
    "canceled": Value("Canceled", step=FINISHED, final=True),
}


def _values(table: dict[str, Value], **wanted) -> frozenset[str]:
    """Return the values of a table whose rows have every attribute in `wanted`."""
    return frozenset(
        value
        for value, row in table.items()
        if all(getattr(row, name) == want for name, want in wanted.items())
    )


# Model statuses that end a training: its stats and its bill are final.
FINAL_STATUSES = _values(MODEL_STATUSES, final=True)
# Model statuses a run in flight is expected to show; any other is said as Scenario says it.
IN_FLIGHT_STATUSES = frozenset({"", TRAINING_STATUS}) | FINAL_STATUSES
CAPTCHA_STAGES = _values(STAGES, captcha=True)
FAST_POLL_STAGES = _values(STAGES, poll=POLL_FAST)


def job_statuses_at(step: str) -> frozenset[str]:
    """Return the job statuses that mark a step of the timeline."""
    return _values(JOB_STATUSES, step=step)


def stage_step(stage: str | None) -> str | None:
    """Return the timeline step a trainingProgress.stage marks, if it is known."""
    row = STAGES.get(stage or "")
    return row.step if row else None


def job_step(status: str | None) -> str | None:
    """Return the timeline step a job status marks, if any."""
    row = JOB_STATUSES.get(status or "")
    return row.step if row else None


def local_state_for(model_status: str, stage: str | None) -> str | None:
    """Return the local state a remote model status and stage mean, or None when unknown."""
    if model_status == TRAINING_STATUS:
        row = STAGES.get(stage or "")
    else:
        row = MODEL_STATUSES.get(model_status)
    state = row.state if row else None
    if state is None and stage:
        log.warning(
            "Unknown remote state: status %r, stage %r; keeping the run as it is",
            model_status,
            stage,
        )
    elif state is None and model_status not in {TRAINING_STATUS, ""}:
        log.warning("Unknown remote model status %r; keeping the run as it is", model_status)
    return state


def _said(table: dict[str, Value], value: str | None) -> str:
    """Return a value's words, or Scenario's own word made readable when there is no row."""
    row = table.get(value or "")
    return row.words if row else (value or "").replace("-", " ").capitalize()


def model_status_words(status: str | None) -> str:
    """Return a model status in people's words."""
    return _said(MODEL_STATUSES, status)


def job_status_words(status: str | None) -> str:
    """Return a job status in people's words."""
    return _said(JOB_STATUSES, status)
