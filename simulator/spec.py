"""What each Scenario trainer accepts, as the simulator reads Scenario's own documents.

This is the simulator's reading, kept apart from the dashboard's table on purpose: both are
taken from Scenario's API reference for `PUT /models/{modelId}/train` (train-endpoints.md,
the primary document, copied to tests/scenario_api/) and, where it is silent, from the
Swagger 2.0 subset beside it (openapi-training-subset.yaml). A contract test lists every
place where the two readings differ, so a misreading on either side shows up instead of
being agreed with.

How the reference is read, once for all parameters:
  * "Only available for X training" places a parameter with trainer X. `words` keeps that
    phrase verbatim (a test checks it appears in the reference).
  * A parameter with no such note (conceptPrompt, learningRate, learningRateTextEncoder,
    maxTrainSteps, wandbKey) is restricted to no trainer; it is taken by every image trainer,
    and not by the ElevenLabs voice clone, whose parameters are all noted as its own.
  * Bounds and defaults are the reference's, per trainer where it says "For Flux: …".
    Where it gives none, the subset's are used, and `Rule.from_subset` names them (a test
    checks each against the subset).
  * Types are the reference's JSON types: every count is a "number", not an integer.

Judgement calls, each written once:
  * Which trainer runs which model type (TRAINER_OF_TYPE): see the comments there.
  * "SD15 and SDXL LoRA training" is read as "(SD15 and SDXL) LoRA": it covers sd-1_5 and
    sd-1_5-lora as well as sd-xl-lora.
  * optimizeFor: the reference's type is `optional "likeness"`, and the subset's enum is
    ["likeness"]; its text lists "all" and "none" too. The typed enum is what is enforced.
  * cloneType: typed as a plain string; its text names the two values ("instant" or
    "professional"), and those are enforced.
  * The subset's priorLossWeight maximum (1.7976931348623157E308) is the largest double, so
    no maximum at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# JSON types, as the reference names them.
NUMBER = "number"
STRING = "string"
BOOLEAN = "boolean"
ARRAY = "array"

FLUX_LORA = "flux-lora"
MUSUBI = "musubi"
SD15 = "sd15"
SDXL_LORA = "sdxl-lora"
ELEVENLABS_VOICE = "elevenlabs-voice"
IMAGE_TRAINERS = (FLUX_LORA, MUSUBI, SD15, SDXL_LORA)


@dataclass(frozen=True)
class Trainer:
    """One of Scenario's trainers: how the reference names it, and the job type it runs."""

    key: str
    label: str
    job_type: str


TRAINERS: dict[str, Trainer] = {
    t.key: t
    for t in (
        # "flux-model-training" and "musubi-model-training" are in the reference's jobType
        # enum; the other trainers are taken to run the generic "model-training".
        Trainer(FLUX_LORA, "Flux LoRA", "flux-model-training"),
        Trainer(MUSUBI, "Musubi LoRA", "musubi-model-training"),
        Trainer(SD15, "SD 1.5", "model-training"),
        Trainer(SDXL_LORA, "SDXL LoRA", "model-training"),
        Trainer(ELEVENLABS_VOICE, "ElevenLabs voice", "model-training"),
    )
}

# --- Model type → trainer --------------------------------------------------------------------
# The reference names trainers ("Flux LoRA", "SD15", "SDXL LoRA", "Musubi", "ElevenLabs voice")
# but never says which model types each one trains. Read from the type names:
#   * flux.1 LoRA types are "Flux LoRA" (the trainer of "flux-model-training" jobs);
#   * the newer LoRA types (flux.2, qwen-image, zimage) are taken to be Musubi's: the
#     reference has a Musubi trainer with its own rank default and limit and a
#     "musubi-model-training" job type, and no other trainer left for them;
#   * sd-1_5 and sd-1_5-lora are "SD15", sd-xl-lora is "SDXL LoRA";
#   * elevenlabs-voice is "ElevenLabs voice".
_MUSUBI_TYPES = (
    "flux.2-dev-lora flux.2-dev-edit-lora flux.2-klein-4b-lora flux.2-klein-4b-edit-lora "
    "flux.2-klein-9b-lora flux.2-klein-9b-edit-lora flux.2-klein-base-4b-lora "
    "flux.2-klein-base-4b-edit-lora flux.2-klein-base-9b-lora flux.2-klein-base-9b-edit-lora "
    "qwen-image-lora qwen-image-2512-lora qwen-image-edit-lora qwen-image-edit-2509-lora "
    "qwen-image-edit-2511-lora zimage-lora zimage-turbo-lora zimage-de-turbo-lora"
).split()

TRAINER_OF_TYPE: dict[str, str] = {
    "flux.1-lora": FLUX_LORA,
    "flux.1-kontext-lora": FLUX_LORA,
    "flux.1-krea-lora": FLUX_LORA,
    **dict.fromkeys(_MUSUBI_TYPES, MUSUBI),
    "sd-1_5": SD15,
    "sd-1_5-lora": SD15,
    "sd-xl-lora": SDXL_LORA,
    "elevenlabs-voice": ELEVENLABS_VOICE,
}


# --- Parameters ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PerImage:
    """A default the reference computes from the image count n: round(n × numerator / den)."""

    numerator: int
    denominator: int = 1

    def __call__(self, images: int) -> int:
        n = max(0, int(images))
        # Round half up, as the reference's round() does, in integers.
        return (2 * n * self.numerator + self.denominator) // (2 * self.denominator)


@dataclass(frozen=True)
class Rule:
    """How one trainer takes one parameter: its default, bounds and allowed values.

    Bounds are inclusive unless `exclusive_minimum`. `from_subset` names the attributes
    taken from the Swagger subset because the reference gives none for this trainer.
    """

    default: object = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    enum: tuple[str, ...] = ()
    max_length: int | None = None
    from_subset: tuple[str, ...] = ()


@dataclass(frozen=True)
class Parameter:
    """One body parameter of the trigger, with the trainers that take it."""

    name: str
    type: str
    # The reference's words that place the parameter (verbatim), or say why it is everyone's.
    words: str
    rules: Mapping[str, Rule] = field(default_factory=dict)
    items: str = ""  # the item type of an array

    def rule(self, trainer: str) -> Rule | None:
        return self.rules.get(trainer)


FLUX_ONLY = "Only available for Flux LoRA training"
SD_LORA = "Only available for SD15 and SDXL LoRA training"
SDXL_ONLY = "Only available for SDXL LoRA training"
VOICE_ONLY = "Only available for ElevenLabs voice training"
UNRESTRICTED = "Default value varies depending on the model type"


def _each(trainers: tuple[str, ...], rule: Rule = Rule()) -> dict[str, Rule]:
    return dict.fromkeys(trainers, rule)


def _sd(rule: Rule = Rule()) -> dict[str, Rule]:
    return _each((SD15, SDXL_LORA), rule)


_SUBSET_BOUNDS = ("minimum", "maximum")
_POSITIVE = Rule(minimum=0, exclusive_minimum=True, from_subset=("minimum", "exclusive_minimum"))
# learningRateTextEncoder where the reference gives no bounds: the subset's, for every trainer.
_TEXT_ENCODER_SUBSET = Rule(
    minimum=0,
    maximum=0.001,
    exclusive_minimum=True,
    from_subset=("minimum", "maximum", "exclusive_minimum"),
)

PARAMETERS: dict[str, Parameter] = {
    p.name: p
    for p in (
        Parameter("age", STRING, VOICE_ONLY, _each((ELEVENLABS_VOICE,))),
        Parameter(
            "batchSize",
            NUMBER,
            FLUX_ONLY,
            {FLUX_LORA: Rule(minimum=1, maximum=4, from_subset=_SUBSET_BOUNDS)},
        ),
        Parameter("classPrompt", STRING, "Only available for SD15 training", _each((SD15,))),
        Parameter(
            "cloneType",
            STRING,
            VOICE_ONLY,
            # 'Type of voice cloning: "instant" (fast) or "professional" (higher quality, …)'
            {ELEVENLABS_VOICE: Rule(enum=("instant", "professional"))},
        ),
        Parameter(
            "conceptPrompt",
            STRING,
            UNRESTRICTED,
            {
                # '- For SD1.5: "daiton" if no class is associated with the model': no fixed
                # default for SD 1.5, and none given for Musubi.
                FLUX_LORA: Rule(default=""),
                MUSUBI: Rule(),
                SD15: Rule(),
                SDXL_LORA: Rule(default="daiton"),
            },
        ),
        Parameter("gender", STRING, VOICE_ONLY, _each((ELEVENLABS_VOICE,))),
        # "(ISO 639-1 code)": two letters, but the reference types it a plain string.
        Parameter("language", STRING, VOICE_ONLY, _each((ELEVENLABS_VOICE,))),
        Parameter(
            "learningRate",
            NUMBER,
            UNRESTRICTED,
            {
                # "- For SD1.5 and SDXL: 0.000005 - For Flux: 0.0001"; none for Musubi.
                FLUX_LORA: Rule(
                    default=0.0001,
                    minimum=0,
                    exclusive_minimum=True,
                    from_subset=("minimum", "exclusive_minimum"),
                ),
                MUSUBI: _POSITIVE,
                **_sd(
                    Rule(
                        default=0.000005,
                        minimum=0,
                        exclusive_minimum=True,
                        from_subset=("minimum", "exclusive_minimum"),
                    )
                ),
            },
        ),  # fmt: skip
        Parameter(
            "learningRateTextEncoder",
            NUMBER,
            # No "Only available for" note: "Maximum [Flux LoRA: 0.001] Default [SDXL: 0.00005 |
            # Flux LoRA: 0.00001] Minimum [SDXL: 0 | Flux LoRA: 0.000001]".
            "Maximum [Flux LoRA: 0.001]",
            {
                FLUX_LORA: Rule(default=0.00001, minimum=0.000001, maximum=0.001),
                SDXL_LORA: Rule(
                    default=0.00005,
                    minimum=0,
                    maximum=0.001,
                    exclusive_minimum=True,
                    from_subset=("maximum", "exclusive_minimum"),
                ),
                MUSUBI: _TEXT_ENCODER_SUBSET,
                SD15: _TEXT_ENCODER_SUBSET,
            },
        ),  # fmt: skip
        Parameter("learningRateUnet", NUMBER, SDXL_ONLY, {SDXL_LORA: _POSITIVE}),
        Parameter(
            "lrScheduler",
            STRING,
            SD_LORA,
            _sd(
                Rule(
                    default="constant",  # 'The scheduler type to use (default: "constant")'
                    enum=(
                        "constant",
                        "constant-with-warmup",
                        "cosine",
                        "cosine-with-restarts",
                        "linear",
                        "polynomial",
                    ),
                )
            ),
        ),  # fmt: skip
        Parameter(
            "maxTrainSteps",
            NUMBER,
            # No "Only available for" note. For SDXL the reference advises ("please use
            # `numTextTrainSteps` and `numUNetTrainSteps` instead") but still gives a default and
            # a maximum, so SDXL takes it. Musubi gets no default; its bounds are the subset's.
            "Maximum number of training steps to execute (default: varies depending on the model",
            {
                FLUX_LORA: Rule(default=PerImage(100), minimum=0, maximum=10000),
                SD15: Rule(default=PerImage(225, 3), minimum=0, maximum=40000),
                SDXL_LORA: Rule(default=PerImage(175), minimum=0, maximum=40000),
                MUSUBI: Rule(minimum=0, maximum=40000, from_subset=_SUBSET_BOUNDS),
            },
        ),  # fmt: skip
        Parameter(
            "nbEpochs",
            NUMBER,
            FLUX_ONLY,
            {FLUX_LORA: Rule(minimum=1, maximum=30, from_subset=_SUBSET_BOUNDS)},
        ),
        Parameter(
            "nbRepeats",
            NUMBER,
            FLUX_ONLY,
            {FLUX_LORA: Rule(minimum=1, maximum=30, from_subset=_SUBSET_BOUNDS)},
        ),
        Parameter(
            "numTextTrainSteps",
            NUMBER,
            SDXL_ONLY,
            {SDXL_LORA: Rule(minimum=0, maximum=40000, from_subset=_SUBSET_BOUNDS)},
        ),
        Parameter(
            "numUNetTrainSteps",
            NUMBER,
            SDXL_ONLY,
            {SDXL_LORA: Rule(minimum=0, maximum=40000, from_subset=_SUBSET_BOUNDS)},
        ),
        Parameter("optimizeFor", STRING, FLUX_ONLY, {FLUX_LORA: Rule(enum=("likeness",))}),
        Parameter("priorLossWeight", NUMBER, SD_LORA, _sd(_POSITIVE)),
        Parameter(
            "randomCrop", BOOLEAN, SD_LORA, _sd(Rule(default=False, from_subset=("default",)))
        ),
        Parameter(
            "randomCropRatio",
            NUMBER,
            SD_LORA,
            _sd(Rule(minimum=0, maximum=1, from_subset=_SUBSET_BOUNDS)),
        ),
        Parameter(
            "randomCropScale",
            NUMBER,
            SD_LORA,
            _sd(Rule(minimum=0, maximum=1, from_subset=_SUBSET_BOUNDS)),
        ),
        Parameter(
            "rank",
            NUMBER,
            "Only available for SDXL (deprecated), Flux LoRA and Musubi training",
            {
                # "Each trainer enforces its own tighter limit (Flux LoRA: [2; 64], Musubi:
                # [2; 128])"; none for SDXL, whose bounds are the subset's [4, 64].
                SDXL_LORA: Rule(default=64, minimum=4, maximum=64, from_subset=_SUBSET_BOUNDS),
                FLUX_LORA: Rule(default=16, minimum=2, maximum=64),
                MUSUBI: Rule(default=64, minimum=2, maximum=128),
            },
        ),
        Parameter("removeBackgroundNoise", BOOLEAN, VOICE_ONLY, _each((ELEVENLABS_VOICE,))),
        Parameter("samplePrompts", ARRAY, FLUX_ONLY, _each((FLUX_LORA,)), items=STRING),
        Parameter(
            "sampleSourceImages",
            ARRAY,
            FLUX_ONLY,
            _each((FLUX_LORA,)),
            items=STRING,
        ),
        Parameter(
            "scaleLr",
            BOOLEAN,
            SD_LORA,  # "Note: Legacy parameter, will be ignored": taken, and ignored
            _sd(Rule(default=False, from_subset=("default",))),
        ),
        Parameter(
            "seed",
            NUMBER,
            SD_LORA,
            _sd(Rule(minimum=0, maximum=9007199254740991, from_subset=_SUBSET_BOUNDS)),
        ),
        Parameter(
            "textEncoderTrainingRatio",
            NUMBER,
            SD_LORA,
            _sd(Rule(minimum=0, maximum=0.99, from_subset=_SUBSET_BOUNDS)),
        ),
        Parameter(
            "validationFrequency",
            NUMBER,
            SD_LORA,  # "Cannot be greater than maxTrainSteps value"
            _sd(Rule(minimum=0, from_subset=("minimum",))),
        ),
        Parameter(
            "validationPrompt", STRING, SD_LORA, _sd(Rule(default="", from_subset=("default",)))
        ),
        Parameter("voiceDescription", STRING, VOICE_ONLY, _each((ELEVENLABS_VOICE,))),
        Parameter(
            "wandbKey",
            STRING,
            "The maximum length is 40 characters",
            _each(IMAGE_TRAINERS, Rule(max_length=40)),
        ),
    )
}


# --- Sizing a simulated training -------------------------------------------------------------
# The reference documents no duration and no epoch count when nbEpochs is left out; these are
# the simulator's own choices, used only to size simulated runs.
DEFAULT_EPOCHS = 10
# Musubi's default step count is not documented: images × 100, like Flux LoRA.
MUSUBI_STEPS = PerImage(100)
# A voice clone has no training steps: a nominal 10 per audio sample.
VOICE_STEPS = PerImage(10)


# --- Lookups ---------------------------------------------------------------------------------


def trainer_of(model_type: str) -> Trainer | None:
    key = TRAINER_OF_TYPE.get(model_type) if isinstance(model_type, str) else None
    return TRAINERS.get(key) if key else None


def accepted(trainer: str) -> dict[str, Parameter]:
    """The parameters a trainer takes, by name."""
    return {name: p for name, p in PARAMETERS.items() if trainer in p.rules}
