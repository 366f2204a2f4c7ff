"""The dashboard and the run page: who sees what, what the fragments say, and when they stop."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.factories import add_event, add_samples, finish, make_sent_run
from tests.helpers import HTMX
from training import services
from training.models import (
    EventSource,
    RunEvent,
    RunState,
    TrainingRun,
)

# --- Access ------------------------------------------------------------------------------


FRAGMENTS = ["run_live", "run_samples", "run_trail"]


@pytest.mark.django_db
def test_it_sends_anonymous_visitors_to_the_login_page(client, alice):
    run = make_sent_run(alice)
    for url in (reverse("home"), reverse("run_detail", args=[run.pk])):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


@pytest.mark.django_db
def test_signing_out_says_so_and_offers_to_sign_in_again(client, alice):
    client.force_login(alice)
    response = client.post(reverse("logout"))
    html = response.content.decode()
    assert response.status_code == 200
    assert "<h1>You are signed out</h1>" in html
    assert f'href="{reverse("login")}">Sign in again</a>' in html
    # The page is for someone signed out: no navigation, no name, no watcher of runs.
    assert "Sign out</button>" not in html
    assert "Alice" not in html
    assert 'id="finished-watch"' not in html
    assert client.get(reverse("home"))["Location"].startswith(reverse("login"))


@pytest.mark.django_db
def test_signing_out_is_post_only(client, alice):
    client.force_login(alice)
    assert client.get(reverse("logout")).status_code == 405
    assert client.get(reverse("home")).status_code == 200


@pytest.mark.django_db
def test_an_expired_session_inside_a_page_redirects_the_whole_page_to_login(client, alice):
    run = make_sent_run(alice)
    response = client.get(reverse("run_live", args=[run.pk]), **HTMX)
    assert response.status_code == 200
    assert response["HX-Redirect"].startswith(reverse("login"))


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["run_detail", *FRAGMENTS])
def test_it_returns_404_for_other_teams_runs(client, alice, charlie, name):
    run = make_sent_run(alice)
    client.force_login(charlie)
    assert client.get(reverse(name, args=[run.pk]), **HTMX).status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["run_cancel", "run_use_epoch"])
def test_actions_return_404_for_other_teams_runs(client, alice, charlie, name):
    run = make_sent_run(alice, RunState.SUCCEEDED)
    client.force_login(charlie)
    assert client.post(reverse(name, args=[run.pk]), {"epoch": "x"}).status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["run_detail", *FRAGMENTS])
def test_teammates_and_staff_see_a_run(client, alice, dave, bob, staff, name):
    run = make_sent_run(alice)
    for person in (alice, dave, bob, staff):
        client.force_login(person)
        assert client.get(reverse(name, args=[run.pk]), **HTMX).status_code == 200, person


@pytest.mark.django_db
def test_people_see_their_teams_runs_and_staff_see_all(
    alice, bob, charlie, staff, django_user_model
):
    from training import access

    alices, bobs, charlies = make_sent_run(alice), make_sent_run(bob), make_sent_run(charlie)
    loner = django_user_model.objects.create_user("loner")

    def seen(person):
        return set(access.visible_runs(person).values_list("pk", flat=True))

    assert seen(alice) == seen(bob) == {alices.pk, bobs.pk}
    assert seen(charlie) == {charlies.pk}
    assert seen(staff) == {alices.pk, bobs.pk, charlies.pk}
    assert seen(loner) == set()


@pytest.mark.django_db
def test_a_fragment_visited_without_htmx_sends_to_its_page(client, alice):
    run = make_sent_run(alice)
    client.force_login(alice)
    response = client.get(reverse("run_live", args=[run.pk]))
    assert response.status_code == 302
    assert response["Location"] == reverse("run_detail", args=[run.pk])


@pytest.mark.django_db
def test_the_dashboard_lists_only_my_teams_runs(client, alice, charlie):
    mine, theirs = (
        make_sent_run(alice, name="Alice's portraits"),
        make_sent_run(charlie, name="Castles"),
    )
    client.force_login(charlie)
    page = client.get(reverse("home")).content.decode()
    assert "Castles" in page
    assert "Alice&#x27;s portraits" not in page and f"run-card-{mine.pk}" not in page
    assert theirs


@pytest.mark.django_db
def test_staff_see_every_teams_runs_on_the_dashboard(client, alice, charlie, staff):
    make_sent_run(alice, name="Alice portraits")
    make_sent_run(charlie, name="Castles")
    client.force_login(staff)
    page = client.get(reverse("home")).content.decode()
    assert "Alice portraits" in page and "Castles" in page


# --- Dashboard ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_card_says_stage_queue_place_progress_and_time_left(client, alice, dave):
    run = make_sent_run(
        dave,
        RunState.QUEUED,
        name="Flux portrait v3",
        stage="queued-for-train",
        queue_position=3,
        remaining_ms=200_000,
        last_polled_at=timezone.now(),
    )
    client.force_login(alice)
    page = client.get(reverse("home")).content.decode()
    card = page[page.index(f'id="run-card-{run.pk}"') :]
    assert "Flux portrait v3" in card
    assert "Waiting in the queue" in card
    assert "3 runs ahead" in card
    assert "Dave" in card
    assert "data-remaining-ms=" in card and " min " in card


@pytest.mark.django_db
def test_a_card_shows_progress_and_the_newest_epoch_thumbnail(client, alice):
    run = make_sent_run(alice, stage="running-train", progress=0.42)
    add_samples(run, epochs=3, prompts=2)
    client.force_login(alice)
    page = client.get(reverse("home")).content.decode()
    assert "Training" in page and "42%" in page and 'max="100" value="42"' in page
    assert f"https://cdn.example.com/{run.pk}/2/0.png" in page
    assert "Epoch 3" in page


@pytest.mark.django_db
def test_the_empty_dashboard_points_to_the_form(client, alice):
    client.force_login(alice)
    page = client.get(reverse("home")).content.decode()
    assert "No trainings running right now" in page
    try:
        launch = reverse("launch")
    except Exception:
        pytest.skip("the launch form is not in this build")
    assert f'href="{launch}"' in page


@pytest.mark.django_db
def test_recently_finished_shows_the_last_ten(client, alice):
    runs = [make_sent_run(alice, RunState.SUCCEEDED, name=f"Old run {i}") for i in range(12)]
    for offset, run in enumerate(runs):
        TrainingRun.objects.filter(pk=run.pk).update(
            finished_at=timezone.now() - timedelta(minutes=60 - offset)
        )
    client.force_login(alice)
    page = client.get(reverse("home")).content.decode()
    assert len(re.findall(r'id="recent-\d+"', page)) == 10
    assert f'id="recent-{runs[-1].pk}"' in page
    assert f'id="recent-{runs[0].pk}"' not in page


@pytest.mark.django_db
def test_the_board_answers_no_content_when_nothing_changed(client, alice):
    make_sent_run(alice)
    client.force_login(alice)
    first = client.get(reverse("home_board"), **HTMX)
    assert first.status_code == 200
    token = first.content.decode().split("token=")[1].split("&")[0]
    again = client.get(reverse("home_board"), {"token": token}, **HTMX)
    assert again.status_code == 204
    assert again["HX-Reswap"] == "none"


@pytest.mark.django_db(transaction=True)  # the poll's write commits, and bumps after that
def test_the_board_rerenders_when_a_run_changes(client, alice):
    run = make_sent_run(alice, progress=0.1)
    client.force_login(alice)
    token = client.get(reverse("home_board"), **HTMX).content.decode()
    token = token.split("token=")[1].split("&")[0]
    services._write_snapshot(run, {"progress": 0.6})
    response = client.get(reverse("home_board"), {"token": token}, **HTMX)
    assert response.status_code == 200
    assert "60%" in response.content.decode()


@pytest.mark.django_db
def test_a_finished_run_leaves_the_active_list_with_a_toast(client, alice):
    run = make_sent_run(alice, name="Flux portrait v3", parameters={"nbEpochs": 4})
    client.force_login(alice)
    finish(run)
    add_samples(run, epochs=4, prompts=1)
    response = client.get(reverse("home_board"), {"ids": str(run.pk), "token": "old"}, **HTMX)
    html = response.content.decode()
    assert f"run-card-{run.pk}" not in html
    assert f"recent-{run.pk}" in html
    assert "Flux portrait v3 finished, 4 epochs" in response["HX-Trigger"]
    assert "run-finished" in response["HX-Trigger"]


@pytest.mark.django_db
def test_the_board_keeps_polling_and_each_link_has_an_href(client, alice):
    make_sent_run(alice)
    client.force_login(alice)
    html = client.get(reverse("home_board"), **HTMX).content.decode()
    assert 'hx-trigger="every 3000ms"' in html
    assert "<a hx-get" not in html


# --- The "finished since" watcher ---------------------------------------------------------


@pytest.mark.django_db
def test_the_watcher_toasts_runs_that_finished_since_the_page_opened(client, alice, charlie):
    run = make_sent_run(alice, name="Flux portrait v3")
    other = make_sent_run(charlie, name="Castles")
    client.force_login(alice)
    page = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    since = page.split("live/finished/?since=")[1].split('"')[0]
    assert client.get(reverse("runs_finished"), {"since": since}, **HTMX).status_code == 204
    finish(run, parameters={"nbEpochs": 4})
    finish(other)
    response = client.get(reverse("runs_finished"), {"since": since}, **HTMX)
    assert response.status_code == 200
    assert "Flux portrait v3 finished, 4 epochs" in response["HX-Trigger"]
    assert "Castles" not in response["HX-Trigger"]
    # The new watcher starts after that run: the same toast does not come twice.
    since = response.content.decode().split("?since=")[1].split('"')[0]
    assert client.get(reverse("runs_finished"), {"since": since}, **HTMX).status_code == 204


@pytest.mark.django_db
def test_the_watcher_says_failed_and_canceled_in_words(client, alice):
    failed, canceled = make_sent_run(alice, name="Broken"), make_sent_run(alice, name="Stopped")
    client.force_login(alice)
    since = "1"
    finish(failed, RunState.FAILED)
    finish(canceled, RunState.CANCELED)
    trigger = client.get(reverse("runs_finished"), {"since": since}, **HTMX)["HX-Trigger"]
    assert "Broken failed" in trigger and "Stopped was canceled" in trigger


@pytest.mark.django_db
def test_the_watcher_says_a_launch_did_not_start_and_why(client, alice):
    refused = make_sent_run(alice, name="Creature concepts")
    client.force_login(alice)
    finish(refused, RunState.NOT_STARTED, error_message="Model is already training")
    response = client.get(reverse("runs_finished"), {"since": "1"}, **HTMX)
    messages = json.loads(response["HX-Trigger"])["run-finished"]["messages"]
    assert messages == ["Creature concepts — Not started: Model is already training"]


@pytest.mark.django_db
def test_recently_finished_says_a_launch_did_not_start_and_why(client, alice):
    refused = make_sent_run(
        alice, name="Creature concepts", quote_cu_cost=80, submitted_at=timezone.now()
    )
    finish(refused, RunState.NOT_STARTED, error_message="Model is already training")
    client.force_login(alice)
    page = client.get(reverse("home")).content.decode()
    assert f"run-card-{refused.pk}" not in page  # not active
    row = page[page.index(f'id="recent-{refused.pk}"') :].split("</tr>")[0]
    assert '<span class="state state-not_started">Not started</span>' in row
    assert "Model is already training" in row
    assert row.rstrip().endswith('<td class="num" data-label="Cost">—</td>')  # no cost


@pytest.mark.django_db
def test_the_dashboard_has_no_second_watcher_but_other_pages_do(client, alice):
    run = make_sent_run(alice)
    client.force_login(alice)
    assert "finished-watch" not in client.get(reverse("home")).content.decode()
    assert "finished-watch" in client.get(reverse("run_detail", args=[run.pk])).content.decode()


# --- Run page ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_run_page_header_names_model_type_author_and_state(client, alice, bob):
    run = make_sent_run(alice, name="Flux portrait v3", stage="running-train", progress=0.5)
    client.force_login(bob)
    page = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert "Flux portrait v3" in page
    assert "flux.1-lora" in page
    assert 'Launched by <strong class="author">Alice</strong>' in page
    assert 'id="run-state"' in page and "Training" in page


@pytest.mark.django_db
def test_the_timeline_has_the_times_of_each_stage_seen(client, alice):
    run = make_sent_run(
        alice,
        RunState.SUCCEEDED,
        status_history=[
            {"date": "2025-05-01T10:00:00Z", "status": "queued"},
            {"date": "2025-05-01T10:01:00Z", "status": "warming-up"},
            {"date": "2025-05-01T10:02:00Z", "status": "in-progress"},
            {"date": "2025-05-01T10:09:00Z", "status": "success"},
        ],
        finished_at=timezone.datetime(2025, 5, 1, 10, 9, 5, tzinfo=timezone.UTC),
    )
    client.force_login(alice)
    page = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    for label, time in [("Queued", "10:00:00"), ("Starting", "10:01:00"), ("Training", "10:02:00")]:
        step = page.split(f'<span class="step-label">{label}</span>')[1][:200]
        assert time in step, label
    assert '<span class="step-label">Finished</span>' in page
    assert "Warming up" in page and "In progress" in page and "Succeeded" in page


@pytest.mark.django_db
def test_a_run_canceled_while_queued_shows_the_skipped_stages(client, alice):
    run = make_sent_run(alice, RunState.CANCELED)
    client.force_login(alice)
    page = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert page.count("step-skipped") == 2
    assert '<span class="step-label">Canceled</span>' in page


@pytest.mark.django_db
def test_the_live_panel_shows_queue_progress_and_time_left(client, alice):
    run = make_sent_run(
        alice,
        RunState.QUEUED,
        stage="queued-for-train",
        queue_position=1,
        remaining_ms=95_000,
        last_polled_at=timezone.now(),
    )
    client.force_login(alice)
    html = client.get(reverse("run_live", args=[run.pk]), **HTMX).content.decode()
    assert "1 run ahead" in html
    assert "data-remaining-ms" in html and "1 min 3" in html  # 95 s, less a few ms
    assert 'class="step step-current" data-stage="queued"' in html


@pytest.mark.django_db
def test_the_live_panel_answers_no_content_when_nothing_changed(client, alice):
    run = make_sent_run(alice)
    add_samples(run, epochs=1)
    add_event(run, RunState.RUNNING)
    client.force_login(alice)
    html = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    poll_url = html.split('hx-get="')[1].split('"')[0].replace("&amp;", "&")
    assert poll_url.startswith(reverse("run_live", args=[run.pk]))
    assert client.get(poll_url, **HTMX).status_code == 204


@pytest.mark.django_db
def test_new_samples_and_events_make_the_grid_and_trail_reload(client, alice):
    run = make_sent_run(alice)
    client.force_login(alice)
    url = reverse("run_live", args=[run.pk])
    html = client.get(url, {"samples": "0", "events": "0"}, **HTMX)
    token = html.content.decode().split("token=")[1].split("&")[0]
    add_samples(run, epochs=1)
    services._write_snapshot(run, {})  # the poll that stores samples moves updated_at
    response = client.get(url, {"token": token, "samples": "0", "events": "0"}, **HTMX)
    assert response.status_code == 200
    assert "samples-changed" in response["HX-Trigger"]
    assert "trail-changed" not in response["HX-Trigger"]


@pytest.mark.django_db
def test_final_renders_carry_no_polling_trigger(client, alice):
    run = make_sent_run(alice, RunState.SUCCEEDED)
    add_samples(run)
    add_event(run, RunState.SUCCEEDED)
    client.force_login(alice)
    page = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert "run_live" not in page and reverse("run_live", args=[run.pk]) not in page
    assert "samples-changed" not in page and "trail-changed" not in page
    for name in FRAGMENTS:
        html = client.get(reverse(name, args=[run.pk]), **HTMX).content.decode()
        assert "hx-trigger" not in html and "hx-get" not in html, name


@pytest.mark.django_db
def test_active_renders_poll_and_listen(client, alice):
    run = make_sent_run(alice)
    client.force_login(alice)
    page = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert 'hx-trigger="every 3000ms"' in page
    assert 'hx-trigger="samples-changed from:body"' in page
    assert 'hx-trigger="trail-changed from:body"' in page


@pytest.mark.django_db
def test_the_samples_grid_is_prompts_by_epochs(client, alice):
    run = make_sent_run(alice, RunState.SUCCEEDED)
    add_samples(run, epochs=3, prompts=2)
    client.force_login(alice)
    html = client.get(reverse("run_samples", args=[run.pk]), **HTMX).content.decode()
    assert html.count('<tr data-epoch="') == 3
    assert html.count("data-enlarge") == 6
    assert '<th scope="col" class="prompt" title="prompt 2">' in html
    # Click to enlarge works without JavaScript too: the image is a plain link.
    assert f'href="https://cdn.example.com/{run.pk}/2/1.png"' in html


@pytest.mark.django_db
def test_a_run_without_samples_says_when_they_come(client, alice):
    run = make_sent_run(alice)
    client.force_login(alice)
    html = client.get(reverse("run_samples", args=[run.pk]), **HTMX).content.decode()
    assert "Sample images appear here after each epoch" in html


@pytest.mark.django_db
def test_use_this_epoch_is_offered_to_the_owner_and_the_lead_only(client, alice, bob, dave):
    run = make_sent_run(alice, RunState.SUCCEEDED)
    add_samples(run)
    url = reverse("run_samples", args=[run.pk])
    for person, offered in ((alice, True), (bob, True), (dave, False)):
        client.force_login(person)
        assert ("Use this epoch" in client.get(url, **HTMX).content.decode()) is offered, person


@pytest.mark.django_db
def test_use_this_epoch_refuses_teammates_who_are_not_lead_or_owner(client, alice, dave):
    run = make_sent_run(alice, RunState.SUCCEEDED)
    add_samples(run)
    client.force_login(dave)
    url = reverse("run_use_epoch", args=[run.pk])
    assert client.post(url, {"epoch": f"epoch-{run.pk}-0"}).status_code == 403


@pytest.mark.django_db
def test_use_this_epoch_is_post_only_and_needs_a_known_epoch(client, alice):
    run = make_sent_run(alice, RunState.SUCCEEDED)
    add_samples(run)
    client.force_login(alice)
    url = reverse("run_use_epoch", args=[run.pk])
    assert client.get(url).status_code == 405
    assert client.post(url, {"epoch": "nope"}).status_code == 400


@pytest.mark.django_db
def test_the_parameters_table_lists_every_parameter(client, alice):
    run = make_sent_run(alice, parameters={"nbEpochs": 7, "samplePrompts": ["a cat", "a dog"]})
    client.force_login(alice)
    page = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert "nbEpochs" in page and "7" in page
    assert "a cat<br>a dog" in page


@pytest.mark.django_db
def test_the_cost_panel_compares_quote_and_bill_and_shows_training_stats(client, alice):
    run = make_sent_run(
        alice,
        RunState.SUCCEEDED,
        quote_cu_cost=120,
        quote_cu_discount=10,
        cu_cost=118.5,
        cu_discount=10,
        queue_duration=42,
        train_duration=385,
    )
    client.force_login(alice)
    page = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert "120 CU" in page and "118.5 CU" in page and "10 CU discount" in page
    assert "42 s" in page and "6 min 25 s" in page


@pytest.mark.django_db
def test_a_launch_that_never_started_says_why_ticks_no_stage_and_costs_nothing(client, alice):
    run = make_sent_run(
        alice, RunState.NOT_STARTED, name="Creature concepts", job_id="", quote_cu_cost=80,
        error_message="Model is already training",
    )  # fmt: skip
    client.force_login(alice)
    page = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert '<span id="run-state" class="state state-not_started big">Not started</span>' in page
    assert "<strong>Not started: Model is already training</strong>" in page
    assert "The training failed" not in page
    timeline = page[page.index('<ol class="timeline">') : page.index("</ol>")]
    assert "step-done" not in timeline and "step-current" not in timeline
    assert timeline.count("not reached") == 3
    assert '<span class="step-label">Not started</span>' in timeline
    assert 'class="billed">None: the training never started<' in page
    assert "80 CU, not spent" in page
    assert "The training never started, so there are no sample images." in page
    assert "There is no job: Scenario refused the launch." in page
    assert "hx-trigger" not in page.split('id="run-live"')[1].split(">")[0]  # final: no polling


@pytest.mark.django_db
def test_a_later_launch_that_never_started_leaves_the_epochs_to_the_run_before(client, alice):
    trained = make_sent_run(alice, RunState.SUCCEEDED)
    add_samples(trained)
    make_sent_run(alice, RunState.NOT_STARTED, model=trained.model, error_message="Model is busy")
    client.force_login(alice)
    grid = client.get(reverse("run_samples", args=[trained.pk]), **HTMX).content.decode()
    assert "Use this epoch" in grid
    assert "trained again" not in grid


@pytest.mark.django_db
def test_a_failed_run_shows_its_error(client, alice):
    run = make_sent_run(alice, RunState.FAILED, error_message="Out of memory at step 300")
    client.force_login(alice)
    page = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert "The training failed." in page and "Out of memory at step 300" in page


@pytest.mark.django_db
def test_the_audit_trail_names_who_acted(client, alice, bob):
    run = make_sent_run(alice)
    add_event(run, RunState.DRAFT, actor=alice, source=EventSource.USER)
    add_event(run, RunState.CANCEL_REQUESTED, actor=bob, source=EventSource.USER)
    client.force_login(alice)
    html = client.get(reverse("run_trail", args=[run.pk]), **HTMX).content.decode()
    assert '<span class="who">Alice</span>' in html
    assert '<span class="who">Bob</span>' in html
    assert "Cancel requested" in html


# --- Cancel ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_cancel_button_shows_for_the_author_the_lead_and_staff(client, alice, bob, dave, staff):
    run = make_sent_run(alice)
    url = reverse("run_detail", args=[run.pk])
    for person, shown in ((alice, True), (bob, True), (staff, True), (dave, False)):
        client.force_login(person)
        assert ("Cancel training" in client.get(url).content.decode()) is shown, person


@pytest.mark.django_db
def test_no_cancel_button_once_a_run_is_final_or_already_canceling(client, alice):
    client.force_login(alice)
    for state in (RunState.SUCCEEDED, RunState.CANCEL_REQUESTED, RunState.CANCELED):
        run = make_sent_run(alice, state)
        page = client.get(reverse("run_detail", args=[run.pk])).content.decode()
        assert "Cancel training" not in page, state


@pytest.mark.django_db
def test_cancel_is_post_only(client, alice):
    run = make_sent_run(alice)
    client.force_login(alice)
    assert client.get(reverse("run_cancel", args=[run.pk])).status_code == 405


@pytest.mark.django_db
def test_cancel_needs_the_csrf_token(alice):
    from django.test import Client

    run = make_sent_run(alice)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    assert browser.post(reverse("run_cancel", args=[run.pk])).status_code == 403
    run.refresh_from_db()
    assert run.state == RunState.RUNNING


@pytest.mark.django_db
def test_an_artist_cannot_cancel_a_teammates_run(client, alice, dave):
    run = make_sent_run(alice)
    client.force_login(dave)
    assert client.post(reverse("run_cancel", args=[run.pk])).status_code == 403
    run.refresh_from_db()
    assert run.state == RunState.RUNNING


@pytest.mark.django_db
def test_non_default_parameters_are_marked_and_secrets_hidden(client, alice):
    run = make_sent_run(
        alice,
        parameters={"maxTrainSteps": 1200, "rank": 32, "wandbKey": "wandb-secret-123"},
    )
    client.force_login(alice)
    page = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert re.search(r"<tr>\s*<td>Training steps", page)
    assert re.search(r'<tr class="changed">\s*<td>Rank', page)
    assert "wandb-secret-123" not in page and "(set, hidden)" in page


@pytest.mark.django_db
def test_a_lead_cancels_a_teammates_run_and_the_trail_names_them(client, alice, bob):
    bob.last_name = "Marley"
    bob.save(update_fields=["last_name"])
    run = make_sent_run(alice, RunState.RUNNING)
    client.force_login(bob)
    response = client.post(reverse("run_cancel", args=[run.pk]), **HTMX)
    assert response.status_code == 200
    assert 'id="run-state" class="state state-cancel_requested big">Cancel requested' in (
        response.content.decode()
    )
    assert "trail-changed" in response["HX-Trigger"]
    event = RunEvent.objects.get(run=run, to_state=RunState.CANCEL_REQUESTED)
    assert event.actor == bob
    # The message names him as the trail does, not by his username.
    assert event.message == "Cancel requested by Bob Marley"
    html = client.get(reverse("run_trail", args=[run.pk]), **HTMX).content.decode()
    assert '<span class="who">Bob Marley</span>' in html and "by bob" not in html


@pytest.mark.django_db
def test_an_artist_cancels_their_own_run_without_javascript(client, alice):
    run = make_sent_run(alice, RunState.QUEUED)
    client.force_login(alice)
    response = client.post(reverse("run_cancel", args=[run.pk]), follow=True)
    assert response.redirect_chain[-1][0] == reverse("run_detail", args=[run.pk])
    page = response.content.decode()
    assert "Cancel requested" in page
    run.refresh_from_db()
    assert run.state == RunState.CANCEL_REQUESTED


@pytest.mark.django_db
def test_canceling_twice_is_harmless(client, alice):
    run = make_sent_run(alice, RunState.RUNNING)
    client.force_login(alice)
    client.post(reverse("run_cancel", args=[run.pk]))
    assert client.post(reverse("run_cancel", args=[run.pk])).status_code == 302
    assert RunEvent.objects.filter(run=run, to_state=RunState.CANCEL_REQUESTED).count() == 1
