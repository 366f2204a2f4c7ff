"""History, CSV export and run comparison: read-only views over the runs a reader may see."""

from __future__ import annotations

import csv

from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.http import StreamingHttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import dateformat, timezone
from django.views.decorators.http import require_safe

from training import budgets, charts, params, reports, request_params
from training.access import visible_runs
from training.fragments import page_or_fragment
from training.models import EpochSample, Team

# Text columns read naturally A→Z; figures and dates are most useful biggest/newest first.
TEXT_FIRST_ASC = {"text"}
COMPARE_MIN, COMPARE_MAX = 2, 4


# --- history page -------------------------------------------------------------------------


@page_or_fragment
@login_required
@require_safe
def history(request):
    filters = reports.parse_filters(request.GET, request.user)
    visible = visible_runs(request.user)
    runs = reports.apply_filters(visible, filters)
    page = reports.page_of(
        reports.table_rows(runs),
        filters,
        after=request_params.text(request.GET, "after", max_length=reports.MAX_CURSOR_CHARS),
        before=request_params.text(request.GET, "before", max_length=reports.MAX_CURSOR_CHARS),
        last=request_params.text(request.GET, "last", max_length=10) == "1",
        size=reports.PAGE_SIZE,
    )
    context = {"filters": filters, "page": page, **_table_context(filters, page)}
    # A filter that was not understood is shown by the filters, on a page answered as a 400.
    status = 400 if filters.errors else 200
    if request.htmx and request.htmx.target == "history-table":
        # Paging and sorting swap the table only; totals and charts are for the filters.
        return render(request, "training/history.html#table", context, status=status)
    context.update(_summary_context(request.user, visible, runs, filters))
    return render(request, "training/history.html", context, status=status)


def _table_context(filters: reports.HistoryFilters, page: reports.Page) -> dict:
    for run in page.rows:
        run.queue_text = charts.human_duration(run.queue_duration)
        run.train_text = charts.human_duration(run.train_duration)
        run.wall_text = charts.human_duration(run.wall_seconds)
    base = reverse("history")
    pager = {
        # On the first (or last) page already, "First" (or "Last") leads nowhere.
        "first": f"{base}?{filters.query()}" if page.has_previous else "",
        "last": f"{base}?{filters.query(last='1')}" if page.has_next else "",
        "next": f"{base}?{filters.query(after=page.next_cursor)}" if page.has_next else "",
        "previous": f"{base}?{filters.query(before=page.previous_cursor)}"
        if page.has_previous
        else "",
    }
    return {"columns": _columns(filters, base), "pager": pager}


def _columns(filters: reports.HistoryFilters, base: str) -> list[dict]:
    columns = []
    for sort in reports.SORTS.values():
        active = filters.sort_key == sort.key
        if active:
            next_sort = sort.key if filters.descending else f"-{sort.key}"
        else:
            next_sort = sort.key if sort.kind in TEXT_FIRST_ASC else f"-{sort.key}"
        columns.append(
            {
                "key": sort.key,
                "label": sort.label,
                "numeric": sort.numeric,
                "active": active,
                "descending": active and filters.descending,
                "url": f"{base}?{filters.query(sort=next_sort)}",
            }
        )
    return columns


def _summary_context(user, visible, runs, filters: reports.HistoryFilters) -> dict:
    totals = reports.totals(runs)
    cu_weeks, outcome_weeks = reports.weekly(runs, filters.stack)
    return {
        "choices": reports.filter_choices(user, visible),
        "totals": totals,
        "totals_text": {
            "queue_mean": charts.human_duration(totals.queue_mean),
            "queue_p90": charts.human_duration(totals.queue_p90),
            "train_mean": charts.human_duration(totals.train_mean),
            "train_p90": charts.human_duration(totals.train_p90),
        },
        "by_artist": _breakdown_rows(reports.by_artist(runs), lambda row: row["artist"]),
        "by_team": _breakdown_rows(reports.by_team(runs), lambda row: row["team"])
        if user.is_staff
        else [],
        "by_month": _breakdown_rows(
            reports.by_month(runs),
            lambda row: dateformat.format(timezone.template_localtime(row["month"]), "F Y"),
        ),
        "cu_chart": charts.stacked_weeks(cu_weeks),
        "spread_chart": charts.duration_spread(reports.duration_points(runs)),
        "success_chart": charts.success_over_time(outcome_weeks),
        "scatter_limit": reports.SCATTER_LIMIT,
        "stack_urls": {
            key: f"{reverse('history')}?{filters.query(stack=key)}" for key in ("artist", "type")
        },
        "csv_url": f"{reverse('history_csv')}?{filters.query()}",
        "budgets": budgets.statuses_for(_budget_teams(user)),
        "can_filter_team": reports.can_filter_by_team(user),
    }


def _breakdown_rows(rows: list[dict], label) -> list[dict]:
    """Rows of a breakdown table: what the row is about, in words, and its durations."""
    for row in rows:
        row["label"] = label(row)
        row["queue_text"] = charts.human_duration(row["queue_mean"])
        row["train_text"] = charts.human_duration(row["train_mean"])
    return rows


def _budget_teams(user) -> list[Team]:
    if user.is_staff:
        return list(Team.objects.order_by("name"))
    status = budgets.status_for_user(user)
    return [status.team] if status else []


# --- CSV ----------------------------------------------------------------------------------


class _Echo:
    """A file-like object whose write() hands the line back, for csv.writer in a stream."""

    def write(self, value: str) -> str:
        return value


@login_required
@require_safe
def history_csv(request):
    filters = reports.parse_filters(request.GET, request.user)
    if filters.errors:
        # Before the first byte: once streaming starts, an error can only truncate the file.
        name, problem = next(iter(filters.errors.items()))
        raise request_params.BadParameter(name, problem)
    runs = reports.apply_filters(visible_runs(request.user), filters)
    writer = csv.writer(_Echo())

    def lines():
        yield writer.writerow(reports.CSV_HEADER)
        for row in reports.csv_rows(runs, filters):
            yield writer.writerow(row)

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    stamp = timezone.localtime().strftime("%Y-%m-%d")
    response["Content-Disposition"] = f'attachment; filename="training-history-{stamp}.csv"'
    return response


# --- compare ------------------------------------------------------------------------------


class CompareError(ValueError):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


def parse_run_ids(params) -> list[int]:
    """Run ids from ?runs=1,2,3 (or repeated ?runs=1&runs=2), in order, without repeats."""
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
    """Every parameter any of the runs set, one row each, flagged where the values differ."""
    shown_by_run = [params.for_display(run.parameters or {}) for run in runs]
    names = sorted({name for shown in shown_by_run for name in shown})
    rows = []
    for name in names:
        values = [shown.get(name) for shown in shown_by_run]
        shown = [params.display_value(v) for v in values]
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
    """trainingStats, cost and outcome side by side."""
    spec = [
        ("State", lambda r: r.get_state_display()),
        ("Launched", lambda r: timezone.localtime(r.created_at).strftime("%Y-%m-%d %H:%M")),
        ("Training started", lambda r: _when(r.train_started_at)),
        ("Training ended", lambda r: _when(r.train_ended_at)),
        ("Queue duration", lambda r: charts.human_duration(r.queue_duration)),
        ("Train duration", lambda r: charts.human_duration(r.train_duration)),
        ("Total wall time", lambda r: charts.human_duration(r.wall_seconds)),
        ("Epochs", lambda r: str(r.epochs)),
        ("CU quoted", lambda r: _cu(r.quote_cu_cost)),
        ("CU billed", lambda r: _cu(r.cu_cost)),
        ("Discount", lambda r: _cu(r.cu_discount)),
        ("Over budget", lambda r: "yes, by override" if r.budget_override else "no"),
    ]
    rows = []
    for label, read in spec:
        values = [read(run) for run in runs]
        rows.append({"name": label, "values": values, "differs": len(set(values)) > 1})
    return rows


def _when(value) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M") if value else "—"


def _cu(value) -> str:
    return "—" if value is None else f"{value:,.2f}".rstrip("0").rstrip(".")


def prompt_rows(runs) -> list[dict]:
    """Samples aligned by prompt text: one row per prompt, one cell per run, epochs in order.

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
