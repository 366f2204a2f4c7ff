"""The model page: make a model, bring its training images, caption them, check them.

Every page works without JavaScript: the upload is a plain file input and a submit button,
captions are small forms. static/js/datasets.js adds drag and drop with one progress bar per
file and one for the batch, and htmx swaps a card in place instead of reloading. Views only
read and write the database; a worker sends everything to Scenario (training.datasets.sync).
"""

from __future__ import annotations

import re

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import RequestDataTooBig, TooManyFilesSent
from django.http import FileResponse, Http404, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST, require_safe

from training import access, datasets, params, preflight, request_params
from training.models import (
    Dataset,
    DatasetImage,
    ImagePair,
    ImageState,
    Team,
    UploadBatch,
)
from training.scenario import ScenarioError
from training.views.launch import describe_error

TEMPLATE = "training/dataset.html"
MAX_CAPTION = 2000
MAX_TRIGGER = 100
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
PENDING = (ImageState.QUEUED, ImageState.UPLOADED, ImageState.DELETING)


# --- making a model -------------------------------------------------------------------------


class NewModelForm(forms.Form):
    name = forms.CharField(max_length=100, strip=True)
    model_type = forms.ChoiceField(label="Type")
    team = forms.ModelChoiceField(queryset=Team.objects.none(), empty_label=None)

    def __init__(self, user, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["model_type"].choices = [
            (t, f"{t} · {params.family_for(t).label}") for t in preflight.IMAGE_TYPES
        ]
        self.fields["model_type"].initial = "flux.1-lora"
        membership = access.membership_of(user)
        if user.is_staff:
            self.fields["team"].queryset = Team.objects.all()
        elif membership is not None:
            self.fields["team"].queryset = Team.objects.filter(pk=membership.team_id)
            self.fields["team"].initial = membership.team_id


@login_required
def dataset_new(request):
    form = NewModelForm(request.user, data=request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            model = datasets.create_model(
                user=request.user,
                name=form.cleaned_data["name"],
                model_type=form.cleaned_data["model_type"],
                team=form.cleaned_data["team"],
            )
        except ScenarioError as error:
            form.add_error(None, describe_error(error))
        else:
            messages.success(request, f"Model {model.name} created. Now add its training images.")
            return redirect("dataset", remote_id=model.remote_id)
    status = 400 if request.method == "POST" else 200
    return render(request, "training/dataset_new.html", {"form": form}, status=status)


# --- the page -------------------------------------------------------------------------------


def _dataset_for(request, remote_id: str) -> Dataset:
    """The dataset of a model the user may train, or 404."""
    remote_id = request_params.clean_text(remote_id, "model", max_length=100)
    model = access.trainable_models(request.user).filter(remote_id=remote_id).first()
    if model is None or preflight.needs_for(model.type) is None:
        raise Http404("No such model here.")
    return datasets.dataset_for(model, request.user)


def _page_context(request, dataset: Dataset) -> dict:
    model = dataset.model
    images = [i for i in dataset.images.all() if i.state != ImageState.DELETING]
    findings = preflight.check_dataset(dataset)
    concerned = {i.pk for f in findings for i in f.images}
    counts = {state.label: sum(i.state == state for i in images) for state in ImageState}
    runs = access.visible_runs(request.user).filter(model=model).order_by("-created_at")[:20]
    batch_pk = request.GET.get("batch", "")
    batch = None
    if batch_pk.isascii() and batch_pk.isdigit() and len(batch_pk) < 12:
        batch = dataset.batches.filter(pk=batch_pk).first()
    return {
        "dataset": dataset,
        "model": model,
        "images": images,
        "concerned": concerned,
        "counts": {label: n for label, n in counts.items() if n},
        "pending": any(i.state in PENDING for i in dataset.images.all()),
        "findings": findings,
        "runs": list(runs),
        "batch": batch,
        "batch_images": list(batch.images.all()) if batch else [],
        "needs": preflight.needs_for(model.type),
        "is_pair_type": model.type in preflight.PAIR_TYPES,
        "pairs": list(dataset.pairs.select_related("source", "target")),
        "max_mb": datasets.MAX_FILE_BYTES // (1024 * 1024),
        "refresh_seconds": settings.DASHBOARD_REFRESH_SECONDS,
    }


@login_required
@require_safe
def dataset_page(request, remote_id):
    dataset = _dataset_for(request, remote_id)
    context = _page_context(request, dataset)
    if request.htmx and request.GET.get("part") == "live":
        return render(request, f"{TEMPLATE}#live", context)
    return render(request, TEMPLATE, context)


@login_required
@require_safe
def dataset_status(request, remote_id):
    """Each image's state, for the upload's progress bars."""
    dataset = _dataset_for(request, remote_id)
    images = dataset.images.all()
    batch = request.GET.get("batch", "")
    if batch.isascii() and batch.isdigit() and len(batch) < 12:
        images = images.filter(batch_id=batch)
    return JsonResponse(
        {
            "images": [
                {"id": i.pk, "name": i.name, "state": i.state, "label": i.get_state_display(),
                 "error": i.error}
                for i in images
            ],
            "pending": any(i.state in PENDING for i in images),
        }
    )  # fmt: skip


@login_required
@require_safe
def dataset_image_file(request, remote_id, pk):
    dataset = _dataset_for(request, remote_id)
    image = get_object_or_404(DatasetImage, dataset=dataset, pk=pk)
    response = FileResponse(image.file.open("rb"), content_type=image.content_type)
    response["Cache-Control"] = "private, max-age=3600"
    return response


# --- changing it ----------------------------------------------------------------------------


def _wants_json(request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _back(request, dataset: Dataset, **query):
    url = reverse("dataset", kwargs={"remote_id": dataset.model.remote_id})
    if query:
        url += "?" + "&".join(f"{k}={v}" for k, v in query.items())
    return redirect(url)


@login_required
@require_POST
def dataset_upload(request, remote_id):
    dataset = _dataset_for(request, remote_id)
    try:
        uploaded = request.FILES.getlist("files")
    except (TooManyFilesSent, RequestDataTooBig):
        return HttpResponseBadRequest("Too many files at once: send them in smaller batches.")
    if not uploaded:
        if _wants_json(request):
            return JsonResponse({"error": "Choose at least one file."}, status=400)
        messages.error(request, "Choose at least one file to upload.")
        return _back(request, dataset)
    files = [(f.name, f.read(datasets.MAX_FILE_BYTES + 1)) for f in uploaded]
    batch = datasets.add_files(dataset, request.user, files)
    if _wants_json(request):
        return JsonResponse(_batch_report(request, dataset, batch))
    accepted = batch.images.count()
    messages.info(request, f"{accepted} added, {len(batch.refused)} refused.")
    return _back(request, dataset, batch=batch.pk)


def _batch_report(request, dataset: Dataset, batch: UploadBatch) -> dict:
    status = reverse("dataset_status", kwargs={"remote_id": dataset.model.remote_id})
    return {
        "batch": batch.pk,
        "accepted": [{"id": i.pk, "name": i.name} for i in batch.images.all()],
        "refused": batch.refused,
        "status_url": f"{status}?batch={batch.pk}",
    }


def _image(request, remote_id, pk) -> DatasetImage:
    dataset = _dataset_for(request, remote_id)
    image = DatasetImage.objects.filter(dataset=dataset, pk=pk).exclude(state="deleting").first()
    if image is None:
        raise Http404("No such image.")
    image.dataset = dataset
    return image


def _clean_text(raw: object, limit: int) -> str | None:
    text = _CONTROL.sub("", str(raw or "")).strip()
    return text if len(text) <= limit else None


def _card(request, image: DatasetImage, error: str = "", status: int = 200):
    """The image's card again for htmx, else back to the page."""
    if request.htmx:
        dataset = image.dataset
        findings = preflight.check_dataset(dataset)
        context = {
            "image": DatasetImage.objects.get(pk=image.pk),
            "model": dataset.model,
            "concerned": {i.pk for f in findings for i in f.images},
            "card_error": error,
        }
        return render(request, f"{TEMPLATE}#image_card", context, status=status)
    if error:
        messages.error(request, error)
    return _back(request, image.dataset)


@login_required
@require_POST
def dataset_caption(request, remote_id, pk):
    image = _image(request, remote_id, pk)
    caption = _clean_text(request.POST.get("caption"), MAX_CAPTION)
    if caption is None:
        return _card(request, image, f"A caption is at most {MAX_CAPTION} characters.", 400)
    datasets.set_caption(image, caption)
    return _card(request, image)


@login_required
@require_POST
def dataset_replace(request, remote_id, pk):
    image = _image(request, remote_id, pk)
    upload = request.FILES.get("file")
    if upload is None:
        messages.error(request, "Choose the file to put in its place.")
        return _back(request, image.dataset)
    try:
        datasets.replace_file(image, upload.name, upload.read(datasets.MAX_FILE_BYTES + 1))
    except datasets.Refused as refusal:
        messages.error(request, f"{upload.name[:200]} was not used: {refusal}")
    else:
        messages.success(request, f"{image.name} replaced.")
    return _back(request, image.dataset)


@login_required
@require_POST
def dataset_remove(request, remote_id, pk):
    image = _image(request, remote_id, pk)
    datasets.remove(image)
    messages.success(request, f"{image.name} removed.")
    return _back(request, image.dataset)


@login_required
@require_POST
def dataset_trigger(request, remote_id):
    dataset = _dataset_for(request, remote_id)
    word = _clean_text(request.POST.get("trigger_word"), MAX_TRIGGER)
    if word is None:
        messages.error(request, f"A trigger word is at most {MAX_TRIGGER} characters.")
    else:
        Dataset.objects.filter(pk=dataset.pk).update(trigger_word=word)
    return _back(request, dataset)


@login_required
@require_POST
def dataset_pair_add(request, remote_id):
    dataset = _dataset_for(request, remote_id)
    usable = dataset.images.exclude(state=ImageState.DELETING)
    source = usable.filter(pk=_number(request.POST.get("source"))).first()
    target = usable.filter(pk=_number(request.POST.get("target"))).first()
    instruction = _clean_text(request.POST.get("instruction"), MAX_CAPTION)
    if source is None or instruction is None or (target is not None and target == source):
        messages.error(request, "Pick a before image, a different after image and an instruction.")
    else:
        datasets.add_pair(dataset, source, target, instruction)
    return _back(request, dataset)


@login_required
@require_POST
def dataset_pair_remove(request, remote_id, pk):
    dataset = _dataset_for(request, remote_id)
    pair = get_object_or_404(ImagePair, dataset=dataset, pk=pk)
    pair.dataset = dataset
    datasets.remove_pair(pair)
    return _back(request, dataset)


def _number(raw: object) -> int:
    text = str(raw or "")
    return int(text) if text.isascii() and text.isdigit() and len(text) < 12 else 0
