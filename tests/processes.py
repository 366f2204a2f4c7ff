"""Helpers for tests that start the project's processes: ports, Redis, the demo's children."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """Return a TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_pids(data_dir: Path) -> list[str]:
    """Return the worker and runserver processes started for `data_dir`."""
    found = subprocess.run(
        ["pgrep", "-f", "celery -A dashboard|runserver"], capture_output=True, text=True
    ).stdout.split()
    ours = []
    for pid in found:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if f"DASHBOARD_DATA_DIR={data_dir}".encode() in environ:
            ours.append(pid)
    return ours


def start_redis(port: int, folder: Path) -> subprocess.Popen:
    """An empty Redis that keeps nothing on disk, answering PING before this returns."""
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ping = subprocess.run(
            ["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True
        ).stdout
        if "PONG" in ping:
            return process
        time.sleep(0.1)
    process.kill()
    pytest.fail("redis-server did not start")
