"""The run page's new notices in a real browser, on a phone's width: a stalled run a lead
settles, and what Scenario says it trained with beside what was sent."""

from __future__ import annotations

import json
import time

import pytest

from simulator import faults
from tests.factories import mirror
from tests.fixtures.browser import save_screenshot
from training import services
from training.models import RunState

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("broker")]


def test_a_lead_settles_a_stalled_run_from_its_page_on_a_phone(
    scenario, settings, logged_in_page, bob
):
    from playwright.sync_api import expect

    settings.STALL_AFTER_SECONDS = 600
    scenario.set_speed(0.5)
    model = mirror(scenario.create_model("Knight", images=2))
    run = services.launch_run(user=bob, model=model, parameters={"nbEpochs": 2, "rank": 16})
    services.submit_run(run.pk)
    body = dict(scenario.client().get_model(model.remote_id).raw)
    an_hour_ago = int((time.time() - 3600) * 1000)
    body.update(status="copying", trainingProgress={"stage": "waiting-for-gpu",
                                                    "updatedAt": an_hour_ago})  # fmt: skip
    faults.inject(200, method="GET", path_contains=f"/models/{model.remote_id}",
                  body=json.dumps({"model": body}), content_type="application/json")  # fmt: skip
    services.poll_run(run.pk)

    page = logged_in_page(bob)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"/runs/{run.pk}/")
    expect(page.locator("#run-state")).to_contain_text("Stalled")
    expect(page.locator(".unknown-state")).to_contain_text("being copied, waiting for gpu")
    expect(page.locator("td.remote").first).to_be_visible()
    save_screenshot(page, "spec-stalled-run-phone")

    page.get_by_role("button", name="Settle it as failed").click()
    expect(page.locator(".run-error")).to_contain_text("Settled by")
    run.refresh_from_db()
    assert run.state == RunState.FAILED
    save_screenshot(page, "spec-settled-run-phone")
