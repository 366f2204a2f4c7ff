"""The training form in a real browser: htmx swaps, validation on leaving a field, screenshots.

Runs Debian's Chromium through Playwright. Without Chromium the tests skip and say why, unless
REQUIRE_BROWSER_TESTS=1, when they fail instead. Screenshots land in test-artifacts/.
"""

from __future__ import annotations

import pytest
from django.conf import settings

from tests.factories import make_run
from tests.fixtures.browser import save_screenshot
from training import services
from training.models import ScenarioModel, TrainingRun

pytestmark = pytest.mark.browser


def _sign_in(page, client, user, live_server) -> None:
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    page.context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": cookie.value, "url": live_server.url}]
    )


@pytest.fixture
def synced_models(scenario):
    """Remote models of a few kinds, mirrored locally the way the refresh button does it."""
    scenario.create_model("Knight portraits", "flux.1-lora", images=12)
    scenario.create_model("Narrator voice", "elevenlabs-voice", images=6)
    scenario.create_model("Castle style", "qwen-image-lora", images=30)
    scenario.create_model("Empty sketchbook", "flux.1-krea-lora", images=0)
    services.sync_models(scenario.client())
    return {m.name: m for m in ScenarioModel.objects.all()}


def test_the_flux_lora_form_in_a_browser(browser_page, live_server, client, alice, synced_models):
    page = browser_page
    _sign_in(page, client, alice, live_server)
    page.goto(f"{live_server.url}/launch/")
    assert page.locator(".model-option.unavailable").inner_text().count("No training images") == 1

    # Picking a model swaps in its trainer's fieldset, prefilled for its 12 images.
    page.get_by_role("link", name="Knight portraits").click()
    page.wait_for_selector("#params-flux-lora")
    assert page.input_value("#id_maxTrainSteps") == "1200"
    assert "model=" in page.url

    # The advanced fields are folded away; leaving a field out of bounds shows its error.
    assert not page.is_visible("#id_rank")
    page.click("details.advanced summary")
    page.fill("#id_rank", "65")
    page.press("#id_rank", "Tab")
    page.wait_for_selector("#err-rank li")
    assert "at most 64" in page.inner_text("#err-rank")
    page.fill("#id_rank", "32")
    page.press("#id_rank", "Tab")
    page.wait_for_selector("#err-rank li", state="detached")

    # Sample prompts: add a row, pick a source image for each.
    page.fill("[aria-label='Sample prompt 1']", "a knight in the rain, portrait")
    page.click("button[value='add_prompt']")
    page.wait_for_selector("[aria-label='Sample prompt 2']")
    page.fill("[aria-label='Sample prompt 2']", "a knight on a horse at dawn")
    # A source image for one prompt only is refused; for both it is fine.
    page.select_option("[aria-label='Source image for prompt 1']", index=1)
    page.wait_for_selector("#err-sampleSourceImages li")
    page.select_option("[aria-label='Source image for prompt 2']", index=2)
    page.wait_for_selector("#err-sampleSourceImages li", state="detached")

    page.click("button[value='estimate']:not(.sr-only)")
    page.wait_for_selector(".quote-panel.ready")
    assert "CU" in page.inner_text(".quote-cost")
    save_screenshot(page, "launch-flux-lora")

    # Changing a field after the estimate makes it stale: launching needs a new one.
    page.fill("#id_nbEpochs", "7")
    page.press("#id_nbEpochs", "Tab")
    page.wait_for_selector(".quote-panel.stale")
    assert page.is_disabled("button[value='confirm']")


def test_the_voice_form_in_a_browser(browser_page, live_server, client, alice, synced_models):
    page = browser_page
    _sign_in(page, client, alice, live_server)
    voice = synced_models["Narrator voice"]
    page.goto(f"{live_server.url}/launch/?model={voice.remote_id}")
    page.wait_for_selector("#params-elevenlabs-voice")
    assert page.locator("#id_rank").count() == 0
    assert "5 seconds" in page.inner_text("#field-removeBackgroundNoise")

    page.select_option("#id_cloneType", "instant")
    page.fill("#id_language", "EN")
    page.press("#id_language", "Tab")
    page.wait_for_selector("#err-language li")
    page.fill("#id_language", "en")
    page.press("#id_language", "Tab")
    page.wait_for_selector("#err-language li", state="detached")
    page.fill("#id_voiceDescription", "Warm, calm narrator with a light northern accent")
    page.check("#id_removeBackgroundNoise")
    page.click("button[value='estimate']:not(.sr-only)")
    page.wait_for_selector(".quote-panel.ready")
    save_screenshot(page, "launch-elevenlabs-voice")


def test_a_check_answering_after_a_later_one_does_not_put_back_its_errors(
    browser_page, live_server, client, alice, synced_models
):
    page = browser_page
    _sign_in(page, client, alice, live_server)
    voice = synced_models["Narrator voice"]
    page.goto(f"{live_server.url}/launch/?model={voice.remote_id}")
    page.wait_for_selector("#params-elevenlabs-voice")
    held = []

    def hold_the_first_answer(route):
        if held:
            route.continue_()
        else:  # the server answers at once; the browser gets it only when the test says
            held.append((route, route.fetch()))

    page.route("**/launch/validate/", hold_the_first_answer)
    page.select_option("#id_cloneType", "instant")  # its check: language still empty
    page.wait_for_function("() => document.querySelector('#id_cloneType.htmx-request')")
    page.fill("#id_language", "EN")
    page.press("#id_language", "Tab")
    page.wait_for_selector("#err-language li")
    assert len(held) == 1
    route, answer = held[0]
    route.fulfill(response=answer)  # the older check, with the form as it was before
    page.wait_for_function("() => !document.querySelector('#launch-form .htmx-request')")
    assert page.locator("#err-language li").count() == 1, "the older check undid the error"
    page.unroute("**/launch/validate/")


def test_launching_from_the_browser_lands_on_the_run_page(
    browser_page, live_server, client, alice, synced_models
):
    page = browser_page
    _sign_in(page, client, alice, live_server)
    knight = synced_models["Knight portraits"]
    page.goto(f"{live_server.url}/launch/?model={knight.remote_id}")
    page.click("button[value='estimate']:not(.sr-only)")
    page.wait_for_selector(".quote-panel.ready")
    cost = page.inner_text(".quote-cost")

    # The launch button asks for a confirmation in the page, showing the quote again.
    page.click("button[value='confirm']")
    page.wait_for_selector(".launch-confirm")
    assert page.inner_text(".launch-confirm .quote-cost") == cost
    quoted = float(page.get_attribute(".launch-confirm .quote-cost", "data-quote-cost"))
    assert not TrainingRun.objects.exists()
    save_screenshot(page, "launch-confirmation")
    page.click(".launch-confirm button[value='launch']")
    page.wait_for_url("**/runs/*/")
    run = TrainingRun.objects.get()
    assert page.url.endswith(f"/runs/{run.pk}/")
    assert run.quote_cu_cost == quoted


def test_over_budget_the_artist_cannot_launch_and_the_lead_overrides(
    browser_page, live_server, client, alice, bob, synced_models
):
    from django.utils import timezone

    from tests.factories import make_past_run

    team = alice.membership.team
    team.monthly_cu_budget = 2000
    team.save()
    castle = synced_models["Castle style"]
    make_past_run(alice, launched=timezone.now(), cost=1990, model=castle, model_type=castle.type)
    knight = synced_models["Knight portraits"]
    page = browser_page

    # Alice sees the bar and, once estimated, why she cannot launch.
    _sign_in(page, client, alice, live_server)
    page.goto(f"{live_server.url}/launch/?model={knight.remote_id}")
    assert "1,990 / 2,000 CU" in page.inner_text(".quote-budget")
    page.click("button[value='estimate']:not(.sr-only)")
    page.wait_for_selector("#over-budget")
    assert "over its 2,000 CU monthly budget" in page.inner_text("#over-budget")
    assert page.is_disabled("button[value='confirm']")
    save_screenshot(page, "launch-over-budget-artist")

    # Bob, the lead, must tick the override box; without it the launch is refused in words.
    _sign_in(page, client, bob, live_server)
    page.goto(f"{live_server.url}/launch/?model={knight.remote_id}")
    page.click("button[value='estimate']:not(.sr-only)")
    page.wait_for_selector("#over-budget")
    assert not page.is_disabled("button[value='confirm']")
    # Without the tick the form points to the box, before any confirmation.
    page.click("button[value='confirm']")
    page.wait_for_selector(".override-needed")
    assert "A team lead can override" not in page.inner_text("#launch-form")
    assert page.locator(".launch-confirm").count() == 0
    assert not TrainingRun.objects.filter(model=knight).exists()
    page.check("input[name='override_budget']")
    save_screenshot(page, "launch-over-budget-lead")
    page.click("button[value='confirm']")
    page.wait_for_selector(".launch-confirm")
    assert "over its 2,000 CU monthly budget" in page.inner_text(".launch-confirm #over-budget")
    page.click(".launch-confirm button[value='launch']")
    page.wait_for_url("**/runs/*/")
    run = TrainingRun.objects.get(model=knight)
    assert run.budget_override and run.created_by == bob
    assert "Budget override by Bob" in run.events.get().message


@pytest.fixture
def page_without_javascript(chromium, live_server):
    """A page in a browser context with JavaScript turned off."""
    context = chromium.new_context(
        base_url=live_server.url, java_script_enabled=False, viewport={"width": 1280, "height": 900}
    )
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


def test_without_javascript_a_launch_goes_through_a_confirmation_page(
    page_without_javascript, live_server, client, alice, synced_models
):
    page = page_without_javascript
    _sign_in(page, client, alice, live_server)
    knight = synced_models["Knight portraits"]
    page.goto(f"{live_server.url}/launch/?model={knight.remote_id}")
    page.fill("#id_nbEpochs", "6")
    page.click("button[value='estimate']:not(.sr-only)")
    page.wait_for_selector(".quote-panel.ready")
    cost = page.inner_text(".quote-cost")

    # The form's launch button loads a confirmation page: the quote again, nothing launched.
    page.click("button[value='confirm']")
    page.wait_for_selector(".launch-confirm")
    assert "Confirm the launch" in page.inner_text(".launch-confirm h2")
    assert page.inner_text(".launch-confirm .quote-cost") == cost
    assert "Epochs" in page.inner_text(".confirm-sent")
    assert not TrainingRun.objects.exists()
    save_screenshot(page, "launch-confirmation-without-javascript")

    page.click(".launch-confirm button[value='launch']")
    page.wait_for_url("**/runs/*/")
    run = TrainingRun.objects.get()
    assert page.url.endswith(f"/runs/{run.pk}/")
    assert run.parameters["nbEpochs"] == 6 and f"{run.quote_cu_cost:,.0f} CU" == cost


def test_the_form_keeps_a_typed_key_out_of_the_page_and_says_who_is_training(
    browser_page, live_server, client, alice, bob, synced_models
):
    knight = synced_models["Knight portraits"]
    run = make_run(bob, knight, "queued")
    key = "wandb-browser-0123456789abcdef01234567"
    page = browser_page
    _sign_in(page, client, alice, live_server)
    page.goto(f"{live_server.url}/launch/?model={knight.remote_id}")
    notice = page.inner_text("#training-now")
    assert "This model is training now" in notice and "Bob" in notice
    assert page.get_attribute("#training-now a", "href") == f"/runs/{run.pk}/"

    page.click("details.advanced summary")
    page.fill("#id_wandbKey", key)
    page.click("button[value='estimate']:not(.sr-only)")
    page.wait_for_selector(".quote-panel.ready")
    assert page.input_value("#id_wandbKey") == ""
    assert "A key is set" in page.text_content("#field-wandbKey")
    assert key not in page.content()
    page.click("details.advanced summary")
    save_screenshot(page, "launch-key-set-and-model-training")
