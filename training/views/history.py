"""History and its CSV export: read-only views over the runs a reader may see."""

from __future__ import annotations

from html import escape  # as the template escapes, without making a SafeString each time

from django.contrib.auth.decorators import login_required
from django.http import StreamingHttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import dateformat, timezone
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_safe

from training import budgets, charts, display, figures, reports, request_params
from training.access import membership_of, visible_runs
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
    context.update(_summary_context(request.user, runs, filters))
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
    return {
        "columns": _columns(filters, base),
        "pager": pager,
        "run_rows": [_run_row(run) for run in page.rows],
    }


# The table's rows and the breakdowns' rows are written here, as Django's admin writes its
# changelist's cells, rather than a template node per cell: a page has some 1,500 cells, and
# each node costs more than the cell's text. The markup is the one the template had.


def _run_row(run) -> SafeString:
    pk = run.pk
    billed = "cost unknown" if run.cost_unknown else display.cu_amount(run.cu_cost)
    return mark_safe(
        f'<tr data-run="{pk}">\n'
        f'          <td><input type="checkbox" name="runs" value="{pk}" form="compare-form" '
        f'aria-label="Compare run {pk}"></td>\n'
        f'          <td class="model-cell"><span class="model-name">'
        f"{escape(run.model.name or run.model.remote_id)}</span>"
        f'<span class="muted small">#{pk}</span></td>\n'
        f"          <td><code>{escape(run.model_type)}</code></td>\n"
        f"          <td>{escape(run.artist)}</td>\n"
        f"          <td>{escape(run.team.name)}</td>\n"
        f'          <td class="nowrap">{display.moment(run.created_at)}</td>\n'
        f'          <td class="num">{display.duration(run.queue_duration)}</td>\n'
        f'          <td class="num">{display.duration(run.train_duration)}</td>\n'
        f'          <td class="num">{display.duration(run.wall_seconds)}</td>\n'
        f'          <td><span class="state state-{escape(run.state)}">'
        f"{escape(run.get_state_display())}</span></td>\n"
        f'          <td class="num">{display.cu_amount(run.quote_cu_cost)}</td>\n'
        f'          <td class="num">{billed}</td>\n'
        f'          <td class="num">{display.cu_amount(run.cu_discount)}</td>\n'
        f'          <td class="num">{run.epochs}</td>\n'
        f'          <td class="num">{display.forecast_miss(run.forecast_miss)}</td>\n'
        "        </tr>"
    )


def _breakdown_row(row: dict) -> SafeString:
    rate = (
        display.NOTHING
        if row["success_rate"] is None
        else f"{display.percent(row['success_rate'])}%"
    )
    return mark_safe(
        f'<tr><td>{escape(row["label"])}</td><td class="num">{display.count(row["runs"])}</td>\n'
        f'          <td class="num">{rate}</td>\n'
        f'          <td class="num">{display.cu_amount(row["cu_spent"])}</td>'
        f'<td class="num">{display.duration(row["queue_mean"])}</td>'
        f'<td class="num">{display.duration(row["train_mean"])}</td></tr>'
    )


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


def _summary_context(user, runs, filters: reports.HistoryFilters) -> dict:
    teams = _teams_of(user)
    summary = figures.history(user, filters, teams)
    return {
        "choices": summary.choices,
        "totals": summary.totals,
        "by_artist": _breakdown_rows(summary.by_artist, lambda row: row["artist"]),
        "by_team": _breakdown_rows(summary.by_team, lambda row: row["team"]),
        "by_month": _breakdown_rows(
            summary.by_month,
            lambda row: dateformat.format(timezone.template_localtime(row["month"]), "F Y"),
        ),
        "cu_chart": charts.stacked_weeks(summary.cu_weeks),
        "spread_chart": charts.duration_spread(reports.duration_points(runs)),
        "success_chart": charts.success_over_time(summary.outcome_weeks),
        "scatter_limit": reports.SCATTER_LIMIT,
        "stack_urls": {
            key: f"{reverse('history')}?{filters.query(stack=key)}" for key in ("artist", "type")
        },
        "csv_url": f"{reverse('history_csv')}?{filters.query()}",
        "budgets": budgets.statuses_for(teams),
        "can_filter_team": reports.can_filter_by_team(user),
    }


def _breakdown_rows(rows: list[dict], label) -> list[dict]:
    """Name what each row of a breakdown table is about, in words, and write the row."""
    for row in rows:
        row["label"] = label(row)
        row["html"] = _breakdown_row(row)
    return rows


def _teams_of(user) -> list[Team]:
    """The teams whose runs the user may see: every team for staff, else their own."""
    if user.is_staff:
        return list(Team.objects.order_by("name"))
    return _own_team(user)


def _own_team(user) -> list[Team]:
    membership = membership_of(user)
    return [membership.team] if membership else []


# --- CSV ----------------------------------------------------------------------------------


@login_required
@require_safe
def history_csv(request):
    filters = reports.parse_filters(request.GET, request.user)
    if filters.errors:
        # Before the first byte: once streaming starts, an error can only truncate the file.
        name, problem = next(iter(filters.errors.items()))
        raise request_params.BadParameter(name, problem)
    runs = reports.apply_filters(visible_runs(request.user), filters)
    chunks = reports.csv_chunks(runs, filters)
    response = StreamingHttpResponse(chunks, content_type="text/csv; charset=utf-8")
    stamp = timezone.localtime().strftime("%Y-%m-%d")
    response["Content-Disposition"] = f'attachment; filename="training-history-{stamp}.csv"'
    return response
