"""The model-type table: which trainer takes what, bounds, defaults, and what is sent."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training import params
from training.params import (
    ASSET_LIST,
    BOOL,
    ENUM,
    FAMILIES,
    INTEGER,
    NUMBER,
    TEXT,
    TEXT_LIST,
    TRAINABLE_TYPES,
    UnknownModelType,
)

# One model type per family, to test each family once.
ONE_TYPE_PER_FAMILY = {
    "flux-lora": "flux.1-lora",
    "musubi": "qwen-image-lora",
    "sd15-lora": "sd-1_5-lora",
    "sdxl-lora": "sd-xl-lora",
    "elevenlabs-voice": "elevenlabs-voice",
}

# The reference's "Only available for …" notes, restated: parameter -> families taking it.
IMAGE_TRAINERS = {"flux-lora", "musubi", "sd15-lora", "sdxl-lora"}
DOCUMENTED_AVAILABILITY = {
    "age": {"elevenlabs-voice"},
    "batchSize": {"flux-lora"},
    "classPrompt": {"sd15-lora"},
    "cloneType": {"elevenlabs-voice"},
    "conceptPrompt": IMAGE_TRAINERS,
    "gender": {"elevenlabs-voice"},
    "language": {"elevenlabs-voice"},
    "learningRate": IMAGE_TRAINERS,
    # No "Only available for" note: every image trainer.
    "learningRateTextEncoder": IMAGE_TRAINERS,
    "learningRateUnet": {"sdxl-lora"},
    "lrScheduler": {"sd15-lora", "sdxl-lora"},
    "maxTrainSteps": IMAGE_TRAINERS,
    "nbEpochs": {"flux-lora"},
    "nbRepeats": {"flux-lora"},
    "numTextTrainSteps": {"sdxl-lora"},
    "numUNetTrainSteps": {"sdxl-lora"},
    "optimizeFor": {"flux-lora"},
    "priorLossWeight": {"sd15-lora", "sdxl-lora"},
    "randomCrop": {"sd15-lora", "sdxl-lora"},
    "randomCropRatio": {"sd15-lora", "sdxl-lora"},
    "randomCropScale": {"sd15-lora", "sdxl-lora"},
    "rank": {"sdxl-lora", "flux-lora", "musubi"},
    "removeBackgroundNoise": {"elevenlabs-voice"},
    "samplePrompts": {"flux-lora"},
    "sampleSourceImages": {"flux-lora"},
    "scaleLr": {"sd15-lora", "sdxl-lora"},
    "seed": {"sd15-lora", "sdxl-lora"},
    "textEncoderTrainingRatio": {"sd15-lora", "sdxl-lora"},
    "validationFrequency": {"sd15-lora", "sdxl-lora"},
    "validationPrompt": {"sd15-lora", "sdxl-lora"},
    "voiceDescription": {"elevenlabs-voice"},
    "wandbKey": IMAGE_TRAINERS,
}


def fields_with(attribute):
    """(model type, field) pairs, one type per family, where the field has `attribute` set."""
    return [
        pytest.param(model_type, f, id=f"{model_type}-{f.name}")
        for model_type in ONE_TYPE_PER_FAMILY.values()
        for f in params.family_for(model_type).form_fields
        if getattr(f, attribute) not in (None, ())
    ]


def valid_companions(model_type, f, value):
    """Raw parameters holding `value` for `f`, plus what a cross-field rule needs beside it."""
    raw = {f.name: value}
    if f.name == "sampleSourceImages" and isinstance(value, list):
        raw["samplePrompts"] = ["a sample"] * len(value)
    if f.name in ("age", "gender"):
        raw["cloneType"] = "professional"
    if f.name == "validationFrequency":
        raw["numTextTrainSteps" if model_type == "sd-xl-lora" else "maxTrainSteps"] = 40000
    return raw


def just_above(x):
    return x + 1 if isinstance(x, int) else math.nextafter(x, math.inf)


def just_below(x):
    return x - 1 if isinstance(x, int) else math.nextafter(x, -math.inf)


def as_kind(f, number):
    return int(number) if f.kind == INTEGER else float(number)


# --- The table -------------------------------------------------------------------------------


def test_every_trainable_type_has_a_family():
    assert set(TRAINABLE_TYPES) == set(params.FAMILY_OF_TYPE)
    for model_type in TRAINABLE_TYPES:
        assert params.family_for(model_type).key in FAMILIES


def test_the_documented_types_belong_to_their_documented_trainers():
    family = params.FAMILY_OF_TYPE
    assert {family[t] for t in ("flux.1-lora", "flux.1-kontext-lora", "flux.1-krea-lora")} == {
        "flux-lora"
    }
    assert family["sd-1_5"] == family["sd-1_5-lora"] == "sd15-lora"
    assert family["sd-xl-lora"] == "sdxl-lora"
    assert family["elevenlabs-voice"] == "elevenlabs-voice"


def test_the_newer_lora_types_go_to_the_assumed_trainer():
    newer = [t for t in TRAINABLE_TYPES if t.startswith(("flux.2-", "qwen-image-", "zimage-"))]
    assert len(newer) == 18
    assert {params.FAMILY_OF_TYPE[t] for t in newer} == {params.NEWER_LORA_FAMILY}


def test_each_parameter_is_offered_exactly_where_the_reference_says():
    for name, families in DOCUMENTED_AVAILABILITY.items():
        offered = {key for key, family in FAMILIES.items() if name in family.names}
        assert offered == families, name
    every_field = {name for family in FAMILIES.values() for name in family.names}
    assert every_field == set(DOCUMENTED_AVAILABILITY) == set(params.SPEC)


def test_fields_have_a_known_kind_label_and_help():
    for family in FAMILIES.values():
        assert len(set(family.names)) == len(family.names)
        for f in family.fields:
            assert f.kind in (NUMBER, INTEGER, BOOL, ENUM, TEXT, TEXT_LIST, ASSET_LIST)
            assert f.label and f.help
            assert not f.choices or f.kind == ENUM


def test_the_bounds_are_the_references():
    def bounds(model_type, name):
        f = params.family_for(model_type).field(name)
        return f.minimum, f.maximum

    assert bounds("flux.1-lora", "maxTrainSteps") == (0, 10000)
    assert bounds("sd-1_5", "maxTrainSteps") == (0, 40000)
    assert bounds("flux.1-lora", "rank") == (2, 64)
    assert bounds("zimage-lora", "rank") == (2, 128)
    assert bounds("flux.1-lora", "learningRateTextEncoder") == (1e-6, 1e-3)
    assert bounds("flux.1-lora", "nbEpochs") == bounds("flux.1-lora", "nbRepeats") == (1, 30)
    assert bounds("flux.1-lora", "batchSize") == (1, 4)
    for name in ("randomCropRatio", "randomCropScale"):
        assert bounds("sd-xl-lora", name) == (0, 1)
    assert bounds("sd-1_5", "textEncoderTrainingRatio") == (0, 0.99)
    assert params.family_for("flux.1-lora").field("wandbKey").max_length == 40
    scheduler = params.family_for("sd-1_5").field("lrScheduler")
    assert scheduler.choices == (
        "constant",
        "constant-with-warmup",
        "cosine",
        "cosine-with-restarts",
        "linear",
        "polynomial",
    )
    assert params.family_for("flux.1-lora").field("optimizeFor").choices == (
        "likeness",
        "all",
        "none",
    )


def test_scale_lr_is_legacy_kept_out_of_the_form_and_never_sent():
    family = params.family_for("sd-1_5")
    assert family.field("scaleLr").legacy
    assert "scaleLr" not in [f.name for f in family.form_fields]
    clean, errors = params.validate("sd-1_5", {"scaleLr": True}, 12)
    assert errors == {} and clean == {"scaleLr": True}
    assert "scaleLr" not in params.request_parameters("sd-1_5", clean, 12)


def test_presets_follow_the_dataset_size_guidance():
    flux = params.family_for("flux.1-lora")
    assert flux.preset_for(7).values == {"learningRate": 5e-5, "nbEpochs": 17}
    assert flux.preset_for(12).values == {"learningRate": 1e-4, "nbEpochs": 10}
    assert flux.preset_for(30).values == {"learningRate": 2e-4, "nbEpochs": 7}
    assert flux.preset_for(3) is None and flux.preset_for(80) is None
    # Musubi takes no nbEpochs: its presets keep only the learning rate.
    assert params.family_for("qwen-image-lora").preset_for(12).values == {"learningRate": 1e-4}


def test_every_preset_is_valid_for_its_family():
    for model_type in ONE_TYPE_PER_FAMILY.values():
        for preset in params.family_for(model_type).presets:
            clean, errors = params.validate(model_type, preset.values, preset.min_images)
            assert errors == {}, (model_type, preset.key)
            assert clean == preset.values


# --- Defaults ---------------------------------------------------------------------------------


def test_defaults_for_twelve_images_per_family():
    assert params.defaults_for("flux.1-lora", 12) == {
        "conceptPrompt": "",
        "maxTrainSteps": 1200,
        "learningRate": 1e-4,
        "rank": 16,
        "learningRateTextEncoder": 1e-5,
    }
    assert params.defaults_for("qwen-image-lora", 12) == {"rank": 64}
    sd_common = {
        "learningRate": 5e-6,
        "lrScheduler": "constant",
        "randomCrop": False,
        "validationPrompt": "",
    }
    assert params.defaults_for("sd-1_5", 12) == {"maxTrainSteps": 900, **sd_common}
    assert params.defaults_for("sd-1_5-lora", 12) == {"maxTrainSteps": 900, **sd_common}
    assert params.defaults_for("sd-xl-lora", 12) == {
        "conceptPrompt": "daiton",
        "learningRateTextEncoder": 5e-5,
        "rank": 64,
        **sd_common,
    }
    assert params.defaults_for("elevenlabs-voice", 12) == {}


def test_every_trainable_type_has_defaults_that_validate():
    for model_type in TRAINABLE_TYPES:
        defaults = params.defaults_for(model_type, 12)
        clean, errors = params.validate(model_type, defaults, 12)
        assert errors == {}, model_type


@pytest.mark.parametrize("images", [0, 1, 5, 12, 13, 101])
def test_computed_step_defaults_follow_the_reference(images):
    assert params.defaults_for("sd-1_5", images)["maxTrainSteps"] == round(images * 225 / 3)
    assert params.defaults_for("flux.1-krea-lora", images)["maxTrainSteps"] == images * 100
    assert params.training_steps("sd-xl-lora", {}, images) == images * 175


def test_sdxl_offers_its_two_step_fields_and_max_train_steps_sent_only_when_typed():
    names = params.family_for("sd-xl-lora").names
    assert {"numTextTrainSteps", "numUNetTrainSteps", "maxTrainSteps"} <= set(names)
    assert params.validate("sd-xl-lora", {"maxTrainSteps": 40000}, 12) == (
        {"maxTrainSteps": 40000},
        {},
    )
    assert "maxTrainSteps" in params.validate("sd-xl-lora", {"maxTrainSteps": 40001}, 12)[1]
    assert params.request_parameters("sd-xl-lora", {}, 12) == {}
    assert params.request_parameters("sd-xl-lora", {"maxTrainSteps": 900}, 12) == {
        "maxTrainSteps": 900
    }
    assert params.training_steps("sd-xl-lora", {"maxTrainSteps": 900}, 12) == 900
    both = {"maxTrainSteps": 900, "numTextTrainSteps": 100, "numUNetTrainSteps": 200}
    assert params.training_steps("sd-xl-lora", both, 12) == 300


def test_sdxl_text_encoder_rate_is_capped_at_the_subsets_maximum():
    assert params.validate("sd-xl-lora", {"learningRateTextEncoder": 0.001}, 12)[1] == {}
    errors = params.validate("sd-xl-lora", {"learningRateTextEncoder": 0.0011}, 12)[1]
    assert errors == {"learningRateTextEncoder": "Must be at most 0.001."}
    errors = params.validate("sd-xl-lora", {"learningRateTextEncoder": 0}, 12)[1]
    assert errors == {"learningRateTextEncoder": "Must be greater than 0."}


def test_age_and_gender_apply_to_professional_cloning_only():
    voice = "elevenlabs-voice"
    professional = {"cloneType": "professional", "age": "young", "gender": "female"}
    assert params.validate(voice, professional)[1] == {}
    errors = params.validate(voice, {"cloneType": "instant", "age": "young"})[1]
    assert errors == {
        "age": "Applies only when the clone type is professional: choose it, or leave this empty."
    }
    assert "gender" in params.validate(voice, {"gender": "female"})[1]


def test_every_guess_of_the_table_quotes_the_reference_and_names_its_place():
    keys = [guess.key for guess in params.GUESSES]
    assert len(keys) == len(set(keys))
    for guess in params.GUESSES:
        assert guess.guess and guess.spec and guess.where, guess


def test_remove_background_noise_warns_about_the_five_second_minimum():
    f = params.family_for("elevenlabs-voice").field("removeBackgroundNoise")
    assert "5 seconds" in f.caution


# --- Bounds: each bound accepted, the value just outside refused ----------------------------


@pytest.mark.parametrize(("model_type", "f"), fields_with("minimum"))
def test_the_minimum_is_the_edge(model_type, f):
    low = as_kind(f, f.minimum)
    if f.exclusive_minimum:
        accepted, refused = just_above(float(low)), low
    else:
        accepted, refused = low, just_below(low)
    clean, errors = params.validate(model_type, valid_companions(model_type, f, accepted), 12)
    assert f.name not in errors and clean[f.name] == accepted
    clean, errors = params.validate(model_type, {f.name: refused}, 12)
    assert f.name in errors and f.name not in clean


@pytest.mark.parametrize(("model_type", "f"), fields_with("maximum"))
def test_the_maximum_is_the_edge(model_type, f):
    high = as_kind(f, f.maximum)
    clean, errors = params.validate(model_type, valid_companions(model_type, f, high), 12)
    assert errors == {} and clean[f.name] == high
    clean, errors = params.validate(model_type, {f.name: just_above(high)}, 12)
    assert "at most" in errors[f.name] and f.name not in clean


@pytest.mark.parametrize(("model_type", "f"), fields_with("maximum"))
def test_bounds_hold_for_form_strings_too(model_type, f):
    high = as_kind(f, f.maximum)
    text = str(high) if f.kind == INTEGER else repr(high)
    clean, errors = params.validate(model_type, valid_companions(model_type, f, text), 12)
    assert errors == {} and clean[f.name] == high
    clean, errors = params.validate(model_type, {f.name: repr(just_above(high))}, 12)
    assert f.name in errors


@pytest.mark.parametrize(("model_type", "f"), fields_with("max_length"))
def test_the_length_limit_is_the_edge(model_type, f):
    def text(n):
        return "e" * n if f.kind in (TEXT, TEXT_LIST) else "a" * n

    longest = text(f.max_length)
    value = [longest] if f.is_list else longest
    clean, errors = params.validate(model_type, valid_companions(model_type, f, value), 12)
    assert errors == {}, errors
    too_long = [text(f.max_length + 1)] if f.is_list else text(f.max_length + 1)
    clean, errors = params.validate(model_type, valid_companions(model_type, f, too_long), 12)
    assert "characters" in errors[f.name]


@pytest.mark.parametrize(("model_type", "f"), fields_with("max_items"))
def test_the_item_limit_is_the_edge(model_type, f):
    items = [f"item{i}" for i in range(f.max_items)]
    clean, errors = params.validate(model_type, valid_companions(model_type, f, items), 12)
    assert errors == {} and clean[f.name] == items
    clean, errors = params.validate(model_type, {f.name: [*items, "one more"]}, 12)
    assert "At most" in errors[f.name]


@pytest.mark.parametrize(("model_type", "f"), fields_with("choices"))
def test_enums_take_their_choices_and_nothing_else(model_type, f):
    for choice in f.choices:
        assert params.validate(model_type, {f.name: choice}, 12) == ({f.name: choice}, {})
    for wrong in ("Constant", "likeness ", "other", 1):
        clean, errors = params.validate(model_type, {f.name: wrong}, 12)
        if wrong == "likeness " and "likeness" in f.choices:
            continue  # surrounding spaces are trimmed like any text
        assert f.name in errors


def test_integers_refuse_fractions_and_accept_whole_floats():
    assert params.validate("flux.1-lora", {"rank": "16.0"}) == ({"rank": 16}, {})
    assert params.validate("flux.1-lora", {"rank": 16.0}) == ({"rank": 16}, {})
    assert params.validate("flux.1-lora", {"rank": "16.5"})[1] == {"rank": "Enter a whole number."}


def test_learning_rate_must_be_positive():
    assert (
        "greater than 0" in params.validate("flux.1-lora", {"learningRate": 0})[1]["learningRate"]
    )
    assert params.validate("flux.1-lora", {"learningRate": "1e-4"}) == ({"learningRate": 1e-4}, {})


def test_the_language_is_a_two_letter_code():
    assert params.validate("elevenlabs-voice", {"language": "fr"}) == ({"language": "fr"}, {})
    for wrong in ("FR", "fra", "f1", "é"):
        assert "language" in params.validate("elevenlabs-voice", {"language": wrong})[1]


def test_source_images_must_be_the_models_own_when_known():
    raw = {"samplePrompts": ["a cat"], "sampleSourceImages": ["asset_1"]}
    assert params.validate("flux.1-kontext-lora", raw, 12, known_assets={"asset_1"})[1] == {}
    errors = params.validate("flux.1-kontext-lora", raw, 12, known_assets={"asset_2"})[1]
    assert "training images" in errors["sampleSourceImages"]


# --- Cross-field rules ------------------------------------------------------------------------


def test_source_images_need_one_per_prompt():
    raw = {"samplePrompts": ["a", "b"], "sampleSourceImages": ["asset_1"]}
    clean, errors = params.validate("flux.1-lora", raw, 12)
    assert "2, not 1" in errors["sampleSourceImages"]
    errors = params.validate("flux.1-lora", {"sampleSourceImages": ["asset_1"]}, 12)[1]
    assert "sampleSourceImages" in errors
    raw["sampleSourceImages"].append("asset_2")
    assert params.validate("flux.1-lora", raw, 12)[1] == {}


def test_prompts_without_source_images_are_fine():
    assert params.validate("flux.1-lora", {"samplePrompts": ["a", "b"]}, 12)[1] == {}


def test_validation_frequency_is_at_most_the_explicit_steps():
    ok = {"maxTrainSteps": 500, "validationFrequency": 500}
    assert params.validate("sd-1_5", ok, 12)[1] == {}
    errors = params.validate("sd-1_5", {**ok, "validationFrequency": 501}, 12)[1]
    assert errors == {
        "validationFrequency": "Cannot be greater than the number of training steps (500)."
    }


def test_validation_frequency_is_at_most_the_default_steps():
    # 12 images: round(12 × 225 / 3) = 900 steps for SD 1.5, 12 × 175 = 2100 for SDXL.
    assert params.validate("sd-1_5", {"validationFrequency": 900}, 12)[1] == {}
    assert (
        "(900)"
        in params.validate("sd-1_5", {"validationFrequency": 901}, 12)[1]["validationFrequency"]
    )
    assert params.validate("sd-xl-lora", {"validationFrequency": 2100}, 12)[1] == {}
    assert (
        "validationFrequency" in params.validate("sd-xl-lora", {"validationFrequency": 2101}, 12)[1]
    )


def test_validation_frequency_on_sdxl_counts_both_step_kinds():
    raw = {"numTextTrainSteps": 100, "numUNetTrainSteps": 300, "validationFrequency": 400}
    assert params.validate("sd-xl-lora", raw, 12)[1] == {}
    assert (
        "(400)"
        in params.validate("sd-xl-lora", {**raw, "validationFrequency": 401}, 12)[1][
            "validationFrequency"
        ]
    )


def test_a_bad_step_count_does_not_also_blame_validation_frequency():
    errors = params.validate("sd-1_5", {"maxTrainSteps": "lots", "validationFrequency": 5}, 12)[1]
    assert set(errors) == {"maxTrainSteps"}


# --- Unknown input ---------------------------------------------------------------------------


def test_fields_of_another_trainer_are_refused():
    clean, errors = params.validate("elevenlabs-voice", {"rank": 16, "language": "en"})
    assert errors == {"rank": "Not accepted for elevenlabs-voice."}
    assert clean == {"language": "en"}
    assert "nbEpochs" in params.validate("sd-1_5", {"nbEpochs": 3})[1]


def test_unknown_model_types_raise_in_lookups_and_answer_in_validate():
    with pytest.raises(UnknownModelType):
        params.family_for("sd-xl")
    assert isinstance(UnknownModelType("x"), ValueError)
    clean, errors = params.validate("sd-xl", {"rank": 4})
    assert clean == {} and "sd-xl" in errors["__all__"]


def test_empty_values_are_left_to_scenario():
    raw = {"rank": "", "conceptPrompt": "   ", "samplePrompts": [], "nbEpochs": None}
    assert params.validate("flux.1-lora", raw, 12) == ({}, {})


HOSTILE = [
    float("nan"),
    float("inf"),
    -float("inf"),
    "nan",
    "Infinity",
    "1e999999",
    "١٢",
    "12abc",
    "0x10",
    "\x00",
    "\ud800",
    "é" * 100_000,
    10**5000,
    -(10**40),
    True,
    [1, 2],
    ["x"] * 100_000,
    {"a": 1},
    object(),
]


@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: type(v).__name__)
def test_hostile_values_become_field_errors(value):
    for model_type in ONE_TYPE_PER_FAMILY.values():
        family = params.family_for(model_type)
        for f in family.fields:
            clean, errors = params.validate(model_type, {f.name: value}, 12)
            assert f.name in errors or f.name in clean
            json.dumps(clean, allow_nan=False)


def test_a_flood_of_unknown_names_is_summed_up():
    raw = {f"field{i}": i for i in range(10_000)}
    clean, errors = params.validate("flux.1-lora", raw, 12)
    assert clean == {} and len(errors) <= 7 and "10000" in errors["__all__"]


def test_non_mapping_input_is_an_error_not_a_crash():
    for raw in (None, [], "rank=3", 12):
        assert params.validate("flux.1-lora", raw, 12) == (
            {},
            {"__all__": "Parameters must be a set of named values."},
        )


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=50)
    | st.sampled_from(["", " ", "nan", "-0", "1e-7", "40000", "40001", "0.99", "likeness"]),
    lambda children: st.lists(children, max_size=30) | st.dictionaries(st.text(), children),
    max_leaves=40,
)


@st.composite
def raw_parameters(draw):
    model_type = draw(st.sampled_from(TRAINABLE_TYPES + ("sd-xl", "", "Flux.1-lora")))
    known = [f.name for f in params.SPEC.values()]
    names = st.sampled_from(known) | st.text(max_size=20)
    raw = draw(st.dictionaries(names, json_values, max_size=12))
    image_count = draw(st.none() | st.integers(min_value=0, max_value=10_000))
    return model_type, raw, image_count


@settings(max_examples=200, deadline=None)
@given(raw_parameters())
def test_validate_never_raises_and_returns_json(case):
    model_type, raw, image_count = case
    clean, errors = params.validate(model_type, raw, image_count)
    json.dumps(clean, allow_nan=False)
    assert all(isinstance(key, str) for key in errors)
    assert all(isinstance(message, str) and message for message in errors.values())
    if model_type in TRAINABLE_TYPES:
        assert set(clean) <= set(params.family_for(model_type).names)
        clean_again, errors_again = params.validate(model_type, clean, image_count)
        assert clean_again == clean
        sent = params.request_parameters(model_type, clean, image_count or 0)
        json.dumps(sent, allow_nan=False)
        assert params.training_steps(model_type, raw, image_count or 0) >= 0
        assert params.epochs_for(model_type, raw) >= 1


# --- What is sent ----------------------------------------------------------------------------


def test_a_typed_value_is_sent_even_at_scenarios_own_default():
    clean = {"learningRate": 1e-4, "rank": 16, "conceptPrompt": "a daiton dog"}
    assert params.request_parameters("flux.1-lora", clean, 12) == {
        "maxTrainSteps": 1200,
        "learningRate": 1e-4,
        "rank": 16,
        "conceptPrompt": "a daiton dog",
    }


def test_computed_defaults_are_sent_explicitly():
    assert params.request_parameters("flux.1-lora", {}, 12) == {"maxTrainSteps": 1200}
    assert params.request_parameters("sd-1_5", {}, 12) == {"maxTrainSteps": 900}
    assert params.request_parameters("flux.1-lora", {"maxTrainSteps": 1200}, 30) == {
        "maxTrainSteps": 1200
    }


def test_changed_values_are_sent():
    clean = {"learningRate": 2e-4, "rank": 32, "nbEpochs": 7, "randomCrop": True}
    sent = params.request_parameters("flux.1-lora", {**clean, "randomCrop": True}, 12)
    assert sent == {"maxTrainSteps": 1200, "learningRate": 2e-4, "rank": 32, "nbEpochs": 7}
    assert params.request_parameters("sd-xl-lora", {"randomCrop": True}, 12) == {"randomCrop": True}
    assert params.request_parameters("sd-xl-lora", {"randomCrop": False}, 12) == {
        "randomCrop": False
    }
    assert params.request_parameters("sd-xl-lora", {}, 12) == {}


def test_only_the_chosen_types_fields_are_sent():
    clean = {"rank": 32, "language": "en", "maxTrainSteps": 100, "cloneType": "instant"}
    assert params.request_parameters("elevenlabs-voice", clean, 12) == {
        "language": "en",
        "cloneType": "instant",
    }


def test_request_parameters_is_idempotent():
    for model_type in TRAINABLE_TYPES:
        clean = params.validate(model_type, params.defaults_for(model_type, 12), 12)[0]
        once = params.request_parameters(model_type, clean, 12)
        assert params.request_parameters(model_type, once, 12) == once


# --- Sizing ----------------------------------------------------------------------------------


def test_training_steps_use_the_given_steps_or_the_default():
    assert params.training_steps("flux.1-lora", {"maxTrainSteps": 700}, 12) == 700
    assert params.training_steps("flux.1-lora", {}, 12) == 1200
    assert params.training_steps("sd-1_5", {"maxTrainSteps": "300"}, 12) == 300
    assert params.training_steps("sd-xl-lora", {"numTextTrainSteps": 100}, 12) == 100
    sdxl = {"numTextTrainSteps": 100, "numUNetTrainSteps": 400}
    assert params.training_steps("sd-xl-lora", sdxl, 12) == 500
    assert params.training_steps("zimage-turbo-lora", {}, 12) == 1200
    assert params.training_steps("elevenlabs-voice", {}, 12) == 120


def test_training_steps_ignore_garbage():
    assert params.training_steps("flux.1-lora", {"maxTrainSteps": "nan"}, 12) == 1200
    assert params.training_steps("flux.1-lora", None, 12) == 1200
    assert params.training_steps("flux.1-lora", {"maxTrainSteps": 10**9}, 12) == 1200
    assert params.training_steps("flux.1-lora", {}, -4) == 0


def test_epochs_come_from_nb_epochs_or_the_trainers_default():
    assert params.epochs_for("flux.1-lora", {"nbEpochs": 4}) == 4
    assert params.epochs_for("flux.1-lora", {"nbEpochs": "4"}) == 4
    assert params.epochs_for("flux.1-lora", {}) == 10
    assert params.epochs_for("flux.1-lora", {"nbEpochs": 99}) == 10
    assert params.epochs_for("sd-1_5", {"nbEpochs": 4}) == 1
    assert params.epochs_for("elevenlabs-voice", {}) == 1


def test_kinds_cover_what_the_reference_uses():
    used = {f.kind for family in FAMILIES.values() for f in family.fields}
    assert used == {NUMBER, INTEGER, BOOL, ENUM, TEXT, TEXT_LIST, ASSET_LIST}
