"""Every simulator answer has the documented shape of Scenario's `model` and `job` objects.

The tables below are copied from train-endpoints.md (the primary spec): required and
optional fields with their JSON types, and the enums. The test freezes the simulator's clock
at each stage of a training, so it walks every endpoint through every stage in a second.
"""

from __future__ import annotations

import base64
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta

import pytest

from simulator import seed
from simulator.lifecycle import Schedule
from simulator.models import SimJob

# --- the spec, as tables -----------------------------------------------------------------------

MODEL_REQUIRED = {
    "id": "string",
    "capabilities": "array",
    "collectionIds": "array",
    "createdAt": "string",
    "custom": "boolean",
    "exampleAssetIds": "array",
    "privacy": "string",
    "source": "string",
    "status": "string",
    "tags": "array",
    "trainingImagesNumber": "number",
    "type": "string",
    "updatedAt": "string",
}
MODEL_OPTIONAL = {
    "accessRestrictions": "number",
    "authorId": "string",
    "class": "object",
    "compliantModelIds": "array",
    "concepts": "array",
    "epoch": "string",
    "epochs": "array",
    "inputs": "array",
    "modelKeyword": "string",
    "name": "string",
    "negativePromptEmbedding": "string",
    "ownerId": "string",
    "parameters": "object",
    "parentModelId": "string",
    "performanceStats": "object",
    "promptEmbedding": "string",
    "shortDescription": "string",
    "softDeletionOn": "string",
    "thumbnail": "object",
    "trainingImagePairs": "array",
    "trainingImages": "array",
    "trainingProgress": "object",
    "trainingStats": "object",
    "uiConfig": "object",
    "userId": "string",
}
JOB_REQUIRED = {
    "createdAt": "string",
    "jobId": "string",
    "jobType": "string",
    "metadata": "object",
    "progress": "number",
    "status": "string",
    "statusHistory": "array",
    "updatedAt": "string",
}
JOB_OPTIONAL = {"authorId": "string", "billing": "object", "ownerId": "string"}
PROGRESS_REQUIRED = {"stage": "string", "updatedAt": "number"}
PROGRESS_OPTIONAL = {
    "position": "number",
    "progress": "number",
    "remainingTimeMs": "number",
    "startedAt": "number",
}
STATS_OPTIONAL = {
    "endedAt": "string",
    "queueDuration": "number",
    "startedAt": "string",
    "trainDuration": "number",
}
TRAINING_IMAGE_REQUIRED = {
    "id": "string",
    "automaticCaptioning": "string",
    "createdAt": "string",
    "description": "string",
    "downloadUrl": "string",
    "name": "string",
}
ASSET_REQUIRED = {"assetId": "string", "url": "string"}
BILLING_REQUIRED = {"cuCost": "number", "cuDiscount": "number"}
HISTORY_REQUIRED = {"date": "string", "status": "string"}
METADATA_OPTIONAL = {
    "assetIds": "array",
    "error": "string",
    "flow": "array",
    "hint": "string",
    "input": "object",
    "output": "object",
    "outputModelId": "string",
    "workflowId": "string",
    "workflowJobId": "string",
}

MODEL_STATUSES = {"copying", "failed", "new", "trained", "training", "training-canceled"}
PRIVACY = {"private", "public", "unlisted"}
SOURCES = {"civitai", "huggingface", "other", "scenario"}
STAGES = {"pending", "pending-captcha", "queued-for-train", "running-train", "starting-train"}
JOB_STATUSES = {
    "canceled",
    "failure",
    "finalizing",
    "in-progress",
    "pending",
    "queued",
    "success",
    "warming-up",
}
MODEL_TYPES = set(
    "custom elevenlabs-voice flux.1 flux.1-composition flux.1-kontext-dev flux.1-kontext-lora "
    "flux.1-krea-dev flux.1-krea-lora flux.1-lora flux.1-pro flux.1.1-pro-ultra "
    "flux.2-dev-edit-lora flux.2-dev-lora flux.2-klein-4b-edit-lora flux.2-klein-4b-lora "
    "flux.2-klein-9b-edit-lora flux.2-klein-9b-lora flux.2-klein-base-4b-edit-lora "
    "flux.2-klein-base-4b-lora flux.2-klein-base-9b-edit-lora flux.2-klein-base-9b-lora "
    "flux1.1-pro gpt-image-1 qwen-image-2512-lora qwen-image-edit-2509-lora "
    "qwen-image-edit-2511-lora qwen-image-edit-lora qwen-image-lora sd-1_5 sd-1_5-composition "
    "sd-1_5-lora sd-xl sd-xl-composition sd-xl-lora zimage-de-turbo-lora zimage-lora "
    "zimage-turbo-lora".split()
)
CAPABILITIES = set(
    "3d23d audio2audio audio2video controlnet controlnet_img2img controlnet_inpaint "
    "controlnet_inpaint_ip_adapter controlnet_ip_adapter controlnet_reference controlnet_texture "
    "img23d img2img img2img_ip_adapter img2img_texture img2txt img2video inpaint "
    "inpaint_ip_adapter outpaint reference reference_texture txt23d txt2audio txt2img "
    "txt2img_ip_adapter txt2img_texture txt2txt txt2video video23d video2audio video2img "
    "video2video".split()
)
JOB_TYPES = set(
    "assets-download canvas-export caption caption-llava custom describe-style detection embed "
    "flux flux-model-training generate-prompt image-generation image-prompt-editing inference "
    "mesh-preview-rendering model-download model-import model-training musubi-model-training "
    "openai-image-generation patch-image pixelate reframe remove-background repaint restyle "
    "segment skybox-3d skybox-base-360 skybox-hdri skybox-upscale-360 texture translate upload "
    "upscale upscale-skybox upscale-texture vectorize workflow".split()
)
ISO_FIELDS = {"createdAt", "updatedAt", "date", "startedAt", "endedAt"}

# --- checking ----------------------------------------------------------------------------------

TYPES = {
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def check_fields(obj, where, required, optional=None, *, iso=True):
    assert isinstance(obj, dict), f"{where} is not an object"
    optional = optional or {}
    for key in required:
        assert key in obj, f"{where}.{key} is required"
    for key, value in obj.items():
        kind = required.get(key) or optional.get(key)
        assert kind, f"{where}.{key} is not a documented field"
        assert TYPES[kind](value), f"{where}.{key} should be a {kind}, got {value!r}"
        if iso and key in ISO_FIELDS and kind == "string":
            assert value.endswith("Z"), f"{where}.{key} is not an ISO UTC date: {value}"
            datetime.fromisoformat(value)


class Coverage:
    def __init__(self):
        self.model_statuses, self.stages, self.job_statuses = set(), set(), set()

    def model(self, model, where="model"):
        check_fields(model, where, MODEL_REQUIRED, MODEL_OPTIONAL)
        assert model["status"] in MODEL_STATUSES
        assert model["privacy"] in PRIVACY
        assert model["source"] in SOURCES
        assert model["type"] in MODEL_TYPES
        assert set(model["capabilities"]) <= CAPABILITIES
        for key in ("collectionIds", "exampleAssetIds", "tags"):
            assert all(isinstance(v, str) for v in model[key])
        self.model_statuses.add(model["status"])
        if "trainingProgress" in model:
            progress = model["trainingProgress"]
            check_fields(
                progress, f"{where}.trainingProgress", PROGRESS_REQUIRED, PROGRESS_OPTIONAL
            )
            assert progress["stage"] in STAGES
            assert 0 <= progress.get("progress", 0) <= 1
            self.stages.add(progress["stage"])
        if "trainingStats" in model:
            check_fields(model["trainingStats"], f"{where}.trainingStats", {}, STATS_OPTIONAL)
        for i, epoch in enumerate(model.get("epochs", [])):
            check_fields(epoch, f"{where}.epochs[{i}]", {"epoch": "string"}, {"assets": "array"})
            for asset in epoch.get("assets", []):
                check_fields(asset, f"{where}.epochs[{i}].assets[]", ASSET_REQUIRED)
        for image in model.get("trainingImages", []):
            self.training_image(image, f"{where}.trainingImages[]")
        if "thumbnail" in model:
            check_fields(model["thumbnail"], f"{where}.thumbnail", ASSET_REQUIRED)

    def training_image(self, image, where="trainingImage"):
        check_fields(image, where, TRAINING_IMAGE_REQUIRED)

    def job(self, job, where="job"):
        check_fields(job, where, JOB_REQUIRED, JOB_OPTIONAL)
        assert job["jobType"] in JOB_TYPES
        assert job["status"] in JOB_STATUSES
        assert 0 <= job["progress"] <= 1
        check_fields(job["metadata"], f"{where}.metadata", {}, METADATA_OPTIONAL)
        assert all(isinstance(a, str) for a in job["metadata"].get("assetIds", []))
        for change in job["statusHistory"]:
            check_fields(change, f"{where}.statusHistory[]", HISTORY_REQUIRED)
            assert change["status"] in JOB_STATUSES
        assert job["statusHistory"][-1]["status"] == job["status"]
        if "billing" in job:
            check_fields(job["billing"], f"{where}.billing", BILLING_REQUIRED)
        self.job_statuses.add(job["status"])

    def error(self, body):
        assert isinstance(body.get("message"), str) and body["message"]


# --- the walk ----------------------------------------------------------------------------------

KEY, SECRET = "shape-key", "shape-secret"


class Api:
    def __init__(self, client, settings, schemas):
        token = base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
        self.client, self.settings, self.schemas = client, settings, schemas
        self.headers = {"HTTP_AUTHORIZATION": f"Basic {token}"}

    def at(self, moment):
        self.settings.SIMULATOR_FROZEN_CLOCK = moment

    def call(self, method, path, body=None, status=200):
        # An error is asked for on purpose: its request need not meet Scenario's schemas.
        with self.schemas.sending_invalid_requests() if status >= 400 else nullcontext():
            response = getattr(self.client, method)(
                f"/sim/v1{path}", data=body, content_type="application/json", **self.headers
            )
        assert response.status_code == status, response.content
        assert response["Content-Type"] == "application/json"
        return response.json()


@pytest.fixture
def api(client, settings, db, scenario_schemas):
    settings.SCENARIO_API_KEY, settings.SCENARIO_API_SECRET = KEY, SECRET
    settings.SIMULATOR_FAULTS = ""
    settings.SIMULATOR_TIME_SCALE = 1.0
    settings.SIMULATOR_GPU_SLOTS = 1
    return Api(client, settings, scenario_schemas)


def milestones(job_id, now):
    """The job's stage boundaries, as the simulator's queue walk places them."""
    return Schedule.load(now + timedelta(days=1)).timeline(job_id)


def between(a, b):
    return a + (b - a) / 2


def test_every_answer_has_the_documented_shape(api):
    cover = Coverage()
    t0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    api.at(t0)
    # Models: created through the API and through the seed.
    created = api.call("post", "/models", {"name": "Shape", "type": "flux.1-lora"})["model"]
    cover.model(created)
    image = api.call(
        "post", f"/models/{created['id']}/training-images", {"assetId": "asset_x", "name": "x.png"}
    )
    cover.training_image(image["trainingImage"])
    blocker = seed.create_model("Blocker", images=1)
    knight = seed.create_model("Knight", images=2)
    failing = seed.create_model("Bound to fail", images=1)
    cover.model(api.call("get", f"/models/{knight.id}")["model"])

    quote = api.call("put", f"/models/{knight.id}/train?dryRun=true", {}, status=269)
    cover.model(quote["model"])
    assert "job" not in quote, "a dry run starts nothing, so it names no job"
    assert isinstance(quote["creativeUnitsCost"], int | float)
    assert isinstance(quote["creativeUnitsDiscount"], int | float)

    api.call("put", f"/models/{blocker.id}/train", {})
    api.at(t0 + timedelta(milliseconds=1))
    parameters = {"parameters": {"nbEpochs": 2, "samplePrompts": ["a knight", "a horse"]}}
    launched = api.call("put", f"/models/{knight.id}/train", parameters)
    cover.model(launched["model"])
    cover.job(launched["job"])
    assert isinstance(launched["creativeUnitsCost"], int | float)
    job_id = launched["job"]["jobId"]

    t = milestones(job_id, t0)
    moments = [
        t.requested,
        between(t.ready, t.start),
        between(t.start, t.train_start),
        between(t.train_start, t.train_end),
        between(t.train_end, t.done),
        t.done + timedelta(seconds=1),
    ]
    for moment in moments:
        api.at(moment)
        cover.model(api.call("get", f"/models/{knight.id}")["model"])
        cover.job(api.call("get", f"/jobs/{job_id}")["job"])
        for listed in api.call("get", "/models?pageSize=2")["models"]:
            cover.model(listed, "models[]")

    trained = api.call("put", f"/models/{knight.id}", {"epoch": "000001"})["model"]
    cover.model(trained)
    assert trained["epoch"] == "000001"

    # A failure part-way, and two cancels: the model's and the job's.
    api.at(t.done + timedelta(seconds=2))
    failing_job = api.call("put", f"/models/{failing.id}/train", {})["job"]["jobId"]
    f = milestones(failing_job, t.done)
    api.at(f.fail_at + timedelta(seconds=1))
    cover.model(api.call("get", f"/models/{failing.id}")["model"])
    cover.job(api.call("get", f"/jobs/{failing_job}")["job"])

    api.at(f.fail_at + timedelta(seconds=2))
    api.call("put", f"/models/{knight.id}/train", {})
    api.at(f.fail_at + timedelta(seconds=3))
    cover.model(
        api.call("post", f"/models/{knight.id}/train/action", {"action": "cancel"})["model"]
    )
    second = api.call("put", f"/models/{created['id']}/train", {})["job"]["jobId"]
    cover.job(api.call("post", f"/jobs/{second}/action", {"action": "cancel"})["job"])

    # Errors are JSON with a message.
    cover.error(api.call("get", "/models/model_missing", status=404))
    cover.error(api.call("get", "/jobs/job_missing", status=404))
    cover.error(api.call("put", f"/models/{knight.id}/train", {"parameters": 3}, status=400))
    cover.error(api.call("get", "/no/such/endpoint", status=404))

    assert cover.model_statuses >= {"new", "training", "trained", "failed", "training-canceled"}
    assert cover.stages >= {"pending", "queued-for-train", "starting-train", "running-train"}
    assert cover.job_statuses == JOB_STATUSES
    assert SimJob.objects.count() == 5
