"""What the dashboard knows: teams, mirrored Scenario models, training runs and their trail.

A TrainingRun row is the truth about a training. Its `state` is only ever changed by
training.services, with a compare-and-set UPDATE that also writes a RunEvent.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class Role(models.TextChoices):
    ARTIST = "artist", "Artist"
    LEAD = "lead", "Lead"


class Team(models.Model):
    name = models.CharField(max_length=100, unique=True)
    # Monthly Creative Units budget; empty means no limit.
    monthly_cu_budget = models.PositiveIntegerField(null=True, blank=True)
    # How many trainings the team runs on Scenario at once; empty means no limit of ours.
    parallel_trainings = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Trainings this team runs at once; more wait in the team queue. Empty: no "
        "limit but Scenario's.",
    )
    # Scenario's plan cap as its 429 "parallel-training" taught it: what was running then.
    # One more launch is tried once learned_limit_probe_at has passed.
    learned_limit = models.PositiveIntegerField(null=True, blank=True)
    learned_limit_probe_at = models.DateTimeField(null=True, blank=True)
    # Scenario's cooldown (remainingSeconds): no launch goes out before this moment.
    cooldown_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TeamStamp(models.Model):
    """How often what a team's live pages show has changed: a counter every such write bumps.

    A live page's unchanged refresh reads this one row instead of the runs (training.stamps).
    """

    team = models.OneToOneField(
        Team, primary_key=True, on_delete=models.CASCADE, related_name="stamp"
    )
    version = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.team_id}: {self.version}"


class Membership(models.Model):
    """A user's place in one team, with their role there."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership"
    )
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.ARTIST)

    def __str__(self) -> str:
        return f"{self.user} ({self.get_role_display()}, {self.team})"


class ScenarioModel(models.Model):
    """A mirror of a model on Scenario, refreshed from GET /models."""

    remote_id = models.CharField(max_length=100, unique=True)
    name = models.CharField(max_length=300, blank=True)
    type = models.CharField(max_length=60, db_index=True)
    status = models.CharField(max_length=30, blank=True)
    training_images_number = models.PositiveIntegerField(default=0)
    # [{"id": asset id, "name": file name, "url": download url}], as far as Scenario listed them.
    training_images = models.JSONField(default=list, blank=True)
    thumbnail_url = models.URLField(max_length=1000, blank=True)
    # The team that owns it: set by staff, or by the first launch. Empty: nobody has trained it
    # here yet, and every team may. See training.access for the whole rule.
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="scenario_models"
    )
    shared = models.BooleanField(
        default=False,
        help_text="Every team may train it; the picker then shows its training image, not the "
        "thumbnail Scenario made from the last training's samples.",
    )
    synced_at = models.DateTimeField(null=True, blank=True)
    # When the model list from Scenario stopped listing it (deleted there). Its runs stay.
    gone_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name", "remote_id"]
        verbose_name = "Scenario model"

    def __str__(self) -> str:
        return self.name or self.remote_id


class RunState(models.TextChoices):
    DRAFT = "draft", "Draft"
    # In the team's queue: nothing sent to Scenario yet, waiting for a free slot.
    WAITING = "waiting", "Waiting"
    SUBMITTING = "submitting", "Submitting"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    CANCEL_REQUESTED = "cancel_requested", "Cancel requested"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELED = "canceled", "Canceled"
    # Scenario refused the launch before anything started: no training, no cost, no outcome
    # for success rates.
    NOT_STARTED = "not_started", "Not started"


FINAL_STATES = frozenset(
    {RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELED, RunState.NOT_STARTED}
)
ACTIVE_STATES = frozenset(set(RunState) - FINAL_STATES)
# States that say why in words: the reason follows the state, "Not started: Model is …".
STATES_WITH_REASON = frozenset({RunState.FAILED, RunState.NOT_STARTED})


# Each state's label, read once: RunState.values builds a new list at each call.
STATE_LABELS = dict(RunState.choices)


def outcome_words(state: str, reason: str = "") -> str:
    """Say how a run ended, or where it is, with Scenario's reason when it gave one."""
    label = STATE_LABELS.get(state, state)
    if state in STATES_WITH_REASON and reason:
        return f"{label}: {reason}"
    return label


class TrainingRun(models.Model):
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="training_runs"
    )
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="runs")
    model = models.ForeignKey(ScenarioModel, on_delete=models.PROTECT, related_name="runs")
    # The type at launch: a model's type can change later, the run's parameters fit this one.
    model_type = models.CharField(max_length=60)
    parameters = models.JSONField(default=dict, blank=True)
    # One per launch form: a resubmitted or double-clicked form finds the run it already made.
    idempotency_key = models.UUIDField(null=True, blank=True, unique=True, default=None)
    quote_cu_cost = models.FloatField(null=True, blank=True)
    quote_cu_discount = models.FloatField(null=True, blank=True)
    budget_override = models.BooleanField(default=False)

    state = models.CharField(max_length=20, choices=RunState.choices, default=RunState.DRAFT)
    job_id = models.CharField(max_length=100, blank=True)

    # The last snapshot read from Scenario.
    remote_model_status = models.CharField(max_length=30, blank=True)
    remote_job_status = models.CharField(max_length=30, blank=True)
    stage = models.CharField(max_length=30, blank=True)
    queue_position = models.PositiveIntegerField(null=True, blank=True)
    progress = models.FloatField(null=True, blank=True)
    remaining_ms = models.BigIntegerField(null=True, blank=True)
    # [{"date": ISO string, "status": job status}], as the job reported it.
    status_history = models.JSONField(default=list, blank=True)
    train_started_at = models.DateTimeField(null=True, blank=True)
    train_ended_at = models.DateTimeField(null=True, blank=True)
    queue_duration = models.FloatField(null=True, blank=True, help_text="seconds")
    train_duration = models.FloatField(null=True, blank=True, help_text="seconds")
    cu_cost = models.FloatField(null=True, blank=True)
    cu_discount = models.FloatField(null=True, blank=True)
    # Launched, ended, and Scenario's job for it could not be found: no bill to read. Its quote
    # stands for it in budgets, never 0.
    cost_unknown = models.BooleanField(default=False)
    error_message = models.TextField(blank=True)
    # Scenario's job.metadata.hint: what to do about the error, in its words.
    error_hint = models.TextField(blank=True)
    # Why a launch waits instead of being sent (a plan limit or a cooldown on Scenario).
    waiting_reason = models.TextField(blank=True)
    # The team queue: higher priority first, then the lower queue_order (first come).
    priority = models.IntegerField(default=0)
    queue_order = models.BigIntegerField(default=0)
    # The quote's date: an old one is asked again before the run is sent.
    quoted_at = models.DateTimeField(null=True, blank=True)
    # The forecast made at launch (training.forecast), to compare with what happened.
    forecast_finish_p50 = models.DateTimeField(null=True, blank=True)
    forecast_finish_p90 = models.DateTimeField(null=True, blank=True)
    # When Scenario's state of the run last moved: trainingProgress.updatedAt where given, else
    # when a poll first saw the status, stage, position or progress it now has.
    remote_updated_at = models.DateTimeField(null=True, blank=True)
    # model.parameters: what Scenario says the training uses; None until it says.
    remote_parameters = models.JSONField(null=True, blank=True)
    # The epochs Scenario listed, by name, whether or not they have sample images.
    epoch_names = models.JSONField(default=list, blank=True)
    # The epoch Scenario accepted as the model's through "Use this epoch", and who chose it.
    # Empty until someone chooses: Scenario then uses the last epoch.
    selected_epoch = models.CharField(max_length=100, blank=True)
    selected_epoch_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    # Polling bookkeeping.
    submitted_at = models.DateTimeField(null=True, blank=True)
    last_polled_at = models.DateTimeField(null=True, blank=True)
    next_poll_at = models.DateTimeField(null=True, blank=True)
    poll_failures = models.PositiveIntegerField(default=0)
    # Triggers sent for this run (0 or 1 almost always): a second one is sent only after a
    # read-back showed the first did not launch anything.
    triggers_sent = models.PositiveSmallIntegerField(default=0)
    # When a trigger's answer was lost (a 5xx, a timeout, a dropped connection): from then on
    # the model is read back on a short schedule until it shows whether the launch happened.
    outcome_unknown_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    # Set by every write in services, new samples and audit lines included (the run page's
    # live panel compares only this); .update() does not touch auto_now fields.
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["team", "-created_at"], name="run_team_created"),
            models.Index(fields=["created_by", "-created_at"], name="run_author_created"),
            models.Index(fields=["-created_at", "-id"], name="run_created"),
            models.Index(fields=["model_type", "-created_at"], name="run_type_created"),
            models.Index(fields=["state", "-created_at"], name="run_state_created"),
            models.Index(
                fields=["next_poll_at"],
                name="run_poll_due",
                condition=Q(state__in=["queued", "running", "cancel_requested"]),
            ),
            models.Index(
                fields=["team", "-updated_at"],
                name="run_team_active",
                condition=Q(
                    state__in=["draft", "submitting", "queued", "running", "cancel_requested"]
                ),
            ),
            models.Index(
                fields=["team", "-priority", "queue_order"],
                name="run_team_queue",
                condition=Q(state="waiting"),
            ),
        ]

    def __str__(self) -> str:
        return f"Run {self.pk} of {self.model} ({self.state})"

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def outcome(self) -> str:
        """The state in words with its reason: "Not started: Model is already training"."""
        return outcome_words(self.state, self.error_message)


class ListingLease(models.Model):
    """One row: until when the listing of Scenario's training models now under way holds.

    The sweep sends a listing only once the last one is done (or its lease ran out), so that
    listings follow one another instead of piling up when one takes longer than a sweep.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    until = models.DateTimeField()

    def __str__(self) -> str:
        return f"Listing until {self.until:%H:%M:%S}"


class EpochSample(models.Model):
    """One sample image Scenario produced for a prompt at the end of an epoch."""

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="samples")
    epoch = models.CharField(max_length=100, help_text="the epoch hash Scenario gave")
    epoch_index = models.PositiveIntegerField(help_text="0-based order of the epoch")
    prompt_index = models.PositiveIntegerField()
    prompt = models.TextField(blank=True)
    asset_id = models.CharField(max_length=100)
    url = models.URLField(max_length=2000)

    class Meta:
        ordering = ["epoch_index", "prompt_index"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "epoch_index", "prompt_index"], name="one_sample_per_prompt_epoch"
            )
        ]

    def __str__(self) -> str:
        return f"Epoch {self.epoch_index + 1}, prompt {self.prompt_index + 1}"


class EventSource(models.TextChoices):
    USER = "user", "User"
    WORKER = "worker", "Worker"
    SWEEP = "sweep", "Sweep"


class RunEvent(models.Model):
    """The audit trail: one row per state change of a run."""

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(auto_now_add=True)
    from_state = models.CharField(max_length=20, blank=True)
    to_state = models.CharField(max_length=20)
    source = models.CharField(max_length=10, choices=EventSource.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.from_state or '∅'} → {self.to_state} ({self.source})"


class Quote(models.Model):
    """A dry-run price Scenario gave one person for exact parameters, kept on the server.

    The launch form carries only `key`, a random name for this row: the cost the budget check
    and the run use is the one stored here, for the parameters whose digest is stored here,
    and a quote launches at most one run.
    """

    key = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    model = models.ForeignKey(ScenarioModel, on_delete=models.CASCADE, related_name="+")
    # What would be sent (training.quotes.digest): other parameters need another quote.
    digest = models.CharField(max_length=64)
    cost = models.FloatField()
    discount = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["user", "expires_at"], name="quote_user_expiry")]

    def __str__(self) -> str:
        return f"Quote of {self.cost} CU for {self.model}"


# --- Datasets: training images brought to Scenario from the dashboard ------------------------


def dataset_storage():
    """Keep uploaded files in the data folder, next to the database."""
    from django.core.files.storage import FileSystemStorage

    return FileSystemStorage(location=settings.DATA_DIR / "datasets")


class Dataset(models.Model):
    """A model's training images as the dashboard keeps them, and what Scenario still needs."""

    model = models.OneToOneField(ScenarioModel, on_delete=models.CASCADE, related_name="dataset")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The word every caption should carry for the concept to be learned.
    trigger_word = models.CharField(max_length=100, blank=True)
    # The pairs changed here since they were last sent (PUT …/training-images/pairs).
    pairs_dirty = models.BooleanField(default=False)
    # One worker at a time sends this dataset to Scenario; the lease ends by itself.
    sync_lease_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Dataset of {self.model}"


class UploadBatch(models.Model):
    """One drop of files: what went in and what did not, and why."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="batches")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    # [{"name": file name, "reason": why it was refused}]
    refused = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Upload {self.pk} to {self.dataset}"


class ImageState(models.TextChoices):
    QUEUED = "queued", "Waiting to be sent"
    UPLOADED = "uploaded", "Uploaded, not attached yet"
    ATTACHED = "attached", "On Scenario"
    FAILED = "failed", "Not sent"
    DELETING = "deleting", "Being removed"


class DatasetImage(models.Model):
    """A training image: its file here, its asset on Scenario once sent."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="images")
    batch = models.ForeignKey(
        UploadBatch, null=True, blank=True, on_delete=models.SET_NULL, related_name="images"
    )
    file = models.FileField(upload_to="%Y/%m/", storage=dataset_storage, max_length=300)
    name = models.CharField(max_length=255)
    content_type = models.CharField(max_length=100)
    size = models.PositiveIntegerField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    # A perceptual hash (imagehash's phash, hex): near-duplicates differ in few bits.
    phash = models.CharField(max_length=64)
    caption = models.TextField(blank=True)
    # The caption changed here since it was sent.
    caption_dirty = models.BooleanField(default=False)
    state = models.CharField(max_length=10, choices=ImageState.choices, default=ImageState.QUEUED)
    # The asset once uploaded; the training image id once attached (the same on Scenario).
    remote_id = models.CharField(max_length=100, blank=True)
    # A replacement: the training image this one takes the place of on Scenario.
    replaces_remote_id = models.CharField(max_length=100, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.name


class ImagePair(models.Model):
    """A before/after pair for the edit and kontext trainers."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="pairs")
    source = models.ForeignKey(DatasetImage, on_delete=models.CASCADE, related_name="+")
    target = models.ForeignKey(
        DatasetImage, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    instruction = models.TextField(blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.source} → {self.target or '?'}"


# --- Notifications: told when a run ends ----------------------------------------------------


class NotificationPreference(models.Model):
    """What one person wants to hear about the end of their runs, beyond the browser."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preference"
    )
    email = models.BooleanField(default=False, help_text="An email when a run of mine ends.")

    def __str__(self) -> str:
        return f"Notifications of {self.user}"


class TeamHooks(models.Model):
    """A team's outgoing hooks (chat, generic) and its incoming doorbell for Scenario."""

    team = models.OneToOneField(Team, on_delete=models.CASCADE, related_name="hooks")
    # Slack- and Discord-compatible incoming webhook: a JSON body with "text" and "content".
    chat_url = models.URLField(max_length=1000, blank=True)
    webhook_url = models.URLField(max_length=1000, blank=True)
    # Signs what goes to webhook_url (training.webhooks); shown once, when it is made.
    webhook_secret = models.CharField(max_length=100, blank=True)
    # The secret part of the URL Scenario calls on training events (training.doorbell).
    doorbell_token = models.CharField(max_length=100, unique=True)

    class Meta:
        verbose_name_plural = "team hooks"

    def __str__(self) -> str:
        return f"Hooks of {self.team}"


class Channel(models.TextChoices):
    EMAIL = "email", "Email"
    CHAT = "chat", "Chat webhook"
    WEBHOOK = "webhook", "Signed webhook"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class Delivery(models.Model):
    """The outbox: one notification of a run's end on one channel to one recipient.

    Written in the transaction that makes the run final, so a run that ended has its rows, and
    the unique constraint keeps it to one per run, channel and recipient however often that is
    attempted.
    """

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    # Who it is for: an email address, or the team for its hooks.
    recipient = models.CharField(max_length=320)
    status = models.CharField(
        max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    # One sender at a time: a sender holds the row until then; the lease ends by itself.
    claimed_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["run", "channel", "recipient"], name="one_delivery_per_channel"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} to {self.recipient} for run {self.run_id}"


# --- History's rollups: sums of final runs, kept by training.rollups -------------------------

# Durations are counted in buckets whose bounds grow by 2^(1/5) (about 15%) from 1 s to 2^18 s
# (about 3 days), with one bucket below 1 s and one above 3 days; training.rollups reads a p90
# from them.
BUCKETS_PER_DOUBLING = 5
BUCKET_DOUBLINGS = 18
DURATION_BUCKETS = BUCKETS_PER_DOUBLING * BUCKET_DOUBLINGS + 2


class RollupFigures(models.Model):
    """What a rollup row sums over its runs: all final, of one team and one outcome.

    `day` is the first local day (settings.TIME_ZONE) of launch the row covers; `week` (its
    Monday; none in a month's row) and `month` (its 1st) are kept beside it so that series
    group without date arithmetic. Teams and artists are plain ids, not foreign keys: the rows
    are derived, the runs they count protect their team and artist from deletion, and a
    foreign key's column would go after the bucket counts, the far end of a row.
    """

    day = models.DateField()
    week = models.DateField(null=True)
    month = models.DateField()
    team_id = models.BigIntegerField()
    outcome = models.CharField(max_length=20, choices=RunState.choices)
    runs = models.IntegerField(db_default=0)
    billed = models.IntegerField(db_default=0, help_text="runs with a bill")
    cu_billed = models.FloatField(db_default=0)
    cu_quoted = models.FloatField(db_default=0)
    queue_runs = models.IntegerField(db_default=0, help_text="runs with a queue time")
    queue_seconds = models.FloatField(db_default=0)
    train_runs = models.IntegerField(db_default=0, help_text="runs with a train time")
    train_seconds = models.FloatField(db_default=0)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.runs} {self.outcome} runs of team {self.team_id} from {self.day}"


class RollupDay(RollupFigures):
    """Final runs per team, day, model type, artist, outcome and duration bucket.

    Every filter of the history can be answered from these rows; the spans below answer the
    common ones from fewer rows. A run without a queue (train) time has bucket -1.
    """

    model_type = models.CharField(max_length=60)
    artist_id = models.BigIntegerField()
    queue_bucket = models.SmallIntegerField()
    train_bucket = models.SmallIntegerField()
    pk = models.CompositePrimaryKey(
        "day", "team_id", "outcome", "model_type", "artist_id", "queue_bucket", "train_bucket"
    )

    class Meta:
        indexes = [
            models.Index(fields=["artist_id", "day"], name="rollup_day_artist"),
            models.Index(fields=["model_type", "day"], name="rollup_day_type"),
        ]


# A span is a week cut at the end of a month (`day` is its first day), so that spans add up
# both to weeks and to months. Whole months have tables of their own, for the figures that
# need no week: a twelfth of the rows a year of spans has.


class RollupSpan(RollupFigures):
    """Final runs per team, span and outcome, with their duration buckets."""

    pk = models.CompositePrimaryKey("day", "team_id", "outcome")


class RollupSpanArtist(RollupFigures):
    """Final runs per team, span, artist and outcome."""

    artist_id = models.BigIntegerField()
    pk = models.CompositePrimaryKey("day", "team_id", "outcome", "artist_id")

    class Meta:
        indexes = [models.Index(fields=["artist_id", "day"], name="rollup_span_artist")]


class RollupSpanType(RollupFigures):
    """Final runs per team, span, model type and outcome, with their duration buckets."""

    model_type = models.CharField(max_length=60)
    pk = models.CompositePrimaryKey("day", "team_id", "outcome", "model_type")

    class Meta:
        indexes = [models.Index(fields=["model_type", "day"], name="rollup_span_type")]


class RollupMonth(RollupFigures):
    """Final runs per team, month (`day` is its 1st) and outcome, with their duration buckets."""

    pk = models.CompositePrimaryKey("day", "team_id", "outcome")


class RollupMonthArtist(RollupFigures):
    """Final runs per team, month, artist and outcome."""

    artist_id = models.BigIntegerField()
    pk = models.CompositePrimaryKey("day", "team_id", "outcome", "artist_id")

    class Meta:
        indexes = [models.Index(fields=["artist_id", "day"], name="rollup_month_artist")]


class RollupMonthType(RollupFigures):
    """Final runs per team, month, model type and outcome, with their duration buckets."""

    model_type = models.CharField(max_length=60)
    pk = models.CompositePrimaryKey("day", "team_id", "outcome", "model_type")

    class Meta:
        indexes = [models.Index(fields=["model_type", "day"], name="rollup_month_type")]


def _count_durations(model) -> None:
    """Give a rollup table a count per duration bucket: queue_b0…, train_b0….

    Added last, so the table's other columns come first in its rows, where reading them is
    cheapest.
    """
    for metric in ("queue", "train"):
        for bucket in range(DURATION_BUCKETS):
            model.add_to_class(f"{metric}_b{bucket}", models.IntegerField(db_default=0))


for _model in (RollupSpan, RollupSpanType, RollupMonth, RollupMonthType):
    _count_durations(_model)
del _model
