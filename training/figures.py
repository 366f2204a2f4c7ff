"""History's figures: totals with p90s, breakdowns, weekly series and what the filters offer.

They are read from the rollups (training.rollups), for every filter but the search on model
names: the rollups keep no model, so with a search the matching runs themselves are summed,
as if each were a rollup row, and the p90s are exact (percentile_cont). Runs still active are
in no rollup; they are few, summed the same way and added. Either way the figures are those
training.reports' aggregates give over the runs, except the p90s from rollups, read from
duration buckets (Totals.p90_within says how close they are).

A page's groupings over one table are read in one pass on Postgres (GROUPING SETS); elsewhere
each grouping is its own query, with the same results.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Case, DateField, F, QuerySet, Value, When
from django.db.models.functions import Cast, Coalesce, TruncMonth, TruncWeek
from django.utils import timezone

from training import display, reports, rollups
from training.access import membership_of, visible_runs
from training.models import ACTIVE_STATES, FINAL_STATES, RunState, Team, TrainingRun
from training.rollups import (
    DAY,
    MONTH,
    MONTH_ARTIST,
    MONTH_TYPE,
    SPAN,
    SPAN_ARTIST,
    SPAN_TYPE,
    Table,
)

# What each figure sums, in this order.
(
    RUNS, SUCCEEDED, FAILED, CANCELED, NOT_STARTED, BILLED, CU_BILLED, CU_QUOTED, QUEUE_RUNS,
    QUEUE_SECONDS, TRAIN_RUNS, TRAIN_SECONDS,
) = range(12)  # fmt: skip
OUTCOMES = (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELED, RunState.NOT_STARTED)

# A grouping names the columns a figure is split by.
COLUMNS = {
    "team": "team_id",
    "month": "month",
    "week": "week",
    "artist": "artist_id",
    "model_type": "model_type",
    "queue_bucket": "queue_bucket",
    "train_bucket": "train_bucket",
    # Runs summed themselves (the active ones): their durations, to be counted in buckets here.
    "queue_value": "queue_value",
    "train_value": "train_value",
}
DATE_COLUMNS = frozenset({"month", "week"})
NEEDS = {"artist": "artist", "model_type": "model_type"}
BUCKET_GROUPINGS = (("queue_bucket",), ("train_bucket",))
VALUE_GROUPINGS = (("queue_value",), ("train_value",))

# Read each table's groupings in one pass on Postgres; off, one query per grouping, as on
# SQLite (the tests compare both).
ONE_PASS = True

Grouping = tuple[str, ...]
Sums = dict[Grouping, dict[tuple, list]]
Buckets = tuple[list[int], list[int]]  # run counts per queue bucket and per train bucket


@dataclass
class HistoryFigures:
    totals: reports.Totals
    by_artist: list[dict]
    by_team: list[dict]
    by_month: list[dict]
    cu_weeks: reports.StackedSeries
    outcome_weeks: list[reports.RatePoint]
    choices: reports.FilterChoices | None = None


@dataclass(frozen=True)
class Scope:
    """Which final runs a page counts: the teams its reader may see, narrowed by the filters."""

    teams: tuple[int, ...] | None  # None: every team
    artist: int | None = None
    model_type: str = ""
    outcome: str = ""
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    empty: bool = False
    artists: frozenset[int] | None = None  # only these artists (the weekly chart's biggest)
    dims: frozenset[str] = field(default=frozenset(), compare=False)

    @classmethod
    def of(cls, user, filters: reports.HistoryFilters | None = None) -> Scope:
        """The scope of what the user may see (as access.visible_runs), with the filters."""
        teams = None
        if not user.is_staff:
            membership = membership_of(user)
            if membership is None:
                return cls(teams=(), empty=True)
            teams = (membership.team_id,)
        if filters is None:
            return cls(teams=teams)
        if filters.team:
            teams = (filters.team,) if teams is None or filters.team in teams else ()
        dims = frozenset(
            name for name, on in (("artist", filters.artist), ("model_type", filters.type)) if on
        )
        return cls(
            teams=teams, artist=filters.artist, model_type=filters.type, outcome=filters.state,
            date_from=filters.date_from, date_to=filters.date_to, empty=teams == (), dims=dims,
        )  # fmt: skip

    def of_artists(self, artists: frozenset[int]) -> Scope:
        return replace(self, artists=artists, dims=self.dims | {"artist"})

    @property
    def no_final_runs(self) -> bool:
        return self.empty or (bool(self.outcome) and self.outcome not in FINAL_STATES)

    @property
    def no_active_runs(self) -> bool:
        return self.empty or (bool(self.outcome) and self.outcome not in ACTIVE_STATES)


# --- the page's figures -------------------------------------------------------------------


def history(user, filters: reports.HistoryFilters, teams: list[Team]) -> HistoryFigures:
    """Every figure of the history page for these filters, and the filter menus' choices.

    `teams` are the teams the reader may see (every team for staff): they name the rows of the
    breakdown by team, which only staff get, and fill the team menu.
    """
    visible = Scope.of(user)
    groupings: list[Grouping] = [(), ("month",), ("week",), ("artist",)]
    if user.is_staff:
        groupings.append(("team",))
    groupings.append(("week", "model_type" if filters.stack == "type" else "artist"))
    if filters.q:
        # A search on model names cannot be answered by the rollups, which keep no model: the
        # figures are summed over the matching runs themselves, p90s exact.
        runs = reports.apply_filters(visible_runs(user), filters)
        sums = sum_runs(runs, groupings)
        total = sums[()].get((), _zero())
        counts = {"queue_duration": total[QUEUE_RUNS], "train_duration": total[TRAIN_RUNS]}
        p90 = reports.percentiles(runs, list(counts), 0.9, counts)
        totals = _totals(total, p90["queue_duration"], p90["train_duration"], within=None)
        choices = _choices(user, teams, *_menus(user, visible))
        if filters.stack == "artist":
            cu_weeks = _stacked_weeks(sums[("week", "artist")], dict(choices.artists))
        else:
            cu_weeks = _stacked_weeks(sums[("week", "model_type")], None)
        return _figures(user, sums, totals, choices, teams, cu_weeks)
    scope = Scope.of(user, filters)
    unfiltered = scope == visible
    # Weeks by artist are read for the biggest spenders only (_artist_weeks); but active runs,
    # few, are summed by week and artist whole, and by type for the type menu.
    read_groupings = [g for g in groupings if g != ("week", "artist")]
    sums, buckets = read(scope, read_groupings, buckets=True)
    active, active_buckets = read_active(
        user, filters, scope, [*groupings, *([("model_type",)] if unfiltered else [])]
    )
    for grouping in read_groupings:
        _merge(sums[grouping], active[grouping])
    _add_buckets(buckets, active_buckets)
    if unfiltered:
        # The breakdown by artist names everyone the artist menu offers.
        artists = {key[0] for key in sums[("artist",)]}
        types = _distinct(MONTH_TYPE, visible, "model_type")
        types |= {key[0] for key in active[("model_type",)]}
    else:
        artists, types = _menus(user, visible)
    choices = _choices(user, teams, artists, types)
    if filters.stack == "artist":
        cu_weeks = _artist_weeks(scope, sums, dict(choices.artists), active)
    else:
        cu_weeks = _stacked_weeks(sums[("week", "model_type")], None)
    queue, train = buckets
    totals = _totals(
        sums[()].get((), _zero()),
        rollups.bucket_percentile(queue, 0.9),
        rollups.bucket_percentile(train, 0.9),
        within=rollups.P90_WITHIN,
    )
    return _figures(user, sums, totals, choices, teams, cu_weeks)


def _figures(user, sums: Sums, totals, choices, teams, cu_weeks) -> HistoryFigures:
    return HistoryFigures(
        totals=totals,
        by_artist=_by_named(sums[("artist",)], dict(choices.artists), "created_by_id", "artist"),
        by_team=_by_named(sums[("team",)], {t.pk: t.name for t in teams}, "team_id", "team")
        if user.is_staff
        else [],
        by_month=_by_month(sums[("month",)]),
        cu_weeks=cu_weeks,
        outcome_weeks=_outcome_weeks(sums[("week",)]),
        choices=choices,
    )


def _totals(total: list, queue_p90, train_p90, *, within: float | None) -> reports.Totals:
    return reports.Totals(
        runs=total[RUNS],
        succeeded=total[SUCCEEDED],
        failed=total[FAILED],
        canceled=total[CANCELED],
        not_started=total[NOT_STARTED],
        cu_spent=total[CU_BILLED],
        cu_quoted=total[CU_QUOTED],
        queue_mean=_mean(total, QUEUE_SECONDS, QUEUE_RUNS),
        queue_p90=queue_p90,
        train_mean=_mean(total, TRAIN_SECONDS, TRAIN_RUNS),
        train_p90=train_p90,
        p90_within=within,
    )


def _mean(sums: list, total: int, count: int) -> float | None:
    return sums[total] / sums[count] if sums[count] else None


def _row(sums: list) -> dict:
    """A breakdown row, as reports' breakdowns have it."""
    return {
        "runs": sums[RUNS],
        "succeeded": sums[SUCCEEDED],
        "failed": sums[FAILED],
        "canceled": sums[CANCELED],
        "not_started": sums[NOT_STARTED],
        "cu_spent": sums[CU_BILLED],
        "queue_mean": _mean(sums, QUEUE_SECONDS, QUEUE_RUNS),
        "train_mean": _mean(sums, TRAIN_SECONDS, TRAIN_RUNS),
        "success_rate": reports.success_rate(sums[SUCCEEDED], sums[FAILED]),
    }


def _by_named(rows: dict[tuple, list], names: dict[int, str], id_key: str, name_key: str):
    """A breakdown by artist or by team, each row named: the biggest spenders first."""
    result = [
        {id_key: pk, **_row(sums), name_key: names.get(pk, "?")} for (pk,), sums in rows.items()
    ]
    result.sort(key=lambda row: (-row["cu_spent"], row[name_key]))
    return result


def _by_month(rows: dict[tuple, list]) -> list[dict]:
    result = [{"month": _month_start(month), **_row(sums)} for (month,), sums in rows.items()]
    result.sort(key=lambda row: row["month"], reverse=True)
    return result


def _month_start(month: dt.date) -> dt.datetime:
    """The month as TruncMonth gives it: midnight of its 1st, in the dashboard's time zone."""
    return timezone.make_aware(dt.datetime.combine(month, dt.time.min))


def _outcome_weeks(rows: dict[tuple, list]) -> list[reports.RatePoint]:
    return [
        reports.RatePoint(week, *(sums[i] for i in (SUCCEEDED, FAILED, CANCELED, NOT_STARTED)))
        for (week,), sums in sorted(rows.items())
    ]


def _stacked_weeks(rows: dict[tuple, list], names: dict[int, str] | None):
    """CU billed per week and type, or per week and artist (named), stacked by reports."""
    billed = [
        {"week": week, "key": key if names is None else names.get(key, "?"), "cu": sums[CU_BILLED]}
        for (week, key), sums in rows.items()
        if sums[BILLED]
    ]
    return reports.stacked(billed)


def _artist_weeks(
    scope: Scope, sums: Sums, names: dict[int, str], active: Sums
) -> reports.StackedSeries:
    """CU per week, one series per big spender and one for everyone else, as reports.stacked
    draws it.

    The spenders are ranked from the breakdown by artist, and only theirs are read per week:
    everyone else's CU is the week's total less theirs. `active` holds the active runs' sums,
    by week and artist among others.
    """
    spent: dict[str, float] = {}
    for (artist,), row in sums[("artist",)].items():
        if row[BILLED]:
            name = names.get(artist, "?")
            spent[name] = spent.get(name, 0.0) + row[CU_BILLED]
    ranked = sorted(spent, key=lambda name: (-spent[name], name))
    keys = ranked[: reports.STACK_SERIES]
    top = frozenset(
        artist
        for (artist,), row in sums[("artist",)].items()
        if row[BILLED] and names.get(artist, "?") in keys
    )
    if not top:
        return reports.StackedSeries([], [], {})
    theirs = read(scope.of_artists(top), [("week", "artist")])[0][("week", "artist")]
    _merge(theirs, {key: row for key, row in active[("week", "artist")].items() if key[1] in top})
    weeks = sorted(week for (week,), row in sums[("week",)].items() if row[BILLED])
    index = {week: i for i, week in enumerate(weeks)}
    if len(ranked) > reports.STACK_SERIES:
        keys.append("Others")
    values = {key: [0.0] * len(weeks) for key in keys}
    others = {week: [row[BILLED], row[CU_BILLED]] for (week,), row in sums[("week",)].items()}
    for (week, artist), row in theirs.items():
        others[week][0] -= row[BILLED]
        others[week][1] -= row[CU_BILLED]
        if row[BILLED]:
            values[names.get(artist, "?")][index[week]] += row[CU_BILLED]
    for week, (billed, cu) in others.items():
        if billed and "Others" in values:  # someone else was billed that week
            # A difference of sums: rounded past float noise, so that none reads as none.
            values["Others"][index[week]] += round(cu, 6)
    return reports.StackedSeries(weeks, keys, values)


# --- the filter menus ---------------------------------------------------------------------


def _menus(user, visible: Scope) -> tuple[set[int], set[str]]:
    """The artists and the model types of every run the user may see."""
    artists = _distinct(MONTH_ARTIST, visible, "artist_id")
    types = _distinct(MONTH_TYPE, visible, "model_type")
    if not visible.empty:
        active = visible_runs(user).filter(state__in=ACTIVE_STATES).order_by()
        for artist, model_type in active.values_list("created_by_id", "model_type").distinct():
            artists.add(artist)
            types.add(model_type)
    return artists, types


def _distinct(table: Table, scope: Scope, column: str) -> set:
    if scope.no_final_runs:
        return set()
    where, params = _where(scope, ((None, None),))
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT DISTINCT {qn(column)} FROM {qn(table.name)}{where}", params)
        return {row[0] for row in cursor.fetchall()}


def _choices(user, teams: list[Team], artists: set[int], types: set[str]):
    """What the filter menus offer: only teams, people and types the reader can see."""
    if user.is_staff:
        menu_teams = list(teams)
    elif reports.can_filter_by_team(user):
        menu_teams = [membership_of(user).team]
    else:
        menu_teams = []
    people = (
        get_user_model()
        .objects.filter(pk__in=artists)
        .order_by("first_name", "last_name", "username")
        .values_list("pk", "first_name", "last_name", "username")
    )
    named = [(pk, display.name_of(*names)) for pk, *names in people]
    return reports.FilterChoices(menu_teams, named, sorted(types), list(RunState.choices))


# --- reading the rollups ------------------------------------------------------------------


def read(scope: Scope, groupings: Iterable[Grouping], *, buckets: bool = False) -> tuple:
    """Sum the scope's rollup rows by each grouping; with `buckets`, count the durations too.

    Each grouping is read from the smallest tables that have its columns and the filtered
    ones: the whole months of the date range from month rows (unless it is split by week),
    the whole spans left from span rows, and the days left at the edges from RollupDay.
    Returns (sums, bucket counts).
    """
    groupings = list(dict.fromkeys(groupings))
    sums: Sums = {grouping: {} for grouping in groupings}
    counts: Buckets = ([0] * rollups.DURATION_BUCKETS, [0] * rollups.DURATION_BUCKETS)
    if scope.no_final_runs:
        return sums, counts
    by_family: dict[tuple[Table, Table] | None, list[Grouping]] = {}
    for grouping in groupings:
        needs = {NEEDS[name] for name in grouping if name in NEEDS}
        by_family.setdefault(_family(scope, needs), []).append(grouping)
    batches: dict[tuple[Table, tuple], list[Grouping]] = {}
    for family, batch in by_family.items():
        # Groupings read from the same tables share one pass, by span if any is split by week.
        weekly = any("week" in grouping for grouping in batch)
        for part in _parts(family, scope, weekly=weekly):
            batches.setdefault(part, []).extend(batch)
    bucket_parts = []
    if buckets:
        for table, ranges in _parts(_family(scope, set(), buckets=True), scope):
            if table is DAY:  # its buckets are in its key
                batches.setdefault((table, ranges), []).extend(BUCKET_GROUPINGS)
            else:
                bucket_parts.append((table, ranges))
    for (table, ranges), batch in batches.items():
        where, params = _where(scope, ranges)
        from_ = f"FROM {connection.ops.quote_name(table.name)}{where}"
        for grouping, rows in _grouped(from_, params, batch).items():
            if grouping in sums:
                _merge(sums[grouping], rows)
            else:
                _count_buckets(counts, grouping, rows)
    for table, ranges in bucket_parts:
        _add_buckets(counts, _bucket_columns(table, scope, ranges))
    return sums, counts


def _count_buckets(counts: Buckets, grouping: Grouping, rows: dict[tuple, list]) -> None:
    which = counts[BUCKET_GROUPINGS.index(grouping)]
    for (bucket,), row in rows.items():
        if bucket != rollups.NO_DURATION:
            which[bucket] += row[RUNS]


def _add_buckets(counts: Buckets, more: Buckets) -> None:
    for into, added in zip(counts, more, strict=True):
        for i, count in enumerate(added):
            into[i] += count


# Span and month tables of the same columns, smallest first.
FAMILIES = ((SPAN, MONTH), (SPAN_TYPE, MONTH_TYPE), (SPAN_ARTIST, MONTH_ARTIST))


def _family(scope: Scope, needs: set[str], *, buckets: bool = False) -> tuple | None:
    """The smallest span and month tables with the columns needed (and the bucket counts, if
    asked); None when only RollupDay has them."""
    needs = needs | scope.dims
    for span, month in FAMILIES:
        if needs <= span.dims and (span.bucket_columns or not buckets):
            return span, month
    return None


# A range of rollup rows by their day: (first, last), either open (None).
Range = tuple[dt.date | None, dt.date | None]


def _parts(family: tuple | None, scope: Scope, *, weekly: bool = False) -> list[tuple]:
    """The (table, ranges) pairs whose rows cover the scope's dates once each."""
    start, end = scope.date_from, scope.date_to
    if family is None:
        return [(DAY, ((start, end),))]
    span, month = family
    months, spans, days = _cover(start, end, weekly=weekly)
    parts = [(table, tuple(ranges)) for table, ranges in ((month, months), (span, spans))]
    parts.append((DAY, tuple(days)))
    return [(table, ranges) for table, ranges in parts if ranges]


def _cover(start, end, *, weekly: bool) -> tuple[list[Range], list[Range], list[Range]]:
    """Cover [start, end] (ends may be open: None) with whole months unless `weekly`, then
    whole spans, then days: return the ranges of each."""
    months = None if weekly else _whole(start, end, lambda day: day.day == 1)
    if months is not None:
        spans: list[Range] = []
        days: list[Range] = []
        for first, last in _outside(start, end, months):
            _, more_spans, more_days = _cover(first, last, weekly=True)
            spans += more_spans
            days += more_days
        return [months], spans, days
    whole = _whole(start, end, rollups.is_span_start)
    if whole is None:
        return [], [], [(start, end)]
    return [], [whole], list(_outside(start, end, whole))


def _whole(start, end, is_start) -> Range | None:
    """The first and last day of the periods wholly inside [start, end]; None if there is none.

    `is_start` tells a period's first day. An open end stays open (None).
    """
    one = dt.timedelta(days=1)
    first = start
    while first is not None and not is_start(first):
        first += one
    last = end
    while last is not None and not is_start(last + one):
        last -= one
    if first is not None and last is not None and first > last:
        return None
    return first, last


def _outside(start, end, inner: Range):
    """The parts of [start, end] before and after `inner`, a part of it."""
    one = dt.timedelta(days=1)
    if start is not None and start < inner[0]:
        yield start, inner[0] - one
    if end is not None and end > inner[1]:
        yield inner[1] + one, end


def _measure_sql() -> list[str]:
    qn = connection.ops.quote_name
    outcome, runs = qn("outcome"), qn("runs")

    def when(condition: str, column: str) -> str:
        return f"SUM(CASE WHEN {outcome} {condition} THEN {qn(column)} ELSE 0 END)"

    return [
        f"SUM({runs})",
        *(when(f"= '{state}'", "runs") for state in OUTCOMES),
        f"SUM({qn('billed')})",
        f"SUM({qn('cu_billed')})",
        # A launch Scenario refused was quoted for a training that never happened.
        when(f"<> '{RunState.NOT_STARTED}'", "cu_quoted"),
        *(f"SUM({qn(name)})" for name in rollups.MEASURES[4:]),
    ]


def _where(scope: Scope, ranges: tuple[Range, ...]) -> tuple[str, list]:
    """The scope as a WHERE clause over rollup rows in the ranges given."""
    qn = connection.ops.quote_name
    conditions, params = [], []
    for column, values in (("team_id", scope.teams), ("artist_id", scope.artists)):
        if values is not None:
            conditions.append(f"{qn(column)} IN ({', '.join(['%s'] * len(values))})")
            params += sorted(values)
    for column, value in (
        ("outcome", scope.outcome),
        ("artist_id", scope.artist),
        ("model_type", scope.model_type),
    ):
        if value:
            conditions.append(f"{qn(column)} = %s")
            params.append(value)
    alternatives = []
    for first, last in ranges:
        parts = []
        for sql, day in ((f"{qn('day')} >= %s", first), (f"{qn('day')} <= %s", last)):
            if day is not None:
                parts.append(sql)
                params.append(connection.ops.adapt_datefield_value(day))
        alternatives.append(" AND ".join(parts) or "1 = 1")
    if alternatives != ["1 = 1"]:
        conditions.append("(" + " OR ".join(f"({a})" for a in alternatives) + ")")
    return (" WHERE " + " AND ".join(conditions) if conditions else ""), params


def _grouped(from_: str, params: list, groupings: list[Grouping]) -> Sums:
    """Sum the rows `from_` selects by each grouping: one pass with GROUPING SETS on Postgres,
    one query per grouping elsewhere."""
    qn = connection.ops.quote_name
    measures = ", ".join(_measure_sql())
    result: Sums = {grouping: {} for grouping in groupings}
    with connection.cursor() as cursor:
        if ONE_PASS and connection.vendor == "postgresql" and len(groupings) > 1:
            names = list(dict.fromkeys(name for grouping in groupings for name in grouping))
            columns = ", ".join(qn(COLUMNS[name]) for name in names)
            sets = ", ".join(
                "(" + ", ".join(qn(COLUMNS[name]) for name in grouping) + ")"
                for grouping in groupings
            )
            cursor.execute(
                f"SELECT {columns}, GROUPING({columns}), {measures} {from_} "
                f"GROUP BY GROUPING SETS ({sets})",
                params,
            )
            width = len(names)
            picks = {
                _mask(names, grouping): (result[grouping], [names.index(n) for n in grouping])
                for grouping in groupings
            }
            for row in cursor.fetchall():
                rows, pick = picks[row[width]]
                _keep(rows, tuple([row[i] for i in pick]), row[width + 1 :])
            return result
        for grouping in groupings:
            columns = [qn(COLUMNS[name]) for name in grouping]
            group = f" GROUP BY {', '.join(columns)}" if columns else ""
            cursor.execute(f"SELECT {', '.join([*columns, measures])} {from_}{group}", params)
            width = len(columns)
            dates = [i for i, name in enumerate(grouping) if name in DATE_COLUMNS]
            for row in cursor.fetchall():
                key = row[:width]
                if dates:  # SQLite gives dates as text
                    key = tuple(_date(v) if i in dates else v for i, v in enumerate(key))
                _keep(result[grouping], key, row[width:])
    return result


def _mask(names: list[str], grouping: Grouping) -> int:
    """GROUPING()'s answer for a grouping: a 1 bit, first column highest, per column left out."""
    mask = 0
    for name in names:
        mask = mask * 2 + (name not in grouping)
    return mask


def _keep(rows: dict, key: tuple, values) -> None:
    if not values[RUNS]:
        return  # no row matched: an aggregate without GROUP BY still answers one
    sums = rows.get(key)
    if sums is None:
        rows[key] = list(values)
    else:
        for i, value in enumerate(values):
            sums[i] += value


def _date(value) -> dt.date:
    return dt.date.fromisoformat(value) if isinstance(value, str) else value


def _bucket_columns(table: Table, scope: Scope, ranges: tuple) -> Buckets:
    where, params = _where(scope, ranges)
    qn = connection.ops.quote_name
    columns = [*rollups.QUEUE_COLUMNS, *rollups.TRAIN_COLUMNS]
    select = ", ".join(f"SUM({qn(column)})" for column in columns)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {select} FROM {qn(table.name)}{where}", params)
        row = [value or 0 for value in cursor.fetchone()]
    return row[: rollups.DURATION_BUCKETS], row[rollups.DURATION_BUCKETS :]


def _zero() -> list:
    return [0, 0, 0, 0, 0, 0, 0.0, 0.0, 0, 0.0, 0, 0.0]


def _add(rows: dict, key: tuple, values: list) -> None:
    sums = rows.get(key)
    if sums is None:
        rows[key] = list(values)
        return
    for i, value in enumerate(values):
        sums[i] += value


def _merge(into: dict, rows: dict) -> None:
    for key, values in rows.items():
        _add(into, key, values)


# --- active runs --------------------------------------------------------------------------


def read_active(user, filters, scope: Scope, groupings: Iterable[Grouping]) -> tuple:
    """Sum the runs of the scope not final yet (so in no rollup) as `read` sums rollup rows.

    Returns (sums, bucket counts).
    """
    groupings = list(dict.fromkeys(groupings))
    counts: Buckets = ([0] * rollups.DURATION_BUCKETS, [0] * rollups.DURATION_BUCKETS)
    if scope.no_active_runs:
        return {grouping: {} for grouping in groupings}, counts
    runs = reports.apply_filters(visible_runs(user).filter(state__in=ACTIVE_STATES), filters)
    sums = sum_runs(runs, [*groupings, *VALUE_GROUPINGS])
    for which, grouping in zip(counts, VALUE_GROUPINGS, strict=True):
        for (seconds,), row in sums.pop(grouping).items():
            if seconds is not None:
                which[rollups.bucket_of(seconds)] += row[RUNS]
    return sums, counts


def sum_runs(runs: QuerySet[TrainingRun], groupings: Iterable[Grouping]) -> Sums:
    """Sum runs themselves by each grouping, as if each were a rollup row of its own."""
    sql, params = _as_rollup_rows(runs).query.sql_with_params()
    from_ = f"FROM ({sql}) {connection.ops.quote_name('runs')}"
    return _grouped(from_, list(params), list(dict.fromkeys(groupings)))


def _as_rollup_rows(runs: QuerySet[TrainingRun]) -> QuerySet:
    """The runs as one-run rollup rows, with the columns the rollup tables have."""

    def count(field_name: str):
        return Case(When(**{f"{field_name}__isnull": True}, then=Value(0)), default=Value(1))

    return runs.order_by().values(
        "team_id",
        "model_type",
        artist_id=F("created_by_id"),
        outcome=F("state"),
        week=Cast(TruncWeek("created_at"), DateField()),
        month=Cast(TruncMonth("created_at"), DateField()),
        runs=Value(1),
        billed=count("cu_cost"),
        cu_billed=Coalesce("cu_cost", Value(0.0)),
        cu_quoted=Coalesce("quote_cu_cost", Value(0.0)),
        queue_runs=count("queue_duration"),
        queue_seconds=Coalesce("queue_duration", Value(0.0)),
        train_runs=count("train_duration"),
        train_seconds=Coalesce("train_duration", Value(0.0)),
        queue_value=F("queue_duration"),
        train_value=F("train_duration"),
    )
