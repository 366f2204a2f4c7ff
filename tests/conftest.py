"""Shared fixtures: named people in two teams, a model, plus the fixture plugins of each area."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.db import connection

from tests.factories import make_bare_model
from training.models import Membership, Role, Team

pytest_plugins = [
    "tests.fixtures.simulator",
    "tests.fixtures.simulator_api",
    "tests.fixtures.workers",
    "tests.fixtures.browser",
    "tests.fixtures.history",
    "tests.fixtures.schemas",
]

PASSWORD = "correct-horse-battery"


@pytest.fixture(scope="session", autouse=True)
def quiet_database_at_the_end(django_db_setup, django_db_blocker):
    """Close what other threads left open, so the test database can be dropped.

    Idle pool threads of in-process workers and live-server threads serving kept-alive
    connections keep database sessions of their own, which would make the drop fail.
    """
    yield
    from training import scenario_client

    scenario_client.close()
    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture(autouse=True)
def empty_cache():
    """Each test starts with an empty cache: no throttle or cached quote carries over."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Test people get their passwords hashed in a blink instead of ~0.2 s each."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _person(django_user_model, username, team=None, role=Role.ARTIST, **extra):
    user = django_user_model.objects.create_user(
        username=username, password=PASSWORD, first_name=username.capitalize(), **extra
    )
    if team is not None:
        Membership.objects.create(user=user, team=team, role=role)
    return user


@pytest.fixture
def team_a(db):
    return Team.objects.create(name="Team A")


@pytest.fixture
def team_b(db):
    return Team.objects.create(name="Team B")


@pytest.fixture
def alice(django_user_model, team_a):
    """An artist in team A."""
    return _person(django_user_model, "alice", team_a)


@pytest.fixture
def dave(django_user_model, team_a):
    """Another artist in team A."""
    return _person(django_user_model, "dave", team_a)


@pytest.fixture
def bob(django_user_model, team_a):
    """The lead of team A."""
    return _person(django_user_model, "bob", team_a, Role.LEAD)


@pytest.fixture
def charlie(django_user_model, team_b):
    """An artist in team B."""
    return _person(django_user_model, "charlie", team_b)


@pytest.fixture
def staff(django_user_model):
    """A staff member in no team, who sees everything."""
    return _person(django_user_model, "sam", is_staff=True)


@pytest.fixture
def model(db):
    """A Flux LoRA model called Knight, known by its remote id only (no images listed)."""
    return make_bare_model("Knight", remote_id="model_knight")
