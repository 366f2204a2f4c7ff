"""Live pages in a real browser: without JavaScript, with notifications, with a clean console.

The runs are written straight to the database, as the worker would leave them: the pages read
nothing else, so a test moves a run along by updating its row.
"""

from __future__ import annotations

import re
import time

import pytest
from django.conf import settings
from django.utils import timezone

from tests.factories import finish, make_sent_run
from tests.fixtures.browser import DEFAULT_TIMEOUT_MS, save_screenshot
from training import services, stamps
from training.models import RunState, ScenarioModel, TrainingRun

pytestmark = pytest.mark.browser

# Notifications, recorded: headless Chromium may not display them. Every constructor call is
# kept with its options, and every permission request is counted.
RECORD_NOTIFICATIONS = """
(() => {
  const Real = window.Notification;
  if (!Real) return;
  window.__notifications = [];
  window.__permissionRequests = 0;
  class Recorded extends Real {
    constructor(title, options) {
      super(title, options);
      window.__notifications.push({ title, body: (options || {}).body, note: this });
    }
  }
  Object.defineProperty(Recorded, "permission", { get: () => Real.permission });
  Recorded.requestPermission = (...args) => {
    window.__permissionRequests += 1;
    return Real.requestPermission(...args);
  };
  window.Notification = Recorded;
})();
"""


@pytest.fixture
def open_context(request, chromium, live_server, client):
    """Open a browser context with options of its own, signed in as `user`."""
    from playwright.sync_api import expect

    expect.set_options(timeout=DEFAULT_TIMEOUT_MS)
    contexts = []

    def open_(user, **options):
        context = chromium.new_context(
            base_url=live_server.url, viewport={"width": 1280, "height": 900}, **options
        )
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        client.force_login(user)
        cookie = client.cookies[settings.SESSION_COOKIE_NAME]
        context.add_cookies(
            [{"name": settings.SESSION_COOKIE_NAME, "value": cookie.value, "url": live_server.url}]
        )
        contexts.append(context)
        return context

    yield open_
    report = getattr(request.node, "report_call", None)
    for index, context in enumerate(contexts):
        if report is not None and report.failed:
            for number, page in enumerate(context.pages):
                try:
                    save_screenshot(page, f"failed-{request.node.name}-{index}-{number}")
                except Exception:  # noqa: BLE001 - a page that crashed has nothing to show
                    pass
        context.close()


def move(run, **fields) -> None:
    """Write what a poll would have written: new values, a new updated_at, the team's stamp."""
    TrainingRun.objects.filter(pk=run.pk).update(updated_at=timezone.now(), **fields)
    stamps.write([run.team_id])


# --- Without JavaScript -----------------------------------------------------------------------


def test_without_javascript_an_active_run_page_reloads_itself_and_a_finished_one_does_not(
    transactional_db, open_context, alice, settings
):
    from playwright.sync_api import expect

    settings.DASHBOARD_REFRESH_SECONDS = 1
    active = make_sent_run(alice, RunState.RUNNING, name="Running knight", progress=0.2)
    done = make_sent_run(alice, RunState.SUCCEEDED, name="Finished knight", progress=1.0)
    page = open_context(alice, java_script_enabled=False).new_page()

    page.goto(f"/runs/{active.pk}/")
    expect(page.locator("#run-live .progress-value")).to_have_text("20%")
    assert page.locator("noscript meta[http-equiv='refresh']").count() == 1
    loads = []
    page.on("load", lambda: loads.append(time.monotonic()))
    move(active, progress=0.6)
    # No script runs in this page: only a reload of the whole page can show the new value.
    expect(page.locator("#run-live .progress-value")).to_have_text("60%")
    assert loads, "the page never reloaded"

    page.goto(f"/runs/{done.pk}/")
    expect(page.locator("#run-state")).to_have_text("Finished")
    assert page.locator("meta[http-equiv='refresh']").count() == 0
    loads.clear()
    page.wait_for_timeout(2500)
    assert loads == [], "a finished run's page reloaded"


def test_without_javascript_the_dashboard_reloads_only_while_runs_are_active(
    transactional_db, open_context, alice, settings
):
    from playwright.sync_api import expect

    settings.DASHBOARD_REFRESH_SECONDS = 1
    run = make_sent_run(alice, RunState.QUEUED, name="Queued knight", queue_position=2)
    page = open_context(alice, java_script_enabled=False).new_page()
    page.goto("/")
    expect(page.locator(f"#run-card-{run.pk} .queue-position")).to_have_text("2 runs ahead")
    move(run, queue_position=0)
    expect(page.locator(f"#run-card-{run.pk} .queue-position")).to_have_text("Next in line")

    finish(run)
    expect(page.locator(f"#recent-{run.pk}")).to_contain_text("Finished")
    assert page.locator("meta[http-equiv='refresh']").count() == 0


# --- Notifications ----------------------------------------------------------------------------


def test_one_notification_per_finished_run_across_two_tabs_and_its_click_opens_the_run(
    transactional_db, open_context, alice, bob, settings
):
    from playwright.sync_api import expect

    settings.DASHBOARD_REFRESH_SECONDS = 1
    mine = make_sent_run(alice, RunState.RUNNING, name="Alice's knight", train_duration=200)
    teammates = make_sent_run(bob, RunState.RUNNING, name="Bob's castle")
    context = open_context(alice)
    context.grant_permissions(["notifications"])
    context.add_init_script(RECORD_NOTIFICATIONS)
    dashboard = context.new_page()
    dashboard.goto("/")
    run_page = context.new_page()
    run_page.goto(f"/runs/{teammates.pk}/")

    # Nothing is asked on load; the control asks on a click, then says it is on in both tabs.
    toggle = dashboard.get_by_role("button", name="Notify me when my runs end")
    expect(toggle).to_be_visible()
    assert dashboard.evaluate("window.__permissionRequests") == 0
    assert run_page.evaluate("window.__permissionRequests") == 0
    toggle.click()
    expect(dashboard.locator("#notify-toggle")).to_have_attribute("aria-pressed", "true")
    assert dashboard.evaluate("window.__permissionRequests") == 1

    # Both runs end: both tabs toast both, but only Alice's own run notifies, and once.
    finish(mine)
    finish(teammates, state=RunState.FAILED)
    for page in (dashboard, run_page):
        expect(page.locator("#toasts")).to_contain_text("Alice's knight finished")
        expect(page.locator("#toasts")).to_contain_text("Bob's castle failed")
    dashboard.wait_for_timeout(1500)  # a second, late notification would have come by now
    shown = [
        note
        for page in (dashboard, run_page)
        for note in page.evaluate(
            "window.__notifications.map(({ title, body }) => ({ title, body }))"
        )
    ]
    assert shown == [
        {"title": "Alice's knight: Finished", "body": "Took 3 min 20 s. Click to open the run."}
    ]

    # A click on it opens the run, in the tab that showed it.
    tab = next(p for p in (dashboard, run_page) if p.evaluate("window.__notifications.length"))
    tab.evaluate("window.__notifications[0].note.dispatchEvent(new Event('click'))")
    expect(tab).to_have_url(re.compile(rf"/runs/{mine.pk}/$"))
    expect(tab.locator("h1")).to_have_text("Alice's knight")


# --- A clean console --------------------------------------------------------------------------


def _knight_launch_form(scenario) -> str:
    """Return the launch form's URL for a Flux LoRA model with 12 images, synced."""
    scenario.create_model("Knight portraits", "flux.1-lora", images=12)
    services.sync_models(scenario.client())
    return f"/launch/?model={ScenarioModel.objects.get(name='Knight portraits').remote_id}"


def test_typing_in_a_field_then_clicking_estimate_leaves_a_clean_console(
    scenario, open_context, alice
):
    from playwright.sync_api import expect

    page = open_context(alice).new_page()
    errors = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    favicon_misses = []
    page.on(
        "response",
        lambda response: response.status == 404 and favicon_misses.append(response.url),
    )

    def estimate():
        # The form before this estimate already shows a ready quote, and typing into a form
        # while it is being replaced goes astray: wait for the form this estimate brings.
        page.evaluate("document.getElementById('launch-form').dataset.replaced = 'soon'")
        page.click("button[value='estimate']:not(.sr-only)")
        expect(page.locator("#launch-form:not([data-replaced]) .quote-panel.ready")).to_be_visible()

    page.goto(_knight_launch_form(scenario))
    for _ in range(3):
        # Leaving the field for the button sends its check; the estimate follows at once.
        page.fill("#id_nbEpochs", "5")
        page.fill("#id_maxTrainSteps", "600")
        estimate()
    page.fill("#id_nbEpochs", "6")
    estimate()
    page.wait_for_timeout(500)
    assert errors == []
    assert favicon_misses == []


def test_a_check_held_back_while_a_button_is_pressed_is_shown_when_no_click_follows(
    scenario, open_context, alice
):
    from playwright.sync_api import expect

    page = open_context(alice).new_page()
    page.goto(_knight_launch_form(scenario))
    page.fill("#id_maxTrainSteps", "20000")
    estimate = page.locator("button[value='estimate']:not(.sr-only)")
    estimate.scroll_into_view_if_needed()
    box = estimate.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    # Pressing the button leaves the field: its check answers while the button is held.
    with page.expect_response(lambda r: "/launch/validate/" in r.url):
        page.mouse.down()
    page.wait_for_timeout(200)
    expect(page.locator("#err-maxTrainSteps")).to_have_text("")
    # Released elsewhere: no click, so the check is sent again and its error shown.
    page.mouse.move(1, 1)
    page.mouse.up()
    expect(page.locator("#err-maxTrainSteps")).to_have_text("Must be at most 10000.")
    expect(page.locator(".quote-panel.ready")).to_have_count(0)


# --- Screenshots -------------------------------------------------------------------------------


def test_it_saves_screenshots_of_an_older_runs_samples_and_the_403_page(
    transactional_db, open_context, alice, dave
):
    from playwright.sync_api import expect

    from tests.factories import add_samples

    earlier = make_sent_run(alice, RunState.SUCCEEDED, name="Knight portraits")
    add_samples(earlier, epochs=2, prompts=2)
    later = make_sent_run(alice, RunState.SUCCEEDED, model=earlier.model)
    page = open_context(alice).new_page()
    page.goto(f"/runs/{earlier.pk}/")
    notice = page.locator("#run-samples .superseded")
    expect(notice).to_contain_text("These epochs can no longer be picked")
    save_screenshot(page, "run-older-superseded")
    notice.get_by_role("link", name=f"run #{later.pk}").click()
    expect(page).to_have_url(re.compile(rf"/runs/{later.pk}/$"))

    # A form posted where Alice may not act (cancel Dave's run) answers with the site's 403.
    theirs = make_sent_run(dave, RunState.RUNNING, name="Dave's castle")
    page.goto(f"/runs/{theirs.pk}/")
    page.evaluate(
        """(url) => {
          const form = document.createElement("form");
          form.method = "post";
          form.action = url;
          const token = document.createElement("input");
          token.name = "csrfmiddlewaretoken";
          token.value = document.cookie.match(/csrftoken=([^;]+)/)[1];
          form.append(token);
          document.body.append(form);
          form.submit();
        }""",
        f"/runs/{theirs.pk}/cancel/",
    )
    expect(page.get_by_role("heading", name="You may not do that")).to_be_visible()
    expect(page.locator(".reason")).to_have_text("You may not cancel this run.")
    save_screenshot(page, "forbidden")
