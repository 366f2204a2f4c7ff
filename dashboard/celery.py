from __future__ import annotations

import logging
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")

app = Celery("dashboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Beat's housekeeping, which runs every few seconds or every minute: each logs a line of its
# own when it did something (training.tasks).
ROUTINE_TASKS = frozenset({"training.tasks.sweep", "training.tasks.resend_notifications"})


def is_routine_task_line(record: logging.LogRecord) -> bool:
    """Tell whether a record is beat sending, or a worker receiving or finishing, a routine task."""
    if record.levelno > logging.INFO:
        return False
    args = record.args
    if isinstance(args, dict):
        return args.get("name") in ROUTINE_TASKS
    return any(isinstance(arg, str) and arg in ROUTINE_TASKS for arg in args or ())


# Otherwise they would fill the worker's and beat's logs with three lines each time.
for name in ("celery.beat", "celery.worker.strategy", "celery.app.trace"):
    logging.getLogger(name).addFilter(lambda record: not is_routine_task_line(record))
