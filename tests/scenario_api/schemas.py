"""Validate request and response bodies against the Swagger subset's schemas.

The subset's `definitions` are JSON Schema (draft 4, as Swagger 2.0 uses it) and are read by
`jsonschema`; `$ref: '#/definitions/…'` resolves within the document. Unknown extra fields
are allowed (the schemas set no `additionalProperties: false`); missing required fields,
wrong types and values outside an enum or a bound are not. Swagger 2.0 has no null type:
a field takes null only where it says `x-nullable: true` (`nullable` below turns that into
JSON Schema). Today's subset says it nowhere, so null is never a valid value of a typed field.

Where the subset is older than the primary reference (train-endpoints.md), the reference
wins, and the subset is amended here, each amendment with the reference's words in
PRIMARY_WINS. A test checks that every amendment still changes something.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from tests import scenario_api

ROOT = "urn:scenario:openapi-training-subset"
DRY_RUN_STATUS = 269


@dataclass(frozen=True)
class Amendment:
    """A change to the subset where the primary reference says otherwise."""

    name: str
    words: str
    apply: Callable[[dict], int]  # amends the document, returns how many places changed


def _enums_named(document: dict, field: str, values: tuple[str, ...]) -> int:
    """Widen every enum of a property called `field` that lists fewer of `values`."""
    changed = 0

    def walk(node, name):
        nonlocal changed
        if isinstance(node, dict):
            enum = node.get("enum")
            if name == field and enum and set(enum) < set(values):
                node["enum"] = list(values)
                changed += 1
            for key, child in node.items():
                if key == "properties" and isinstance(child, dict):
                    for prop, schema in child.items():
                        walk(schema, prop)
                elif key == "items":
                    walk(child, name)
                else:
                    walk(child, None)
        elif isinstance(node, list):
            for child in node:
                walk(child, name)

    walk(document["definitions"], None)
    return changed


def _rank_bounds(document: dict) -> int:
    request = document["definitions"]["PutModelsTrainByModelIdRequest"]
    rank = request["properties"]["parameters"]["properties"]["rank"]
    if (rank["minimum"], rank["maximum"]) == (2, 128):
        return 0
    rank.update(minimum=2, maximum=128)
    return 1


def _enum(field: str, first: str) -> Callable[[dict], int]:
    return lambda document: _enums_named(document, field, scenario_api.reference_enum(field, first))


PRIMARY_WINS: tuple[Amendment, ...] = (
    Amendment(
        "model types",
        '`type: "custom" or "elevenlabs-voice" or "flux.1" or 34 more` The model type: the '
        "subset lists 18 types, without elevenlabs-voice and the flux.2, qwen-image and zimage "
        "LoRAs.",
        _enum("type", "custom"),
    ),
    Amendment(
        "training stages",
        '`stage: "pending" or "pending-captcha" or "queued-for-train" or 2 more`: the subset '
        "has no pending-captcha.",
        _enum("stage", "pending"),
    ),
    Amendment(
        "capabilities",
        '`capabilities: array of "3d23d" or "audio2audio" or "audio2video" or 29 more`: the '
        "subset lists 26.",
        _enum("capabilities", "3d23d"),
    ),
    Amendment(
        "rank bounds",
        '"Each trainer enforces its own tighter limit (Flux LoRA: [2; 64], Musubi: [2; '
        "128])\": the subset's [4, 64] is older (its README says so of rank). One schema "
        "serves every trainer, so it takes [2, 128]; each trainer's limit is simulator.spec's.",
        _rank_bounds,
    ),
)


def nullable(node: object) -> int:
    """Let null through where Swagger says `x-nullable: true`; return how many places."""
    changed = 0
    if isinstance(node, dict):
        if node.get("x-nullable") is True and isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
            if "enum" in node:
                node["enum"] = [*node["enum"], None]
            changed += 1
        changed += sum(nullable(child) for child in node.values())
    elif isinstance(node, list):
        changed += sum(nullable(child) for child in node)
    return changed


@cache
def document() -> dict:
    """The subset with the primary reference's amendments, x-nullable made JSON Schema."""
    amended = copy.deepcopy(scenario_api.subset())
    for amendment in PRIMARY_WINS:
        amendment.apply(amended)
    nullable(amended["definitions"])
    return amended


@cache
def _registry() -> Registry:
    resource = Resource.from_contents(document(), default_specification=DRAFT4)
    return Registry().with_resource(ROOT, resource)


def validator(schema: dict) -> Draft4Validator:
    return Draft4Validator(schema, registry=_registry())


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    pattern: re.Pattern
    request: dict | None  # the body's schema, a $ref into the document
    responses: dict  # status → schema


@cache
def operations() -> tuple[Operation, ...]:
    """The documented operations, literal paths before templated ones."""
    found = []
    for template, methods in document()["paths"].items():
        segments = template.split("/")
        regex = "/".join("[^/]+" if s.startswith("{") else re.escape(s) for s in segments)
        for method, operation in methods.items():
            body = [p for p in operation.get("parameters", []) if p.get("in") == "body"]
            request = _absolute(body[0]["schema"]) if body else None
            responses = {
                int(status): _absolute(answer["schema"])
                for status, answer in operation.get("responses", {}).items()
                if "schema" in answer
            }
            found.append(
                Operation(method.upper(), template, re.compile(f"^{regex}$"), request, responses)
            )
    return tuple(sorted(found, key=lambda op: op.template.count("{")))


def _absolute(schema: dict) -> dict:
    ref = schema.get("$ref", "")
    return {"$ref": ROOT + ref} if ref.startswith("#/") else schema


def operation_for(method: str, path: str) -> Operation | None:
    for operation in operations():
        if operation.method == method and operation.pattern.match(path):
            return operation
    return None


def problems(schema: dict, body: object, where: str) -> list[str]:
    """What is wrong with `body` by `schema`, one line each; empty when it is valid."""
    return [
        f"{where}: {'/'.join(str(p) for p in error.absolute_path) or '(body)'}: {error.message}"
        for error in sorted(validator(schema).iter_errors(body), key=lambda e: e.path)
    ]


def response_schema(operation: Operation, status: int) -> dict | None:
    """The schema an answer with this status must meet, or None if the subset has none.

    A dry run answers 269 (what Scenario's SDK documents) with the trigger's 200 shape, less
    its required `job`: a dry run starts nothing ("returns the Creative Units quote without
    starting anything"), so it names no job.
    """
    if status == DRY_RUN_STATUS and operation.template == "/models/{modelId}/train":
        return {"allOf": [_without_required(operation.responses[200], "job")]}
    return operation.responses.get(status)


def _without_required(schema: dict, field: str) -> dict:
    resolved = _registry().resolver().lookup(schema["$ref"]).contents
    relaxed = dict(resolved)
    relaxed["required"] = [name for name in resolved.get("required", []) if name != field]
    return relaxed


def json_body(raw: bytes) -> object:
    """A body parsed as JSON; raises ValueError when it is not JSON."""
    return json.loads(raw)
