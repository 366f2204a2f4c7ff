"""The README's first command, run as a newcomer would: embedded, with nothing else running."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.processes import ROOT, child_pids, free_port


class Demo:
    def __init__(self, data_dir: Path, port: int):
        # Embedded, as on a laptop: no Postgres or Redis even when the suite runs on them.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "CELERY_"))}
        env.update(DASHBOARD_DATA_DIR=str(data_dir), SIMULATOR_TIME_SCALE="200")
        env.pop("SCENARIO_API_URL", None)
        self.log = data_dir / f"demo-{time.monotonic_ns()}.log"
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "demo", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log.read_text()

    def wait_for(self, pattern: str, seconds: float = 90) -> re.Match:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            match = re.search(pattern, self.output())
            if match:
                return match
            assert self.process.poll() is None, self.output()[-3000:]
            time.sleep(0.25)
        pytest.fail(f"demo never printed {pattern!r}:\n{self.output()[-3000:]}")

    def interrupt(self, times: int = 1) -> int:
        for n in range(times):
            if n:
                time.sleep(0.3)  # the copy forwarded by uv comes a moment later, mid-stop
            self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=30)

    def wait_until_up(self) -> str:
        """Wait for the logins printed once everything is up; returns the output until then."""
        self.wait_for(r"Press Ctrl-C to stop\.\n")
        return self.output()


def wait_for_children_to_exit(data_dir: Path, seconds: float = 8) -> list[str]:
    deadline = time.monotonic() + seconds
    while (left := child_pids(data_dir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def launch_a_training(data_dir: Path, port: int) -> None:
    models = requests.get(
        f"http://127.0.0.1:{port}/sim/v1/models", auth=("demo-key", "demo-secret"), timeout=5
    ).json()["models"]
    flux = next(m for m in models if m["name"] == "Flux portrait v3")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "CELERY_"))}
    env.update(DASHBOARD_DATA_DIR=str(data_dir), DASHBOARD_PORT=str(port))
    subprocess.run(
        [sys.executable, "manage.py", "train", flux["id"], "--as", "alice"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )


def test_demo_serves_the_app_and_simulator_runs_workers_and_stops_cleanly(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    demo = Demo(tmp_path, port)
    try:
        output = demo.wait_until_up()
        assert re.search(r"Training dashboard: http://127\.0\.0\.1:\d+/", output)
        assert "alice" in output and "demo-pass-123" in output
        assert "Could not sync" not in output
        # The logins are printed once the worker and beat are up, and stay the last lines:
        # sweeps every 2 s that find nothing due print nothing.
        banner = output.rindex("Training dashboard:")
        assert re.search(r"celery@\S+ ready\.", output[:banner]), "printed before the worker"
        assert "beat: Starting..." in output[:banner], "printed before beat"
        time.sleep(5)
        assert demo.output() == output

        assert requests.get(f"{base}/login/", timeout=5).status_code == 200
        assert requests.get(f"{base}/sim/v1/models", timeout=5).status_code == 401
        models = requests.get(
            f"{base}/sim/v1/models", auth=("demo-key", "demo-secret"), timeout=5
        ).json()["models"]
        assert {"flux.1-lora", "elevenlabs-voice"} <= {m["type"] for m in models}
        # Beat schedules the sweep and the worker runs it: both processes are alive and wired,
        # and a sweep that sends a run on says so.
        launch_a_training(tmp_path, port)
        demo.wait_for(r"Sweep: 1 run\(s\) due, sent to the workers")
    finally:
        # Under `uv run`, one Ctrl-C reaches demo twice: from the terminal and from uv.
        exit_code = demo.interrupt(times=2)
    output = demo.output()
    assert exit_code == 0, output[-3000:]
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output[-3000:]
    assert output.rstrip().endswith("Stopped.")
    assert child_pids(tmp_path) == []


def test_a_hard_kill_of_demo_takes_its_children_with_it(tmp_path):
    demo = Demo(tmp_path, free_port())
    demo.wait_until_up()
    assert len(child_pids(tmp_path)) >= 3  # web, worker (and its pool), beat
    demo.process.kill()
    demo.process.wait()
    assert wait_for_children_to_exit(tmp_path) == []


def test_a_second_start_reuses_the_data(tmp_path):
    port = free_port()
    first = Demo(tmp_path, port)
    first.wait_for(r"Training dashboard:")
    first.interrupt()

    second = Demo(tmp_path, port)
    try:
        second.wait_for(r"Training dashboard:")
        models = requests.get(
            f"http://127.0.0.1:{port}/sim/v1/models",
            auth=("demo-key", "demo-secret"),
            params={"pageSize": 100},
            timeout=5,
        ).json()["models"]
    finally:
        second.interrupt()
    names = [m["name"] for m in models]
    assert len(names) == len(set(names)), "the second start seeded the models again"
    assert "Flux portrait v3" in names
