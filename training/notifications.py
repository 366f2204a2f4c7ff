"""Told when a run ends: an outbox of deliveries by email, chat webhook and signed webhook.

`record_run_end` is called by training.lifecycle.transition inside the transaction that makes
a run final. It writes one Delivery row per channel and recipient (a unique constraint keeps
it to one, however often a final transition is attempted) and enqueues their sending on
commit. `deliver` sends one row: it claims the row with a conditional UPDATE (a second task
for a row already sent or being sent returns quietly), records each attempt and its error,
and asks for a retry until MAX_ATTEMPTS; `resend_stale` (on beat's schedule) publishes again a
row whose task was lost. Browser notifications are not in the outbox: the
open dashboard shows them (static/js/notify.js).
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from functools import partial

import requests
from celery import current_app
from django.conf import settings
from django.core.mail import MailerDoesNotExist, send_mail
from django.db import transaction
from django.db.models import F, Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from training import display, webhooks
from training.models import (
    Channel,
    Delivery,
    DeliveryStatus,
    EpochSample,
    NotificationPreference,
    TeamHooks,
    TrainingRun,
)

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
# A sender holds a row this long; a sender that died lets the next one try after it.
CLAIM_SECONDS = 120
TIMEOUT = (3.05, 10)
# A pending row nobody has tried for this long lost its task; the resend sweep publishes it.
RESEND_AFTER_SECONDS = 60
RESEND_BATCH = 200
TEAM = "team"


class DeliveryFailed(Exception):
    """A send did not go through; `permanent` when trying again cannot help."""

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


# --- The outbox -----------------------------------------------------------------------------


def record_run_end(run: TrainingRun) -> None:
    """Write the run's deliveries in the current transaction; send them once it commits."""
    rows = [Delivery(run_id=run.pk, channel=channel, recipient=to) for channel, to in _targets(run)]
    if not rows:
        return
    Delivery.objects.bulk_create(rows, ignore_conflicts=True)
    pending = Delivery.objects.filter(run_id=run.pk, status=DeliveryStatus.PENDING)
    for delivery_id in pending.values_list("pk", flat=True):
        transaction.on_commit(partial(enqueue, delivery_id))


def _targets(run: TrainingRun) -> list[tuple[str, str]]:
    targets = []
    author = run.created_by
    wants_email = NotificationPreference.objects.filter(user=author, email=True).exists()
    if wants_email and author.email:
        targets.append((Channel.EMAIL, author.email))
    hooks = TeamHooks.objects.filter(team_id=run.team_id).first()
    if hooks and hooks.chat_url:
        targets.append((Channel.CHAT, TEAM))
    if hooks and hooks.webhook_url:
        targets.append((Channel.WEBHOOK, TEAM))
    return targets


def enqueue(delivery_id: int) -> None:
    """Publish the delivery's task, by name: training.tasks imports this module."""
    task = current_app.signature("training.tasks.deliver_notification")
    try:
        task.apply_async((delivery_id,), retry_policy={"max_retries": 1})
    except Exception:  # each broker transport raises its own errors
        log.warning("Could not enqueue delivery %s", delivery_id, exc_info=True)


# --- Sending --------------------------------------------------------------------------------


def deliver(delivery_id: int) -> float | None:
    """Send one delivery if it is still pending and nobody else is sending it.

    Returns the seconds after which to try again, or None when it is done with: sent, given
    up on, or not this caller's to send.
    """
    now = timezone.now()
    claimed = (
        Delivery.objects.filter(pk=delivery_id, status=DeliveryStatus.PENDING)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .update(claimed_until=now + timedelta(seconds=CLAIM_SECONDS), attempts=F("attempts") + 1)
    )
    if not claimed:
        return None  # sent already, given up on, or another sender has it
    delivery = Delivery.objects.select_related("run__model", "run__created_by").get(pk=delivery_id)
    try:
        SENDERS[delivery.channel](delivery, run_end(delivery.run))
    except DeliveryFailed as error:
        if error.permanent or delivery.attempts >= MAX_ATTEMPTS:
            _finish(delivery, DeliveryStatus.FAILED, str(error))
            return None
        delay = retry_delay(delivery.attempts)
        # Held until the retry is due: the resend sweep leaves it to the retry until then.
        until = timezone.now() + timedelta(seconds=delay)
        _finish(delivery, DeliveryStatus.PENDING, str(error), claimed_until=until)
        return delay
    _finish(delivery, DeliveryStatus.SENT, "", sent_at=timezone.now())
    return None


def retry_delay(attempts: int) -> float:
    """Return the wait before trying again: 2, 4, 8, 16 s after the 1st to 4th failed attempt."""
    return float(min(2**attempts, 60))


def _finish(delivery: Delivery, status: str, error: str, **fields) -> None:
    fields.setdefault("claimed_until", None)
    Delivery.objects.filter(pk=delivery.pk).update(status=status, last_error=error, **fields)


def resend_stale() -> int:
    """Publish again the deliveries whose task was lost (a broker down at commit, a dead
    worker); returns how many. A row held for its retry is left to that retry."""
    stale = timezone.now() - timedelta(seconds=RESEND_AFTER_SECONDS)
    lost = Delivery.objects.filter(status=DeliveryStatus.PENDING).filter(
        Q(claimed_until__isnull=True, created_at__lt=stale) | Q(claimed_until__lt=stale)
    )
    ids = list(lost.order_by("created_at").values_list("pk", flat=True)[:RESEND_BATCH])
    for delivery_id in ids:
        enqueue(delivery_id)
    return len(ids)


def run_end(run: TrainingRun) -> dict:
    """Gather what every message says: the model, the outcome, how long, the CU, where to look."""
    sample = EpochSample.objects.filter(run=run).order_by("-epoch_index", "prompt_index").first()
    took = display.took_seconds(run)
    billed = "unknown" if run.cost_unknown else display.cu(run.cu_cost)
    return {
        "run_id": run.pk,
        "model": run.model.name or run.model.remote_id,
        "state": run.state,
        "outcome": run.outcome,
        "duration_seconds": took,
        "duration": display.duration(took),
        "cu_billed": run.cu_cost,
        "cu": billed,
        "url": settings.DASHBOARD_BASE_URL.rstrip("/") + reverse("run_detail", args=[run.pk]),
        "sample_image": display.web_url(sample.url) if sample else "",
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


def text(end: dict) -> str:
    lines = [
        f"{end['model']}: {end['outcome']}",
        f"Duration: {end['duration']} · Billed: {end['cu']}",
        f"Run: {end['url']}",
    ]
    if end["sample_image"]:
        lines.append(f"Last epoch's sample: {end['sample_image']}")
    return "\n".join(lines)


def _send_email(delivery: Delivery, end: dict) -> None:
    try:
        send_mail(
            f"{end['model']}: {end['outcome']}",
            text(end),
            settings.DEFAULT_FROM_EMAIL,
            [delivery.recipient],
            html_message=render_to_string("training/email/run_end.html", {"end": end}),
        )
    except MailerDoesNotExist as error:
        raise DeliveryFailed("No mail server is set (EMAIL_HOST)", permanent=True) from error
    except OSError as error:  # smtplib's errors are OSErrors, as are refused connections
        raise DeliveryFailed(f"The mail server did not take it: {error}") from error


def _send_chat(delivery: Delivery, end: dict) -> None:
    # Slack reads "text", Discord "content"; each ignores the other's field.
    message = text(end)
    _post(_hooks(delivery).chat_url, json.dumps({"text": message, "content": message}).encode())


def _send_webhook(delivery: Delivery, end: dict) -> None:
    hooks = _hooks(delivery)
    body = json.dumps({"event": "run.finished", "delivery": delivery.pk, "run": end}).encode()
    headers = {webhooks.HEADER: webhooks.signature(hooks.webhook_secret, body)}
    _post(hooks.webhook_url, body, headers)


def _hooks(delivery: Delivery) -> TeamHooks:
    hooks = TeamHooks.objects.filter(team_id=delivery.run.team_id).first()
    if hooks is None:
        raise DeliveryFailed("The team's hooks were removed", permanent=True)
    return hooks


def _post(url: str, body: bytes, headers: dict | None = None) -> None:
    if not url:
        raise DeliveryFailed("The team removed this webhook", permanent=True)
    headers = {"Content-Type": "application/json", **(headers or {})}
    try:
        response = requests.post(url, data=body, headers=headers, timeout=TIMEOUT)
    except requests.RequestException as error:
        raise DeliveryFailed(f"Could not reach the webhook: {type(error).__name__}") from error
    if response.status_code >= 300:
        # A 4xx other than a timeout or a rate limit will answer the same next time.
        permanent = 400 <= response.status_code < 500 and response.status_code not in {408, 429}
        raise DeliveryFailed(f"The webhook answered {response.status_code}", permanent=permanent)


SENDERS = {Channel.EMAIL: _send_email, Channel.CHAT: _send_chat, Channel.WEBHOOK: _send_webhook}
