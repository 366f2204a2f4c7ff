"""Benchmark the live fragments under gunicorn, beside a hello-world page in the same run.

    python3 -m uv run python -m bench.live [--seconds 3] [--rounds 5] [--workers 3]
        [--pollers 100] [--poll-seconds 20] [--poll-rounds 4] [--poll-processes 4]

Needs `wrk` (Debian: apt-get install wrk) and Postgres. Seeds a fresh database
(BENCH_LIVE_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/bench_live) with a team
of 20 active and 10 finished runs, signs a lead in, and serves the dashboard with gunicorn
(bench.live_settings adds /bench/hello/: signed in, the same middleware and session, no
query of its own), with 3 sync workers, as compose's `web` runs it (`--workers 2`, one per
core of the machine it was written on, gave the same throughput ratios within the noise).

1. Throughput, with wrk (2 threads, 16 connections): hello; a run's live fragment unchanged
   (204) and rendered; the dashboard board unchanged (204) and rendered. Each case is
   measured `--rounds` times, the rounds interleaved so that a slow moment of the machine
   falls on every case alike, and its median is kept. Printed as requests per second, as a
   ratio to hello (× hello) and as a cost (hello's requests per second over the case's: 2.0
   is twice hello's server time per request); and as the CPU time the server side spent per
   request (gunicorn's workers and their Postgres backends, read from /proc), with its ratio
   to hello's: on a machine shared with other work, that one moves much less.
2. Latency as clients see it: `--pollers` clients on hello, the baseline, then as many, half
   on the unchanged run fragment and half on the unchanged board, each asking every 2 s,
   spread evenly over the 2 s; `--poll-seconds` for each in all, in `--poll-rounds` turns.
   The clients are asyncio tasks over plain sockets, in `--poll-processes` processes, so
   that the bench's own scheduling stays out of the figures: each request is timed from its
   connect to its last byte (gunicorn's sync workers close every connection, as they do for
   browsers), and the bench also prints how late it sent its requests against their
   schedule (its own lag), which would show a client that cannot keep up.
3. The resident memory of each gunicorn process after all of this.

The machine's load average is printed at the start and the end: on a shared machine, it says
how much of the figures is someone else's work. Figures, not pass/fail; the targets of issue
16 are printed beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta
from multiprocessing import get_context
from urllib.parse import urlsplit

import requests

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/bench_live"
ACTIVE_RUNS, FINISHED_RUNS = 20, 10
POLL_EVERY = 2.0
HELLO = "hello (signed in)"


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
        # Each worker keeps its one connection for the whole run, so that its Postgres
        # backend, whose CPU time is counted, stays the same process.
        DATABASE_CONN_MAX_AGE="3600",
    )
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-secret-key-not-for-production")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def seed() -> tuple[str, int]:
    """Make a team with active and finished runs; return a lead's session id and a run."""
    from django.contrib.auth import get_user_model
    from django.db import connections
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
    connections.close_all()  # the poller processes are forked: they must not share it
    return client.cookies["sessionid"].value, runs[0].pk


def serve(port: int, workers: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "gunicorn", "dashboard.wsgi:application",
               "-b", f"127.0.0.1:{port}", "-w", str(workers), "--log-level", "warning"]  # fmt: skip
    server = subprocess.Popen(command, env=os.environ.copy(), start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/login/", timeout=5)
            return server
        except requests.RequestException:  # not listening yet, or still importing
            time.sleep(0.2)
    os.killpg(server.pid, signal.SIGTERM)
    sys.exit("gunicorn did not start")


def live_url(session: requests.Session, page: str, fragment: str) -> str:
    """The hx-get URL of a page's live fragment, as the browser would call it."""
    body = session.get(page, timeout=10).text
    match = re.search(r'hx-get="(' + re.escape(fragment) + r'[^"]*)"', body)
    if not match:
        sys.exit(f"no live fragment {fragment} on {page}")
    return html.unescape(match.group(1))


def check_status(url: str, cookie: str, expected: int) -> None:
    """Make sure a case answers what it claims to measure (a 204 is an unchanged refresh)."""
    headers = {"Cookie": f"sessionid={cookie}", "HX-Request": "true"}
    status = requests.get(url, headers=headers, timeout=10, allow_redirects=False).status_code
    if status != expected:
        sys.exit(f"{url} answered {status}, not {expected}: the case would measure something else")


def wrk(url: str, seconds: int, cookie: str) -> tuple[float, int]:
    """Requests per second wrk reaches on url, and how many requests it made."""
    command = ["wrk", "-t2", "-c16", f"-d{seconds}s", "-H", f"Cookie: sessionid={cookie}",
               "-H", "HX-Request: true", url]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        sys.exit(f"wrk saw errors on {url}:\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return rate, int(re.search(r"(\d+) requests in", out).group(1))


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) the processes have used so far; a process gone counts 0."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def server_pids(server: subprocess.Popen) -> list[int]:
    """The gunicorn workers and the Postgres backends serving them: the whole server side."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        )
        backends = [row[0] for row in cursor.fetchall()]
    connection.close()
    return [*children(server.pid), *backends]


# --- Pollers: clients that ask every 2 s, timed as they see it -------------------------------


async def _get(host: str, port: int, request: bytes) -> int:
    """Send one request on a new connection and read the whole answer; return its status."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        if length:
            await reader.readexactly(int(length.group(1)))
        else:
            await reader.read()  # until the server closes
        return status
    finally:
        writer.close()


async def _poll(url: str, cookie: str, start: float, seconds: float, out: dict) -> None:
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    request = (f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nCookie: sessionid={cookie}\r\n"
               "HX-Request: true\r\nConnection: close\r\n\r\n").encode()  # fmt: skip
    due = start
    while due < start + seconds:
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        sent = time.monotonic()
        out["lag"].append((sent - due) * 1000)
        began = time.perf_counter()
        status = await _get(parts.hostname, parts.port, request)
        out["ms"].append((time.perf_counter() - began) * 1000)
        out["statuses"][status] = out["statuses"].get(status, 0) + 1
        due += POLL_EVERY


def poller_process(jobs: list[tuple[str, float]], cookie: str, start: float, seconds: float):
    """Run some pollers in this process; return, by url, their latencies, lags and statuses."""

    async def main() -> dict[str, dict]:
        by_url: dict[str, dict] = {}
        tasks = []
        for url, offset in jobs:
            out = by_url.setdefault(url, {"ms": [], "lag": [], "statuses": {}})
            tasks.append(_poll(url, cookie, start + offset, seconds, out))
        await asyncio.gather(*tasks)
        return by_url

    return asyncio.run(main())


def pollers(urls: list[str], count: int, seconds: float, cookie: str, processes: int) -> dict:
    """`count` clients, spread over the urls and over 2 s, in `processes` processes."""
    jobs = [(urls[i % len(urls)], POLL_EVERY * i / count) for i in range(count)]
    start = time.monotonic() + 1.0  # every process is up before the first poll is due
    shares = [jobs[p::processes] for p in range(processes)]
    merged: dict[str, dict] = {}
    with ProcessPoolExecutor(processes, mp_context=get_context("fork")) as pool:
        futures = [pool.submit(poller_process, share, cookie, start, seconds) for share in shares]
        for future in futures:
            merge(merged, future.result())
    return merged


def merge(into: dict[str, dict], results: dict[str, dict]) -> dict[str, dict]:
    for url, kind in results.items():
        total = into.setdefault(url, {"ms": [], "lag": [], "statuses": {}})
        total["ms"] += kind["ms"]
        total["lag"] += kind["lag"]
        for status, n in kind["statuses"].items():
            total["statuses"][status] = total["statuses"].get(status, 0) + n
    return into


def poll_rounds(hello: str, fragments: list[str], args, cookie: str) -> tuple[dict, dict]:
    """Poll hello, then the fragments, in turns: a busy moment of the machine hits both."""
    share = args.poll_seconds / args.poll_rounds
    baseline: dict[str, dict] = {}
    polled: dict[str, dict] = {}
    for round_number in range(args.poll_rounds):
        print(f"polling, turn {round_number + 1}/{args.poll_rounds} …", file=sys.stderr)
        merge(baseline, pollers([hello], args.pollers, share, cookie, args.poll_processes))
        merge(polled, pollers(fragments, args.pollers, share, cookie, args.poll_processes))
    return baseline[hello], polled


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


# --- Memory ----------------------------------------------------------------------------------


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


# --- The run ---------------------------------------------------------------------------------


def measure_throughput(cases: dict[str, str], args, cookie: str, server) -> dict[str, dict]:
    """Measure each case `--rounds` times, interleaved; keep the medians.

    Beside wrk's rate, the CPU time the server side spent per request (gunicorn's workers and
    their Postgres backends), which other work on a shared machine disturbs much less than a
    rate: it is what a request costs, not how fast the machine happened to be then.
    """
    rounds: dict[str, dict[str, list]] = {name: {"rate": [], "cpu": []} for name in cases}
    for round_number in range(args.rounds):
        for name, url in cases.items():
            print(f"round {round_number + 1}/{args.rounds}: {name} …", file=sys.stderr, flush=True)
            pids = server_pids(server)
            used = cpu_seconds(pids)
            rate, requests_made = wrk(url, args.seconds, cookie)
            rounds[name]["rate"].append(rate)
            rounds[name]["cpu"].append((cpu_seconds(pids) - used) / requests_made * 1000)
    return {
        name: {kind: statistics.median(values) for kind, values in measured.items()}
        for name, measured in rounds.items()
    }


def print_throughput(results: dict[str, dict], targets: dict[str, str]) -> None:
    hello = results[HELLO]
    print(f"Throughput (wrk, median of the rounds){'':4}{'req/s':>7}{'× hello':>9}"
          f"{'cost':>7}{'CPU ms':>9}{'cost':>7}   issue 16")  # fmt: skip
    for name, measured in results.items():
        rate, cpu = measured["rate"], measured["cpu"]
        print(f"  {name:40}{rate:>7.0f}{rate / hello['rate']:>9.2f}"
              f"{hello['rate'] / rate:>7.2f}{cpu:>9.2f}{cpu / hello['cpu']:>7.2f}"
              f"   {targets.get(name, '')}")  # fmt: skip
    print("  (cost: hello's rate over the case's; CPU ms: the server side's CPU per request,")
    print("   gunicorn and Postgres; its cost: over hello's. × hello ≥ 0.5 is cost ≤ 2.)")


def print_pollers(baseline: dict, results: dict[str, dict], names: dict[str, str], count) -> None:
    """Print the latencies of the pollers, each beside hello's under the same 100 pollers."""
    hello = baseline["ms"]
    h50, h99 = statistics.median(hello), percentile(hello, 0.99)
    print(f"{count} pollers every {POLL_EVERY:.0f} s, as clients see it (connect to last byte):")
    print(f"  {HELLO:40}{len(hello):>6} answers: p50 {h50:.1f} ms, p99 {h99:.1f} ms (alone)")
    every = [ms for kind in results.values() for ms in kind["ms"]]
    for url, kind in results.items():
        statuses = ", ".join(f"{n}× {status}" for status, n in sorted(kind["statuses"].items()))
        p50, p99 = statistics.median(kind["ms"]), percentile(kind["ms"], 0.99)
        print(f"  {names[url]:40}{len(kind['ms']):>6} answers ({statuses}): p50 {p50:.1f} ms "
              f"({p50 / h50:.2f}× hello), p99 {p99:.1f} ms ({p99 / h99:.2f}× hello)")  # fmt: skip
    p50, p99 = statistics.median(every), percentile(every, 0.99)
    print(f"  {'both, together':40}{len(every):>6} answers: p50 {p50:.1f} ms, p99 {p99:.1f} ms"
          f" ({p99 / h99:.2f}× hello)   issue 16: p99 ≤ 50 ms")  # fmt: skip
    lags = baseline["lag"] + [lag for kind in results.values() for lag in kind["lag"]]
    print(f"  the bench's own lag sending them: p50 {statistics.median(lags):.1f} ms, "
          f"p99 {percentile(lags, 0.99):.1f} ms (how late against the schedule)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=3, help="each wrk measurement")
    parser.add_argument("--rounds", type=int, default=5, help="wrk measurements of each case")
    parser.add_argument("--pollers", type=int, default=100)
    parser.add_argument("--poll-seconds", type=float, default=20, help="for each, in all")
    parser.add_argument("--poll-rounds", type=int, default=4)
    parser.add_argument("--poll-processes", type=int, default=4)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers (compose: 3)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench.live needs wrk: apt-get install wrk")
    load_before = os.getloadavg()
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
        unchanged_run, unchanged_board = "run fragment, unchanged (204)", "board, unchanged (204)"
        cases = {
            HELLO: f"{base}/bench/hello/",
            unchanged_run: run_live,
            "run fragment, rendered": re.sub(r"token=[^&]*", "token=old", run_live),
            unchanged_board: board,
            "board, rendered": re.sub(r"token=[^&]*", "token=old", board),
        }
        for name, url in cases.items():
            check_status(url, cookie, 204 if "unchanged" in name else 200)
        targets = {unchanged_run: "≥ 0.50× hello", unchanged_board: "cost ≤ 2.00"}
        print_throughput(measure_throughput(cases, args, cookie, server), targets)
        names = {run_live: unchanged_run, board: unchanged_board}
        baseline, polled = poll_rounds(cases[HELLO], [run_live, board], args, cookie)
        print_pollers(baseline, polled, names, args.pollers)
        print("Resident memory after the runs (issue 16: ≤ 150 MB each):")
        for pid in [server.pid, *children(server.pid)]:
            role = "gunicorn master" if pid == server.pid else "gunicorn worker"
            print(f"  {role} {pid}: {resident_mb(pid):.0f} MB")
        load_after = os.getloadavg()
        print(f"Load average (1 min) at the start {load_before[0]:.2f}, at the end "
              f"{load_after[0]:.2f}, on {os.cpu_count()} cores")  # fmt: skip
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
