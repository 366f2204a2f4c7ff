"""Hold the leases: who may send a run's trigger to Scenario, and who may list the models.

`TrainingRun.submitted_at` is the lease. Whoever moves a run into submitting, or takes over a
lease that is empty or older than SUBMIT_TIMEOUT_SECONDS, may send the trigger, and only after
renewing it (by compare-and-set) just before sending: a cancel that came first, or a newer
attempt that took over, makes the renewal fail. A submit task's hard time limit equals the
lease, so a lease outlives its holder. Every function here is one conditional UPDATE; when no
row changes, another worker got there first.

The listing lease (ListingLease) is the sweep's: one listing of Scenario's training models at a
time, from the sweep that takes it to the end of its task, or until it runs out.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from training.models import ListingLease, RunState, TrainingRun

S = RunState


def length() -> timedelta:
    """Return how long a lease lasts (read at call time, so tests can change it)."""
    return timedelta(seconds=float(settings.SUBMIT_TIMEOUT_SECONDS))


def take(run: TrainingRun) -> datetime | None:
    """Take over the lease when it is empty or has run out; None when it is held."""
    now = timezone.now()
    held = run.submitted_at
    if held is not None and held > now - length():
        return None
    lease_filter = Q(submitted_at__isnull=True) if held is None else Q(submitted_at=held)
    taken = TrainingRun.objects.filter(lease_filter, pk=run.pk, state=run.state).update(
        submitted_at=now, next_poll_at=now + length()
    )
    return now if taken else None


def renew(run: TrainingRun, lease: datetime) -> datetime | None:
    """Check, just before sending, that the run is still ours to submit and not canceled."""
    now = timezone.now()
    renewed = TrainingRun.objects.filter(pk=run.pk, state=S.SUBMITTING, submitted_at=lease).update(
        submitted_at=now, next_poll_at=now + length(), triggers_sent=F("triggers_sent") + 1
    )
    if not renewed:
        return None
    run.submitted_at, run.triggers_sent = now, run.triggers_sent + 1
    return now


def release(run: TrainingRun, lease: datetime) -> None:
    """Give the lease back when nothing went out: the retry (or the sweep) takes it at once."""
    TrainingRun.objects.filter(
        pk=run.pk, state__in=[S.SUBMITTING, S.CANCEL_REQUESTED], submitted_at=lease
    ).update(submitted_at=None)


def free_after_read_back(run: TrainingRun) -> bool:
    """Let the next submit take the lease at once: the read-back showed nothing launched."""
    grace = timedelta(seconds=float(settings.SUBMIT_GRACE_SECONDS))
    return bool(
        TrainingRun.objects.filter(
            pk=run.pk,
            state=S.SUBMITTING,
            submitted_at=run.submitted_at,
            outcome_unknown_at=run.outcome_unknown_at,
        ).update(submitted_at=None, outcome_unknown_at=None, next_poll_at=timezone.now() + grace)
    )


def take_listing(now: datetime, until: datetime) -> bool:
    """Take the listing lease until `until` if no listing holds it now."""
    if ListingLease.objects.filter(pk=1, until__lte=now).update(until=until):
        return True
    _, created = ListingLease.objects.get_or_create(pk=1, defaults={"until": until})
    return created


def release_listing(until: datetime) -> None:
    """Give the listing lease back, if it is still the one taken until `until`."""
    ListingLease.objects.filter(pk=1, until=until).update(until=timezone.now())
