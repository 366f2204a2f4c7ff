"""Check a trigger's parameters against simulator.spec, and size the training they ask for.

The simulator answers like a strict API: values are JSON values of the reference's types
(a number is a JSON number, never the text "16"), nothing of another trainer is taken, and
every refusal names the field and says why in the reference's terms.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from simulator import spec

# How many unknown names one refusal lists.
_MAX_REPORTED = 5


def check(model_type: str, raw: Mapping, images: int) -> tuple[dict[str, object], dict[str, str]]:
    """Return (accepted values, refusals by field name) for a training on `images` images."""
    trainer = spec.trainer_of(model_type)
    if trainer is None:
        return {}, {"__all__": f"Model type {model_type} cannot be trained"}
    accepted = spec.accepted(trainer.key)
    values: dict[str, object] = {}
    errors: dict[str, str] = {}
    for name, value in raw.items():
        parameter = accepted.get(name)
        if parameter is None:
            if len(errors) < _MAX_REPORTED:
                errors[str(name)[:100]] = _not_taken(str(name), trainer)
            continue
        problem = _problem(parameter, parameter.rules[trainer.key], value, trainer)
        if problem:
            errors[name] = problem
        else:
            values[name] = value
    errors.update(_cross_field(model_type, values, errors, images))
    return values, errors


def _not_taken(name: str, trainer: spec.Trainer) -> str:
    known = spec.PARAMETERS.get(name)
    if known is None:
        return "is not a training parameter"
    if known.words.startswith("Only available for"):
        return f"is not taken by {trainer.label} training ({known.words})"
    # Restricted to no trainer by the reference: an image training parameter (simulator.spec).
    return f"is not taken by {trainer.label} training: it is a parameter of image trainers"


def _problem(parameter: spec.Parameter, rule: spec.Rule, value: object, trainer) -> str:
    wrong = _wrong_type(parameter, value)
    if wrong:
        return wrong
    where = f"for {trainer.label} training"
    if parameter.type == spec.NUMBER:
        if rule.minimum is not None:
            if rule.exclusive_minimum and value <= rule.minimum:
                return f"must be greater than {_show(rule.minimum)} {where}"
            if value < rule.minimum:
                return f"must be at least {_show(rule.minimum)} {where}"
        if rule.maximum is not None and value > rule.maximum:
            return f"must be at most {_show(rule.maximum)} {where}"
    if rule.enum and value not in rule.enum:
        return f"must be one of {', '.join(rule.enum)} {where}"
    if rule.max_length is not None and len(value) > rule.max_length:
        return f"must be at most {rule.max_length} characters long"
    return ""


def _wrong_type(parameter: spec.Parameter, value: object) -> str:
    kind = parameter.type
    if kind == spec.NUMBER:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and not math.isfinite(value):
            return "must be a finite number"
    elif kind == spec.STRING:
        ok = isinstance(value, str)
    elif kind == spec.BOOLEAN:
        ok = isinstance(value, bool)
    else:
        ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
        kind = f"an array of {parameter.items}s"
    if ok:
        return ""
    article = "" if kind.startswith("an ") else ("an " if kind[0] in "aeiou" else "a ")
    return f"must be {article}{kind}, not {_json_type(value)}"


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _show(number: float) -> str:
    if float(number).is_integer():
        return str(int(number))
    return format(number, "f").rstrip("0")


def _cross_field(model_type: str, values: Mapping, errors: Mapping, images: int) -> dict:
    found: dict[str, str] = {}
    if "sampleSourceImages" in values and "sampleSourceImages" not in errors:
        want = len(values.get("samplePrompts", []))
        if len(values["sampleSourceImages"]) != want:
            found["sampleSourceImages"] = "must be the same length as samplePrompts"
    if "validationFrequency" in values:
        # "Cannot be greater than maxTrainSteps value": the value given, else its default.
        steps = training_steps(model_type, values, images)
        if values["validationFrequency"] > steps:
            found["validationFrequency"] = f"cannot be greater than maxTrainSteps ({steps})"
    return found


def describe(errors: Mapping[str, str]) -> str:
    """One sentence for a refusal's message."""
    parts = [m if f == "__all__" else f"{f} {m}" for f, m in errors.items()]
    return "Invalid parameters: " + "; ".join(parts)


# --- sizing ----------------------------------------------------------------------------------


def training_steps(model_type: str, values: Mapping, images: int) -> int:
    """The steps a training makes: the ones asked for, else the trainer's default."""
    trainer = _trainer_key(model_type)
    split = [values[n] for n in ("numTextTrainSteps", "numUNetTrainSteps") if n in values]
    if trainer == spec.SDXL_LORA and split:
        return int(sum(split))
    if "maxTrainSteps" in values:
        return int(values["maxTrainSteps"])
    rule = spec.PARAMETERS["maxTrainSteps"].rule(trainer)
    if rule is not None and isinstance(rule.default, spec.PerImage):
        return rule.default(images)
    return (spec.VOICE_STEPS if trainer == spec.ELEVENLABS_VOICE else spec.MUSUBI_STEPS)(images)


def as_trained(model_type: str, values: Mapping, images: int) -> dict[str, object]:
    """The parameters a training uses: the ones given, and the reference's defaults for the
    rest (a per-image default worked out for `images`). This is what `model.parameters`
    reports: "The parameters of the model"."""
    trainer = _trainer_key(model_type)
    used: dict[str, object] = {}
    for name, parameter in spec.accepted(trainer).items():
        default = parameter.rules[trainer].default
        if isinstance(default, spec.PerImage):
            default = default(images)
        if default is not None and default != "":
            used[name] = default
    used.update(values)
    return used


def epochs(model_type: str, values: Mapping) -> int:
    """The epochs a training lists: 0 for trainers that take no nbEpochs."""
    trainer = _trainer_key(model_type)
    if trainer not in spec.PARAMETERS["nbEpochs"].rules:
        return 0
    return max(1, int(values.get("nbEpochs", spec.DEFAULT_EPOCHS)))


def _trainer_key(model_type: str) -> str:
    trainer = spec.trainer_of(model_type)
    return trainer.key if trainer else ""
