"""The chaos benchmark at a small N: every figure exactly as it must be.

It starts its own Redis, simulator, beat and two workers on Postgres (a database of its own,
chaos_bench, on the server of DATABASE_URL), so it runs only when the suite runs on Postgres.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.processes import ROOT

DATABASE_URL = os.environ.get("DATABASE_URL", "")

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.skipif(
        not DATABASE_URL.startswith(("postgres://", "postgresql://")),
        reason="the chaos run needs Postgres (DATABASE_URL is not a postgres:// URL)",
    ),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]


def chaos_database_url() -> str:
    parts = urlsplit(DATABASE_URL)
    return urlunsplit((parts.scheme, parts.netloc, "/chaos_bench", "", ""))


def test_twenty_runs_through_faults_kills_and_an_emptied_redis_all_end_right():
    finished = subprocess.run(
        [sys.executable, "-m", "bench.chaos", "--runs", "20", "--kill-every", "4-8", "--json"],
        cwd=ROOT,
        env={**os.environ, "CHAOS_DATABASE_URL": chaos_database_url()},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    figures = json.loads(finished.stdout.strip().splitlines()[-1])

    assert figures["wrong"] == []
    assert figures["right"] == 20
    assert figures["duplicate_launches"] == 0
    assert figures["lost_launches"] == 0
    assert figures["lost_cancels"] == 0
    assert figures["stuck"] == 0
    assert figures["missing_training_stats"] == 0
    assert figures["missing_billing"] == 0
    assert figures["cost_unknown"] == 0
    assert figures["missing_samples"] == 0
    assert figures["worker_kills"] >= 1
    assert figures["cancels_asked"] >= 1
    if figures["cancel_p95_seconds"] is not None:
        assert figures["cancel_p95_seconds"] < 15
