"""The accepted differences between the dashboard's table and the simulator's reading.

tests/client/test_contract_params.py fails on any difference not listed here, and on any entry
here that no longer matches a difference, so this list is always the whole, current truth.
Each entry covers model types × parameters for one aspect, with both sides' values, the
reference's words (train-endpoints.md, or the Swagger subset where it says so) and why the
difference is left. `kind` says what it is:

    narrower  the dashboard accepts less than the reference: it never sends what Scenario
              refuses, and a person can still ask for everything that makes sense
    own       a limit of the dashboard's own where the reference gives none (DASHBOARD_*)
    bug       the dashboard reads the reference wrongly: to be fixed in training/params.py
    open      the reference can be read both ways; the dashboard's reading is a guess
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator import spec
from tests.contract import Difference


def _types(trainer: str) -> tuple[str, ...]:
    return tuple(t for t, key in spec.TRAINER_OF_TYPE.items() if key == trainer)


FLUX = _types(spec.FLUX_LORA)
MUSUBI = _types(spec.MUSUBI)
SD15 = _types(spec.SD15)
SDXL = _types(spec.SDXL_LORA)
VOICE = _types(spec.ELEVENLABS_VOICE)


@dataclass(frozen=True)
class Accepted:
    types: tuple[str, ...]
    parameters: tuple[str, ...]
    aspect: str
    dashboard: object
    simulator: object
    spec: str
    reason: str
    kind: str

    def differences(self) -> set[Difference]:
        return {
            Difference(t, p, self.aspect, self.dashboard, self.simulator)
            for t in self.types
            for p in self.parameters
        }


_WHOLE = (
    "The dashboard takes whole numbers for counts (steps, epochs, repeats, batch size, rank, "
    "seed, validation frequency); the reference types every one of them a number. A fraction "
    "of a step means nothing, so the dashboard never sends less than Scenario takes."
)
_TEXT = (
    "The dashboard's own limit, DASHBOARD_MAX_TEXT: generous for a person typing, small "
    "enough that a hostile request cannot make the server or Scenario do much work."
)
ACCEPTED: tuple[Accepted, ...] = (
    # --- counts are whole numbers -----------------------------------------------------------
    Accepted(FLUX, ("batchSize", "maxTrainSteps", "nbEpochs", "nbRepeats", "rank"), "type",
             "integer", "number", "`nbEpochs: optional number` (and the same for the others)",
             _WHOLE, "narrower"),
    Accepted(MUSUBI, ("maxTrainSteps", "rank"), "type", "integer", "number",
             "`rank: optional number` (and the same for maxTrainSteps)", _WHOLE, "narrower"),
    Accepted(SD15, ("maxTrainSteps", "seed", "validationFrequency"), "type", "integer",
             "number", "`seed: optional number` (and the same for the others)", _WHOLE,
             "narrower"),
    Accepted(SDXL, ("maxTrainSteps", "numTextTrainSteps", "numUNetTrainSteps", "rank", "seed",
                    "validationFrequency"), "type", "integer", "number",
             "`numTextTrainSteps: optional number` (and the same for the others)", _WHOLE,
             "narrower"),
    # --- the dashboard's own limits ---------------------------------------------------------
    Accepted(FLUX, ("conceptPrompt", "samplePrompts"), "maxLength", 2000, None,
             "No length is given for any text but wandbKey.", _TEXT, "own"),
    Accepted(MUSUBI, ("conceptPrompt",), "maxLength", 2000, None,
             "No length is given for any text but wandbKey.", _TEXT, "own"),
    Accepted(SD15, ("classPrompt", "conceptPrompt", "validationPrompt"), "maxLength", 2000,
             None, "No length is given for any text but wandbKey.", _TEXT, "own"),
    Accepted(SDXL, ("conceptPrompt", "validationPrompt"), "maxLength", 2000, None,
             "No length is given for any text but wandbKey.", _TEXT, "own"),
    Accepted(VOICE, ("age", "gender", "voiceDescription"), "maxLength", 2000, None,
             "No length is given for any text but wandbKey.", _TEXT, "own"),
    Accepted(FLUX, ("samplePrompts", "sampleSourceImages"), "maxItems", 20, None,
             "`samplePrompts: optional array of string` The prompts to use for each epoch",
             "The dashboard's own limit, DASHBOARD_MAX_PROMPTS: each prompt renders a sample "
             "image at every epoch, so twenty is already a lot to look at.", "own"),
    Accepted(FLUX, ("sampleSourceImages",), "maxLength", 100, None,
             "The sample prompt images (AssetIds) paired with samplePrompts",
             "The dashboard checks that each item looks like an asset id "
             "(DASHBOARD_MAX_ASSET_ID); it also checks it is one of the model's training "
             "images.", "own"),
    Accepted(FLUX, ("sampleSourceImages",), "pattern", "[A-Za-z0-9_-]+", None,
             "The sample prompt images (AssetIds) paired with samplePrompts",
             "As above: an asset id is letters, digits, _ and -.", "own"),
    Accepted(VOICE, ("language",), "maxLength", 2, None,
             "Language of the audio samples (ISO 639-1 code)",
             "ISO 639-1 codes are two letters; the reference types the field a plain string.",
             "narrower"),
    Accepted(VOICE, ("language",), "pattern", "[a-z]{2}", None,
             "Language of the audio samples (ISO 639-1 code)",
             "As above; the dashboard asks for the lower-case form ISO 639-1 lists.",
             "narrower"),
    # --- readings to settle -----------------------------------------------------------------
    Accepted(FLUX, ("optimizeFor",), "enum", ("all", "likeness", "none"), ("likeness",),
             '`optimizeFor: optional "likeness"` … The available values are: - "likeness": … '
             '- "all": train all transformer blocks - "none": train no specific transformer '
             "blocks (the subset's enum: [likeness])",
             "The reference contradicts itself: its type allows only \"likeness\", its text "
             "lists three values. The dashboard follows the text and may send \"all\" or "
             "\"none\", which a validator built from the typed schema refuses "
             "(params.GUESSES \"optimize-for-values\").", "open"),
    Accepted(SDXL, ("maxTrainSteps",), "default", None, "images × 175",
             "For SDXL LoRA training, please use `numTextTrainSteps` and `numUNetTrainSteps` "
             "instead … - For SDXL: number of training images * 175",
             "The dashboard offers SDXL's maxTrainSteps but never fills it in by itself: the "
             "reference advises the two step fields, so it is sent only when typed, and left "
             "empty Scenario applies the same images × 175 (params.GUESSES \"sdxl-steps\").",
             "open"),
)  # fmt: skip


# --- What follows for the requests the dashboard sends ------------------------------------------
# tests/client/test_client_requests.py builds the dashboard's request for every edge value its table
# accepts (each bound, each choice) and checks it against the trigger's request schema. These
# are the requests the schema refuses, as model types × parameter × values; each one follows
# from an entry above (optimizeFor's enum).
SCHEMA_REFUSES: tuple[tuple[tuple[str, ...], str, tuple[object, ...]], ...] = (
    (FLUX, "optimizeFor", ("all", "none")),
)
