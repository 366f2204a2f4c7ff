"""Scenario's training endpoints, as JSON views mounted under /sim/v1/.

Every API view goes through `endpoint`: it logs the request, applies the fault switch,
checks basic auth against SCENARIO_API_KEY / SCENARIO_API_SECRET and turns ApiError into
a JSON error body ({"message": …}). Sample images are public, like Scenario's asset URLs,
so a browser can show them.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps

from django.conf import settings
from django.db import transaction
from django.db.models import Prefetch, Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from simulator import clock, events, faults, images, parameters, pricing, spec
from simulator.lifecycle import Schedule, train_seconds
from simulator.models import (
    RequestLog,
    SimAsset,
    SimJob,
    SimModel,
    SimScheduleStamp,
    SimTrainingImage,
)
from simulator.render import Renderer, epoch_name

DRY_RUN_STATUS = 269  # what Scenario's SDK documents for a dry run
# A model whose name holds this starts a training even on a dry run (a misbehaving API).
IGNORES_DRY_RUN = "ignores-dry-run"
PARALLEL_LIMIT = "parallel-training"
MODEL_TYPES = (
    "custom elevenlabs-voice flux.1 flux.1-composition flux.1-kontext-dev flux.1-kontext-lora "
    "flux.1-krea-dev flux.1-krea-lora flux.1-lora flux.1-pro flux.1.1-pro-ultra "
    "flux.2-dev-edit-lora flux.2-dev-lora flux.2-klein-4b-edit-lora flux.2-klein-4b-lora "
    "flux.2-klein-9b-edit-lora flux.2-klein-9b-lora flux.2-klein-base-4b-edit-lora "
    "flux.2-klein-base-4b-lora flux.2-klein-base-9b-edit-lora flux.2-klein-base-9b-lora "
    "flux1.1-pro gpt-image-1 qwen-image-2512-lora qwen-image-edit-2509-lora "
    "qwen-image-edit-2511-lora qwen-image-edit-lora qwen-image-lora sd-1_5 sd-1_5-composition "
    "sd-1_5-lora sd-xl sd-xl-composition sd-xl-lora zimage-de-turbo-lora zimage-lora "
    "zimage-turbo-lora"
).split()
MAX_PAGE_SIZE = 500
MAX_JOBS_PAGE_SIZE = 200  # GET /jobs: "default value is 10, maximum value is 200"
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
ASSET_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_NAME_CHARS = 300
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(;[^,;]*)*?;base64,(?P<data>.*)$", re.S)


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra):
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


# --- plumbing ---------------------------------------------------------------------------------


def endpoint(*methods: str, public: bool = False) -> Callable:
    """Wrap a view with logging, faults, auth, method check and JSON errors."""

    def decorate(view: Callable) -> Callable:
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, **kwargs) -> HttpResponse:
            at = clock.now()
            response = _answer(request, view, methods, public, kwargs)
            model_id = kwargs.get("model_id") or getattr(request, "sim_model_id", "")
            RequestLog.objects.create(
                method=request.method[:10],
                path=_storable_text(request.path)[:500],
                model_id=_storable_text(model_id)[:64],
                dry_run=getattr(request, "sim_dry_run", False),
                status=response.status_code,
                at=at,
            )
            return response

        return wrapper

    return decorate


def _answer(request, view, methods, public, kwargs) -> HttpResponse:
    rule = faults.take_rule(request.method, request.path)
    if not public:
        rates = faults.current_rates()
        if rates.latency_ms:
            time.sleep(rates.latency_ms / 1000)
    before = rule is not None and not rule.after_processing
    if before and rule.delay_ms:
        time.sleep(rule.delay_ms / 1000)
    if before and rule.status:
        return faults.rule_response(rule)
    if not public:
        injected = faults.random_fault(rates)
        if injected is not None:
            return injected
        if not _authorized(request):
            response = JsonResponse({"message": "Unauthorized"}, status=401)
            response["WWW-Authenticate"] = 'Basic realm="Scenario simulator"'
            return response
    try:
        if methods and request.method not in methods:
            raise ApiError(405, f"Method {request.method} is not allowed here")
        _check_storable([request.path, *request.GET.lists()], "The address")
        response = view(request, **kwargs)
    except ApiError as error:
        response = JsonResponse({"message": error.message, **error.extra}, status=error.status)
    if rule is not None and rule.after_processing:
        # The work is done; only the answer is slow, or lost on its way back.
        time.sleep(rule.delay_ms / 1000)
        if rule.status:
            return faults.rule_response(rule)
    if not public:
        return faults.random_late_fault(rates) or response
    return response


def _authorized(request: HttpRequest) -> bool:
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        key, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    # Compare both halves every time, in constant time.
    key_ok = hmac.compare_digest(key.encode(), settings.SCENARIO_API_KEY.encode())
    secret_ok = hmac.compare_digest(secret.encode(), settings.SCENARIO_API_SECRET.encode())
    return key_ok and secret_ok and bool(settings.SCENARIO_API_KEY)


def _body(request: HttpRequest) -> dict:
    if not request.body:
        return {}
    try:
        body = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "Request body must be JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "Request body must be a JSON object")
    _check_storable(body, "The request body")
    return body


def _check_storable(value: object, where: str) -> None:
    """Refuse text no database keeps: a NUL byte, or a lone surrogate from a JSON escape."""
    if isinstance(value, str):
        if _UNSTORABLE.search(value):
            raise ApiError(400, f"{where} holds a NUL byte or a lone surrogate")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_storable(key, where)
            _check_storable(item, where)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_storable(item, where)


def _storable_text(value: object) -> str:
    return _UNSTORABLE.sub("?", str(value))


def _name(value: object) -> str:
    if not isinstance(value, str):
        raise ApiError(400, "name must be a string")
    if len(value) > MAX_NAME_CHARS:
        raise ApiError(400, f"name must be at most {MAX_NAME_CHARS} characters")
    return value


def _flag(raw: str | None) -> bool:
    return (raw or "").strip().lower() in {"true", "1", "yes"}


def _model(model_id: str, *, lock: bool = False) -> SimModel:
    queryset = SimModel.objects.select_for_update() if lock else SimModel.objects.all()
    model = queryset.filter(pk=model_id).first()
    if model is None:
        raise ApiError(404, f"Model {model_id} not found")
    return model


def _images(model: SimModel):
    return SimTrainingImage.objects.filter(model=model).defer("data")


def _renderer(request, now=None) -> Renderer:
    return Renderer(request, Schedule.load(now or clock.now()))


def _model_answer(request, model_id: str, now=None, status: int = 200, **extra) -> JsonResponse:
    model = SimModel.objects.prefetch_related(_prefetch_images()).get(pk=model_id)
    body = {"model": _renderer(request, now).model(model), **extra}
    return JsonResponse(body, status=status)


def _prefetch_images() -> Prefetch:
    return Prefetch("images", queryset=SimTrainingImage.objects.defer("data"))


# --- models -----------------------------------------------------------------------------------


@endpoint("GET", "POST")
def models_collection(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        return _create_model(request)
    return _list_models(request)


def _list_models(request: HttpRequest) -> JsonResponse:
    size = _page_size(request.GET.get("pageSize"))
    queryset = SimModel.objects.order_by("created_at", "id").prefetch_related(
        _prefetch_images(), "pairs"
    )
    token = request.GET.get("paginationToken")
    if token:
        queryset = queryset.filter(id__in=_after_token(token))
    renderer = _renderer(request)
    status = (request.GET.get("status") or "").strip()
    if status:
        queryset = _with_status(queryset, renderer.schedule, status)
    page = list(queryset[: size + 1])
    body: dict = {"models": [renderer.model(m, all_images=False) for m in page[:size]]}
    if len(page) > size:
        body["nextPaginationToken"] = _token_for(page[size - 1])
    return JsonResponse(body)


def _with_status(queryset, schedule: Schedule, status: str):
    """Keep the models whose status is `status` (a model never trained is "new")."""
    trained = schedule.model_statuses()
    if status == "new":
        return queryset.exclude(id__in=list(trained))
    return queryset.filter(id__in=[m for m, s in trained.items() if s == status])


def _page_size(raw: str | None, *, default: int = 100, maximum: int = MAX_PAGE_SIZE) -> int:
    if raw in (None, ""):
        return default
    try:
        size = int(raw)
    except ValueError:
        raise ApiError(400, f"pageSize must be a number, not {raw!r}") from None
    if not 1 <= size <= maximum:
        raise ApiError(400, f"pageSize must be between 1 and {maximum}")
    return size


def _token_for(model: SimModel) -> str:
    raw = json.dumps([model.created_at.isoformat(), model.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _after_token(token: str):
    try:
        padded = token + "=" * (-len(token) % 4)
        created, model_id = json.loads(base64.urlsafe_b64decode(padded))
        if not isinstance(model_id, str):
            raise TypeError
        _check_storable(model_id, "paginationToken")
        # In UTC now: a moment whose offset moves it past year 9999 is refused here.
        created_at = datetime.fromisoformat(created).astimezone(UTC)
    except (ValueError, TypeError, OverflowError, binascii.Error):
        raise ApiError(400, "paginationToken is not valid") from None
    later = Q(created_at__gt=created_at) | Q(created_at=created_at, id__gt=model_id)
    return SimModel.objects.filter(later).values("id")


def _create_model(request: HttpRequest) -> JsonResponse:
    body = _body(request)
    model_type = body.get("type")
    if model_type not in MODEL_TYPES:
        raise ApiError(400, f"type must be one of Scenario's model types, not {model_type!r}")
    name = _name(body.get("name", ""))
    now = clock.now()
    model = SimModel.objects.create(name=name, type=model_type, created_at=now, updated_at=now)
    request.sim_model_id = model.id
    return _model_answer(request, model.id, now)


@endpoint("GET", "PUT")
def model_detail(request: HttpRequest, model_id: str) -> HttpResponse:
    if request.method == "PUT":
        return _update_model(request, model_id)
    _model(model_id)
    return _model_answer(request, model_id)


def _update_model(request: HttpRequest, model_id: str) -> JsonResponse:
    body = _body(request)
    unknown = sorted(set(body) - {"epoch", "name"})
    if unknown:
        raise ApiError(400, f"The simulator cannot update {', '.join(unknown)}")
    with transaction.atomic():
        model = _model(model_id, lock=True)
        now = clock.now()
        if "epoch" in body:
            _check_epoch(model, body["epoch"], Schedule.load(now))
            model.selected_epoch = body["epoch"]
        if "name" in body:
            model.name = _name(body["name"])
        model.updated_at = now
        model.save()
    return _model_answer(request, model_id, now)


def _check_epoch(model: SimModel, epoch: object, schedule: Schedule) -> None:
    timeline = schedule.latest_for(model.id)
    state = schedule.state(timeline) if timeline else None
    if state is None or state.model_status != "trained":
        raise ApiError(400, "epoch can only be set on a trained model")
    names = [epoch_name(i) for i in range(1, state.epochs_done + 1)]
    if epoch not in names:
        raise ApiError(400, f"epoch {epoch!r} does not exist for this model")


def _decode_data_url(data: object) -> tuple[str, bytes]:
    match = DATA_URL.match(data) if isinstance(data, str) else None
    if match is None:
        raise ApiError(400, "data must be a base64 data URL (data:image/png;base64,…)")
    try:
        payload = base64.b64decode(match["data"], validate=True)
    except binascii.Error:
        raise ApiError(400, "data is not valid base64") from None
    if not payload:
        raise ApiError(400, "data is empty")
    if len(payload) > MAX_UPLOAD_BYTES:
        raise ApiError(400, f"data is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
    return match["type"] or "application/octet-stream", payload


# --- training ---------------------------------------------------------------------------------


def _is_training(model: SimModel, schedule: Schedule) -> bool:
    timeline = schedule.latest_for(model.id)
    return timeline is not None and schedule.is_active(timeline)


@endpoint("PUT")
def train(request: HttpRequest, model_id: str) -> HttpResponse:
    dry_run = request.sim_dry_run = _flag(request.GET.get("dryRun"))
    body = _body(request)
    raw = body.get("parameters") or {}
    if not isinstance(raw, dict):
        raise ApiError(400, "parameters must be an object")
    with transaction.atomic():
        model = _model(model_id, lock=not dry_run)
        now = clock.now()
        count = _image_count(request, model, dry_run)
        facts = _training_facts(model, raw, count)
        if dry_run and IGNORES_DRY_RUN not in model.name.lower():
            return _model_answer(
                request,
                model_id,
                now,
                status=DRY_RUN_STATUS,
                creativeUnitsCost=facts["cost"],
                creativeUnitsDiscount=facts["discount"],
            )
        schedule = Schedule.load(now)
        if _is_training(model, schedule):
            raise ApiError(400, "Model is already training")
        _check_parallel_limit(schedule)
        job = SimJob.objects.create(
            model=model,
            requested_at=now,
            time_scale=float(settings.SIMULATOR_TIME_SCALE),
            will_fail="fail" in model.name.lower(),
            owner_id=model.owner_id,
            **facts,
        )
    events.watch(job.id, model.id)
    renderer = _renderer(request, now)
    timeline = renderer.schedule.timeline(job.id)
    model = SimModel.objects.prefetch_related(_prefetch_images()).get(pk=model_id)
    return JsonResponse(
        {
            "job": renderer.job(timeline),
            "model": renderer.model(model),
            "creativeUnitsCost": job.cost,
            "creativeUnitsDiscount": job.discount,
        }
    )


def _check_parallel_limit(schedule: Schedule) -> None:
    """Refuse a launch past the plan's cap on parallel trainings (SIMULATOR_PARALLEL_TRAININGS).

    The reference does not document this answer; Scenario is known to refuse such a launch
    with a 429, and the simulator names the limit in the body's details.
    """
    cap = int(getattr(settings, "SIMULATOR_PARALLEL_TRAININGS", 0) or 0)
    if not cap:
        return
    active = sum(1 for timeline in schedule.timelines if schedule.is_active(timeline))
    if active >= cap:
        raise ApiError(
            429,
            f"Your plan allows {cap} parallel trainings; wait for one to finish",
            details={"limit": PARALLEL_LIMIT, "max": cap, "current": active},
        )


def _image_count(request: HttpRequest, model: SimModel, dry_run: bool) -> int:
    raw = request.GET.get("trainingImagesCount")
    if dry_run and raw not in (None, ""):
        try:
            count = int(float(raw))
        except (ValueError, OverflowError):
            raise ApiError(400, f"trainingImagesCount must be a number, not {raw!r}") from None
    else:
        count = _images(model).count()
    if count < 1:
        raise ApiError(400, "Model has no training images")
    return count


def _training_facts(model: SimModel, raw: dict, count: int) -> dict:
    """Check the parameters (simulator.spec) and fix what the training will be."""
    trainer = spec.trainer_of(model.type)
    if trainer is None:
        raise ApiError(400, f"Model type {model.type} cannot be trained")
    clean, errors = parameters.check(model.type, raw, count)
    if errors:
        raise ApiError(400, parameters.describe(errors), errors=errors)
    steps = parameters.training_steps(model.type, clean, count)
    epochs = parameters.epochs(model.type, clean)
    price = pricing.quote(
        trainer.key,
        images=count,
        steps=steps,
        epochs=epochs,
        prompts=len(clean.get("samplePrompts") or []),
    )
    return {
        "job_type": trainer.job_type,
        "parameters": clean,
        "image_count": count,
        "steps": steps,
        "epochs": epochs,
        "train_seconds": train_seconds(steps),
        "cost": price.cost,
        "discount": price.discount,
    }


@endpoint("POST")
def train_action(request: HttpRequest, model_id: str) -> HttpResponse:
    _require_cancel(_body(request))
    with transaction.atomic():
        model = _model(model_id, lock=True)
        now = clock.now()
        schedule = Schedule.load(now)
        timeline = schedule.latest_for(model.id)
        if timeline is None or not schedule.is_active(timeline):
            raise ApiError(400, "Model is not training")
        SimJob.objects.filter(pk=timeline.job.pk).update(canceled_at=now)
        SimScheduleStamp.bump()
    return _model_answer(request, model_id, now)


def _require_cancel(body: dict) -> None:
    if body.get("action") != "cancel":
        raise ApiError(400, f"action must be 'cancel', not {body.get('action')!r}")


# --- jobs -------------------------------------------------------------------------------------


def _job(request: HttpRequest, job_id: str) -> SimJob:
    job = SimJob.objects.filter(pk=job_id).first()
    if job is None:
        raise ApiError(404, f"Job {job_id} not found")
    request.sim_model_id = job.model_id
    return job


@endpoint("GET")
def jobs_collection(request: HttpRequest) -> HttpResponse:
    """List jobs, newest first, filtered by type (or types, comma-separated) and status.

    The simulator keeps no job authors, so authorId filters nothing; hideResults neither,
    since no training job has hidden results. Items have the documented list shape, which
    has no billing: GET /jobs/{jobId} has it.
    """
    query = request.GET
    size = _page_size(query.get("pageSize"), default=10, maximum=MAX_JOBS_PAGE_SIZE)
    raw_types = query.get("types") or query.get("type") or ""
    types = {t.strip() for t in raw_types.split(",") if t.strip()}
    status = (query.get("status") or "").strip()
    renderer = _renderer(request)
    timelines = sorted(
        renderer.schedule.timelines, key=lambda t: (t.job.requested_at, t.job.id), reverse=True
    )
    token = query.get("paginationToken")
    if token:
        timelines = timelines[_job_offset(token, len(timelines)) :]
    page = []
    for index, timeline in enumerate(timelines):
        if types and timeline.job.job_type not in types:
            continue
        if status and renderer.schedule.state(timeline).job_status != status:
            continue
        if len(page) == size:
            body = {"jobs": page, "nextPaginationToken": _job_token(timelines[index].job)}
            return JsonResponse(body)
        item = renderer.job(timeline)
        item.pop("billing", None)
        page.append(item)
    return JsonResponse({"jobs": page})


def _job_token(job: SimJob) -> str:
    raw = json.dumps([job.requested_at.isoformat(), job.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _job_offset(token: str, count: int) -> int:
    """Where the page a token names starts: at its job, newest first."""
    try:
        padded = token + "=" * (-len(token) % 4)
        requested, job_id = json.loads(base64.urlsafe_b64decode(padded))
        requested_at = datetime.fromisoformat(requested)
    except (ValueError, TypeError, binascii.Error):
        raise ApiError(400, "paginationToken is not valid") from None
    newer = SimJob.objects.filter(
        Q(requested_at__gt=requested_at) | Q(requested_at=requested_at, id__gt=job_id)
    )
    return min(count, newer.count())


@endpoint("GET")
def job_detail(request: HttpRequest, job_id: str) -> HttpResponse:
    _job(request, job_id)
    renderer = _renderer(request)
    return JsonResponse({"job": renderer.job(renderer.schedule.timeline(job_id))})


@endpoint("POST")
def job_action(request: HttpRequest, job_id: str) -> HttpResponse:
    _require_cancel(_body(request))
    job = _job(request, job_id)
    with transaction.atomic():
        _model(job.model_id, lock=True)
        now = clock.now()
        schedule = Schedule.load(now)
        if not schedule.is_active(schedule.timeline(job_id)):
            raise ApiError(400, "Job is not running: it has already ended")
        SimJob.objects.filter(pk=job_id).update(canceled_at=now)
        SimScheduleStamp.bump()
    renderer = _renderer(request, now)
    return JsonResponse({"job": renderer.job(renderer.schedule.timeline(job_id))})


# --- pictures and the rest --------------------------------------------------------------------


@endpoint("GET", public=True)
def sample_image(request: HttpRequest, job_id: str, epoch: str, prompt: int) -> HttpResponse:
    job = _job(request, job_id)
    schedule = Schedule.load(clock.now())
    timeline = schedule.timeline(job_id)
    prompts = job.parameters.get("samplePrompts") or []
    done = schedule.state(timeline).epochs_done if timeline else 0
    names = [epoch_name(i) for i in range(1, done + 1)]
    if epoch not in names or not 0 <= prompt < len(prompts):
        raise ApiError(404, "No such sample (yet)")
    svg = images.sample_svg(
        job_id=job_id,
        epoch=epoch,
        epoch_index=names.index(epoch) + 1,
        epochs=job.epochs,
        prompt=prompts[prompt],
        prompt_index=prompt,
    )
    return _picture(svg, "image/svg+xml")


@endpoint("GET", public=True)
def asset_image(request: HttpRequest, asset_id: str) -> HttpResponse:
    image = SimTrainingImage.objects.filter(asset_id=asset_id).first()
    if image is None:
        image = SimAsset.objects.filter(pk=asset_id).first()
        if image is None:
            raise ApiError(404, f"Asset {asset_id} not found")
        return _picture(bytes(image.data), image.content_type)
    request.sim_model_id = image.model_id
    if image.data:
        return _picture(bytes(image.data), image.content_type)
    return _picture(images.placeholder_svg(asset_id=asset_id, label=image.name), "image/svg+xml")


def _picture(content: bytes, content_type: str) -> HttpResponse:
    response = HttpResponse(content, content_type=content_type)
    # Derived from immutable facts: safe to cache for a long time.
    response["Cache-Control"] = "public, max-age=86400, immutable"
    return response


@endpoint()
def not_found(request: HttpRequest, **kwargs) -> HttpResponse:
    raise ApiError(404, "Not found")
