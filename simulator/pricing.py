"""What a simulated training costs, and which trainer runs it.

The Creative Units price is deterministic:

    gross    = base(model family) + 2 × images + steps / 20 + 1 × (epochs × sample prompts)
    discount = 10 % of gross, rounded down, when training on 20 images or more; else 0
    cost     = gross − discount, rounded to a whole number

`cost` is what is billed (`creativeUnitsCost`, `billing.cuCost`); `discount` is what was
taken off (`creativeUnitsDiscount`, `billing.cuDiscount`). Bases by trainer family: Flux LoRA
80, Musubi (flux.2, qwen-image, zimage LoRAs) 100, SD 1.5 LoRA 60, SDXL LoRA 70, ElevenLabs
voice 120. A flux.1 LoRA on 10 images at its default 1000 steps, with 3 sample prompts over
10 epochs, costs 80 + 20 + 50 + 30 = 180 CU; typical trainings land between 100 and 500 CU.

Billing once the job ends: a success pays the full quote; a cancel during training pays the
share of the training done (cost and discount scaled by progress, cost rounded up); a cancel
before the GPU started and a failure pay nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simulator import spec

PER_IMAGE = 2.0
STEPS_PER_CU = 20.0
PER_SAMPLE_IMAGE = 1.0
DISCOUNT_FROM_IMAGES = 20
DISCOUNT_SHARE = 0.10


# Base price by trainer (simulator.spec.TRAINERS).
BASE_COST = {
    spec.FLUX_LORA: 80.0,
    spec.MUSUBI: 100.0,
    spec.SD15: 60.0,
    spec.SDXL_LORA: 70.0,
    spec.ELEVENLABS_VOICE: 120.0,
}


@dataclass(frozen=True)
class Price:
    cost: float
    discount: float


def quote(trainer: str, *, images: int, steps: int, epochs: int, prompts: int) -> Price:
    """Price a training by its trainer (a simulator.spec trainer key) and its size."""
    gross = (
        BASE_COST[trainer]
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
