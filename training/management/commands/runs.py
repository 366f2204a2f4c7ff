"""manage.py runs [--active] [--json]"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand
from django.db.models import Count

from training.models import ACTIVE_STATES, TrainingRun

COLUMNS = (
    "id",
    "team",
    "by",
    "model",
    "state",
    "stage",
    "pos",
    "progress",
    "left",
    "epochs",
    "queued",
    "trained",
    "CU",
    "outcome",
)


class Command(BaseCommand):
    help = (
        "List runs with their state, stage, queue position, progress, remaining time, epochs, "
        "trainingStats and CU cost."
    )

    def add_arguments(self, parser):
        parser.add_argument("--active", action="store_true", help="only runs not finished")
        parser.add_argument(
            "--json", dest="as_json", action="store_true", help="one JSON list, for scripts"
        )

    def handle(self, *args, active, as_json, **options):
        runs = TrainingRun.objects.select_related("team", "created_by", "model").annotate(
            epochs=Count("samples__epoch_index", distinct=True)
        )
        if active:
            runs = runs.filter(state__in=ACTIVE_STATES)
        rows = [as_dict(run) for run in runs]
        if as_json:
            self.stdout.write(dump(rows))
        else:
            self.stdout.write(table(rows))


def dump(rows: list[dict]) -> str:
    return json.dumps(rows, indent=2, default=str)


def as_dict(run: TrainingRun) -> dict:
    return {
        "id": run.pk,
        "team": run.team.name,
        "created_by": run.created_by.get_username(),
        "model": run.model.remote_id,
        "model_name": run.model.name,
        "model_type": run.model_type,
        "state": run.state,
        "stage": run.stage,
        "queue_position": run.queue_position,
        "progress": run.progress,
        "remaining_ms": run.remaining_ms,
        "epochs": run.epochs,
        "train_started_at": run.train_started_at,
        "train_ended_at": run.train_ended_at,
        "queue_duration": run.queue_duration,
        "train_duration": run.train_duration,
        "quote_cu_cost": run.quote_cu_cost,
        "cu_cost": run.cu_cost,
        "cu_discount": run.cu_discount,
        "error_message": run.error_message,
        "outcome": run.outcome if run.is_final else "",
        "created_at": run.created_at,
        "finished_at": run.finished_at,
    }


def table(rows: list[dict]) -> str:
    if not rows:
        return "No runs."
    cells = [COLUMNS] + [_cells(row) for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells
    )


def _cells(row: dict) -> tuple[str, ...]:
    return (
        str(row["id"]),
        row["team"],
        row["created_by"],
        row["model_name"] or row["model"],
        row["state"],
        row["stage"] or "-",
        _or_dash(row["queue_position"]),
        f"{row['progress']:.0%}" if row["progress"] is not None else "-",
        _seconds(row["remaining_ms"] / 1000 if row["remaining_ms"] is not None else None),
        str(row["epochs"]),
        _seconds(row["queue_duration"]),
        _seconds(row["train_duration"]),
        f"{row['cu_cost']:g}" if row["cu_cost"] is not None else "-",
        row["outcome"] or "-",
    )


def _or_dash(value) -> str:
    return "-" if value is None else str(value)


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    minutes, seconds = divmod(int(round(value)), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"
