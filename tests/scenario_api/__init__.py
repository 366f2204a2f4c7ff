"""Scenario's own documents, copied unchanged, and readers for them.

train-endpoints.md is Scenario's API reference for the training endpoints (the primary
document); openapi-training-subset.yaml is the part of its public Swagger 2.0 spec a training
dashboard needs (version 2025-11-04). Tests read them; the application never does.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import yaml

HERE = Path(__file__).parent
REFERENCE = HERE / "train-endpoints.md"
SUBSET = HERE / "openapi-training-subset.yaml"

_PARAMETER_LINE = re.compile(r"^- `(?P<name>\w+): optional (?P<type>[^`]+)`(?P<text>.*)$")
_ENUM_VALUE_LINE = re.compile(r'^- `"(?P<value>[^"`]+)"`$')


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """YAML 1.1 reads 9.007199254740991E15 (no sign after E) as text; JSON Schema wants numbers.

    libyaml's parser where PyYAML has it: the pure-Python one takes seconds over the subset,
    which the first exchange of every test process waits for.
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?$"),
    list("-+0123456789"),
)


@cache
def subset() -> dict:
    """The Swagger 2.0 subset, parsed."""
    with SUBSET.open(encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


@cache
def reference_enum(field: str, first: str) -> tuple[str, ...]:
    """The values the reference lists for `field`, whose list starts with `first`."""
    lines = REFERENCE.read_text(encoding="utf-8").splitlines()
    opening = re.compile(rf'^- `{field}: (array of )?"{re.escape(first)}" or')
    start = next(i for i, line in enumerate(lines) if opening.match(line))
    values = []
    for line in lines[start + 1 :]:
        match = _ENUM_VALUE_LINE.match(line)
        if match is None:
            break
        values.append(match["value"])
    return tuple(values)


@cache
def trigger_parameters() -> dict[str, tuple[str, str]]:
    """The trigger's body parameters in the reference: name → (type as written, its line)."""
    text = REFERENCE.read_text(encoding="utf-8")
    body = text.split("### Body Parameters", 1)[1].split("### Returns", 1)[0]
    found = {}
    for line in body.splitlines():
        match = _PARAMETER_LINE.match(line)
        if match and match["name"] != "parameters":
            found[match["name"]] = (match["type"], line)
    return found


def subset_trigger_parameter(name: str) -> dict:
    """One body parameter of PUT /models/{modelId}/train as the subset describes it."""
    request = subset()["definitions"]["PutModelsTrainByModelIdRequest"]
    return request["properties"]["parameters"]["properties"].get(name, {})
