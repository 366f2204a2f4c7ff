"""The JSON the simulator answers with, in the shapes of Scenario's `model` and `job` objects.

Required model fields (train-endpoints.md): id, capabilities, collectionIds, createdAt,
custom, exampleAssetIds, privacy, source, status, tags, trainingImagesNumber, type,
updatedAt. Required job fields: createdAt, jobId, jobType, metadata, progress, status,
statusHistory, updatedAt. Optional fields appear only when they mean something (e.g.
`trainingProgress` while training, `billing` once the job has ended).
"""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse

from simulator import parameters
from simulator.clock import epoch_ms, iso
from simulator.lifecycle import JobState, Schedule, Timeline
from simulator.models import SimJob, SimModel, SimTrainingImage

# What a trained model of each kind can do; the first matching prefix wins.
CAPABILITIES = (
    ("elevenlabs", ["txt2audio"]),
    ("", ["txt2img", "img2img"]),
)
LISTED_TRAINING_IMAGES = 3  # GET /models lists the first three, GET /models/{id} all of them


def _trained_with(model_type: str, job: SimJob) -> dict:
    return parameters.as_trained(model_type, job.parameters, job.image_count)


def epoch_name(index: int) -> str:
    """Name the index-th epoch (1-based) like Scenario's examples: 000001."""
    return f"{index:06d}"


def sample_asset_id(job: SimJob, epoch: int, prompt: int) -> str:
    return f"asset_{job.id.removeprefix('job_')}-{epoch:03d}-{prompt:02d}"


class Renderer:
    """Build answers for one request: one clock reading, one queue walk, absolute URLs."""

    def __init__(self, request, schedule: Schedule):
        self.request = request
        self.schedule = schedule

    def url(self, name: str, **kwargs) -> str:
        """An absolute URL a browser can load.

        On the host the request came to, unless SIMULATOR_PUBLIC_URL says where people reach
        the simulator (e.g. http://localhost:8001/sim/v1 when the API is called as
        http://simulator:8000/sim/v1 inside docker compose).
        """
        path = reverse(f"simulator:{name}", kwargs=kwargs)
        public = (getattr(settings, "SIMULATOR_PUBLIC_URL", "") or "").rstrip("/")
        if not public:
            return self.request.build_absolute_uri(path)
        mount = reverse("simulator:models").removesuffix("models")  # "/sim/v1/"
        return f"{public}/{path.removeprefix(mount)}"

    # --- model ---------------------------------------------------------------------------

    def model(self, model: SimModel, *, all_images: bool = True) -> dict:
        timeline = self.schedule.latest_for(model.id)
        state = self.schedule.state(timeline) if timeline else None
        images = list(model.images.all())
        body = {
            "id": model.id,
            "capabilities": next(c for p, c in CAPABILITIES if model.type.startswith(p)),
            "collectionIds": [],
            "createdAt": iso(model.created_at),
            "custom": True,
            "exampleAssetIds": [],
            "privacy": "private",
            "source": "scenario",
            "status": state.model_status if state else "new",
            "tags": [],
            "trainingImagesNumber": len(images),
            "type": model.type,
            "updatedAt": iso(max([model.updated_at] + ([state.updated_at] if state else []))),
            "name": model.name,
            "parameters": _trained_with(model.type, timeline.job) if timeline else {},
            "trainingImages": [
                self.training_image(image)
                for image in (images if all_images else images[:LISTED_TRAINING_IMAGES])
            ],
        }
        pairs = list(model.pairs.all())
        if pairs:
            body["trainingImagePairs"] = [
                {"sourceId": p.source_id, "targetId": p.target_id, "instruction": p.instruction}
                for p in pairs
            ]
        if model.owner_id:
            body["ownerId"] = model.owner_id
        if timeline:
            body.update(self._training_fields(model, timeline, state))
        thumbnail = self._thumbnail(body, images)
        if thumbnail:
            body["thumbnail"] = thumbnail
        return body

    def _training_fields(self, model: SimModel, timeline: Timeline, state: JobState) -> dict:
        fields: dict = {}
        if state.stage is not None:
            progress = {
                "stage": state.stage,
                "updatedAt": epoch_ms(state.updated_at),
                "progress": state.progress,
            }
            if state.position is not None:
                progress["position"] = state.position
            if state.remaining_ms is not None:
                progress["remainingTimeMs"] = state.remaining_ms
            if state.started_at is not None:
                progress["startedAt"] = epoch_ms(state.started_at)
            fields["trainingProgress"] = progress
        elif state.started_at is not None:
            stats = {
                "startedAt": iso(state.started_at),
                "endedAt": iso(state.ended_at),
                "queueDuration": round((state.started_at - timeline.requested).total_seconds(), 3),
                "trainDuration": round((state.ended_at - state.started_at).total_seconds(), 3),
            }
            fields["trainingStats"] = stats
        epochs = self.epochs(timeline, state)
        if epochs:
            fields["epochs"] = epochs
            if state.model_status == "trained":
                names = [e["epoch"] for e in epochs]
                chosen = model.selected_epoch if model.selected_epoch in names else names[-1]
                fields["epoch"] = chosen
        return fields

    def epochs(self, timeline: Timeline, state: JobState) -> list[dict]:
        job = timeline.job
        prompts = job.parameters.get("samplePrompts") or []
        result = []
        for index in range(1, state.epochs_done + 1):
            name = epoch_name(index)
            assets = [
                {
                    "assetId": sample_asset_id(job, index, p),
                    "url": self.url("sample", job_id=job.id, epoch=name, prompt=p),
                }
                for p in range(len(prompts))
            ]
            result.append({"epoch": name, "assets": assets})
        return result

    def _thumbnail(self, body: dict, images: list[SimTrainingImage]) -> dict | None:
        if body["status"] == "trained" and body.get("epochs"):
            assets = body["epochs"][-1]["assets"]
            if assets:
                return dict(assets[0])
        if images:
            return {"assetId": images[0].asset_id, "url": self.image_url(images[0])}
        return None

    def image_url(self, image: SimTrainingImage) -> str:
        return self.url("asset", asset_id=image.asset_id)

    def training_image(self, image: SimTrainingImage) -> dict:
        return {
            "id": image.asset_id,
            "automaticCaptioning": "",
            "createdAt": iso(image.created_at),
            "description": image.description,
            "downloadUrl": self.image_url(image),
            "name": image.name,
        }

    # --- job -----------------------------------------------------------------------------

    def job(self, timeline: Timeline) -> dict:
        job, state = timeline.job, self.schedule.state(timeline)
        metadata: dict = {
            "input": {
                "modelId": job.model_id,
                "parameters": job.parameters,
                "trainingImagesCount": job.image_count,
            },
            "assetIds": [a["assetId"] for e in self.epochs(timeline, state) for a in e["assets"]],
        }
        if state.error:
            metadata["error"] = state.error
        if state.hint:
            metadata["hint"] = state.hint
        body = {
            "createdAt": iso(job.requested_at),
            "jobId": job.id,
            "jobType": job.job_type,
            "metadata": metadata,
            "progress": state.progress,
            "status": state.job_status,
            "statusHistory": [{"date": iso(moment), "status": s} for s, moment in state.history],
            "updatedAt": iso(state.history[-1][1]),
        }
        if job.owner_id:
            body["ownerId"] = job.owner_id
        if state.billing is not None:
            body["billing"] = {"cuCost": state.billing.cost, "cuDiscount": state.billing.discount}
        return body
