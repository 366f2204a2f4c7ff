"""docker compose cannot run here, so check the compose file against the code it starts."""

from __future__ import annotations

import importlib
import json
import os
import re
import secrets
import subprocess
import sys

import pytest
import yaml
from django.core.management import get_commands

from tests.processes import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
APP_SERVICES = {name: s for name, s in SERVICES.items() if s.get("image") == "training-dashboard"}
SETTINGS_SOURCE = (ROOT / "dashboard" / "settings.py").read_text()
# Every variable the settings read: env_str("NAME"), env_bool("NAME", …), and so on.
SETTINGS_VARS = set(re.findall(r'env_\w+\(\s*"([A-Z0-9_]+)"', SETTINGS_SOURCE))
DEMO_ENV = dict(
    line.split("=", 1)
    for line in (ROOT / "compose.demo.env").read_text().splitlines()
    if line and not line.startswith("#")
)


# What an operator exports before `docker compose up`, as the README says.
OPERATOR_ENV = {
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "FLOWER_BASIC_AUTH": "admin:a-long-password",
}


class MissingVariable(Exception):
    """compose would refuse to start: a ${NAME:?message} variable is not set."""


def interpolate(value: str, env: dict[str, str]) -> str:
    """Resolve compose's ${NAME:-default}, ${NAME:?message} and ${NAME} against env."""

    def resolve(match: re.Match) -> str:
        name, operator, word = match.group(1), match.group(2), match.group(3) or ""
        if operator == ":?" and not env.get(name):
            raise MissingVariable(f"{name}: {word}")
        return env.get(name) or (word if operator == ":-" else "")

    return re.sub(r"\$\{([A-Z0-9_]+)(?:(:-|:\?)([^}]*))?\}", resolve, str(value))


def service_env(name: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**OPERATOR_ENV, **(extra or {})}
    return {k: interpolate(v, env) for k, v in SERVICES[name]["environment"].items()}


def test_it_has_every_service_the_stack_needs():
    assert {"postgres", "redis", "web", "worker", "beat", "flower"} <= set(SERVICES)
    assert SERVICES["simulator"]["profiles"] == ["demo"]


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_every_app_variable_is_one_the_settings_read(name):
    # Flower reads its own options from FLOWER_* variables.
    own = {v for v in APP_SERVICES[name]["environment"] if name == "flower" and v[:7] == "FLOWER_"}
    unknown = set(APP_SERVICES[name]["environment"]) - SETTINGS_VARS - own
    assert not unknown, f"{name} sets variables dashboard/settings.py never reads: {unknown}"


def test_the_demo_env_file_sets_only_variables_the_settings_read():
    assert set(DEMO_ENV) <= SETTINGS_VARS


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_every_app_command_names_something_that_exists(name):
    command = APP_SERVICES[name]["command"]
    program = command[0]
    if program == "gunicorn":
        module, attribute = command[1].split(":")
        assert callable(getattr(importlib.import_module(module), attribute))
    elif program == "celery":
        assert command[1:3] == ["-A", "dashboard"]
        assert importlib.import_module("dashboard").celery_app.main == "dashboard"
        assert command[3] in {"worker", "beat", "flower"}
        if command[3] == "flower":
            importlib.import_module("flower")
    elif program == "python":
        assert command[1] == "manage.py"
        assert command[2] in get_commands()
    else:
        pytest.fail(f"{name} runs an unexpected program: {program}")


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_dependencies_exist_and_health_conditions_have_health_checks(name):
    for dependency, rule in SERVICES[name].get("depends_on", {}).items():
        assert dependency in SERVICES, f"{name} depends on a missing service {dependency}"
        condition = rule["condition"]
        assert condition in {
            "service_started",
            "service_healthy",
            "service_completed_successfully",
        }
        if condition == "service_healthy":
            assert "healthcheck" in SERVICES[dependency], f"{dependency} has no health check"


def test_the_worker_drains_the_urgent_queue_of_cancels_polls_and_submits_first():
    from django.conf import settings

    command = SERVICES["worker"]["command"]
    queues = command[command.index("-Q") + 1].split(",")
    assert queues == list(settings.CELERY_TASK_QUEUES) == ["urgent", "celery"]
    routes = settings.CELERY_TASK_ROUTES
    urgent = {
        task: route["priority"] for task, route in routes.items() if route["queue"] == "urgent"
    }
    names = "cancel_run sweep poll_listed poll_run apply_listed submit_run".split()
    assert set(urgent) == {f"training.tasks.{name}" for name in names}
    # On Redis 0 comes first: cancels, then the listing, then applying it, then launches.
    order = [urgent[f"training.tasks.{name}"] for name in names]
    assert order == sorted(order) and order[0] == 0 and order[-1] > order[-2] > order[1] > 0
    assert routes["*"] == {"queue": "celery", "priority": 9}
    assert settings.CELERY_BROKER_TRANSPORT_OPTIONS["queue_order_strategy"] == "priority"


def test_long_running_services_have_health_checks():
    for name in ("postgres", "redis", "web", "worker", "simulator"):
        assert SERVICES[name]["healthcheck"]["test"], name


def run_clean(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run a Python command in the project with exactly this environment (and PATH)."""
    clean = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "dashboard.settings"}
    clean["DASHBOARD_DATA_DIR"] = str(ROOT / "data" / "test" / "compose")
    return subprocess.run(
        [sys.executable, *args],
        env={**clean, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def load_settings_with(env: dict[str, str]) -> dict:
    """Import the settings in a clean process with exactly this environment."""
    script = (
        "import json; from django.conf import settings as s;"
        "print(json.dumps({'engine': s.DATABASES['default']['ENGINE'],"
        " 'db': s.DATABASES['default']['NAME'], 'broker': s.CELERY_BROKER_URL,"
        " 'debug': s.DEBUG, 'simulator': s.SCENARIO_SIMULATOR, 'api': s.SCENARIO_API_URL,"
        " 'secure_cookies': s.SESSION_COOKIE_SECURE, 'ssl_redirect': s.SECURE_SSL_REDIRECT,"
        " 'hsts': s.SECURE_HSTS_SECONDS}))"
    )
    result = run_clean(["-c", script], env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_web_service_environment_gives_postgres_redis_and_the_real_api():
    loaded = load_settings_with(service_env("web"))
    assert loaded["engine"] == "django.db.backends.postgresql"
    assert loaded["db"] == "dashboard"
    assert loaded["broker"] == "redis://redis:6379/0"
    assert loaded["debug"] is False
    assert loaded["simulator"] is False
    assert loaded["api"] == "https://api.cloud.scenario.com/v1"


def test_the_demo_profile_points_the_app_at_the_simulator_service():
    web = load_settings_with(service_env("web", DEMO_ENV))
    simulator = load_settings_with(service_env("simulator", DEMO_ENV))
    assert web["api"] == "http://simulator:8000/sim/v1"
    assert simulator["simulator"] is True


def test_the_readme_documents_every_variable_the_settings_read():
    readme = (ROOT / "README.md").read_text()
    undocumented = {name for name in SETTINGS_VARS if f"`{name}`" not in readme}
    assert not undocumented, f"README's configuration table misses {undocumented}"


def test_compose_refuses_to_start_without_a_secret_key():
    with pytest.raises(MissingVariable, match="DJANGO_SECRET_KEY"):
        service_env("web", {"DJANGO_SECRET_KEY": ""})
    with pytest.raises(MissingVariable, match="DJANGO_SECRET_KEY"):
        service_env("web", {**DEMO_ENV, "DJANGO_SECRET_KEY": ""})


def test_no_secret_key_is_written_in_the_compose_files():
    for name in ("docker-compose.yml", "compose.demo.env", "Dockerfile"):
        text = (ROOT / name).read_text()
        assert not re.search(r"DJANGO_SECRET_KEY[=:]\s*[\w-]", text), name
    assert "DJANGO_SECRET_KEY" not in DEMO_ENV


def test_the_settings_hold_no_fixed_secret_key():
    assert not re.search(r"SECRET_KEY\s*=\s*[\"']", SETTINGS_SOURCE)


def test_the_production_stack_sends_secure_cookies_redirects_to_https_and_sends_hsts():
    loaded = load_settings_with(service_env("web"))
    assert loaded["secure_cookies"] is True
    assert loaded["ssl_redirect"] is True
    assert loaded["hsts"] >= 31_536_000


def test_the_plain_http_demo_turns_the_https_rules_off():
    loaded = load_settings_with(service_env("web", DEMO_ENV))
    assert (loaded["secure_cookies"], loaded["ssl_redirect"], loaded["hsts"]) == (False, False, 0)


def test_the_simulator_service_never_redirects_the_workers_to_https():
    loaded = load_settings_with(service_env("simulator"))
    assert (loaded["ssl_redirect"], loaded["hsts"]) == (False, 0)


def test_the_web_health_check_comes_as_through_the_tls_proxy():
    assert "X-Forwarded-Proto" in " ".join(SERVICES["web"]["healthcheck"]["test"])


def test_flower_asks_for_a_login_and_listens_on_this_machine_only():
    with pytest.raises(MissingVariable, match="FLOWER_BASIC_AUTH"):
        service_env("flower", {"FLOWER_BASIC_AUTH": ""})
    assert service_env("flower")["FLOWER_BASIC_AUTH"] == OPERATOR_ENV["FLOWER_BASIC_AUTH"]
    assert [interpolate(port, {}) for port in SERVICES["flower"]["ports"]] == [
        "127.0.0.1:5555:5555"
    ]


def test_check_deploy_is_clean_with_the_documented_production_environment():
    env = service_env("web", {"DJANGO_ALLOWED_HOSTS": "dashboard.example.com"})
    result = run_clean(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env)
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout + result.stderr


def test_in_debug_without_a_key_each_data_folder_gets_its_own_random_key(tmp_path):
    script = "from django.conf import settings; print(settings.SECRET_KEY)"

    def key_in(folder):
        result = run_clean(["-c", script], {"DASHBOARD_DATA_DIR": str(folder)})
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    first = key_in(tmp_path / "one")
    assert len(first) >= 50
    assert key_in(tmp_path / "one") == first, "web, worker and beat share the folder's key"
    assert key_in(tmp_path / "two") != first
    assert (tmp_path / "one" / "secret-key").stat().st_mode & 0o077 == 0
