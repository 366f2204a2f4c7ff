"""Talk to Scenario's training API: the one module that does.

Everything goes through one `requests.Session` with HTTP basic auth and a (connect, read)
timeout on every call. Answers are parsed into small frozen dataclasses that keep the raw
JSON; failures become a `ScenarioError` subclass with a human `message`, the HTTP `status`
and a `transient` flag (worth trying again later: those errors are also `TryAgain`, which a
task retries) - never a crash, whatever the body was.

Retries
    Reads (GET) are retried by urllib3 with exponential backoff and jitter on connection
    errors and on 429, 502, 503 and 504 (a few times; once after a read timeout), honouring
    Retry-After. One call waits at most settings.SCENARIO_MAX_RETRY_AFTER seconds in all for
    Retry-After: an answer asking for more is not waited for but raised as RateLimited /
    Unavailable with `retry_after`, for the caller to schedule a later try.
    Writes (PUT, POST) are retried only when the connection could not even be opened, i.e.
    when the request certainly never left this machine.

Launching without launching twice
    `trigger` is never retried once its request may have reached Scenario. When the answer is
    lost (read timeout, dropped connection, a 5xx from a gateway) it raises OutcomeUnknown:
    the training may or may not have started. The caller must not trigger again blindly;
    it learns what happened from `get_model(model_id)`:
      - status "training": our launch went through, provided the training is ours. Its
        trainingProgress.startedAt, once the GPU has started, is at or after our attempt;
        before that (pending, queued) there is no startedAt and only one launch can exist,
        since Scenario refuses a second one with 400 "Model is already training";
      - a final status (trained, failed, training-canceled) whose trainingStats.startedAt is
        at or after our attempt: our launch went through and has already ended;
      - otherwise (new, or a final status from an older training): it did not start, and
        triggering again is safe.
    The model object does not name its job: `find_training_job` looks for it in
    `GET /jobs` (filtered by the training job types), by the model its metadata names and
    the moment it was created, so that an adopted launch is billed like any other.
    A 429 on the trigger is different: a response came back, Scenario refused it, and that is
    RateLimited (with retry_after), not OutcomeUnknown. Other writes behave the same way
    (OutcomeUnknown when unsure), and are reconciled the same way, by reading back.

Success codes
    Any 2xx is success. A dry run answers 269 with a Creative Units quote: `quote` parses it
    as a Quote, and `trigger` refuses any 2xx answer that carries no job, so a quote can
    never be taken for a launched run. A dry-run answer that carries a job means a training
    started anyway: `quote` raises DryRunLaunched with the launch, never a quote.

Secrets
    The API key and secret live only in the session's auth object. They are not part of any
    repr, log line or exception message; logs name the method, path, status and duration.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from html import unescape
from typing import Any
from urllib.parse import quote as url_quote

import requests
from requests.adapters import HTTPAdapter
from requests.auth import HTTPBasicAuth
from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError, ResponseError
from urllib3.util.retry import Retry

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 502, 503, 504})
# The job types a training runs as (the reference's jobType enum): GET /jobs filters by them.
TRAINING_JOB_TYPES = ("flux-model-training", "musubi-model-training", "model-training")
JOBS_PAGE_SIZE = 100  # the documented maximum is 200
JOBS_MAX_PAGES = 5
MAX_ASSET_IDS_PER_REQUEST = 10  # "up to 10 asset IDs are allowed" in batch mode
MAX_MESSAGE_LENGTH = 300


# --- errors -----------------------------------------------------------------------------------


class TryAgain(Exception):
    """Mark a failure that may pass: a task retries it, after `retry_after` seconds if set.

    Scenario's transient errors are TryAgain too, so a task retries them without wrapping.
    """

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class ScenarioError(Exception):
    """Scenario could not do what was asked; `message` is fit to show a person."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ):
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        """Tell whether trying again later may succeed (the error is also a TryAgain)."""
        return isinstance(self, TryAgain)

    def __str__(self) -> str:
        return f"{self.message} (HTTP {self.status})" if self.status else self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, message={self.message!r})"


class AuthError(ScenarioError):
    """The API key or secret was refused (401/403)."""


class NotFound(ScenarioError):
    """The model or job does not exist (404)."""


class BadRequest(ScenarioError):
    """Scenario refused the request as invalid (400, 409, 422…); the message says why."""


class AlreadyTraining(BadRequest):
    """The model is already training; a second launch was refused."""


class RateLimited(ScenarioError, TryAgain):
    """Too many requests (429); try again after `retry_after` seconds.

    `launch_limit` names, in words, a limit of the account rather than of the request rate:
    the plan's cap on parallel trainings, or a cooldown between launches. A launch refused by
    one is not a failed training: it waits, and is sent again when the limit allows.
    """

    def __init__(
        self, message: str, *, launch_limit: str = "", cooldown: float | None = None, **kwargs
    ):
        super().__init__(message, **kwargs)
        self.launch_limit = launch_limit
        # A cooldown's remainingSeconds: when the next launch may go.
        self.cooldown = cooldown


class Unavailable(ScenarioError, TryAgain):
    """Scenario is down, overloaded or unreachable; the request did not take effect."""


class DryRunLaunched(ScenarioError):
    """A dry run's answer carried a job: Scenario started a training instead of quoting it."""

    def __init__(self, message: str, launch: Launch):
        super().__init__(message)
        self.launch = launch


class OutcomeUnknown(ScenarioError, TryAgain):
    """A write may have reached Scenario but its answer was lost; read back before retrying."""


class ResponseShapeError(ScenarioError):
    """Scenario answered, but not in the documented shape (a required field missing or mistyped)."""


# --- parsed answers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Quote:
    cost: float
    discount: float
    raw: dict = field(repr=False)


@dataclass(frozen=True)
class Billing:
    cu_cost: float
    cu_discount: float


@dataclass(frozen=True)
class StatusChange:
    date: datetime
    status: str


@dataclass(frozen=True)
class Job:
    id: str
    model_id: str
    created_at: datetime | None
    type: str
    status: str
    progress: float
    status_history: list[StatusChange]
    billing: Billing | None
    error: str
    raw: dict = field(repr=False)
    # "Actionable hint for the user explaining what went wrong and how to resolve it."
    hint: str = ""


@dataclass(frozen=True)
class TrainingProgress:
    stage: str
    position: int | None
    progress: float | None
    remaining_ms: int | None
    started_at: datetime | None
    updated_at: datetime | None


@dataclass(frozen=True)
class TrainingStats:
    started_at: datetime | None
    ended_at: datetime | None
    queue_duration: float | None
    train_duration: float | None


@dataclass(frozen=True)
class Asset:
    asset_id: str
    url: str


@dataclass(frozen=True)
class Epoch:
    epoch: str
    assets: list[Asset]


@dataclass(frozen=True)
class TrainingImage:
    id: str
    name: str
    url: str
    description: str = ""


@dataclass(frozen=True)
class Upload:
    """A multipart upload: where to PUT each part, then what it became (`asset_id`)."""

    id: str
    status: str
    asset_id: str
    error: str
    part_urls: list[str]


@dataclass(frozen=True)
class Model:
    id: str
    name: str
    type: str
    status: str
    training_images_number: int
    training_progress: TrainingProgress | None
    training_stats: TrainingStats | None
    epochs: list[Epoch]
    parameters: dict
    thumbnail_url: str
    training_images: list[TrainingImage]
    job_id: str
    error: str
    raw: dict = field(repr=False)


@dataclass(frozen=True)
class Launch:
    job: Job
    model: Model
    quote: Quote | None


# --- parsing ----------------------------------------------------------------------------------

_MISSING = object()
_KINDS = {
    "str": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "list": lambda v: isinstance(v, list),
    "dict": lambda v: isinstance(v, dict),
}


def _field(obj: Mapping, key: str, kind: str, where: str, *, required: bool = True) -> Any:
    """Read obj[key] as `kind` (str, number, bool, list, dict); optional ones may be None."""
    value = obj.get(key, _MISSING)
    if value is _MISSING or value is None:
        if required:
            raise ResponseShapeError(f"Scenario's answer has no {where}.{key}")
        return None
    if _KINDS[kind](value):
        return value
    if required:
        raise ResponseShapeError(
            f"Scenario's answer has {where}.{key} as {type(value).__name__}, expected {kind}"
        )
    return None  # a mistyped optional field is treated as absent


def _iso(value: Any, where: str, *, required: bool = False) -> datetime | None:
    if isinstance(value, str) and value:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
        if moment is not None:
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if required:
        raise ResponseShapeError(f"Scenario's answer has {where} that is not an ISO date")
    return None


def _ms(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    return None


def _object(data: Any, key: str) -> dict:
    if not isinstance(data, dict):
        raise ResponseShapeError("Scenario's answer is not a JSON object")
    return _field(data, key, "dict", "answer")


def parse_quote(data: Mapping) -> Quote:
    cost = _field(data, "creativeUnitsCost", "number", "answer")
    discount = _field(data, "creativeUnitsDiscount", "number", "answer", required=False)
    return Quote(cost=float(cost), discount=float(discount or 0), raw=dict(data))


def parse_job(data: Mapping) -> Job:
    history = []
    for index, item in enumerate(_field(data, "statusHistory", "list", "job")):
        where = f"job.statusHistory[{index}]"
        if not isinstance(item, dict):
            raise ResponseShapeError(f"Scenario's answer has {where} that is not an object")
        date = _iso(_field(item, "date", "str", where), f"{where}.date", required=True)
        history.append(StatusChange(date=date, status=_field(item, "status", "str", where)))
    billing = None
    raw_billing = _field(data, "billing", "dict", "job", required=False)
    if raw_billing is not None:
        billing = Billing(
            cu_cost=float(_field(raw_billing, "cuCost", "number", "job.billing")),
            cu_discount=float(_field(raw_billing, "cuDiscount", "number", "job.billing")),
        )
    metadata = _field(data, "metadata", "dict", "job")
    return Job(
        id=_field(data, "jobId", "str", "job"),
        model_id=_job_model_id(metadata),
        created_at=_iso(data.get("createdAt"), "job.createdAt"),
        type=_field(data, "jobType", "str", "job"),
        status=_field(data, "status", "str", "job"),
        progress=float(_field(data, "progress", "number", "job")),
        status_history=history,
        billing=billing,
        error=_field(metadata, "error", "str", "job.metadata", required=False) or "",
        raw=dict(data),
        hint=_field(metadata, "hint", "str", "job.metadata", required=False) or "",
    )


def _job_model_id(metadata: Mapping) -> str:
    """The model a job trains, as its metadata names it (input.modelId, or outputModelId)."""
    raw_input = metadata.get("input")
    candidates = [
        raw_input.get("modelId") if isinstance(raw_input, dict) else None,
        metadata.get("outputModelId"),
        metadata.get("modelId"),
    ]
    return next((value for value in candidates if isinstance(value, str) and value), "")


def _progress(data: Mapping) -> TrainingProgress | None:
    raw = _field(data, "trainingProgress", "dict", "model", required=False)
    if raw is None:
        return None
    position = _field(raw, "position", "number", "model.trainingProgress", required=False)
    remaining = _field(raw, "remainingTimeMs", "number", "model.trainingProgress", required=False)
    progress = _field(raw, "progress", "number", "model.trainingProgress", required=False)
    return TrainingProgress(
        stage=_field(raw, "stage", "str", "model.trainingProgress"),
        position=int(position) if position is not None else None,
        progress=float(progress) if progress is not None else None,
        remaining_ms=int(remaining) if remaining is not None else None,
        started_at=_ms(raw.get("startedAt")),
        updated_at=_ms(raw.get("updatedAt")),
    )


def _stats(data: Mapping) -> TrainingStats | None:
    raw = _field(data, "trainingStats", "dict", "model", required=False)
    if raw is None:
        return None
    where = "model.trainingStats"
    queue = _field(raw, "queueDuration", "number", where, required=False)
    train = _field(raw, "trainDuration", "number", where, required=False)
    return TrainingStats(
        started_at=_iso(raw.get("startedAt"), f"{where}.startedAt"),
        ended_at=_iso(raw.get("endedAt"), f"{where}.endedAt"),
        queue_duration=float(queue) if queue is not None else None,
        train_duration=float(train) if train is not None else None,
    )


def _parse_launch(data: Mapping) -> Launch:
    quote = parse_quote(data) if "creativeUnitsCost" in data else None
    return Launch(
        job=parse_job(data["job"]), model=parse_model(_object(data, "model")), quote=quote
    )


def _epochs(data: Mapping) -> list[Epoch]:
    epochs = []
    for item in _field(data, "epochs", "list", "model", required=False) or []:
        if not isinstance(item, dict):
            continue
        assets = [
            Asset(asset_id=a["assetId"], url=a["url"])
            for a in (_field(item, "assets", "list", "epoch", required=False) or [])
            if isinstance(a, dict)
            and isinstance(a.get("assetId"), str)
            and isinstance(a.get("url"), str)
        ]
        epochs.append(Epoch(epoch=_field(item, "epoch", "str", "model.epochs[]"), assets=assets))
    return epochs


def parse_training_image(data: Mapping) -> TrainingImage:
    return TrainingImage(
        id=_field(data, "id", "str", "trainingImage"),
        name=_field(data, "name", "str", "trainingImage", required=False) or "",
        url=_field(data, "downloadUrl", "str", "trainingImage", required=False) or "",
        description=_field(data, "description", "str", "trainingImage", required=False) or "",
    )


def parse_upload(data: Mapping) -> Upload:
    parts = _field(data, "parts", "list", "upload", required=False) or []
    ordered = sorted(
        (p for p in parts if isinstance(p, dict) and isinstance(p.get("url"), str)),
        key=lambda p: p.get("number") if isinstance(p.get("number"), int | float) else 0,
    )
    return Upload(
        id=_field(data, "id", "str", "upload"),
        status=_field(data, "status", "str", "upload"),
        asset_id=_field(data, "entityId", "str", "upload", required=False) or "",
        error=_field(data, "errorMessage", "str", "upload", required=False) or "",
        part_urls=[p["url"] for p in ordered],
    )


def parse_model(data: Mapping) -> Model:
    number = _field(data, "trainingImagesNumber", "number", "model")
    thumbnail = _field(data, "thumbnail", "dict", "model", required=False) or {}
    images = _field(data, "trainingImages", "list", "model", required=False) or []
    return Model(
        id=_field(data, "id", "str", "model"),
        name=_field(data, "name", "str", "model", required=False) or "",
        type=_field(data, "type", "str", "model"),
        status=_field(data, "status", "str", "model"),
        training_images_number=int(number),
        training_progress=_progress(data),
        training_stats=_stats(data),
        epochs=_epochs(data),
        parameters=_field(data, "parameters", "dict", "model", required=False) or {},
        thumbnail_url=thumbnail.get("url") if isinstance(thumbnail.get("url"), str) else "",
        training_images=[parse_training_image(i) for i in images if isinstance(i, dict)],
        # The model object does not name its training job; kept for APIs that would.
        job_id=_field(data, "jobId", "str", "model", required=False) or "",
        error=_field(data, "error", "str", "model", required=False) or "",
        raw=dict(data),
    )


# --- error bodies -----------------------------------------------------------------------------


def _readable(response: requests.Response) -> str:
    """Find a human message in whatever came back: JSON, HTML, text or nothing."""
    text = ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("message", "error", "detail", "reason", "title"):
            value = body.get(key)
            if isinstance(value, dict):
                value = value.get("message")
            if isinstance(value, str) and value.strip():
                text = value
                break
    elif isinstance(body, str):
        text = body
    if not text:
        text = _text_of(response)
    text = " ".join(text.split())
    if not text:
        reason = response.reason or "no reason given"
        return f"Scenario answered {response.status_code} ({reason}) with an empty body"
    if len(text) > MAX_MESSAGE_LENGTH:
        text = text[: MAX_MESSAGE_LENGTH - 1] + "…"
    return text


def _text_of(response: requests.Response) -> str:
    try:
        raw = response.text or ""
    except (UnicodeDecodeError, LookupError):
        return ""
    if "<" in raw and re.search(r"<(html|head|body|title|h1)\b", raw, re.I):
        for tag in ("title", "h1"):
            match = re.search(rf"<{tag}[^>]*>(.*?)</{tag}>", raw, re.I | re.S)
            if match and match.group(1).strip():
                return "Scenario answered an HTML page: " + unescape(
                    re.sub(r"<[^>]+>", " ", match.group(1))
                )
        return "Scenario answered an HTML page: " + unescape(re.sub(r"<[^>]+>", " ", raw))
    return raw


def _retry_after_seconds(raw: str | None) -> float | None:
    """Read a Retry-After header: seconds or an HTTP date."""
    raw = (raw or "").strip()
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _json_or_none(response: requests.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None


def _remaining_seconds(body: object) -> float | None:
    """A cooldown's `remainingSeconds`, at the top of the body or in its details."""
    if not isinstance(body, dict):
        return None
    for where in (body, body.get("details")):
        remaining = where.get("remainingSeconds") if isinstance(where, dict) else None
        if isinstance(remaining, int | float) and not isinstance(remaining, bool):
            return max(0.0, float(remaining))
    return None


def _retry_after(response: requests.Response) -> float | None:
    seconds = _retry_after_seconds(response.headers.get("Retry-After"))
    if seconds is not None:
        return seconds
    return _remaining_seconds(_json_or_none(response))


# The 429 body is not documented. A plan's cap on parallel trainings is recognised by this
# word anywhere in the body (its details, code or message), as seen in the wild.
PARALLEL_LIMIT = "parallel-training"


def _launch_limit(response: requests.Response, message: str) -> str:
    """Say which account limit a 429 names, in words; "" for a plain rate limit."""
    body = _json_or_none(response)
    text = str(body) if body is not None else ""
    if PARALLEL_LIMIT in text or PARALLEL_LIMIT in message:
        return f"Scenario's plan limit on parallel trainings is reached: {message}"
    remaining = _remaining_seconds(body)
    if remaining is not None:
        return f"Scenario asks to wait {remaining:g} s before the next launch: {message}"
    return ""


def error_for(response: requests.Response, *, write: bool) -> ScenarioError:
    """Map an unsuccessful answer to the ScenarioError a caller can act on."""
    status, message = response.status_code, _readable(response)
    if status in (401, 403):
        return AuthError(message, status=status)
    if status == 404:
        return NotFound(message, status=status)
    if status == 429:
        return RateLimited(
            message,
            status=status,
            retry_after=_retry_after(response),
            launch_limit=_launch_limit(response, message),
            cooldown=_remaining_seconds(_json_or_none(response)),
        )
    if status >= 500:
        if write:
            # A gateway error can come back after the backend acted: only a read-back tells.
            return OutcomeUnknown(
                f"Scenario answered {status} and may or may not have done it: {message}",
                status=status,
                retry_after=_retry_after(response),
            )
        return Unavailable(message, status=status, retry_after=_retry_after(response))
    if status == 409 or "already training" in message.lower():
        return AlreadyTraining(message, status=status)
    return BadRequest(message, status=status)


# --- retries ----------------------------------------------------------------------------------


class _Retry(Retry):
    """urllib3 Retry that waits out Retry-After only within a budget for the whole call.

    `wait_budget` is what is left of settings.SCENARIO_MAX_RETRY_AFTER for this call. An
    answer asking for a longer wait is handed back to the client (raise_on_status is off, so
    urllib3 returns it), which turns it into RateLimited / Unavailable with `retry_after`.
    """

    def __init__(self, *args, wait_budget: float = 30.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.wait_budget = wait_budget

    def new(self, **kwargs) -> _Retry:
        kwargs.setdefault("wait_budget", self.wait_budget)
        return super().new(**kwargs)

    def increment(self, method=None, url=None, response=None, error=None, **kwargs):
        wait = None
        if response is not None and self.respect_retry_after_header:
            wait = _retry_after_seconds(response.headers.get("Retry-After"))
            if wait is not None and wait > self.wait_budget:
                raise MaxRetryError(kwargs.get("_pool"), url, ResponseError("Retry-After too long"))
        retry = super().increment(method, url, response=response, error=error, **kwargs)
        if wait:
            retry.wait_budget = self.wait_budget - wait
        return retry


class _BasicAuth(HTTPBasicAuth):
    """Basic auth whose repr names no credentials."""

    def __repr__(self) -> str:
        return "<basic auth>"


# --- the client -------------------------------------------------------------------------------


class ScenarioClient:
    """Talk to Scenario's training API (or the simulator) over one HTTP session."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        api_secret: str,
        *,
        connect_timeout: float = 3.05,
        read_timeout: float = 20.0,
        max_retry_after: float = 30.0,
        retries: int = 4,
        backoff_factor: float = 0.5,
    ):
        self.base_url = base_url.rstrip("/")
        self.timeout = (connect_timeout, read_timeout)
        self.max_retry_after = max_retry_after
        self.session = requests.Session()
        self.session.auth = _BasicAuth(api_key, api_secret)
        self.session.headers.update({"Accept": "application/json"})
        retry = _Retry(
            total=retries,
            connect=retries,
            # A read timeout already cost read_timeout seconds: one more try at most.
            read=min(1, retries),
            status=retries,
            other=0,
            allowed_methods=frozenset({"GET"}),
            status_forcelist=RETRY_STATUSES,
            backoff_factor=backoff_factor,
            backoff_max=10,
            backoff_jitter=backoff_factor,
            respect_retry_after_header=True,
            retry_after_max=max_retry_after,
            wait_budget=max_retry_after,
            raise_on_status=False,
        )
        adapter = HTTPAdapter(max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    @classmethod
    def from_settings(cls) -> ScenarioClient:
        from django.conf import settings

        return cls(
            settings.SCENARIO_API_URL,
            settings.SCENARIO_API_KEY,
            settings.SCENARIO_API_SECRET,
            connect_timeout=settings.SCENARIO_CONNECT_TIMEOUT,
            read_timeout=settings.SCENARIO_READ_TIMEOUT,
            max_retry_after=settings.SCENARIO_MAX_RETRY_AFTER,
        )

    def __repr__(self) -> str:
        return f"<ScenarioClient {self.base_url}>"

    def close(self) -> None:
        self.session.close()

    # --- endpoints ---------------------------------------------------------------------------

    def quote(
        self, model_id: str, parameters: Mapping, *, training_images_count: int | None = None
    ) -> Quote:
        """Ask what a training would cost (dry run): nothing starts."""
        query: dict[str, Any] = {"dryRun": "true"}
        if training_images_count is not None:
            query["trainingImagesCount"] = training_images_count
        # A dry run changes nothing, so a lost answer is simply unavailable, not unknown.
        data = self._call(
            "PUT",
            f"/models/{_id(model_id)}/train",
            params=query,
            json={"parameters": dict(parameters)},
            write=False,
        )
        if isinstance(data.get("job"), dict):
            # Scenario launched a training although a dry run was asked for.
            launch = _parse_launch(data)
            raise DryRunLaunched(
                f"Scenario started a training (job {launch.job.id}) instead of only quoting it",
                launch,
            )
        return parse_quote(data)

    def trigger(self, model_id: str, parameters: Mapping) -> Launch:
        """Start a training. Never retried once sent: see OutcomeUnknown in the module doc."""
        data = self._call(
            "PUT", f"/models/{_id(model_id)}/train", json={"parameters": dict(parameters)}
        )
        if not isinstance(data.get("job"), dict):
            raise ResponseShapeError(
                "Scenario's answer to a launch carries no job: it is not a launched training"
            )
        return _parse_launch(data)

    def cancel_training(self, model_id: str) -> Model:
        data = self._call(
            "POST", f"/models/{_id(model_id)}/train/action", json={"action": "cancel"}
        )
        return parse_model(_object(data, "model"))

    def get_model(self, model_id: str) -> Model:
        return parse_model(_object(self._call("GET", f"/models/{_id(model_id)}"), "model"))

    def iter_models(self, *, page_size: int = 100, status: str = "") -> Iterator[Model]:
        """Yield every model (or those whose status is `status`), page after page."""
        token, seen = None, set()
        while True:
            query: dict[str, Any] = {"pageSize": page_size}
            if status:
                query["status"] = status
            if token:
                query["paginationToken"] = token
            data = self._call("GET", "/models", params=query)
            for item in _field(data, "models", "list", "answer"):
                if not isinstance(item, dict):
                    raise ResponseShapeError("Scenario's answer has a model that is not an object")
                yield parse_model(item)
            token = data.get("nextPaginationToken")
            if not isinstance(token, str) or not token or token in seen:
                return
            seen.add(token)

    def create_model(self, *, name: str, type: str) -> Model:  # noqa: A002 - Scenario's name
        data = self._call("POST", "/models", json={"name": name, "type": type})
        return parse_model(_object(data, "model"))

    def add_training_image(
        self,
        model_id: str,
        *,
        asset_id: str | None = None,
        data_url: str | None = None,
        name: str | None = None,
    ) -> TrainingImage:
        if bool(asset_id) == bool(data_url):
            raise ValueError("Give exactly one of asset_id or data_url")
        body: dict[str, Any] = {"assetId": asset_id} if asset_id else {"data": data_url}
        if name:
            body["name"] = name
        data = self._call("POST", f"/models/{_id(model_id)}/training-images", json=body)
        return parse_training_image(_object(data, "trainingImage"))

    def add_training_images(self, model_id: str, asset_ids: list[str]) -> list[TrainingImage]:
        """Attach up to 10 assets at once (batch mode); a failed batch attaches none."""
        if not 1 <= len(asset_ids) <= MAX_ASSET_IDS_PER_REQUEST:
            raise ValueError(f"Give 1 to {MAX_ASSET_IDS_PER_REQUEST} asset ids")
        path = f"/models/{_id(model_id)}/training-images"
        data = self._call("POST", path, json={"assetIds": list(asset_ids)})
        listed = data.get("trainingImages")
        if isinstance(listed, list):
            return [parse_training_image(i) for i in listed if isinstance(i, dict)]
        return [parse_training_image(_object(data, "trainingImage"))]

    def replace_training_image(
        self, model_id: str, image_id: str, *, asset_id: str = "", description: str | None = None
    ) -> TrainingImage:
        """Replace an image by another asset, or set its caption (`description`).

        The subset documents `description` in the training image's answer but not in this
        request's body; its schemas allow extra fields, and this is where a caption can go.
        """
        body: dict[str, Any] = {"assetId": asset_id} if asset_id else {}
        if description is not None:
            body["description"] = description
        path = f"/models/{_id(model_id)}/training-images/{_id(image_id)}"
        data = self._call("PUT", path, json=body)
        return parse_training_image(_object(data, "trainingImage"))

    def delete_training_image(self, model_id: str, image_id: str) -> None:
        self._call("DELETE", f"/models/{_id(model_id)}/training-images/{_id(image_id)}")

    def set_training_image_pairs(self, model_id: str, pairs: list[dict]) -> int:
        """Replace every before/after pair: [{sourceId, targetId, instruction}]."""
        path = f"/models/{_id(model_id)}/training-images/pairs"
        data = self._call("PUT", path, json=list(pairs))
        return int(_field(data, "count", "number", "answer"))

    def create_upload(self, *, file_name: str, size: int, content_type: str) -> Upload:
        """Open a one-part image upload; its part goes to `part_urls[0]`."""
        body = {
            "fileName": file_name,
            "fileSize": size,
            "contentType": content_type,
            "kind": "image",
            "parts": 1,
        }
        return parse_upload(_object(self._call("POST", "/uploads", json=body), "upload"))

    def put_upload_part(self, url: str, content: bytes) -> None:
        """PUT a part to its presigned URL: the URL is the credential, so no basic auth."""
        try:
            response = requests.put(url, data=content, timeout=self.timeout)
        except requests.RequestException as error:
            # Putting the same bytes to the same part again is harmless.
            raise Unavailable(f"Could not send the file ({type(error).__name__})") from None
        logger.info("Scenario upload part -> %s", response.status_code)
        if not 200 <= response.status_code < 300:
            raise error_for(response, write=False)

    def complete_upload(self, upload_id: str) -> Upload:
        path = f"/uploads/{_id(upload_id)}/action"
        data = self._call("POST", path, json={"action": "complete"})
        return parse_upload(_object(data, "upload"))

    def get_upload(self, upload_id: str) -> Upload:
        return parse_upload(_object(self._call("GET", f"/uploads/{_id(upload_id)}"), "upload"))

    def set_epoch(self, model_id: str, epoch: str) -> Model:
        data = self._call("PUT", f"/models/{_id(model_id)}", json={"epoch": epoch})
        return parse_model(_object(data, "model"))

    def get_job(self, job_id: str) -> Job:
        return parse_job(_object(self._call("GET", f"/jobs/{_id(job_id)}"), "job"))

    def find_training_job(self, model_id: str, *, since: datetime) -> Job | None:
        """Find the training job of `model_id` created at or after `since`, or None.

        Walks `GET /jobs?types=…` page after page (at most JOBS_MAX_PAGES) and keeps the
        newest job whose metadata names the model. `types` is sent comma-separated.
        """
        query: dict[str, Any] = {
            "types": ",".join(TRAINING_JOB_TYPES),
            "pageSize": JOBS_PAGE_SIZE,
        }
        found, seen = None, set()
        for _ in range(JOBS_MAX_PAGES):
            data = self._call("GET", "/jobs", params=query)
            for item in _field(data, "jobs", "list", "answer"):
                if not isinstance(item, dict):
                    raise ResponseShapeError("Scenario's answer has a job that is not an object")
                job = parse_job(item)
                if job.model_id != model_id or job.created_at is None or job.created_at < since:
                    continue
                if found is None or job.created_at > found.created_at:
                    found = job
            token = data.get("nextPaginationToken")
            if not isinstance(token, str) or not token or token in seen:
                break
            seen.add(token)
            query["paginationToken"] = token
        return found

    def cancel_job(self, job_id: str) -> Job:
        data = self._call("POST", f"/jobs/{_id(job_id)}/action", json={"action": "cancel"})
        return parse_job(_object(data, "job"))

    # --- plumbing ----------------------------------------------------------------------------

    def _call(self, method: str, path: str, *, write: bool | None = None, **kwargs) -> dict:
        """Send one request; return the JSON object of a 2xx answer or raise ScenarioError."""
        write = method != "GET" if write is None else write
        started = time.monotonic()
        try:
            response = self.session.request(
                method, self.base_url + path, timeout=self.timeout, **kwargs
            )
        except requests.RequestException as error:
            raise self._transport_error(error, method, path, write) from None
        elapsed = (time.monotonic() - started) * 1000
        logger.info("Scenario %s %s -> %s in %.0f ms", method, path, response.status_code, elapsed)
        if not 200 <= response.status_code < 300:
            raise error_for(response, write=write)
        try:
            data = response.json()
        except ValueError:
            raise ResponseShapeError(
                f"Scenario answered {response.status_code} with a body that is not JSON",
                status=response.status_code,
            ) from None
        if not isinstance(data, dict):
            raise ResponseShapeError("Scenario's answer is not a JSON object")
        return data

    def _transport_error(
        self, error: requests.RequestException, method: str, path: str, write: bool
    ) -> ScenarioError:
        kind = type(error).__name__
        logger.warning("Scenario %s %s failed: %s", method, path, kind)
        if isinstance(error, requests.ConnectTimeout) or _never_connected(error):
            return Unavailable(f"Could not connect to Scenario ({kind})")
        if write:
            return OutcomeUnknown(
                f"Lost the answer to {method} {path} ({kind}); it may have taken effect"
            )
        if isinstance(error, requests.Timeout):
            return Unavailable(f"Scenario did not answer in time ({kind})")
        return Unavailable(f"Could not reach Scenario ({kind})")


def _never_connected(error: requests.RequestException) -> bool:
    """True when the connection was refused or could not be opened (nothing was sent)."""
    reason = error.args[0] if error.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, NewConnectionError | NameResolutionError)


def _id(value: str) -> str:
    return url_quote(str(value), safe="")
