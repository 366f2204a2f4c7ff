"""The pre-flight check: a dataset against what its trainer needs, before any CU is spent.

Rules are data: NEEDS says what each trainer family wants (the image count of Scenario's
guidance, the working resolution, the most images the dashboard sends), PAIR_TYPES which
model types learn from before/after pairs, and RULES lists every check with its severity.
Each finding names the images it concerns.

A blocker stops the launch for everyone. A warning stops an artist's launch too; the team's
lead (or staff) may launch past warnings by saying so on the form.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import imagehash
from django.urls import reverse

from training import budgets, params
from training.models import Dataset, DatasetImage, ImagePair, ImageState, ScenarioModel

BLOCKER = "blocker"
WARNING = "warning"


@dataclass(frozen=True)
class Needs:
    """What a trainer wants of its dataset."""

    min_images: int  # the smallest dataset Scenario's guidance gives advice for
    max_images: int  # the largest one
    most_images: int  # the most the dashboard sends to one model: more is refused at upload
    working_resolution: int  # the shorter side, in pixels, the trainer works at


_GUIDED = {"min_images": 5, "max_images": 50, "most_images": 100}

NEEDS: dict[str, Needs] = {
    params.FLUX_LORA: Needs(**_GUIDED, working_resolution=1024),
    params.MUSUBI: Needs(**_GUIDED, working_resolution=1024),
    params.SD15_LORA: Needs(**_GUIDED, working_resolution=512),
    params.SDXL_LORA: Needs(**_GUIDED, working_resolution=1024),
}

# Types that learn an edit from before/after pairs (PUT /models/{id}/training-images/pairs).
PAIR_TYPES = frozenset(
    {
        "flux.1-kontext-lora",
        "flux.2-dev-edit-lora",
        "flux.2-klein-4b-edit-lora",
        "flux.2-klein-9b-edit-lora",
        "flux.2-klein-base-4b-edit-lora",
        "flux.2-klein-base-9b-edit-lora",
        "qwen-image-edit-lora",
        "qwen-image-edit-2509-lora",
        "qwen-image-edit-2511-lora",
    }
)

# Image types a dataset is made of: every trainable type but the voice.
IMAGE_TYPES = tuple(t for t in params.TRAINABLE_TYPES if params.FAMILY_OF_TYPE[t] in NEEDS)

# Two images whose perceptual hashes differ in at most this many of 64 bits look the same.
NEAR_DUPLICATE_BITS = 6


@dataclass
class Finding:
    rule: str
    severity: str
    message: str
    images: list[DatasetImage] = field(default_factory=list)

    @property
    def is_blocker(self) -> bool:
        return self.severity == BLOCKER


@dataclass(frozen=True)
class Subject:
    """What a rule looks at: the model, its needs, its images, pairs and trigger word."""

    model_type: str
    needs: Needs
    images: Sequence[DatasetImage]
    pairs: Sequence[ImagePair]
    trigger_word: str


@dataclass(frozen=True)
class Rule:
    key: str
    severity: str
    check: Callable[[Subject], tuple[str, list[DatasetImage]] | None]
    applies: Callable[[Subject], bool] = lambda subject: True


# --- the checks -------------------------------------------------------------------------------


def _no_images(s: Subject):
    return ("There are no training images yet.", []) if not s.images else None


def _count_against_guidance(s: Subject):
    count, needs = len(s.images), s.needs
    if 0 < count < needs.min_images:
        return (
            f"{count} images: Scenario's guidance starts at {needs.min_images}. "
            "Add a few more for the trainer to learn the concept.",
            [],
        )
    if count > needs.max_images:
        return (
            f"{count} images: Scenario's guidance goes up to {needs.max_images}; "
            "more images cost more and rarely help.",
            [],
        )
    return None


def _low_resolution(s: Subject):
    side = s.needs.working_resolution
    small = [i for i in s.images if min(i.width, i.height) < side]
    if not small:
        return None
    return (
        f"{len(small)} below the working resolution ({side} px on the shorter side): "
        "they will be upscaled and look soft.",
        small,
    )


def _near_duplicates(s: Subject):
    hashes = [(i, imagehash.hex_to_hash(i.phash)) for i in s.images if i.phash]
    twins: list[DatasetImage] = []
    for index, (image, value) in enumerate(hashes):
        for other, other_value in hashes[index + 1 :]:
            if value - other_value <= NEAR_DUPLICATE_BITS:
                twins += [x for x in (image, other) if x not in twins]
    if not twins:
        return None
    return (
        f"{len(twins)} images look nearly the same: duplicates make the trainer overfit them.",
        twins,
    )


def _trigger_word_missing(s: Subject):
    word = s.trigger_word.strip().lower()
    if not word:
        return None
    captioned = [i for i in s.images if i.caption.strip()]
    missing = [i for i in captioned if word not in i.caption.lower()]
    if not missing:
        return None
    return (f"{len(missing)} captions do not mention “{s.trigger_word.strip()}”.", missing)


def _is_pair_type(s: Subject) -> bool:
    return s.model_type in PAIR_TYPES


def _no_pairs(s: Subject):
    if s.images and not s.pairs:
        return ("This type learns from before/after pairs, and there are none yet.", [])
    return None


def _incomplete_pairs(s: Subject):
    incomplete = [p for p in s.pairs if p.target_id is None or not p.instruction.strip()]
    paired = {p.source_id for p in s.pairs} | {p.target_id for p in s.pairs}
    unpaired = [i for i in s.images if i.pk not in paired]
    concerned = [p.source for p in incomplete] + unpaired
    if not concerned:
        return None
    parts = []
    if incomplete:
        parts.append(f"{len(incomplete)} pairs lack an after image or an instruction")
    if unpaired:
        parts.append(f"{len(unpaired)} images are in no pair")
    return ("; ".join(parts) + ".", concerned)


RULES: tuple[Rule, ...] = (
    Rule("no-images", BLOCKER, _no_images),
    Rule("image-count", WARNING, _count_against_guidance),
    Rule("low-resolution", WARNING, _low_resolution),
    Rule("near-duplicates", WARNING, _near_duplicates),
    Rule("trigger-word", WARNING, _trigger_word_missing),
    Rule("no-pairs", BLOCKER, _no_pairs, applies=_is_pair_type),
    Rule("incomplete-pairs", WARNING, _incomplete_pairs, applies=_is_pair_type),
)


# --- running them -----------------------------------------------------------------------------


def needs_for(model_type: str) -> Needs | None:
    family = params.FAMILY_OF_TYPE.get(model_type)
    return NEEDS.get(family) if family else None


def check_dataset(dataset: Dataset, *, trigger_word: str | None = None) -> list[Finding]:
    """Every finding for this dataset, blockers first; [] when its trainer has no needs here."""
    needs = needs_for(dataset.model.type)
    if needs is None:
        return []
    images = [i for i in dataset.images.all() if i.state != ImageState.DELETING]
    kept = {i.pk for i in images}
    pairs = [p for p in dataset.pairs.select_related("source", "target") if p.source_id in kept]
    subject = Subject(
        model_type=dataset.model.type,
        needs=needs,
        images=images,
        pairs=pairs,
        trigger_word=dataset.trigger_word if trigger_word is None else trigger_word,
    )
    findings = []
    for rule in RULES:
        if not rule.applies(subject):
            continue
        found = rule.check(subject)
        if found is not None:
            findings.append(Finding(rule.key, rule.severity, found[0], found[1]))
    return sorted(findings, key=lambda f: not f.is_blocker)


def check_model(model: ScenarioModel, *, concept_prompt: str = "") -> list[Finding]:
    """The findings for a model whose images the dashboard keeps; [] for any other."""
    dataset = Dataset.objects.filter(model=model).first()
    if dataset is None:
        return []
    return check_dataset(dataset, trigger_word=concept_prompt or None)


def may_override(user, model: ScenarioModel) -> bool:
    """The model's team lead and staff may launch past warnings."""
    return user.is_staff or (model.team is not None and budgets.can_override(user, model.team))


def launch_refusal(findings: list[Finding], user, model: ScenarioModel, *, override: bool) -> str:
    """Why these findings stop the launch, or ""."""
    blockers = [f for f in findings if f.is_blocker]
    if blockers:
        return "The pre-flight check found a blocker: " + blockers[0].message
    if any(findings) and not (override and may_override(user, model)):
        return (
            "The pre-flight check has warnings: fix the dataset, or ask your team's lead "
            "to launch past them."
        )
    return ""


# --- the launch form's panel ----------------------------------------------------------------


def form_context(request, model: ScenarioModel | None, form) -> dict:
    """What the launch form's pre-flight panel shows for the model on screen."""
    if model is None or form is None:
        return {}
    concept = form.parameters.get("conceptPrompt", "") if form.is_valid() else ""
    has_dataset = Dataset.objects.filter(model=model).exists()
    return {
        "preflight": check_model(model, concept_prompt=concept or ""),
        "preflight_may_override": may_override(request.user, model),
        "preflight_override": request.POST.get("preflight_override") == "true",
        "dataset_url": reverse("dataset", kwargs={"remote_id": model.remote_id})
        if has_dataset
        else "",
    }


def refusal_for(request, model: ScenarioModel, parameters: dict) -> str:
    """Why the pre-flight check stops this launch from the form, or ""."""
    findings = check_model(model, concept_prompt=parameters.get("conceptPrompt", "") or "")
    override = request.POST.get("preflight_override") == "true"
    return launch_refusal(findings, request.user, model, override=override)
