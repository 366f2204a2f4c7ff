"""Every page on a phone (390 × 844): nothing wider than the screen, nothing sticking out.

Each page is loaded in Chromium at a phone's size, checked for sideways scrolling of the page
(wide tables may scroll inside their own box) and saved to test-artifacts/phone-*.png.
"""

from __future__ import annotations

import pytest

from tests.fixtures.browser import save_screenshot
from tests.fixtures.history import compared_runs
from tests.phone import STICKING_OUT, assert_fits_the_phone, phone_page
from training import services
from training.models import RunState, ScenarioModel

pytestmark = pytest.mark.browser

# One model per trainer family (training.params.FAMILY_OF_TYPE).
FAMILY_MODELS = {
    "flux.1-lora": "Knight portraits",
    "qwen-image-lora": "Castle style",
    "sd-1_5-lora": "Old inks",
    "sd-xl-lora": "Legacy armour",
    "elevenlabs-voice": "Narrator voice",
}


def test_the_login_page_fits_a_phone(chromium, live_server, client):
    page = phone_page(chromium, live_server, client)
    page.goto("/login/")
    assert_fits_the_phone(page, "login")


def test_the_dashboard_and_its_menu_fit_a_phone(
    chromium,
    live_server,
    client,
    alice,
    a_quarter_of_runs,
):
    page = phone_page(chromium, live_server, client, alice)
    page.goto("/")
    assert page.locator(".run-card").count() > 0
    assert page.locator("table.recent tbody tr").count() > 0
    # The navigation is folded behind a menu button that works without JavaScript.
    assert not page.get_by_role("link", name="Train a model").is_visible()
    assert_fits_the_phone(page, "dashboard")
    page.get_by_text("Menu", exact=True).click()
    assert page.get_by_role("link", name="Train a model").is_visible()
    assert page.get_by_role("button", name="Sign out").is_visible()
    save_screenshot(page, "phone-dashboard-menu", full_page=False)
    assert page.evaluate(STICKING_OUT) == []


def test_a_run_page_while_training_and_once_finished_fit_a_phone(
    chromium,
    live_server,
    client,
    alice,
    dave,
    a_quarter_of_runs,
):
    training = next(r for r in a_quarter_of_runs if r.state == RunState.RUNNING)
    training.parameters["samplePrompts"] = [
        "a knight in silver armour on a misty hill at dawn, portrait, watercolour",
        "the same knight on a horse",
    ]
    training.save()
    finished = compared_runs(live_server.url, alice, dave)[0]
    page = phone_page(chromium, live_server, client, training.created_by)
    page.goto(f"/runs/{training.pk}/")
    assert_fits_the_phone(page, "run-training")
    page = phone_page(chromium, live_server, client, alice)
    page.goto(f"/runs/{finished.pk}/")
    assert page.locator("#run-samples img").count() > 0
    assert_fits_the_phone(page, "run-finished")


def test_the_history_and_compare_pages_fit_a_phone(
    chromium,
    live_server,
    client,
    alice,
    dave,
    a_quarter_of_runs,
):
    runs = compared_runs(live_server.url, alice, dave)
    page = phone_page(chromium, live_server, client, alice)
    page.goto("/history/")
    assert page.locator("svg.chart").count() > 0
    assert_fits_the_phone(page, "history")
    page.locator(".charts").scroll_into_view_if_needed()
    save_screenshot(page, "phone-history-charts", full_page=False)
    page.goto("/compare/?" + "&".join(f"runs={run.pk}" for run in runs))
    assert page.locator(".compare-table .run-head").count() == 3
    assert_fits_the_phone(page, "compare")


@pytest.fixture
def a_model_of_each_family(scenario):
    for model_type, name in FAMILY_MODELS.items():
        scenario.create_model(name, model_type, images=12)
    services.sync_models(scenario.client())
    return {m.type: m for m in ScenarioModel.objects.all()}


@pytest.mark.parametrize("model_type", FAMILY_MODELS)
def test_the_launch_form_of_each_trainer_family_fits_a_phone(
    chromium, live_server, client, alice, a_model_of_each_family, model_type
):
    page = phone_page(chromium, live_server, client, alice)
    page.goto("/launch/")
    assert_fits_the_phone(page, "launch-pick")
    page.goto(f"/launch/?model={a_model_of_each_family[model_type].remote_id}")
    assert page.locator("form.launch-form").count() == 1
    page.get_by_role("button", name="Estimate cost").click()
    page.locator(".quote-cost").wait_for()
    assert_fits_the_phone(page, f"launch-{model_type}")
