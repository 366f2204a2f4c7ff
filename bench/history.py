"""Benchmark the history page, its CSV export and totals on 100k runs, beside Django's admin.

    python3 -m uv run python -m bench.history [--runs 100000] [--repeat 7] [--reseed]
    python3 -m uv run python -m bench.history --runs 1000000     # the optional 1M seed

Seeds a dedicated Postgres database (BENCH_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/bench_history for 100k runs, bench_history_1m for a
million, created if missing) with runs spread over teams, artists, model types, states and a
year of launches, written with COPY, then rebuilds history's rollups from them. It times each
page through Django's test client (the whole request in-process: middleware, queries,
templates) and counts its queries. The same listing in the admin's changelist is timed in the
same run as a baseline. It prints figures, not pass/fail. The seed is kept between runs unless
--reseed or the run count differs; the rollups are rebuilt when the seed is new, when they
are empty, or with --rebuild.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import time
import tracemalloc
import warnings
from urllib.parse import urlsplit, urlunsplit

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/bench_history"
DEFAULT_RUNS = 100_000


def default_url(runs: int) -> str:
    """The 100k seed keeps its database; other sizes get their own (bench_history_1m)."""
    if runs == DEFAULT_RUNS:
        return DEFAULT_URL
    if runs % 1_000_000 == 0:
        return f"{DEFAULT_URL}_{runs // 1_000_000}m"
    return f"{DEFAULT_URL}_{runs // 1000}k" if runs % 1000 == 0 else f"{DEFAULT_URL}_{runs}"


TEAMS = [  # name, share of the runs, monthly budget
    ("Characters", 0.26, 60000),
    ("Environments", 0.22, 50000),
    ("Props", 0.14, 30000),
    ("Marketing", 0.12, 25000),
    ("Voice", 0.08, 15000),
    ("UI", 0.07, None),
    ("R&D", 0.07, 20000),
    ("Outsourcing", 0.04, 10000),
]
TYPES = [  # model type, share, typical train minutes, CU per train minute
    ("flux.1-lora", 0.38, 24, 4.0),
    ("sd-xl-lora", 0.15, 18, 2.5),
    ("flux.1-kontext-lora", 0.10, 28, 4.5),
    ("qwen-image-lora", 0.10, 30, 5.0),
    ("zimage-turbo-lora", 0.08, 12, 3.0),
    ("sd-1_5-lora", 0.07, 10, 1.5),
    ("elevenlabs-voice", 0.06, 6, 2.0),
    ("flux.2-klein-base-4b-lora", 0.06, 16, 3.5),
]
STATES = [("succeeded", 0.79), ("failed", 0.09), ("canceled", 0.08)]  # the rest is active
WORDS = (
    "castle forest neon ceramic paper desert ocean copper velvet amber glacier lantern "
    "robot dragon meadow harbor citadel orchid ember frost marble willow canyon nebula"
).split()
STYLES = "lora style character prop texture portrait icon voice sketch matte".split()
PROMPTS = [
    "a hero portrait, studio light",
    "the same subject in heavy rain",
    "a wide establishing shot at dusk",
]


# --- setup --------------------------------------------------------------------------------


def prepare_environment(url: str) -> None:
    """Point Django at the bench database, run as production would (DEBUG off)."""
    ensure_database(url)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    os.environ["DJANGO_DEBUG"] = "false"
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-secret-key-not-for-production")
    os.environ["DJANGO_ALLOWED_HOSTS"] = "testserver,127.0.0.1,localhost"
    os.environ["DJANGO_SECURE_COOKIES"] = "false"
    os.environ["DJANGO_SECURE_SSL_REDIRECT"] = "false"
    os.environ.setdefault("DJANGO_LOG_LEVEL", "WARNING")
    # WhiteNoise warns once per client that collectstatic has not run; no static file is timed.
    warnings.filterwarnings("ignore", message="No directory at")
    # The admin reads the date range's bounds as naive moments (in UTC, the bench's zone).
    warnings.filterwarnings("ignore", message=".*received a naive datetime")
    import django

    django.setup()


def ensure_database(url: str, *, fresh: bool = False) -> None:
    """Create the bench's own database if missing; `fresh` drops it first.

    A fresh one is migrated from nothing, so a database left by an older migration history
    (a renamed migration, say) cannot break the next run.
    """
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    server = urlunsplit((parts.scheme.replace("postgres", "postgresql", 1), parts.netloc,
                         "/postgres", "", ""))  # fmt: skip
    with psycopg.connect(server, autocommit=True) as conn:
        if fresh:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
            print(f"created database {name}")


# --- seeding ------------------------------------------------------------------------------


def seed(total: int, *, rng: random.Random) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.utils import timezone

    from training.models import EpochSample, Membership, Role, ScenarioModel, Team, TrainingRun

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE training_epochsample, training_runevent, training_trainingrun, "
            "training_scenariomodel, training_membership, training_team, auth_user "
            "RESTART IDENTITY CASCADE"
        )
    User = get_user_model()
    User.objects.create_superuser("bench-admin", password="bench", first_name="Bench")
    teams, people = [], []
    for name, share, budget in TEAMS:
        team = Team.objects.create(name=name, monthly_cu_budget=budget)
        size = max(3, round(share * 90))
        for i in range(size):
            first = f"{rng.choice(WORDS).capitalize()}{i}"
            user = User.objects.create_user(
                f"{name.lower().replace('&', '')}-{i}",
                first_name=first,
                last_name=name,
            )
            role = Role.LEAD if i == 0 else Role.ARTIST
            Membership.objects.create(user=user, team=team, role=role)
            # Some people train far more than others.
            people.append((team, user, share * rng.lognormvariate(0, 0.9) / size))
        teams.append(team)
    models = ScenarioModel.objects.bulk_create(
        ScenarioModel(
            remote_id=f"bench_model_{i}",
            name=f"{rng.choice(WORDS).capitalize()} {rng.choice(WORDS)} {rng.choice(STYLES)}"
            f" v{rng.randint(1, 9)}",
            type=_pick(rng, [(t[0], t[1]) for t in TYPES]),
            status="trained",
            training_images_number=rng.randint(5, 60),
        )
        for i in range(max(200, total // 30))
    )
    by_type = {}
    for model in models:
        by_type.setdefault(model.type, []).append(model)
    weights = [w for _, _, w in people]
    type_info = {t[0]: t for t in TYPES}
    now = timezone.now()
    # Runs get their ids here, so that their samples can be written in the same pass.
    epochs_of: list[tuple[int, int]] = []

    def runs():
        for i in range(total):
            team, user, _ = rng.choices(people, weights)[0]
            run = _run(rng, i, total, now, team, user, by_type, type_info)
            run.pk = i + 1
            if run.state == "succeeded":
                epochs_of.append((run.pk, run.parameters.get("nbEpochs", 4)))
            yield run

    fields = [f for f in TrainingRun._meta.concrete_fields]
    copy_rows(
        TrainingRun,
        [f.column for f in fields],
        # The seed writes a year of history: launch times are data here, not "now".
        (
            [f.get_db_prep_save(getattr(run, f.attname), connection) for f in fields]
            for run in runs()
        ),
    )
    samples = copy_rows(
        EpochSample,
        ["run_id", "epoch", "epoch_index", "prompt_index", "prompt", "asset_id", "url"],
        (
            (pk, f"ep_{pk}_{e}", e, p, PROMPTS[p], f"asset_{pk}_{e}_{p}",
             f"https://cdn.example.test/{pk}/{e}/{p}.webp")
            for pk, epochs in epochs_of
            for e in range(epochs)
            for p in range(2 if pk % 3 == 0 else 1)
        ),
    )  # fmt: skip
    with connection.cursor() as cursor:
        for model in (TrainingRun, EpochSample):
            table = model._meta.db_table
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT coalesce(max(id), 1) FROM {table}))"
            )
    print(
        f"seeded {total:,} runs, {samples:,} epoch samples, {len(models):,} models, "
        f"{len(people)} people in {len(teams)} teams in {time.perf_counter() - started:.0f} s"
    )


def copy_rows(model, columns: list[str], rows) -> int:
    """Write rows into a model's table with COPY; return how many."""
    from django.db import connection

    qn = connection.ops.quote_name
    names = ", ".join(map(qn, columns))
    count = 0
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {qn(model._meta.db_table)} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
                count += 1
    return count


def rebuild_rollups() -> None:
    from django.db import connection

    from training import rollups

    started = time.perf_counter()
    written = rollups.rebuild()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    rows = ", ".join(
        f"{count:,} {table.removeprefix('training_')}" for table, count in written.items()
    )
    print(f"rebuilt the rollups in {time.perf_counter() - started:.0f} s: {rows} rows")


def _pick(rng: random.Random, pairs):
    return rng.choices([p[0] for p in pairs], [p[1] for p in pairs])[0]


def _run(rng, i, total, now, team, user, by_type, type_info):
    from training.models import TrainingRun

    # Busier lately: launch ages skew toward the present; the newest 0.3% are still active.
    age_days = 365 * (1 - (i / total) ** 0.8) + rng.random()
    launched = now - dt.timedelta(days=age_days, minutes=rng.randint(0, 600))
    active = i > total * 0.997
    model_type = _pick(rng, [(t[0], t[1]) for t in TYPES])
    _, _, train_minutes, cu_rate = type_info[model_type]
    model = rng.choice(by_type.get(model_type) or [m for ms in by_type.values() for m in ms])
    epochs = rng.choice((2, 4, 4, 6, 8, 10))
    queue = rng.lognormvariate(4.8, 1.0)  # median about 2 min, a long tail
    train = rng.lognormvariate(0, 0.35) * train_minutes * 60 * epochs / 5
    quote = round(train / 60 * cu_rate, 1)
    state = rng.choice(["queued", "running", "draft"]) if active else _pick(rng, STATES)
    row = dict(
        created_by=user, team=team, model=model, model_type=model_type,
        parameters={"nbEpochs": epochs, "learningRate": rng.choice((5e-5, 1e-4, 2e-4)),
                    "rank": rng.choice((8, 16, 32))},
        quote_cu_cost=quote, quote_cu_discount=round(quote * 0.1, 1), state=state,
        created_at=launched, updated_at=launched,
    )  # fmt: skip
    if state == "succeeded":
        row.update(queue_duration=queue, train_duration=train, cu_cost=quote)
    elif state == "failed":
        part = rng.uniform(0.05, 0.9)
        row.update(queue_duration=queue, train_duration=train * part,
                   cu_cost=round(quote * part, 1), error_message="Training failed")  # fmt: skip
    elif state == "canceled":
        # Most cancels happen in the queue; the rest part-way through training.
        if rng.random() < 0.6:
            row.update(queue_duration=queue)
        else:
            part = rng.uniform(0.05, 0.7)
            row.update(queue_duration=queue, train_duration=train * part,
                       cu_cost=round(quote * part, 1))  # fmt: skip
    elif state == "running":
        row.update(queue_duration=queue)
    if state in ("succeeded", "failed", "canceled"):
        seconds = 20 + (row.get("queue_duration") or 0) + (row.get("train_duration") or 0)
        finished = launched + dt.timedelta(seconds=seconds)
        row.update(finished_at=finished, updated_at=finished)
        if row.get("train_duration"):
            start = launched + dt.timedelta(seconds=10 + queue)
            ended = start + dt.timedelta(seconds=row["train_duration"])
            row.update(train_started_at=start, train_ended_at=ended)
        row["cu_discount"] = row["quote_cu_discount"] if row.get("cu_cost") else None
    return TrainingRun(**row)


# --- measuring ----------------------------------------------------------------------------


class Case:
    def __init__(self, group, label, url, *, user, headers=None, stream=False):
        self.group, self.label, self.url = group, label, url
        self.user, self.headers, self.stream = user, headers or {}, stream


def measure(case: Case, repeat: int) -> dict:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.force_login(case.user)

    def once():
        response = client.get(case.url, headers=case.headers)
        assert response.status_code == 200, (case.url, response.status_code)
        if case.stream:
            return sum(len(chunk) for chunk in response.streaming_content)
        return len(response.content)

    size = once()  # warm-up: connections, template cache
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        once()
        times.append((time.perf_counter() - started) * 1000)
    with CaptureQueriesContext(connection) as queries:
        once()
    sql_ms = sum(float(q["time"]) for q in queries.captured_queries) * 1000
    return {
        "median": statistics.median(times),
        "min": min(times),
        "queries": len(queries),
        "sql": sql_ms,
        "bytes": size,
    }


def deep_cursor(user, sort: str, position: int) -> str:
    """The cursor a reader holds after paging to `position` rows in (computed untimed)."""
    from training import reports
    from training.access import visible_runs

    filters = reports.parse_filters({"sort": sort}, user)
    row = reports.sorted_runs(reports.history_rows(visible_runs(user)), filters)[position - 1]
    return reports.encode_cursor(filters.sort_key, row.sort_value, row.pk)


def admin_column(name: str) -> int:
    """The admin's ?o= index of a list_display column."""
    from django.contrib import admin

    from training.models import TrainingRun

    return list(admin.site._registry[TrainingRun].list_display).index(name) + 1


def cases(total: int) -> list[Case]:
    from django.contrib import admin
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from training import reports
    from training.models import Membership, Role, TrainingRun

    assert TrainingRun in admin.site._registry, "the TrainingRun admin is the baseline"
    staff = get_user_model().objects.get(username="bench-admin")
    lead = Membership.objects.filter(role=Role.LEAD, team__name="Characters").get().user
    size = reports.PAGE_SIZE
    deep = (total * 9 // 10) // size * size  # about 90% of the way down
    admin_page = admin.site._registry[TrainingRun].list_per_page
    admin_deep = deep // admin_page + 1
    table = {"HX-Request": "true", "HX-Target": "history-table"}
    filtered = "type=sd-xl-lora&state=failed&from=2000-01-01&q=e"
    # The same without the search, over a date range with partial weeks and months at its ends.
    today = timezone.localdate()
    start, end = today - dt.timedelta(days=200), today - dt.timedelta(days=20)
    ranged = f"type=sd-xl-lora&state=failed&from={start}&to={end}"
    admin_ranged = (
        f"model_type__exact=sd-xl-lora&state__exact=failed&created_at__gte={start}"
        f"&created_at__lt={end + dt.timedelta(days=1)}"
    )
    after_deep = deep_cursor(staff, "-launched", deep)
    after_deep_billed = deep_cursor(staff, "-billed", deep)
    billed = admin_column("cu_cost")
    history = "/history/"
    admin_list = "/admin/training/trainingrun/"
    return [
        Case("first page", "history page, whole (staff, all runs)", history, user=staff),
        Case("first page", "history table fragment (htmx)", history, user=staff, headers=table),
        Case("first page", "admin changelist", admin_list, user=staff),
        Case("deep page", f"history table after row {deep:,}", f"{history}?after={after_deep}",
             user=staff, headers=table),
        Case("deep page", f"admin changelist ?p={admin_deep}", f"{admin_list}?p={admin_deep}",
             user=staff),
        Case("filtered", "history page, whole (type+state+date+search)",
             f"{history}?{filtered}", user=staff),
        Case("filtered", "history table fragment, same filters", f"{history}?{filtered}",
             user=staff, headers=table),
        Case("filtered", "admin changelist, same filters",
             f"{admin_list}?model_type__exact=sd-xl-lora&state__exact=failed&q=e", user=staff),
        Case("no search", "history page, whole (type+state+dates, no search)",
             f"{history}?{ranged}", user=staff),
        Case("no search", "admin changelist, same filters", f"{admin_list}?{admin_ranged}",
             user=staff),
        Case("sorted", "history table by CU billed ↓", f"{history}?sort=-billed", user=staff,
             headers=table),
        Case("sorted", "admin changelist by CU billed ↓", f"{admin_list}?o=-{billed}",
             user=staff),
        Case("sorted deep", f"history table by CU billed ↓ after row {deep:,}",
             f"{history}?sort=-billed&after={after_deep_billed}", user=staff, headers=table),
        Case("sorted deep", f"admin changelist by CU billed ↓ ?p={admin_deep}",
             f"{admin_list}?o=-{billed}&p={admin_deep}", user=staff),
        Case("other sorts", "history table by wall time ↓ (computed)", f"{history}?sort=-wall",
             user=staff, headers=table),
        Case("other sorts", "history table by epochs ↓ (subquery)", f"{history}?sort=-epochs",
             user=staff, headers=table),
        Case("other sorts", "history table by artist (name expression)", f"{history}?sort=artist",
             user=staff, headers=table),
        Case("team lead", "history page, whole (lead, own team)", history, user=lead),
        Case("csv", f"CSV export of all {total:,} runs", "/history.csv", user=staff, stream=True),
        Case("csv", "CSV export, filtered", f"/history.csv?{filtered}", user=staff, stream=True),
    ]  # fmt: skip


def time_call(call, repeat: int) -> dict:
    """Time a call in-process: median and min ms, its queries and their SQL time."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    call()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    with CaptureQueriesContext(connection) as queries:
        result = call()
    return {
        "median": statistics.median(times),
        "min": min(times),
        "queries": len(queries),
        "sql": sum(float(q["time"]) for q in queries.captured_queries) * 1000,
        "result": result,
    }


def time_totals(repeat: int) -> tuple[dict, dict]:
    """The exact totals over every run (the search's path), and every figure from rollups."""
    from django.contrib.auth import get_user_model

    from training import figures, reports
    from training.access import visible_runs
    from training.models import Team

    staff = get_user_model().objects.get(username="bench-admin")
    teams = list(Team.objects.order_by("name"))
    filters = reports.parse_filters({}, staff)
    exact = time_call(lambda: reports.totals(visible_runs(staff)), repeat)
    rolled = time_call(lambda: figures.history(staff, filters, teams).totals, repeat)
    return exact, rolled


def csv_memory(total: int) -> float:
    """Peak Python memory while streaming the whole CSV, in MiB."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client()
    client.force_login(get_user_model().objects.get(username="bench-admin"))
    tracemalloc.start()
    response = client.get("/history.csv")
    lines = sum(chunk.count(b"\n") for chunk in response.streaming_content)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert lines == total + 1, lines
    return peak / 2**20


# --- report -------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="1000000 for the 1M seed")
    parser.add_argument("--repeat", type=int, default=7, help="timed repeats per case")
    parser.add_argument("--reseed", action="store_true")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the rollups first")
    parser.add_argument("--prepare", action="store_true", help="seed and roll up, time nothing")
    parser.add_argument("--seed", type=int, default=6, help="random seed of the data")
    args = parser.parse_args(argv)
    url = os.environ.get("BENCH_DATABASE_URL", default_url(args.runs))
    prepare_environment(url)

    from django.core.management import call_command
    from django.db import connection

    from training.models import FINAL_STATES, EpochSample, RollupDay, TrainingRun

    call_command("migrate", verbosity=0)
    reseed = args.reseed or TrainingRun.objects.count() != args.runs
    if reseed:
        seed(args.runs, rng=random.Random(args.seed))
    unrolled = (
        not RollupDay.objects.exists()
        and TrainingRun.objects.filter(state__in=FINAL_STATES).exists()
    )
    if reseed or unrolled or args.rebuild:
        rebuild_rollups()
    if args.prepare:
        return 0
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0]
    print(
        f"Postgres {version} · database {connection.settings_dict['NAME']} · "
        f"{TrainingRun.objects.count():,} runs · {EpochSample.objects.count():,} samples · "
        f"median of {args.repeat} (after one warm-up), Django test client, DEBUG off\n"
    )
    results = []
    header = f"{'case':<52} {'median ms':>10} {'min ms':>8} {'queries':>8} {'SQL ms':>8} {'KiB':>8}"
    print(header)
    print("-" * len(header))
    group = None
    for case in cases(args.runs):
        repeat = max(2, args.repeat // 3) if case.stream else args.repeat
        figures = measure(case, repeat)
        results.append((case, figures))
        if case.group != group:
            group = case.group
            print(f"[{group}]")
        print(
            f"  {case.label:<50} {figures['median']:>10.1f} {figures['min']:>8.1f} "
            f"{figures['queries']:>8} {figures['sql']:>8.1f} {figures['bytes'] / 1024:>8.0f}"
        )
    totals = time_totals(args.repeat)
    print("[totals]")
    for label, figures in zip(
        ("reports.totals() over every run (exact p90)", "figures.history() from rollups (all)"),
        totals,
        strict=True,
    ):
        print(
            f"  {label:<50} {figures['median']:>10.1f} {figures['min']:>8.1f} "
            f"{figures['queries']:>8} {figures['sql']:>8.1f}"
        )
        t = figures["result"]
        print(
            f"    runs {t.runs:,} · success {t.success_rate:.1%} · CU spent {t.cu_spent:,.0f} · "
            f"queue mean {t.queue_mean:.0f} s p90 {t.queue_p90:.0f} s · "
            f"train mean {t.train_mean:.0f} s p90 {t.train_p90:.0f} s"
        )
    peak = csv_memory(args.runs)
    print(f"\nCSV export peak Python memory while streaming every row: {peak:.1f} MiB")
    export = next(f for c, f in results if c.label.startswith("CSV export of all"))
    print(
        f"CSV export of all {args.runs:,} runs: {args.runs / (export['median'] / 1000):,.0f} "
        f"rows/s (median {export['median'] / 1000:.2f} s, {export['bytes'] / 2**20:.1f} MiB)"
    )
    print("\nRatios, history ÷ admin changelist (median server time; below 1 means faster):")
    by_group: dict[str, list] = {}
    for case, figures in results:
        by_group.setdefault(case.group, []).append((case, figures))
    for name, rows in by_group.items():
        admin_rows = [f for c, f in rows if c.label.startswith("admin")]
        if not admin_rows:
            continue
        base = admin_rows[0]["median"]
        for case, figures in rows:
            if case.label.startswith("admin"):
                continue
            print(
                f"  {name:<12} {case.label:<50} {figures['median'] / base:>6.2f}×  "
                f"({figures['median']:.1f} ms vs {base:.1f} ms)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
