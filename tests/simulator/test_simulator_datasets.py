"""The simulator's dataset endpoints: assets, multipart uploads, batches, captions, pairs."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from simulator import faults, seed
from simulator.models import SimTrainingImage
from tests.datasets_files import TEXT_FILE, picture

PNG = picture(1, (300, 200))


def _upload(api, content: bytes = PNG, name: str = "knight.png") -> dict:
    body = {
        "fileName": name,
        "fileSize": len(content),
        "contentType": "image/png",
        "kind": "image",
        "parts": 1,
    }
    opened = api.ok("post", "/uploads", body)["upload"]
    assert opened["status"] == "pending" and opened["source"] == "multipart"
    (part,) = opened["parts"]
    # A presigned URL: the part goes there with no basic auth.
    assert api.client.put(part["url"], data=content, content_type="image/png").status_code == 200
    done = api.ok("post", f"/uploads/{opened['id']}/action", {"action": "complete"})["upload"]
    assert api.ok("get", f"/uploads/{opened['id']}")["upload"] == done
    return done


def test_a_multipart_upload_becomes_an_asset(api):
    done = _upload(api)
    assert done["status"] == "complete" and done["entityId"].startswith("asset_")
    served = api.client.get(f"/sim/v1/assets/{done['entityId']}")
    assert served.content == PNG and served["Content-Type"] == "image/png"


def test_an_upload_that_is_not_an_image_fails_saying_why(api):
    done = _upload(api, TEXT_FILE, "notes.txt")
    assert done["status"] == "failed" and "not an image" in done["errorMessage"]
    assert "entityId" not in done


def test_an_upload_missing_its_part_fails(api):
    body = {"fileName": "a.png", "fileSize": 10, "contentType": "image/png", "kind": "image"}
    opened = api.ok("post", "/uploads", {**body, "parts": 1})["upload"]
    done = api.ok("post", f"/uploads/{opened['id']}/action", {"action": "complete"})["upload"]
    assert done["status"] == "failed" and "part" in done["errorMessage"]
    assert "parts" in api.refused("post", "/uploads", {**body, "parts": 0})


def test_post_assets_takes_a_base64_image(api):
    asset = api.ok("post", "/assets", {"name": "k.png", "image": base64.b64encode(PNG).decode()})
    assert asset["asset"]["mimeType"] == "image/png"
    assert asset["asset"]["properties"]["width"] == 300


def test_assets_are_attached_ten_at_most_and_a_batch_is_all_or_nothing(api):
    model = seed.create_model(images=0)
    ids = [_upload(api, picture(n, (64, 64)), f"{n}.png")["entityId"] for n in range(11)]
    path = f"/models/{model.id}/training-images"
    assert "Up to 10" in api.refused("post", path, {"assetIds": ids})
    answer = api.ok("post", path, {"assetIds": ids[:10], "preset": "subject"})
    assert [i["id"] for i in answer["trainingImages"]] == ids[:10]
    # One already attached: the whole batch is refused, nothing of it is added.
    assert "already" in api.refused("post", path, {"assetIds": [ids[10], ids[0]]})
    assert SimTrainingImage.objects.filter(model=model).count() == 10
    assert "preset" in api.refused("post", path, {"assetId": ids[10], "preset": "banana"})


def test_get_models_lists_three_training_images_and_the_model_all(api):
    model = seed.create_model(images=0)
    ids = [_upload(api, picture(n, (64, 64)), f"{n}.png")["entityId"] for n in range(5)]
    api.ok("post", f"/models/{model.id}/training-images", {"assetIds": ids})
    listed = next(m for m in api.ok("get", "/models")["models"] if m["id"] == model.id)
    assert len(listed["trainingImages"]) == 3 and listed["trainingImagesNumber"] == 5
    assert len(api.ok("get", f"/models/{model.id}")["model"]["trainingImages"]) == 5


def test_a_caption_replace_and_delete(api):
    model = seed.create_model(images=0)
    first, second = (_upload(api, picture(n, (64, 64)))["entityId"] for n in (1, 2))
    api.ok("post", f"/models/{model.id}/training-images", {"assetId": first})
    path = f"/models/{model.id}/training-images/{first}"
    captioned = api.ok("put", path, {"description": "daiton, side view"})["trainingImage"]
    assert captioned["description"] == "daiton, side view"
    replaced = api.ok("put", path, {"assetId": second})["trainingImage"]
    assert replaced["id"] == second
    assert api.ok("delete", f"/models/{model.id}/training-images/{second}") == {}
    assert not SimTrainingImage.objects.filter(model=model).exists()
    api.refused("delete", path, status=404)


def test_pairs_replace_every_pair_and_name_training_images_only(api):
    model = seed.create_model("Edit", "flux.2-dev-edit-lora", images=0)
    a, b = (_upload(api, picture(n, (64, 64)))["entityId"] for n in (1, 2))
    api.ok("post", f"/models/{model.id}/training-images", {"assetIds": [a, b]})
    path = f"/models/{model.id}/training-images/pairs"
    pairs = [{"sourceId": a, "targetId": b, "instruction": "make it night"}]
    assert api.ok("put", path, pairs) == {"count": 1, "pairs": pairs}
    assert api.ok("get", f"/models/{model.id}")["model"]["trainingImagePairs"] == pairs
    assert "training asset" in api.refused("put", path, [{"sourceId": "asset_nope"}])


def test_thumbnails_are_small_pngs_and_the_fault_switch_reaches_them(api):
    done = _upload(api, picture(5, (1024, 768)))
    url = f"/sim/v1/thumbnails/{done['entityId']}"
    with Image.open(io.BytesIO(api.client.get(url).content)) as thumb:
        assert thumb.format == "PNG" and max(thumb.size) == 256
    faults.inject(503, times=1, path_contains="/thumbnails/")
    assert api.client.get(url).status_code == 503
    assert api.client.get(url).status_code == 200


@pytest.mark.parametrize("body", [{"action": "cancel"}, {}])
def test_an_upload_action_other_than_complete_is_refused(api, body):
    body = {"fileName": "a.png", "fileSize": 1, "contentType": "image/png", "kind": "image"}
    opened = api.ok("post", "/uploads", {**body, "parts": 1})["upload"]
    assert "complete" in api.refused("post", f"/uploads/{opened['id']}/action", body)
