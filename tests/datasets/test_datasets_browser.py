"""An artist brings a dataset to Scenario in a real browser, checks it, launches and watches.

Alice makes a model, drops fourteen files on its page (twelve images, one of them nearly the
same as another, a text file and a broken PNG), watches each file's bar, sees the two refusals
with their reasons, captions three images and reads the pre-flight findings on the model page
and on the form. The warnings stop an artist's launch; she removes the near-duplicate and fixes the
caption, launches, and watches the run train. A real worker sends everything to the simulator,
through one injected 503, and the simulator's request log is checked afterwards.
"""

from __future__ import annotations

import base64
import threading
from itertools import groupby

import pytest

from simulator import faults
from simulator.models import RequestLog, SimTrainingImage
from tests.datasets_files import TEXT_FILE, corrupt_png, near_twin, picture
from tests.fixtures.browser import save_screenshot
from training.models import DatasetImage, ImageState, ScenarioModel, TrainingRun

pytestmark = [pytest.mark.browser, pytest.mark.worker]

DROP = """(files) => {
  const transfer = new DataTransfer();
  for (const f of files) {
    const bytes = Uint8Array.from(atob(f.data), (c) => c.charCodeAt(0));
    transfer.items.add(new File([bytes], f.name, { type: f.type }));
  }
  const zone = document.querySelector("form[data-dataset-upload]");
  const drop = { dataTransfer: transfer, bubbles: true, cancelable: true };
  zone.dispatchEvent(new DragEvent("drop", drop));
}"""


@pytest.fixture
def worker(scenario, celery_worker_thread, fast_lifecycle):
    """The worker thread, with a beat stand-in publishing the sweep every 0.2 s."""
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


def _files() -> list[dict]:
    original = picture(3)
    files = [(f"knight-{n:02}.png", picture(n), "image/png") for n in range(11)]
    files.append(("knight-03-again.jpg", near_twin(original), "image/jpeg"))
    files += [("notes.txt", TEXT_FILE, "text/plain"), ("broken.png", corrupt_png(), "image/png")]
    return [
        {"name": name, "data": base64.b64encode(content).decode(), "type": kind}
        for name, content, kind in files
    ]


def _log(remote_id: str) -> list[str]:
    lines = []
    for r in RequestLog.objects.order_by("at", "id"):
        lines.append(f"{r.method} {r.path.removeprefix('/sim/v1')} {r.status}")
    return lines


def test_alice_brings_a_dataset_checks_it_launches_and_watches_it_train(
    scenario, worker, logged_in_page, alice, settings
):
    from playwright.sync_api import expect

    settings.DASHBOARD_REFRESH_SECONDS = 1
    page = logged_in_page(alice)

    # A new model, from the training form.
    page.goto("/launch/")
    page.get_by_role("link", name="New model").click()
    page.get_by_label("Name").fill("Knight portraits")
    page.get_by_label("Type").select_option("flux.1-lora")
    page.get_by_role("button", name="Create the model").click()
    expect(page.locator("h1")).to_have_text("Knight portraits")
    model = ScenarioModel.objects.get(name="Knight portraits")
    assert model.team == alice.membership.team

    # Fourteen files dropped at once; Scenario fails the first attach request once.
    RequestLog.objects.all().delete()
    faults.inject(503, times=1, method="POST", path_contains="/training-images")
    page.evaluate(DROP, _files())
    rows = page.locator("#upload-file-list .upload-file")
    expect(rows).to_have_count(14)
    expect(page.locator("#upload-file-list progress")).to_have_count(14)
    expect(rows.filter(has_text="notes.txt")).to_contain_text("Refused: Not an image")
    expect(rows.filter(has_text="broken.png")).to_contain_text("Refused: The PNG file is damaged")
    expect(page.locator("#batch-state")).to_have_text("12 of 12 on Scenario, 2 refused")
    expect(rows.filter(has_text="On Scenario")).to_have_count(12)
    save_screenshot(page, "dataset-upload-progress")

    # The grid follows by itself; three captions, one without the trigger word.
    cards = page.locator("#image-grid .image-card")
    expect(cards).to_have_count(12)
    page.fill("#id_trigger_word", "daiton")
    page.get_by_role("button", name="Save", exact=True).click()
    captions = {
        "knight-00.png": "daiton in silver armour, portrait",
        "knight-01.png": "daiton on a horse at dawn",
        "knight-02.png": "a knight in the rain",
    }
    for name, caption in captions.items():
        _save_caption(page, cards.filter(has_text=name), name, caption)
    page.reload()

    # The pre-flight check on the model page names the twins and the caption.
    duplicates = page.locator("#preflight [data-rule='near-duplicates']")
    expect(duplicates).to_contain_text("2 images look nearly the same")
    expect(duplicates.locator("img")).to_have_count(2)
    trigger = page.locator("#preflight [data-rule='trigger-word']")
    expect(trigger).to_contain_text("1 captions do not mention “daiton”")
    expect(trigger.locator("img[alt='knight-02.png']")).to_have_count(1)
    save_screenshot(page, "dataset-model-page")

    # The form shows the same findings; the warnings stop an artist's launch.
    page.get_by_role("link", name="Train", exact=True).click()
    expect(page.locator("#launch-form #preflight")).to_contain_text("look nearly the same")
    page.fill("#id_maxTrainSteps", "60")
    page.fill("#id_nbEpochs", "2")
    page.click("button[value='estimate']:not(.sr-only)")
    expect(page.locator(".quote-panel.ready")).to_be_visible()
    save_screenshot(page, "dataset-launch-form-preflight")
    # (The refusal itself is tested without a browser: tests/datasets/test_datasets_views.py.)
    expect(page.locator("#preflight")).to_contain_text("Warnings stop an artist's launch")

    # Alice removes the near-duplicate and fixes the caption: nothing is left to find.
    page.get_by_role("link", name="Fix the dataset on its model page").click()
    twin = page.locator("#image-grid .image-card").filter(has_text="knight-03-again.jpg")
    twin.locator("summary").click()
    twin.get_by_role("button", name="Remove knight-03-again.jpg").click()
    # The removal reloads the page: wait for the new one before typing into it.
    expect(page.locator("#image-grid .image-card")).to_have_count(11)
    card = page.locator("#image-grid .image-card").filter(has_text="knight-02.png")
    _save_caption(page, card, "knight-02.png", "daiton in the rain")
    page.reload()
    expect(page.locator("#preflight-ok")).to_be_visible()
    expect(page.locator("#images-title")).to_contain_text("(11)")

    def on_scenario() -> int:
        return SimTrainingImage.objects.filter(model_id=model.remote_id).count()

    _wait(lambda: on_scenario() == 11 and not _pending(), "the removal to reach Scenario")

    # Launch, and watch the run train to the end.
    scenario.set_speed(24)
    page.get_by_role("link", name="Train", exact=True).click()
    page.fill("#id_maxTrainSteps", "60")
    page.fill("#id_nbEpochs", "2")
    page.click("button[value='estimate']:not(.sr-only)")
    expect(page.locator(".quote-panel.ready")).to_be_visible()
    expect(page.locator("#preflight")).to_have_count(0)
    page.click("button[value='confirm']")
    page.wait_for_selector(".launch-confirm")
    page.click(".launch-confirm button[value='launch']")
    expect(page.locator("h1")).to_have_text("Knight portraits")
    expect(page.locator("#run-state")).to_have_text("Training")
    expect(page.locator("#run-state")).to_have_text("Finished")
    run = TrainingRun.objects.get(created_by=alice)
    assert run.state == "succeeded"

    # The model page lists the run.
    page.goto(f"/models/{model.remote_id}/")
    expect(page.locator(".run-list")).to_contain_text(f"Run #{run.pk}")

    _check_the_request_log(model.remote_id, captions)


def _pending() -> bool:
    return DatasetImage.objects.exclude(state=ImageState.ATTACHED).exists()


def _wait(condition, what: str, timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out waiting for {what}")
        time.sleep(0.1)


def _check_the_request_log(remote_id: str, captions: dict) -> None:
    log = _log(remote_id)
    # Every file took the documented path once, in order: open, part, complete, read back.
    opened = [x for x in log if x.startswith("POST /uploads ")]
    assert len(opened) == 12 and all(x.endswith(" 200") for x in opened)
    for step in ("PUT /upload-parts/", "POST /uploads/", "GET /uploads/"):
        assert len([x for x in log if x.startswith(step)]) == 12, step
    first_attach = next(i for i, x in enumerate(log) if "/training-images " in x)
    assert all("/training-images" not in x for x in log[: log.index(opened[-1])])
    assert first_attach > log.index(opened[-1])
    # Attached in requests of at most ten: ten refused once with the 503, two, then the ten.
    images = f"POST /models/{remote_id}/training-images"
    assert [x for x in log if x.startswith(images + " ")] == [
        f"{images} 503",
        f"{images} 200",
        f"{images} 200",
    ]
    moments = SimTrainingImage.objects.filter(model_id=remote_id).order_by("created_at")
    sizes = [len(list(g)) for _, g in groupby(moments.values_list("created_at", flat=True))]
    # The twin, the last file, went in with the two; it has been removed since.
    assert sizes == [1, 10]
    # Nothing was refused as sent twice, and the captions went out as descriptions.
    assert not [x for x in log if x.endswith(" 400")]
    described = SimTrainingImage.objects.filter(model_id=remote_id).exclude(description="")
    assert sorted(described.values_list("description", flat=True)) == sorted(
        ["daiton in silver armour, portrait", "daiton on a horse at dawn", "daiton in the rain"]
    )
    removed = f"DELETE /models/{remote_id}/training-images/"
    assert len([x for x in log if x.startswith(removed)]) == 1


def _sign_in(context, client, user, live_server) -> None:
    from django.conf import settings as django_settings

    client.force_login(user)
    cookie = client.cookies[django_settings.SESSION_COOKIE_NAME]
    context.add_cookies(
        [
            {
                "name": django_settings.SESSION_COOKIE_NAME,
                "value": cookie.value,
                "url": live_server.url,
            }
        ]
    )


def test_without_javascript_the_upload_reports_each_file(
    scenario, chromium, live_server, client, alice, tmp_path
):
    from playwright.sync_api import expect

    from training import datasets

    model = datasets.create_model(
        user=alice, name="Plain form", model_type="flux.1-lora", team=alice.membership.team
    )
    context = chromium.new_context(base_url=live_server.url, java_script_enabled=False)
    _sign_in(context, client, alice, live_server)
    page = context.new_page()
    page.goto(f"/models/{model.remote_id}/")
    (tmp_path / "castle.png").write_bytes(picture(21, (512, 512)))
    (tmp_path / "notes.txt").write_bytes(TEXT_FILE)
    page.set_input_files("#upload-files", [tmp_path / "castle.png", tmp_path / "notes.txt"])
    page.get_by_role("button", name="Upload").click()
    report = page.locator("#batch-report")
    expect(report).to_contain_text("1 added")
    expect(report.locator(".refused")).to_have_text(
        "notes.txt: Not an image: only PNG, JPEG and WebP files can be training images."
    )
    expect(page.locator("#image-grid .image-card")).to_have_count(1)
    context.close()


def test_a_lead_sees_the_pairs_blocker_on_a_phone(scenario, logged_in_page, bob):
    from playwright.sync_api import expect

    from training import datasets

    model = datasets.create_model(
        user=bob, name="Night edit", model_type="flux.1-kontext-lora", team=bob.membership.team
    )
    files = [(f"day-{n}.png", picture(30 + n, (1024, 1024))) for n in range(6)]
    datasets.add_files(model.dataset, bob, files)
    page = logged_in_page(bob)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"/models/{model.remote_id}/")
    blocker = page.locator("#preflight [data-rule='no-pairs']")
    expect(blocker).to_contain_text("Blocker")
    expect(blocker).to_contain_text("before/after pairs")
    expect(page.locator(".pair-form")).to_be_visible()
    save_screenshot(page, "dataset-pairs-blocker-phone")


def _save_caption(page, card, name, caption):
    """Save a caption and wait for its answer: a card saved before already says "Saved"."""
    from playwright.sync_api import expect

    card.get_by_label(f"Caption of {name}").fill(caption)
    with page.expect_response(lambda response: "/caption/" in response.url) as answer:
        card.get_by_role("button", name="Save caption").click()
    assert answer.value.status == 200
    expect(card.locator(".saved")).to_be_visible()
