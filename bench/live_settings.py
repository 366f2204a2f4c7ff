"""The dashboard's settings, plus a hello-world page for bench.live to measure against."""

from dashboard.settings import *  # noqa: F403

ROOT_URLCONF = "bench.live_urls"
