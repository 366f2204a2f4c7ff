"""Run the lifecycle's work in Celery: thin tasks that take ids and call training.services.

Every task is idempotent (state changes are compare-and-set), so all of them acknowledge late:
a task lost with its worker is delivered again. A task whose run is gone or finished returns
quietly. Nothing sleeps here; waiting is done with retry countdowns and the sweep.
"""

from __future__ import annotations

import logging

from celery import Task, shared_task

from training import datasets, notifications, scenario, services

logger = logging.getLogger(__name__)

# Well below the Redis visibility timeout (an hour), so a waiting retry is never redelivered.
MAX_COUNTDOWN = 60


class ScenarioTask(Task):
    """Retry no sooner than Scenario's Retry-After asked, and never too late."""

    def retry(
        self,
        args=None,
        kwargs=None,
        exc=None,
        throw=True,
        eta=None,
        countdown=None,
        max_retries=None,
        **options,
    ):
        retry_after = getattr(exc, "retry_after", None)
        if retry_after:
            countdown = max(countdown or 0, retry_after)
        if countdown is not None:
            countdown = min(countdown, MAX_COUNTDOWN)
        return super().retry(args, kwargs, exc, throw, eta, countdown, max_retries, **options)


RETRYING = {
    "base": ScenarioTask,
    "acks_late": True,
    # Scenario's transient errors are TryAgain too: retried as they are, never wrapped.
    "autoretry_for": (scenario.TryAgain,),
    "retry_backoff": True,
    "retry_backoff_max": MAX_COUNTDOWN,
    "retry_jitter": True,
    "max_retries": 8,
}


@shared_task(**RETRYING)
def submit_run(run_id: int) -> None:
    services.submit_run(run_id)


@shared_task(acks_late=True)
def poll_run(run_id: int, held_until: str = "") -> None:
    # No Celery retry: a failed poll reschedules itself through next_poll_at.
    services.poll_run(run_id, held_until)


@shared_task(acks_late=True)
def poll_listed(run_ids: list[int], held_until: str = "") -> None:
    # No Celery retry either: a failed list call reschedules the whole batch.
    services.poll_listed(run_ids, held_until)


@shared_task(acks_late=True)
def apply_listed(run_ids: list[int], listing: dict, held_until: str = "") -> None:
    services.apply_listed(run_ids, listing, held_until)


@shared_task(**RETRYING)
def cancel_run(run_id: int) -> None:
    services.cancel_run(run_id)


@shared_task(acks_late=True)
def sweep() -> int:
    claimed = services.sweep()
    if claimed:  # Celery's own lines about the sweep are filtered out (dashboard.celery)
        logger.info("Sweep: %d run(s) due, sent to the workers", claimed)
    return claimed


@shared_task(**RETRYING)
def sync_models() -> int:
    return services.sync_models()


@shared_task(**RETRYING)
def sync_dataset(dataset_id: int) -> None:
    # Uploads, attaches, captions, removals and pairs; each step records what it did.
    datasets.sync(dataset_id)


@shared_task(bind=True, acks_late=True, max_retries=notifications.MAX_ATTEMPTS)
def deliver_notification(self, delivery_id: int) -> None:
    # Each attempt is counted on the row, which also decides when to give up.
    delay = notifications.deliver(delivery_id)
    if delay is not None:
        raise self.retry(countdown=min(delay, MAX_COUNTDOWN))


@shared_task(acks_late=True)
def resend_notifications() -> int:
    resent = notifications.resend_stale()
    if resent:  # Celery's own lines about this task are filtered out (dashboard.celery)
        logger.info("Notifications: %d delivery(ies) sent again", resent)
    return resent
