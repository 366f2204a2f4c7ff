"""Told when a run ends: email to a real SMTP server, chat and signed webhooks to a real HTTP
receiver, through the outbox and a real worker; one delivery per channel per run."""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import timedelta
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from celery.signals import task_postrun
from django.db import transaction
from django.utils import timezone

from tests.factories import make_run, mirror
from tests.fixtures.workers import broker_unreachable, reload
from training import notifications, services, tasks, webhooks
from training.models import (
    Channel,
    Delivery,
    DeliveryStatus,
    EpochSample,
    NotificationPreference,
    RunState,
    TeamHooks,
)

S = RunState
BASE_URL = "https://dashboard.example.com"
SECRET = webhooks.new_secret()
TEAM_HELD = "held-for-its-retry"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def smtp_mailer(port: int) -> dict:
    """Django's SMTP backend, as the settings make it from EMAIL_HOST and EMAIL_PORT."""
    options = {"host": "127.0.0.1", "port": port, "use_tls": False, "timeout": 5}
    return {
        "default": {"BACKEND": "django.core.mail.backends.smtp.EmailBackend", "OPTIONS": options}
    }


class Inbox:
    """An aiosmtpd handler keeping every message it is given."""

    def __init__(self):
        self.messages: list[dict] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        message = message_from_bytes(envelope.content, policy=policy.default)
        text, html = (message.get_body((kind,)).get_content() for kind in ("plain", "html"))
        self.messages.append(
            {"to": envelope.rcpt_tos, "subject": message["Subject"], "text": text, "html": html}
        )
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server(settings):
    """A real SMTP server on a free port, with Django's SMTP backend pointed at it."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.MAILERS = smtp_mailer(controller.port)
    yield inbox
    controller.stop()


class Receiver:
    """A real HTTP server that records each POST and answers with the next planned status."""

    def __init__(self):
        self.requests: list[dict] = []
        self.planned: dict[str, list[int]] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                plan = receiver.planned.get(self.path) or [200]
                status = plan.pop(0) if len(plan) > 1 else plan[0]
                receiver.requests.append(
                    {
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": body,
                        "answer": status,
                    }
                )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def to(self, path: str) -> list[dict]:
        return [request for request in self.requests if request["path"] == path]


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture
def finished_tasks():
    """Ids of the tasks the in-process worker finished, to wait for a task published here."""
    done: set[str] = set()

    def record(task_id=None, **kwargs):
        done.add(task_id)

    task_postrun.connect(record, weak=False)
    yield done
    task_postrun.disconnect(record)


def wait_for(condition, timeout: float = 30, describe=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"gave up waiting: {describe()}")


def wants_email(user, address: str) -> None:
    user.email = address
    user.save(update_fields=["email"])
    NotificationPreference.objects.create(user=user, email=True)


def hooks_for(team, **fields) -> TeamHooks:
    return TeamHooks.objects.create(team=team, doorbell_token=f"token-{team.pk}", **fields)


# --- The whole way: a real training, a real worker, real servers -----------------------------


@pytest.mark.worker
def test_a_finished_run_is_told_once_on_each_channel_even_when_its_tasks_run_twice(
    scenario, celery_worker_thread, fast_lifecycle, drive, smtp_server, receiver, finished_tasks,
    alice, settings,
):  # fmt: skip
    settings.DASHBOARD_BASE_URL = BASE_URL
    wants_email(alice, "alice@example.com")
    hooks_for(
        alice.membership.team,
        chat_url=f"{receiver.url}/chat",
        webhook_url=f"{receiver.url}/hook",
        webhook_secret=SECRET,
    )
    receiver.planned["/hook"] = [500, 200]  # the receiver fails once, then takes it
    model = mirror(scenario.create_model("Knight", images=1))
    run = services.launch_run(
        user=alice, model=model, parameters={"nbEpochs": 2, "samplePrompts": ["a knight"]}
    )

    def all_sent():
        return Delivery.objects.filter(run=run, status=DeliveryStatus.SENT).count() == 3

    drive(
        lambda: reload(run).is_final and all_sent(),
        describe=lambda: f"{reload(run).state}: {list(Delivery.objects.values())}",
    )
    run = reload(run)
    assert run.state == S.SUCCEEDED

    # The final transition's work done again: polls of the ended run, each delivery resent,
    # and the transition itself from a stale copy of the run.
    again = [tasks.poll_run.delay(run.pk).id for _ in range(2)]
    for delivery in Delivery.objects.filter(run=run):
        again += [tasks.deliver_notification.delay(delivery.pk).id for _ in range(2)]
    wait_for(lambda: set(again) <= finished_tasks, describe=lambda: finished_tasks)
    stale = reload(run)
    stale.state = S.RUNNING
    assert not services.transition(stale, S.SUCCEEDED, expected=[S.RUNNING], source="worker")

    # One of each.
    assert sorted(Delivery.objects.filter(run=run).values_list("channel", flat=True)) == sorted(
        [Channel.EMAIL, Channel.CHAT, Channel.WEBHOOK]
    )
    assert len(smtp_server.messages) == 1
    assert len(receiver.to("/chat")) == 1
    assert [request["answer"] for request in receiver.to("/hook")] == [500, 200]

    sample = EpochSample.objects.filter(run=run).order_by("-epoch_index").first()
    expected = [
        "Knight: Succeeded",
        notifications.run_end(run)["duration"],
        f"{run.cu_cost:g} CU",
        f"{BASE_URL}/runs/{run.pk}/",
        sample.url,
    ]
    email = smtp_server.messages[0]
    assert email["to"] == ["alice@example.com"]
    assert email["subject"] == "Knight: Succeeded"
    assert all(words in email["text"] for words in expected), email["text"]
    assert f'<img src="{sample.url}"' in email["html"]
    chat = json.loads(receiver.to("/chat")[0]["body"])
    assert chat["text"] == chat["content"]
    assert all(words in chat["text"] for words in expected), chat

    # The webhook: signed, checked by the documented check, retried after the 500.
    accepted = receiver.to("/hook")[-1]
    header = accepted["headers"][webhooks.HEADER]
    assert webhooks.verify(SECRET, header, accepted["body"])
    assert not webhooks.verify("whsec_someone_else", header, accepted["body"])
    assert not webhooks.verify(SECRET, header, accepted["body"].replace(b"Knight", b"Forged"))
    payload = json.loads(accepted["body"])
    assert payload["event"] == "run.finished"
    assert payload["run"]["model"] == "Knight"
    assert payload["run"]["state"] == "succeeded"
    assert payload["run"]["cu_billed"] == run.cu_cost
    assert payload["run"]["url"] == f"{BASE_URL}/runs/{run.pk}/"
    assert payload["run"]["sample_image"] == sample.url
    webhook = Delivery.objects.get(run=run, channel=Channel.WEBHOOK)
    assert (webhook.status, webhook.attempts) == (DeliveryStatus.SENT, 2)


# --- The outbox, row by row ------------------------------------------------------------------


def test_the_outbox_is_written_with_the_final_transition_or_not_at_all(alice, model):
    wants_email(alice, "alice@example.com")
    run = make_run(alice, model, S.RUNNING, job_id="job_1")
    with pytest.raises(RuntimeError), transaction.atomic():
        services.transition(run, S.FAILED, expected=[S.RUNNING], source="worker")
        raise RuntimeError("the worker died before the commit")
    assert reload(run).state == S.RUNNING
    assert not Delivery.objects.exists()

    assert services.transition(reload(run), S.FAILED, expected=[S.RUNNING], source="worker")
    assert list(Delivery.objects.values_list("channel", "recipient", "status")) == [
        (Channel.EMAIL, "alice@example.com", DeliveryStatus.PENDING)
    ]


def test_recording_the_same_end_twice_adds_no_row(alice, model):
    wants_email(alice, "alice@example.com")
    hooks_for(alice.membership.team, chat_url="https://chat.example.com/hook")
    run = make_run(alice, model, S.RUNNING, job_id="job_1")
    assert services.transition(run, S.SUCCEEDED, expected=[S.RUNNING], source="worker")
    notifications.record_run_end(run)
    assert Delivery.objects.filter(run=run).count() == 2


def test_nobody_is_told_by_a_channel_they_did_not_ask_for(alice, model):
    NotificationPreference.objects.create(user=alice, email=False)
    run = make_run(alice, model, S.RUNNING, job_id="job_1")
    assert services.transition(run, S.CANCELED, expected=[S.RUNNING], source="worker")
    assert not Delivery.objects.exists()


def test_a_webhook_that_keeps_failing_is_given_up_after_the_bounded_attempts(
    alice, model, receiver
):
    hooks_for(alice.membership.team, webhook_url=f"{receiver.url}/down", webhook_secret=SECRET)
    receiver.planned["/down"] = [503]
    run = make_run(alice, model, S.RUNNING, job_id="job_1")
    assert services.transition(run, S.FAILED, expected=[S.RUNNING], source="worker")
    delivery = Delivery.objects.get()
    outcomes = []
    for _ in range(notifications.MAX_ATTEMPTS):
        outcomes.append(notifications.deliver(delivery.pk))
        Delivery.objects.update(claimed_until=None)  # as if each retry's countdown had passed
    assert outcomes == [2.0, 4.0, 8.0, 16.0, None]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (
        DeliveryStatus.FAILED,
        notifications.MAX_ATTEMPTS,
    )
    assert delivery.last_error == "The webhook answered 503"
    assert notifications.deliver(delivery.pk) is None  # given up on: nothing more is sent
    assert len(receiver.to("/down")) == notifications.MAX_ATTEMPTS


def test_a_webhook_that_refuses_is_not_tried_again(alice, model, receiver):
    hooks_for(alice.membership.team, webhook_url=f"{receiver.url}/gone", webhook_secret=SECRET)
    receiver.planned["/gone"] = [410]
    run = make_run(alice, model, S.RUNNING, job_id="job_1")
    assert services.transition(run, S.SUCCEEDED, expected=[S.RUNNING], source="worker")
    assert notifications.deliver(Delivery.objects.get().pk) is None
    assert Delivery.objects.get().status == DeliveryStatus.FAILED
    assert len(receiver.to("/gone")) == 1


def test_an_unreachable_mail_server_is_an_error_in_words(alice, model, settings):
    settings.MAILERS = smtp_mailer(free_port())  # nobody listens there
    wants_email(alice, "alice@example.com")
    run = make_run(alice, model, S.RUNNING, job_id="job_1")
    assert services.transition(run, S.SUCCEEDED, expected=[S.RUNNING], source="worker")
    assert notifications.deliver(Delivery.objects.get().pk) == 2.0
    delivery = Delivery.objects.get()
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.last_error.startswith("The mail server did not take it")


# --- The documented check --------------------------------------------------------------------


def test_the_check_refuses_a_replay_older_than_five_minutes():
    body = b'{"event": "run.finished"}'
    header = webhooks.signature(SECRET, body, timestamp=1_700_000_000)
    assert webhooks.verify(SECRET, header, body, now=1_700_000_000 + 299)
    assert not webhooks.verify(SECRET, header, body, now=1_700_000_000 + 301)
    assert not webhooks.verify(SECRET, "t=1700000000", body, now=1_700_000_000)
    assert not webhooks.verify(SECRET, "nonsense", body)


def test_without_a_mail_server_an_email_fails_saying_so(alice, model, settings):
    settings.MAILERS = {}  # a configuration without a default mailer
    wants_email(alice, "alice@example.com")
    run = make_run(alice, model, S.RUNNING, job_id="job_1")
    assert services.transition(run, S.SUCCEEDED, expected=[S.RUNNING], source="worker")
    assert notifications.deliver(Delivery.objects.get().pk) is None
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.last_error) == (
        DeliveryStatus.FAILED,
        "No mail server is set (EMAIL_HOST)",
    )


@pytest.mark.worker
def test_a_delivery_whose_task_was_lost_is_sent_by_the_resend_sweep(
    celery_worker_thread, alice, model, receiver
):
    hooks_for(alice.membership.team, chat_url=f"{receiver.url}/chat")
    run = make_run(alice, model, S.RUNNING, job_id="job_1")
    with broker_unreachable():  # the task published on commit is lost
        assert services.transition(run, S.SUCCEEDED, expected=[S.RUNNING], source="worker")
    delivery = Delivery.objects.get()
    assert notifications.resend_stale() == 0  # too young to be called lost
    Delivery.objects.update(created_at=delivery.created_at - timedelta(minutes=2))
    held = Delivery.objects.create(
        run=run, channel=Channel.WEBHOOK, recipient=TEAM_HELD, claimed_until=timezone.now()
    )
    assert notifications.resend_stale() == 1  # the one held for its retry is left to it
    wait_for(lambda: Delivery.objects.get(pk=delivery.pk).status == DeliveryStatus.SENT)
    assert len(receiver.to("/chat")) == 1
    assert Delivery.objects.get(pk=held.pk).attempts == 0
