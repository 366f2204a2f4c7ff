"""History queries: filters from the URL, sorting, seek pagination, totals, breakdowns, series.

Everything here works on a queryset the caller already narrowed with access.visible_runs, so a
report can never show a run its reader may not see. Aggregates are computed by the database;
only page-sized or chart-sized results reach Python.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import itertools
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import (
    Aggregate,
    Avg,
    CharField,
    Count,
    F,
    FloatField,
    Func,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce, TruncMonth, TruncWeek
from django.utils import timezone

from training import display, request_params
from training.access import membership_of
from training.models import (
    EpochSample,
    Role,
    RunState,
    ScenarioModel,
    Team,
    TrainingRun,
    outcome_words,
)

PAGE_SIZE = 50
SCATTER_LIMIT = 400
# Beyond this many artists or types a weekly stack becomes unreadable: the rest are "Others".
STACK_SERIES = 7


# --- expressions --------------------------------------------------------------------------


class SecondsBetween(Func):
    """Seconds from one datetime column to a later one; null when either is null."""

    output_field = FloatField()

    def __init__(self, later: str, earlier: str, **extra):
        super().__init__(F(later), F(earlier), **extra)

    def as_sql(self, compiler, connection, **extra):
        # SQLite keeps datetimes as text; julianday() turns them into days.
        (lhs, rhs), params = self._compile_both(compiler)
        return f"((julianday({lhs}) - julianday({rhs})) * 86400.0)", params

    def as_postgresql(self, compiler, connection, **extra):
        (lhs, rhs), params = self._compile_both(compiler)
        return f"EXTRACT(EPOCH FROM ({lhs} - {rhs}))::double precision", params

    def _compile_both(self, compiler):
        sqls, params = [], []
        for expression in self.get_source_expressions():
            sql, expression_params = compiler.compile(expression)
            sqls.append(sql)
            params.extend(expression_params)
        return sqls, params


def wall_seconds() -> SecondsBetween:
    """Seconds from launch (created_at) to the end of the run (finished_at); null while active."""
    return SecondsBetween("finished_at", "created_at")


def forecast_miss() -> SecondsBetween:
    """Seconds the run ended after its forecast's likely time (negative: before it)."""
    return SecondsBetween("finished_at", "forecast_finish_p50")


class PercentileCont(Aggregate):
    """Postgres' continuous percentile: interpolates between the two nearest values."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression, fraction: float, **extra):
        super().__init__(expression, fraction=float(fraction), **extra)


def epochs_count():
    """Epochs a run reached: its last epoch's index + 1, or 0 before any sample.

    A correlated subquery (no join multiplies the rows) that reads one entry of the
    (run, epoch_index, prompt_index) unique index per run, so even sorting every run by it
    stays affordable.
    """
    last = (
        EpochSample.objects.filter(run=OuterRef("pk"))
        .order_by("-epoch_index")
        .values("epoch_index")[:1]
    )
    return Coalesce(Subquery(last, output_field=IntegerField()) + 1, Value(0))


# --- filters ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sort:
    key: str
    label: str
    expression: object
    kind: str  # "text", "number" or "datetime": how a cursor value is read back
    nullable: bool = True
    numeric: bool = False


def _sorts() -> dict[str, Sort]:
    return {
        s.key: s
        for s in [
            Sort("model", "Model", F("model__name"), "text", nullable=False),
            Sort("type", "Type", F("model_type"), "text", nullable=False),
            Sort(
                "artist", "Artist", display.person_expression("created_by"), "text", nullable=False
            ),
            Sort("team", "Team", F("team__name"), "text", nullable=False),
            Sort("launched", "Launched", F("created_at"), "datetime", nullable=False),
            Sort("queue", "Queue", F("queue_duration"), "number", numeric=True),
            Sort("train", "Train", F("train_duration"), "number", numeric=True),
            Sort("wall", "Wall time", wall_seconds(), "number", numeric=True),
            Sort("state", "State", F("state"), "text", nullable=False),
            Sort("quoted", "CU quoted", F("quote_cu_cost"), "number", numeric=True),
            Sort("billed", "CU billed", F("cu_cost"), "number", numeric=True),
            Sort("discount", "Discount", F("cu_discount"), "number", numeric=True),
            Sort("epochs", "Epochs", epochs_count(), "number", nullable=False, numeric=True),
            Sort("forecast", "vs forecast", forecast_miss(), "number", numeric=True),
        ]
    }


SORTS = _sorts()
DEFAULT_SORT = "-launched"
FILTER_NAMES = ("q", "team", "artist", "type", "state", "from", "to")


@dataclass(frozen=True)
class HistoryFilters:
    """What the reader asked for in the URL, validated. Unknown or bad values are dropped."""

    q: str = ""
    team: int | None = None
    artist: int | None = None
    type: str = ""
    state: str = ""
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    sort: str = DEFAULT_SORT
    stack: str = "artist"  # how the weekly CU chart is split: "artist" or "type"
    errors: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def sort_key(self) -> str:
        return self.sort.lstrip("-")

    @property
    def descending(self) -> bool:
        return self.sort.startswith("-")

    @property
    def active(self) -> bool:
        return any(self.params().get(name) for name in FILTER_NAMES)

    def params(self, **changes) -> dict[str, str]:
        """The URL parameters for these filters, with changes; empty values are left out."""
        values = {
            "q": self.q,
            "team": self.team or "",
            "artist": self.artist or "",
            "type": self.type,
            "state": self.state,
            "from": self.date_from.isoformat() if self.date_from else "",
            "to": self.date_to.isoformat() if self.date_to else "",
            "sort": "" if self.sort == DEFAULT_SORT else self.sort,
            "stack": "" if self.stack == "artist" else self.stack,
        }
        values.update(changes)
        return {k: str(v) for k, v in values.items() if v not in ("", None)}

    def query(self, **changes) -> str:
        return urlencode(self.params(**changes))


def parse_filters(params: Mapping[str, str], user) -> HistoryFilters:
    """Read filters from query parameters; say which ones were not understood.

    A bad filter value is dropped and reported in `errors` (the page shows it by the filters);
    the view answers such a page with a 400.
    """
    errors: dict[str, str] = {}

    def read(name: str, parse, *args, **kwargs):
        try:
            return parse(params, name, *args, **kwargs)
        except request_params.BadParameter as error:
            errors[name] = error.problem
            return None

    values: dict[str, object] = {
        "q": read("q", request_params.text) or "",
        "team": read("team", request_params.identifier),
        "artist": read("artist", request_params.identifier),
        "type": read("type", request_params.text, max_length=60) or "",
        "state": read("state", request_params.choice, RunState.values) or "",
        "date_from": read("from", request_params.day),
        "date_to": read("to", request_params.day),
    }
    if values["team"] and not can_filter_by_team(user):
        values["team"] = None
    sort = read("sort", request_params.text, max_length=40) or DEFAULT_SORT
    values["sort"] = sort if sort.lstrip("-") in SORTS else DEFAULT_SORT
    values["stack"] = "type" if params.get("stack") == "type" else "artist"
    return HistoryFilters(**values, errors=errors)


def can_filter_by_team(user) -> bool:
    membership = membership_of(user)
    return user.is_staff or (membership is not None and membership.role == Role.LEAD)


def _day_start(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


def apply_filters(runs: QuerySet[TrainingRun], filters: HistoryFilters) -> QuerySet[TrainingRun]:
    if filters.q:
        runs = runs.filter(model__name__icontains=filters.q)
    if filters.team:
        runs = runs.filter(team_id=filters.team)
    if filters.artist:
        runs = runs.filter(created_by_id=filters.artist)
    if filters.type:
        runs = runs.filter(model_type=filters.type)
    if filters.state:
        runs = runs.filter(state=filters.state)
    if filters.date_from:
        runs = runs.filter(created_at__gte=_day_start(filters.date_from))
    if filters.date_to:
        # Inclusive: the whole of the last day counts.
        runs = runs.filter(created_at__lt=_day_start(filters.date_to + dt.timedelta(days=1)))
    return runs


@dataclass(frozen=True)
class FilterChoices:
    teams: list[Team]
    artists: list[tuple[int, str]]
    types: list[str]
    states: list[tuple[str, str]]


# --- rows and seek pagination -------------------------------------------------------------


def history_rows(runs: QuerySet[TrainingRun]) -> QuerySet[TrainingRun]:
    """Annotate runs with the figures the history shows, related names joined, in one query."""
    return runs.select_related("model", "team").annotate(
        artist=display.person_expression("created_by"),
        wall_seconds=wall_seconds(),
        epochs=epochs_count(),
        forecast_miss=forecast_miss(),
    )


# The table reads only these; leaving out the JSON columns keeps the rows a sort handles small.
TABLE_FIELDS = (
    "model_type", "state", "created_at", "finished_at", "queue_duration", "train_duration",
    "quote_cu_cost", "cu_cost", "cu_discount", "cost_unknown", "model__name", "model__remote_id",
    "team__name",
)  # fmt: skip


def table_rows(runs: QuerySet[TrainingRun]) -> QuerySet[TrainingRun]:
    return history_rows(runs).only(*TABLE_FIELDS)


def sorted_runs(runs: QuerySet[TrainingRun], filters: HistoryFilters, *, reverse=False):
    """Order by the chosen column, nulls last, then by id so the order is total."""
    sort = SORTS[filters.sort_key]
    descending = filters.descending != reverse
    # Reading a page backwards walks the same order in reverse, nulls included. A column that
    # is never null gets no NULLS clause, so an index in the default order can serve the sort.
    nulls = {}
    if sort.nullable:
        nulls = {"nulls_first": True} if reverse else {"nulls_last": True}
    value = F("sort_value")
    ordering = value.desc(**nulls) if descending else value.asc(**nulls)
    tie = F("pk").desc() if descending else F("pk").asc()
    return runs.annotate(sort_value=sort.expression).order_by(ordering, tie)


# A cursor holds a sort value: a model name or an artist's name is the longest.
MAX_CURSOR_CHARS = 2000


def encode_cursor(sort_key: str, value, pk: int) -> str:
    if isinstance(value, dt.datetime):
        value = value.isoformat()
    raw = json.dumps([sort_key, value, pk], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str, sort_key: str, name: str = "after") -> tuple[object, int] | None:
    """The (value, id) a cursor points at; None when it is for another sort.

    A cursor the server could not have made (malformed, or holding a value out of range)
    is a BadParameter named `name`.
    """
    request_params.clean_text(token, name, max_length=MAX_CURSOR_CHARS)
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        key, value, pk = json.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise request_params.BadParameter(name, "is not a cursor of this list.") from None
    if key != sort_key:
        return None
    if not isinstance(pk, int) or isinstance(pk, bool):
        raise request_params.BadParameter(name, "is not a cursor of this list.")
    request_params.parse_id(str(pk), name)
    return _cursor_value(value, SORTS[sort_key].kind, name), pk


def _cursor_value(value, kind: str, name: str):
    """A cursor's sort value, checked as strictly as a parameter of its kind."""
    if value is None:
        return None
    try:
        if kind == "datetime":
            moment = dt.datetime.fromisoformat(request_params.clean_text(value, name))
            return request_params.check_moment(moment, name)
        if kind == "number":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError
            number = float(value)
            if not math.isfinite(number):
                raise ValueError
            return number
        return request_params.clean_text(value, name, max_length=MAX_CURSOR_CHARS)
    except (TypeError, ValueError, OverflowError):
        raise request_params.BadParameter(name, "is not a cursor of this list.") from None


def _seek(value, pk: int, *, forward_is_greater: bool, nullable: bool, after: bool) -> Q:
    """Rows strictly after (or before) the row (value, pk) in an order that puts nulls last."""
    gt, lt = ("gt", "lt") if forward_is_greater else ("lt", "gt")
    op, op_eq, id_op = (gt, f"{gt}e", gt) if after else (lt, f"{lt}e", lt)
    if value is None:
        same_null = Q(sort_value__isnull=True, **{f"pk__{id_op}": pk})
        return same_null if after else Q(sort_value__isnull=False) | same_null
    # "v >= x and (v > x or id > pk)" lets an index on the column serve the range.
    beyond = Q(**{f"sort_value__{op_eq}": value}) & (
        Q(**{f"sort_value__{op}": value}) | Q(**{f"pk__{id_op}": pk})
    )
    if after and nullable:
        return beyond | Q(sort_value__isnull=True)
    return beyond


@dataclass
class Page:
    rows: list[TrainingRun]
    has_next: bool
    has_previous: bool
    next_cursor: str = ""
    previous_cursor: str = ""


def page_of(
    runs: QuerySet[TrainingRun],
    filters: HistoryFilters,
    *,
    after: str = "",
    before: str = "",
    last: bool = False,
    size: int = PAGE_SIZE,
) -> Page:
    """One page by seeking from a cursor: as fast on page 2,000 as on page 1."""
    sort = SORTS[filters.sort_key]
    asc = not filters.descending
    start = decode_cursor(after, sort.key, "after") if after else None
    end = decode_cursor(before, sort.key, "before") if before and start is None else None
    backwards = end is not None or (last and start is None)
    ordered = sorted_runs(runs, filters, reverse=backwards)
    if start is not None:
        ordered = ordered.filter(
            _seek(*start, forward_is_greater=asc, nullable=sort.nullable, after=True)
        )
    elif end is not None:
        ordered = ordered.filter(
            _seek(*end, forward_is_greater=asc, nullable=sort.nullable, after=False)
        )
    rows = list(ordered[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    if backwards:
        rows.reverse()
        page = Page(rows, has_next=end is not None, has_previous=more)
    else:
        page = Page(rows, has_next=more, has_previous=start is not None)
    if rows:
        first, final = rows[0], rows[-1]
        page.previous_cursor = encode_cursor(sort.key, first.sort_value, first.pk)
        page.next_cursor = encode_cursor(sort.key, final.sort_value, final.pk)
    return page


# --- totals and breakdowns ----------------------------------------------------------------


def _outcome_counts() -> dict[str, Count]:
    return {
        "succeeded": Count("pk", filter=Q(state=RunState.SUCCEEDED)),
        "failed": Count("pk", filter=Q(state=RunState.FAILED)),
        "canceled": Count("pk", filter=Q(state=RunState.CANCELED)),
        "not_started": Count("pk", filter=Q(state=RunState.NOT_STARTED)),
    }


def success_rate(succeeded: int, failed: int) -> float | None:
    """Succeeded ÷ (succeeded + failed), or None when no run reached an outcome."""
    # Only runs that reached an outcome of their own count: canceled runs were somebody's
    # decision, not a failed training, a launch Scenario refused (not started) never
    # trained, and active runs have no outcome yet.
    outcomes = succeeded + failed
    return succeeded / outcomes if outcomes else None


def percentiles(runs: QuerySet, fields: list[str], fraction: float, counts: dict) -> dict:
    """The continuous percentile of each field over non-null values, as percentile_cont has it.

    Postgres computes it in one aggregate. Elsewhere the same interpolation is done from the
    two values around the rank, fetched by an ordered OFFSET per field; `counts` holds the
    number of non-null values of each field, which the caller already aggregated.
    """
    runs = runs.order_by()
    if connection.vendor == "postgresql":
        return runs.aggregate(**{name: PercentileCont(name, fraction) for name in fields})
    result: dict[str, float | None] = {}
    for name in fields:
        n = counts[name]
        if not n:
            result[name] = None
            continue
        rank = fraction * (n - 1)
        low = math.floor(rank)
        values = list(
            runs.filter(**{f"{name}__isnull": False})
            .order_by(name)
            .values_list(name, flat=True)[low : low + 2]
        )
        upper = values[1] if len(values) > 1 else values[0]
        result[name] = values[0] + (upper - values[0]) * (rank - low)
    return result


@dataclass(frozen=True)
class Totals:
    runs: int
    succeeded: int
    failed: int
    canceled: int
    not_started: int
    cu_spent: float
    cu_quoted: float
    queue_mean: float | None
    queue_p90: float | None
    train_mean: float | None
    train_p90: float | None
    # None: the p90s are exact. Else they come from duration buckets, within this share.
    p90_within: float | None = None

    @property
    def success_rate(self) -> float | None:
        return success_rate(self.succeeded, self.failed)


def totals(runs: QuerySet[TrainingRun]) -> Totals:
    """Totals for the filtered set, in two queries (three on SQLite) whatever its size."""
    row = runs.order_by().aggregate(
        runs=Count("pk"),
        **_outcome_counts(),
        cu_spent=Coalesce(Sum("cu_cost"), 0.0),
        # A launch Scenario refused was quoted for a training that never happened.
        cu_quoted=Coalesce(Sum("quote_cu_cost", filter=~Q(state=RunState.NOT_STARTED)), 0.0),
        queue_mean=Avg("queue_duration"),
        train_mean=Avg("train_duration"),
        queue_n=Count("queue_duration"),
        train_n=Count("train_duration"),
    )
    counts = {"queue_duration": row.pop("queue_n"), "train_duration": row.pop("train_n")}
    p90 = percentiles(runs, list(counts), 0.9, counts)
    return Totals(**row, queue_p90=p90["queue_duration"], train_p90=p90["train_duration"])


def _breakdown_aggregates() -> dict:
    return {
        "runs": Count("pk"),
        **_outcome_counts(),
        "cu_spent": Coalesce(Sum("cu_cost"), 0.0),
        "queue_mean": Avg("queue_duration"),
        "train_mean": Avg("train_duration"),
    }


def _with_rate(rows) -> list[dict]:
    rows = list(rows)
    for row in rows:
        row["success_rate"] = success_rate(row["succeeded"], row["failed"])
    return rows


def names_of(user_ids) -> dict[int, str]:
    """Name people as display.person does (full name, else username), in one query.

    Grouping by the id and naming afterwards keeps the user join and the name expression
    out of aggregates over many runs.
    """
    people = get_user_model().objects.filter(pk__in=set(user_ids))
    return {p.pk: display.person(p) for p in people}


def by_artist(runs: QuerySet[TrainingRun]) -> list[dict]:
    """One row per artist: runs, outcomes, CU spent and mean durations; biggest spender first."""
    rows = list(runs.order_by().values("created_by_id").annotate(**_breakdown_aggregates()))
    names = names_of(row["created_by_id"] for row in rows)
    for row in rows:
        row["artist"] = names.get(row["created_by_id"], "?")
    rows.sort(key=lambda row: (-row["cu_spent"], row["artist"]))
    return _with_rate(rows)


def by_team(runs: QuerySet[TrainingRun]) -> list[dict]:
    """One row per team, biggest spender first (staff see every team)."""
    rows = list(runs.order_by().values("team_id", "team__name").annotate(**_breakdown_aggregates()))
    for row in rows:
        row["team"] = row.pop("team__name") or "?"
    rows.sort(key=lambda row: (-row["cu_spent"], row["team"]))
    return _with_rate(rows)


def by_month(runs: QuerySet[TrainingRun]) -> list[dict]:
    """One row per calendar month of launch, newest first."""
    rows = (
        runs.order_by()
        .annotate(month=TruncMonth("created_at"))
        .values("month")
        .annotate(**_breakdown_aggregates())
        .order_by("-month")
    )
    return _with_rate(rows)


# --- chart series -------------------------------------------------------------------------


@dataclass(frozen=True)
class StackedSeries:
    weeks: list[dt.date]
    keys: list[str]
    values: dict[str, list[float]]  # key -> one value per week


@dataclass(frozen=True)
class RatePoint:
    week: dt.date
    succeeded: int
    failed: int
    canceled: int
    not_started: int = 0

    @property
    def rate(self) -> float | None:
        return success_rate(self.succeeded, self.failed)


def weekly(runs: QuerySet[TrainingRun], stack: str) -> tuple[StackedSeries, list[RatePoint]]:
    """Both weekly charts from one grouped query: CU by artist or type, and outcomes."""
    key = "created_by_id" if stack == "artist" else "model_type"
    rows = list(
        runs.order_by()
        .annotate(week=TruncWeek("created_at"))
        .values("week", key)
        .annotate(cu=Sum("cu_cost"), **_outcome_counts())
        .order_by("week")
    )
    names = names_of(row[key] for row in rows) if stack == "artist" else {}
    billed = [
        {"week": row["week"], "key": names.get(row[key], row[key]), "cu": row["cu"]}
        for row in rows
        if row["cu"] is not None
    ]
    outcomes: dict[dt.date, list[int]] = {}
    for row in rows:
        counts = outcomes.setdefault(_as_date(row["week"]), [0, 0, 0, 0])
        for i, state in enumerate(("succeeded", "failed", "canceled", "not_started")):
            counts[i] += row[state]
    points = [RatePoint(week, *counts) for week, counts in sorted(outcomes.items())]
    return stacked(billed), points


def stacked(rows: list[dict]) -> StackedSeries:
    """Stack billed rows ({week, key, cu}): the biggest keys first, the rest as Others."""
    weeks = sorted({_as_date(r["week"]) for r in rows})
    by_key: dict[str, float] = {}
    for r in rows:
        by_key[r["key"]] = by_key.get(r["key"], 0.0) + r["cu"]
    ranked = sorted(by_key, key=lambda k: (-by_key[k], k))
    keys = ranked[:STACK_SERIES]
    if len(ranked) > STACK_SERIES:
        keys.append("Others")
    index = {week: i for i, week in enumerate(weeks)}
    values = {key: [0.0] * len(weeks) for key in keys}
    for r in rows:
        key = r["key"] if r["key"] in values else "Others"
        values[key][index[_as_date(r["week"])]] += r["cu"]
    return StackedSeries(weeks, keys, values)


def _as_date(value) -> dt.date:
    if isinstance(value, dt.datetime):
        return timezone.localtime(value).date() if timezone.is_aware(value) else value.date()
    return value


def duration_points(runs: QuerySet[TrainingRun], limit: int = SCATTER_LIMIT) -> list[dict]:
    """Queue and train seconds of the most recent runs that have both, for a scatter plot."""
    return list(
        runs.filter(queue_duration__isnull=False, train_duration__isnull=False)
        .order_by("-created_at", "-pk")
        .values("pk", "queue_duration", "train_duration", "state", "model__name")[:limit]
    )


# --- CSV ----------------------------------------------------------------------------------

CSV_HEADER = [
    "id",
    "model",
    "model_id",
    "type",
    "artist",
    "team",
    "launched_at",
    "queue_seconds",
    "train_seconds",
    "wall_seconds",
    "state",
    "cu_quoted",
    "cu_billed",
    "cu_discount",
    "epochs",
    "finished_at",
    "forecast_finish_p50",
    "forecast_finish_p90",
    "forecast_miss_seconds",
    "outcome",
]


# Rows per database fetch and per chunk of text handed to the response.
CSV_CHUNK = 5000
# The run's own columns the export reads; names and epochs are looked up beside them.
CSV_FIELDS = (
    "pk", "model_id", "model_type", "created_by_id", "team_id", "created_iso", "queue_duration",
    "train_duration", "wall", "state", "quote_cu_cost", "cu_cost", "cu_discount",
    "finished_iso", "p50_iso", "p90_iso", "miss", "error_message",
)  # fmt: skip


class IsoMoment(Func):
    """A moment as text, as datetime.isoformat() writes it in UTC less its "+00:00" (and with
    ".000000" where isoformat writes no fraction): the database writes it faster than Python
    turns a datetime into text."""

    output_field = CharField()

    def as_sql(self, compiler, connection, **extra):
        # SQLite keeps UTC moments as text: "2025-01-06 10:00:00[.123000]".
        sql, params = compiler.compile(self.get_source_expressions()[0])
        return f"REPLACE({sql}, ' ', 'T')", params

    def as_postgresql(self, compiler, connection, **extra):
        sql, params = compiler.compile(self.get_source_expressions()[0])
        return f"TO_CHAR({sql} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US')", params


def _csv_query(runs: QuerySet[TrainingRun], filters: HistoryFilters) -> QuerySet:
    return (
        sorted_runs(runs, filters)
        .annotate(
            created_iso=IsoMoment("created_at"),
            finished_iso=IsoMoment("finished_at"),
            p50_iso=IsoMoment("forecast_finish_p50"),
            p90_iso=IsoMoment("forecast_finish_p90"),
            wall=wall_seconds(),
            miss=forecast_miss(),
        )
        .values_list(*CSV_FIELDS)
    )


def csv_chunks(runs: QuerySet[TrainingRun], filters: HistoryFilters) -> Iterator[str]:
    """Yield the CSV of every filtered run in the chosen order: the header, then text chunks
    of CSV_CHUNK rows, as Python's csv module writes them (QUOTE_MINIMAL, CRLF).

    The runs are read without joins (in the default order, straight from an index), their
    models, people and teams named from lookups made once per name, and their epochs counted
    per chunk from the samples' index.
    """
    yield ",".join(CSV_HEADER) + "\r\n"
    names = _CsvNames()
    for chunk in _fetched(_csv_query(runs, filters)):
        names.learn(chunk)
        yield _csv_lines(chunk, names)


def _fetched(rows: QuerySet) -> Iterator[list[tuple]]:
    """The rows in chunks of CSV_CHUNK. On Postgres they are read in binary from a server-side
    cursor, which psycopg turns into Python values about twice as fast as text."""
    settings = connection.settings_dict
    if connection.vendor != "postgresql" or settings.get("DISABLE_SERVER_SIDE_CURSORS"):
        iterator = rows.iterator(chunk_size=CSV_CHUNK)
        while chunk := list(itertools.islice(iterator, CSV_CHUNK)):
            yield chunk
        return
    sql, params = rows.query.sql_with_params()
    with _binary_rows_cursor() as cursor:
        cursor.execute(sql, params)
        while chunk := cursor.fetchmany(CSV_CHUNK):
            yield chunk


def _binary_rows_cursor():
    """A server-side cursor as Django makes one (client-side parameters, logged like any
    query), whose rows come back in binary."""
    from django.db.backends.postgresql.base import ServerSideCursor  # Postgres only

    class BinaryRows(ServerSideCursor):
        def execute(self, query, params=None, **kwargs):
            return super().execute(query, params, binary=True)

    connection.ensure_connection()
    raw = connection.connection
    name = f"history_csv_{next(_cursor_names)}"
    cursor = BinaryRows(raw, name=name, scrollable=False, withhold=raw.autocommit)
    if connection.queries_logged:
        return connection.make_debug_cursor(cursor)
    return connection.make_cursor(cursor)


_cursor_names = itertools.count(1)


class _CsvNames:
    """The cells a CSV row shows for ids, each looked up and written once."""

    def __init__(self):
        self.models: dict[int, str] = {}  # the model's name and remote id: two cells
        self.people: dict[int, str] = {}
        self.teams: dict[int, str] = {}
        self.types: dict[str, str] = {}
        self.outcomes: dict[tuple[str, str], str] = {}

    def type(self, model_type: str) -> str:
        cell = self.types[model_type] = _csv_text(model_type)
        return cell

    def outcome(self, state: str, reason: str) -> str:
        cell = self.outcomes.get((state, reason))
        if cell is None:
            cell = self.outcomes[state, reason] = _csv_text(outcome_words(state, reason))
        return cell

    def learn(self, chunk: list[tuple]) -> None:
        """Look up the names of the chunk's models, people and teams not seen yet."""
        wanted = {row[1] for row in chunk} - self.models.keys()
        for pk, name, remote_id in ScenarioModel.objects.filter(pk__in=wanted).values_list(
            "pk", "name", "remote_id"
        ):
            self.models[pk] = f"{_csv_text(name)},{_csv_text(remote_id)}"
        wanted = {row[3] for row in chunk} - self.people.keys()
        for pk, *parts in (
            get_user_model()
            .objects.filter(pk__in=wanted)
            .values_list("pk", "first_name", "last_name", "username")
        ):
            self.people[pk] = _csv_text(display.name_of(*parts))
        wanted = {row[4] for row in chunk} - self.teams.keys()
        for pk, name in Team.objects.filter(pk__in=wanted).values_list("pk", "name"):
            self.teams[pk] = _csv_text(name)


def _last_epochs(run_ids) -> dict[int, int]:
    """The last epoch index of each run that has samples, read from the samples' index."""
    if not run_ids:
        return {}
    qn = connection.ops.quote_name
    table, run, epoch = qn(EpochSample._meta.db_table), qn("run_id"), qn("epoch_index")
    low, high = min(run_ids), max(run_ids)
    if high - low < 4 * len(run_ids):
        # Ids close together (the default order follows them): one range of the index.
        where, params = f"{run} BETWEEN %s AND %s", [low, high]
    elif connection.vendor == "postgresql":
        where, params = f"{run} = ANY(%s)", [list(run_ids)]  # one array, not 5,000 values
    else:
        where, params = f"{run} IN ({', '.join(['%s'] * len(run_ids))})", list(run_ids)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {run}, MAX({epoch}) FROM {table} WHERE {where} GROUP BY {run}", params
        )
        return dict(cursor.fetchall())


def _csv_lines(chunk: list[tuple], names: _CsvNames) -> str:
    """The CSV lines of a chunk of rows, built a column at a time: each value is turned into
    text by an inline expression, and the cells are joined by str.join."""
    (ids, models, types, people, teams, created, queue, train, wall, states, quoted, billed,
     discounts, finished, p50, p90, miss, reasons) = zip(*chunk, strict=True)  # fmt: skip
    epochs = _last_epochs(ids)
    columns = [
        map(str, ids),
        [names.models.get(model, ",") for model in models],  # two cells: name and remote id
        [names.types.get(kind) or names.type(kind) for kind in types],
        [names.people.get(person, "") for person in people],
        [names.teams.get(team, "") for team in teams],
        _csv_moments(created),
        _csv_numbers(queue),
        _csv_numbers(train),
        _csv_numbers(wall),
        states,
        _csv_numbers(quoted),
        _csv_numbers(billed),
        _csv_numbers(discounts),
        [str(epochs.get(pk, -1) + 1) for pk in ids],
        _csv_moments(finished),
        _csv_moments(p50),
        _csv_moments(p90),
        _csv_numbers(miss),
        [names.outcome(state, reason) for state, reason in zip(states, reasons, strict=True)],
    ]
    return "\r\n".join(map(",".join, zip(*columns, strict=True))) + "\r\n"


def _csv_numbers(values) -> list[str]:
    """Numbers as the export writes them: three decimals at most, no trailing zeros."""
    return ["" if v is None else f"{v:.3f}".rstrip("0").rstrip(".") for v in values]


def _csv_moments(values) -> list[str]:
    """IsoMoment's texts as datetime.isoformat() writes them."""
    return [
        "" if v is None else (v[:-7] if v.endswith(".000000") else v) + "+00:00" for v in values
    ]


# A spreadsheet runs a cell that starts with one of these as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# What makes the csv module quote a field (QUOTE_MINIMAL, the excel dialect).
CSV_QUOTED = re.compile(r'[,"\r\n]')


def _csv_text(value: str) -> str:
    """A text cell: a would-be formula gets a quote first, and the cell is quoted as the csv
    module quotes it."""
    if value.startswith(FORMULA_STARTS):
        value = "'" + value
    if CSV_QUOTED.search(value):
        return '"' + value.replace('"', '""') + '"'
    return value
