"""The team queue in a real browser: why a run waits, who is ahead, and a lead's controls."""

from __future__ import annotations

import pytest

from tests.factories import make_bare_model, make_run
from tests.fixtures.browser import save_screenshot
from training.models import RunState, Team

pytestmark = [pytest.mark.browser]


def test_a_lead_sees_why_a_run_waits_and_moves_it_to_the_top(logged_in_page, alice, bob):
    from playwright.sync_api import expect

    Team.objects.filter(pk=alice.membership.team_id).update(parallel_trainings=0)
    runs = [
        make_run(
            alice,
            make_bare_model(f"Portrait {n}", remote_id=f"m-{n}"),
            state=RunState.WAITING,
            queue_order=n,
        )
        for n in range(3)
    ]
    page = logged_in_page(bob)
    page.goto(f"/runs/{runs[2].pk}/")
    expect(page.locator(".launch-waiting")).to_contain_text("Waiting for a free slot: 2 ahead")
    expect(page.locator(".team-queue-position")).to_have_text("Waiting for a free slot: 2 ahead")
    expect(page.locator(".launch-waiting .forecast")).to_contain_text("No forecast yet")
    save_screenshot(page, "team-queue-waiting")

    page.get_by_role("button", name="Move to the top").click()
    expect(page.locator(".team-queue-position")).to_have_text("Waiting for a free slot: 0 ahead")
    page.goto(f"/runs/{runs[2].pk}/")
    expect(page.locator(".trail")).to_contain_text("Moved to the top of the team queue by")
    page.set_viewport_size({"width": 390, "height": 844})
    save_screenshot(page, "team-queue-waiting-phone")
