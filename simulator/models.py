"""The simulator's own tables: what was asked of it, never what it is "doing".

Nothing here stores a stage, a progress or a status of a training. A job row keeps the
facts fixed when it was requested (parameters, image count, duration, price, time scale)
and the moment it was canceled, if it was; simulator.lifecycle derives everything else from
those timestamps and the clock. Restarting the process therefore loses nothing.
"""

from __future__ import annotations

import secrets
import uuid

from django.db import IntegrityError, models, transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver


def new_id(prefix: str, length: int = 22) -> str:
    """Return a Scenario-looking identifier such as model_3fQ…"""
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))


def new_model_id() -> str:
    return new_id("model_")


def new_job_id() -> str:
    return new_id("job_", 25)


class SimModel(models.Model):
    """A model on the simulated Scenario account."""

    id = models.CharField(primary_key=True, max_length=64, default=new_model_id, editable=False)
    name = models.CharField(max_length=300, blank=True)
    type = models.CharField(max_length=60)
    owner_id = models.CharField(max_length=100, blank=True)
    # The epoch chosen with PUT /models/{id}; empty means the latest one.
    selected_epoch = models.CharField(max_length=40, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name = "simulated model"

    def __str__(self) -> str:
        return f"{self.name or self.id} ({self.type})"


class SimTrainingImage(models.Model):
    """A training image of a simulated model, by asset id or uploaded as a data URL."""

    model = models.ForeignKey(SimModel, on_delete=models.CASCADE, related_name="images")
    asset_id = models.CharField(max_length=64)
    name = models.CharField(max_length=300, blank=True)
    # Empty when the image was given by asset id: the simulator then draws a placeholder.
    content_type = models.CharField(max_length=100, blank=True)
    data = models.BinaryField(blank=True, default=b"")
    # The caption, as training images document it ("Description for the image").
    description = models.TextField(blank=True, default="")
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["model", "asset_id"], name="sim_image_once_per_model")
        ]

    def __str__(self) -> str:
        return self.name or self.asset_id


class SimImagePair(models.Model):
    """A before/after pair of a model's training images (PUT …/training-images/pairs)."""

    model = models.ForeignKey(SimModel, on_delete=models.CASCADE, related_name="pairs")
    position = models.PositiveIntegerField()
    source_id = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    instruction = models.TextField(blank=True)

    class Meta:
        ordering = ["position"]

    def __str__(self) -> str:
        return f"{self.source_id} → {self.target_id}"


def new_asset_id() -> str:
    return new_id("asset_")


def new_upload_id() -> str:
    return new_id("upload_")


class SimAsset(models.Model):
    """An image on the simulated account: made by POST /assets or a completed upload."""

    id = models.CharField(primary_key=True, max_length=64, default=new_asset_id, editable=False)
    name = models.CharField(max_length=300, blank=True)
    content_type = models.CharField(max_length=100)
    data = models.BinaryField()
    width = models.PositiveIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.name or self.id


class SimUpload(models.Model):
    """A multipart upload (POST /uploads): its parts arrive at their own URLs."""

    id = models.CharField(primary_key=True, max_length=64, default=new_upload_id, editable=False)
    file_name = models.CharField(max_length=300)
    file_size = models.PositiveBigIntegerField()
    content_type = models.CharField(max_length=100)
    kind = models.CharField(max_length=20)
    parts_count = models.PositiveIntegerField()
    # Scenario's upload statuses: pending until completed, then complete or failed.
    status = models.CharField(max_length=20, default="pending")
    asset_id = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.id} ({self.status})"


class SimUploadPart(models.Model):
    upload = models.ForeignKey(SimUpload, on_delete=models.CASCADE, related_name="received")
    number = models.PositiveIntegerField()
    data = models.BinaryField()

    class Meta:
        ordering = ["number"]
        constraints = [models.UniqueConstraint(fields=["upload", "number"], name="sim_part_once")]

    def __str__(self) -> str:
        return f"{self.upload_id} part {self.number}"


class SimJob(models.Model):
    """One real (not dry-run) training request, with the facts fixed when it was made."""

    id = models.CharField(primary_key=True, max_length=64, default=new_job_id, editable=False)
    model = models.ForeignKey(SimModel, on_delete=models.CASCADE, related_name="jobs")
    job_type = models.CharField(max_length=40)
    parameters = models.JSONField(default=dict)
    image_count = models.PositiveIntegerField()
    steps = models.PositiveIntegerField()
    # 0 for trainers without epochs (all but Flux LoRA): the model then lists none.
    epochs = models.PositiveIntegerField()
    # Simulated seconds of GPU training, and how many simulated seconds pass per real second
    # for this job: both fixed at request time, so a later settings change rewrites no history.
    train_seconds = models.FloatField()
    time_scale = models.FloatField()
    cost = models.FloatField()
    discount = models.FloatField()
    # Decided from the model's name when requested ("fail" in it): part of the request's facts.
    will_fail = models.BooleanField(default=False)
    requested_at = models.DateTimeField(db_index=True)
    canceled_at = models.DateTimeField(null=True, blank=True)
    owner_id = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["requested_at", "id"]
        verbose_name = "simulated training job"

    def __str__(self) -> str:
        return self.id


class SimScheduleStamp(models.Model):
    """One row that says how the jobs changed since an answer walked the queue.

    `token` changes whenever a job is canceled, deleted or otherwise altered: the walk must be
    made again. A new job only counts one more in `appended`: jobs come in request order, so
    a kept walk places the new ones after the others and walks nothing again. A random
    token, not a counter: a test database emptied and filled again must never repeat an old
    stamp.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    token = models.CharField(max_length=32)
    appended = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.token}+{self.appended}"

    @classmethod
    def current(cls) -> tuple[str, int] | None:
        return cls.objects.filter(pk=1).values_list("token", "appended").first()

    @classmethod
    def bump(cls) -> None:
        """Say that the jobs changed: call it in the transaction that changed them."""
        token = uuid.uuid4().hex
        if cls.objects.filter(pk=1).update(token=token, appended=0):
            return
        try:
            with transaction.atomic():
                cls.objects.create(pk=1, token=token)
        except IntegrityError:  # made meanwhile by another writer
            cls.objects.filter(pk=1).update(token=token, appended=0)

    @classmethod
    def append(cls) -> None:
        """Say that one job was requested: call it in the transaction that stored it."""
        if not cls.objects.filter(pk=1).update(appended=models.F("appended") + 1):
            cls.bump()  # no stamp yet: a fresh token makes every process walk anew


@receiver(post_save, sender=SimJob)
def _job_saved(created: bool, **kwargs) -> None:
    if created:
        SimScheduleStamp.append()
    else:
        SimScheduleStamp.bump()


@receiver(post_delete, sender=SimJob)
def _job_deleted(**kwargs) -> None:
    # Deletes cascade from a model and send this too; a queryset update() does not, so the
    # views that cancel with one bump the stamp themselves.
    SimScheduleStamp.bump()


class RequestLog(models.Model):
    """Every request the simulator answered, so tests and benchmarks can count calls."""

    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    model_id = models.CharField(max_length=64, blank=True, db_index=True)
    dry_run = models.BooleanField(default=False)
    status = models.PositiveSmallIntegerField()
    at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.method} {self.path} → {self.status}"


class FaultRule(models.Model):
    """An injected answer for the next `remaining` matching requests (simulator.faults)."""

    # None: answer normally, only delayed (a slow answer or a timeout).
    status = models.PositiveSmallIntegerField(null=True, blank=True)
    remaining = models.PositiveIntegerField(default=1)
    method = models.CharField(max_length=10, blank=True)
    path_contains = models.CharField(max_length=300, blank=True)
    retry_after = models.FloatField(null=True, blank=True)
    body = models.TextField(null=True, blank=True)
    content_type = models.CharField(max_length=100, blank=True)
    delay_ms = models.PositiveIntegerField(default=0)
    # True: do the work first, then answer with the fault (the request reached Scenario but
    # its answer was lost on the way back).
    after_processing = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.status or 'delay'} ×{self.remaining} {self.method} {self.path_contains}"


class FaultRates(models.Model):
    """Random faults for every request; one row (pk=1). Without it SIMULATOR_FAULTS applies."""

    rate_429 = models.FloatField(default=0.0)
    rate_503 = models.FloatField(default=0.0)
    latency_ms = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name_plural = "fault rates"

    def __str__(self) -> str:
        return f"429={self.rate_429} 503={self.rate_503} latency_ms={self.latency_ms}"
