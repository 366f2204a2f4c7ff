"""Login throttling: wrong passwords for one username from one address lock that pair out."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.urls import reverse

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db
LOGIN = "/login/"


def sign_in(client, username, password, address="10.0.0.1"):
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=address)


def signed_in(client) -> bool:
    return client.get(reverse("home")).status_code == 200


def fail_until_locked(client, username="alice", address="10.0.0.1"):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, username, "not-the-password", address)


def test_the_limit_and_cool_off_come_from_the_environment_with_sensible_defaults():
    assert settings.AXES_FAILURE_LIMIT == 5
    assert settings.AXES_COOLOFF_TIME == timedelta(minutes=15)


def test_a_wrong_password_says_so_on_the_login_page(client, alice):
    response = sign_in(client, "alice", "not-the-password")
    assert response.status_code == 200
    assert "That username and password do not match" in response.content.decode()


def test_after_the_limit_even_the_right_password_is_refused_with_a_clear_message(client, alice):
    fail_until_locked(client)
    response = sign_in(client, "alice", PASSWORD)
    page = response.content.decode()
    assert response.status_code == 429
    assert "Too many failed sign-ins for alice from this address" in page
    assert "paused for 15 min" in page and 'href="/login/"' in page
    assert not signed_in(client)


def test_the_lock_holds_only_that_username_from_that_address(client, alice, bob):
    fail_until_locked(client)
    assert sign_in(client, "alice", PASSWORD, address="10.0.0.2").status_code == 302
    client.logout()
    assert sign_in(client, "bob", PASSWORD).status_code == 302


def test_after_the_cool_off_the_right_password_works_again(client, alice):
    fail_until_locked(client)
    assert sign_in(client, "alice", PASSWORD).status_code == 429
    long_ago = settings.AXES_COOLOFF_TIME + timedelta(seconds=1)
    for attempt in AccessAttempt.objects.all():
        AccessAttempt.objects.filter(pk=attempt.pk).update(
            attempt_time=attempt.attempt_time - long_ago
        )
    response = sign_in(client, "alice", PASSWORD)
    assert response.status_code == 302 and signed_in(client)


def test_a_success_before_the_limit_starts_the_count_again(client, alice):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        sign_in(client, "alice", "not-the-password")
    assert sign_in(client, "alice", PASSWORD).status_code == 302
    client.logout()
    sign_in(client, "alice", "not-the-password")
    assert sign_in(client, "alice", PASSWORD).status_code == 302


def test_a_username_longer_than_any_account_is_refused_at_the_field(client):
    response = client.post(reverse("login"), {"username": "x" * 100_000, "password": "p"})
    assert response.status_code == 200
    assert "That username and password do not match" in response.content.decode()
    # Refused by the form, it never reached django-axes, whose attempt log keeps 255
    # characters (on Postgres the insert failed with a 500).
    assert not AccessAttempt.objects.exists()
