"""Where a simulated training is at a given moment, derived from stored facts and the clock.

Each answer reads the jobs requested so far and walks them in request order through a FIFO
queue of settings.SIMULATOR_GPU_SLOTS slots:

    requested ──pending──▶ ready ──queued (waits for a slot)──▶ start ──starting──▶
    train start ──running (epochs one by one)──▶ train end ──finalizing──▶ done

A job takes the slot that frees first, not before it is ready, so start times never go
backwards and the queue is first-in first-out. A job canceled before its start never takes
a slot; a running job that is canceled or fails frees its slot at that moment. Stage lengths
are simulated seconds divided by the job's own time scale (simulated seconds per real
second, fixed when it was requested), so every timestamp below is real time.

The walk is a pure function of the stored jobs: a job's ending is already in its facts. So
it is kept between answers, with the state of its slots. A new job is placed after the kept
ones (jobs come in request order), and the whole walk is made again only when a job was
canceled or deleted (SimScheduleStamp says which), or when the clock reads earlier than the
newest fact (a frozen clock in the past sees fewer jobs and cancels). An answer then costs
about the same with 100 jobs or 10,000, the first after a launch included.

Stages as Scenario reports them (model `trainingProgress.stage` / job `status`):

    pending          / pending        until ready (pending-captcha, then ready-for-captcha,
                                      for a professional voice clone)
    queued-for-train / queued         waiting for a slot; position = waiting jobs ahead
    starting-train   / warming-up     slot taken, trainer starting
    running-train    / in-progress    progress 0→1, one epoch every 1/epochs of the run
    running-train    / finalizing     progress 1, the weights being saved
    model trained    / success, model failed / failure, model training-canceled / canceled
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q

from simulator import pricing
from simulator.models import SimJob, SimScheduleStamp

# Simulated seconds of each stage around the training itself.
PENDING_SECONDS = 20.0
STARTING_SECONDS = 30.0
FINALIZING_SECONDS = 10.0
# Simulated seconds of GPU work per training step, and the shortest training.
SECONDS_PER_STEP = 1.0
MIN_TRAIN_SECONDS = 60.0
# A model whose name contains "fail" fails this far into its training.
FAIL_AT_PROGRESS = 0.6

FAILURE_MESSAGE = "Training diverged at step {step}: loss became NaN"
# job.metadata.hint: "Actionable hint for the user explaining what went wrong and how to
# resolve it."
FAILURE_HINT = "Lower the learning rate or train fewer steps, then launch again."
# Professional voice cloning "requires captcha": while pending, such a job first waits for its
# captcha (pending-captcha), then for the person to solve it (ready-for-captcha). The
# simulator cannot be solved for: it takes the captcha as solved when the pending ends.


def train_seconds(steps: int) -> float:
    return max(MIN_TRAIN_SECONDS, steps * SECONDS_PER_STEP)


def _real(job: SimJob, simulated_seconds: float) -> timedelta:
    return timedelta(seconds=simulated_seconds / job.time_scale)


@dataclass(frozen=True)
class Timeline:
    """The real-time milestones of one job, as the queue walk placed them."""

    job: SimJob
    order: int
    requested: datetime
    ready: datetime
    canceled: datetime | None
    start: datetime | None = None
    train_start: datetime | None = None
    train_end: datetime | None = None
    done: datetime | None = None
    fail_at: datetime | None = None

    @property
    def stop(self) -> datetime | None:
        """When the job leaves its slot (None: it never took one)."""
        if self.start is None:
            return None
        ends = [self.done, self.fail_at, self.canceled]
        return min(moment for moment in ends if moment is not None)

    def progress_at(self, moment: datetime) -> float:
        if self.train_start is None or moment <= self.train_start:
            return 0.0
        span = (self.train_end - self.train_start).total_seconds()
        return min(1.0, (moment - self.train_start).total_seconds() / span)

    def epochs_at(self, moment: datetime) -> int:
        """Epochs finished by `moment` (none after the job stopped early)."""
        if self.stop is not None:
            moment = min(moment, self.stop)
        # A tiny tolerance so the last epoch lands exactly at the end of the training.
        return min(self.job.epochs, int(self.progress_at(moment) * self.job.epochs + 1e-9))


def _place(job: SimJob, order: int, slot_free: datetime | None, now: datetime) -> Timeline:
    ready = job.requested_at + _real(job, PENDING_SECONDS)
    # A cancel "later than now" is not known yet (a frozen clock in the past).
    canceled = job.canceled_at if job.canceled_at and job.canceled_at <= now else None
    start = ready if slot_free is None else max(ready, slot_free)
    if canceled is not None and canceled <= start:
        return Timeline(
            job=job, order=order, requested=job.requested_at, ready=ready, canceled=canceled
        )
    train_start = start + _real(job, STARTING_SECONDS)
    train_end = train_start + _real(job, job.train_seconds)
    fail_at = None
    if job.will_fail:
        fail_at = train_start + (train_end - train_start) * FAIL_AT_PROGRESS
    return Timeline(
        job=job,
        order=order,
        requested=job.requested_at,
        ready=ready,
        canceled=canceled,
        start=start,
        train_start=train_start,
        train_end=train_end,
        done=train_end + _real(job, FINALIZING_SECONDS),
        fail_at=fail_at,
    )


@dataclass(frozen=True)
class JobState:
    """Everything an answer says about a job and its model at one moment."""

    job_status: str
    model_status: str
    stage: str | None
    progress: float
    position: int | None
    remaining_ms: int | None
    updated_at: datetime
    history: list[tuple[str, datetime]]
    epochs_done: int
    billing: pricing.Price | None
    error: str
    started_at: datetime | None
    ended_at: datetime | None
    hint: str = ""


def _needs_captcha(job: SimJob) -> bool:
    return job.parameters.get("cloneType") == "professional"


@dataclass
class Schedule:
    """The queue walk over every job requested up to `now`."""

    now: datetime
    slots: int
    timelines: list[Timeline] = field(default_factory=list)
    by_job: dict[str, Timeline] = field(default_factory=dict)
    latest_by_model: dict[str, Timeline] = field(default_factory=dict)
    # The slots after the last job: (taken before, frees at, slot), the next one to take first.
    free: list[tuple[bool, datetime | None, int]] = field(default_factory=list, repr=False)

    # A kept walk: its newest fact, and the jobs appended under its stamp's token.
    horizon: datetime | None = None
    appended: int = 0
    _queue_counts: tuple[list[int], list[datetime | None]] | None = field(
        default=None, repr=False, compare=False
    )

    @classmethod
    def load(cls, now: datetime, slots: int | None = None) -> Schedule:
        """Return the schedule at `now`, walking only the jobs that are new to the kept walk."""
        slots = slots if slots is not None else settings.SIMULATOR_GPU_SLOTS
        # Read before the jobs: a newer stamp must never label older jobs.
        token, appended = SimScheduleStamp.current() or (None, 0)
        kept = _kept.get(slots, token)
        if kept is not None and (kept.horizon is None or now >= kept.horizon):
            if kept.appended != appended:
                kept = kept._with_new_jobs(appended, now)
                if kept is not None:
                    _kept.put(slots, token, kept)
            if kept is not None:
                return replace(kept, now=now, _queue_counts=None)
        jobs = list(SimJob.objects.order_by("requested_at", "id"))
        horizon = _newest_fact(jobs)
        if horizon is not None and now < horizon:
            early = [job for job in jobs if job.requested_at <= now]
            return cls.walk(early, now, slots)
        schedule = cls.walk(jobs, now, slots)
        schedule.horizon, schedule.appended = horizon, appended
        _kept.put(slots, token, schedule)
        return schedule

    @classmethod
    def walk(cls, jobs: Iterable[SimJob], now: datetime, slots: int) -> Schedule:
        """Place each job in request order on the slot that frees first."""
        # A slot never taken comes first, then the one that frees earliest.
        schedule = cls(now=now, slots=slots, free=[(False, None, i) for i in range(max(1, slots))])
        schedule._place_all(jobs, now)
        return schedule

    def _place_all(self, jobs: Iterable[SimJob], now: datetime) -> None:
        free = self.free
        for job in jobs:
            taken, frees_at, slot = free[0]
            timeline = _place(job, len(self.timelines), frees_at if taken else None, now)
            if timeline.start is not None:
                heapq.heapreplace(free, (True, timeline.stop, slot))
            self.timelines.append(timeline)
            self.by_job[job.id] = timeline
            self.latest_by_model[job.model_id] = timeline

    def _with_new_jobs(self, appended: int, now: datetime) -> Schedule | None:
        """Return this kept walk with the jobs requested since placed after it, or None when
        they cannot simply follow (one sorts before the last kept job, or is in the future).

        A copy: other answers may still be reading this walk.
        """
        last = self.timelines[-1].job if self.timelines else None
        new = SimJob.objects.order_by("requested_at", "id")
        if last is not None:
            new = new.filter(
                Q(requested_at__gt=last.requested_at)
                | Q(requested_at=last.requested_at, id__gt=last.id)
            )
        jobs = list(new)
        # Fewer than the stamp counts: one was stored out of order, before the last kept job.
        if len(jobs) != appended - self.appended or any(job.requested_at > now for job in jobs):
            return None
        extended = replace(
            self,
            timelines=list(self.timelines),
            by_job=dict(self.by_job),
            latest_by_model=dict(self.latest_by_model),
            free=list(self.free),
            appended=appended,
            _queue_counts=None,
        )
        extended._place_all(jobs, now)
        extended.horizon = max(filter(None, [self.horizon, _newest_fact(jobs)]), default=None)
        return extended

    def timeline(self, job_id: str) -> Timeline | None:
        return self.by_job.get(job_id)

    def latest_for(self, model_id: str) -> Timeline | None:
        return self.latest_by_model.get(model_id)

    def model_statuses(self) -> dict[str, str]:
        """Return each model's status, for the models that were ever sent to train."""
        return {m: self.state(t).model_status for m, t in self.latest_by_model.items()}

    def is_active(self, timeline: Timeline) -> bool:
        return self.state(timeline).stage is not None

    def _waiting_ahead(self, timeline: Timeline) -> tuple[int, datetime]:
        """Count the jobs still waiting ahead of this one, and when that count last changed."""
        waiting, changed = self._queue_counts_now()
        last_change = changed[timeline.order]
        return waiting[timeline.order], max(timeline.ready, last_change or timeline.ready)

    def _queue_counts_now(self) -> tuple[list[int], list[datetime | None]]:
        """For each position: the jobs before it still waiting, and when one last left.

        One pass per answer, so that a page of queued models costs no more than one model.
        """
        if self._queue_counts is None:
            waiting, changed = [0], [None]
            for other in self.timelines:
                moments = (other.start, other.canceled)
                left_queue = [m for m in moments if m is not None and m <= self.now]
                last = changed[-1]
                if left_queue:
                    last = min(left_queue) if last is None else max(last, min(left_queue))
                waiting.append(waiting[-1] + (0 if left_queue else 1))
                changed.append(last)
            self._queue_counts = (waiting, changed)
        return self._queue_counts

    def state(self, timeline: Timeline) -> JobState:
        now, t = self.now, timeline
        history = [("pending", t.requested)]
        steps = [
            ("queued", t.ready),
            ("warming-up", t.start),
            ("in-progress", t.train_start),
            ("finalizing", t.train_end),
            ("success", t.done),
        ]
        end = _ending(t, now)
        for status, moment in steps:
            if moment is None or moment > now or (end and moment >= end[1]):
                break
            history.append((status, moment))
        if end is not None:
            history.append(end)
            return self._finished(t, history, end)
        return self._running(t, history)

    def _finished(self, t: Timeline, history, end: tuple[str, datetime]) -> JobState:
        outcome, moment = end
        progress = t.progress_at(moment)
        billing = pricing.billed(
            pricing.Price(t.job.cost, t.job.discount), outcome=outcome, progress=progress
        )
        model_status = {"success": "trained", "failure": "failed", "canceled": "training-canceled"}
        error = hint = ""
        if outcome == "failure":
            error = FAILURE_MESSAGE.format(step=int(progress * t.job.steps))
            hint = FAILURE_HINT
        return JobState(
            job_status=outcome,
            model_status=model_status[outcome],
            stage=None,
            progress=1.0 if outcome == "success" else round(progress, 4),
            position=None,
            remaining_ms=None,
            updated_at=moment,
            history=history,
            epochs_done=t.epochs_at(moment),
            billing=billing,
            error=error,
            started_at=t.start,
            ended_at=moment if t.start is not None else None,
            hint=hint,
        )

    def _running(self, t: Timeline, history) -> JobState:
        now = self.now
        status = history[-1][0]
        stage = {
            "pending": "pending",
            "queued": "queued-for-train",
            "warming-up": "starting-train",
            "in-progress": "running-train",
            "finalizing": "running-train",
        }[status]
        position, updated_at = None, history[-1][1]
        if status == "pending" and _needs_captcha(t.job):
            solving = t.requested + (t.ready - t.requested) / 2
            stage = "pending-captcha" if now < solving else "ready-for-captcha"
            updated_at = t.requested if now < solving else solving
        if status == "queued":
            position, updated_at = self._waiting_ahead(t)
        elif status == "in-progress":
            updated_at = now
        remaining = None
        if t.done is not None:
            remaining = max(0, int((t.done - now).total_seconds() * 1000))
        return JobState(
            job_status=status,
            model_status="training",
            stage=stage,
            progress=round(t.progress_at(now), 4),
            position=position,
            remaining_ms=remaining,
            updated_at=updated_at,
            history=history,
            epochs_done=t.epochs_at(now),
            billing=None,
            error="",
            started_at=t.start if t.start is not None and t.start <= now else None,
            ended_at=None,
        )


def _ending(t: Timeline, now: datetime) -> tuple[str, datetime] | None:
    """The job's final status and when it was reached, if it has ended by `now`."""
    candidates = [
        ("canceled", t.canceled),
        ("failure", t.fail_at),
        ("success", t.done),
    ]
    reached = [(moment, status) for status, moment in candidates if moment and moment <= now]
    if not reached:
        return None
    moment, status = min(reached)
    return status, moment


# --- the kept walk ----------------------------------------------------------------------------


class _KeptWalk:
    """The newest walk, kept for the stamp token and slot count it was made under."""

    def __init__(self):
        self._lock = threading.Lock()
        self._entry: tuple[int, str, Schedule] | None = None

    def get(self, slots: int, token: str | None) -> Schedule | None:
        entry = self._entry
        if token is None or entry is None or entry[:2] != (slots, token):
            return None
        return entry[2]

    def put(self, slots: int, token: str | None, schedule: Schedule) -> None:
        if token is not None:
            with self._lock:
                self._entry = (slots, token, schedule)


def _newest_fact(jobs: list[SimJob]) -> datetime | None:
    return max(
        (moment for job in jobs for moment in (job.requested_at, job.canceled_at) if moment),
        default=None,
    )


_kept = _KeptWalk()
