"""Settings for the training dashboard, read from the environment.

With nothing set it runs embedded: SQLite and a filesystem Celery broker in a local data
folder, and the Scenario simulator served by the app itself. With DATABASE_URL and
CELERY_BROKER_URL (or REDIS_URL) it runs on Postgres and Redis. Every variable is listed in
the README; a bad value stops start-up with ImproperlyConfigured instead of being guessed.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}")


def env_number(name: str, default: float, kind=float, minimum: float | None = None):
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a {kind.__name__}, not {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {raw!r}")
    return value


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    return env_number(name, default, int, minimum)


def env_float(name: str, default: float, minimum: float | None = None) -> float:
    return env_number(name, default, float, minimum)


def database_from_url(url: str) -> dict:
    """Turn postgres://user:password@host:port/name or sqlite:///path into a DATABASES entry."""
    parts = urlsplit(url)
    if parts.scheme in {"postgres", "postgresql"}:
        name = unquote(parts.path.lstrip("/"))
        if not name:
            raise ImproperlyConfigured(f"DATABASE_URL names no database: {parts.scheme}://…")
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "CONN_MAX_AGE": env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
            "CONN_HEALTH_CHECKS": True,
        }
    if parts.scheme == "sqlite":
        return sqlite_database(Path(unquote(parts.path)))
    raise ImproperlyConfigured(
        "DATABASE_URL must start with postgres://, postgresql:// or sqlite:///, "
        f"not {parts.scheme!r}"
    )


def sqlite_database(path: Path) -> dict:
    # The web, worker and beat processes share this file: WAL lets readers work during a write,
    # IMMEDIATE transactions take the write lock up front instead of failing half-way.
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": path,
        "OPTIONS": {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        },
        # A file, not memory, so worker processes started by the tests share the test database.
        "TEST": {"NAME": path.with_name(f"test-{path.name}")},
    }


def generated_secret_key(folder: Path) -> str:
    """Read the development key kept in `folder`, making a random one the first time.

    No key is written in the code: each checkout gets its own, and every process started on
    the same data folder (web, worker, beat) reads the same one.
    """
    path = folder / "secret-key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as file:
        file.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


DEBUG = env_bool("DJANGO_DEBUG", True)

DATA_DIR = Path(env_str("DASHBOARD_DATA_DIR", str(BASE_DIR / "data"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off")
    SECRET_KEY = generated_secret_key(DATA_DIR)

ALLOWED_HOSTS = [
    host.strip()
    for host in env_str("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",")
    if host.strip()
]
CSRF_TRUSTED_ORIGINS = [
    origin.strip() for origin in env_str("DJANGO_CSRF_TRUSTED_ORIGINS").split(",") if origin.strip()
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "axes",
    "training",
    "simulator",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "training.middleware.private_pages",
    "training.request_params.BadParameterMiddleware",
    # Last, as its documentation asks: it turns a lockout into the locked-out page.
    "axes.middleware.AxesMiddleware",
]

if not DEBUG:
    # gunicorn serves the collected static files itself; runserver does it in development.
    MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")

ROOT_URLCONF = "dashboard.urls"
WSGI_APPLICATION = "dashboard.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "training.context_processors.dashboard",
            ],
        },
    },
]

DATABASE_URL = env_str("DATABASE_URL")
DATABASES = {
    "default": database_from_url(DATABASE_URL)
    if DATABASE_URL
    else sqlite_database(DATA_DIR / "dashboard.sqlite3")
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
# No LOGOUT_REDIRECT_URL: signing out shows registration/logged_out.html, which says so.

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("DJANGO_TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"

# --- Security -------------------------------------------------------------------------------

SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", not DEBUG)
# In production the app sits behind a TLS proxy that says so in X-Forwarded-Proto (and strips
# that header from what clients send): plain-HTTP requests are redirected, HTTPS is remembered.
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("DJANGO_TRUST_PROXY_SSL", not DEBUG) else None
)
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 0 if DEBUG else 31_536_000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", not DEBUG)
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Everything the pages load comes from the app itself: no inline script, style or handler.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    # Sample images and model thumbnails come from Scenario's (or the simulator's) servers.
    "img-src": [CSP.SELF, "https:", "http:"],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}

# Login throttling (django-axes): after AXES_FAILURE_LIMIT wrong passwords for one username
# from one address, that pair is locked out for the cool-off time.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_float("LOGIN_COOLOFF_MINUTES", 15, minimum=0.01))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_RESET_ON_SUCCESS = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("DJANGO_LOG_LEVEL", "INFO")},
    "loggers": {
        # One line per request from the test server and the simulator is noise, not news.
        "django.server": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
        # Lockouts are warnings; each successful sign-in need not be a log line.
        "axes": {"level": "WARNING"},
    },
}

# --- Scenario -------------------------------------------------------------------------------

# The embedded stand-in for Scenario's API: on by default in development, off in production
# unless asked for (docker compose's demo profile asks).
SCENARIO_SIMULATOR = env_bool("SCENARIO_SIMULATOR", DEBUG)
DASHBOARD_PORT = env_int("DASHBOARD_PORT", 8000, minimum=1)
SCENARIO_API_URL = env_str(
    "SCENARIO_API_URL",
    f"http://127.0.0.1:{DASHBOARD_PORT}/sim/v1"
    if SCENARIO_SIMULATOR
    else "https://api.cloud.scenario.com/v1",
).rstrip("/")
if not SCENARIO_API_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured(f"SCENARIO_API_URL must be an http(s) URL, not {SCENARIO_API_URL!r}")
SCENARIO_API_KEY = env_str("SCENARIO_API_KEY", "demo-key" if SCENARIO_SIMULATOR else "")
SCENARIO_API_SECRET = env_str("SCENARIO_API_SECRET", "demo-secret" if SCENARIO_SIMULATOR else "")
SCENARIO_CONNECT_TIMEOUT = env_float("SCENARIO_CONNECT_TIMEOUT", 3.05, minimum=0.1)
SCENARIO_READ_TIMEOUT = env_float("SCENARIO_READ_TIMEOUT", 20.0, minimum=0.1)
SCENARIO_MAX_RETRY_AFTER = env_float("SCENARIO_MAX_RETRY_AFTER", 30.0, minimum=0)

# Simulated seconds that pass per real second: at 20 a typical training takes about a minute.
SIMULATOR_TIME_SCALE = env_float("SIMULATOR_TIME_SCALE", 20.0, minimum=0.001)
SIMULATOR_GPU_SLOTS = env_int("SIMULATOR_GPU_SLOTS", 2, minimum=1)
# The plan's cap on trainings at once (queued or running); 0: no cap. Past it, a launch gets 429.
SIMULATOR_PARALLEL_TRAININGS = env_int("SIMULATOR_PARALLEL_TRAININGS", 0, minimum=0)
# Where browsers reach the simulator, when that differs from the address the workers use
# (docker compose: the worker calls http://simulator:8000, a browser http://localhost:8001).
SIMULATOR_PUBLIC_URL = env_str("SIMULATOR_PUBLIC_URL").rstrip("/")
# Random faults for every request, e.g. "429=0.1,503=0.2,latency_ms=200".
SIMULATOR_FAULTS = env_str("SIMULATOR_FAULTS")

# --- Training lifecycle ---------------------------------------------------------------------

SWEEP_INTERVAL_SECONDS = env_float("SWEEP_INTERVAL_SECONDS", 1.0, minimum=0.2)
SUBMIT_TIMEOUT_SECONDS = env_float("SUBMIT_TIMEOUT_SECONDS", 60.0, minimum=1)
# A draft not picked up by a worker by then is re-enqueued by the sweep.
SUBMIT_GRACE_SECONDS = env_float("SUBMIT_GRACE_SECONDS", 60.0, minimum=0.1)
# Polling rhythm: quick while the GPU works, slower deeper in the queue, capped.
# Poll launched runs in batches, from one listing of Scenario's training models (GET
# /models?status=training): ceil(N / 500) calls for N runs. Off: one GET /models/{id} a run.
POLL_BY_LIST = env_bool("POLL_BY_LIST", True)
POLL_RUNNING_SECONDS = env_float("POLL_RUNNING_SECONDS", 2.0, minimum=0.05)
POLL_QUEUED_SECONDS = env_float("POLL_QUEUED_SECONDS", 5.0, minimum=0.05)
POLL_QUEUE_STEP_SECONDS = env_float("POLL_QUEUE_STEP_SECONDS", 2.0, minimum=0)
POLL_CANCEL_SECONDS = env_float("POLL_CANCEL_SECONDS", 3.0, minimum=0.05)
POLL_MAX_SECONDS = env_float("POLL_MAX_SECONDS", 120.0, minimum=1)
# A run whose state on Scenario has not moved for this long is shown as stalled; a lead may
# settle it. Polls of a stalled run slow down to POLL_MAX_SECONDS.
STALL_AFTER_SECONDS = env_float("STALL_AFTER_SECONDS", 3 * 3600.0, minimum=1)
# Transient failures that never end: a run whose polls fail this many times in a row, or a
# launch that meets only transient failures for this long, ends failed, saying why.
POLL_GIVE_UP_FAILURES = env_int("POLL_GIVE_UP_FAILURES", 30, minimum=1)
LAUNCH_GIVE_UP_SECONDS = env_float("LAUNCH_GIVE_UP_SECONDS", 3600.0, minimum=1)
# A launch refused for a plan limit without a cooldown is tried again after this long.
LAUNCH_LIMIT_PROBE_SECONDS = env_float("LAUNCH_LIMIT_PROBE_SECONDS", 60.0, minimum=0.1)
# The team queue asks again for a quote older than this before it sends a waiting run.
QUEUE_QUOTE_MAX_AGE_SECONDS = env_float("QUEUE_QUOTE_MAX_AGE_SECONDS", 3600.0, minimum=0)
# The launch forecast needs at least this many finished runs like the new one.
FORECAST_MIN_RUNS = env_int("FORECAST_MIN_RUNS", 5, minimum=1)
MODEL_SYNC_INTERVAL_SECONDS = env_float("MODEL_SYNC_INTERVAL_SECONDS", 300.0, minimum=10)
# The picker's Refresh button reads Scenario's model list at most this often per team.
MODEL_REFRESH_INTERVAL_SECONDS = env_float("MODEL_REFRESH_INTERVAL_SECONDS", 30.0, minimum=0)
DASHBOARD_REFRESH_SECONDS = env_float("DASHBOARD_REFRESH_SECONDS", 3.0, minimum=1)

# --- Notifications -------------------------------------------------------------------------

# Where people reach the dashboard: links in emails and webhooks are absolute from it.
DASHBOARD_BASE_URL = env_str("DASHBOARD_BASE_URL", f"http://127.0.0.1:{DASHBOARD_PORT}").rstrip("/")
if not DASHBOARD_BASE_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured(
        f"DASHBOARD_BASE_URL must be an http(s) URL, not {DASHBOARD_BASE_URL!r}"
    )
# Email goes to the SMTP server EMAIL_HOST (in production, the machine's own by default). In
# development without it, each message is written to a file in the data folder (mail/), so
# nothing needs a server.
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "training-dashboard@localhost")
_email_host = env_str("EMAIL_HOST", "" if DEBUG else "localhost")
if _email_host:
    _mailer = {
        "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "OPTIONS": {
            "host": _email_host,
            "port": env_int("EMAIL_PORT", 25, minimum=1),
            "username": env_str("EMAIL_HOST_USER"),
            "password": env_str("EMAIL_HOST_PASSWORD"),
            "use_tls": env_bool("EMAIL_USE_TLS", False),
            "timeout": 10,
        },
    }
else:
    _mailer = {
        "BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "OPTIONS": {"file_path": str(DATA_DIR / "mail")},
    }
MAILERS = {"default": _mailer}
# Scenario's training events (the doorbell) make a run due for a poll at most this often per
# model.
DOORBELL_INTERVAL_SECONDS = env_float("DOORBELL_INTERVAL_SECONDS", 5.0, minimum=0)
# The simulator calls this URL on model.training.started|completed|failed|cancelled, as
# Scenario calls a team's webhook; empty: it calls nobody.
SIMULATOR_WEBHOOK_URL = env_str("SIMULATOR_WEBHOOK_URL")

# --- Celery ---------------------------------------------------------------------------------

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or env_str("REDIS_URL") or "filesystem://"
if CELERY_BROKER_URL == "filesystem://":
    _broker_dir = DATA_DIR / "broker"
    CELERY_BROKER_TRANSPORT = "dashboard.broker:AtomicFilesystemTransport"
    for _folder in ("queue", "processed", "control"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    if CELERY_BROKER_URL.startswith("redis://"):
        # kombu's Redis transport without the crash of a worker whose Redis died (see
        # dashboard/broker.py); rediss:// keeps kombu's own, which sets up TLS from the URL.
        CELERY_BROKER_TRANSPORT = "dashboard.broker:RedisTransport"
    # Longer than any countdown or retry the tasks use, so nothing is redelivered early.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
else:
    raise ImproperlyConfigured(
        "CELERY_BROKER_URL must be filesystem:// or a redis:// URL, "
        f"not {CELERY_BROKER_URL.split('://')[0]!r}"
    )
# Cancels, polls and launches go to a queue of their own, which workers drain before the rest:
# `celery worker -Q urgent,celery` lists it first, and the transport takes queues in that
# order (priority) instead of in turn (kombu's default, round robin). Within it, on Redis (0
# is its highest priority, and it keeps four levels, 0, 3, 6 and 9): cancels first, then the
# sweep, the listing and reading the runs that left it, then applying what the listing read,
# then launches. So a lead's cancel never waits behind polls, a burst of launches or of
# trainings ending never holds up the next listing, and polls never starve launches, as the
# sweep sends one listing at a time.
CELERY_TASK_QUEUES = {"urgent": {}, "celery": {}}
CELERY_TASK_DEFAULT_QUEUE = "celery"
URGENT_PRIORITIES = {
    "cancel_run": 0,
    "sweep": 3,
    "poll_listed": 3,
    "poll_run": 3,
    "apply_listed": 6,
    "submit_run": 9,
}
CELERY_TASK_ROUTES = {
    **{
        f"training.tasks.{name}": {"queue": "urgent", "priority": priority}
        for name, priority in URGENT_PRIORITIES.items()
    },
    "*": {"queue": "celery", "priority": 9},
}
CELERY_BROKER_TRANSPORT_OPTIONS["queue_order_strategy"] = "priority"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 60
CELERY_TASK_TIME_LIMIT = 90
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "sweep": {"task": "training.tasks.sweep", "schedule": SWEEP_INTERVAL_SECONDS},
    "sync-models": {"task": "training.tasks.sync_models", "schedule": MODEL_SYNC_INTERVAL_SECONDS},
    "resend-notifications": {"task": "training.tasks.resend_notifications", "schedule": 60.0},
}
