"""The run page and the dashboard tell one story: refresh without JavaScript, one end time,
the epoch in use, why an older run's epochs are gone, the favicon and the 403 page."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from django.urls import reverse

from tests.factories import add_samples, finish, make_bare_model, make_sent_run
from tests.helpers import HTMX
from training import services
from training.models import RunState

REFRESH = '<noscript><meta http-equiv="refresh" content="3"></noscript>'

pytestmark = pytest.mark.django_db


def page_of(client, user, name, *args) -> str:
    client.force_login(user)
    response = client.get(reverse(name, args=args))
    assert response.status_code == 200
    return response.content.decode()


def samples_card(html: str) -> str:
    return html.split('id="run-samples"')[1].split("</section>")[0]


# --- Without JavaScript, a live page reloads itself -----------------------------------------


def test_an_active_run_page_reloads_itself_without_javascript_and_a_finished_one_does_not(
    client, alice
):
    active = make_sent_run(alice, RunState.QUEUED)
    done = make_sent_run(alice, RunState.SUCCEEDED)
    assert REFRESH in page_of(client, alice, "run_detail", active.pk)
    assert "http-equiv" not in page_of(client, alice, "run_detail", done.pk)


def test_the_dashboard_reloads_itself_only_while_a_run_is_active(client, alice):
    run = make_sent_run(alice, RunState.RUNNING)
    assert REFRESH in page_of(client, alice, "home")
    finish(run)
    assert "http-equiv" not in page_of(client, alice, "home")


# --- The samples card after a live cancel ----------------------------------------------------


def test_the_live_panel_reloads_the_samples_card_when_the_run_ends(client, alice):
    run = make_sent_run(alice, RunState.RUNNING)
    html = page_of(client, alice, "run_detail", run.pk)
    assert "Sample images appear here after each epoch" in samples_card(html)
    poll_url = html.split('hx-get="')[1].split('"')[0].replace("&amp;", "&")

    finish(run, RunState.CANCELED)
    response = client.get(poll_url, **HTMX)
    assert "samples-changed" in response["HX-Trigger"]
    card = client.get(reverse("run_samples", args=[run.pk]), **HTMX).content.decode()
    assert "Sample images appear here" not in card
    assert "This training produced no sample images" in card
    assert "hx-trigger" not in card  # the card of a finished run listens no more


# --- One end time ---------------------------------------------------------------------------


def test_the_stages_the_job_status_and_the_timing_show_one_end_time(client, alice):
    run = make_sent_run(
        alice,
        RunState.SUCCEEDED,
        status_history=[
            {"date": "2025-05-01T10:00:00Z", "status": "queued"},
            {"date": "2025-05-01T10:02:00Z", "status": "in-progress"},
            {"date": "2025-05-01T10:09:00Z", "status": "success"},
        ],
        train_ended_at=datetime(2025, 5, 1, 10, 9, 0, tzinfo=UTC),
        # When the dashboard noticed: a few seconds later, never shown.
        finished_at=datetime(2025, 5, 1, 10, 9, 7, tzinfo=UTC),
    )
    html = page_of(client, alice, "run_detail", run.pk)
    finished_step = html.split('data-stage="finished"')[1].split("</li>")[0]
    assert "10:09:00" in finished_step
    job_status = html.split("<h2>Job status</h2>")[1].split("</ol>")[0]
    assert "Succeeded" in job_status and "10:09:00" in job_status
    ended = html.split('<dd class="ended-at">')[1].split("</dd>")[0]
    assert "10:09:00" in ended
    assert "10:09:07" not in html


def test_without_a_date_from_scenario_the_end_is_when_the_dashboard_saw_it(client, alice):
    run = make_sent_run(
        alice, RunState.CANCELED, finished_at=datetime(2025, 5, 1, 9, 0, 5, tzinfo=UTC)
    )
    html = page_of(client, alice, "run_detail", run.pk)
    assert "09:00:05" in html.split('data-stage="finished"')[1].split("</li>")[0]
    assert "09:00:05" in html.split('<dd class="ended-at">')[1].split("</dd>")[0]


# --- The epoch in use -----------------------------------------------------------------------


def test_until_someone_picks_an_epoch_the_last_one_is_in_use(client, alice):
    run = make_sent_run(alice, RunState.SUCCEEDED)
    add_samples(run, epochs=3, prompts=1)
    card = samples_card(page_of(client, alice, "run_detail", run.pk))
    last = card.split('<tr data-epoch="3"')[1].split("</tr>")[0]
    assert '<span class="pill in-use">In use</span>' in last
    assert "Scenario's default until someone picks another" in last
    assert card.count("In use</span>") == 1

    services.record_epoch_choice(run, f"epoch-{run.pk}-0", alice)
    card = client.get(reverse("run_samples", args=[run.pk]), **HTMX).content.decode()
    assert "In use</span>" in card.split('<tr data-epoch="1"')[1].split("</tr>")[0]
    assert "In use" not in card.split('<tr data-epoch="3"')[1].split("</tr>")[0]
    assert "chosen by Alice" in card and "default" not in card


def test_no_epoch_is_in_use_while_the_run_trains(client, alice):
    run = make_sent_run(alice, RunState.RUNNING)
    add_samples(run, epochs=2, prompts=1)
    assert "In use" not in samples_card(page_of(client, alice, "run_detail", run.pk))


def test_an_older_run_says_why_its_epochs_cannot_be_picked_and_where_they_went(client, alice):
    earlier = make_sent_run(alice, RunState.SUCCEEDED)
    add_samples(earlier, epochs=2, prompts=1)
    later = make_sent_run(alice, RunState.SUCCEEDED, model=earlier.model)
    for html in (
        page_of(client, alice, "run_detail", earlier.pk),
        client.get(reverse("run_samples", args=[earlier.pk]), **HTMX).content.decode(),
    ):
        card = samples_card(html)
        assert "These epochs can no longer be picked" in card
        assert f'<a href="{reverse("run_detail", args=[later.pk])}">run #{later.pk}</a>' in card
        assert "Scenario keeps only its newest training's epochs" in card
        assert "In use" not in card


# --- The run-finished event carries my runs for notifications ------------------------------


def test_the_finished_event_lists_my_runs_for_a_notification_and_not_my_teammates(
    client, alice, bob
):
    mine = make_sent_run(alice, name="Alice's knight", train_duration=200)
    teammates = make_sent_run(bob, name="Bob's castle")
    client.force_login(alice)
    finish(mine)
    finish(teammates, RunState.FAILED)
    response = client.get(reverse("runs_finished"), {"since": "1"}, **HTMX)
    event = json.loads(response["HX-Trigger"])["run-finished"]
    assert "Bob's castle failed" in event["messages"]
    assert event["runs"] == [
        {
            "id": mine.pk,
            "url": reverse("run_detail", args=[mine.pk]),
            "model": "Alice's knight",
            "outcome": "Finished",
            "duration": "3 min 20 s",
        }
    ]


def test_the_dashboard_refresh_carries_the_same_notification(client, alice):
    run = make_sent_run(alice, RunState.QUEUED, name="Queued knight")
    client.force_login(alice)
    finish(run, RunState.CANCELED)
    response = client.get(reverse("home_board"), {"ids": str(run.pk)}, **HTMX)
    event = json.loads(response["HX-Trigger"])["run-finished"]
    assert [(item["id"], item["outcome"]) for item in event["runs"]] == [(run.pk, "Canceled")]
    assert event["runs"][0]["duration"] != "—"  # launch to cancel, when it never trained


def test_the_dashboard_offers_notifications_only_on_a_click(client, alice):
    html = page_of(client, alice, "home")
    button = html.split('id="notify-toggle"')[1].split("</button>")[0]
    assert 'type="button" hidden' in button  # the script shows it where the browser can notify
    assert "js/notify.js" in html


# --- Words, the favicon and the 403 page -----------------------------------------------------


def test_the_model_picker_says_a_models_status_in_words(client, alice):
    for status in ("training-canceled", "trained", "training"):
        make_bare_model(f"Model {status}", images=4, remote_id=f"m-{status}", status=status)
    html = page_of(client, alice, "launch")
    assert "Last training canceled" in html and "Training now" in html
    assert ">training-canceled<" not in html and ">trained<" not in html


def test_the_favicon_is_linked_and_served(client, alice):
    from django.contrib.staticfiles import finders

    html = page_of(client, alice, "home")
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in html
    assert finders.find("favicon.svg")
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"] == "/static/favicon.svg"


def test_a_refusal_is_a_styled_403_page_that_says_why(client, alice, dave):
    run = make_sent_run(dave, RunState.RUNNING)
    client.force_login(alice)
    response = client.post(reverse("run_cancel", args=[run.pk]))
    assert response.status_code == 403
    html = response.content.decode()
    assert "Training dashboard" in html and "Sign out" in html  # the site's own page
    assert '<p class="reason">You may not cancel this run.</p>' in html
    assert "Back to the dashboard" in html
