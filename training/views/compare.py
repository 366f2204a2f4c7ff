"""Runs side by side: parameters, trainingStats, cost and samples aligned by prompt."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_safe

from training import display, params, reports, request_params
from training.access import visible_runs
from training.models import EpochSample

COMPARE_MIN, COMPARE_MAX = 2, 4


class CompareError(ValueError):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


def parse_run_ids(params) -> list[int]:
    """Read run ids from ?runs=1,2,3 (or repeated ?runs=1&runs=2), in order, without repeats."""
    try:
        ids = request_params.id_list(params, "runs")
    except request_params.BadParameter as error:
        raise CompareError(f"runs {error.problem}") from None
    if len(ids) < COMPARE_MIN:
        raise CompareError(
            "Pick at least two runs to compare: tick their boxes in the history table."
        )
    if len(ids) > COMPARE_MAX:
        raise CompareError(f"Compare at most {COMPARE_MAX} runs at a time; {len(ids)} were picked.")
    return ids


def load_runs(user, ids: list[int]) -> list:
    samples = Prefetch(
        "samples", queryset=EpochSample.objects.order_by("epoch_index", "prompt_index")
    )
    found = {
        run.pk: run
        for run in reports.history_rows(visible_runs(user).filter(pk__in=ids)).prefetch_related(
            samples
        )
    }
    missing = [str(pk) for pk in ids if pk not in found]
    if missing:
        noun = "Run" if len(missing) == 1 else "Runs"
        raise CompareError(
            f"{noun} {', '.join(missing)} cannot be found, or belong to a team you cannot see.",
            status=404,
        )
    return [found[pk] for pk in ids]


@login_required
@require_safe
def compare(request):
    try:
        runs = load_runs(request.user, parse_run_ids(request.GET))
    except CompareError as error:
        context = {"error": error.message, "history_url": reverse("history")}
        return render(request, "training/compare.html", context, status=error.status)
    context = {
        "runs": runs,
        "parameters": parameter_rows(runs),
        "stats": stat_rows(runs),
        "prompts": prompt_rows(runs),
        "history_url": reverse("history"),
    }
    return render(request, "training/compare.html", context)


def parameter_rows(runs) -> list[dict]:
    """List every parameter any of the runs set, one row each, flagged where the values differ."""
    shown_by_run = [params.for_display(run.parameters or {}) for run in runs]
    names = sorted({name for shown in shown_by_run for name in shown})
    rows = []
    for name in names:
        values = [shown.get(name) for shown in shown_by_run]
        shown = [display.parameter_value(v) for v in values]
        rows.append(
            {
                "name": name,
                "label": params.label_for(name),
                "values": shown,
                "differs": len(set(shown)) > 1,
            }
        )
    return rows


def stat_rows(runs) -> list[dict]:
    """Line up trainingStats, cost and outcome side by side."""
    spec = [
        ("State", lambda r: r.get_state_display()),
        ("Launched", lambda r: display.moment(r.created_at)),
        ("Training started", lambda r: display.moment(r.train_started_at)),
        ("Training ended", lambda r: display.moment(r.train_ended_at)),
        ("Queue duration", lambda r: display.duration(r.queue_duration)),
        ("Train duration", lambda r: display.duration(r.train_duration)),
        ("Total wall time", lambda r: display.duration(r.wall_seconds)),
        ("Epochs", lambda r: str(r.epochs)),
        ("CU quoted", lambda r: display.cu_amount(r.quote_cu_cost)),
        ("CU billed", lambda r: display.cu_amount(r.cu_cost)),
        ("Discount", lambda r: display.cu_amount(r.cu_discount)),
        ("Over budget", _over_budget),
    ]
    rows = []
    for label, read in spec:
        values = [read(run) for run in runs]
        rows.append({"name": label, "values": values, "differs": len(set(values)) > 1})
    return rows


def _over_budget(run) -> str:
    return display.yes_no(run.budget_override) + (", by override" if run.budget_override else "")


def prompt_rows(runs) -> list[dict]:
    """Align samples by prompt text: one row per prompt, one cell per run, epochs in order.

    Runs may list the same prompt at different positions, so the prompt itself is the key
    (its position stands in when the text is empty).
    """
    order: list[str] = []
    cells: dict[str, list[list]] = {}
    for column, run in enumerate(runs):
        for sample in run.samples.all():
            key = sample.prompt or f"Prompt {sample.prompt_index + 1}"
            if key not in cells:
                order.append(key)
                cells[key] = [[] for _ in runs]
            cells[key][column].append(sample)
    return [{"prompt": key, "cells": cells[key]} for key in order]
