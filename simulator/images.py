"""The pictures the simulator serves: deterministic SVGs, different per epoch and prompt.

A sample is drawn from a hash of (job, epoch, prompt): two colours, a shape that gets sharper
with each epoch, and the prompt and epoch written on it, so a human and a test can both tell
samples apart. Training images given by asset id get a placeholder drawn the same way.
"""

from __future__ import annotations

import hashlib
from xml.sax.saxutils import escape

SIZE = 256


def _palette(seed: str) -> tuple[str, str]:
    digest = hashlib.sha256(seed.encode()).hexdigest()
    return f"#{digest[:6]}", f"#{digest[6:12]}"


def sample_svg(
    *, job_id: str, epoch: str, epoch_index: int, epochs: int, prompt: str, prompt_index: int
) -> bytes:
    """Draw the sample of one epoch for one sample prompt."""
    background, accent = _palette(f"{job_id}:{epoch}:{prompt_index}")
    # Blurry at first, crisper as training goes on.
    blur = max(0.0, 12.0 * (1 - epoch_index / max(1, epochs)))
    radius = 40 + (epoch_index * 53 + prompt_index * 31) % 60
    return _svg(
        title=f"{prompt} (epoch {epoch})",
        background=background,
        body=(
            f'<defs><filter id="soft"><feGaussianBlur stdDeviation="{blur:.1f}"/></filter></defs>'
            f'<circle cx="128" cy="112" r="{radius}" fill="{accent}" filter="url(#soft)"/>'
            f'<text x="12" y="214" font-size="14" fill="#ffffff">{escape(prompt[:34])}</text>'
            f'<text x="12" y="238" font-size="12" fill="#ffffff">epoch {escape(epoch)}</text>'
        ),
        data={"epoch": epoch, "prompt": prompt, "prompt-index": str(prompt_index)},
    )


def placeholder_svg(*, asset_id: str, label: str) -> bytes:
    """Draw a stand-in for a training image known only by its asset id."""
    background, accent = _palette(asset_id)
    return _svg(
        title=label or asset_id,
        background=background,
        body=(
            f'<rect x="48" y="48" width="160" height="120" rx="12" fill="{accent}"/>'
            f'<text x="12" y="228" font-size="14" fill="#ffffff">{escape(label[:34])}</text>'
        ),
        data={"asset-id": asset_id},
    )


def _svg(*, title: str, background: str, body: str, data: dict[str, str]) -> bytes:
    attributes = " ".join(f'data-{k}="{escape(v, {chr(34): "&quot;"})}"' for k, v in data.items())
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{SIZE}" height="{SIZE}" '
        f'viewBox="0 0 {SIZE} {SIZE}" {attributes}>'
        f"<title>{escape(title)}</title>"
        f'<rect width="{SIZE}" height="{SIZE}" fill="{background}"/>'
        f"{body}</svg>"
    ).encode()
