"""What each model type's trainer accepts: one declarative table, read by everything.

The form, the server-side validation, the dry run and the simulator all read this module.
Nothing elsewhere asks `if model_type == …`: a model type maps to a trainer family
(FAMILY_OF_TYPE), and a family lists its fields with their bounds and defaults, its cross-field
rules, its presets and how its step count is worked out.

The table follows Scenario's API reference for `PUT /models/{modelId}/train`, parameter by
parameter, using each parameter's "Only available for …" note to place it in a family. A
parameter with no such note (conceptPrompt, learningRate, wandbKey) is offered to every image
trainer. Bounds are the reference's; limits the reference does not give (text length, number of
sample prompts) are the dashboard's own, kept generous, and named DASHBOARD_* below.

Values sent to Scenario (request_parameters), one rule:
  * a field the user left empty is not sent, so Scenario applies its own default;
  * a value the form holds is sent, even when it equals a default Scenario documents (rank
    16, lrScheduler "constant", …): the run trains with what the person saw and typed, and a
    documented default that has changed on Scenario's side cannot silently replace it;
  * a default computed from the image count (maxTrainSteps = images × 100 for Flux LoRA, …) is
    always sent explicitly, filled in when left empty: the image count on Scenario may change
    between the quote and the training, and the run must train the number of steps it was
    quoted and launched with;
  * legacy parameters Scenario ignores (scaleLr) are accepted from old runs but never shown in
    the form and never sent.
request_parameters is idempotent: feeding its output back in gives the same output.

Decisions the reference leaves open are listed once, with the reference's words beside each,
in GUESSES at the end of the table; the code that acts on a guess names it there.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from dataclasses import field as dataclass_field
from decimal import Decimal, InvalidOperation

from training import display

# Field kinds.
NUMBER = "number"
INTEGER = "integer"
BOOL = "bool"
ENUM = "enum"
TEXT = "text"
TEXT_LIST = "text_list"
ASSET_LIST = "asset_list"
LIST_KINDS = (TEXT_LIST, ASSET_LIST)

# The dashboard's own limits, where the reference gives none: generous for a person typing,
# small enough that a hostile request cannot make the server or Scenario do much work.
DASHBOARD_MAX_TEXT = 2000
DASHBOARD_MAX_PROMPTS = 20
DASHBOARD_MAX_ASSET_ID = 100
# Longest raw string parsed as a number; anything longer is not a number a person meant.
_MAX_NUMBER_CHARS = 40
# How many unknown field names one answer reports; the rest are summed up.
_MAX_UNKNOWN_REPORTED = 5

ALL = "__all__"


class UnknownModelType(ValueError):
    """The dashboard cannot train this model type."""


@dataclass(frozen=True)
class PerImage:
    """A default computed from the image count n: round(n × numerator / denominator)."""

    numerator: int
    denominator: int = 1

    def __call__(self, image_count: int) -> int:
        n = max(0, int(image_count))
        # Round half up in integers, as Math.round does; no float error on big counts.
        return (2 * n * self.numerator + self.denominator) // (2 * self.denominator)

    def describe(self) -> str:
        factor = self.numerator / self.denominator
        return f"images × {factor:g}"


@dataclass(frozen=True)
class Field:
    """One parameter of Scenario's train request, as one trainer family accepts it.

    `default` is Scenario's documented default: a value, a PerImage for a default computed
    from the image count (use `default_for`), or None when Scenario documents none (it decides
    by itself; `placeholder` then says what it does, in words). Bounds are inclusive unless
    `exclusive_minimum`. `max_length` caps characters of a text or of each list item;
    `max_items` caps a list. `legacy` marks a parameter Scenario ignores.
    """

    name: str
    label: str
    help: str
    kind: str
    default: object = None
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None
    choices: tuple[str, ...] = ()
    advanced: bool = False
    legacy: bool = False
    exclusive_minimum: bool = False
    max_items: int | None = None
    pattern: str = ""
    pattern_message: str = ""
    placeholder: str = ""
    # A caution shown next to the field, for a rule the dashboard cannot check itself.
    caution: str = ""
    # Not copied from a past run into a new form, and typed into a password input.
    secret: bool = False
    # Worth a text area rather than one line.
    multiline: bool = False

    @property
    def computed(self) -> bool:
        return isinstance(self.default, PerImage)

    @property
    def is_list(self) -> bool:
        return self.kind in LIST_KINDS

    def default_for(self, image_count: int | None) -> object:
        if isinstance(self.default, PerImage):
            return self.default(image_count or 0)
        return self.default


@dataclass(frozen=True)
class Preset:
    """Suggested values for a dataset size, from Scenario's guidance."""

    key: str
    label: str
    min_images: int
    max_images: int
    values: Mapping[str, object]

    def fits(self, image_count: int) -> bool:
        return self.min_images <= image_count <= self.max_images


@dataclass(frozen=True)
class SameLength:
    """`name`, when given, has as many items as `other`."""

    name: str
    other: str

    def depends_on(self, family: Family) -> tuple[str, ...]:
        return (self.name, self.other)

    def check(self, family: Family, clean: Mapping, image_count: int | None) -> str | None:
        if self.name not in clean:
            return None
        have, want = len(clean[self.name]), len(clean.get(self.other, ()))
        if have == want:
            return None
        other = family.field(self.other).label.lower()
        return f"Needs as many items as the {other}: {want}, not {have}."


@dataclass(frozen=True)
class NotAboveSteps:
    """`name` is at most the number of training steps the run will make."""

    name: str

    def depends_on(self, family: Family) -> tuple[str, ...]:
        general = ("maxTrainSteps",) if "maxTrainSteps" in family.names else ()
        return (self.name, *family.step_fields, *general)

    def check(self, family: Family, clean: Mapping, image_count: int | None) -> str | None:
        if self.name not in clean:
            return None
        steps = family.steps(clean, image_count)
        if steps is None or clean[self.name] <= steps:
            return None
        return f"Cannot be greater than the number of training steps ({steps})."


@dataclass(frozen=True)
class OnlyWhen:
    """`name` is given only when `other` is `value` (GUESSES: "professional-voice")."""

    name: str
    other: str
    value: str

    def depends_on(self, family: Family) -> tuple[str, ...]:
        return (self.name, self.other)

    def check(self, family: Family, clean: Mapping, image_count: int | None) -> str | None:
        if self.name not in clean or clean.get(self.other) == self.value:
            return None
        other = family.field(self.other).label.lower()
        return f"Applies only when the {other} is {self.value}: choose it, or leave this empty."


@dataclass(frozen=True)
class Family:
    """A trainer: the fields it accepts and how its runs are sized.

    `step_fields` add up to the run's step count; when none is given the count is
    `steps_per_image` of the image count. `default_epochs` stands in for an empty nbEpochs.
    `refusals` explains, per field name, why a field of another trainer is not taken here.
    """

    key: str
    label: str
    fields: tuple[Field, ...]
    presets: tuple[Preset, ...] = ()
    rules: tuple[SameLength | NotAboveSteps | OnlyWhen, ...] = ()
    step_fields: tuple[str, ...] = ()
    steps_per_image: PerImage = PerImage(100)
    default_epochs: int = 1
    legacy: bool = False
    refusals: Mapping[str, str] = dataclass_field(default_factory=dict)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def form_fields(self) -> tuple[Field, ...]:
        """The fields a person sets: all but the legacy ones Scenario ignores."""
        return tuple(f for f in self.fields if not f.legacy)

    def preset_for(self, image_count: int | None) -> Preset | None:
        for preset in self.presets:
            if image_count is not None and preset.fits(image_count):
                return preset
        return None

    def steps(self, values: Mapping, image_count: int | None) -> int | None:
        """The step count of a run with these (clean) values; None if it depends on unknowns."""
        given = [values[name] for name in self.step_fields if isinstance(values.get(name), int)]
        if given:
            return sum(given)
        # The reference's general step parameter, where the trainer's own are left empty.
        if "maxTrainSteps" in self.names and isinstance(values.get("maxTrainSteps"), int):
            return values["maxTrainSteps"]
        if image_count is None:
            return None
        return self.steps_per_image(image_count)


# --- Every parameter of the reference, once -------------------------------------------------
# Help texts are the reference's, trimmed of the "Only available for …" notes that the families
# below turn into structure. Families adjust defaults and bounds with `replace`.

_TEXT = {"kind": TEXT, "max_length": DASHBOARD_MAX_TEXT}

SPEC: dict[str, Field] = {
    f.name: f
    for f in (
        Field("age", "Age", "Age group of the voice (for professional cloning).", advanced=True,
              **_TEXT),
        Field("batchSize", "Batch size",
              "The batch size: fewer steps, and a higher learning rate.",
              INTEGER, minimum=1, maximum=4, advanced=True),
        Field("classPrompt", "Class prompt",
              "The prompt to specify images in the same class as the provided instance images.",
              advanced=True, **_TEXT),
        Field("cloneType", "Clone type",
              'Type of voice cloning: "instant" (fast) or "professional" (higher quality, '
              "requires a captcha).",
              ENUM, choices=("instant", "professional"), placeholder="Scenario's choice"),
        Field("conceptPrompt", "Concept prompt",
              "The prompt with an identifier specifying the instance (or subject) of the class, "
              'for example "a daiton dog".', placeholder="e.g. a daiton dog", **_TEXT),
        Field("gender", "Gender", "Gender of the voice (for professional cloning).",
              advanced=True, **_TEXT),
        Field("language", "Language", "Language of the audio samples, as an ISO 639-1 code.",
              TEXT, max_length=2, pattern=r"[a-z]{2}",
              pattern_message="Enter a two-letter ISO 639-1 code in lower case, such as en.",
              placeholder="en"),
        Field("learningRate", "Learning rate",
              "Initial learning rate (after the potential warmup period).",
              NUMBER, minimum=0, exclusive_minimum=True),
        Field("learningRateTextEncoder", "Text encoder learning rate",
              "Initial learning rate (after the potential warmup period) for the text encoder.",
              NUMBER, advanced=True),
        Field("learningRateUnet", "UNet learning rate",
              "Initial learning rate (after the potential warmup period) for the UNet.",
              NUMBER, minimum=0, exclusive_minimum=True, advanced=True,
              placeholder="Scenario's default"),
        Field("lrScheduler", "Learning rate scheduler", "The scheduler type to use.", ENUM,
              default="constant", advanced=True,
              choices=("constant", "constant-with-warmup", "cosine", "cosine-with-restarts",
                       "linear", "polynomial")),
        Field("maxTrainSteps", "Training steps",
              "Maximum number of training steps to execute. The default grows with the number "
              "of training images.", INTEGER, minimum=0),
        Field("nbEpochs", "Epochs", "The number of epochs to train for.", INTEGER,
              minimum=1, maximum=30, placeholder="Scenario's default"),
        Field("nbRepeats", "Repeats", "The number of times to repeat the training.", INTEGER,
              minimum=1, maximum=30, advanced=True, placeholder="Scenario's default"),
        Field("numTextTrainSteps", "Text encoder steps",
              "The number of training steps for the text encoder.", INTEGER,
              minimum=0, maximum=40000, placeholder="Scenario's split"),
        Field("numUNetTrainSteps", "UNet steps", "The number of training steps for the UNet.",
              INTEGER, minimum=0, maximum=40000, placeholder="Scenario's split"),
        # The reference types optimizeFor as "likeness" alone, but its text names three values;
        # the text is the more complete of the two.
        Field("optimizeFor", "Optimize for",
              'Which transformer blocks the LoRA trains: "likeness" targets specific blocks for '
              'likeness or portraits, "all" trains all of them, "none" no specific blocks.',
              ENUM, choices=("likeness", "all", "none"), advanced=True,
              placeholder="Scenario's choice"),
        Field("priorLossWeight", "Prior loss weight", "The weight of prior preservation loss.",
              NUMBER, minimum=0, exclusive_minimum=True, advanced=True,
              placeholder="Scenario's default"),
        Field("randomCrop", "Random crop",
              "Random crop instead of center crop before resizing to the working resolution.",
              BOOL, default=False, advanced=True),
        Field("randomCropRatio", "Random crop ratio", "Ratio of random crops.", NUMBER,
              minimum=0, maximum=1, advanced=True, placeholder="Scenario's default"),
        Field("randomCropScale", "Random crop scale", "Scale of random crops.", NUMBER,
              minimum=0, maximum=1, advanced=True, placeholder="Scenario's default"),
        Field("rank", "Rank", "The dimension of the LoRA update matrices.", INTEGER,
              advanced=True),
        Field("removeBackgroundNoise", "Remove background noise",
              "Remove background noise from the audio samples before cloning.", BOOL,
              caution="When on, each audio sample must be at least 5 seconds long."),
        Field("samplePrompts", "Sample prompts",
              "The prompts to use for each epoch: each one renders a sample image at the end of "
              "every epoch.", TEXT_LIST, max_items=DASHBOARD_MAX_PROMPTS,
              max_length=DASHBOARD_MAX_TEXT),
        Field("sampleSourceImages", "Sample source images",
              "Training images paired with the sample prompts, one per prompt.", ASSET_LIST,
              max_items=DASHBOARD_MAX_PROMPTS, max_length=DASHBOARD_MAX_ASSET_ID,
              pattern=r"[A-Za-z0-9_-]+", pattern_message="Not an asset id."),
        Field("scaleLr", "Scale learning rate",
              "Whether to scale the learning rate. Legacy: Scenario ignores it.", BOOL,
              default=False, advanced=True, legacy=True),
        Field("seed", "Seed",
              "Used to reproduce previous results. Left empty, Scenario picks a random seed.",
              INTEGER, minimum=0, maximum=9007199254740991, advanced=True, placeholder="Random"),
        Field("textEncoderTrainingRatio", "Text encoder training ratio",
              "Share of the steps spent on the text encoder: for 100 steps and 0.2, the text "
              "encoder trains for 20 steps and then the UNet for 80.", NUMBER,
              minimum=0, maximum=0.99, advanced=True, placeholder="Scenario's default"),
        Field("validationFrequency", "Validation frequency",
              "Validation frequency. Cannot be greater than the number of training steps.",
              INTEGER, minimum=0, advanced=True, placeholder="Scenario's default"),
        Field("validationPrompt", "Validation prompt", "Validation prompt.", default="",
              advanced=True, **_TEXT),
        Field("voiceDescription", "Voice description",
              "Description of the voice characteristics.", multiline=True, **_TEXT),
        Field("wandbKey", "Weights & Biases key",
              "The Weights & Biases key to use for logging.", TEXT, max_length=40,
              advanced=True, secret=True),
    )
}  # fmt: skip


def _spec(name: str, **changes) -> Field:
    return replace(SPEC[name], **changes) if changes else SPEC[name]


# --- Presets from the dataset-size guidance -------------------------------------------------
# The guidance gives epoch ranges; a preset takes the middle of the range, rounded down.
# Its ranges meet at 10 and 25 images; the larger dataset's advice wins there.

_GUIDANCE = (
    ("small", "5–9 images", 5, 9, {"learningRate": 5e-5, "nbEpochs": 17}),
    ("medium", "10–24 images", 10, 24, {"learningRate": 1e-4, "nbEpochs": 10}),
    ("large", "25–50 images", 25, 50, {"learningRate": 2e-4, "nbEpochs": 7}),
)


def _presets(field_names: Collection[str]) -> tuple[Preset, ...]:
    """The guidance, keeping only the values this trainer accepts."""
    return tuple(
        Preset(key, label, low, high, {k: v for k, v in values.items() if k in field_names})
        for key, label, low, high, values in _GUIDANCE
    )


# --- The families ---------------------------------------------------------------------------

_FLUX_FIELDS = (
    _spec("conceptPrompt", default=""),
    _spec("maxTrainSteps", default=PerImage(100), maximum=10000),
    _spec("nbEpochs"),
    _spec("learningRate", default=1e-4),
    _spec("samplePrompts"),
    _spec("sampleSourceImages"),
    _spec("optimizeFor"),
    _spec("rank", default=16, minimum=2, maximum=64),
    _spec("learningRateTextEncoder", default=1e-5, minimum=1e-6, maximum=1e-3),
    _spec("batchSize", placeholder="Scenario's default"),
    _spec("nbRepeats"),
    _spec("wandbKey"),
)

# Where the reference gives bounds for some trainers only, the Swagger subset's bounds (which
# hold for every trainer) apply to the others: learningRateTextEncoder in (0, 0.001],
# maxTrainSteps in [0, 40000].
_TEXT_ENCODER_RATE = {"minimum": 0, "exclusive_minimum": True, "maximum": 1e-3}

# The reference documents only `rank` for Musubi. The parameters it restricts to no trainer
# (conceptPrompt, learningRate, learningRateTextEncoder, maxTrainSteps, wandbKey) are offered
# too, with no default, since it gives none for Musubi (GUESSES: "musubi-steps").
_MUSUBI_FIELDS = (
    _spec("conceptPrompt", placeholder="Scenario's default"),
    _spec("maxTrainSteps", minimum=0, maximum=40000, placeholder="Scenario's default"),
    _spec("learningRate", placeholder="Scenario's default"),
    _spec("learningRateTextEncoder", placeholder="Scenario's default", **_TEXT_ENCODER_RATE),
    _spec("rank", default=64, minimum=2, maximum=128),
    _spec("wandbKey"),
)

_SD_COMMON = (
    _spec("learningRate", default=5e-6),
    _spec("lrScheduler"),
    _spec("priorLossWeight"),
    _spec("randomCrop"),
    _spec("randomCropRatio"),
    _spec("randomCropScale"),
    _spec("seed"),
    _spec("textEncoderTrainingRatio"),
    _spec("validationFrequency"),
    _spec("validationPrompt"),
    _spec("scaleLr"),
    _spec("wandbKey"),
)

_SD15_FIELDS = (
    _spec("conceptPrompt", placeholder="daiton, when no class prompt is given"),
    _spec("classPrompt"),
    _spec("maxTrainSteps", default=PerImage(225, 3), maximum=40000),
    _spec("learningRateTextEncoder", placeholder="Scenario's default", **_TEXT_ENCODER_RATE),
    *_SD_COMMON,
)

# SDXL trains the text encoder and the UNet for separate step counts, which the reference
# advises over maxTrainSteps; it still documents maxTrainSteps for SDXL (default images × 175,
# at most 40000), so it is offered too, and sent only when typed (GUESSES: "sdxl-steps").
# The reference gives no SDXL bounds for rank; these are its older schema's.
_SDXL_FIELDS = (
    _spec("conceptPrompt", default="daiton"),
    _spec("numTextTrainSteps"),
    _spec("numUNetTrainSteps"),
    _spec(
        "maxTrainSteps",
        maximum=40000,
        advanced=True,
        placeholder="images × 175 (Scenario's default)",
        caution="Scenario advises the text encoder and UNet steps instead.",
    ),
    _spec("learningRateTextEncoder", default=5e-5, **_TEXT_ENCODER_RATE),
    _spec("learningRateUnet"),
    _spec("rank", default=64, minimum=4, maximum=64),
    *_SD_COMMON,
)

_VOICE_FIELDS = (
    _spec("cloneType"),
    _spec("language"),
    _spec("voiceDescription"),
    _spec("removeBackgroundNoise"),
    _spec("age", caution="For professional cloning only."),
    _spec("gender", caution="For professional cloning only."),
)


def _names(fields: tuple[Field, ...]) -> tuple[str, ...]:
    return tuple(f.name for f in fields)


FLUX_LORA = "flux-lora"
MUSUBI = "musubi"
SD15_LORA = "sd15-lora"
SDXL_LORA = "sdxl-lora"
ELEVENLABS_VOICE = "elevenlabs-voice"

FAMILIES: dict[str, Family] = {
    FLUX_LORA: Family(
        FLUX_LORA,
        "Flux LoRA",
        _FLUX_FIELDS,
        presets=_presets(_names(_FLUX_FIELDS)),
        rules=(SameLength("sampleSourceImages", "samplePrompts"),),
        step_fields=("maxTrainSteps",),
        steps_per_image=PerImage(100),
        # The reference gives no default epoch count; the guidance's middle range says 10.
        default_epochs=10,
    ),
    MUSUBI: Family(
        MUSUBI,
        "Musubi LoRA",
        _MUSUBI_FIELDS,
        presets=_presets(_names(_MUSUBI_FIELDS)),
        # Not documented: sized like Flux LoRA for the estimate and the simulator.
        steps_per_image=PerImage(100),
    ),
    SD15_LORA: Family(
        SD15_LORA,
        "SD 1.5 LoRA (legacy)",
        _SD15_FIELDS,
        rules=(NotAboveSteps("validationFrequency"),),
        step_fields=("maxTrainSteps",),
        steps_per_image=PerImage(225, 3),
        legacy=True,
    ),
    SDXL_LORA: Family(
        SDXL_LORA,
        "SDXL LoRA (legacy)",
        _SDXL_FIELDS,
        rules=(NotAboveSteps("validationFrequency"),),
        step_fields=("numTextTrainSteps", "numUNetTrainSteps"),
        steps_per_image=PerImage(175),
        legacy=True,
    ),
    ELEVENLABS_VOICE: Family(
        ELEVENLABS_VOICE,
        "ElevenLabs voice",
        _VOICE_FIELDS,
        rules=(
            OnlyWhen("age", "cloneType", "professional"),
            OnlyWhen("gender", "cloneType", "professional"),
        ),
        # A voice clone has no training steps; a nominal size per audio sample lets the
        # estimate and the simulator scale with the samples.
        steps_per_image=PerImage(10),
    ),
}

# --- Model type → trainer family ------------------------------------------------------------
# The reference names the trainer of the flux.1 LoRA types, the SD types and the voice type.
# It does not say which trainer the newer LoRA types use: they are assumed to be Musubi's
# (Scenario runs "musubi-model-training" jobs, and Musubi trains these architectures).
# If that turns out different, change this one constant, or move single types below.
NEWER_LORA_FAMILY = MUSUBI

FAMILY_OF_TYPE: dict[str, str] = {
    # Documented: "Only available for Flux LoRA training".
    "flux.1-lora": FLUX_LORA,
    "flux.1-kontext-lora": FLUX_LORA,
    "flux.1-krea-lora": FLUX_LORA,
    # Assumed (see above).
    "flux.2-dev-lora": NEWER_LORA_FAMILY,
    "flux.2-dev-edit-lora": NEWER_LORA_FAMILY,
    "flux.2-klein-4b-lora": NEWER_LORA_FAMILY,
    "flux.2-klein-4b-edit-lora": NEWER_LORA_FAMILY,
    "flux.2-klein-9b-lora": NEWER_LORA_FAMILY,
    "flux.2-klein-9b-edit-lora": NEWER_LORA_FAMILY,
    "flux.2-klein-base-4b-lora": NEWER_LORA_FAMILY,
    "flux.2-klein-base-4b-edit-lora": NEWER_LORA_FAMILY,
    "flux.2-klein-base-9b-lora": NEWER_LORA_FAMILY,
    "flux.2-klein-base-9b-edit-lora": NEWER_LORA_FAMILY,
    "qwen-image-lora": NEWER_LORA_FAMILY,
    "qwen-image-2512-lora": NEWER_LORA_FAMILY,
    "qwen-image-edit-lora": NEWER_LORA_FAMILY,
    "qwen-image-edit-2509-lora": NEWER_LORA_FAMILY,
    "qwen-image-edit-2511-lora": NEWER_LORA_FAMILY,
    "zimage-lora": NEWER_LORA_FAMILY,
    "zimage-turbo-lora": NEWER_LORA_FAMILY,
    "zimage-de-turbo-lora": NEWER_LORA_FAMILY,
    # Legacy, still documented: "SD15 and SDXL LoRA training".
    "sd-1_5": SD15_LORA,
    "sd-1_5-lora": SD15_LORA,
    "sd-xl-lora": SDXL_LORA,
    # Documented: "Only available for ElevenLabs voice training".
    "elevenlabs-voice": ELEVENLABS_VOICE,
}

TRAINABLE_TYPES: tuple[str, ...] = tuple(FAMILY_OF_TYPE)


# --- Where the reference is silent: the table's guesses, once, with its words ---------------


@dataclass(frozen=True)
class Guess:
    """A reading the reference leaves open: what the table does, and the words it rests on."""

    key: str
    guess: str
    spec: str
    where: str


GUESSES: tuple[Guess, ...] = (
    Guess("newer-lora-trainer",
          "flux.2-*, qwen-image-* and zimage-* LoRA types are trained by Musubi.",
          "Trainers are named (\"Flux LoRA\", \"Musubi\", …) but no model type is given one; "
          "jobType lists \"musubi-model-training\".",
          "NEWER_LORA_FAMILY, FAMILY_OF_TYPE"),
    Guess("flux-default-epochs",
          "An empty nbEpochs trains 10 epochs (for the estimate and the run page).",
          "`nbEpochs: optional number` The number of epochs to train for (no default given).",
          "FAMILIES[FLUX_LORA].default_epochs"),
    Guess("musubi-steps",
          "Musubi runs are sized images × 100 steps; its parameters get no defaults.",
          "Maximum number of training steps to execute (default: varies depending on the model "
          "type) - no Musubi value.",
          "FAMILIES[MUSUBI].steps_per_image, _MUSUBI_FIELDS"),
    Guess("voice-steps",
          "A voice clone is sized 10 steps per audio sample, for the estimate only.",
          "No step parameter is available for ElevenLabs voice training.",
          "FAMILIES[ELEVENLABS_VOICE].steps_per_image"),
    Guess("sdxl-steps",
          "SDXL's maxTrainSteps is offered but sent only when typed; when the text encoder or "
          "UNet steps are given, their sum is the run's step count.",
          "For SDXL LoRA training, please use `numTextTrainSteps` and `numUNetTrainSteps` "
          "instead … - For SDXL: number of training images * 175",
          "_SDXL_FIELDS, Family.steps"),
    Guess("sdxl-rank-bounds",
          "SDXL's rank is between 4 and 64, default 64.",
          "Each trainer enforces its own tighter limit (Flux LoRA: [2; 64], Musubi: [2; 128]) - "
          "none for SDXL; the Swagger subset says [4, 64].",
          "_SDXL_FIELDS"),
    Guess("text-encoder-rate-bounds",
          "learningRateTextEncoder is above 0 and at most 0.001 for SDXL, SD 1.5 and Musubi.",
          "Maximum [Flux LoRA: 0.001] … Minimum [SDXL: 0 | Flux LoRA: 0.000001]; the Swagger "
          "subset: minimum 0 (exclusive), maximum 0.001.",
          "_TEXT_ENCODER_RATE"),
    Guess("optimize-for-values",
          "optimizeFor offers \"likeness\", \"all\" and \"none\".",
          '`optimizeFor: optional "likeness"` … The available values are: - "likeness" … - '
          '"all": train all transformer blocks - "none": train no specific transformer blocks',
          'SPEC["optimizeFor"]'),
    Guess("clone-type-values",
          "cloneType is \"instant\" or \"professional\"; left empty, Scenario chooses.",
          '`cloneType: optional string` Type of voice cloning: "instant" (fast) or '
          '"professional" (higher quality, requires captcha)',
          'SPEC["cloneType"]'),
    Guess("professional-voice",
          "Age and gender are refused unless the clone type is professional.",
          "`age: optional string` Age group of the voice (for professional cloning)",
          "FAMILIES[ELEVENLABS_VOICE].rules (OnlyWhen)"),
)  # fmt: skip


# --- Lookups --------------------------------------------------------------------------------


def family_for(model_type: str) -> Family:
    try:
        return FAMILIES[FAMILY_OF_TYPE[model_type]]
    except (KeyError, TypeError):
        shown = repr(model_type)[:80]
        raise UnknownModelType(f"The dashboard cannot train models of type {shown}.") from None


def fields_for(model_type: str) -> list[Field]:
    return list(family_for(model_type).fields)


def defaults_for(model_type: str, image_count: int) -> dict[str, object]:
    """Scenario's defaults for the fields a person sets, computed ones filled in."""
    return {
        f.name: f.default_for(image_count)
        for f in family_for(model_type).form_fields
        if f.default is not None
    }


HIDDEN = "(set, hidden)"
# What a run keeps of a secret once the launch has gone out: the fact that one was sent.
REDACTED = "(redacted after the launch)"


def for_display(parameters: Mapping[str, object]) -> dict[str, object]:
    """The parameters fit to show a person: a secret's value is replaced by the fact it was set."""
    return _mask_secrets(parameters, HIDDEN)


def without_secrets(parameters: Mapping[str, object]) -> dict[str, object]:
    """The parameters fit to keep after the launch: a secret's value is replaced by REDACTED."""
    return _mask_secrets(parameters, REDACTED)


def _mask_secrets(parameters: Mapping[str, object], marker: str) -> dict[str, object]:
    return {
        name: marker if name in SPEC and SPEC[name].secret and value else value
        for name, value in parameters.items()
    }


def label_for(name: str) -> str:
    """The form's label for a parameter name; a name the table does not know stays as it is."""
    return SPEC[name].label if name in SPEC else name


# --- Validation -----------------------------------------------------------------------------

_UNSET = object()
_NUMBER_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d{1,4})?")
# Text may hold line breaks and tabs, not other control characters (and never NUL, which a
# Postgres JSON column refuses).
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class _Invalid(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def validate(
    model_type: str,
    raw: Mapping[str, object],
    image_count: int | None = None,
    *,
    known_assets: Collection[str] | None = None,
) -> tuple[dict[str, object], dict[str, str]]:
    """Check parameters for a model type: (clean JSON-ready values, errors by field name).

    `raw` values may be form strings or JSON values. Empty values are left out of the clean
    result (Scenario's default applies). Cross-field errors sit under the field they concern;
    errors about the whole request under "__all__". With `known_assets`, asset ids must be
    among them (the model's training images). Never raises on bad input.
    """
    try:
        family = family_for(model_type)
    except UnknownModelType as exc:
        return {}, {ALL: str(exc)}
    if not isinstance(raw, Mapping):
        return {}, {ALL: "Parameters must be a set of named values."}
    clean: dict[str, object] = {}
    errors: dict[str, str] = {}
    _check_unknown(family, model_type, raw, errors)
    for f in family.fields:
        if f.name not in raw:
            continue
        try:
            value = _parse(f, raw[f.name], known_assets)
        except _Invalid as exc:
            errors[f.name] = exc.message
            continue
        if value is not _UNSET:
            clean[f.name] = value
    for rule in family.rules:
        # A rule about values that did not parse would only repeat their errors.
        if any(name in errors for name in rule.depends_on(family)):
            continue
        message = rule.check(family, clean, image_count)
        if message:
            errors[rule.name] = message
    return clean, errors


def _check_unknown(family: Family, model_type: str, raw: Mapping, errors: dict) -> None:
    accepted = set(family.names)
    unknown = [key for key in raw if key not in accepted]
    for key in unknown[:_MAX_UNKNOWN_REPORTED]:
        if not isinstance(key, str):
            errors[ALL] = "Parameter names must be text."
            continue
        name = key[:100]
        errors[name] = family.refusals.get(key, f"Not accepted for {model_type}.")
    if len(unknown) > _MAX_UNKNOWN_REPORTED:
        errors[ALL] = f"{len(unknown)} parameters are not accepted for {model_type}."


def _is_empty(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list | tuple):
        return len(value) == 0
    return False


def _parse(f: Field, value: object, known_assets: Collection[str] | None) -> object:
    """The clean value of one field, _UNSET when left empty; raises _Invalid."""
    if _is_empty(value):
        return _UNSET
    if f.is_list:
        return _parse_list(f, value, known_assets)
    if isinstance(value, list | tuple | dict | set):
        raise _Invalid("Enter a single value.")
    if f.kind in (NUMBER, INTEGER):
        number = _parse_number(value, integer=f.kind == INTEGER)
        _check_bounds(f, number)
        return number
    if f.kind == BOOL:
        return _parse_bool(value)
    text = _parse_text(value, f.max_length)
    if f.kind == ENUM and text not in f.choices:
        raise _Invalid("Choose one of: " + ", ".join(f.choices) + ".")
    if f.pattern and not re.fullmatch(f.pattern, text):
        raise _Invalid(f.pattern_message or "Not in the expected form.")
    return text


def _parse_number(value: object, *, integer: bool) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _Invalid("Enter a number.")
    if isinstance(value, str):
        text = value.strip()
        if len(text) > _MAX_NUMBER_CHARS or not _NUMBER_RE.fullmatch(text):
            raise _Invalid("Enter a number.")
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise _Invalid("Enter a number.") from None
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise _Invalid("Enter a finite number.")
        number = Decimal(repr(value))
    else:
        if abs(value) > 10**30:
            raise _Invalid("This number is far too large.")
        number = Decimal(value)
    if integer:
        if number != number.to_integral_value():
            raise _Invalid("Enter a whole number.")
        return int(number)
    result = float(number)
    if not math.isfinite(result):
        raise _Invalid("Enter a finite number.")
    return result


def _check_bounds(f: Field, number: int | float) -> None:
    if f.minimum is not None:
        if f.exclusive_minimum and number <= f.minimum:
            raise _Invalid(f"Must be greater than {display.number(f.minimum)}.")
        if number < f.minimum:
            raise _Invalid(f"Must be at least {display.number(f.minimum)}.")
    if f.maximum is not None and number > f.maximum:
        raise _Invalid(f"Must be at most {display.number(f.maximum)}.")


_TRUE = {"true", "on", "1", "yes"}
_FALSE = {"false", "off", "0", "no"}


def _parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and len(value) < 10:
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise _Invalid("Choose yes or no.")


def _parse_text(value: object, max_length: int | None) -> str:
    if not isinstance(value, str):
        raise _Invalid("Enter text.")
    text = value.strip()
    if max_length is not None and len(text) > max_length:
        raise _Invalid(f"At most {max_length} characters ({len(text)} given).")
    if _CONTROL_RE.search(text):
        raise _Invalid("Remove the control characters.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _Invalid("Not valid text.") from None
    return text


def _parse_list(f: Field, value: object, known_assets: Collection[str] | None) -> list[str]:
    if not isinstance(value, list | tuple):
        raise _Invalid("Expected a list.")
    if f.max_items is not None and len(value) > f.max_items:
        raise _Invalid(f"At most {f.max_items} items ({len(value)} given).")
    items = []
    for index, item in enumerate(value, start=1):
        try:
            items.append(_parse_item(f, item, known_assets))
        except _Invalid as exc:
            raise _Invalid(f"Item {index}: {exc.message}") from None
    return items


def _parse_item(f: Field, item: object, known_assets: Collection[str] | None) -> str:
    if _is_empty(item):
        raise _Invalid("Empty.")
    text = _parse_text(item, f.max_length)
    if f.pattern and not re.fullmatch(f.pattern, text):
        raise _Invalid(f.pattern_message or "Not in the expected form.")
    if f.kind == ASSET_LIST and known_assets is not None and text not in known_assets:
        raise _Invalid("Not one of this model's training images.")
    return text


# --- What is sent, and how big a run is -----------------------------------------------------


def request_parameters(model_type: str, clean: dict, image_count: int) -> dict:
    """The parameters to send to Scenario, by the rule in the module docstring."""
    family = family_for(model_type)
    sent: dict[str, object] = {}
    for f in family.form_fields:
        value = clean.get(f.name) if isinstance(clean, Mapping) else None
        if _is_empty(value):
            if f.computed:
                sent[f.name] = f.default_for(image_count)
            continue
        sent[f.name] = value
    return sent


def _lenient(family: Family, parameters: object, names: tuple[str, ...]) -> dict[str, object]:
    """The valid values among `names`, ignoring the rest: sizing never fails on bad input."""
    if not isinstance(parameters, Mapping):
        return {}
    values = {}
    for name in names:
        if name not in parameters:
            continue
        try:
            value = _parse(family.field(name), parameters[name], None)
        except (_Invalid, KeyError):
            continue
        if value is not _UNSET:
            values[name] = value
    return values


def training_steps(model_type: str, parameters: dict, image_count: int) -> int:
    """The number of steps a run makes, defaults filled in; the simulator sizes runs by it."""
    family = family_for(model_type)
    names = tuple(dict.fromkeys((*family.step_fields, "maxTrainSteps")))
    values = _lenient(family, parameters, tuple(n for n in names if n in family.names))
    steps = family.steps(values, max(0, int(image_count or 0)))
    return int(steps or 0)


def epochs_for(model_type: str, parameters: dict) -> int:
    """The number of epochs a run makes: nbEpochs where the trainer takes it, else its default."""
    family = family_for(model_type)
    if "nbEpochs" not in family.names:
        return family.default_epochs
    values = _lenient(family, parameters, ("nbEpochs",))
    return int(values.get("nbEpochs", family.default_epochs))
