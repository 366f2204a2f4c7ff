"""Scenario's dataset endpoints, simulated: assets, multipart uploads, training images, pairs.

Read from the Swagger subset (openapi-training-subset.yaml), field by field:

- `POST /assets` {name, image: base64} makes an asset.
- `POST /uploads` {fileName, fileSize, kind, parts, contentType} answers an upload whose
  `parts[]` each carry a `url` to PUT that part's bytes to (a presigned URL on Scenario; here
  a simulator URL that, like a presigned one, needs no basic auth). `POST /uploads/{id}/action`
  {action: "complete"} joins the parts and checks them; `GET /uploads/{id}` then says
  `complete` with the new asset's id in `entityId`, or `failed` with an `errorMessage`.
- `POST /models/{id}/training-images` takes one `assetId`, or `assetIds` (batch mode, at most
  10), or `data` (a data URL) with `name`; `preset` is one of default, style, subject. A batch
  is added whole or not at all.
- `PUT /models/{id}/training-images/{trainingImageId}` replaces an image (assetId or data);
  a `description` in the body, which the subset documents only in the answer, sets the caption.
- `DELETE` of the same path removes it; `PUT /models/{id}/training-images/pairs` replaces every
  pair with the array given ({sourceId, targetId, instruction}).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from datetime import timedelta

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from PIL import Image, UnidentifiedImageError

from simulator import clock, images, views
from simulator.clock import iso
from simulator.lifecycle import Schedule
from simulator.models import (
    SimAsset,
    SimImagePair,
    SimModel,
    SimTrainingImage,
    SimUpload,
    SimUploadPart,
    new_asset_id,
)
from simulator.views import ApiError, endpoint

MAX_BATCH = 10  # "up to 10 asset IDs are allowed"
PRESETS = ("default", "style", "subject")
UPLOAD_KINDS = ("3d", "asset", "audio", "avatar", "image", "model", "video")
MAX_PARTS = 10000
PART_URL_LIFETIME = timedelta(hours=1)
OWNER = "team_simulated"


# --- assets -----------------------------------------------------------------------------------


@endpoint("POST")
def assets(request: HttpRequest) -> HttpResponse:
    body = views._body(request)
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise ApiError(400, "name is required")
    image = body.get("image")
    if not isinstance(image, str) or not image:
        raise ApiError(400, "The simulator takes assets as an image (base64)")
    raw = image.partition(",")[2] if image.startswith("data:") else image
    try:
        payload = base64.b64decode(raw, validate=True)
    except binascii.Error:
        raise ApiError(400, "image is not valid base64") from None
    asset = _new_asset(name, payload)
    return JsonResponse({"asset": _asset_body(request, asset)})


def _new_asset(name: str, payload: bytes) -> SimAsset:
    """Store an image as an asset, or refuse what Pillow cannot read as one."""
    content_type, width, height = _read_image(payload)
    return SimAsset.objects.create(
        name=name,
        content_type=content_type,
        data=payload,
        width=width,
        height=height,
        created_at=clock.now(),
    )


def _read_image(payload: bytes) -> tuple[str, int, int]:
    if not payload:
        raise ApiError(400, "The file is empty")
    if len(payload) > views.MAX_UPLOAD_BYTES:
        raise ApiError(400, "The file is larger than 10 MB")
    try:
        with Image.open(io.BytesIO(payload)) as image:
            image.verify()
        with Image.open(io.BytesIO(payload)) as image:
            image.load()
            return Image.MIME.get(image.format, "application/octet-stream"), *image.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise ApiError(400, "The file is not an image Scenario can read") from None


def _asset_body(request: HttpRequest, asset: SimAsset) -> dict:
    url = views._renderer(request).url("asset", asset_id=asset.id)
    created = iso(asset.created_at)
    return {
        "authorId": OWNER,
        "collectionIds": [],
        "createdAt": created,
        "editCapabilities": [],
        "id": asset.id,
        "kind": "image",
        "metadata": {"type": "uploaded", "kind": "image", "name": asset.name},
        "mimeType": asset.content_type,
        "ownerId": OWNER,
        "privacy": "private",
        "properties": {"size": len(asset.data), "width": asset.width, "height": asset.height},
        "source": "uploaded",
        "status": "success",
        "tags": [],
        "updatedAt": created,
        "url": url,
    }


# --- uploads ----------------------------------------------------------------------------------


@endpoint("POST")
def uploads(request: HttpRequest) -> HttpResponse:
    body = views._body(request)
    file_name, size, parts = body.get("fileName"), body.get("fileSize"), body.get("parts")
    kind, content_type = body.get("kind"), body.get("contentType")
    if not isinstance(file_name, str) or not file_name:
        raise ApiError(400, "fileName is required for a multipart upload")
    if not _is_number(size) or size <= 0:
        raise ApiError(400, "fileSize is required for a multipart upload")
    if not _is_number(parts) or int(parts) != parts or not 1 <= parts <= MAX_PARTS:
        raise ApiError(400, f"parts must be a whole number from 1 to {MAX_PARTS}")
    if kind not in UPLOAD_KINDS:
        raise ApiError(400, f"kind must be one of {', '.join(UPLOAD_KINDS)}")
    if not isinstance(content_type, str) or not content_type:
        raise ApiError(400, "contentType is required for a multipart upload")
    now = clock.now()
    upload = SimUpload.objects.create(
        file_name=file_name,
        file_size=int(size),
        content_type=content_type,
        kind=kind,
        parts_count=int(parts),
        created_at=now,
        updated_at=now,
    )
    return JsonResponse({"upload": _upload_body(request, upload)})


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@endpoint("GET")
def upload_detail(request: HttpRequest, upload_id: str) -> HttpResponse:
    return JsonResponse({"upload": _upload_body(request, _upload(upload_id))})


@endpoint("POST")
def upload_action(request: HttpRequest, upload_id: str) -> HttpResponse:
    action = views._body(request).get("action")
    if action != "complete":
        raise ApiError(400, f"action must be 'complete', not {action!r}")
    with transaction.atomic():
        upload = _upload(upload_id)
        if upload.status == "pending":
            _complete(upload)
    return JsonResponse({"upload": _upload_body(request, upload)})


def _complete(upload: SimUpload) -> None:
    """Join the parts into an asset, or fail the upload saying why."""
    parts = list(upload.received.all())
    upload.updated_at = clock.now()
    if [p.number for p in parts] != list(range(1, upload.parts_count + 1)):
        upload.status, upload.error_message = "failed", "Not every part was uploaded"
    else:
        payload = b"".join(bytes(p.data) for p in parts)
        try:
            if len(payload) != upload.file_size:
                raise ApiError(400, f"Received {len(payload)} bytes, not {upload.file_size}")
            asset = _new_asset(upload.file_name, payload)
        except ApiError as error:
            upload.status, upload.error_message = "failed", error.message
        else:
            upload.status, upload.asset_id = "complete", asset.id
    upload.save()


@endpoint("PUT", public=True)
def upload_part(request: HttpRequest, upload_id: str, number: int) -> HttpResponse:
    """Take one part's bytes, as a presigned storage URL would: no basic auth, no JSON."""
    upload = _upload(upload_id)
    if upload.status != "pending" or not 1 <= number <= upload.parts_count:
        raise ApiError(400, "This part cannot be uploaded")
    SimUploadPart.objects.update_or_create(
        upload=upload, number=number, defaults={"data": request.body}
    )
    return HttpResponse(status=200)


def _upload(upload_id: str) -> SimUpload:
    upload = SimUpload.objects.filter(pk=upload_id).first()
    if upload is None:
        raise ApiError(404, f"Upload {upload_id} not found")
    return upload


def _upload_body(request: HttpRequest, upload: SimUpload) -> dict:
    renderer = views._renderer(request)
    expires = iso(upload.created_at + PART_URL_LIFETIME)
    body = {
        "authorId": OWNER,
        "contentType": upload.content_type,
        "createdAt": iso(upload.created_at),
        "fileName": upload.file_name,
        "fileSize": upload.file_size,
        "id": upload.id,
        "kind": upload.kind,
        "originalFileName": upload.file_name,
        "ownerId": OWNER,
        "partsCount": upload.parts_count,
        "source": "multipart",
        "status": upload.status,
        "updatedAt": iso(upload.updated_at),
    }
    if upload.status == "pending":
        body["parts"] = [
            {
                "number": n,
                "expires": expires,
                "url": renderer.url("upload-part", upload_id=upload.id, number=n),
            }
            for n in range(1, upload.parts_count + 1)
        ]
    if upload.asset_id:
        body["entityId"] = upload.asset_id
    if upload.error_message:
        body["errorMessage"] = upload.error_message
    return body


# --- training images --------------------------------------------------------------------------


@endpoint("POST")
def training_images(request: HttpRequest, model_id: str) -> HttpResponse:
    body = views._body(request)
    _check_preset(body)
    sources = _sources(body)
    with transaction.atomic():
        model = _changeable_model(model_id)
        now = clock.now()
        for asset_id, _, _ in sources:
            if asset_id and SimTrainingImage.objects.filter(model=model, asset_id=asset_id):
                raise ApiError(400, f"{asset_id} is already a training image of this model")
        added = [_add_image(model, source, now) for source in sources]
        model.updated_at = now
        model.save(update_fields=["updated_at"])
    renderer = views._renderer(request, now)
    answer = {"trainingImage": renderer.training_image(added[-1])}
    if "assetIds" in body:
        # Batch mode: the subset documents one trainingImage; every added one is listed too.
        answer["trainingImages"] = [renderer.training_image(image) for image in added]
    return JsonResponse(answer)


def _check_preset(body: dict) -> None:
    if "preset" in body and body["preset"] not in PRESETS:
        raise ApiError(400, f"preset must be one of {', '.join(PRESETS)}")


def _sources(body: dict) -> list[tuple[str, str, str]]:
    """What to add, as (asset id, name, data URL) triples: by id, by ids, or by data."""
    asset_id, asset_ids, data = body.get("assetId"), body.get("assetIds"), body.get("data")
    given = [key for key, value in (("assetId", asset_id), ("assetIds", asset_ids)) if value]
    if data:
        given.append("data")
    if len(given) != 1:
        raise ApiError(400, "Give one of assetId, assetIds (up to 10) or data (a data URL)")
    name = views._name(body.get("name") or "")
    if data:
        return [("", name, data)]
    ids = [asset_id] if asset_id else asset_ids
    if not isinstance(ids, list) or not all(
        isinstance(i, str) and views.ASSET_ID.fullmatch(i) for i in ids
    ):
        raise ApiError(400, "assetIds must be a list of asset ids (letters, digits, _ and -)")
    if len(ids) > MAX_BATCH:
        raise ApiError(400, f"Up to {MAX_BATCH} asset IDs are allowed, not {len(ids)}")
    if len(set(ids)) != len(ids):
        raise ApiError(400, "assetIds lists an asset twice")
    return [(i, "", "") for i in ids]


def _changeable_model(model_id: str) -> SimModel:
    model = views._model(model_id, lock=True)
    if views._is_training(model, Schedule.load(clock.now())):
        raise ApiError(400, "Model is training: training images cannot change now")
    return model


def _add_image(model: SimModel, source: tuple[str, str, str], now) -> SimTrainingImage:
    asset_id, name, data = source
    content_type, payload = views._decode_data_url(data) if data else ("", b"")
    if asset_id:
        asset = SimAsset.objects.filter(pk=asset_id).first()
        if asset is not None:
            name, content_type, payload = asset.name, asset.content_type, bytes(asset.data)
    image_id = asset_id or new_asset_id()
    return SimTrainingImage.objects.create(
        model=model,
        asset_id=image_id,
        name=name or f"{image_id}.png",
        content_type=content_type,
        data=payload,
        created_at=now,
    )


@endpoint("PUT", "DELETE")
def training_image(request: HttpRequest, model_id: str, image_id: str) -> HttpResponse:
    with transaction.atomic():
        model = _changeable_model(model_id)
        image = SimTrainingImage.objects.filter(model=model, asset_id=image_id).first()
        if image is None:
            raise ApiError(404, f"Training image {image_id} not found")
        if request.method == "DELETE":
            image.delete()
            SimImagePair.objects.filter(model=model, source_id=image_id).delete()
            SimImagePair.objects.filter(model=model, target_id=image_id).delete()
            answer = {}
        else:
            answer = _replace(request, model, image)
        model.updated_at = clock.now()
        model.save(update_fields=["updated_at"])
    return JsonResponse(answer)


def _replace(request: HttpRequest, model: SimModel, image: SimTrainingImage) -> dict:
    body = views._body(request)
    _check_preset(body)
    description = body.get("description")
    if description is not None and not isinstance(description, str):
        raise ApiError(400, "description must be a string")
    if body.get("assetIds"):
        raise ApiError(400, "A training image is replaced by one assetId or data")
    if body.get("assetId") or body.get("data"):
        (source,) = _sources(body)
        old = image.asset_id
        image.delete()
        image = _add_image(model, source, clock.now())
        SimImagePair.objects.filter(model=model, source_id=old).update(source_id=image.asset_id)
        SimImagePair.objects.filter(model=model, target_id=old).update(target_id=image.asset_id)
    if description is not None:
        image.description = description
        image.save(update_fields=["description"])
    return {"trainingImage": views._renderer(request).training_image(image)}


@endpoint("PUT")
def training_image_pairs(request: HttpRequest, model_id: str) -> HttpResponse:
    try:
        body = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "Request body must be JSON") from None
    if not isinstance(body, list) or not all(isinstance(p, dict) for p in body):
        raise ApiError(400, "The body must be an array of {sourceId, targetId, instruction}")
    with transaction.atomic():
        model = _changeable_model(model_id)
        known = set(SimTrainingImage.objects.filter(model=model).values_list("asset_id", flat=True))
        pairs = [_pair(model, index, item, known) for index, item in enumerate(body)]
        SimImagePair.objects.filter(model=model).delete()
        SimImagePair.objects.bulk_create(pairs)
    return JsonResponse({"count": len(pairs), "pairs": [pair_body(p) for p in pairs]})


def _pair(model: SimModel, index: int, item: dict, known: set[str]) -> SimImagePair:
    values = {key: item.get(key, "") for key in ("sourceId", "targetId", "instruction")}
    for key, value in values.items():
        if not isinstance(value, str):
            raise ApiError(400, f"pairs[{index}].{key} must be a string")
    for key in ("sourceId", "targetId"):
        if values[key] and values[key] not in known:
            raise ApiError(400, f"pairs[{index}].{key} must be a training asset of this model")
    return SimImagePair(
        model=model,
        position=index,
        source_id=values["sourceId"],
        target_id=values["targetId"],
        instruction=values["instruction"],
    )


def pair_body(pair: SimImagePair) -> dict:
    body = {"sourceId": pair.source_id, "targetId": pair.target_id}
    if pair.instruction:
        body["instruction"] = pair.instruction
    return body


# --- thumbnails -------------------------------------------------------------------------------

THUMBNAIL_SIZE = 256


@endpoint("GET", public=True)
def asset_thumbnail(request: HttpRequest, asset_id: str) -> HttpResponse:
    """Serve a small PNG of a training image or an asset (the fault switch applies)."""
    image = SimTrainingImage.objects.filter(asset_id=asset_id).first()
    source = image or SimAsset.objects.filter(pk=asset_id).first()
    if source is None:
        raise ApiError(404, f"Asset {asset_id} not found")
    small = thumbnail(bytes(source.data)) if source.data else None
    if small is None:
        placeholder = images.placeholder_svg(asset_id=asset_id, label=source.name)
        return views._picture(placeholder, "image/svg+xml")
    return views._picture(small, "image/png")


def thumbnail(content: bytes) -> bytes | None:
    """A PNG at most THUMBNAIL_SIZE on a side, or None when the bytes are not a picture."""
    try:
        with Image.open(io.BytesIO(content)) as image:
            image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
            out = io.BytesIO()
            image.convert("RGB").save(out, "PNG")
            return out.getvalue()
    except (UnidentifiedImageError, OSError, ValueError):
        return None
