"""Beat's routine tasks don't bury the worker's and beat's logs; everything else is logged."""

from __future__ import annotations

import logging

import pytest

from dashboard.celery import is_routine_task_line


def record(message: str, args, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("celery", level, __file__, 1, message, args, None)


@pytest.mark.parametrize("task", ["training.tasks.sweep", "training.tasks.resend_notifications"])
def test_beat_sending_and_a_worker_finishing_a_routine_task_are_quiet(task):
    assert is_routine_task_line(record("Scheduler: Sending due task %s (%s)", ("x", task)))
    finished = {"name": task, "id": "1", "return_value": 0, "runtime": 0.1}
    assert is_routine_task_line(record("Task %(name)s[%(id)s] succeeded", (finished,)))


def test_other_tasks_and_any_warning_are_still_logged():
    poll = {"name": "training.tasks.poll_run", "id": "1"}
    assert not is_routine_task_line(record("Task %(name)s[%(id)s] succeeded", (poll,)))
    sweep = {"name": "training.tasks.sweep", "id": "1"}
    failed = record("Task %(name)s[%(id)s] raised", (sweep,), logging.ERROR)
    assert not is_routine_task_line(failed)
