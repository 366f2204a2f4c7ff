"""Hand-made files for dataset tests: distinct images, a near-twin, a text file, a broken PNG."""

from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw


def picture(seed: int, size: tuple[int, int] = (1024, 1024), fmt: str = "PNG") -> bytes:
    """An image unlike any other seed's: random shapes in random colours."""
    rng = random.Random(seed)
    image = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    width, height = size
    for _ in range(12):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        x1, y1 = x0 + rng.randrange(width // 2), y0 + rng.randrange(height // 2)
        colour = tuple(rng.randrange(256) for _ in range(3))
        if rng.random() < 0.5:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def near_twin(content: bytes) -> bytes:
    """The same picture, slightly brighter and saved again: a near-duplicate."""
    with Image.open(io.BytesIO(content)) as image:
        brighter = image.point(lambda v: min(255, v + 6))
        out = io.BytesIO()
        brighter.save(out, "JPEG", quality=90)
    return out.getvalue()


def corrupt_png() -> bytes:
    """A PNG whose header is right and whose image data is cut off."""
    whole = picture(999, (256, 256))
    return whole[: len(whole) // 2]


TEXT_FILE = b"These are my notes about the knight, not an image.\n"
