"""The dashboard's table and the simulator's reading of Scenario agree, or say why not.

training/params.py and simulator/spec.py are two independent readings of the same
reference. Every difference between them must be in tests/contract_differences.py with the
reference's words and a reason; a listed difference that has gone away must leave the list.
The simulator's reading is itself checked against the documents it quotes.
"""

from __future__ import annotations

from collections import Counter

from simulator import spec
from tests import scenario_api
from tests.contract import differences
from tests.contract_differences import ACCEPTED

KINDS = {"narrower", "own", "bug", "open"}


def _listed():
    return [d for entry in ACCEPTED for d in entry.differences()]


def _lines(found) -> str:
    return "\n".join(sorted(str(d) for d in found))


def test_every_difference_between_the_two_readings_is_listed():
    unlisted = differences() - set(_listed())
    assert not unlisted, (
        "training/params.py and simulator/spec.py differ here; fix one of them, or add the "
        f"difference to tests/contract_differences.py with the spec's words:\n{_lines(unlisted)}"
    )


def test_every_listed_difference_still_exists():
    gone = set(_listed()) - differences()
    assert not gone, (
        f"Listed in tests/contract_differences.py but no longer a difference:\n{_lines(gone)}"
    )


def test_no_difference_is_listed_twice():
    twice = [d for d, count in Counter(_listed()).items() if count > 1]
    assert not twice, _lines(twice)


def test_every_listed_difference_quotes_the_spec_and_says_why():
    for entry in ACCEPTED:
        assert entry.kind in KINDS, entry
        assert entry.spec.strip() and entry.reason.strip(), entry
        assert entry.types and entry.parameters, entry


def test_the_comparison_notices_a_changed_bound(monkeypatch):
    from dataclasses import replace

    rank = spec.PARAMETERS["rank"]
    wider = replace(rank, rules={**rank.rules, spec.FLUX_LORA: spec.Rule(16, 2, 65)})
    monkeypatch.setitem(spec.PARAMETERS, "rank", wider)
    changed = {d for d in differences() if d.parameter == "rank" and d.aspect == "maximum"}
    assert {d.model_type for d in changed} == {"flux.1-lora", "flux.1-kontext-lora",
                                               "flux.1-krea-lora"}  # fmt: skip
    assert {(d.dashboard, d.simulator) for d in changed} == {(64.0, 65.0)}


# --- the simulator's reading, against the documents ----------------------------------------


def test_the_simulator_knows_every_parameter_of_the_reference_and_no_other():
    assert set(spec.PARAMETERS) == set(scenario_api.trigger_parameters())


def test_each_parameter_has_the_reference_s_type():
    for name, (written, _line) in scenario_api.trigger_parameters().items():
        parameter = spec.PARAMETERS[name]
        if written.startswith('"'):  # an enum of strings, e.g. "constant" or …
            assert parameter.type == spec.STRING, name
        elif written.startswith("array of "):
            assert (parameter.type, parameter.items) == (spec.ARRAY, written.split()[-1]), name
        else:
            assert parameter.type == written, name


def test_each_parameter_is_placed_by_the_reference_s_own_words():
    lines = scenario_api.trigger_parameters()
    for name, parameter in spec.PARAMETERS.items():
        assert parameter.words in lines[name][1], name
        restricted = "Only available for" in lines[name][1]
        assert restricted == parameter.words.startswith("Only available for"), name


def test_the_parameters_without_a_trainer_note_go_to_every_image_trainer():
    for name, (_written, line) in scenario_api.trigger_parameters().items():
        if "Only available for" not in line:
            assert set(spec.PARAMETERS[name].rules) == set(spec.IMAGE_TRAINERS), name


def test_typed_enums_are_the_reference_s():
    for name in ("lrScheduler", "optimizeFor"):
        typed = scenario_api.subset_trigger_parameter(name)["enum"]
        for rule in spec.PARAMETERS[name].rules.values():
            assert list(rule.enum) == typed, name


def test_what_is_taken_from_the_subset_is_in_the_subset():
    names = {"exclusive_minimum": "exclusiveMinimum"}
    checked = 0
    for name, parameter in spec.PARAMETERS.items():
        documented = scenario_api.subset_trigger_parameter(name)
        for trainer, rule in parameter.rules.items():
            for attribute in rule.from_subset:
                key = names.get(attribute, attribute)
                assert key in documented, (name, trainer, attribute)
                assert getattr(rule, attribute) == documented[key], (name, trainer, attribute)
                checked += 1
    assert checked > 20


def test_every_trainable_model_type_is_one_of_scenario_s():
    model_types = scenario_api.reference_enum("type", "custom")
    assert len(model_types) == 37  # '"custom" or "elevenlabs-voice" or "flux.1" or 34 more'
    assert set(spec.TRAINER_OF_TYPE) <= set(model_types)


def test_every_job_type_the_simulator_runs_is_one_of_scenario_s():
    job_types = scenario_api.reference_enum("jobType", "assets-download")
    assert {t.job_type for t in spec.TRAINERS.values()} <= set(job_types)
