"""The pages people watch, in a real browser, with a real worker and the simulator.

Alice launches through the training form; the other runs are launched with
training.services.launch_run. Everything after that is the worker and the simulator at test
speed, watched through the pages without reloading.
"""

from __future__ import annotations

import re
import threading
import time

import pytest

from tests.factories import make_sent_run
from tests.fixtures.browser import save_screenshot, wait_for_js
from training import services
from training.models import RunEvent, RunState, ScenarioModel, TrainingRun

pytestmark = [pytest.mark.browser, pytest.mark.worker]

PROMPTS = ["a knight in silver armour, portrait", "a knight on a horse, watercolour"]


# --- A worker and beat, in this process -----------------------------------------------------


@pytest.fixture
def worker(scenario, celery_worker_thread, fast_lifecycle):
    """The shared worker thread, with a beat stand-in publishing the sweep every 0.2 s."""
    from training import tasks

    stop = threading.Event()

    def beat():
        while not stop.wait(0.2):
            tasks.sweep.delay()

    ticker = threading.Thread(target=beat, daemon=True)
    ticker.start()
    yield celery_worker_thread
    stop.set()
    ticker.join(timeout=5)


# --- Helpers ---------------------------------------------------------------------------------


def wait_for(condition, *, timeout=30.0, what="the condition"):
    """Wait until condition() is true (checked against the database, not the clock)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out waiting for {what}")
        time.sleep(0.1)


def remote_model(scenario, name: str) -> ScenarioModel:
    """A model on the simulator, mirrored into the dashboard as the model sync would."""
    sim = scenario.create_model(name, "flux.1-lora", images=4)
    services.sync_models(scenario.client())
    return ScenarioModel.objects.get(remote_id=sim.id)


def launch(scenario, user, name: str, *, speed: float, steps=60, epochs=2, prompts=PROMPTS):
    """Launch a training as `user`; `speed` is simulated seconds per real second for it."""
    scenario.set_speed(speed)
    parameters = {"nbEpochs": epochs, "maxTrainSteps": steps, "samplePrompts": list(prompts)}
    run = services.launch_run(user=user, model=remote_model(scenario, name), parameters=parameters)
    # Scenario queues in request order: wait until this one has reached it.
    wait_for(lambda: TrainingRun.objects.get(pk=run.pk).job_id, what=f"{name} to be submitted")
    return run


def number(text: str) -> int:
    match = re.search(r"\d+", text or "")
    return int(match.group()) if match else -1


def seconds_left(page) -> float:
    return float(page.locator("#run-live .remaining").get_attribute("data-remaining-ms") or -1)


# --- 1. Alice watches her training ------------------------------------------------------------


def test_alice_launches_and_watches_her_run_move_up_the_queue_train_and_finish(
    scenario, worker, logged_in_page, alice, bob, settings
):
    from playwright.sync_api import expect

    settings.DASHBOARD_REFRESH_SECONDS = 1
    scenario.set_gpu_slots(1)
    model = remote_model(scenario, "Flux portrait v3")

    # Alice fills in the form and gets her quote.
    page = logged_in_page(alice)
    page.goto(f"/launch/?model={model.remote_id}")
    page.fill("#id_maxTrainSteps", "60")
    page.fill("#id_nbEpochs", "2")
    page.fill("[aria-label='Sample prompt 1']", PROMPTS[0])
    page.click("button[value='add_prompt']")
    page.fill("[aria-label='Sample prompt 2']", PROMPTS[1])
    page.click("button[value='estimate']:not(.sr-only)")
    expect(page.locator(".quote-panel.ready")).to_be_visible()

    # Meanwhile Bob launches two: one takes the only GPU slot, the other waits for it.
    launch(scenario, bob, "Bob's castle", speed=24)
    launch(scenario, bob, "Bob's dragon", speed=24)

    # Alice launches, confirms on the page, and lands on her run's page.
    scenario.set_speed(14)
    page.click("button[value='confirm']")
    page.click(".launch-confirm button[value='launch']")
    expect(page.locator("h1")).to_have_text("Flux portrait v3")
    run = TrainingRun.objects.get(created_by=alice)
    assert run.parameters["samplePrompts"] == PROMPTS

    # Her dashboard, in another tab, lists it with Bob's.
    dashboard = page.context.new_page()
    dashboard.goto("/")
    expect(dashboard.locator(f"#run-card-{run.pk}")).to_contain_text("Flux portrait v3")
    expect(dashboard.locator(".run-card")).to_have_count(3)
    save_screenshot(dashboard, "dashboard-live-runs")

    # Queue position falls as Bob's runs take and leave the GPU.
    position = page.locator("#run-live .queue-position")
    expect(position).to_have_text("1 run ahead")
    expect(position).to_have_text("Next in line")

    # Training: progress rises and the remaining time shrinks.
    expect(page.locator("#run-state")).to_have_text("Training")
    progress = page.locator("#run-live .progress-value")
    first_progress = number(progress.text_content())
    first_left = seconds_left(page)
    wait_for_js(
        page,
        f"Number(document.querySelector('#run-live .progress-value').textContent.match(/\\d+/))"
        f" > {first_progress}",
    )
    wait_for_js(
        page,
        "Number(document.querySelector('#run-live .remaining')?.dataset.remainingMs ?? 1e12)"
        f" < {first_left}",
    )

    # The epoch sample images arrive: two prompts, two epochs.
    samples = page.locator("#run-samples img")
    expect(samples.first).to_be_visible()
    expect(samples).to_have_count(4)

    # The run finishes: the state says so, polling stops and the toast appears.
    expect(page.locator("#run-state")).to_have_text("Finished")
    expect(page.locator("#toasts")).to_contain_text("Flux portrait v3 finished, 2 epochs")
    expect(page.locator("#run-live")).not_to_have_attribute("hx-trigger", re.compile(".+"))
    save_screenshot(page, "run-page-finished")

    # On the dashboard it left the active list for "Recently finished", with the same toast.
    expect(dashboard.locator(f"#run-card-{run.pk}")).to_have_count(0)
    expect(dashboard.locator(f"#recent-{run.pk}")).to_contain_text("Finished")
    expect(dashboard.locator("#toasts")).to_contain_text("Flux portrait v3 finished, 2 epochs")


# --- 2. Bob cancels a teammate's run ---------------------------------------------------------


def test_bob_cancels_a_running_run_of_another_artist_in_his_team(
    scenario, worker, logged_in_page, bob, dave, settings
):
    from playwright.sync_api import expect

    settings.DASHBOARD_REFRESH_SECONDS = 1
    run = launch(scenario, dave, "Dave's long training", speed=10, steps=600)
    wait_for(
        lambda: TrainingRun.objects.get(pk=run.pk).state == RunState.RUNNING,
        what="Dave's run to start",
    )

    page = logged_in_page(bob)
    page.goto(f"/runs/{run.pk}/")
    expect(page.locator("#run-state")).to_have_text("Training")
    page.get_by_text("Cancel training…").click()
    with page.expect_response(lambda r: r.url.endswith(f"/runs/{run.pk}/cancel/")) as answer:
        page.get_by_role("button", name="Yes, cancel this training").click()
    assert "Cancel requested" in answer.value.text()
    expect(page.locator("#run-state")).to_have_text(re.compile("Cancel requested|Canceled"))
    expect(page.locator("#run-state")).to_have_text("Canceled")
    # The samples card follows without a reload: no more "images appear after each epoch".
    expect(page.locator("#run-samples")).not_to_contain_text("Sample images appear here")
    expect(page.locator("#run-samples")).not_to_have_attribute("hx-trigger", re.compile(".+"))

    trail = page.locator("#run-trail li", has_text="Cancel requested")
    expect(trail.locator(".who")).to_have_text("Bob")
    assert RunEvent.objects.get(run=run, to_state=RunState.CANCEL_REQUESTED).actor == bob


# --- 3. Another team sees nothing --------------------------------------------------------------


def test_charlie_from_another_team_gets_404_and_an_empty_dashboard(
    transactional_db, logged_in_page, alice, charlie
):
    from playwright.sync_api import expect

    run = make_sent_run(alice, RunState.RUNNING, name="Alice's secret portrait")
    page = logged_in_page(charlie)
    expect(page.get_by_text("No trainings running right now.")).to_be_visible()
    assert page.locator(f"#run-card-{run.pk}").count() == 0
    assert "Alice's secret portrait" not in page.content()

    response = page.goto(f"/runs/{run.pk}/")
    assert response.status == 404
    response = page.goto(f"/runs/{run.pk}/live/")
    assert response.status == 404

    # Signing out says so, says nothing of the run either, and leads back to the sign-in page.
    page.goto("/")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="You are signed out")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)
    assert "Alice's secret portrait" not in page.content()
    save_screenshot(page, "signed-out")
    page.get_by_role("link", name="Sign in again").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.goto(f"/runs/{run.pk}/")
    expect(page.get_by_text("Sign in to see that page.")).to_be_visible()


# --- 4. Screenshots ----------------------------------------------------------------------------


def test_it_saves_screenshots_of_a_live_dashboard_and_a_finished_run_page(
    scenario, worker, logged_in_page, alice, bob, dave, settings
):
    from playwright.sync_api import expect

    settings.DASHBOARD_REFRESH_SECONDS = 1
    scenario.set_gpu_slots(1)
    finished = launch(scenario, alice, "Silver knight portraits", speed=60)
    # Then two long ones: Bob's trains (a thumbnail appears after its first epoch), Dave's waits.
    launch(scenario, bob, "Castle interiors", speed=8, steps=300, epochs=10)
    launch(scenario, dave, "Watercolour dragons", speed=3, steps=300)

    page = logged_in_page(alice)
    expect(page.locator(f"#recent-{finished.pk}")).to_contain_text("Finished")
    expect(page.locator(".run-card")).to_have_count(2)
    expect(page.locator(".run-card .queue-position")).to_have_text("Next in line")
    expect(page.locator(".run-card .run-thumb img")).to_be_visible()
    dashboard = save_screenshot(page, "dashboard")

    page.goto(f"/runs/{finished.pk}/")
    expect(page.locator("#run-samples img")).to_have_count(4)
    for image in page.locator("#run-samples img").all():
        expect(image).to_have_js_property("complete", True)
    run_page = save_screenshot(page, "run-finished")

    # A click enlarges a sample; "Use this epoch" asks Scenario and says what it did.
    page.locator("#run-samples a.sample").first.click()
    expect(page.locator("#enlarge")).to_be_visible()
    expect(page.locator("#enlarge .caption")).to_have_text(f"Epoch 1 · {PROMPTS[0]}")
    save_screenshot(page, "run-finished-enlarged", full_page=False)
    page.get_by_role("button", name="Close").click()
    expect(page.locator("#enlarge")).to_be_hidden()
    page.locator("tr[data-epoch='1']").get_by_role("button", name="Use this epoch").click()
    expect(page.locator(".epoch-notice")).to_have_text("Epoch 1 is now the model's epoch.")
    expect(page.locator("tr[data-epoch='1'] .in-use")).to_have_text("In use")
    assert dashboard.stat().st_size > 10_000 and run_page.stat().st_size > 10_000
