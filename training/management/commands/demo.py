"""Run the whole dashboard on this machine: web server, Celery worker and beat, simulator.

The first start migrates and seeds two teams, their people and a handful of models in the
simulator; later starts reuse the data. The children's output passes through this process,
so the logins can be printed again once everything is up, as the last thing on screen.
Ctrl-C stops every process it started; so does this process dying any other way (Linux).
"""

from __future__ import annotations

import codecs
import ctypes
import os
import re
import selectors
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from training.models import Membership, Role, Team

DEMO_PASSWORD = "demo-pass-123"

# (team, username, full name, role); staff "admin" is added on top.
DEMO_PEOPLE = [
    ("Character Art", "alice", "Alice Martin", Role.ARTIST),
    ("Character Art", "bob", "Bob Chen", Role.LEAD),
    ("Environments", "charlie", "Charlie Diaz", Role.ARTIST),
    ("Environments", "erin", "Erin Walsh", Role.LEAD),
]

# What the worker and beat print once they are listening; the logins are printed after both.
READY_LINES = {
    "worker": re.compile(rb"celery@\S+ ready\."),
    "beat": re.compile(rb"beat: Starting\.\.\."),
}
# The logins are printed once the children have been quiet this long after starting.
SETTLE_SECONDS = 0.5

# (name, model type, training images) created in the simulator on the first start.
DEMO_MODELS = [
    ("Flux portrait v3", "flux.1-lora", 12),
    ("Kontext prop edits", "flux.1-kontext-lora", 8),
    ("Qwen UI icons", "qwen-image-lora", 20),
    ("Legacy SDXL armour", "sd-xl-lora", 15),
    ("Narrator voice", "elevenlabs-voice", 6),
    ("Broken fail-case", "flux.1-lora", 10),
    ("Empty sketchbook", "flux.1-lora", 0),
]


class Command(BaseCommand):
    help = "Start the web server, a Celery worker, Celery beat and the simulator, with demo data."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000, help="web port (default 8000)")
        parser.add_argument(
            "--no-seed", action="store_true", help="start without creating demo data"
        )

    def handle(self, *args, port: int, no_seed: bool, **options):
        if not 1 <= port <= 65535:
            raise CommandError(f"--port must be between 1 and 65535, not {port}")
        if not settings.SCENARIO_SIMULATOR:
            raise CommandError(
                "The demo needs the simulator: unset SCENARIO_SIMULATOR or set it to true."
            )
        # Ctrl-C and a plain `kill` both stop everything, even when started from a script
        # that ignores SIGINT for background jobs. Under `uv run` one Ctrl-C arrives twice
        # (from the terminal and forwarded by uv): only the first one counts.
        signal.signal(signal.SIGINT, stop_requested)
        signal.signal(signal.SIGTERM, stop_requested)
        base = f"http://127.0.0.1:{port}"
        output = ChildOutput(self.stdout)
        processes: dict[str, subprocess.Popen] = {}
        try:
            point_at_own_simulator(port)
            call_command("migrate", interactive=False, verbosity=0)
            first_start = not no_seed and seed_people()
            self.stdout.write("Starting the web server, a Celery worker and beat…")
            processes.update(start_processes(port))
            output.follow(processes)
            wait_until_up(f"{base}/login/", processes, output)
            if first_start:
                seed_simulator_models()
            sync_model_list(self.stderr)
            output.wait_for_ready(processes)
            self.print_welcome(base)
            watch(processes, port, output, self.stdout)
        except KeyboardInterrupt:
            self.stdout.write("\nStopping…")
        finally:
            stop(processes, output)

    def print_welcome(self, base: str) -> None:
        out = self.stdout
        out.write(self.style.SUCCESS(f"\nTraining dashboard: {base}/"))
        out.write(f"Simulator (Scenario API stand-in): {base}/sim/v1/")
        out.write(f"Admin: {base}/admin/ (admin / {DEMO_PASSWORD})")
        out.write(f"Demo logins, password {DEMO_PASSWORD}:")
        for team, username, name, role in DEMO_PEOPLE:
            out.write(f"  {username:<8} {name:<14} {role.label.lower():<7} {team}")
        out.write("Press Ctrl-C to stop.\n")
        out.flush()


def stop_requested(signum, frame) -> None:
    """Stop on the first SIGINT or SIGTERM and ignore the ones after it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def point_at_own_simulator(port: int) -> None:
    """Make this process and its children call the simulator on the port being served."""
    os.environ["DASHBOARD_PORT"] = str(port)
    if "SCENARIO_API_URL" not in os.environ:
        settings.SCENARIO_API_URL = f"http://127.0.0.1:{port}/sim/v1"


@transaction.atomic
def seed_people() -> bool:
    """Create the demo teams and people; False when they were already there."""
    users = get_user_model()
    if users.objects.filter(username="alice").exists():
        return False
    for team_name, username, full_name, role in DEMO_PEOPLE:
        team, _ = Team.objects.get_or_create(name=team_name)
        first, last = full_name.split(" ", 1)
        user = users.objects.create_user(
            username, password=DEMO_PASSWORD, first_name=first, last_name=last
        )
        Membership.objects.create(user=user, team=team, role=role)
    Team.objects.filter(name="Character Art").update(monthly_cu_budget=5000)
    users.objects.create_superuser("admin", password=DEMO_PASSWORD)
    return True


def seed_simulator_models() -> None:
    from simulator import seed

    for name, model_type, images in DEMO_MODELS:
        seed.create_model(name, model_type, images=images)


def sync_model_list(stderr) -> None:
    from training import services
    from training.scenario import ScenarioError

    try:
        services.sync_models()
    except ScenarioError as error:
        stderr.write(f"Could not sync the model list yet: {error}")


def process_commands(port: int) -> dict[str, list[str]]:
    manage = [sys.executable, "manage.py"]
    celery = [sys.executable, "-m", "celery", "-A", "dashboard"]
    return {
        "web": [*manage, "runserver", f"127.0.0.1:{port}", "--noreload"],
        # Cancels and submits first (see CELERY_TASK_ROUTES).
        "worker": [*celery, "worker", "-Q", "urgent,celery", "--loglevel=INFO", "--concurrency=2"],
        "beat": [*celery, "beat", "--loglevel=INFO"],
    }


def start_process(command: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        command,
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        # A session of their own keeps the terminal's Ctrl-C away from them: this
        # process stops them in order instead (Celery's warm shutdown).
        start_new_session=True,
        preexec_fn=die_with_parent(os.getpid()),
    )


def start_processes(port: int) -> dict[str, subprocess.Popen]:
    return {name: start_process(command) for name, command in process_commands(port).items()}


def die_with_parent(parent_pid: int):
    """Return a pre-exec hook that has the kernel send SIGTERM to the child when we die.

    PR_SET_PDEATHSIG is delivered by the kernel however this process ends, SIGKILL
    included, and needs nothing from the child: a watchdog pipe would need a thread in
    every child reading it, and would miss a child stuck elsewhere. It exists on Linux only;
    elsewhere the children are stopped by Ctrl-C or `kill` alone. The hook runs between fork
    and exec, which is safe here because this process starts no threads.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)
        if os.getppid() != parent_pid:  # we died before the request was made
            os.kill(os.getpid(), signal.SIGTERM)

    return hook


class ChildOutput:
    """Copy the children's output to ours, and notice when the worker and beat are ready."""

    def __init__(self, stdout):
        self.stdout = stdout
        self.selector = selectors.DefaultSelector()
        self.waiting_for = dict(READY_LINES)
        self.seen = {name: b"" for name in READY_LINES}
        self.decoders = {}

    def follow(self, processes: dict[str, subprocess.Popen]) -> None:
        for name, process in processes.items():
            # Incremental: a character split across two reads is still decoded whole.
            self.decoders[name] = codecs.getincrementaldecoder("utf-8")(errors="replace")
            fd = process.stdout.fileno()
            if fd in self.selector.get_map():  # a restarted child got its predecessor's fd
                self.selector.unregister(fd)
            self.selector.register(fd, selectors.EVENT_READ, name)

    def pump(self, timeout: float) -> bool:
        """Copy what the children wrote within timeout seconds; True if they wrote anything."""
        if not self.selector.get_map():
            time.sleep(timeout)
            return False
        wrote = False
        for key, _ in self.selector.select(timeout):
            chunk = os.read(key.fd, 65536)
            if not chunk:  # the child closed its output: it is stopping
                self.selector.unregister(key.fd)
                continue
            wrote = True
            self.stdout.write(self.decoders[key.data].decode(chunk), ending="")
            self.notice_ready(key.data, chunk)
        if wrote:
            self.stdout.flush()
        return wrote

    def notice_ready(self, name: str, chunk: bytes) -> None:
        if name not in self.waiting_for:
            return
        # Keep a tail, so a ready line split across two reads is still found.
        self.seen[name] = self.seen[name][-200:] + chunk
        if self.waiting_for[name].search(self.seen[name]):
            del self.waiting_for[name]

    def wait_for_ready(self, processes: dict[str, subprocess.Popen], seconds: float = 60):
        """Copy output until the worker and beat are ready and the children fall quiet."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            check_alive(processes)
            if not self.pump(SETTLE_SECONDS) and not self.waiting_for:
                return
        missing = ", ".join(self.waiting_for)
        if missing:
            raise CommandError(f"The {missing} did not start within {seconds:.0f} s")


def wait_until_up(
    url: str, processes: dict[str, subprocess.Popen], output: ChildOutput, seconds: float = 60
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        check_alive(processes)
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, OSError):
            output.pump(0.3)
    raise CommandError(f"The web server did not answer at {url} within {seconds:.0f} s")


def check_alive(processes: dict[str, subprocess.Popen]) -> None:
    for name, process in processes.items():
        if process.poll() is not None:
            raise CommandError(f"The {name} process stopped (exit code {process.returncode})")


def watch(processes: dict[str, subprocess.Popen], port: int, output: ChildOutput, out) -> None:
    restarter = Restarter(processes, process_commands(port), output, out)
    while True:
        restarter.restart_exited()
        check_alive({"web": processes["web"]})
        output.pump(0.5)


class Restarter:
    """Start a worker or beat that exited again, after a backoff that grows while it keeps
    exiting (a worker dies with its broker connection: celery/kombu#582), and say so.

    The web server is not restarted: if it stops, the demo stops.
    """

    NAMES = ("worker", "beat")
    BACKOFF_SECONDS = (1, 2, 5, 10)
    STEADY_SECONDS = 60  # up this long: the next exit starts the backoff over

    def __init__(self, processes, commands, output: ChildOutput, out):
        self.processes, self.commands, self.output, self.out = processes, commands, output, out
        self.exits: dict[str, int] = {}
        self.due: dict[str, float] = {}
        self.started = dict.fromkeys(self.NAMES, time.monotonic())

    def restart_exited(self) -> None:
        now = time.monotonic()
        for name in self.NAMES:
            process = self.processes[name]
            if process.poll() is None:
                continue
            if name not in self.due:
                if now - self.started[name] >= self.STEADY_SECONDS:
                    self.exits[name] = 0
                exits = self.exits.get(name, 0)
                delay = self.BACKOFF_SECONDS[min(exits, len(self.BACKOFF_SECONDS) - 1)]
                self.out.write(
                    f"The {name} exited (code {process.returncode}); starting it again in {delay} s"
                )
                self.exits[name], self.due[name] = exits + 1, now + delay
            elif now >= self.due[name]:
                del self.due[name]
                self.processes[name] = start_process(self.commands[name])
                self.output.follow({name: self.processes[name]})
                self.started[name] = now
                self.out.write(f"The {name} is running again")


def stop(processes: dict[str, subprocess.Popen], output: ChildOutput, grace: float = 10) -> None:
    """Ask every child to stop, then kill what is still running after the grace period."""
    for process in processes.values():
        if process.poll() is None:
            # Only the main process: Celery's warm shutdown stops its own pool.
            process.terminate()
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(p.poll() is None for p in processes.values()):
        output.pump(0.2)
    for process in processes.values():
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    output.pump(0)
    if processes:
        output.stdout.write("Stopped.")
