"""Scenario's training webhooks, simulated: events sent to settings.SIMULATOR_WEBHOOK_URL.

Scenario calls a team's endpoint on model.training.started|completed|failed|cancelled. The
simulator keeps no state between requests, so a launch starts a watcher thread that reads
the job's timeline from the clock and posts each event as the job reaches it: started when
the trainer starts, then completed, failed or cancelled. The payload is the simulator's own
guess ({"event", "modelId", "jobId", "createdAt"}): Scenario does not document its shape.
"""

from __future__ import annotations

import logging
import threading
import time

import requests
from django.conf import settings
from django.db import connection, transaction

from simulator import clock
from simulator.lifecycle import Schedule

log = logging.getLogger(__name__)

ENDINGS = {
    "success": "model.training.completed",
    "failure": "model.training.failed",
    "canceled": "model.training.cancelled",
}
STARTED = frozenset({"warming-up", "in-progress", "finalizing"})
# How often the watcher reads the timeline: a cancel is announced within this.
LOOK_SECONDS = 0.1
GIVE_UP_SECONDS = 6 * 3600


def watch(job_id: str, model_id: str) -> None:
    """Announce the job's start and end to the configured URL, if there is one."""
    url = settings.SIMULATOR_WEBHOOK_URL
    if url:
        thread = threading.Thread(
            target=_watch, args=(url, job_id, model_id), daemon=True, name=f"events-{job_id}"
        )
        transaction.on_commit(thread.start)  # the job must be there for the watcher to see


def _watch(url: str, job_id: str, model_id: str) -> None:
    started = False
    deadline = time.monotonic() + GIVE_UP_SECONDS
    try:
        while time.monotonic() < deadline:
            schedule = Schedule.load(clock.now())
            timeline = schedule.timeline(job_id)
            if timeline is None:
                return  # the job is gone
            status = schedule.state(timeline).job_status
            if not started and (status in STARTED or status == "success"):
                started = True
                _send(url, "model.training.started", job_id, model_id)
            if status in ENDINGS:
                _send(url, ENDINGS[status], job_id, model_id)
                return
            time.sleep(LOOK_SECONDS)
    finally:
        connection.close()


def _send(url: str, event: str, job_id: str, model_id: str) -> None:
    now = clock.iso(clock.now())
    body = {"event": event, "modelId": model_id, "jobId": job_id, "createdAt": now}
    try:
        requests.post(url, json=body, timeout=(3.05, 10))
    except requests.RequestException as error:
        log.info("The %s event for %s did not reach %s: %s", event, job_id, url, error)
