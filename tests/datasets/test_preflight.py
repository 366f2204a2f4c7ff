"""The pre-flight check, rule by rule, on hand-made images: each finding and what it names."""

from __future__ import annotations

import pytest

from tests.datasets_files import near_twin, picture
from tests.factories import make_bare_model
from training import datasets, preflight
from training.models import Dataset


def _dataset(alice, model_type="flux.1-lora") -> Dataset:
    model = make_bare_model(
        "Knight", model_type, remote_id=f"model_{model_type}", team=alice.membership.team
    )
    return Dataset.objects.create(model=model, created_by=alice)


def _add(dataset, alice, files):
    # add_files enqueues the worker on commit; these tests only look at what is stored.
    return datasets.add_files(dataset, alice, files)


def _findings(dataset, **options) -> dict[str, preflight.Finding]:
    return {f.rule: f for f in preflight.check_dataset(dataset, **options)}


def _good(count, start=0):
    return [(f"good-{n}.png", picture(n, (1024, 1024))) for n in range(start, start + count)]


@pytest.fixture(autouse=True)
def no_worker(monkeypatch):
    monkeypatch.setattr(datasets, "enqueue_sync", lambda dataset: None)


def test_a_well_made_dataset_has_no_findings(db, alice):
    dataset = _dataset(alice)
    _add(dataset, alice, _good(8))
    assert preflight.check_dataset(dataset) == []


def test_no_images_is_a_blocker(db, alice):
    findings = _findings(_dataset(alice))
    assert findings["no-images"].severity == preflight.BLOCKER


def test_too_few_images_for_the_guidance_is_a_warning(db, alice):
    dataset = _dataset(alice)
    _add(dataset, alice, _good(3))
    finding = _findings(dataset)["image-count"]
    assert finding.severity == preflight.WARNING
    assert "3 images" in finding.message and "starts at 5" in finding.message


def test_images_below_the_working_resolution_are_named(db, alice):
    dataset = _dataset(alice)
    _add(dataset, alice, [*_good(5), ("tiny.png", picture(50, (640, 480)))])
    finding = _findings(dataset)["low-resolution"]
    assert finding.severity == preflight.WARNING
    assert [i.name for i in finding.images] == ["tiny.png"]
    assert "1024 px" in finding.message


def test_sd15_works_at_a_lower_resolution(db, alice):
    dataset = _dataset(alice, "sd-1_5-lora")
    _add(dataset, alice, [*_good(5), ("small.png", picture(50, (640, 640)))])
    assert "low-resolution" not in _findings(dataset)


def test_a_near_duplicate_is_found_with_its_twin(db, alice):
    dataset = _dataset(alice)
    original = picture(7)
    twins = [("knight.png", original), ("knight-again.jpg", near_twin(original))]
    _add(dataset, alice, [*_good(5), *twins])
    finding = _findings(dataset)["near-duplicates"]
    assert finding.severity == preflight.WARNING
    assert sorted(i.name for i in finding.images) == ["knight-again.jpg", "knight.png"]


def test_captions_without_the_trigger_word_are_named(db, alice):
    dataset = _dataset(alice)
    _add(dataset, alice, _good(5))
    first, second, third, *_ = dataset.images.all()
    datasets.set_caption(first, "daiton the knight, side view")
    datasets.set_caption(second, "a knight in the rain")
    dataset.trigger_word = "daiton"
    finding = _findings(dataset)["trigger-word"]
    assert [i.name for i in finding.images] == [second.name]
    assert "daiton" in finding.message
    # The form's concept prompt, when given, is the word to look for.
    finding = _findings(dataset, trigger_word="knight")
    assert "trigger-word" not in finding


def test_an_edit_type_without_pairs_is_blocked(db, alice):
    dataset = _dataset(alice, "flux.2-dev-edit-lora")
    _add(dataset, alice, _good(6))
    findings = _findings(dataset)
    assert findings["no-pairs"].severity == preflight.BLOCKER


def test_a_missing_pair_and_an_incomplete_one_are_named(db, alice):
    dataset = _dataset(alice, "flux.1-kontext-lora")
    _add(dataset, alice, _good(6))
    a, b, c, d, e, f = dataset.images.all()
    datasets.add_pair(dataset, a, b, "make it night")
    datasets.add_pair(dataset, c, d, "make it snow")
    datasets.add_pair(dataset, e, None, "")
    finding = _findings(dataset)["incomplete-pairs"]
    assert finding.severity == preflight.WARNING
    assert [i.name for i in finding.images] == [e.name, f.name]
    assert "1 pairs lack an after image" in finding.message
    assert "1 images are in no pair" in finding.message
    assert "no-pairs" not in _findings(dataset)


def test_pairs_are_not_asked_of_a_plain_lora(db, alice):
    dataset = _dataset(alice)
    _add(dataset, alice, _good(5))
    assert not {"no-pairs", "incomplete-pairs"} & set(_findings(dataset))


def test_a_blocker_stops_everyone_and_a_warning_stops_an_artist(db, alice, bob):
    dataset = _dataset(alice)
    model = dataset.model
    blockers = preflight.check_dataset(dataset)
    assert "blocker" in preflight.launch_refusal(blockers, bob, model, override=True)
    _add(dataset, alice, _good(3))
    warnings = preflight.check_dataset(dataset)
    assert preflight.launch_refusal(warnings, alice, model, override=True)
    assert preflight.launch_refusal(warnings, bob, model, override=False)
    assert preflight.launch_refusal(warnings, bob, model, override=True) == ""


def test_every_rule_is_data_with_a_severity():
    assert {r.severity for r in preflight.RULES} == {preflight.BLOCKER, preflight.WARNING}
    assert len({r.key for r in preflight.RULES}) == len(preflight.RULES)
