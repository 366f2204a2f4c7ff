"""Make simulated Scenario models for tests and the demo, without going through HTTP."""

from __future__ import annotations

from datetime import timedelta

from simulator import clock
from simulator.models import SimModel, SimTrainingImage, new_id


def create_model(
    name: str = "Test model",
    type: str = "flux.1-lora",  # noqa: A002 - Scenario's own field name
    *,
    images: int = 5,
    owner: object = None,
    team: object = None,
) -> SimModel:
    """Create a model with `images` training images; return it (its id is `.id`).

    `owner` (a string, or anything with a pk) or `team` (anything with a name) fill the
    model's ownerId. A name containing "fail" makes every training of it fail part-way; one
    containing "ignores-dry-run" starts a training even when only a dry run is asked for.
    """
    now = clock.now()
    model = SimModel.objects.create(
        name=name, type=type, owner_id=_owner_id(owner, team), created_at=now, updated_at=now
    )
    SimTrainingImage.objects.bulk_create(
        SimTrainingImage(
            model=model,
            asset_id=new_id("asset_"),
            name=f"{_slug(name)}-{index + 1:02d}.png",
            # Distinct, ordered creation times keep the listing order stable.
            created_at=now + timedelta(microseconds=index),
        )
        for index in range(images)
    )
    return model


def _owner_id(owner: object, team: object) -> str:
    if isinstance(owner, str):
        return owner
    if owner is not None:
        return f"user_{getattr(owner, 'pk', owner)}"
    if team is not None:
        return f"team_{_slug(getattr(team, 'name', str(team)))}"
    return ""


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-") or "image"
