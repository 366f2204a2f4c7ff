"""`demo` on a Redis broker that dies, and with a worker that dies: polling comes back."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from tests.processes import ROOT, child_pids, free_port, start_redis

pytestmark = [
    pytest.mark.worker,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]


def polls_since(database: Path, model_id: str, moment: datetime) -> int:
    """Polls the simulator answered since `moment` (its request log): reads of the model, and
    listings of the models in training (the sweep's listed polls; the demo's model sync lists
    models only every five minutes)."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as db:
        (count,) = db.execute(
            "SELECT count(*) FROM simulator_requestlog WHERE method = 'GET' "
            "AND (path LIKE ? OR path LIKE '%/models') AND at > ?",
            (f"%/models/{model_id}", moment.strftime("%Y-%m-%d %H:%M:%S.%f")),
        ).fetchone()
    return count


def demo_child(demo_pid: int, word: str) -> int:
    """The pid of the demo's child process whose command line has `word`."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == demo_pid and word.encode() in command:
            return int(entry.name)
    pytest.fail(f"the demo has no {word} process")


def wait(condition, seconds: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if condition():
            return time.monotonic() - started
        time.sleep(0.25)
    pytest.fail(f"{what} did not happen within {seconds:.0f} s")


def test_a_worker_whose_redis_dies_is_back_and_polling_within_30_s(tmp_path):
    redis_port, port = free_port(), free_port()
    redis = start_redis(redis_port, tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "CELERY_"))}
    env.pop("SCENARIO_API_URL", None)
    env.update(
        DASHBOARD_DATA_DIR=str(tmp_path),
        CELERY_BROKER_URL=f"redis://127.0.0.1:{redis_port}/0",
        SIMULATOR_TIME_SCALE="2",  # trainings last minutes: polled all along
        SWEEP_INTERVAL_SECONDS="1",
    )
    log = tmp_path / "demo.log"
    demo = subprocess.Popen(
        [sys.executable, "manage.py", "demo", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    database = tmp_path / "dashboard.sqlite3"
    try:
        wait(lambda: "Training dashboard:" in log.read_text(), 120, "the demo start")
        models = requests.get(
            f"http://127.0.0.1:{port}/sim/v1/models",
            auth=("demo-key", "demo-secret"),
            timeout=5,
        ).json()["models"]
        model_id = next(m["id"] for m in models if m["name"] == "Flux portrait v3")
        subprocess.run(
            [sys.executable, "manage.py", "train", model_id, "--as", "alice"],
            cwd=ROOT, env=env, check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        start = datetime.now(UTC)
        wait(lambda: polls_since(database, model_id, start) >= 2, 60, "polling")

        redis.kill()
        redis.wait()
        time.sleep(2)  # the worker notices the broker is gone
        redis = start_redis(redis_port, tmp_path)
        back = datetime.now(UTC)
        took = wait(lambda: polls_since(database, model_id, back) >= 2, 30, "polling again")
        print(f"Polling again {took:.1f} s after Redis came back")

        # A worker that dies outright (as one does on kombu's restore_unacked_once crash).
        os.kill(demo_child(demo.pid, "worker"), signal.SIGKILL)
        killed = datetime.now(UTC)
        wait(lambda: "The worker exited" in log.read_text(), 10, "the demo noticing")
        took = wait(lambda: polls_since(database, model_id, killed) >= 2, 30, "polling again")
        print(f"Polling again {took:.1f} s after the worker was killed")
        assert "The worker is running again" in log.read_text()
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(timeout=30)
        redis.kill()
        redis.wait()
    output = log.read_text()
    assert child_pids(tmp_path) == [], output[-3000:]
