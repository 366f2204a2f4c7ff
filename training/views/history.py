"""History and its CSV export: read-only views over the runs a reader may see."""

from __future__ import annotations

import csv

from django.contrib.auth.decorators import login_required
from django.http import StreamingHttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import dateformat, timezone
from django.views.decorators.http import require_safe

from training import budgets, charts, reports, request_params
from training.access import visible_runs
from training.fragments import page_or_fragment
from training.models import Team

# Text columns read naturally A→Z; figures and dates are most useful biggest/newest first.
TEXT_FIRST_ASC = {"text"}


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
    """Name what each row of a breakdown table is about, in words."""
    for row in rows:
        row["label"] = label(row)
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
