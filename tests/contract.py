"""Compare the dashboard's table (training.params) with the simulator's reading (simulator.spec).

Both claim to say what each model type's trainer accepts on `PUT /models/{modelId}/train`.
`differences()` lists every place they disagree, one `Difference` per model type, parameter
and aspect: offered by one side only, JSON type, bounds, default, allowed values, lengths.
"""

from __future__ import annotations

from typing import NamedTuple

from simulator import spec
from training import params

ASPECTS = (
    "trainable",
    "offered",
    "type",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "default",
    "enum",
    "maxLength",
    "maxItems",
    "pattern",
)

_JSON_TYPE = {
    params.NUMBER: "number",
    params.INTEGER: "integer",
    params.BOOL: "boolean",
    params.ENUM: "string",
    params.TEXT: "string",
    params.TEXT_LIST: "array",
    params.ASSET_LIST: "array",
}


class Difference(NamedTuple):
    model_type: str
    parameter: str  # "*" for the model type as a whole
    aspect: str
    dashboard: object
    simulator: object

    def __str__(self) -> str:
        return (
            f"{self.model_type} {self.parameter} {self.aspect}: "
            f"dashboard {self.dashboard!r}, simulator {self.simulator!r}"
        )


def differences() -> set[Difference]:
    """Every difference between the two readings, for every model type either can train."""
    found: set[Difference] = set()
    for model_type in sorted(set(params.FAMILY_OF_TYPE) | set(spec.TRAINER_OF_TYPE)):
        trainer = spec.trainer_of(model_type)
        dashboard = params.FAMILY_OF_TYPE.get(model_type)
        if trainer is None or dashboard is None:
            found.add(Difference(model_type, "*", "trainable", bool(dashboard), bool(trainer)))
            continue
        found |= _type_differences(model_type, params.FAMILIES[dashboard], trainer.key)
    return found


def _type_differences(model_type: str, family: params.Family, trainer: str) -> set[Difference]:
    theirs = {f.name: f for f in family.fields}
    ours = spec.accepted(trainer)
    found = set()
    for name in sorted(set(theirs) | set(ours)):
        if name not in theirs or name not in ours:
            found.add(Difference(model_type, name, "offered", name in theirs, name in ours))
            continue
        dashboard = _dashboard_aspects(theirs[name])
        simulator = _simulator_aspects(ours[name], ours[name].rules[trainer])
        for aspect in ASPECTS[2:]:
            if dashboard[aspect] != simulator[aspect]:
                found.add(
                    Difference(model_type, name, aspect, dashboard[aspect], simulator[aspect])
                )
    return found


def _number(value: float | None) -> float | None:
    return None if value is None else float(value)


def _default(value: object) -> object:
    """A default as both sides can be compared: a per-image formula as 'images × factor'."""
    numerator = getattr(value, "numerator", None)
    if numerator is not None and callable(value):
        return f"images × {numerator / value.denominator:g}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


def _dashboard_aspects(f: params.Field) -> dict[str, object]:
    return {
        "type": _JSON_TYPE[f.kind],
        "minimum": _number(f.minimum),
        "maximum": _number(f.maximum),
        "exclusiveMinimum": f.exclusive_minimum,
        "default": _default(f.default),
        "enum": tuple(sorted(f.choices)) or None,
        "maxLength": f.max_length,
        "maxItems": f.max_items,
        "pattern": f.pattern or None,
    }


def _simulator_aspects(p: spec.Parameter, rule: spec.Rule) -> dict[str, object]:
    return {
        "type": p.type,
        "minimum": _number(rule.minimum),
        "maximum": _number(rule.maximum),
        "exclusiveMinimum": rule.exclusive_minimum,
        "default": _default(rule.default),
        "enum": tuple(sorted(rule.enum)) or None,
        "maxLength": rule.max_length,
        "maxItems": None,
        "pattern": None,
    }
