"""The pages: everyone's email preference, the lead's team hooks and delivery log."""

from __future__ import annotations

from django.urls import reverse

from tests.factories import make_run
from training import webhooks
from training.models import (
    Channel,
    Delivery,
    DeliveryStatus,
    NotificationPreference,
    RunState,
    TeamHooks,
)


def test_an_artist_turns_email_on_for_her_runs(client, alice):
    client.force_login(alice)
    url = reverse("notification_preferences")
    page = client.get(url)
    assert b"Notify me when my runs end" in page.content  # how to turn on the browser's
    response = client.post(url, {"email": "on", "address": "alice@example.com"})
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.email == "alice@example.com"
    assert NotificationPreference.objects.get(user=alice).email


def test_email_without_an_address_is_refused_at_the_field(client, alice):
    client.force_login(alice)
    response = client.post(reverse("notification_preferences"), {"email": "on", "address": ""})
    assert response.status_code == 200
    assert "Give the address to send to" in response.content.decode()
    assert not NotificationPreference.objects.get(user=alice).email


def test_only_a_lead_manages_the_team_hooks_and_reads_the_log(client, alice, charlie):
    for person in (alice, charlie):
        client.force_login(person)
        assert client.get(reverse("team_hooks")).status_code == 403
        assert client.get(reverse("delivery_log")).status_code == 403
        assert (
            client.post(reverse("team_hooks"), {"chat_url": "https://x.test/"}).status_code == 403
        )
    assert not TeamHooks.objects.filter(chat_url__startswith="https://x.test").exists()


def test_the_webhook_secret_is_shown_once_when_it_is_made(client, bob):
    client.force_login(bob)
    response = client.post(
        reverse("team_hooks"),
        {"chat_url": "https://hooks.slack.com/services/T/B/X", "webhook_url": "https://ci.test/h"},
    )
    hooks = TeamHooks.objects.get(team=bob.membership.team)
    assert hooks.webhook_secret.startswith("whsec_")
    assert hooks.webhook_secret in response.content.decode()
    again = client.get(reverse("team_hooks")).content.decode()
    assert hooks.webhook_secret not in again
    assert reverse("doorbell", args=[hooks.doorbell_token]) in again

    # Saving again keeps the secret; asking for a new one shows the new one, once.
    client.post(reverse("team_hooks"), {"webhook_url": "https://ci.test/h"})
    assert TeamHooks.objects.get(pk=hooks.pk).webhook_secret == hooks.webhook_secret
    renewed = client.post(
        reverse("team_hooks"), {"webhook_url": "https://ci.test/h", "new_secret": "1"}
    )
    secret = TeamHooks.objects.get(pk=hooks.pk).webhook_secret
    assert secret != hooks.webhook_secret and secret in renewed.content.decode()


def test_a_bad_webhook_url_is_refused_at_the_field(client, bob):
    client.force_login(bob)
    response = client.post(reverse("team_hooks"), {"webhook_url": "javascript:alert(1)"})
    assert response.status_code == 200
    assert "Enter a valid URL" in response.content.decode()
    assert TeamHooks.objects.get(team=bob.membership.team).webhook_url == ""


def test_a_new_doorbell_url_retires_the_old_one(client, bob, model, alice):
    client.force_login(bob)
    client.get(reverse("team_hooks"))
    old = TeamHooks.objects.get(team=bob.membership.team).doorbell_token
    client.post(reverse("team_hooks"), {"new_doorbell": "1"})
    new = TeamHooks.objects.get(team=bob.membership.team).doorbell_token
    assert new != old
    assert (
        client.post(
            reverse("doorbell", args=[old]), "{}", content_type="application/json"
        ).status_code
        == 404
    )


def test_the_lead_reads_status_attempts_and_last_error_in_the_log(
    client, bob, alice, charlie, model
):
    mine = make_run(alice, model, RunState.FAILED)
    theirs = make_run(charlie, model, RunState.FAILED)
    Delivery.objects.create(
        run=mine,
        channel=Channel.WEBHOOK,
        recipient="team",
        status=DeliveryStatus.FAILED,
        attempts=5,
        last_error="The webhook answered 503",
    )
    Delivery.objects.create(run=theirs, channel=Channel.EMAIL, recipient="charlie@example.com")
    client.force_login(bob)
    page = client.get(reverse("delivery_log")).content.decode()
    assert "Signed webhook" in page and "Failed" in page
    assert "The webhook answered 503" in page and "<td>5</td>" in page
    assert "charlie@example.com" not in page


def test_the_header_named_in_the_readme_is_the_one_sent(settings):
    readme = (settings.BASE_DIR / "README.md").read_text()
    assert f"{webhooks.HEADER}: t=" in readme
    assert "webhooks.verify(" in readme
