"""One way to show a value: durations, CU, names, parameter values, yes/no and moments."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from django.template import Context, Template
from django.utils import timezone

from training import display
from training.models import Membership
from training.reports import names_of

APP_JS = Path(__file__).resolve().parents[2] / "static" / "js" / "app.js"


# --- durations ------------------------------------------------------------------------------

DURATIONS = [
    (None, "—"),
    ("", "—"),
    (0, "0 s"),
    (-5, "0 s"),
    (0.4, "0 s"),
    (0.5, "1 s"),
    (45, "45 s"),
    (59.4, "59 s"),
    (59.5, "1 min"),
    (60, "1 min"),
    (65, "1 min 05 s"),
    (97.5, "1 min 38 s"),
    (599, "9 min 59 s"),
    (600, "10 min"),
    (720, "12 min"),
    (754, "13 min"),
    (3569, "59 min"),
    (3570, "1 h"),
    (3600, "1 h"),
    (3900, "1 h 05 min"),
    (86369, "23 h 59 min"),
    (86370, "1 d"),
    (86400, "1 d"),
    (90000, "1 d 1 h"),
    (10 * 86400 + 5 * 3600, "10 d 5 h"),
]


@pytest.mark.parametrize(("seconds", "words"), DURATIONS)
def test_it_says_a_duration_one_way(seconds, words):
    assert display.duration(seconds) == words


def test_it_reads_a_duration_given_as_text():
    assert display.duration("720") == "12 min"


@pytest.mark.parametrize(
    ("milliseconds", "words"),
    [
        (None, "—"),
        ("", "—"),
        (-1000, "0 s"),
        (0, "0 s"),
        (95_000, "1 min 35 s"),
        (720_000, "12 min"),
    ],
)
def test_it_says_a_remaining_time_as_a_duration(milliseconds, words):
    assert display.remaining(milliseconds) == words


@pytest.mark.skipif(shutil.which("node") is None, reason="no node to run the page's script")
def test_the_countdown_script_says_a_duration_as_the_server_does():
    script = APP_JS.read_text()
    functions = re.search(
        r"function twoUnits\(.*?\n}\nfunction formatRemaining\(.*?\n}\n", script, re.S
    )
    assert functions, "app.js has no formatRemaining"
    seconds = [s for s, _ in DURATIONS if isinstance(s, int | float) and s >= 0]
    program = functions.group(0) + (
        f"console.log(JSON.stringify({json.dumps(seconds)}.map(s => formatRemaining(s * 1000))));"
    )
    said = json.loads(
        subprocess.run(["node", "-e", program], capture_output=True, check=True).stdout
    )
    assert said == [display.duration(s) for s in seconds]


@pytest.mark.parametrize(
    ("seconds", "words"),
    [(0, "1 min"), (20, "1 min"), (89, "1 min"), (90, "2 min"), (754, "13 min")],
)
def test_it_says_an_estimate_in_whole_minutes(seconds, words):
    assert display.about_minutes(seconds) == words


def test_a_run_took_its_training_else_launch_to_end():
    launched = timezone.now()
    trained = SimpleNamespace(train_duration=200.0, created_at=launched, finished_at=None)
    canceled = SimpleNamespace(
        train_duration=None, created_at=launched, finished_at=launched + dt.timedelta(seconds=90)
    )
    running = SimpleNamespace(train_duration=None, created_at=launched, finished_at=None)
    assert display.took_seconds(trained) == 200.0
    assert display.took_seconds(canceled) == 90.0
    assert display.took_seconds(running) is None


# --- Creative Units and numbers -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (None, "—"),
        ("", "—"),
        (0, "0"),
        (0.0, "0"),
        (120, "120"),
        (12.5, "12.5"),
        (12.25, "12.25"),
        (12.256, "12.26"),
        (1234.5, "1,234.5"),
        (1234567.891, "1,234,567.89"),
        (-25, "-25"),
        (-12.25, "-12.25"),
        (-0.001, "0"),
        ("7.50", "7.5"),
    ],
)
def test_it_says_cu_one_way(value, words):
    assert display.cu_amount(value) == words


def test_cu_with_its_unit():
    assert display.cu(12.25) == "12.25 CU"
    assert display.cu(2000) == "2,000 CU"
    assert display.cu(None) == "—"


@pytest.mark.parametrize(
    ("value", "words"),
    [(5, "5"), (5.0, "5"), (0.000001, "0.000001"), (2.5e-05, "0.000025"), (-3, "-3")],
)
def test_it_says_a_number_without_float_noise(value, words):
    assert display.number(value) == words


# --- people ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "last", "username", "name"),
    [
        ("Alice", "Liddell", "alice", "Alice Liddell"),
        ("Alice", "", "alice", "Alice"),
        ("", "Liddell", "alice", "Liddell"),
        ("", "", "alice", "alice"),
        (None, None, "alice", "alice"),
        ("  ", "", "alice", "alice"),
        ("", "", None, ""),
    ],
)
def test_it_names_a_person_one_way(first, last, username, name):
    assert display.name_of(first, last, username) == name


def test_a_user_is_named_by_full_name_else_username(db):
    users = get_user_model().objects
    full = users.create_user("alice", first_name="Alice", last_name="Liddell")
    bare = users.create_user("bob")
    assert display.person(full) == "Alice Liddell"
    assert display.person(bare) == "bob"
    assert display.person(None) == "someone"


def test_the_sql_name_is_the_python_name(team_a):
    users = get_user_model().objects
    people = [
        users.create_user("alice", first_name="Alice", last_name="Liddell"),
        users.create_user("bob", first_name="Bob"),
        users.create_user("carol", last_name="Carr"),
        users.create_user("dave"),
    ]
    for user in people:
        Membership.objects.create(user=user, team=team_a)
    in_sql = dict(
        Membership.objects.annotate(shown=display.person_expression("user")).values_list(
            "user_id", "shown"
        )
    )
    assert in_sql == {p.pk: display.person(p) for p in people}
    assert names_of(p.pk for p in people) == in_sql


# --- parameters and yes/no -----------------------------------------------------------------


def test_it_says_yes_or_no():
    assert (display.yes_no(True), display.yes_no(False), display.yes_no(None)) == (
        "Yes",
        "No",
        "No",
    )


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (True, "Yes"),
        (False, "No"),
        (None, "—"),
        (0, "0"),
        (4, "4"),
        (0.0001, "0.0001"),
        (1e-06, "0.000001"),
        (2.0, "2"),
        ("constant", "constant"),
        ("", ""),
        (["a knight", "a castle"], "a knight\na castle"),
        ([True, 3], "Yes\n3"),
        ([], ""),
    ],
)
def test_it_says_a_parameter_value_one_way(value, words):
    assert display.parameter_value(value) == words


# --- moments and links ----------------------------------------------------------------------


WHEN = dt.datetime(2025, 1, 13, 13, 5, 59, tzinfo=dt.UTC)


def test_it_says_a_moment_in_the_dashboards_time_zone(settings):
    settings.TIME_ZONE = "Europe/Paris"
    assert display.moment(WHEN) == "2025-01-13 14:05"
    assert display.moment(WHEN, seconds=True) == "2025-01-13 14:05:59"
    assert display.moment(None) == "—"


def test_it_says_a_time_of_day(settings):
    settings.TIME_ZONE = "Europe/Paris"
    assert display.clock(WHEN) == "14:05:59"
    assert display.clock(WHEN, seconds=False) == "14:05"
    assert display.clock(None) == "—"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://cdn.example/a.png", "https://cdn.example/a.png"),
        (" http://x.example ", "http://x.example"),
        ("javascript:alert(1)", ""),
        ("data:text/html,hi", ""),
        (None, ""),
    ],
)
def test_only_web_links_are_shown(url, shown):
    assert display.web_url(url) == shown


# --- the template filters -------------------------------------------------------------------


def test_the_template_filters_say_what_display_says(db):
    user = get_user_model()(username="alice", first_name="Alice")
    page = Template(
        "{% load display %}{{ s|duration }}|{{ ms|remaining }}|{{ c|cu }}|{{ c|cu_amount }}|"
        "{{ u|person }}|{{ url|web_url }}|{{ when|moment }}|{{ when|moment:'seconds' }}|"
        "{{ when|clock }}|{{ when|clock:'minutes' }}"
    ).render(
        Context(
            {
                "s": 90000,
                "ms": 720_000,
                "c": 12.25,
                "u": user,
                "url": "javascript:alert(1)",
                "when": WHEN,
            }
        )
    )
    assert page == "1 d 1 h|12 min|12.25 CU|12.25|Alice||" + "|".join(
        [
            display.moment(WHEN),
            display.moment(WHEN, seconds=True),
            display.clock(WHEN),
            display.clock(WHEN, seconds=False),
        ]
    )
