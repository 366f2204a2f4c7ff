"""Check what someone asks to train, and turn it into what Scenario is sent and its price.

The launch form and the `train` command both go this one way: the raw values are validated
against the model's trainer and its training images (params), the clean values become the
request's parameters, and the price of those parameters comes from a dry run (quotes).
"""

from __future__ import annotations

from collections.abc import Mapping

from training import params, quotes
from training.models import ScenarioModel


def training_images(model: ScenarioModel) -> list[dict]:
    """Return the model's mirrored training images that have an id an asset list may name."""
    return [
        image
        for image in (model.training_images or [])
        if isinstance(image, dict) and isinstance(image.get("id"), str) and image["id"]
    ]


def validate(model: ScenarioModel, raw: Mapping[str, object]) -> tuple[dict, dict[str, str]]:
    """Check raw values for a model: (clean values, errors by field name)."""
    known = {image["id"] for image in training_images(model)}
    return params.validate(model.type, raw, model.training_images_number, known_assets=known)


def request_parameters(model: ScenarioModel, clean: Mapping[str, object]) -> dict[str, object]:
    """Return what Scenario is sent for a model's clean values."""
    return params.request_parameters(model.type, clean, model.training_images_number)


def price(model: ScenarioModel, parameters: dict) -> tuple[float, float]:
    """Return what Scenario says these parameters would cost: (CU, discount).

    Raises ScenarioError when Scenario does not quote, DryRunLaunched when it trained instead.
    """
    return quotes.fetch(model, parameters)
