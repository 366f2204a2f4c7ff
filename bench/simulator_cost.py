"""Benchmark what one simulator answer costs with 100, 1,000 and 10,000 jobs on as many slots.

    python3 -m uv run python -m bench.simulator_cost [--jobs 100,1000,10000] [--repeat 30]

Seeds a throwaway SQLite database with that many models, each with one training job, spread
over the last hour so that some have ended and the rest still train, then times answers
through Django's test client (the whole request in-process): a model, a job, and a page of
500 models that are training. The baseline is the same answers with a single job, measured
in the same run; each figure is printed beside its ratio to it (a page of training models is
also given per model listed, since the baseline's page lists one). "after a launch" is the
first answer after a job was added, which places it after the kept walk; "after a cancel"
the first after a cancel, which walks the queue again. It prints figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta

KEY, SECRET = "bench-key", "bench-secret"


def prepare_environment(path: str) -> None:
    os.environ["DATABASE_URL"] = f"sqlite:///{path}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    os.environ["DJANGO_DEBUG"] = "false"
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-secret-key-not-for-production")
    os.environ["DJANGO_ALLOWED_HOSTS"] = "testserver"
    os.environ["DJANGO_SECURE_SSL_REDIRECT"] = "false"
    os.environ["DJANGO_LOG_LEVEL"] = "WARNING"
    os.environ["SCENARIO_API_KEY"], os.environ["SCENARIO_API_SECRET"] = KEY, SECRET
    os.environ["SIMULATOR_FAULTS"] = ""
    os.environ["SCENARIO_SIMULATOR"] = "true"

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def seed(count: int) -> list[tuple[str, str]]:
    """Make `count` models with one job each; return (model id, job id) pairs."""
    from simulator import clock
    from simulator.lifecycle import train_seconds
    from simulator.models import SimJob, SimModel, SimScheduleStamp, new_id

    SimJob.objects.all().delete()
    SimModel.objects.all().delete()
    now = clock.now()
    models = [
        SimModel(
            id=new_id("model_"),
            name=f"Bench {i}",
            type="flux.1-lora",
            created_at=now,
            updated_at=now,
        )
        for i in range(count)
    ]
    SimModel.objects.bulk_create(models, batch_size=2000)
    jobs = [
        SimJob(
            id=new_id("job_"),
            model=model,
            job_type="flux.1-lora",
            image_count=10,
            steps=1000,
            epochs=10,
            train_seconds=train_seconds(1000),
            time_scale=1.0,
            cost=100.0,
            discount=0.0,
            # Over the last hour, the newest now: the older two thirds have ended.
            requested_at=now - timedelta(seconds=3600 * (count - 1 - i) / count),
        )
        for i, model in enumerate(models)
    ]
    SimJob.objects.bulk_create(jobs, batch_size=2000)  # no signals: bump the stamp ourselves
    SimScheduleStamp.bump()
    return [(job.model_id, job.id) for job in jobs]


def timed(client, path: str, repeat: int, headers: dict) -> float:
    """Median milliseconds of `repeat` answers to GET path, after one not counted."""
    times = []
    for _ in range(repeat + 1):
        started = time.perf_counter()
        response = client.get(path, **headers)
        times.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            sys.exit(f"GET {path} answered {response.status_code}: {response.content[:200]!r}")
    return statistics.median(times[1:])


def measure(count: int, repeat: int) -> dict[str, float]:
    from django.conf import settings
    from django.test import Client

    from simulator.models import SimScheduleStamp

    settings.SIMULATOR_GPU_SLOTS = count
    pairs = seed(count)
    model_id, job_id = pairs[-1]
    client = Client()
    token = base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
    headers = {"HTTP_AUTHORIZATION": f"Basic {token}"}
    page = "/sim/v1/models?status=training&pageSize=500"
    listed = len(client.get(page, **headers).json()["models"])
    figures = {
        "model": timed(client, f"/sim/v1/models/{model_id}", repeat, headers),
        "job": timed(client, f"/sim/v1/jobs/{job_id}", repeat, headers),
        "training page": timed(client, page, max(3, repeat // 5), headers),
    }
    figures["page, per model"] = figures["training page"] / listed
    figures["after a launch"] = after(lambda: launch(model_id), client, model_id, repeat, headers)
    figures["after a cancel"] = after(SimScheduleStamp.bump, client, model_id, repeat, headers)
    return figures


def launch(model_id: str) -> None:
    """Store one more job, as a launch does (the answer to the launch itself not timed)."""
    from simulator import clock
    from simulator.models import SimJob

    job = SimJob.objects.filter(model_id=model_id).first()
    job.pk, job.requested_at = None, clock.now()
    job.id = f"{job.model_id}-{time.perf_counter_ns()}"
    job.save(force_insert=True)


def after(change, client, model_id: str, repeat: int, headers: dict) -> float:
    """Median milliseconds of the first answer after `change`."""
    times = []
    for _ in range(max(3, repeat // 10)):
        change()
        started = time.perf_counter()
        client.get(f"/sim/v1/models/{model_id}", **headers)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default="100,1000,10000")
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    counts = [int(n) for n in args.jobs.split(",")]
    with tempfile.TemporaryDirectory() as folder:
        prepare_environment(os.path.join(folder, "simulator-bench.sqlite3"))
        baseline = measure(1, args.repeat)
        print(f"{'jobs':>7}  " + "  ".join(f"{name:>24}" for name in baseline))
        print(f"{1:>7}  " + "  ".join(f"{ms:>9.2f} ms (baseline)  " for ms in baseline.values()))
        for count in counts:
            figures = measure(count, args.repeat)
            cells = [f"{ms:>9.2f} ms ({ms / baseline[k]:5.2f}×)   " for k, ms in figures.items()]
            print(f"{count:>7}  " + "  ".join(cells))


if __name__ == "__main__":
    main()
