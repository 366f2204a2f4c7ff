"""Chaos benchmark: N trainings through Scenario faults, killed workers and an emptied Redis.

    python3 -m uv run python -m bench.chaos [--runs 200] [--seed 1] [--json]

It starts its own Redis on a spare port, the simulator (a Django dev server) with random
faults (503s, 429s, answers that hang past the read timeout, answers lost after the work was
done), a Celery beat and two Celery workers, all on a dedicated Postgres database
(CHAOS_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/chaos_bench, created anew
at each start). It launches one run on each of N models, a share of them set
to fail, cancels a share at random moments, SIGKILLs a worker every few seconds (and starts it
again, as a supervisor would), kills Redis once and starts it again empty, waits for every run
to end, and prints, from the simulator's request log and the database:

- runs whose final state is the one Scenario's side shows, out of N;
- duplicate launches (a second training for one run), lost launches (a run with no training
  and no cancel), lost cancels (Scenario trained on for over 15 s after the cancel was
  asked), stuck runs (not ended when the drain timed out);
- runs missing trainingStats, billing or samples;
- the drain time, and the p95 time from a cancel request to Scenario receiving it.

Figures, not pass/fail; tests/ops/test_chaos.py runs a small N and asserts them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from bench.history import ensure_database

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/chaos_bench"
ROOT = Path(__file__).resolve().parent.parent
FAULTS = "503=0.10,429=0.05,hang=0.02,hang_ms=6000,lost=0.03"
API_KEY, API_SECRET = "chaos-key", "chaos-secret"
PROMPTS = ["a knight in silver armour"]
# Scenario training on this long after the cancel was asked: the cancel was lost.
LOST_CANCEL_SECONDS = 15.0
# The dashboard's side, tuned for a run of minutes (the defaults are for hours of trainings).
LIFECYCLE = {
    "SCENARIO_READ_TIMEOUT": "4",
    "SCENARIO_CONNECT_TIMEOUT": "2",
    "SCENARIO_MAX_RETRY_AFTER": "5",
    "SUBMIT_TIMEOUT_SECONDS": "20",
    "SUBMIT_GRACE_SECONDS": "3",
    "SWEEP_INTERVAL_SECONDS": "1",
    "POLL_RUNNING_SECONDS": "1",
    "POLL_QUEUED_SECONDS": "2",
    "POLL_QUEUE_STEP_SECONDS": "0.5",
    "POLL_CANCEL_SECONDS": "1",
    "POLL_MAX_SECONDS": "10",
    "MODEL_SYNC_INTERVAL_SECONDS": "3600",
    "DJANGO_LOG_LEVEL": "WARNING",
}


@dataclass
class Options:
    runs: int = 200
    seed: int = 1
    fail_share: float = 0.1
    cancel_share: float = 0.25
    cancel_within: float = 15.0  # seconds after its launch, at random
    launches_per_second: float = 10.0
    kill_every: tuple[float, float] = (5.0, 15.0)
    redis_restart_at: float = 12.0  # seconds after the first launch
    time_scale: float = 25.0  # a one-image Flux LoRA: about 6 s of training
    gpu_slots: int = 20
    drain_timeout: float = 600.0
    faults: str = FAULTS


# --- processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Stack:
    """Redis, the simulator, beat and two workers, each in its own process group."""

    def __init__(self, url: str, folder: Path, options: Options):
        self.folder, self.options = folder, options
        self.redis_port, self.sim_port = free_port(), free_port()
        self.env = {
            **os.environ,
            **LIFECYCLE,
            "DATABASE_URL": url,
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "DASHBOARD_DATA_DIR": str(folder),
            "DJANGO_DEBUG": "true",
            "SCENARIO_SIMULATOR": "true",
            "SCENARIO_API_URL": f"http://127.0.0.1:{self.sim_port}/sim/v1",
            "SCENARIO_API_KEY": API_KEY,
            "SCENARIO_API_SECRET": API_SECRET,
            # Every process walks the simulator's queue the same way, this one included.
            "SIMULATOR_TIME_SCALE": str(options.time_scale),
            "SIMULATOR_GPU_SLOTS": str(options.gpu_slots),
            "PYTHONUNBUFFERED": "1",
        }
        self.processes: dict[str, subprocess.Popen] = {}
        self.kills = self.exits = 0

    def commands(self) -> dict[str, list[str]]:
        celery = [sys.executable, "-m", "celery", "-A", "dashboard"]
        worker = [*celery, "worker", "-Q", "urgent,celery", "--concurrency=4", "-l", "WARNING"]
        return {
            "redis": ["redis-server", "--port", str(self.redis_port), "--save", "",
                      "--appendonly", "no", "--dir", str(self.folder)],
            "simulator": [sys.executable, "manage.py", "runserver", "--noreload",
                          f"127.0.0.1:{self.sim_port}"],
            "beat": [*celery, "beat", "-l", "WARNING"],
            "worker-1": [*worker, "-n", "chaos1@%h"],
            "worker-2": [*worker, "-n", "chaos2@%h"],
        }  # fmt: skip

    def start(self, name: str) -> None:
        env = dict(self.env)
        if name == "simulator":
            env["SIMULATOR_FAULTS"] = self.options.faults
        log = (self.folder / f"{name}.log").open("a")
        self.processes[name] = subprocess.Popen(
            self.commands()[name],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if name == "redis":
            self._wait_for_redis()

    def _wait_for_redis(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.redis_port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def wait_for_simulator(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.sim_port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("the simulator did not start")

    def kill(self, name: str) -> None:
        """SIGKILL a process and everything it started."""
        process = self.processes[name]
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()

    def restart_exited(self) -> None:
        """Start again whatever exited on its own, as a supervisor would."""
        for name, process in list(self.processes.items()):
            if process.poll() is not None:
                self.exits += 1
                print(f"  {name} exited on its own (code {process.returncode}); restarting")
                self.start(name)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


# --- the run --------------------------------------------------------------------------------


@dataclass
class Plan:
    """Which models fail, which runs are canceled and when."""

    names: list[str]
    cancel_after: dict[int, float]  # index → seconds after its launch


def make_plan(options: Options, rng: random.Random) -> Plan:
    n = options.runs
    failing = set(rng.sample(range(n), round(n * options.fail_share)))
    canceled = rng.sample(range(n), round(n * options.cancel_share))
    names = [f"Chaos {i:03d}{' fail' if i in failing else ''}" for i in range(n)]
    cancel_after = {i: rng.uniform(0, options.cancel_within) for i in canceled}
    return Plan(names=names, cancel_after=cancel_after)


def prepare_environment(url: str, stack: Stack) -> None:
    """Point this process at the stack's database and broker, created anew and migrated."""
    ensure_database(url, fresh=True)
    os.environ.update(stack.env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "dashboard.settings"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)


def seed_models(plan: Plan):
    """The team, its people, and one simulated model (one image) per run, mirrored."""
    from simulator import seed
    from training import access
    from training.models import ScenarioModel

    bob = access.add_member("Chaos", "bob", "lead").user
    alice = access.add_member("Chaos", "alice", "artist").user
    models = []
    for name in plan.names:
        sim = seed.create_model(name, "flux.1-lora", images=1)
        models.append(
            ScenarioModel.objects.create(
                remote_id=sim.id, name=name, type=sim.type, training_images_number=1
            )
        )
    return alice, bob, models


@dataclass
class Chaos:
    options: Options
    stack: Stack
    rng: random.Random
    runs: list = field(default_factory=list)
    cancel_requests: dict[int, datetime] = field(default_factory=dict)  # run pk → asked at

    def drive(self, plan: Plan, alice, bob, models) -> float:
        """Launch, cancel, kill and restart until every run ended; return the drain time."""
        from training import services
        from training.models import ACTIVE_STATES, TrainingRun

        options, stack = self.options, self.stack
        started = time.monotonic()
        next_kill = started + self.rng.uniform(*options.kill_every)
        redis_at = started + options.redis_restart_at
        launched_at: dict[int, float] = {}
        while True:
            now = time.monotonic()
            due = min(options.runs, math.floor((now - started) * options.launches_per_second) + 1)
            for index in range(len(self.runs), due):
                parameters = {"nbEpochs": 2, "samplePrompts": PROMPTS}
                run = services.launch_run(user=alice, model=models[index], parameters=parameters)
                self.runs.append(run)
                launched_at[index] = now
            for index, after in list(plan.cancel_after.items()):
                if index in launched_at and now >= launched_at[index] + after:
                    del plan.cancel_after[index]
                    self._cancel(self.runs[index], bob)
            if now >= next_kill:
                victim = self.rng.choice(["worker-1", "worker-2"])
                stack.kill(victim)
                stack.kills += 1
                stack.start(victim)
                next_kill = now + self.rng.uniform(*options.kill_every)
            if redis_at and now >= redis_at:
                print("  Redis killed; starting it again, empty")
                stack.kill("redis")
                stack.start("redis")
                redis_at = 0
            stack.restart_exited()
            active = TrainingRun.objects.filter(state__in=ACTIVE_STATES).count()
            if len(self.runs) == options.runs and not active and not plan.cancel_after:
                return time.monotonic() - started
            if now - started > options.drain_timeout:
                return time.monotonic() - started
            time.sleep(0.2)

    def _cancel(self, run, bob) -> None:
        from training import services

        run.refresh_from_db()
        if run.is_final:
            return
        if services.request_cancel(run, bob):
            # cancel_requested, or canceled at once when it was still a draft
            event = run.events.filter(source="user", to_state__startswith="cancel").last()
            self.cancel_requests[run.pk] = event.at


# --- figures --------------------------------------------------------------------------------

EXPECTED = {"success": "succeeded", "failure": "failed", "canceled": "canceled"}


def figures(chaos: Chaos, drain: float) -> dict:
    """Compare every run with what the simulator did for its model."""
    from simulator import clock
    from simulator.lifecycle import Schedule
    from simulator.models import RequestLog, SimJob
    from training.models import TrainingRun

    schedule = Schedule.load(clock.now())
    counts = dict.fromkeys(
        ["right", "duplicate_launches", "lost_launches", "lost_cancels", "stuck",
         "missing_training_stats", "missing_billing", "missing_samples", "cost_unknown"], 0
    )  # fmt: skip
    latencies = []
    wrong = []
    for run in TrainingRun.objects.select_related("model").order_by("pk"):
        jobs = list(SimJob.objects.filter(model_id=run.model.remote_id).order_by("requested_at"))
        asked = chaos.cancel_requests.get(run.pk)
        counts["duplicate_launches"] += max(0, len(jobs) - 1)
        counts["stuck"] += not run.is_final
        counts["cost_unknown"] += run.cost_unknown
        if not jobs:
            expected = "canceled" if asked else None
            counts["lost_launches"] += asked is None
        else:
            timeline = schedule.timeline(jobs[-1].id)
            state = schedule.state(timeline)
            expected = EXPECTED.get(state.job_status)  # None: Scenario still trains it
            ended = state.history[-1][1] if expected else None
            if asked and state.job_status != "canceled":
                trained_on = ((ended or clock.now()) - asked).total_seconds()
                counts["lost_cancels"] += trained_on > LOST_CANCEL_SECONDS
            counts["missing_billing"] += run.cu_cost is None
            if state.started_at is not None and expected:
                counts["missing_training_stats"] += (
                    run.train_started_at is None or run.train_duration is None
                )
            counts["missing_samples"] += run.samples.count() != state.epochs_done * len(PROMPTS)
            if asked:
                cancel = (
                    RequestLog.objects.filter(
                        method="POST", path__endswith=f"/models/{run.model.remote_id}/train/action"
                    )
                    .filter(at__gte=asked, status=200)
                    .order_by("at")
                    .first()
                )
                if cancel is not None:
                    latencies.append((cancel.at - asked).total_seconds())
        if run.state == expected and len(jobs) <= 1:
            counts["right"] += 1
        else:
            wrong.append(f"run {run.pk} {run.model.name}: {run.state}, Scenario says {expected}")
    latencies.sort()
    p95 = latencies[math.ceil(0.95 * len(latencies)) - 1] if latencies else None
    return {
        "runs": chaos.options.runs,
        **counts,
        "drain_seconds": round(drain, 1),
        "cancels_asked": len(chaos.cancel_requests),
        "cancels_timed": len(latencies),
        "cancel_p95_seconds": round(p95, 2) if p95 is not None else None,
        "cancel_max_seconds": round(latencies[-1], 2) if latencies else None,
        "worker_kills": chaos.stack.kills,
        "exits_on_their_own": chaos.stack.exits,
        "second_triggers": TrainingRun.objects.filter(triggers_sent__gt=1).count(),
        "wrong": wrong[:20],
    }


def report(result: dict, options: Options) -> str:
    n = result["runs"]
    p95 = result["cancel_p95_seconds"]
    lines = [
        f"Chaos run: {n} trainings, {round(n * options.fail_share)} set to fail, "
        f"{result['cancels_asked']} canceled at random moments; faults {options.faults}; "
        f"{result['worker_kills']} worker SIGKILLs, Redis restarted empty once, "
        f"{result['exits_on_their_own']} exits on their own (restarted)",
        f"  right final state        {result['right']}/{n}",
        f"  duplicate launches       {result['duplicate_launches']}",
        f"  lost launches            {result['lost_launches']}",
        f"  lost cancels             {result['lost_cancels']}",
        f"  stuck runs               {result['stuck']}",
        f"  missing trainingStats    {result['missing_training_stats']}",
        f"  missing billing          {result['missing_billing']}"
        f" ({result['cost_unknown']} cost unknown)",
        f"  missing samples          {result['missing_samples']}",
        f"  drain time               {result['drain_seconds']} s",
        f"  cancel → Scenario p95    {p95} s (max {result['cancel_max_seconds']} s, "
        f"{result['cancels_timed']} cancels that reached a training)",
        f"  triggers sent again after a read-back: {result['second_triggers']}",
    ]
    lines += [f"  wrong: {line}" for line in result["wrong"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--kill-every", default="5-15", help="seconds between worker kills")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    args = parser.parse_args(argv)
    if shutil.which("redis-server") is None:
        parser.error("needs redis-server on PATH")
    low, _, high = args.kill_every.partition("-")
    options = Options(runs=args.runs, seed=args.seed, kill_every=(float(low), float(high or low)))
    url = os.environ.get("CHAOS_DATABASE_URL", DEFAULT_URL)
    folder = Path(tempfile.mkdtemp(prefix="chaos-"))
    stack = Stack(url, folder, options)
    rng = random.Random(options.seed)
    plan = make_plan(options, rng)
    stack.start("redis")
    try:
        prepare_environment(url, stack)
        alice, bob, models = seed_models(plan)
        for name in ("simulator", "beat", "worker-1", "worker-2"):
            stack.start(name)
        stack.wait_for_simulator()
        chaos = Chaos(options, stack, rng)
        drain = chaos.drive(plan, alice, bob, models)
    finally:
        stack.stop()
    result = figures(chaos, drain)
    print(json.dumps(result) if args.json else report(result, options))
    if args.keep_logs:
        print(f"logs in {folder}", file=sys.stderr)
    else:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
