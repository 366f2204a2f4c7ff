"""Benchmark the live fragments under gunicorn, beside a hello-world page in the same run.

    python3 -m uv run python -m bench.live [--seconds 5] [--pollers 100] [--poll-seconds 20]

Needs `wrk` (Debian: apt-get install wrk) and Postgres. Seeds a fresh database
(BENCH_LIVE_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/bench_live) with a team
of 20 active and 10 finished runs, signs a lead in, and serves the dashboard with gunicorn
(bench.live_settings adds /bench/hello/: signed in, the same middleware and session, no
query of its own). Then, with wrk, the throughput of: hello; a run's live fragment unchanged
(204) and rendered; the dashboard board unchanged (204) and rendered, each as a ratio to
hello. Then 100 pollers, each asking for a run's unchanged fragment every 2 s, print the
latency p50 and p99. Last, the resident memory of each gunicorn process. Figures, not
pass/fail.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from datetime import timedelta

import requests

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/bench_live"
ACTIVE_RUNS, FINISHED_RUNS = 20, 10


def prepare_environment(url: str) -> None:
    from bench.history import ensure_database

    ensure_database(url, fresh=True)
    os.environ.update(
        DATABASE_URL=url,
        DJANGO_SETTINGS_MODULE="bench.live_settings",
        DJANGO_DEBUG="false",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost,testserver",
        DJANGO_SECURE_COOKIES="false",
        DJANGO_SECURE_SSL_REDIRECT="false",
        DJANGO_LOG_LEVEL="WARNING",
    )
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-secret-key-not-for-production")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def seed() -> tuple[str, int]:
    """Make a team with active and finished runs; return a lead's session id and a run."""
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.utils import timezone

    from training.models import (
        EpochSample,
        Membership,
        Role,
        RunState,
        ScenarioModel,
        Team,
        TrainingRun,
    )

    team = Team.objects.create(name="Characters")
    lead = get_user_model().objects.create_user("bench-lead", first_name="Bench")
    Membership.objects.create(user=lead, team=team, role=Role.LEAD)
    now = timezone.now()
    runs = []
    for i in range(ACTIVE_RUNS + FINISHED_RUNS):
        model = ScenarioModel.objects.create(
            remote_id=f"bench_model_{i}", name=f"Knight {i}", type="flux.1-lora", team=team
        )
        active = i < ACTIVE_RUNS
        runs.append(
            TrainingRun.objects.create(
                team=team,
                model=model,
                created_by=lead,
                model_type="flux.1-lora",
                parameters={"nbEpochs": 4, "maxTrainSteps": 400},
                state=RunState.RUNNING if active else RunState.SUCCEEDED,
                job_id=f"job_bench_{i}",
                stage="running-train" if active else "",
                progress=0.5 if active else 1.0,
                train_started_at=now - timedelta(minutes=10),
                train_ended_at=None if active else now - timedelta(minutes=1),
                finished_at=None if active else now - timedelta(minutes=1),
            )
        )
    for run in runs:
        EpochSample.objects.bulk_create(
            EpochSample(run=run, epoch=f"ep_{run.pk}_{e}", epoch_index=e, prompt_index=0,
                        prompt="a knight", asset_id=f"asset_{run.pk}_{e}",
                        url=f"https://cdn.example.test/{run.pk}/{e}.webp")
            for e in range(2)
        )  # fmt: skip
    client = Client()
    client.force_login(lead)
    return client.cookies["sessionid"].value, runs[0].pk


def serve(port: int, workers: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "gunicorn", "dashboard.wsgi:application",
               "-b", f"127.0.0.1:{port}", "-w", str(workers), "--log-level", "warning"]  # fmt: skip
    server = subprocess.Popen(command, env=os.environ.copy(), start_new_session=True)
    for _ in range(100):
        try:
            requests.get(f"http://127.0.0.1:{port}/login/", timeout=1)
            return server
        except requests.ConnectionError:
            time.sleep(0.1)
    server.kill()
    sys.exit("gunicorn did not start")


def live_url(session: requests.Session, page: str, fragment: str) -> str:
    """The hx-get URL of a page's live fragment, as the browser would call it."""
    body = session.get(page, timeout=10).text
    match = re.search(r'hx-get="(' + re.escape(fragment) + r'[^"]*)"', body)
    if not match:
        sys.exit(f"no live fragment {fragment} on {page}")
    return html.unescape(match.group(1))


def wrk(url: str, seconds: int, cookie: str) -> float:
    """Requests per second wrk reaches on url."""
    command = ["wrk", "-t2", "-c16", f"-d{seconds}s", "-H", f"Cookie: sessionid={cookie}",
               "-H", "HX-Request: true", url]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        sys.exit(f"wrk saw errors on {url}:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def pollers(url: str, count: int, seconds: float, cookie: str) -> list[float]:
    """`count` clients asking for url every 2 s for `seconds`; return latencies in ms."""
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    def poll(offset: float) -> None:
        session = requests.Session()
        session.headers.update({"HX-Request": "true", "Cookie": f"sessionid={cookie}"})
        time.sleep(offset)
        while time.monotonic() < deadline:
            started = time.perf_counter()
            answer = session.get(url, timeout=10)
            latencies.append((time.perf_counter() - started) * 1000)
            if answer.status_code != 204:
                print(f"a poller got {answer.status_code}", file=sys.stderr)
            time.sleep(max(0.0, 2.0 - (time.perf_counter() - started)))

    threads = [threading.Thread(target=poll, args=(2.0 * i / count,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies


def resident_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return kb / 1024


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listed:
            return [int(child) for child in listed.read().split()]
    except FileNotFoundError:
        return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="each wrk measurement")
    parser.add_argument("--pollers", type=int, default=100)
    parser.add_argument("--poll-seconds", type=float, default=20)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench.live needs wrk: apt-get install wrk")
    prepare_environment(os.environ.get("BENCH_LIVE_DATABASE_URL", DEFAULT_URL))
    cookie, run_pk = seed()
    print("seeded; starting gunicorn …", file=sys.stderr, flush=True)
    server = serve(args.port, args.workers)
    try:
        base = f"http://127.0.0.1:{args.port}"
        browser = requests.Session()
        browser.cookies.set("sessionid", cookie)
        run_live = base + live_url(browser, f"{base}/runs/{run_pk}/", f"/runs/{run_pk}/live/")
        board = base + live_url(browser, f"{base}/", "/live/board/")
        cases = {
            "hello (signed in)": f"{base}/bench/hello/",
            "run fragment, unchanged (204)": run_live,
            "run fragment, rendered": re.sub(r"token=[^&]*", "token=old", run_live),
            "board, unchanged (204)": board,
            "board, rendered": re.sub(r"token=[^&]*", "token=old", board),
        }
        rates = {}
        for name, url in cases.items():
            print(f"measuring {name} …", file=sys.stderr, flush=True)
            rates[name] = wrk(url, args.seconds, cookie)
        hello = rates["hello (signed in)"]
        print(f"{'':32}{'req/s':>10}{'× hello':>10}{'cost × hello':>14}")
        for name, rate in rates.items():
            print(f"{name:32}{rate:>10.0f}{rate / hello:>10.2f}{hello / rate:>14.2f}")
        latencies = sorted(pollers(run_live, args.pollers, args.poll_seconds, cookie))
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        print(
            f"{args.pollers} pollers every 2 s on the unchanged run fragment: "
            f"{len(latencies)} answers, p50 {statistics.median(latencies):.1f} ms, p99 {p99:.1f} ms"
        )
        for pid in [server.pid, *children(server.pid)]:
            role = "gunicorn master" if pid == server.pid else "gunicorn worker"
            print(f"{role} {pid}: {resident_mb(pid):.0f} MB resident")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
