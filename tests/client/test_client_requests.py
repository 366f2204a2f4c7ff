"""The trigger requests the dashboard builds meet Scenario's schema, but for listed cases.

For every model type, every field the dashboard's table offers is set to each of its edge
values (a bound, a choice, a long text), the table checks it as the form would, and the
request body the dashboard would send (training.params.request_parameters) is validated
against the Swagger subset's schema for `PUT /models/{modelId}/train`. A request the schema
refuses must be in tests/contract_differences.py's SCHEMA_REFUSES, and every entry there
must still happen.
"""

from __future__ import annotations

from tests.contract_differences import SCHEMA_REFUSES
from tests.scenario_api import schemas
from training import params

IMAGES = 5
UNBOUNDED = 1e9  # stands in for "any larger value" where the table sets no maximum


def _edges(f: params.Field) -> list[object]:
    if f.kind in (params.NUMBER, params.INTEGER):
        whole = f.kind == params.INTEGER
        values = []
        if f.minimum is not None:
            step = (1 if whole else 1e-9) if f.exclusive_minimum else 0
            values.append(f.minimum + step)
        values.append(f.maximum if f.maximum is not None else UNBOUNDED)
        return [int(v) if whole else float(v) for v in values]
    if f.kind == params.ENUM:
        return list(f.choices)
    if f.kind == params.BOOL:
        return [True, False]
    if f.kind == params.TEXT:
        return ["x" * (f.max_length or 10)]
    return [["asset_a"]]


def _refused_requests() -> tuple[set[tuple[str, str, object]], int]:
    """The (model type, field, value) requests the schema refuses, and how many were built."""
    trigger = schemas.operation_for("PUT", "/models/model_x/train").request
    refused, built = set(), 0
    for model_type in params.TRAINABLE_TYPES:
        for f in params.family_for(model_type).form_fields:
            for value in _edges(f):
                raw = {f.name: value}
                if f.name == "sampleSourceImages":
                    raw["samplePrompts"] = ["a prompt"]
                clean, errors = params.validate(model_type, raw, IMAGES)
                if errors:  # refused by a cross-field rule: never sent
                    continue
                built += 1
                body = {"parameters": params.request_parameters(model_type, clean, IMAGES)}
                if schemas.problems(trigger, body, "request"):
                    refused.add((model_type, f.name, value))
    return refused, built


def _listed() -> set[tuple[str, str, object]]:
    return {(t, name, v) for types, name, values in SCHEMA_REFUSES for t in types for v in values}


def test_the_requests_the_dashboard_builds_meet_the_trigger_s_schema_or_are_listed():
    refused, built = _refused_requests()
    assert built > 250
    assert refused - _listed() == set(), "the schema refuses these requests"
    assert _listed() - refused == set(), "listed in SCHEMA_REFUSES, but now accepted"
