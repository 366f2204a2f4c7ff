"""Charts drawn on the server as inline SVG: no JavaScript, no library, works offline.

Each function takes a series from training.reports and returns a Chart (the SVG markup plus a
legend), or None when there is nothing to draw. All text is escaped; each mark carries a
<title> so hovering shows its figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape as quote  # as django.utils.html.escape, without the SafeString

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from training.display import cu_amount, duration
from training.reports import RatePoint, StackedSeries

WIDTH, HEIGHT = 560, 240
LEFT, RIGHT, TOP, BOTTOM = 52, 14, 14, 34
PALETTE = ["#4f46e5", "#0ea5e9", "#10b981", "#f59e0b", "#ef4444", "#8b5cf6", "#ec4899"]
OTHERS = "#a3aab8"
STATE_COLORS = {"succeeded": "#15803d", "failed": "#b91c1c", "canceled": "#8b93a3"}
INK, MUTED, GRID = "#1c2330", "#6b7385", "#e3e6ec"


@dataclass
class Chart:
    svg: SafeString
    legend: list[tuple[str, str]] = field(default_factory=list)  # (label, colour)
    note: str = ""


def nice_ticks(maximum: float, count: int = 4) -> list[float]:
    """Round tick values from 0 past maximum: 0, 50, 100, 150 rather than 0, 47.3, 94.6."""
    if maximum <= 0:
        return [0.0, 1.0]
    raw = maximum / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    top = math.ceil(maximum / step) * step
    return [i * step for i in range(round(top / step) + 1)]


def _number(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def _svg(body: list[str], label: str, width: int = WIDTH) -> SafeString:
    return mark_safe(
        f'<svg class="chart" viewBox="0 0 {width} {HEIGHT}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg" '
        f'font-family="system-ui, sans-serif" font-size="11">' + "".join(body) + "</svg>"
    )


def _y_axis(ticks: list[float], y, fmt=_number, width: int = WIDTH) -> list[str]:
    parts = []
    for tick in ticks:
        py = y(tick)
        parts.append(
            f'<line x1="{LEFT}" x2="{width - RIGHT}" y1="{py:.1f}" y2="{py:.1f}" '
            f'stroke="{GRID}" stroke-width="1"/>'
            f'<text x="{LEFT - 6}" y="{py + 4:.1f}" text-anchor="end" fill="{MUTED}">'
            f"{escape(fmt(tick))}</text>"
        )
    return parts


def week_label(monday) -> str:
    """Name a week by its Monday: a bare "30 Nov" under the week of 1 December misleads."""
    return f"week of {monday.day} {monday:%b}"


def _x_labels(labels: list[str], x, every: int) -> list[str]:
    return [
        f'<text class="x-label" x="{x(i):.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" '
        f'fill="{MUTED}">'
        f"{escape(text)}</text>"
        for i, text in enumerate(labels)
        if i % every == 0
    ]


def _scale(ticks: list[float]):
    top = ticks[-1] or 1
    span = HEIGHT - TOP - BOTTOM
    return lambda v: HEIGHT - BOTTOM - (v / top) * span


def stacked_weeks(series: StackedSeries, unit: str = "CU", width: int = 2 * WIDTH) -> Chart | None:
    """Draw bars per week, one coloured segment per artist or type; wide by default."""
    if not series.weeks:
        return None
    totals = [sum(series.values[k][i] for k in series.keys) for i in range(len(series.weeks))]
    ticks = nice_ticks(max(totals))
    y = _scale(ticks)
    slot = (width - LEFT - RIGHT) / len(series.weeks)
    bar = max(min(slot * 0.72, 48), 1.5)

    def x(i):
        return LEFT + slot * (i + 0.5)

    colours = _colours(series.keys)
    body = _y_axis(ticks, y, width=width)
    # A bar per week and key: its fixed parts are written once, only its figures per mark.
    # The title is escaped a part at a time: a week and an amount have nothing to escape.
    marks = [(series.values[key], _fill(colours[key]), quote(key)) for key in series.keys]
    unit = quote(unit)
    for i, week in enumerate(series.weeks):
        base = 0.0
        left = f'<rect x="{x(i) - bar / 2:.1f}" y="'
        size = f'" width="{bar:.1f}" height="'
        when = f"<title>Week of {week:%d %b %Y} · "
        for values, fill, key in marks:
            value = values[i]
            if not value:
                continue
            top, bottom = y(base + value), y(base)
            base += value
            body.append(
                f"{left}{top:.1f}{size}{max(bottom - top, 0.5):.1f}{fill}"
                f"{when}{key}: {cu_amount(value)} {unit}</title></rect>"
            )
    labels = [week_label(week) for week in series.weeks]
    body += _x_labels(labels, x, every=max(1, math.ceil(len(labels) / 8)))
    legend = [(key, colours[key]) for key in series.keys]
    return Chart(_svg(body, f"{unit} per week", width), legend)


def _fill(colour: str) -> str:
    return f'" fill="{colour}">'


def _colours(keys: list[str]) -> dict[str, str]:
    named = [k for k in keys if k != "Others"]
    colours = {key: PALETTE[i % len(PALETTE)] for i, key in enumerate(named)}
    colours["Others"] = OTHERS
    return colours


def duration_spread(points: list[dict]) -> Chart | None:
    """Plot queue time against train time, one dot per run, coloured by outcome."""
    if not points:
        return None
    queue_ticks = nice_ticks(max(p["queue_duration"] for p in points) / 60)
    train_ticks = nice_ticks(max(p["train_duration"] for p in points) / 60)
    y = _scale(train_ticks)
    span = WIDTH - LEFT - RIGHT

    def x(minutes):
        return LEFT + minutes / (queue_ticks[-1] or 1) * span

    body = _y_axis(train_ticks, y, lambda v: f"{_number(v)} min")
    for tick in queue_ticks:
        body.append(
            f'<text class="x-label" x="{x(tick):.1f}" y="{HEIGHT - BOTTOM + 16}" '
            'text-anchor="middle" '
            f'fill="{MUTED}">{escape(_number(tick))}</text>'
        )
    body.append(
        f'<text class="axis-title" x="{WIDTH - RIGHT}" y="{HEIGHT - 4}" text-anchor="end" '
        f'fill="{MUTED}">'
        "queue (min) →</text>"
    )
    for p in points:
        colour = STATE_COLORS.get(p["state"], PALETTE[0])
        # Escaped a part at a time: ids and durations have nothing to escape.
        tip = (
            f"Run {p['pk']} · {quote(p['model__name'])} · queued {duration(p['queue_duration'])}"
            f", trained {duration(p['train_duration'])} · {quote(p['state'])}"
        )
        body.append(
            f'<circle cx="{x(p["queue_duration"] / 60):.1f}" '
            f'cy="{y(p["train_duration"] / 60):.1f}" r="3.2" fill="{colour}" '
            f'fill-opacity="0.55"><title>{tip}</title></circle>'
        )
    present = {p["state"] for p in points}
    legend = [(state, colour) for state, colour in STATE_COLORS.items() if state in present]
    legend += [("other", PALETTE[0])] if present - set(STATE_COLORS) else []
    return Chart(_svg(body, "Queue time against train time"), legend)


def success_over_time(points: list[RatePoint]) -> Chart | None:
    """Draw the weekly success rate as a line; weeks without an outcome leave a gap."""
    rated = [p for p in points if p.rate is not None]
    if not rated:
        return None
    ticks = [0, 25, 50, 75, 100]
    y = _scale(ticks)
    slot = (WIDTH - LEFT - RIGHT) / len(points)

    def x(i):
        return LEFT + slot * (i + 0.5)

    body = _y_axis(ticks, y, lambda v: f"{v:g}%")
    segments, current = [], []
    for i, p in enumerate(points):
        if p.rate is None:
            segments.append(current)
            current = []
            continue
        current.append(f"{x(i):.1f},{y(p.rate * 100):.1f}")
    segments.append(current)
    for segment in filter(None, segments):
        body.append(
            f'<polyline points="{" ".join(segment)}" fill="none" stroke="{PALETTE[0]}" '
            'stroke-width="2" stroke-linejoin="round"/>'
        )
    for i, p in enumerate(points):
        if p.rate is None:
            continue
        not_started = f", {p.not_started} not started" if p.not_started else ""
        tip = (
            f"Week of {p.week:%d %b %Y}: {p.rate:.0%} ({p.succeeded} succeeded, "
            f"{p.failed} failed, {p.canceled} canceled{not_started})"
        )
        body.append(
            f'<circle cx="{x(i):.1f}" cy="{y(p.rate * 100):.1f}" r="3.5" fill="#fff" '
            f'stroke="{PALETTE[0]}" stroke-width="2"><title>{escape(tip)}</title></circle>'
        )
    labels = [week_label(p.week) for p in points]
    body += _x_labels(labels, x, every=max(1, math.ceil(len(labels) / 5)))
    return Chart(_svg(body, "Success rate per week"), [("succeeded ÷ (succeeded + failed)", "")])
