"""Benchmark how fresh the stored state stays with 100, 300 and 1,000 active runs, 1 worker.

    python3 -m uv run python -m bench.poll_scale [--runs 100,300,1000] [--json]

Needs Postgres and `redis-server`. Each size runs in a process of its own on a fresh
database (POLL_SCALE_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/poll_scale),
with its own Redis on a spare port, the simulator under gunicorn (as many GPU slots as runs:
every training runs at once), beat, and one worker (`-Q urgent,celery`, 4 processes, or with
`--pool threads` 16 threads in one), all
with the project's default poll settings. It launches N runs of about a minute each (four
epochs), and once a second compares every run's stored state and epochs with the simulator's
truth at that moment, read from the simulator's own tables. It prints: staleness p50, p99
and max (how long the stored state had been behind the truth, over every run and second),
over the whole run and once every launch was on Scenario (the launches all go out at once);
the lag from a training's end to the dashboard storing it (p50, p95, max); Scenario calls
and database transactions per run per minute; the broker's largest backlog; the CPU of each
process (seconds per second) and its memory after the run. Ratios are against the smallest
size, measured in the same run. Each second's figures (stored states, staleness, the broker's
queues) also go to trace.jsonl in the size's folder (/tmp/poll_scale_N), to see when a lag
arose.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

from bench.chaos import LIFECYCLE, ROOT, Options, Stack
from bench.history import ensure_database

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/poll_scale"
TIME_SCALE = 2.0  # simulated seconds per real second: a 300-step run trains 2.5 minutes
PARAMETERS = {"nbEpochs": 4, "maxTrainSteps": 300, "samplePrompts": ["a knight"]}
SENDING = {"draft", "waiting", "submitting"}
PRIORITY_SEP, STEPS = "\x06\x16", (0, 3, 6, 9)  # kombu's Redis transport: list per priority
SETTINGS = {"MODEL_SYNC_INTERVAL_SECONDS": "3600", "DJANGO_LOG_LEVEL": "WARNING"}


class ScaleStack(Stack):
    """Redis, the simulator under gunicorn, beat and one worker."""

    pool = ("--pool=prefork", "--concurrency=4")

    def commands(self) -> dict[str, list[str]]:
        celery = [sys.executable, "-m", "celery", "-A", "dashboard"]
        return {
            "redis": ["redis-server", "--port", str(self.redis_port), "--save", "",
                      "--appendonly", "no", "--dir", str(self.folder)],
            "simulator": [sys.executable, "-m", "gunicorn", "dashboard.wsgi:application",
                          "-b", f"127.0.0.1:{self.sim_port}", "-w", "2", "--log-level", "warning"],
            "beat": [*celery, "beat", "-l", "WARNING"],
            "worker": [*celery, "worker", "-Q", "urgent,celery", *self.pool, "-l", "WARNING"],
        }  # fmt: skip


# --- one size, in a process of its own ------------------------------------------------------


POOLS = {"prefork": ("--pool=prefork", "--concurrency=4"),
         "threads": ("--pool=threads", "--concurrency=16")}  # fmt: skip


def run_one(count: int, folder: Path, pool: str = "prefork") -> dict:
    url = os.environ.get("POLL_SCALE_DATABASE_URL", DEFAULT_URL)
    options = Options(runs=count, time_scale=TIME_SCALE, gpu_slots=count, faults="")
    stack = ScaleStack(url, folder, options)
    stack.pool = POOLS[pool]
    for name in LIFECYCLE:  # the chaos run's quick settings: here, the project's defaults
        stack.env.pop(name, None)
    stack.env.update(SETTINGS, DJANGO_DEBUG="false", DJANGO_SECURE_SSL_REDIRECT="false",
                     DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost")  # fmt: skip
    stack.env.setdefault("DJANGO_SECRET_KEY", "bench-only-secret-key-not-for-production")
    ensure_database(url, fresh=True)
    os.environ.update(stack.env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "dashboard.settings"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    runs = seed_and_launch_later(count)
    stack.start("redis")
    for name in ("simulator", "beat", "worker"):
        stack.start(name)
    stack.wait_for_simulator()
    try:
        return measure(stack, runs())
    finally:
        stack.stop()


def seed_and_launch_later(count: int):
    """Seed the team and its models now; return the function that launches the runs."""
    from simulator import seed
    from training import access
    from training.models import ScenarioModel

    alice = access.add_member("Scale", "alice", "artist").user
    models = []
    for i in range(count):
        sim = seed.create_model(f"Scale {i:04d}", "flux.1-lora", images=4)
        models.append(ScenarioModel.objects.create(
            remote_id=sim.id, name=sim.name, type=sim.type, training_images_number=4))  # fmt: skip

    def launch() -> list[int]:
        from training import services

        return [
            services.launch_run(user=alice, model=model, parameters=PARAMETERS).pk
            for model in models
        ]

    return launch


def measure(stack: Stack, run_ids: list[int]) -> dict:
    import redis
    from django.db import connection

    from simulator import clock
    from simulator.lifecycle import Schedule
    from simulator.models import RequestLog
    from training import remote
    from training.models import FINAL_STATES, TrainingRun

    broker = redis.Redis(port=stack.redis_port)
    started, cpu_before, xacts_before = time.monotonic(), cpu_by_process(stack), transactions()
    lags: list[float] = []
    settled: list[float] = []  # once every launch is on Scenario: the steady state
    backlog = 0
    trace = (stack.folder / "trace.jsonl").open("w", buffering=1)  # a line a second
    deadline = started + 600
    while time.monotonic() < deadline:
        now = clock.now()
        schedule = Schedule.load(now)
        rows = list(
            TrainingRun.objects.filter(pk__in=run_ids).values(
                "pk", "state", "model__remote_id", "epoch_names"
            )
        )
        all_sent = not any(row["state"] in SENDING for row in rows)
        second: list[float] = []
        for row in rows:
            timeline = schedule.latest_for(row["model__remote_id"])
            if timeline is not None:
                lag = _behind(schedule, timeline, row, now, remote).total_seconds()
                second.append(lag)
                if all_sent:
                    settled.append(lag)
        lags.extend(second)
        queued = _queued(broker)
        backlog = max(backlog, sum(queued.values()))
        states = Counter(row["state"] for row in rows)
        line = {"t": round(time.monotonic() - started, 1), "states": states,
                "staleness": _spread(second, (50, 99, 100)), "broker": queued}  # fmt: skip
        trace.write(json.dumps(line) + "\n")
        if all(row["state"] in FINAL_STATES for row in rows):
            break
        connection.close()  # a new snapshot each second
        time.sleep(max(0.0, 1.0 - (time.monotonic() - started) % 1.0))
    wall = time.monotonic() - started
    cpu = {name: (seconds - cpu_before.get(name, 0.0)) / wall
           for name, seconds in cpu_by_process(stack).items()}  # fmt: skip
    schedule = Schedule.load(clock.now())
    ended = [
        (run.finished_at - schedule.latest_for(run.model.remote_id).done).total_seconds()
        for run in TrainingRun.objects.filter(pk__in=run_ids, state="succeeded").select_related(
            "model"
        )
    ]
    minutes, n = wall / 60, len(run_ids)
    calls = RequestLog.objects.count()
    return {
        "runs": n,
        "seconds": round(wall, 1),
        "finished": TrainingRun.objects.filter(pk__in=run_ids, state__in=FINAL_STATES).count(),
        "staleness": _spread(lags, (50, 99, 100)),
        "staleness_all_sent": _spread(settled, (50, 99, 100)),
        "end_shown": _spread(ended, (50, 95, 100)),
        "calls_per_run_minute": round(calls / n / minutes, 2),
        "listings": RequestLog.objects.filter(method="GET", path__endswith="/models").count(),
        "model_reads": RequestLog.objects.filter(
            method="GET", path__regex=r"/models/[^/]+$"
        ).count(),
        "transactions_per_run_minute": round((transactions() - xacts_before) / n / minutes, 1),
        "backlog_max": backlog,
        "cpu": {name: round(share, 2) for name, share in cpu.items()},
        "rss_mb": resident_by_process(stack),
    }


def _queued(broker) -> dict[str, int]:
    """Messages waiting in each queue: kombu keeps one Redis list per queue and priority step."""
    return {
        name: sum(broker.llen(f"{name}{PRIORITY_SEP}{step}" if step else name) for step in STEPS)
        for name in ("urgent", "celery")
    }


def _behind(schedule, timeline, row, now, remote) -> timedelta:
    """How long the stored run had been behind the simulator's truth at `now`."""
    state = schedule.state(timeline)
    truth = remote.local_state_for(state.model_status, state.stage)
    entered = {
        "queued": timeline.requested,
        "running": timeline.start,
        "succeeded": timeline.done,
        "failed": timeline.fail_at,
        "canceled": timeline.canceled,
    }
    behind = timedelta(0)
    if truth and row["state"] != truth and entered.get(truth):
        behind = now - entered[truth]
    stored_epochs = len(row["epoch_names"] or [])
    if stored_epochs < state.epochs_done and timeline.train_start is not None:
        span = timeline.train_end - timeline.train_start
        due = timeline.train_start + span * (stored_epochs + 1) / timeline.job.epochs
        behind = max(behind, now - due)
    return max(behind, timedelta(0))


def _spread(values: list[float], percentiles) -> dict:
    if not values:
        return {}
    ordered = sorted(values)
    return {
        f"p{p}" if p < 100 else "max": round(
            ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))], 2
        )
        for p in percentiles
    }


def transactions() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = "
            "current_database()"
        )
        return cursor.fetchone()[0]


def _session_pids(leader: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == leader:  # the session id: every process this one started
                pids.append(int(entry.name))
    return pids


def cpu_by_process(stack: Stack) -> dict[str, float]:
    ticks = os.sysconf("SC_CLK_TCK")
    seconds = {}
    for name, process in stack.processes.items():
        total = 0
        for pid in _session_pids(process.pid):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        seconds[name] = total / ticks
    return seconds


def resident_by_process(stack: Stack) -> dict[str, list[int]]:
    found = {}
    for name, process in stack.processes.items():
        sizes = []
        for pid in _session_pids(process.pid):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            kb = next((int(line.split()[1]) for line in status.splitlines()
                       if line.startswith("VmRSS:")), 0)  # fmt: skip
            sizes.append(round(kb / 1024))
        found[name] = sizes
    return found


# --- the table ------------------------------------------------------------------------------


def report(results: list[dict]) -> str:
    base = results[0]
    lines = []
    for result in results:
        ratio = result["staleness"].get("p99", 0) / max(base["staleness"].get("p99", 0), 0.01)
        lines += [
            f"N = {result['runs']}: {result['finished']} finished in {result['seconds']} s",
            f"  staleness      {result['staleness']}  (p99 × N={base['runs']}: {ratio:.2f})",
            f"    once all were launched {result['staleness_all_sent']}",
            f"  end shown lag  {result['end_shown']}",
            f"  calls/run/min  {result['calls_per_run_minute']}  (listings {result['listings']}, "
            f"reads of one model {result['model_reads']})",
            f"  transactions/run/min {result['transactions_per_run_minute']}",
            f"  broker backlog max {result['backlog_max']}",
            f"  CPU (s/s)      {result['cpu']}",
            f"  RSS (MB)       {result['rss_mb']}",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="100,300,1000")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--pool", choices=sorted(POOLS), default="prefork",
                        help="the worker's pool: 4 processes, or 16 threads in one")  # fmt: skip
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, Path(args.folder), args.pool)))
        return
    results = []
    for count in (int(n) for n in args.runs.split(",")):
        folder = Path(f"/tmp/poll_scale_{count}")
        folder.mkdir(exist_ok=True)
        child = subprocess.run(
            [sys.executable, "-m", "bench.poll_scale", "--one", str(count), "--folder",
             str(folder), "--pool", args.pool],
            cwd=ROOT, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if child.returncode:
            sys.exit(f"N = {count} failed:\n{child.stderr[-3000:]}")
        results.append(json.loads(child.stdout.strip().splitlines()[-1]))
        print(f"N = {count} done", file=sys.stderr, flush=True)
    print(json.dumps(results, indent=2) if args.json else report(results))


if __name__ == "__main__":
    main()
