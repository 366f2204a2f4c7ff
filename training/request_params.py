"""Read request parameters within bounds: ids, id lists, timestamps, dates, free text, choices.

Every view reads its query string, and the fields of a post that no form handles, through
here. A value a database or the standard library would choke on (a NUL byte, a lone
surrogate, a non-ASCII digit, an id past a 64-bit integer, a date whose next day does not
exist) is refused here as a `BadParameter`, which `BadParameterMiddleware` answers with a
400 page naming the parameter, instead of failing deep in a query.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping

from django.core.exceptions import BadRequest
from django.shortcuts import render

from training.fragments import vary_on_htmx

MAX_ID = 2**63 - 1  # the largest primary key both databases store
MAX_ID_DIGITS = len(str(MAX_ID))
MAX_QUERY_STRING = 8192  # characters, percent-encoded
# Dates and moments far enough from Python's year 1 and year 9999 that a day added, a week
# truncated or a time zone applied cannot leave the range a datetime holds.
EARLIEST_DAY = dt.date(1900, 1, 1)
LATEST_DAY = dt.date(9998, 12, 31)
EARLIEST_MOMENT = dt.datetime.combine(EARLIEST_DAY, dt.time.min, tzinfo=dt.UTC)
LATEST_MOMENT = dt.datetime.combine(LATEST_DAY, dt.time.max, tzinfo=dt.UTC)
_DIGITS = re.compile(r"[0-9]+")
_SIGNED_DIGITS = re.compile(r"-?[0-9]+")
# NUL, which Postgres refuses in text, and lone surrogates, which no encoder accepts.
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


class BadParameter(BadRequest):
    """A request parameter that cannot be used, with the parameter's name and why."""

    def __init__(self, name: str, problem: str):
        super().__init__(f"{name}: {problem}")
        self.name, self.problem = name, problem


class BadParameterMiddleware:
    """Answer a BadParameter raised by any view with a 400 page (or fragment) naming it.

    Answered here rather than by Django's handler400, which would log a traceback for what
    is only a bad address.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        # A front server refuses longer request lines (gunicorn at 4 kB) before Django sees
        # them; refusing here too keeps a huge address from reaching any view, or the login
        # redirect, which would carry it whole in ?next=.
        if len(request.META.get("QUERY_STRING", "")) > MAX_QUERY_STRING:
            error = BadParameter("query string", f"is too long (at most {MAX_QUERY_STRING}).")
            return bad_parameter_response(request, error, status=414)
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, BadParameter):
            return bad_parameter_response(request, exception)
        return None


def bad_parameter_response(request, error: BadParameter, status: int = 400):
    """The 400 page that names the bad parameter; its message alone for an htmx request."""
    context = {"name": error.name, "problem": error.problem}
    template = "bad_request.html#message" if getattr(request, "htmx", False) else "bad_request.html"
    return vary_on_htmx(render(request, template, context, status=status))


# --- single values -----------------------------------------------------------------------


def clean_text(value: object, name: str, *, max_length: int = 200) -> str:
    """`value` as text a database can store, at most `max_length` characters."""
    if not isinstance(value, str):
        raise BadParameter(name, "must be text.")
    if _UNSTORABLE.search(value):
        raise BadParameter(name, "holds a character that is not allowed (NUL or a lone surrogate).")
    if len(value) > max_length:
        raise BadParameter(name, f"is too long (at most {max_length} characters).")
    return value


def parse_id(raw: str, name: str) -> int:
    """A positive id, written in ASCII digits, that fits a 64-bit primary key."""
    raw = raw.strip()
    if not _DIGITS.fullmatch(raw) or len(raw) > MAX_ID_DIGITS or not 1 <= int(raw) <= MAX_ID:
        raise BadParameter(name, f"must be a number from 1 to {MAX_ID}, not “{_shown(raw)}”.")
    return int(raw)


def check_moment(value: dt.datetime, name: str) -> dt.datetime:
    """An aware datetime between EARLIEST_MOMENT and LATEST_MOMENT, or BadParameter."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    try:
        in_range = EARLIEST_MOMENT <= value <= LATEST_MOMENT
    except OverflowError:  # an offset that pushes it past year 9999
        in_range = False
    if not in_range:
        raise BadParameter(name, "is a moment out of range.")
    return value


def _shown(raw: str) -> str:
    """A bad value cut short and made printable, to quote it in an error message."""
    return _UNSTORABLE.sub("?", raw[:20]) + ("…" if len(raw) > 20 else "")


# --- from a QueryDict (request.GET or request.POST) --------------------------------------


def text(params: Mapping, name: str, *, max_length: int = 200, default: str = "") -> str:
    """Free text, stripped of surrounding blanks; `default` when absent or blank."""
    raw = params.get(name)
    if raw is None:
        return default
    return clean_text(raw, name, max_length=max_length).strip() or default


def identifier(params: Mapping, name: str) -> int | None:
    """An id (a primary key), or None when absent or blank."""
    raw = text(params, name, max_length=MAX_ID_DIGITS + 20)
    return parse_id(raw, name) if raw else None


def id_list(params, name: str, *, max_items: int = 200) -> list[int]:
    """Ids from ?name=1,2,3 or repeated ?name=1&name=2, in order, without repeats."""
    values = params.getlist(name) if hasattr(params, "getlist") else [params.get(name) or ""]
    parts = [part for value in values for part in _text_of(value, name).split(",")]
    ids: list[int] = []
    for part in parts:
        if part.strip():
            number = parse_id(part, name)
            if number not in ids:
                ids.append(number)
    if len(ids) > max_items:
        raise BadParameter(name, f"lists too many ids (at most {max_items}).")
    return ids


def _text_of(value: object, name: str) -> str:
    # An id list of 200 ids of 19 digits and their commas, with room to spare.
    return clean_text(value, name, max_length=10_000)


def moment_us(params: Mapping, name: str) -> dt.datetime | None:
    """A moment written as microseconds since 1970 (UTC), or None when absent."""
    raw = text(params, name, max_length=40)
    if not raw:
        return None
    if not _SIGNED_DIGITS.fullmatch(raw) or len(raw) > 20:
        raise BadParameter(name, "must be a number of microseconds.")
    seconds, micros = divmod(int(raw), 1_000_000)
    try:
        moment = dt.datetime.fromtimestamp(seconds, tz=dt.UTC).replace(microsecond=micros)
    except (OverflowError, OSError, ValueError):
        raise BadParameter(name, "is a moment out of range.") from None
    return check_moment(moment, name)


def day(params: Mapping, name: str) -> dt.date | None:
    """A calendar date written YYYY-MM-DD, between EARLIEST_DAY and LATEST_DAY."""
    raw = text(params, name, max_length=40)
    if not raw:
        return None
    try:
        value = dt.date.fromisoformat(raw) if raw.isascii() else None
    except ValueError:
        value = None
    if value is None:
        raise BadParameter(name, "must be a date like 2025-01-31.")
    if not EARLIEST_DAY <= value <= LATEST_DAY:
        raise BadParameter(name, f"must be a date between {EARLIEST_DAY} and {LATEST_DAY}.")
    return value


def choice(params: Mapping, name: str, choices: Iterable[str], *, default: str = "") -> str:
    """One of `choices`, or `default` when absent or blank."""
    raw = text(params, name, max_length=100)
    if not raw:
        return default
    if raw not in set(choices):
        raise BadParameter(name, f"must be one of the choices, not “{_shown(raw)}”.")
    return raw
