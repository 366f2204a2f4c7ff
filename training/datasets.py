"""Keep datasets: make a model, take its training images, and send them to Scenario.

The web request only checks and stores: `create_model` makes the model on Scenario (one call,
so it is in the picker at once), `add_files` checks every file with Pillow and stores the good
ones in the data folder. Everything else goes to Scenario from a Celery task, `sync`, which
does what is still to do, in order, and can run any number of times:

1. upload each new file through the multipart flow (POST /uploads, PUT its part to the URL
   given, POST /uploads/{id}/action complete, GET /uploads/{id} for the asset id);
2. attach the new assets, at most 10 asset ids per request. Each chunk is recorded as it
   goes in, so when one fails, the others are not sent again: the task is retried and sends
   only what is still unattached. A chunk whose answer was lost is read back first;
3. replacements, captions, removals and the pairs.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from datetime import timedelta

import imagehash
from celery import current_app
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from PIL import Image, UnidentifiedImageError

from training import preflight, scenario, scenario_client
from training.models import (
    Dataset,
    DatasetImage,
    ImagePair,
    ImageState,
    ScenarioModel,
    Team,
    UploadBatch,
)

logger = logging.getLogger(__name__)

MAX_FILE_BYTES = 10 * 1024 * 1024
FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
ONLY_THESE = "only PNG, JPEG and WebP files can be training images."
CHUNK = scenario.MAX_ASSET_IDS_PER_REQUEST
SYNC_LEASE = timedelta(minutes=5)
UPLOAD_READY = frozenset({"complete", "imported", "validated"})


class Refused(ValueError):
    """Refuse a file that cannot be a training image; the message says why."""


@dataclass(frozen=True)
class CheckedImage:
    content: bytes
    content_type: str
    width: int
    height: int
    phash: str


# --- the model ------------------------------------------------------------------------------


def create_model(*, user, name: str, model_type: str, team: Team | None) -> ScenarioModel:
    """Make the model on Scenario and here, owned by `team`, with an empty dataset."""
    remote = scenario_client.get().create_model(name=name, type=model_type)
    with transaction.atomic():
        model, _ = ScenarioModel.objects.update_or_create(
            remote_id=remote.id,
            defaults={
                "name": remote.name or name,
                "type": remote.type,
                "status": remote.status,
                "training_images_number": remote.training_images_number,
                "team": team,
                "synced_at": timezone.now(),
            },
        )
        Dataset.objects.get_or_create(model=model, defaults={"created_by": user})
    return model


def dataset_for(model: ScenarioModel, user=None) -> Dataset:
    """Return the model's dataset, begun on first use for a model made on Scenario's side."""
    dataset, _ = Dataset.objects.get_or_create(model=model, defaults={"created_by": user})
    return dataset


# --- taking files ---------------------------------------------------------------------------


def check_file(name: str, content: bytes) -> CheckedImage:
    """Read the file as an image, or raise Refused saying why it is not one."""
    if not content:
        raise Refused("The file is empty.")
    if len(content) > MAX_FILE_BYTES:
        raise Refused(f"The file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB.")
    try:
        with Image.open(io.BytesIO(content)) as probe:
            kind = probe.format
    except (UnidentifiedImageError, OSError, ValueError):
        raise Refused(f"Not an image: {ONLY_THESE}") from None
    if kind not in FORMATS:
        raise Refused(f"A {kind} image: {ONLY_THESE}")
    try:
        with Image.open(io.BytesIO(content)) as image:
            image.verify()
        with Image.open(io.BytesIO(content)) as image:
            image.load()
            width, height = image.size
            phash = str(imagehash.phash(image))
    except (OSError, SyntaxError, ValueError):
        raise Refused(f"The {kind} file is damaged and cannot be read.") from None
    return CheckedImage(content, FORMATS[kind], width, height, phash)


def add_files(dataset: Dataset, user, files: list[tuple[str, bytes]]) -> UploadBatch:
    """Store the good files of a drop, refuse the others, and have a worker send them.

    A refused file leaves nothing behind. Past the most images the trainer takes, the rest of
    the drop is refused whole-file, never cut.
    """
    needs = preflight.needs_for(dataset.model.type)
    room = (needs.most_images if needs else 0) - dataset.images.exclude(
        state=ImageState.DELETING
    ).count()
    accepted, refused = [], []
    for name, content in files:
        shown = (name or "unnamed")[:200]
        try:
            checked = check_file(shown, content)
        except Refused as refusal:
            refused.append({"name": shown, "reason": str(refusal)})
            continue
        if len(accepted) >= room:
            most = needs.most_images if needs else 0
            reason = f"Too many images for this trainer: it takes at most {most}."
            refused.append({"name": shown, "reason": reason})
            continue
        accepted.append((shown, checked))
    with transaction.atomic():
        batch = UploadBatch.objects.create(dataset=dataset, created_by=user, refused=refused)
        for shown, checked in accepted:
            image = DatasetImage(
                dataset=dataset,
                batch=batch,
                name=shown,
                content_type=checked.content_type,
                size=len(checked.content),
                width=checked.width,
                height=checked.height,
                phash=checked.phash,
            )
            image.file.save(shown, ContentFile(checked.content), save=False)
            image.save()
        if accepted:
            enqueue_sync(dataset)
    return batch


def replace_file(image: DatasetImage, name: str, content: bytes) -> None:
    """Put another file in this image's place; the worker replaces it on Scenario."""
    checked = check_file(name, content)
    with transaction.atomic():
        # Read it again: its caption may have changed since the page was drawn.
        image = DatasetImage.objects.select_for_update().select_related("dataset").get(pk=image.pk)
        old_file = image.file.name
        if image.state == ImageState.ATTACHED:
            image.replaces_remote_id = image.remote_id
        image.remote_id, image.state, image.error = "", ImageState.QUEUED, ""
        image.name, image.content_type = name[:200], checked.content_type
        image.size, image.width, image.height = len(checked.content), checked.width, checked.height
        image.phash = checked.phash
        image.caption_dirty = bool(image.caption)
        image.file.save(name[:200], ContentFile(checked.content), save=False)
        image.save()
        image.file.storage.delete(old_file)
        enqueue_sync(image.dataset)


def set_caption(image: DatasetImage, caption: str) -> None:
    DatasetImage.objects.filter(pk=image.pk).update(caption=caption, caption_dirty=True)
    enqueue_sync(image.dataset)


def remove(image: DatasetImage) -> None:
    """Take an image out: at once here, on Scenario by the worker."""
    if not image.remote_id and not image.replaces_remote_id:
        _forget(image)
    else:
        DatasetImage.objects.filter(pk=image.pk).update(state=ImageState.DELETING)
    Dataset.objects.filter(pk=image.dataset_id).update(pairs_dirty=True)
    enqueue_sync(image.dataset)


def add_pair(dataset: Dataset, source: DatasetImage, target: DatasetImage | None, text: str):
    ImagePair.objects.create(dataset=dataset, source=source, target=target, instruction=text)
    Dataset.objects.filter(pk=dataset.pk).update(pairs_dirty=True)
    enqueue_sync(dataset)


def remove_pair(pair: ImagePair) -> None:
    pair.delete()
    Dataset.objects.filter(pk=pair.dataset_id).update(pairs_dirty=True)
    enqueue_sync(pair.dataset)


def enqueue_sync(dataset: Dataset) -> None:
    """Publish the dataset's sync on commit, by name: training.tasks imports this module."""
    task = current_app.signature("training.tasks.sync_dataset")
    transaction.on_commit(lambda: task.apply_async((dataset.pk,)))


def _forget(image: DatasetImage) -> None:
    name = image.file.name
    image.delete()
    if name:
        image.file.storage.delete(name)


# --- sending to Scenario (the worker) -------------------------------------------------------


def sync(dataset_id: int) -> None:
    """Send whatever the dataset still owes Scenario; raise TryAgain to be run again."""
    dataset = Dataset.objects.select_related("model").filter(pk=dataset_id).first()
    if dataset is None:
        return
    lease = _take_lease(dataset)
    if lease is None:
        raise scenario.TryAgain("Another worker is sending this dataset.", retry_after=2)
    client = scenario_client.get()
    try:
        failures = [
            *_upload_all(dataset, client),
            *_attach_all(dataset, client),
            *_replace_all(dataset, client),
            *_send_captions(dataset, client),
            *_remove_all(dataset, client),
            *_send_pairs(dataset, client),
        ]
        _mirror(dataset, client)
    finally:
        Dataset.objects.filter(pk=dataset.pk, sync_lease_until=lease).update(sync_lease_until=None)
    transient = [f for f in failures if f.transient]
    Dataset.objects.filter(pk=dataset.pk).update(last_error=failures[0].message if failures else "")
    if transient:
        raise transient[0]


def _take_lease(dataset: Dataset):
    now = timezone.now()
    until = now + SYNC_LEASE
    free = Q(sync_lease_until__isnull=True) | Q(sync_lease_until__lt=now)
    # Another worker got there first when no row changed.
    taken = Dataset.objects.filter(free, pk=dataset.pk).update(sync_lease_until=until)
    return until if taken else None


def _upload_all(dataset: Dataset, client) -> list[scenario.ScenarioError]:
    failures = []
    for image in dataset.images.filter(state=ImageState.QUEUED, remote_id=""):
        try:
            asset_id = upload(client, image)
        except scenario.ScenarioError as error:
            failures.append(error)
            if not error.transient:
                _failed(image, error)
            continue
        DatasetImage.objects.filter(pk=image.pk, state=ImageState.QUEUED).update(
            remote_id=asset_id,
            state=ImageState.QUEUED if image.replaces_remote_id else ImageState.UPLOADED,
        )
    return failures


def upload(client, image: DatasetImage) -> str:
    """Send one file through Scenario's multipart upload; return the asset id it became."""
    with image.file.open("rb") as handle:
        content = handle.read()
    opened = client.create_upload(
        file_name=image.name, size=len(content), content_type=image.content_type
    )
    if len(opened.part_urls) != 1:
        raise scenario.ResponseShapeError("Scenario's upload did not give one part URL")
    client.put_upload_part(opened.part_urls[0], content)
    client.complete_upload(opened.id)
    # The completed upload is checked on Scenario's side; its asset id is read from it.
    done = client.get_upload(opened.id)
    if done.status == "failed":
        raise scenario.BadRequest(done.error or "Scenario could not read the file")
    if done.status not in UPLOAD_READY or not done.asset_id:
        raise scenario.TryAgain("Scenario is still checking the upload.", retry_after=2)
    return done.asset_id


def _attach_all(dataset: Dataset, client) -> list[scenario.ScenarioError]:
    pending = list(dataset.images.filter(state=ImageState.UPLOADED).exclude(remote_id=""))
    failures = []
    for start in range(0, len(pending), CHUNK):
        chunk = pending[start : start + CHUNK]
        try:
            client.add_training_images(dataset.model.remote_id, [i.remote_id for i in chunk])
        except scenario.OutcomeUnknown as error:
            failures.append(error)
            _mark_attached_if_there(dataset, client, chunk)
            continue
        except scenario.ScenarioError as error:
            failures.append(error)
            if not error.transient:
                for image in chunk:
                    _failed(image, error)
            continue
        _mark_attached(chunk)
    return failures


def _mark_attached(images: list[DatasetImage]) -> None:
    DatasetImage.objects.filter(pk__in=[i.pk for i in images]).update(
        state=ImageState.ATTACHED, error=""
    )


def _mark_attached_if_there(dataset: Dataset, client, chunk: list[DatasetImage]) -> None:
    """After a lost answer, read the model back: what is there was attached."""
    try:
        model = client.get_model(dataset.model.remote_id)
    except scenario.ScenarioError:
        return  # the retry reads it again
    there = {i.id for i in model.training_images}
    _mark_attached([i for i in chunk if i.remote_id in there])


def _replace_all(dataset: Dataset, client) -> list[scenario.ScenarioError]:
    failures = []
    waiting = dataset.images.filter(state=ImageState.QUEUED).exclude(remote_id="")
    for image in waiting.exclude(replaces_remote_id=""):
        try:
            replaced = client.replace_training_image(
                dataset.model.remote_id, image.replaces_remote_id, asset_id=image.remote_id
            )
        except scenario.ScenarioError as error:
            failures.append(error)
            continue
        DatasetImage.objects.filter(pk=image.pk).update(
            remote_id=replaced.id, replaces_remote_id="", state=ImageState.ATTACHED
        )
    return failures


def _send_captions(dataset: Dataset, client) -> list[scenario.ScenarioError]:
    failures = []
    for image in dataset.images.filter(state=ImageState.ATTACHED, caption_dirty=True):
        try:
            client.replace_training_image(
                dataset.model.remote_id, image.remote_id, description=image.caption
            )
        except scenario.ScenarioError as error:
            failures.append(error)
            continue
        # Only if nobody changed the caption meanwhile; else the next run sends the new one.
        DatasetImage.objects.filter(pk=image.pk, caption=image.caption).update(caption_dirty=False)
    return failures


def _remove_all(dataset: Dataset, client) -> list[scenario.ScenarioError]:
    failures = []
    for image in dataset.images.filter(state=ImageState.DELETING):
        remote = image.replaces_remote_id or image.remote_id
        try:
            client.delete_training_image(dataset.model.remote_id, remote)
        except scenario.NotFound:
            pass  # already gone
        except scenario.ScenarioError as error:
            failures.append(error)
            continue
        _forget(image)
    return failures


def _send_pairs(dataset: Dataset, client) -> list[scenario.ScenarioError]:
    if not Dataset.objects.filter(pk=dataset.pk, pairs_dirty=True).exists():
        return []
    attached = Q(source__state=ImageState.ATTACHED)
    pairs = dataset.pairs.filter(attached).select_related("source", "target")
    body = [
        {
            "sourceId": p.source.remote_id,
            "targetId": p.target.remote_id if p.target and p.target.state == "attached" else "",
            "instruction": p.instruction,
        }
        for p in pairs
    ]
    try:
        client.set_training_image_pairs(dataset.model.remote_id, body)
    except scenario.ScenarioError as error:
        return [error]
    # A pair whose images are not on Scenario yet is sent again once they are.
    unattached_target = Q(target__isnull=False) & ~Q(target__state=ImageState.ATTACHED)
    if not dataset.pairs.filter(~attached | unattached_target).exists():
        Dataset.objects.filter(pk=dataset.pk).update(pairs_dirty=False)
    return []


def _mirror(dataset: Dataset, client) -> None:
    """Keep the model's picker entry in step: its image count and first images."""
    try:
        model = client.get_model(dataset.model.remote_id)
    except scenario.ScenarioError:
        return
    ScenarioModel.objects.filter(pk=dataset.model_id).update(
        status=model.status,
        training_images_number=model.training_images_number,
        training_images=[
            {"id": i.id, "name": i.name, "url": i.url} for i in model.training_images[:3]
        ],
        thumbnail_url=model.thumbnail_url or "",
    )


def _failed(image: DatasetImage, error: scenario.ScenarioError) -> None:
    DatasetImage.objects.filter(pk=image.pk).update(
        state=ImageState.FAILED, error=error.message[:300]
    )
