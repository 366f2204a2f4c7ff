"""Serve the pages people watch: the dashboard, a run's page with its live fragments, and cancel.

Views read the database only; the worker keeps it current. The one exception is "Use this
epoch", which asks Scenario to change the model and says so in words when it cannot.

Each live piece is a named partial of its page. A refresh costs a constant number of queries
whatever the number of runs or epochs. An unchanged one, the common case, costs three: the
session, the user, and one small indexed read of its token (the board: the team's stamp,
training.stamps; a run's panel: the run's update time), access check included. A changed one
reads everything the fragment shows in one more query.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import wraps
from types import SimpleNamespace
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import (
    Count,
    Exists,
    F,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce
from django.http import Http404, HttpResponse, HttpResponseBadRequest
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST, require_safe
from django_htmx.http import HttpResponseClientRedirect, trigger_client_event

from training import (
    access,
    budgets,
    display,
    forecast,
    lifecycle,
    params,
    remote,
    request_params,
    scenario_client,
    services,
    stamps,
    team_queue,
)
from training.fragments import page_or_fragment
from training.models import (
    ACTIVE_STATES,
    FINAL_STATES,
    EpochSample,
    Membership,
    RunEvent,
    RunState,
    TrainingRun,
)
from training.scenario import OutcomeUnknown, ResponseShapeError, ScenarioError
from training.templatetags.monitoring import unknown_remote_state

RECENTLY_FINISHED = 10
BOARD_MAX_SHOWN = 1000
STAGE_LABELS = {
    remote.LAUNCHED: "Launched",
    remote.QUEUED: "Queued",
    remote.STARTING: "Starting",
    remote.TRAINING: "Training",
    remote.FINISHED: "Finished",
}
FINAL_LABELS = {
    RunState.SUCCEEDED: "Finished",
    RunState.FAILED: "Failed",
    RunState.CANCELED: "Canceled",
    RunState.NOT_STARTED: "Not started",
}


# --- Access in one query -------------------------------------------------------------------


def _with_viewer(runs: QuerySet[TrainingRun], user) -> QuerySet[TrainingRun]:
    """Read the viewer's role in each run's team along with the run (None: not in it)."""
    mine = Membership.objects.filter(user_id=user.pk, team_id=OuterRef("team_id"))
    return runs.annotate(viewer_role=Subquery(mine.values("role")[:1]))


def _viewer_role(run):
    """Return the viewer's role the run query read, for access to spend no query of its own."""
    return getattr(run, "viewer_role", access.UNREAD)


def _may_manage(user, run) -> bool:
    """Tell whether the user may cancel or "Use this epoch": staff, the team's lead, the author."""
    return access.can_cancel(user, run, role=_viewer_role(run))


# --- Rendering fragments -------------------------------------------------------------------


def live_fragment(page: str):
    """Guard a fragment view: signed-in users only; a plain visit (no htmx) goes to its page.

    An expired session inside a page would otherwise swap the login form into a fragment.
    """

    def decorate(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if not request.user.is_authenticated:
                page_url = reverse(page, kwargs=kwargs)
                login = f"{reverse(settings.LOGIN_URL)}?{urlencode({'next': page_url})}"
                return HttpResponseClientRedirect(login) if request.htmx else redirect(login)
            if not request.htmx:
                return redirect(reverse(page, kwargs=kwargs))
            return view(request, *args, **kwargs)

        return page_or_fragment(require_safe(wrapper))

    return decorate


def _fragment(request, template: str, context: dict) -> HttpResponse:
    """Render a partial without context processors: they would spend a query on membership."""
    context = {
        "csrf_token": get_token(request),
        "request": request,
        "user": request.user,
        "refresh_seconds": settings.DASHBOARD_REFRESH_SECONDS,
        **context,
    }
    return HttpResponse(render_to_string(template, context))


def _unchanged() -> HttpResponse:
    """Answer that nothing changed since the client's token: no body, nothing to swap."""
    response = HttpResponse(status=204)
    response["HX-Reswap"] = "none"
    return response


# --- Time and numbers ----------------------------------------------------------------------


def _us(moment: datetime | None) -> int:
    if moment is None:
        return 0
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def _parse_date(raw) -> datetime | None:
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if timezone.is_aware(moment) else moment.replace(tzinfo=UTC)


def _remaining_ms(run, now: datetime) -> int | None:
    """Return Scenario's remaining time, less what has passed since it was read."""
    if run.remaining_ms is None or run.state not in (RunState.QUEUED, RunState.RUNNING):
        return None
    # updated_at is when the worker last wrote what it read (a claim for a poll does not move
    # it), so it dates remaining_ms better than last_polled_at.
    seen = run.updated_at
    elapsed = int((now - seen).total_seconds() * 1000) if seen else 0
    return max(0, run.remaining_ms - max(0, elapsed))


def _epoch_count(run) -> int | None:
    """Return how many epochs a finished run produced: its samples say, else its parameters."""
    if getattr(run, "newest_epoch", None) is not None:
        return run.newest_epoch + 1
    try:
        return params.epochs_for(run.model_type, run.parameters)
    except ValueError:  # a model type the table no longer knows
        return None


def _finished_message(run) -> str:
    name = run.model.name or run.model.remote_id
    if run.state == RunState.FAILED:
        return f"{name} failed"
    if run.state == RunState.CANCELED:
        return f"{name} was canceled"
    if run.state == RunState.NOT_STARTED:
        return f"{name} — {run.outcome}"
    epochs = _epoch_count(run)
    if not epochs:
        return f"{name} finished"
    return f"{name} finished, {epochs} epoch{'s' if epochs != 1 else ''}"


def _finished_event(runs, user) -> dict:
    """Fill the "run-finished" client event: a toast line for each run, and for the viewer's
    own runs what a browser notification says and where its click leads."""
    mine = [
        {
            "id": run.pk,
            "url": reverse("run_detail", args=[run.pk]),
            "model": run.model.name or run.model.remote_id,
            "outcome": FINAL_LABELS.get(run.state, run.state),
            "duration": display.duration(display.took_seconds(run)),
        }
        for run in runs
        if run.created_by_id == user.pk
    ]
    return {"messages": [_finished_message(run) for run in runs], "runs": mine}


def _newest_sample() -> QuerySet[EpochSample]:
    return EpochSample.objects.filter(run=OuterRef("pk")).order_by("-epoch_index", "prompt_index")


def _count_of(model, **filters) -> Coalesce:
    """Count rows per run in a correlated subquery: still one query for the page."""
    counted = (
        model.objects.filter(**filters).order_by().values("run").annotate(n=Count("pk")).values("n")
    )
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


# --- Dashboard -----------------------------------------------------------------------------


def _board(user, shown: list[int] | tuple = ()) -> dict:
    """Read the team's active runs and the last finished ones, in one query.

    `shown` are the runs the client lists as active: those that have finished since come
    back too, so the refresh can say so in a toast.
    """
    seen = access.visible_runs(user)
    finished = Coalesce("finished_at", "updated_at")
    recent = (seen.filter(state__in=FINAL_STATES).order_by(finished.desc(), "-pk").values("pk"))[
        :RECENTLY_FINISHED
    ]
    rows = list(
        seen.filter(Q(state__in=ACTIVE_STATES) | Q(pk__in=recent) | Q(pk__in=list(shown)))
        .select_related("model", "created_by")
        .annotate(
            newest_epoch=Subquery(_newest_sample().values("epoch_index")[:1]),
            thumbnail=Subquery(_newest_sample().values("url")[:1]),
            finished_or_updated=finished,
        )
        .order_by("-created_at", "-pk")
    )
    active = [run for run in rows if run.state in ACTIVE_STATES]
    done = sorted(
        (run for run in rows if run.state in FINAL_STATES),
        key=lambda run: (run.finished_or_updated, run.pk),
        reverse=True,
    )
    now = timezone.now()
    for run in active:
        run.remaining_now_ms = _remaining_ms(run, now)
    return {
        "active": active,
        "recent": done[:RECENTLY_FINISHED],
        "finished_now": [run for run in done if run.pk in set(shown)],
        "active_ids": ",".join(str(run.pk) for run in active),
    }


@login_required
@require_safe
def home(request):
    # The stamp is read before the rows: never newer than what the page shows (stamps).
    token = stamps.board_token(request.user)
    board = {**_board(request.user), "token": token}
    # The budget bar is in the page, not the board: a refresh keeps to its few queries.
    context = {**board, "budget": budgets.status_for_user(request.user)}
    # This page says "finished" itself, from its own refresh: no second watcher.
    return render(request, "training/home.html", {**context, "hide_finished_watch": True})


@live_fragment("home")
def home_board(request):
    # The client lists the runs it shows as active: as many as a team has running.
    shown = request_params.id_list(request.GET, "ids", max_items=BOARD_MAX_SHOWN)
    # One indexed read, before any run is: equal, nothing any write could show has changed.
    token = stamps.board_token(request.user)
    if request_params.text(request.GET, "token") == token:
        return _unchanged()
    board = {**_board(request.user, shown), "token": token}
    response = _fragment(request, "training/home.html#board", board)
    if board["finished_now"]:
        event = _finished_event(board["finished_now"], request.user)
        trigger_client_event(response, "run-finished", event)
    return response


@live_fragment("home")
def runs_finished(request):
    """Toast the runs that finished since `since`: the watcher every page has."""
    since = request_params.moment_us(request.GET, "since") or timezone.now()
    runs = list(
        access.visible_runs(request.user)
        .filter(state__in=FINAL_STATES, finished_at__gt=since)
        .select_related("model")
        .annotate(newest_epoch=Subquery(_newest_sample().values("epoch_index")[:1]))
        .order_by("finished_at", "pk")[:10]
    )
    if not runs:
        return _unchanged()
    response = _fragment(
        request, "training/finished_watch.html", {"since_us": _us(runs[-1].finished_at)}
    )
    return trigger_client_event(response, "run-finished", _finished_event(runs, request.user))


# --- Run page: the live panel --------------------------------------------------------------


def _history(run) -> list[tuple[datetime, str]]:
    """Return the job's status history, oldest first, with real dates."""
    entries = []
    for entry in run.status_history or []:
        if isinstance(entry, dict):
            at = _parse_date(entry.get("date"))
            if at is not None:
                entries.append((at, str(entry.get("status", ""))))
    return sorted(entries, key=lambda pair: pair[0])


def _current_stage(run, history) -> int:
    """Return where an unfinished run is on the timeline, from Scenario's stage or the job's."""
    seen = {remote.stage_step(run.stage), remote.job_step(history[-1][1] if history else "")}
    if remote.TRAINING in seen or run.state == RunState.RUNNING:
        return remote.TIMELINE.index(remote.TRAINING)
    if remote.STARTING in seen:
        return remote.TIMELINE.index(remote.STARTING)
    if run.state in (RunState.DRAFT, RunState.SUBMITTING) and not run.job_id:
        return remote.TIMELINE.index(remote.LAUNCHED)
    return remote.TIMELINE.index(remote.QUEUED)


def ended_at(run, history) -> datetime | None:
    """Return when the run ended, by Scenario's clock: the job's final status, else its stats.

    The Stages card, the Job status card and the timing all show this one time; when the
    dashboard noticed (finished_at) stands in only when Scenario gave no date.
    """
    if run.state not in FINAL_STATES:
        return None
    ends = remote.job_statuses_at(remote.FINISHED)
    final = next((at for at, status in reversed(history) if status in ends), None)
    return final or run.train_ended_at or run.finished_at


def _timeline(run, history) -> list[dict]:
    """Build the timeline (launched → queued → starting → training → finished), with times seen."""
    if run.state == RunState.NOT_STARTED:
        return _refused_timeline(run)

    def first(step):
        return next((at for at, status in history if remote.job_step(status) == step), None)

    times = {
        remote.LAUNCHED: run.created_at,
        remote.QUEUED: first(remote.QUEUED) or run.submitted_at,
        remote.STARTING: first(remote.STARTING),
        remote.TRAINING: first(remote.TRAINING) or run.train_started_at,
        remote.FINISHED: ended_at(run, history),
    }
    final = run.state in FINAL_STATES
    current = len(remote.TIMELINE) - 1 if final else _current_stage(run, history)
    steps = []
    for index, key in enumerate(remote.TIMELINE):
        label = FINAL_LABELS.get(run.state) if key == remote.FINISHED else None
        if final:
            ends = (remote.LAUNCHED, remote.FINISHED)
            status = "done" if times[key] or key in ends else "skipped"
        else:
            status = "done" if index < current else "current" if index == current else "todo"
        steps.append(
            {
                "key": key,
                "label": label or STAGE_LABELS[key],
                "at": times[key] if status in ("done", "current") else None,
                "status": status,
            }
        )
    return steps


def _refused_timeline(run) -> list[dict]:
    """Tick no stage of a launch Scenario refused: it reached none; the end says so.

    The launch keeps its time (someone did press it), the end the time of the refusal.
    """
    steps = [
        {"key": key, "label": STAGE_LABELS[key], "at": None, "status": "unreached"}
        for key in remote.TIMELINE
    ]
    steps[0].update(at=run.created_at, status="attempted")
    steps[-1].update(label=FINAL_LABELS[run.state], at=run.finished_at, status="refused")
    return steps


def _live_token(run) -> str:
    """Return what the live panel's client sends back besides its row counts.

    The run's update time, which every write the panel shows moves (new samples and audit
    lines too); while it waits in the team queue, also its team's stamp (other runs' moves
    change how many are ahead and the forecast); once stalled, that it is, which only the
    clock decides.
    """
    token = str(_us(run.updated_at))
    if run.state == RunState.WAITING:
        token += f"-{run.team_version or 0}"
    if lifecycle.is_stalled(run):
        token += "-stalled"
    return token


def _live_context(user, run, *, sample_count: int, event_count: int) -> dict:
    now = timezone.now()
    history = _history(run)
    return {
        "run": run,
        "who": display.person(run.created_by),
        "final": run.state in FINAL_STATES,
        "may_cancel": run.state in lifecycle.CANCELABLE_STATES and _may_manage(user, run),
        "timeline": _timeline(run, history),
        "history": history,
        "ended_at": ended_at(run, history),
        "remaining_now_ms": _remaining_ms(run, now),
        "queued": run.state == RunState.QUEUED,
        "live_token": _live_token(run),
        "sample_count": sample_count,
        "event_count": event_count,
        "captcha": run.state in (RunState.QUEUED, RunState.RUNNING)
        and run.stage in remote.CAPTCHA_STAGES,
        "unknown_state": unknown_remote_state(run)
        if run.state in (RunState.QUEUED, RunState.RUNNING)
        else [],
        "stalled": lifecycle.is_stalled(run, now),
        "may_settle": access.may_settle(user, run, role=_viewer_role(run)),
        **_queue_context(run),
    }


def _queue_context(run) -> dict:
    """Describe the team queue as the run page shows it: why it waits, who is ahead, when done."""
    waiting = run.state == RunState.WAITING
    return {
        "waiting": waiting,
        "queue_words": team_queue.position_words(run) if waiting else "",
        "waiting_forecast": forecast.for_waiting(run).words if waiting else "",
        # Read with the run (_left_team_queue): a fragment spends no query of its own on it.
        "left_team_queue_at": None if waiting else getattr(run, "left_team_queue_at", None),
        "forecast_error": forecast.error_words(run),
    }


def _left_team_queue():
    """Read when the run left the team queue for Scenario, if it ever waited there."""
    left = RunEvent.objects.filter(run=OuterRef("pk"), from_state=RunState.WAITING).exclude(
        to_state=RunState.WAITING
    )
    return Subquery(left.order_by("at").values("at")[:1])


# What _live_token reads of a run, and only that: the unchanged check's query.
TOKEN_FIELDS = (
    "state",
    "updated_at",
    "job_id",
    "remote_model_status",
    "remote_updated_at",
    "submitted_at",
)


def _live_token_of(user, pk) -> str:
    """Read the live panel's token in one small query of the run's row; 404 when not visible.

    No count, no join to what the panel shows: the update time stands for the rows.
    """
    facts = stamps.run_token_facts(user, pk, TOKEN_FIELDS)
    if facts is None:
        raise Http404("No such run")
    values, version = facts
    # The few facts _live_token reads, not a whole TrainingRun: building one costs more than
    # the query.
    run = SimpleNamespace(**dict(zip(TOKEN_FIELDS, values, strict=True)), team_version=version)
    return _live_token(run)


def _live_run(user, pk) -> TrainingRun:
    """Read the run with everything its live panel shows, in one query; 404 when not visible."""
    runs = _with_viewer(access.visible_runs(user), user).select_related("model", "created_by")
    runs = runs.annotate(
        sample_count=_count_of(EpochSample, run=OuterRef("pk")),
        event_count=_count_of(RunEvent, run=OuterRef("pk")),
        team_version=F("team__stamp__version"),
        left_team_queue_at=_left_team_queue(),
    )
    try:
        run = runs.get(pk=pk)
    except TrainingRun.DoesNotExist:
        raise Http404("No such run") from None
    return run


# What the live panel's client says it shows: its token and its row counts.
LIVE_TOKENS = ("token", "samples", "events")


def _live_response(request, pk, *, force_events: tuple[str, ...] = ()) -> HttpResponse:
    token, samples, events = (
        request_params.text(request.GET, name, max_length=60) for name in LIVE_TOKENS
    )
    # Checked before the panel's query is even built: an unchanged poll, the common one,
    # costs one small query. New samples and audit lines move the run's update time, so the
    # row counts are compared only once something changed, to reload the grid or the trail.
    if not force_events and token == _live_token_of(request.user, pk):
        return _unchanged()
    run = _live_run(request.user, pk)
    context = _live_context(
        request.user, run, sample_count=run.sample_count, event_count=run.event_count
    )
    response = _fragment(request, "training/run_detail.html#live", context)
    # The grid and the audit trail reload only when their rows changed, and the grid once
    # more when the run ends: its "images appear after each epoch" must not outlive it.
    if samples != str(run.sample_count) or context["final"]:
        trigger_client_event(response, "samples-changed")
    if "trail-changed" in force_events or events != str(run.event_count):
        trigger_client_event(response, "trail-changed")
    return response


@live_fragment("run_detail")
def run_live(request, pk):
    return _live_response(request, pk)


# --- Run page: epoch samples and the audit trail --------------------------------------------


@dataclass(frozen=True)
class TrailEntry:
    at: datetime
    from_state: str
    to_state: str
    source: str
    who: str
    message: str


def _sample_grid(samples: list[EpochSample], parameters: dict, listed=()) -> dict:
    """Lay samples out as rows of epochs and columns of prompts; a missing image is None.

    `listed` are the epoch names Scenario listed: an epoch without sample images (a run
    without sample prompts) still has its row, so it can still be picked.
    """
    prompts: dict[int, str] = {}
    for index, prompt in enumerate((parameters or {}).get("samplePrompts") or []):
        prompts[index] = str(prompt)
    epochs: dict[int, dict] = {}
    for sample in samples:
        prompts[sample.prompt_index] = sample.prompt or prompts.get(sample.prompt_index, "")
        row = epochs.setdefault(
            sample.epoch_index,
            {"number": sample.epoch_index + 1, "epoch": sample.epoch, "cells": {}},
        )
        row["cells"][sample.prompt_index] = sample
    for index, name in enumerate(listed if isinstance(listed, list) else ()):
        if isinstance(name, str):
            epochs.setdefault(index, {"number": index + 1, "epoch": name, "cells": {}})
    columns = sorted(prompts)
    rows = [
        {**row, "cells": [row["cells"].get(column) for column in columns]}
        for _, row in sorted(epochs.items())
    ]
    return {"prompts": [prompts[column] for column in columns], "epoch_rows": rows}


def _later_runs():
    """Select later runs of the same model that trained (a refused launch trained nothing)."""
    return TrainingRun.objects.filter(model_id=OuterRef("model_id"), pk__gt=OuterRef("pk")).exclude(
        state=RunState.NOT_STARTED
    )


def _latest_of_its_model():
    """Tell whether no later run of the same model exists: the model's epochs are this run's.

    A later launch Scenario refused trained nothing, so it takes no epochs away.
    """
    return ~Exists(_later_runs())


def _newest_of_its_model():
    """Return the pk of the model's newest run when it is not this one: where its epochs went."""
    return Subquery(_later_runs().order_by("-pk").values("pk")[:1])


RUN_FIELDS = (
    "pk",
    "state",
    "team_id",
    "created_by_id",
    "model_type",
    "parameters",
    "selected_epoch",
    "selected_epoch_by_id",
    "epoch_names",
)
CHOOSER_FIELDS = ("username", "first_name", "last_name")


def _run_and_rows(
    user,
    pk,
    relation: str,
    fields: tuple[str, ...],
    order: tuple[str, ...],
    *,
    with_chooser: bool = False,
):
    """Read a run and its rows of one relation in one query (a LEFT JOIN), or 404.

    Rows come back as dicts of the relation's fields; a run without any gives [].
    `with_chooser` also reads the name of who chose the run's epoch (one more join).
    """
    joined = tuple(f"{relation}__{field}" for field in fields)
    chooser = tuple(f"selected_epoch_by__{field}" for field in CHOOSER_FIELDS if with_chooser)
    values = list(
        _with_viewer(access.visible_runs(user).filter(pk=pk), user)
        .annotate(latest_of_model=_latest_of_its_model(), newest_run_id=_newest_of_its_model())
        .values(
            *RUN_FIELDS,
            "latest_of_model",
            "newest_run_id",
            "viewer_role",
            *chooser,
            *joined,
        )
        .order_by(*(f"{relation}__{field}" for field in order))
    )
    if not values:
        raise Http404("No such run")
    first = values[0]
    run = TrainingRun(**{field: first[field] for field in RUN_FIELDS})
    run.viewer_role = first["viewer_role"]
    run.latest_of_model, run.newest_run_id = first["latest_of_model"], first["newest_run_id"]
    if chooser and run.selected_epoch_by_id is not None:
        names = {field: first[f"selected_epoch_by__{field}"] for field in CHOOSER_FIELDS}
        run.selected_epoch_by = get_user_model()(pk=run.selected_epoch_by_id, **names)
    rows = [
        {field: row[f"{relation}__{field}"] for field in fields}
        for row in values
        if row[f"{relation}__id"] is not None
    ]
    return run, rows


def _samples_context(user, run, samples: list[EpochSample], **extra) -> dict:
    """Lay out the grid, with the epoch chosen for the model (read with the run, no query)."""
    grid = _sample_grid(samples, run.parameters, run.epoch_names)
    in_use = _epoch_in_use(run, grid["epoch_rows"])
    for row in grid["epoch_rows"]:
        row["in_use"] = row["epoch"] == in_use
    chosen_by = (
        display.person(run.selected_epoch_by) if run.selected_epoch_by_id is not None else ""
    )
    return {
        "run": run,
        "final": run.state in FINAL_STATES,
        "may_use_epoch": _may_use_epoch(user, run),
        "superseded": run.state == RunState.SUCCEEDED and not run.latest_of_model,
        "newest_run_id": getattr(run, "newest_run_id", None),
        "chosen_by": chosen_by,
        "epoch_by_default": bool(in_use) and not run.selected_epoch,
        **grid,
        **extra,
    }


def _epoch_in_use(run, epoch_rows: list[dict]) -> str:
    """Return the epoch Scenario generates with: the one chosen, else the last (its default).

    Only a finished training's epochs, and only while no later training replaced them.
    """
    if run.state != RunState.SUCCEEDED or not run.latest_of_model or not epoch_rows:
        return ""
    return run.selected_epoch or epoch_rows[-1]["epoch"]


def _may_use_epoch(user, run) -> bool:
    """Tell whether the user may pick an epoch: only the model's newest training owns its
    epochs (an older run's names would now point at the newer training's epochs)."""
    return run.state == RunState.SUCCEEDED and run.latest_of_model and _may_manage(user, run)


def _samples_response(request, pk, **extra) -> HttpResponse:
    fields = ("id", "epoch", "epoch_index", "prompt_index", "prompt", "asset_id", "url")
    order = ("epoch_index", "prompt_index")
    run, rows = _run_and_rows(request.user, pk, "samples", fields, order, with_chooser=True)
    samples = [EpochSample(run_id=run.pk, **row) for row in rows]
    context = _samples_context(request.user, run, samples, **extra)
    return _fragment(request, "training/run_detail.html#samples", context)


@live_fragment("run_detail")
def run_samples(request, pk):
    return _samples_response(request, pk)


def _trail_entries(rows: list[dict]) -> list[TrailEntry]:
    """Turn rows of RunEvent (TRAIL_FIELDS) into lines of the audit trail, naming who asked."""
    entries = []
    for row in rows:
        name = display.name_of(
            row["actor__first_name"], row["actor__last_name"], row["actor__username"]
        )
        who = name or SOURCE_NAMES.get(row["source"], "System")
        entries.append(
            TrailEntry(
                row["at"], row["from_state"], row["to_state"], row["source"], who, row["message"]
            )
        )
    return entries


SOURCE_NAMES = {"worker": "The worker", "sweep": "The sweep"}
TRAIL_FIELDS = (
    "id",
    "at",
    "from_state",
    "to_state",
    "source",
    "message",
    "actor__username",
    "actor__first_name",
    "actor__last_name",
)


@live_fragment("run_detail")
def run_trail(request, pk):
    run, rows = _run_and_rows(request.user, pk, "events", TRAIL_FIELDS, order=("at", "id"))
    context = {"run": run, "final": run.state in FINAL_STATES, "trail": _trail_entries(rows)}
    return _fragment(request, "training/run_detail.html#trail", context)


# --- Run page ------------------------------------------------------------------------------


def _parameter_rows(run) -> list[dict]:
    """List the run's parameters in the form's words, each marked where it is not the default.

    Beside what was sent, what Scenario says the training uses (model.parameters), once it
    has said: a value it reports differently, or one it filled in unasked, is marked.
    Secret values (an API key for an experiment tracker) are never shown, only that one was set.
    """
    fields, defaults = {}, None
    try:
        fields = {field.name: field for field in params.fields_for(run.model_type)}
        defaults = params.defaults_for(run.model_type, run.model.training_images_number)
    except ValueError:  # a model type the table no longer knows: no defaults to compare with
        pass
    sent = run.parameters or {}
    remote = run.remote_parameters if isinstance(run.remote_parameters, dict) else None
    shown, shown_remote = params.for_display(sent), params.for_display(remote or {})
    rows = []
    for name in sorted(set(sent) | set(remote or {})):
        known = defaults is not None
        value = sent.get(name)
        rows.append(
            {
                "name": name,
                "label": field.label if (field := fields.get(name)) else name,
                "sent": name in sent,
                "value": display.parameter_value(shown[name]) if name in sent else "",
                "default": display.parameter_value(defaults[name])
                if known and name in defaults
                else "",
                "changed": name in sent
                and known
                and (name not in defaults or defaults[name] != value),
                "remote": display.parameter_value(shown_remote[name])
                if remote is not None and name in remote
                else "",
                "differs": remote is not None
                and (name not in remote or name not in sent or remote[name] != value),
            }
        )
    return rows


@login_required
@require_safe
def run_detail(request, pk):
    run = access.get_run_for_user(
        request.user,
        pk,
        related=("selected_epoch_by",),
        latest_of_model=_latest_of_its_model(),
        newest_run_id=_newest_of_its_model(),
        left_team_queue_at=_left_team_queue(),
        team_version=F("team__stamp__version"),
    )
    samples = list(run.samples.all())
    events = list(run.events.values(*TRAIL_FIELDS))
    context = {
        **_live_context(request.user, run, sample_count=len(samples), event_count=len(events)),
        **_samples_context(request.user, run, samples),
        "trail": _trail_entries(events),
        "parameters": _parameter_rows(run),
        "scenario_said": isinstance(run.remote_parameters, dict),
        "refresh_seconds": settings.DASHBOARD_REFRESH_SECONDS,
    }
    return render(request, "training/run_detail.html", context)


# --- Actions -------------------------------------------------------------------------------


@login_required
@require_POST
def run_queue(request, pk):
    """Move a waiting run in the team queue (a lead's call): top, up, down, or a priority."""
    run = access.get_run_for_user(request.user, pk)
    action = request.POST.get("action", "")
    priority = None
    if action == "priority":
        try:
            priority = int(request.POST.get("priority", ""))
        except ValueError:
            return HttpResponseBadRequest("The priority must be a whole number.")
        if not -1000 <= priority <= 1000:
            return HttpResponseBadRequest("The priority must be between -1000 and 1000.")
    try:
        words = team_queue.move(run, request.user, action, priority)
    except team_queue.QueueRefused as refusal:
        if not access.may_settle(request.user, run):
            raise PermissionDenied(str(refusal)) from refusal
        messages.error(request, str(refusal))
    else:
        messages.info(request, words + ".")
    return redirect("run_detail", pk=pk)


@page_or_fragment
@login_required
@require_POST
def run_cancel(request, pk):
    """Ask for a cancel (services writes the audit trail); the worker does the rest."""
    run = access.get_run_for_user(request.user, pk)
    if not access.can_cancel(request.user, run):
        raise PermissionDenied("You may not cancel this run.")
    services.request_cancel(run, request.user)
    if request.htmx:
        return _live_response(request, pk, force_events=("trail-changed",))
    messages.info(request, "Cancel requested. The training stops in a moment.")
    return redirect("run_detail", pk=pk)


def _set_epoch(run, epoch: str, user) -> tuple[bool, str]:
    """Make `epoch` the model's epoch on Scenario and remember it; a refusal comes back in words.

    Nothing is stored unless Scenario accepted the change.
    """
    try:
        scenario_client.get().set_epoch(run.model.remote_id, epoch)
    except (OutcomeUnknown, ResponseShapeError) as error:
        # The change may have happened: setting the same epoch again is harmless.
        reason = (error.message or "no answer").rstrip(".")
        return False, f"Scenario may not have switched the epoch ({reason}). Try again."
    except ScenarioError as error:
        reason = error.message or "Scenario did not answer"
        return False, f"Scenario did not switch the epoch: {reason}"
    services.record_epoch_choice(run, epoch, user)
    return True, ""


def _epoch_number(run, epoch: str) -> int | None:
    """Return the 1-based number of one of the run's epochs: listed by Scenario, or in a sample."""
    listed = run.epoch_names if isinstance(run.epoch_names, list) else []
    if epoch and epoch in listed:
        return listed.index(epoch) + 1
    sample = run.samples.filter(epoch=epoch).order_by("epoch_index").first()
    return sample.epoch_index + 1 if sample is not None else None


@login_required
@require_POST
def run_settle(request, pk):
    """Let a lead end a stalled run by hand (services writes the audit trail)."""
    run = access.get_run_for_user(request.user, pk)
    if not access.may_settle(request.user, run):
        raise PermissionDenied("Only the team's lead may settle a stalled run.")
    if services.settle_stalled(run, request.user):
        messages.info(request, "The run is settled as failed; the audit trail says why.")
    else:
        messages.info(request, "The run is not stalled any more: nothing was changed.")
    return redirect("run_detail", pk=pk)


@page_or_fragment
@login_required
@require_POST
def run_use_epoch(request, pk):
    run = access.get_run_for_user(request.user, pk, latest_of_model=_latest_of_its_model())
    if not _may_manage(request.user, run):
        raise PermissionDenied("Only the team's lead or the run's author may choose its epoch.")
    epoch = request_params.text(request.POST, "epoch", max_length=200)
    number = _epoch_number(run, epoch)
    if not _may_use_epoch(request.user, run) or number is None:
        return HttpResponseBadRequest(
            "Only an epoch of the model's latest finished training can be used."
        )
    ok, problem = _set_epoch(run, epoch, request.user)
    notice = f"Epoch {number} is now the model's epoch." if ok else problem
    if request.htmx:
        return _samples_response(request, pk, notice=notice, notice_ok=ok)
    (messages.success if ok else messages.error)(request, notice)
    return redirect("run_detail", pk=pk)
