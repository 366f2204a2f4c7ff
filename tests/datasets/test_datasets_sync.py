"""Sending a dataset to Scenario: the documented upload flow, chunks of ten, no double sends."""

from __future__ import annotations

import io
import os
from itertools import groupby

import pytest
from PIL import Image

from simulator import faults
from simulator.models import RequestLog, SimTrainingImage
from tests.datasets_files import TEXT_FILE, corrupt_png, picture
from training import datasets
from training.models import DatasetImage, ImageState
from training.scenario import TryAgain


def _requests() -> list[str]:
    return [
        f"{r.method} {r.path.removeprefix('/sim/v1')} {r.status}"
        for r in RequestLog.objects.order_by("at", "id")
    ]


@pytest.fixture
def knight(scenario, alice):
    model = datasets.create_model(
        user=alice, name="Knight", model_type="flux.1-lora", team=alice.membership.team
    )
    return model


def test_it_creates_the_model_on_scenario_and_in_the_picker(knight, alice):
    assert knight.remote_id.startswith("model_")
    assert knight.team == alice.membership.team
    assert knight.dataset.created_by == alice


def test_bad_files_are_refused_and_leave_nothing_behind(knight, alice, settings):
    files = [("good.png", picture(1)), ("notes.txt", TEXT_FILE), ("broken.png", corrupt_png())]
    files.append(("empty.png", b""))
    batch = datasets.add_files(knight.dataset, alice, files)
    reasons = {r["name"]: r["reason"] for r in batch.refused}
    assert reasons == {
        "notes.txt": "Not an image: only PNG, JPEG and WebP files can be training images.",
        "broken.png": "The PNG file is damaged and cannot be read.",
        "empty.png": "The file is empty.",
    }
    assert [i.name for i in knight.dataset.images.all()] == ["good.png"]
    stored = [p.name for p in (settings.DATA_DIR / "datasets").rglob("*") if p.is_file()]
    assert not [name for name in stored if name.startswith(("notes", "broken", "empty"))]


def test_a_file_above_the_size_limit_is_refused(knight, alice, monkeypatch):
    monkeypatch.setattr(datasets, "MAX_FILE_BYTES", 1024 * 1024)
    noise = Image.frombytes("RGB", (1024, 1024), os.urandom(1024 * 1024 * 3))
    out = io.BytesIO()
    noise.save(out, "PNG")
    batch = datasets.add_files(knight.dataset, alice, [("big.png", out.getvalue())])
    assert batch.refused == [{"name": "big.png", "reason": "The file is larger than 1 MB."}]
    assert not knight.dataset.images.exists()


def test_past_the_trainers_limit_whole_files_are_refused(knight, alice, monkeypatch):
    from training import preflight

    small = preflight.Needs(min_images=1, max_images=2, most_images=2, working_resolution=8)
    monkeypatch.setitem(preflight.NEEDS, "flux-lora", small)
    files = [(f"{n}.png", picture(n, (64, 64))) for n in range(3)]
    batch = datasets.add_files(knight.dataset, alice, files)
    assert batch.refused == [
        {"name": "2.png", "reason": "Too many images for this trainer: it takes at most 2."}
    ]
    assert knight.dataset.images.count() == 2


def test_a_failed_chunk_is_sent_again_alone(knight, alice, scenario):
    files = [(f"knight-{n:02}.png", picture(n, (256, 256))) for n in range(12)]
    datasets.add_files(knight.dataset, alice, files)
    RequestLog.objects.all().delete()
    faults.inject(503, times=1, method="POST", path_contains="/training-images")

    with pytest.raises(TryAgain):
        datasets.sync(knight.dataset.pk)
    datasets.sync(knight.dataset.pk)

    log = _requests()
    uploads = [line for line in log if "upload" in line]
    # Each file, once: open the upload, PUT its part, complete it (the answer has the asset).
    assert len([x for x in uploads if x.startswith("POST /uploads ")]) == 12
    assert len([x for x in uploads if x.startswith("PUT /upload-parts/")]) == 12
    assert len([x for x in uploads if x.endswith("/action 200")]) == 12
    assert len([x for x in uploads if x.startswith("GET /uploads/")]) == 12
    attaches = [x for x in log if x.startswith("POST /models/")]
    path = f"POST /models/{knight.remote_id}/training-images"
    # The first chunk of ten fails, the second of two goes in; then the first alone again.
    assert attaches == [f"{path} 503", f"{path} 200", f"{path} 200"]
    on_scenario = SimTrainingImage.objects.filter(model_id=knight.remote_id)
    # Images attached by one request share its moment: two, then the ten sent again.
    moments = on_scenario.order_by("created_at").values_list("created_at", flat=True)
    assert [len(list(group)) for _, group in groupby(moments)] == [2, 10]
    assert sorted(on_scenario.values_list("name", flat=True)) == [n for n, _ in files]
    assert set(DatasetImage.objects.values_list("state", flat=True)) == {ImageState.ATTACHED}
    knight.refresh_from_db()
    assert knight.training_images_number == 12


def test_a_replaced_image_takes_the_old_ones_place_on_scenario(knight, alice):
    datasets.add_files(knight.dataset, alice, [("old.png", picture(1, (128, 128)))])
    datasets.sync(knight.dataset.pk)
    image = DatasetImage.objects.get()
    old_id = image.remote_id
    datasets.set_caption(image, "daiton, front")
    datasets.replace_file(image, "new.png", picture(2, (128, 128)))
    RequestLog.objects.all().delete()
    datasets.sync(knight.dataset.pk)

    image.refresh_from_db()
    assert image.state == ImageState.ATTACHED and image.remote_id != old_id
    (remote,) = SimTrainingImage.objects.filter(model_id=knight.remote_id)
    assert (remote.asset_id, remote.name, remote.description) == (
        image.remote_id,
        "new.png",
        "daiton, front",
    )
    replaced = f"PUT /models/{knight.remote_id}/training-images/{old_id} 200"
    assert replaced in _requests()


def test_pairs_are_sent_once_their_images_are_on_scenario(scenario, alice):
    model = datasets.create_model(
        user=alice, name="Night edit", model_type="flux.1-kontext-lora", team=None
    )
    files = [("day.png", picture(1, (128, 128))), ("night.png", picture(2, (128, 128)))]
    datasets.add_files(model.dataset, alice, files)
    day, night = DatasetImage.objects.all()
    datasets.add_pair(model.dataset, day, night, "make it night")
    datasets.sync(model.dataset.pk)

    day.refresh_from_db()
    night.refresh_from_db()
    remote = scenario.client().get_model(model.remote_id).raw["trainingImagePairs"]
    assert remote == [
        {"sourceId": day.remote_id, "targetId": night.remote_id, "instruction": "make it night"}
    ]
    model.dataset.refresh_from_db()
    assert not model.dataset.pairs_dirty


def test_a_removed_image_leaves_scenario_and_its_file(knight, alice):
    datasets.add_files(knight.dataset, alice, [("gone.png", picture(1, (128, 128)))])
    datasets.sync(knight.dataset.pk)
    image = DatasetImage.objects.get()
    path = image.file.path
    datasets.remove(image)
    datasets.sync(knight.dataset.pk)
    assert not DatasetImage.objects.exists()
    assert not SimTrainingImage.objects.filter(model_id=knight.remote_id).exists()
    assert not os.path.exists(path)
