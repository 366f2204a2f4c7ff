"""A launch of a model Scenario is training already, seen by Bob in a real browser.

The worker and the simulator do the work; the pages are watched without reloading until the
toast, then opened as Bob would.
"""

from __future__ import annotations

import pytest

from tests.factories import mirror
from tests.fixtures.browser import save_screenshot
from tests.fixtures.workers import reload
from training import services
from training.models import RunState

S = RunState
REFUSED = "Not started: Model is already training"

pytestmark = [pytest.mark.browser, pytest.mark.worker]


def test_bob_is_told_his_launch_did_not_start_and_sees_it_cost_nothing(
    scenario, celery_worker_thread, fast_lifecycle, drive, logged_in_page, alice, bob, settings
):
    from playwright.sync_api import expect

    settings.DASHBOARD_REFRESH_SECONDS = 1
    creatures = mirror(scenario.create_model("Creature concepts", images=1))
    # Someone trains it outside the dashboard; that training waits in Scenario's queue. (One
    # of the team's own runs would make Bob's launch wait in the team queue instead.)
    scenario.set_speed(2)
    scenario.client().trigger(creatures.remote_id, {})

    page = logged_in_page(bob)
    page.goto("/history/")  # any page but the dashboard watches for finished runs
    bobs = services.launch_run(user=bob, model=creatures, parameters={}, quote_cost=110)
    drive(lambda: reload(bobs).is_final, describe=lambda: reload(bobs).state)
    assert reload(bobs).state == S.NOT_STARTED

    expect(page.locator("#toasts")).to_contain_text(f"Creature concepts — {REFUSED}")

    page.goto(f"/runs/{bobs.pk}/")
    expect(page.locator("#run-state")).to_have_text("Not started")
    expect(page.locator(".run-not-started")).to_contain_text(REFUSED)
    expect(page.locator(".timeline .step-done")).to_have_count(0)
    expect(page.locator(".timeline .step-refused .step-label")).to_have_text("Not started")
    expect(page.locator(".outcome .billed")).to_have_text("None: the training never started")
    save_screenshot(page, "run-not-started")

    page.goto("/")
    row = page.locator(f"#recent-{bobs.pk}")
    expect(row.locator(".state")).to_have_text("Not started")
    expect(row).to_contain_text("Model is already training")
    save_screenshot(page, "dashboard-not-started")

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"/runs/{bobs.pk}/")
    save_screenshot(page, "run-not-started-phone")

    # Nothing left training once the test ends.
    scenario.client().cancel_training(creatures.remote_id)
