"""History's rollups: final runs summed per team, local day, model type, artist and outcome.

The history page reads its totals, p90s, breakdowns and weekly series from these rows
(training.figures) instead of aggregating every run on every load. A run is added in the
transaction that makes it final (lifecycle.transition calls `add_run`), taken out again when it
is deleted (a pre_delete receiver), and `manage.py rebuild_rollups` recomputes every row from
the runs (`rebuild`): after a bulk load, or after a fix made straight in the database.

Four tables hold the same sums at different grains (training.models):
- RollupDay: every dimension (team, day, model type, artist, outcome and the duration buckets
  of its runs), so any filter of the history can be answered from it;
- RollupSpan, RollupSpanArtist, RollupSpanType: per span (a week cut at a month's end, so that
  spans add up both to weeks and to months), per team and outcome, and also per artist or
  per model type;
- RollupMonth, RollupMonthArtist, RollupMonthType: the same per month, for the figures that
  need no week. They answer the common pages from a few thousand rows.

Durations go into buckets whose bounds grow by 2^(1/5) (about 15%) from 1 s to 2^18 s, plus
one bucket below and one above. A percentile read from the buckets puts each value at its
place inside its bucket (log-spaced), so it is off by less than a bucket's width: within
P90_WITHIN of the exact value for durations between 1 s and about 3 days.
"""

from __future__ import annotations

import datetime as dt
import math
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models.signals import pre_delete
from django.dispatch import receiver
from django.utils import timezone

from training.models import (
    BUCKET_DOUBLINGS,
    BUCKETS_PER_DOUBLING,
    DURATION_BUCKETS,
    FINAL_STATES,
    RollupDay,
    RollupMonth,
    RollupMonthArtist,
    RollupMonthType,
    RollupSpan,
    RollupSpanArtist,
    RollupSpanType,
    TrainingRun,
)

# --- duration buckets ---------------------------------------------------------------------

RATIO = 2 ** (1 / BUCKETS_PER_DOUBLING)
# The lower bound of buckets 1…: bucket 0 holds what is below 1 s, the last what is past 2^18 s.
BOUNDS = [
    2 ** (k / BUCKETS_PER_DOUBLING) for k in range(BUCKETS_PER_DOUBLING * BUCKET_DOUBLINGS + 1)
]
assert len(BOUNDS) + 1 == DURATION_BUCKETS
# How far a percentile read from the buckets may be from the exact one, as a share of it.
P90_WITHIN = RATIO - 1
NO_DURATION = -1


def bucket_of(seconds: float | None) -> int:
    """The bucket a duration is counted in; NO_DURATION for none."""
    if seconds is None:
        return NO_DURATION
    return bisect_right(BOUNDS, seconds)


def bucket_percentile(counts: Sequence[int], fraction: float) -> float | None:
    """The continuous percentile of the counted durations, as percentile_cont interpolates it.

    Each value is placed inside its bucket as if the bucket's values were spread evenly on a
    log scale (linearly in the bucket below 1 s); the two placed around the rank are then
    interpolated. Each placed value is in its true value's bucket, hence the bound.
    """
    total = sum(counts)
    if not total:
        return None
    rank = fraction * (total - 1)
    low = math.floor(rank)
    first = _placed(counts, low)
    second = _placed(counts, low + 1) if low + 1 < total else first
    return first + (second - first) * (rank - low)


def _placed(counts: Sequence[int], index: int) -> float:
    """Where the value of 0-based order `index` sits, from the bucket counts alone."""
    before = 0
    for bucket, count in enumerate(counts):
        if index < before + count:
            share = (index - before + 0.5) / count
            if bucket == 0:
                return BOUNDS[0] * share
            if bucket == len(BOUNDS):
                return BOUNDS[-1]  # past the last bound nothing says how far
            return BOUNDS[bucket - 1] * RATIO**share
        before += count
    raise ValueError("index past the counted values")


# --- where a run is counted ---------------------------------------------------------------


def local_day(moment: dt.datetime) -> dt.date:
    """The day of a moment in the dashboard's time zone, as the history's date filters read it."""
    return moment.astimezone(timezone.get_default_timezone()).date()


def week_of(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


def span_of(day: dt.date) -> dt.date:
    """The first day of the day's span: its week's Monday, or the 1st if the month began since."""
    return max(week_of(day), day.replace(day=1))


def is_span_start(day: dt.date) -> bool:
    return day.weekday() == 0 or day.day == 1


@dataclass(frozen=True)
class Table:
    """One rollup table: the dimensions it keeps beyond team, period and outcome."""

    model: type
    dims: frozenset[str]  # of "artist" and "model_type"
    grain: str  # a row per "day", "span" or "month"
    bucket_columns: bool  # counts per bucket as columns (else the buckets are in the key)

    @property
    def name(self) -> str:
        return self.model._meta.db_table


ARTIST, TYPE = frozenset({"artist"}), frozenset({"model_type"})
DAY = Table(RollupDay, ARTIST | TYPE, "day", bucket_columns=False)
SPAN = Table(RollupSpan, frozenset(), "span", bucket_columns=True)
SPAN_ARTIST = Table(RollupSpanArtist, ARTIST, "span", bucket_columns=False)
SPAN_TYPE = Table(RollupSpanType, TYPE, "span", bucket_columns=True)
MONTH = Table(RollupMonth, frozenset(), "month", bucket_columns=True)
MONTH_ARTIST = Table(RollupMonthArtist, ARTIST, "month", bucket_columns=False)
MONTH_TYPE = Table(RollupMonthType, TYPE, "month", bucket_columns=True)
TABLES = (DAY, SPAN, SPAN_ARTIST, SPAN_TYPE, MONTH, MONTH_ARTIST, MONTH_TYPE)

# The sums every row keeps, in this order.
MEASURES = (
    "runs", "billed", "cu_billed", "cu_quoted", "queue_runs", "queue_seconds", "train_runs",
    "train_seconds",
)  # fmt: skip
QUEUE_COLUMNS = tuple(f"queue_b{b}" for b in range(DURATION_BUCKETS))
TRAIN_COLUMNS = tuple(f"train_b{b}" for b in range(DURATION_BUCKETS))

# What a run's rollup rows are made from.
RUN_FIELDS = (
    "team_id", "created_by_id", "model_type", "state", "created_at", "cu_cost", "quote_cu_cost",
    "queue_duration", "train_duration",
)  # fmt: skip


@dataclass(frozen=True)
class RunFigures:
    """A run as the rollups count it."""

    team_id: int
    artist_id: int
    model_type: str
    outcome: str
    day: dt.date
    measures: tuple[float, ...]  # in MEASURES order
    queue_bucket: int
    train_bucket: int

    @classmethod
    def of(cls, values: Sequence) -> RunFigures:
        """Read a run from its RUN_FIELDS values."""
        team, artist, model_type, state, created, cu, quote, queue, train = values
        measures = (
            1, int(cu is not None), cu or 0.0, quote or 0.0,
            int(queue is not None), queue or 0.0, int(train is not None), train or 0.0,
        )  # fmt: skip
        return cls(
            team, artist, model_type, state, local_day(created), measures,
            bucket_of(queue), bucket_of(train),
        )  # fmt: skip

    def row(self, table: Table) -> tuple[tuple, dt.date | None, dt.date]:
        """The run's row in a table: its key (in key_columns order), week and month."""
        dims = []
        if "model_type" in table.dims:
            dims.append(self.model_type)
        if "artist" in table.dims:
            dims.append(self.artist_id)
        week, month = week_of(self.day), self.day.replace(day=1)
        if table.grain == "month":
            return (month, self.team_id, self.outcome, *dims), None, month
        if table.grain == "span":
            return (span_of(self.day), self.team_id, self.outcome, *dims), week, month
        key = (self.day, self.team_id, self.outcome, *dims, self.queue_bucket, self.train_bucket)
        return key, week, month


def key_columns(table: Table) -> list[str]:
    columns = ["day", "team_id", "outcome"]
    if "model_type" in table.dims:
        columns.append("model_type")
    if "artist" in table.dims:
        columns.append("artist_id")
    if table.grain == "day":
        columns += ["queue_bucket", "train_bucket"]
    return columns


def sum_columns(table: Table) -> list[str]:
    columns = list(MEASURES)
    if table.bucket_columns:
        columns += QUEUE_COLUMNS + TRAIN_COLUMNS
    return columns


def _increments(table: Table, run: RunFigures, sign: int) -> dict[str, float]:
    values = {name: sign * value for name, value in zip(MEASURES, run.measures, strict=True)}
    if table.bucket_columns:
        if run.queue_bucket != NO_DURATION:
            values[QUEUE_COLUMNS[run.queue_bucket]] = sign
        if run.train_bucket != NO_DURATION:
            values[TRAIN_COLUMNS[run.train_bucket]] = sign
    return values


# --- kept in the final transition ---------------------------------------------------------


def add_run(run_pk: int) -> None:
    """Count a run that just became final; call it in the transaction that made it final.

    lifecycle.transition calls it only when its compare-and-set moved the run, and a final run
    never moves again, so each run is counted once.
    """
    _count(run_pk, +1)


def remove_run(run_pk: int) -> None:
    """Take a final run out of the rollups, before it is deleted."""
    _count(run_pk, -1)


@receiver(pre_delete, sender=TrainingRun, dispatch_uid="rollups_remove_deleted_run")
def _run_deleted(sender, instance: TrainingRun, **kwargs) -> None:
    # pre_delete runs in the deletion's transaction, while the row can still be read.
    remove_run(instance.pk)


def _count(run_pk: int, sign: int) -> None:
    values = TrainingRun.objects.filter(pk=run_pk).values_list(*RUN_FIELDS).first()
    if values is None or values[RUN_FIELDS.index("state")] not in FINAL_STATES:
        return
    run = RunFigures.of(values)
    with connection.cursor() as cursor:
        for table in TABLES:
            _upsert(cursor, table, run, sign)


def _upsert(cursor, table: Table, run: RunFigures, sign: int) -> None:
    """Add the run's figures to its rows (made if missing) with atomic INSERT … ON CONFLICT."""
    qn = connection.ops.quote_name
    name = qn(table.name)
    keys = key_columns(table)
    increments = _increments(table, run, sign)
    columns = ", ".join(map(qn, [*keys, "week", "month", *increments]))
    marks = ", ".join(["%s"] * (len(keys) + 2 + len(increments)))
    added = ", ".join(f"{qn(c)} = {name}.{qn(c)} + EXCLUDED.{qn(c)}" for c in increments)
    upsert = (
        f"INSERT INTO {name} ({columns}) VALUES ({marks}) "
        f"ON CONFLICT ({', '.join(map(qn, keys))}) DO UPDATE SET {added}"
    )
    key, week, month = run.row(table)
    cursor.execute(upsert, _adapt([*key, week, month, *increments.values()]))
    if sign < 0:
        # A row whose last run went leaves no empty row behind (the menus list what has runs).
        where = " AND ".join(f"{qn(c)} = %s" for c in keys)
        cursor.execute(f"DELETE FROM {name} WHERE {where} AND {qn('runs')} <= 0", _adapt(key))


def _adapt(values: Iterable) -> list:
    """Dates as the database driver wants them in raw SQL (text on SQLite)."""
    return [
        connection.ops.adapt_datefield_value(v) if isinstance(v, dt.date) else v for v in values
    ]


# --- rebuilt from the runs ----------------------------------------------------------------


def rebuild(chunk_size: int = 20_000) -> dict[str, int]:
    """Recompute every rollup row from the runs; return the rows written per table.

    Idempotent. On Postgres the tables are locked first, so a run ending meanwhile is counted
    once: its own increment waits for the rebuild, which cannot have seen it final.
    """
    rows: dict[Table, dict[tuple, list]] = {table: {} for table in TABLES}
    with transaction.atomic():
        _lock_tables()
        with connection.cursor() as cursor:
            for table in TABLES:
                cursor.execute(f"DELETE FROM {connection.ops.quote_name(table.name)}")
        finals = TrainingRun.objects.filter(state__in=FINAL_STATES).order_by()
        for values in finals.values_list(*RUN_FIELDS).iterator(chunk_size=chunk_size):
            run = RunFigures.of(values)
            for table in TABLES:
                _accumulate(rows[table], table, run)
        for table in TABLES:
            _insert(table, rows[table])
    return {table.name: len(rows[table]) for table in TABLES}


def _lock_tables() -> None:
    if connection.vendor != "postgresql":
        return  # SQLite lets one writer at a time in anyway
    names = ", ".join(connection.ops.quote_name(table.name) for table in TABLES)
    with connection.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {names} IN SHARE ROW EXCLUSIVE MODE")


def _accumulate(rows: dict[tuple, list], table: Table, run: RunFigures) -> None:
    key, week, month = run.row(table)
    sums = rows.get(key)
    if sums is None:
        width = len(MEASURES) + (2 * DURATION_BUCKETS if table.bucket_columns else 0)
        sums = rows[key] = [week, month, 0, 0, 0.0, 0.0, 0, 0.0, 0, 0.0] + [0] * (width - 8)
    for i, value in enumerate(run.measures, start=2):
        sums[i] += value
    if table.bucket_columns:
        base = 2 + len(MEASURES)
        if run.queue_bucket != NO_DURATION:
            sums[base + run.queue_bucket] += 1
        if run.train_bucket != NO_DURATION:
            sums[base + DURATION_BUCKETS + run.train_bucket] += 1


def _insert(table: Table, rows: dict[tuple, list]) -> None:
    """Write the rows in their key's order, the order of the table's primary key."""
    columns = [*key_columns(table), "week", "month", *sum_columns(table)]
    rows = dict(sorted(rows.items()))
    qn = connection.ops.quote_name
    names = ", ".join(map(qn, columns))
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {qn(table.name)} ({names}) FROM STDIN") as copy:
                for key, sums in rows.items():
                    copy.write_row((*key, *sums))
            return
        marks = ", ".join(["%s"] * len(columns))
        cursor.executemany(
            f"INSERT INTO {qn(table.name)} ({names}) VALUES ({marks})",
            [_adapt((*key, *sums)) for key, sums in rows.items()],
        )
