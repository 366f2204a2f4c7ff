"""Show a value the one way the dashboard says it, on every page, message and file.

Durations, Creative Units, people's names, parameter values, yes/no and moments: each has
one function here, and the template filters (training.templatetags.display), the charts,
the notifications and the budget messages all call it, so a value reads the same wherever
it appears. static/js/app.js repeats `duration` for the live countdown.
"""

from __future__ import annotations

import math
from decimal import Decimal
from urllib.parse import urlsplit

from django.db.models import CharField, F, Value
from django.db.models.functions import Coalesce, Concat, NullIf, Trim
from django.utils import timezone

NOTHING = "—"  # what a value nobody knows (yet) reads as


# --- durations ------------------------------------------------------------------------------


def duration(seconds) -> str:
    """Say a length of time: "45 s", "3 min 05 s", "12 min", "1 h 05 min", "1 d 1 h".

    Seconds count under ten minutes, where a countdown is watched second by second; past that
    the nearest minute, and past a day the nearest hour. A second unit that comes to zero is
    left out ("1 min", "2 h", "3 d"). Unknown → "—".
    """
    if seconds is None or seconds == "":
        return NOTHING
    total = _half_up(max(0.0, float(seconds)))
    if total < 600:
        return _two_units(*divmod(total, 60), "min", "s", pad=True)
    minutes = _half_up(total / 60)
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 24 * 60:
        return _two_units(*divmod(minutes, 60), "h", "min", pad=True)
    return _two_units(*divmod(_half_up(total / 3600), 24), "d", "h", pad=False)


def remaining(milliseconds) -> str:
    """Say a remaining time given in milliseconds, as `duration` does; unknown → "—"."""
    if milliseconds is None or milliseconds == "":
        return NOTHING
    return duration(max(0, int(milliseconds)) / 1000)


def about_minutes(seconds: float) -> str:
    """Say an estimate in whole minutes, one at least: a forecast is not precise to the second."""
    return f"{max(_half_up(seconds / 60), 1)} min"


def forecast_miss(seconds) -> str:
    """Say how a run's end compared with its forecast's likely time: "4 min late"; none → "—"."""
    if seconds is None:
        return NOTHING
    if abs(seconds) < 30:
        return "on time"
    return f"{about_minutes(abs(seconds))} {'late' if seconds > 0 else 'early'}"


def took_seconds(run) -> float | None:
    """Return how long a finished run took: its training, else launch to end (canceled queued)."""
    if run.train_duration is not None:
        return run.train_duration
    if run.finished_at is None:
        return None
    return (run.finished_at - run.created_at).total_seconds()


def _half_up(value: float) -> int:
    # Python's round() goes to the even neighbour; the countdown's Math.round goes up.
    return math.floor(value + 0.5)


def _two_units(big: int, small: int, big_unit: str, small_unit: str, *, pad: bool) -> str:
    if not big:
        return f"{small} {small_unit}"
    if not small:
        return f"{big} {big_unit}"
    return f"{big} {big_unit} {f'{small:02d}' if pad else small} {small_unit}"


# --- Creative Units and numbers -------------------------------------------------------------


def cu_amount(value) -> str:
    """Say a number of Creative Units: "120", "12.5", "12.25", "1,234.5"; unknown → "—".

    Two decimals at most, trailing zeros dropped, thousands grouped.
    """
    if value is None or value == "":
        return NOTHING
    shown = f"{float(value):,.2f}".rstrip("0").rstrip(".")
    return "0" if shown == "-0" else shown


def cu(value) -> str:
    """Say Creative Units with their unit: "12.25 CU"; unknown → "—"."""
    if value is None or value == "":
        return NOTHING
    return f"{cu_amount(value)} CU"


def count(value) -> str:
    """Say a count with its thousands grouped: "12,345" (as floatformat:"0g" did, faster)."""
    if value is None or value == "":
        return ""
    return f"{round(float(value)):,}"


def percent(share) -> str:
    """Say a share (0.75) in whole percent, without the sign: "75"; unknown → "—"."""
    if share is None or share == "":
        return NOTHING
    return str(round(float(share) * 100))


def number(value: float | int) -> str:
    """Say a number as a person reads it: 0.000001, not 1e-06; 5, not 5.0."""
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return format(Decimal(repr(float(value))), "f")


# --- people ---------------------------------------------------------------------------------


def name_of(first_name: str | None, last_name: str | None, username: str | None) -> str:
    """Name a person: their full name, else their username ("" when they have neither)."""
    return f"{first_name or ''} {last_name or ''}".strip() or (username or "")


def person(user) -> str:
    """Name a user as `name_of` does; nobody → "someone"."""
    if user is None:
        return "someone"
    return name_of(user.first_name, user.last_name, user.get_username())


def person_expression(relation: str) -> Coalesce:
    """Return `name_of` as SQL over a user relation ("created_by"), to sort and export by."""
    full = Trim(
        Concat(
            f"{relation}__first_name",
            Value(" "),
            f"{relation}__last_name",
            output_field=CharField(),
        )
    )
    return Coalesce(NullIf(full, Value("")), F(f"{relation}__username"), output_field=CharField())


# --- parameters and yes/no -----------------------------------------------------------------


def yes_no(value) -> str:
    """Say a truth value: "Yes" or "No"."""
    return "Yes" if value else "No"


def parameter_value(value: object) -> str:
    """Say a parameter's value: one list item a line, Yes/No, numbers plainly, — for none."""
    if isinstance(value, bool):
        return yes_no(value)
    if isinstance(value, list | tuple):
        return "\n".join(parameter_value(item) for item in value)
    if value is None:
        return NOTHING
    if isinstance(value, int | float):
        return number(value)
    return str(value)


# --- moments --------------------------------------------------------------------------------


def moment(value, *, seconds: bool = False) -> str:
    """Say when something happened, in the dashboard's time zone: "2025-01-13 14:05".

    `seconds` adds them ("2025-01-13 14:05:59") where events follow each other closely: a
    run's trail, its start and end, deliveries. Unknown → "—".
    """
    if not value:
        return NOTHING
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def clock(value, *, seconds: bool = True) -> str:
    """Say the time of day of a moment, for steps within a day: "14:05:59" ("14:05")."""
    if not value:
        return NOTHING
    return timezone.localtime(value).strftime("%H:%M:%S" if seconds else "%H:%M")


# --- links ----------------------------------------------------------------------------------


def web_url(url) -> str:
    """Return the URL when it is http(s), else "": Scenario's data must not become a
    javascript: or data: link in a page or a message."""
    text = str(url or "").strip()
    return text if urlsplit(text).scheme.lower() in {"http", "https"} else ""
