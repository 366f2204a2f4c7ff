"""What a simulated training costs, and which trainer runs it.

The Creative Units price is deterministic:

    gross    = base(model family) + 2 × images + steps / 20 + 1 × (epochs × sample prompts)
    discount = 10 % of gross, rounded down, when training on 20 images or more; else 0
    cost     = gross − discount, rounded to a whole number

`cost` is what is billed (`creativeUnitsCost`, `billing.cuCost`); `discount` is what was
taken off (`creativeUnitsDiscount`, `billing.cuDiscount`). Bases: flux.1 LoRA 60, flux.2 80,
qwen-image 90, zimage 50, SD 1.5 / SDXL 40, ElevenLabs voice 100. A flux.1 LoRA on 10
images at its default 1000 steps with 3 sample prompts over 10 epochs costs
60 + 20 + 50 + 30 = 160 CU; typical trainings land between 100 and 500 CU.

Billing once the job ends: a success pays the full quote; a cancel during training pays the
share of the training done (cost and discount scaled by progress, cost rounded up); a cancel
before the GPU started and a failure pay nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PER_IMAGE = 2.0
STEPS_PER_CU = 20.0
PER_SAMPLE_IMAGE = 1.0
DISCOUNT_FROM_IMAGES = 20
DISCOUNT_SHARE = 0.10


@dataclass(frozen=True)
class Trainer:
    prefix: str
    job_type: str
    base_cost: float


# Model type prefix -> the trainer Scenario uses, as named in its job types.
TRAINERS = (
    Trainer("flux.1", "flux-model-training", 60),
    Trainer("flux.2", "musubi-model-training", 80),
    Trainer("qwen-image", "musubi-model-training", 90),
    Trainer("zimage", "musubi-model-training", 50),
    Trainer("sd-", "model-training", 40),
    Trainer("elevenlabs", "model-training", 100),
)
FALLBACK = Trainer("", "model-training", 60)


def trainer_for(model_type: str) -> Trainer:
    return next((t for t in TRAINERS if model_type.startswith(t.prefix)), FALLBACK)


@dataclass(frozen=True)
class Price:
    cost: float
    discount: float


def quote(model_type: str, *, images: int, steps: int, epochs: int, prompts: int) -> Price:
    gross = (
        trainer_for(model_type).base_cost
        + PER_IMAGE * images
        + steps / STEPS_PER_CU
        + PER_SAMPLE_IMAGE * epochs * prompts
    )
    discount = math.floor(gross * DISCOUNT_SHARE) if images >= DISCOUNT_FROM_IMAGES else 0
    return Price(cost=float(round(gross - discount)), discount=float(discount))


def billed(price: Price, *, outcome: str, progress: float) -> Price:
    """Return what a finished job is billed (outcome: success, canceled or failure)."""
    if outcome == "success":
        return price
    if outcome == "canceled" and progress > 0:
        return Price(
            cost=float(math.ceil(price.cost * progress)),
            discount=float(round(price.discount * progress)),
        )
    return Price(cost=0.0, discount=0.0)
