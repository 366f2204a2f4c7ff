"""Keep each team's "last changed" stamp, so that an unchanged live refresh reads one row.

A live page's token is its team's stamp (TeamStamp.version): the dashboard board answers an
unchanged refresh after one indexed read of it, before reading any run (board_token). A run
page's panel reads its run's update time, with the stamp for a run waiting in the team queue
(run_token_facts). Both reads are the only statements written by hand: see why there.

Every write that changes what a team's live pages show calls `changed(team_id)`: the
lifecycle's transitions and audit lines, snapshots, new samples, the team queue, epoch
choices, new drafts, and, through model signals (`connect`), any save or delete of a run, a
sample, an event or a team (the admin). Bookkeeping that no page shows (next_poll_at,
last_polled_at, claims, leases) does not call it: it would make every poll look like a change.

Why the bump comes after the writer's commit. A reader reads the stamp first and the rows
after it. A bump happens only once its rows are committed, so whatever stamp a reader sees,
the rows it reads next are at least that new: the token a client keeps is never newer than
what it was shown, and a change is never missed. A change committed between the two reads
shows at once and moves the stamp again, so it costs one more render, nothing else. Bumping
inside the writer's transaction instead would hold the team's row locked until that commit
(every writer of a team would queue behind it, and two transactions bumping two teams in
opposite orders could deadlock), and a counter taken before commit can be seen before the rows
it stands for.

The window this leaves: a process killed between a commit and its bump (SIGKILL, a hard time
limit) loses that bump; the team's next write moves the stamp again, and a full page load
always reads the rows.

A transaction bumps each team once, however many of its writes called `changed`. A batch (a
listed poll of up to 500 runs, each in a transaction of its own) coalesces its bumps inside
`coalesced()`: one UPDATE per flush for all its teams, at most every COALESCE_SECONDS and once
at the end.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import cache

from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import F
from django.db.models.signals import post_save, pre_delete
from django.utils import timezone

from training import access
from training.models import EpochSample, Membership, RunEvent, Team, TeamStamp, TrainingRun

log = logging.getLogger(__name__)

# A batch makes its changes visible at least this often.
COALESCE_SECONDS = 0.5
# The token of a viewer who sees no team (signed out, or in no team yet).
NO_TEAM = "none"

_local = threading.local()


# --- Reading --------------------------------------------------------------------------------


def board_token(user, using: str = DEFAULT_DB_ALIAS) -> str:
    """Return the stamp of everything the user's board shows, in one indexed query.

    A member reads their team's row through their membership; staff, who see every team, the
    sum of the few rows (a counter only grows, so the sum moves whenever one of them does).
    The team is part of the token: moving to another team changes it.

    Written in SQL: it is the whole work of an unchanged refresh, the most frequent request
    of all, and the ORM took five times as long to build it as the database to answer it.
    """
    if not user.is_authenticated:
        return NO_TEAM
    with connections[using].cursor() as cursor:
        if user.is_staff:
            cursor.execute(_statements(using)["all"])
            teams, versions = cursor.fetchone()
            return f"all.{teams}.{versions}"
        cursor.execute(_statements(using)["member"], [user.pk])
        row = cursor.fetchone()
    if row is None:
        return NO_TEAM
    team_id, version = row
    return f"{team_id}.{version or 0}"


@cache
def _statements(using: str) -> dict[str, str]:
    """Write the two reads of board_token, with the tables' and columns' names from the models."""
    quote = connections[using].ops.quote_name
    members, stamps = Membership._meta, TeamStamp._meta
    member_team = quote(members.get_field("team").column)
    member_user = quote(members.get_field("user").column)
    stamp_team, version = quote(stamps.pk.column), quote(stamps.get_field("version").column)
    return {
        "member": (
            f"SELECT m.{member_team}, s.{version} FROM {quote(members.db_table)} m"
            f" LEFT JOIN {quote(stamps.db_table)} s ON s.{stamp_team} = m.{member_team}"
            f" WHERE m.{member_user} = %s"
        ),
        "all": f"SELECT COUNT(*), COALESCE(SUM({version}), 0) FROM {quote(stamps.db_table)}",
    }


def run_token_facts(user, pk: int, fields: tuple[str, ...], using: str = DEFAULT_DB_ALIAS):
    """Read some fields of a run the user may see, and its team's stamp, in one query.

    Returns (values of `fields`, the stamp's version), or None when the run does not exist or
    the user may not see it (access.visible_runs_sql, the same rule as visible_runs). Written
    in SQL for the same reason as board_token: a run page's unchanged poll is nothing else.
    """
    condition, params = access.visible_runs_sql(user, "r", using)
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute(f"{_run_statement(using, fields)} AND {condition}", [pk, *params])
        row = cursor.fetchone()
    if row is None:
        return None
    *values, version = row
    return [_from_db(value, connection) for value in values], version


@cache
def _run_statement(using: str, fields: tuple[str, ...]) -> str:
    quote = connections[using].ops.quote_name
    runs, stamps = TrainingRun._meta, TeamStamp._meta
    columns = ", ".join(f"r.{quote(runs.get_field(name).column)}" for name in fields)
    return (
        f"SELECT {columns}, s.{quote(stamps.get_field('version').column)}"
        f" FROM {quote(runs.db_table)} r LEFT JOIN {quote(stamps.db_table)} s"
        f" ON s.{quote(stamps.pk.column)} = r.{quote(runs.get_field('team').column)}"
        f" WHERE r.{quote(runs.pk.column)} = %s"
    )


def _from_db(value, connection):
    """Read a value as the ORM would: a date and time without a zone is in the database's."""
    if isinstance(value, datetime) and timezone.is_naive(value):
        return timezone.make_aware(value, connection.timezone)
    return value


# --- Writing --------------------------------------------------------------------------------


def changed(*team_ids: int | None, using: str = DEFAULT_DB_ALIAS) -> None:
    """Say that what these teams' live pages show has changed: bump their stamps after commit.

    Outside a transaction the write is committed already, so the bump is made now. (A test
    inside one transaction sees no bump: use a transactional test, or `write` in a factory.)
    """
    teams = {team_id for team_id in team_ids if team_id is not None}
    if not teams:
        return
    connection = transaction.get_connection(using)
    if not connection.in_atomic_block:
        _bump(teams, using)
        return
    pending = _pending(connection)
    if pending is None:
        pending = _AfterCommit(using, connection.run_on_commit)
        transaction.on_commit(pending, using=using, robust=True)
        pending.index = len(connection.run_on_commit) - 1
        _local.pending = pending
    pending.teams |= teams


class _AfterCommit:
    """The teams one transaction changed, bumped once when it commits."""

    def __init__(self, using: str, callbacks: list):
        self.using = using
        self.teams: set[int] = set()
        self.callbacks, self.index, self.done = callbacks, -1, False

    def __call__(self) -> None:
        self.done = True
        _bump(self.teams, self.using)


def _pending(connection) -> _AfterCommit | None:
    """Return the bump this transaction has registered already, if it still holds.

    A commit or a rollback starts a new list of callbacks, and so does a savepoint rolled
    back (which drops its own callbacks): a bump is joined only while it sits where it was
    put. Whatever savepoint it was put in is closed (released) or encloses the current write,
    so no rollback can drop it and keep this write. A write in a savepoint rolled back later
    leaves its team in the bump: one needless render, never a missed one.
    """
    pending = getattr(_local, "pending", None)
    if pending is None or pending.done or pending.using != connection.alias:
        return None
    callbacks = connection.run_on_commit
    if callbacks is not pending.callbacks or not 0 <= pending.index < len(callbacks):
        return None
    return pending if callbacks[pending.index][1] is pending else None


def _bump(teams: set[int], using: str) -> None:
    batch = getattr(_local, "batch", None)
    if batch is not None:
        batch.add(teams, using)
        return
    _write_or_log(teams, using)


def _write_or_log(teams: set[int], using: str) -> None:
    try:
        write(teams, using)
    except Exception:  # a bump lost costs a late refresh, never the write it follows
        log.exception("Could not bump the stamps of teams %s", sorted(teams))


def write(teams: Iterable[int], using: str = DEFAULT_DB_ALIAS) -> None:
    """Bump the teams' stamps now, in one UPDATE (the caller has committed its writes)."""
    teams = set(teams)
    if not teams:
        return
    stamps = TeamStamp.objects.using(using)
    bumped = stamps.filter(team_id__in=teams).update(version=F("version") + 1)
    if bumped < len(teams):
        # A team made without its row (by a raw insert, or before this table existed).
        have = set(stamps.filter(team_id__in=teams).values_list("team_id", flat=True))
        real = Team.objects.using(using).filter(pk__in=teams - have).values_list("pk", flat=True)
        stamps.bulk_create([TeamStamp(team_id=pk, version=1) for pk in real], ignore_conflicts=True)


class _Batch:
    def __init__(self):
        self.teams: dict[str, set[int]] = {}
        self.flushed = time.monotonic()

    def add(self, teams: set[int], using: str) -> None:
        self.teams.setdefault(using, set()).update(teams)
        if time.monotonic() - self.flushed >= COALESCE_SECONDS:
            self.flush()

    def flush(self) -> None:
        self.flushed = time.monotonic()
        teams, self.teams = self.teams, {}
        for using, pks in teams.items():
            _write_or_log(pks, using)


@contextmanager
def coalesced() -> Iterator[None]:
    """Bump each team once per flush during a batch of writes, and once more at its end.

    The bumps still follow their commits: only what has committed is collected here.
    """
    outer = getattr(_local, "batch", None)
    if outer is not None:  # already coalescing: the outer batch flushes
        yield
        return
    batch = _local.batch = _Batch()
    try:
        yield
    finally:
        _local.batch = None
        batch.flush()


# --- Saves and deletes that skip the services (the admin, scripts) --------------------------


def _run_saved_or_deleted(sender, instance, **kwargs):
    changed(instance.team_id, using=kwargs.get("using", DEFAULT_DB_ALIAS))


def _row_of_run_saved_or_deleted(sender, instance, **kwargs):
    using = kwargs.get("using", DEFAULT_DB_ALIAS)
    if sender.run.is_cached(instance):
        team_id = instance.run.team_id
    else:  # a row saved or deleted alone: its run says which team
        runs = TrainingRun.objects.using(using).filter(pk=instance.run_id)
        team_id = runs.values_list("team_id", flat=True).first()
    changed(team_id, using=using)


def _team_saved(sender, instance, created=False, **kwargs):
    using = kwargs.get("using", DEFAULT_DB_ALIAS)
    if created:
        TeamStamp.objects.using(using).get_or_create(team_id=instance.pk)
    else:  # its limits, its name: the team queue's words may change
        changed(instance.pk, using=using)


# What the live pages show of a person: their name, on the runs they launched.
NAME_FIELDS = frozenset({"first_name", "last_name", "username"})


def _person_saved(sender, instance, update_fields=None, **kwargs):
    if update_fields is not None and not NAME_FIELDS & set(update_fields):
        return  # a sign-in (last_login) or an email address: nothing a live page shows
    if kwargs.get("created"):
        return
    using = kwargs.get("using", DEFAULT_DB_ALIAS)
    teams = TrainingRun.objects.using(using).filter(created_by_id=instance.pk)
    changed(*teams.values_list("team_id", flat=True).distinct(), using=using)


def connect() -> None:
    """Bump on every save and delete of what live pages show, wherever it comes from."""
    # Deletes are seen before the row goes: a run deleted through `.only("pk")` still has its
    # team to read then (the deletion's transaction bumps after it commits).
    for signal in (post_save, pre_delete):
        name = "saved" if signal is post_save else "deleted"
        signal.connect(_run_saved_or_deleted, sender=TrainingRun, dispatch_uid=f"stamp-run-{name}")
        for model in (EpochSample, RunEvent):
            signal.connect(
                _row_of_run_saved_or_deleted,
                sender=model,
                dispatch_uid=f"stamp-{model.__name__}-{name}",
            )
    # A team deleted takes its stamp with it (and has no runs: they protect it).
    post_save.connect(_team_saved, sender=Team, dispatch_uid="stamp-team-saved")
    post_save.connect(_person_saved, sender=get_user_model(), dispatch_uid="stamp-person-saved")
