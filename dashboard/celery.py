from __future__ import annotations

import logging
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")

app = Celery("dashboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

SWEEP_TASK = "training.tasks.sweep"


def is_routine_sweep_line(record: logging.LogRecord) -> bool:
    """Tell whether a record is beat sending, or a worker receiving or finishing, a sweep."""
    if record.levelno > logging.INFO:
        return False
    args = record.args
    if isinstance(args, dict):
        return args.get("name") == SWEEP_TASK
    return SWEEP_TASK in (args or ())


# The sweep runs every couple of seconds and would fill the worker's and beat's logs with
# three lines each time; it logs a line of its own when it sends runs on (training.tasks).
for name in ("celery.beat", "celery.worker.strategy", "celery.app.trace"):
    logging.getLogger(name).addFilter(lambda record: not is_routine_sweep_line(record))
