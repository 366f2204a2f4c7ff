"""Server-side SVG charts and the duration wording."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

import pytest

from training import charts, display
from training.reports import RatePoint, StackedSeries

SVG = "{http://www.w3.org/2000/svg}"


def parse(chart) -> ET.Element:
    return ET.fromstring(str(chart.svg))


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "—"),
        (0, "0 s"),
        (45, "45 s"),
        (97.5, "1 min 38 s"),
        (600, "10 min"),
        (754, "13 min"),
        (3900, "1 h 05 min"),
        (90000, "1 d 1 h"),
    ],
)
def test_durations_read_naturally(seconds, text):
    assert display.duration(seconds) == text


@pytest.mark.parametrize(
    ("maximum", "ticks"),
    [(47.3, [0, 20, 40, 60]), (100, [0, 25, 50, 75, 100]), (0, [0, 1]), (7, [0, 2, 4, 6, 8])],
)
def test_ticks_are_round_numbers_past_the_maximum(maximum, ticks):
    assert charts.nice_ticks(maximum) == ticks


def test_weekly_bars_stack_one_segment_per_key_with_a_legend():
    weeks = [dt.date(2025, 1, 6), dt.date(2025, 1, 13)]
    series = StackedSeries(weeks, ["Alice", "Dave"], {"Alice": [10, 5], "Dave": [0, 20]})
    chart = charts.stacked_weeks(series)
    rects = parse(chart).findall(f"{SVG}rect")
    assert len(rects) == 3  # the empty segment is not drawn
    titles = [rect.find(f"{SVG}title").text for rect in rects]
    assert "Week of 13 Jan 2025 · Dave: 20 CU" in titles
    assert [label for label, _ in chart.legend] == ["Alice", "Dave"]


def test_week_labels_name_the_week_by_its_monday():
    # 1 December 2026 is a Tuesday: its week starts on Monday 30 November, and a bare
    # "30 Nov" under the bar of December's first runs reads as the wrong day.
    weeks = [dt.date(2026, 11, 23), dt.date(2026, 11, 30)]
    series = StackedSeries(weeks, ["Alice"], {"Alice": [4, 6]})
    labels = [text.text for text in parse(charts.stacked_weeks(series)).iter(f"{SVG}text")]
    assert "week of 30 Nov" in labels and "week of 23 Nov" in labels
    assert "30 Nov" not in labels
    rates = [RatePoint(dt.date(2026, 11, 30), 1, 0, 1), RatePoint(dt.date(2026, 12, 7), 1, 1, 2)]
    labels = [text.text for text in parse(charts.success_over_time(rates)).iter(f"{SVG}text")]
    assert "week of 7 Dec" in labels


def test_names_are_escaped_inside_the_svg():
    series = StackedSeries(
        [dt.date(2025, 1, 6)], ["<script>x</script>"], {"<script>x</script>": [3]}
    )
    svg = str(charts.stacked_weeks(series).svg)
    assert "<script>" not in svg and "&lt;script&gt;" in svg


def test_the_spread_has_one_dot_per_run_coloured_by_outcome():
    points = [
        {"pk": 1, "queue_duration": 60, "train_duration": 600, "state": "succeeded",
         "model__name": "A"},
        {"pk": 2, "queue_duration": 300, "train_duration": 120, "state": "failed",
         "model__name": "B"},
    ]  # fmt: skip
    chart = charts.duration_spread(points)
    dots = parse(chart).findall(f"{SVG}circle")
    assert [dot.get("fill") for dot in dots] == ["#15803d", "#b91c1c"]
    assert "Run 2 · B · queued 5 min, trained 2 min · failed" in dots[1].find(f"{SVG}title").text
    assert [label for label, _ in chart.legend] == ["succeeded", "failed"]


def test_the_success_line_leaves_a_gap_for_weeks_without_an_outcome():
    points = [
        RatePoint(dt.date(2025, 1, 6), 3, 1, 0),
        RatePoint(dt.date(2025, 1, 13), 0, 0, 2),
        RatePoint(dt.date(2025, 1, 20), 1, 1, 0),
    ]
    root = parse(charts.success_over_time(points))
    assert len(root.findall(f"{SVG}circle")) == 2
    assert "75% (3 succeeded, 1 failed, 0 canceled)" in root.find(f"{SVG}circle/{SVG}title").text


def test_nothing_to_draw_gives_no_chart():
    assert charts.stacked_weeks(StackedSeries([], [], {})) is None
    assert charts.duration_spread([]) is None
    assert charts.success_over_time([RatePoint(dt.date(2025, 1, 6), 0, 0, 1)]) is None
