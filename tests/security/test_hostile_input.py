"""Every URL the project serves, every parameter it reads, every role, hostile values: no 5xx.

The URLs come from the URL resolver and the parameters from what each view reads, so a new
view or a new parameter is covered without editing this file:

1. Walk the resolver. Django's admin (/admin/) is left out: it is Django's own, with its
   own tests. The simulator (/sim/v1/) is in, with its credentials: a stranger must not
   answer 5xx either.
2. Discover parameters: request each URL the way a person would, GET and POST, as staff
   and as an artist, with and without HX-Request, while QueryDict records each key a view
   reads. Keys found with plausible values (a real run, a real model) are filled in and the
   URL requested again, until no new key turns up. The simulator reads JSON bodies, which
   QueryDict cannot see: those keys come from SIMULATOR_BODY_KEYS below.
3. Send hostile values (NUL bytes, lone surrogates, non-ASCII digits, huge and negative
   numbers, out-of-range and malformed dates, malformed and forged cursors, repeated
   parameters, 100 kB strings), in the query string or the post, in path segments too,
   as alice (artist), bob (her lead), charlie (another team), admin (staff) and anonymous,
   with and without HX-Request: first a sweep of every value into every parameter of every
   URL, then a derandomized hypothesis search over combinations.

No answer may be a 5xx, and nothing may be logged at ERROR. The figures are printed (run
with -s to see them) and written to test-artifacts/hostile-input.json.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import re
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings as django_settings
from django.http import QueryDict
from django.test import Client
from django.urls import Resolver404, URLPattern, URLResolver, get_resolver, resolve
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.models import SimJob
from tests.factories import add_samples, make_sent_run
from tests.fixtures.simulator import TEST_API_KEY, TEST_API_SECRET
from tests.helpers import forged_cursor
from training import reports, services
from training.models import RunState, ScenarioModel

SKIPPED_PREFIXES = ("admin/",)
# JSON keys the simulator's views read from a body (see simulator/views.py).
SIMULATOR_BODY_KEYS = ("name", "type", "epoch", "action", "assetId", "data", "parameters")
ROLES = ("anonymous", "alice", "bob", "charlie", "admin")
METHODS = ("GET", "POST", "PUT")
ARTIFACT = Path(django_settings.BASE_DIR) / "test-artifacts" / "hostile-input.json"


# One value of each kind of trouble: the sweep puts each into every parameter.
HOSTILE = [
    "\x00",
    "\ud800",
    "²",
    "١٢",
    "-1",
    "0",
    str(2**63),
    "9" * 4400,
    "1e999",
    "nan",
    "1,2,²",
    "9999-12-31",
    "0001-01-01",
    "2025-02-30",
    "100000000000000000000",
    "not-a-cursor!",
    forged_cursor("launched", "9999-12-31T23:59:59-05:00", 1),
    forged_cursor("model", "\ud800", 1),
    forged_cursor("queue", 1e308, 2**70),
    forged_cursor("epochs", [1, 2], {"a": 1}),
    forged_cursor("launched"),
    "x" * 100_000,
    "<script>alert(1)</script>",
]
# More of the same kinds, for the search over combinations.
HOSTILE_MORE = [
    "",
    " ",
    "1\x00",
    "a\udfffb",
    "１２",
    "-" + "9" * 25,
    "9" * 25,
    str(2**64 + 1),
    "-inf",
    "0x1F",
    ",,,",
    "10000-01-01",
    "2025-13-01",
    "-2025-01-01",
    "2025-01-01T25:00",
    "253402300800000000",
    "====",
    forged_cursor("launched", "0001-01-01T00:00:00+05:00", 1),
    forged_cursor("model", "\x00", 1),
    forged_cursor("queue", "NaN", -5),
    forged_cursor("launched", None, "1"),
    forged_cursor(1, 2, 3, 4),
    forged_cursor("2025-01-01T00:00:00", "model_x"),
    "' OR 1=1 --",
    "\u202etxet",
    "é" * 50_000,
]
HOSTILE_SEGMENTS = ["0", "9" * 30, str(2**63), "%00", "a%00b", "%ED%A0%80", "%C2%B2", "x" * 3000]


# --- the URLs the project serves ----------------------------------------------------------


def served_routes(patterns=None, prefix: str = "") -> list[tuple[str, str]]:
    """(route, name) of every URL pattern the resolver knows, admin aside."""
    routes = []
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(entry.pattern)
        if route.startswith(SKIPPED_PREFIXES):
            continue
        if isinstance(entry, URLResolver):
            routes += served_routes(entry.url_patterns, route)
        elif isinstance(entry, URLPattern):
            routes.append((route, entry.name or route))
    return routes


_PLACEHOLDER = re.compile(r"<(?:(?P<converter>\w+):)?(?P<name>\w+)>")


def concrete_path(route: str, values: dict[str, str]) -> str:
    """A path for a route, each <converter:name> replaced by values[name]."""
    path = _PLACEHOLDER.sub(lambda m: values.get(m["name"], "1"), route)
    # The simulator's catch-all is a regular expression; any path under it will do.
    path = path.replace("^.*$", "no/such/endpoint").lstrip("^").rstrip("$")
    return "/" + path


def path_names(route: str) -> list[str]:
    return [m["name"] for m in _PLACEHOLDER.finditer(route)]


# --- recording which parameters a view reads ----------------------------------------------


@contextmanager
def recording_reads():
    """Record every key read from a QueryDict (request.GET, request.POST) meanwhile."""
    keys: set[str] = set()
    own = {}
    for method in ("get", "getlist", "__getitem__", "__contains__"):
        original = getattr(QueryDict, method)
        own[method] = QueryDict.__dict__.get(method)

        def spy(self, key, *args, _original=original, **kwargs):
            if isinstance(key, str):
                keys.add(key)
            return _original(self, key, *args, **kwargs)

        setattr(QueryDict, method, spy)
    try:
        yield keys
    finally:
        for method, original in own.items():
            if original is None:
                delattr(QueryDict, method)
            else:
                setattr(QueryDict, method, original)


# --- sending a request with bytes a normal client would not send ------------------------


def encode(pairs: list[tuple[str, str]]) -> str:
    """A form encoding that lets lone surrogates through as the bytes a client could send."""
    return "&".join(f"{_quoted(key)}={_quoted(value)}" for key, value in pairs)


def _quoted(text: str) -> str:
    return quote(text.encode("utf-8", "surrogatepass"))


class Prober:
    """Sends requests as each role, counting answers and recording every server error."""

    def __init__(self, people: dict, simulator_auth: str):
        self.people = people
        # A view's exception becomes the 500 a browser would get, so every one is recorded.
        self.clients = {role: Client(raise_request_exception=False) for role in ROLES}
        for role, user in people.items():
            self.clients[role].force_login(user)
        self.simulator_auth = simulator_auth
        self.requests = 0
        self.statuses: dict[int, int] = {}
        self.failures: list[str] = []

    def send(self, role, method, path, pairs, *, htmx=False, body_json=None):
        client = self.clients[role]
        headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
        if path.startswith("/sim/"):
            headers["HTTP_AUTHORIZATION"] = self.simulator_auth
        query, body = (encode(pairs), "") if method == "GET" else ("", encode(pairs))
        content_type = "application/x-www-form-urlencoded"
        if body_json is not None:
            body, content_type = body_json, "application/json"
        response = client.generic(
            method, path, data=body, content_type=content_type, QUERY_STRING=query, **headers
        )
        self.requests += 1
        self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
        if response.status_code >= 500:
            shown = [(key, value[:40]) for key, value in pairs]
            self.failures.append(f"{response.status_code} {role} {method} {path[:80]} {shown}")
        if path.startswith("/logout/") and role in self.people:
            client.force_login(self.people[role])
        return response


# --- the world the requests land in -------------------------------------------------------


@pytest.fixture
def world(scenario, alice, bob, charlie, staff):
    """Runs of two teams, a model to train, and a simulator model with a job."""
    remote = scenario.create_model("Hostile portrait", images=3)
    services.sync_models(scenario.client())
    model = ScenarioModel.objects.get(remote_id=remote.id)
    done = make_sent_run(alice, RunState.SUCCEEDED)
    add_samples(done)
    running = make_sent_run(alice, RunState.RUNNING)
    theirs = make_sent_run(charlie, RunState.SUCCEEDED)
    scenario.client().trigger(remote.id, {"nbEpochs": 1})
    job = SimJob.objects.filter(model_id=remote.id).latest("requested_at")
    sample = done.samples.first()
    credentials = base64.b64encode(f"{TEST_API_KEY}:{TEST_API_SECRET}".encode()).decode()
    return {
        "people": {"alice": alice, "bob": bob, "charlie": charlie, "admin": staff},
        "auth": f"Basic {credentials}",
        # What a person would put in each parameter, to reach deeper into a view.
        "plausible": {
            "pk": str(done.pk),
            "model_id": remote.id,
            "job_id": job.id,
            "asset_id": "asset_none",
            "epoch": sample.epoch,
            "prompt": "0",
            "model": model.remote_id,
            "from_run": str(done.pk),
            "ids": f"{running.pk},{theirs.pk}",
            "runs": f"{done.pk},{running.pk}",
            "action": "estimate",
            "after": reports.encode_cursor("launched", done.created_at, done.pk),
            "sort": "-queue",
            "since": "0",
            "token": "x",
        },
    }


_FORM = re.compile(r"<form\b(?P<attrs>[^>]*)>(?P<body>.*?)</form>", re.S)
_ACTION = re.compile(r'\baction="(?P<url>[^"]*)"')
_METHOD = re.compile(r'\bmethod="(?P<method>\w+)"', re.I)
_FIELD = re.compile(r'<(?:input|select|textarea|button)\b[^>]*\bname="(?P<name>[^"]+)"')


def form_fields(html: str, here: str) -> list[tuple[str, str, set[str]]]:
    """(route, method, field names) of each form on a page: what a browser would send."""
    forms = []
    for form in _FORM.finditer(html):
        action = _ACTION.search(form["attrs"])
        method = _METHOD.search(form["attrs"])
        url = (action["url"] if action and action["url"] else here).split("?")[0]
        try:
            route = str(resolve(url).route)
        except Resolver404:
            continue
        names = {field["name"] for field in _FIELD.finditer(form["body"])}
        forms.append((route, (method["method"] if method else "GET").upper(), names))
    return forms


def discover(prober: Prober, routes, plausible: dict) -> dict[tuple[str, str], list[str]]:
    """The parameters each (route, method) reads, found by requesting it with what it read.

    A view that reads every posted key (the training form) reads no key by name: the names
    of the fields its pages' forms send are added to it. A method a view always refuses
    (405) is left out.
    """
    found: dict[tuple[str, str], set[str]] = {}
    refused: set[tuple[str, str]] = set()
    for (route, _name), method in itertools.product(routes, METHODS):
        path = concrete_path(route, plausible)
        keys = found.setdefault((route, method), set())
        statuses: set[int] = set()
        for _ in range(4):
            pairs = [(key, plausible.get(key, "1")) for key in sorted(keys)]
            before = len(keys)
            for role, htmx in itertools.product(("admin", "alice"), (False, True)):
                with recording_reads() as read:
                    response = prober.send(role, method, path, pairs, htmx=htmx)
                keys |= read
                statuses.add(response.status_code)
                if "html" in response.get("Content-Type", ""):
                    for form_route, form_method, names in form_fields(response.text, path):
                        found.setdefault((form_route, form_method), set()).update(names)
            if len(keys) == before:
                break
        if statuses == {405}:
            refused.add((route, method))
        if route.startswith("sim/") and method in ("POST", "PUT"):
            keys |= set(SIMULATOR_BODY_KEYS)
    return {
        cell: sorted(keys - {"csrfmiddlewaretoken"})
        for cell, keys in found.items()
        if cell[0] in {route for route, _ in routes} and cell[1] in METHODS and cell not in refused
    }


def test_no_hostile_input_gets_a_server_error(world, caplog, scenario_schemas):
    # The simulator's URLs get hostile bodies on purpose; its answers are still checked.
    with scenario_schemas.sending_invalid_requests():
        _probe_every_url(world, caplog)


def _probe_every_url(world, caplog):
    caplog.set_level(logging.ERROR)
    started = time.monotonic()
    prober = Prober(world["people"], world["auth"])
    routes = served_routes()
    plausible = world["plausible"]
    parameters = discover(prober, routes, plausible)
    discovered = prober.requests

    # Sweep: every hostile value into every parameter (and path segment) of every URL, as
    # the signed-in roles in turn; anonymous gets each value in all parameters at once.
    roles = itertools.cycle([role for role in ROLES if role != "anonymous"])
    htmx_flags = itertools.cycle((True, False, False))
    for (route, method), keys in parameters.items():
        base = {key: plausible.get(key, "1") for key in keys}
        json_body = route.startswith("sim/") and method in ("POST", "PUT")
        for key in keys:
            for value in HOSTILE:
                pairs = list({**base, key: value}.items())
                path = concrete_path(route, plausible)
                body = json.dumps({key: value}) if json_body else None
                prober.send(next(roles), method, path, pairs, htmx=next(htmx_flags), body_json=body)
        for name in path_names(route):
            for segment in HOSTILE_SEGMENTS:
                path = concrete_path(route, {**plausible, name: segment})
                prober.send(next(roles), method, path, [], htmx=next(htmx_flags))
        for value in HOSTILE:
            pairs = [(key, value) for key in keys]
            path = concrete_path(route, plausible)
            prober.send("anonymous", method, path, pairs, htmx=next(htmx_flags))
    swept = prober.requests - discovered

    cells = sorted(parameters)

    @settings(
        max_examples=300,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(data=st.data())
    def probe(data):
        route, method = data.draw(st.sampled_from(cells))
        keys = parameters[(route, method)] or ["q"]
        value = st.sampled_from(HOSTILE + HOSTILE_MORE) | st.text(max_size=30)
        named = st.sampled_from(keys) | st.text(min_size=1, max_size=8)
        # Repeated parameters: the same key several times, with different values.
        pairs = data.draw(st.lists(st.tuples(named, value), max_size=8))
        segments = {
            name: data.draw(st.sampled_from([plausible.get(name, "1"), *HOSTILE_SEGMENTS]))
            for name in path_names(route)
        }
        body_json = None
        if route.startswith("sim/") and method in ("POST", "PUT") and data.draw(st.booleans()):
            keys_ = st.sampled_from(SIMULATOR_BODY_KEYS)
            json_value = (
                st.sampled_from(HOSTILE + HOSTILE_MORE) | st.integers() | st.none() | st.booleans()
            )
            body = data.draw(st.dictionaries(keys_, json_value, max_size=4))
            body_json = json.dumps(body)
        prober.send(
            data.draw(st.sampled_from(ROLES)),
            method,
            concrete_path(route, {**plausible, **segments}),
            pairs,
            htmx=data.draw(st.booleans()),
            body_json=body_json,
        )

    probe()
    figures = {
        "urls": len(routes),
        "url_methods": len(parameters),
        "parameters": len({key for keys in parameters.values() for key in keys}),
        "roles": len(ROLES),
        "hostile_values": len(HOSTILE) + len(HOSTILE_MORE) + len(HOSTILE_SEGMENTS),
        "parameters_by_url": {f"{m} /{r}": keys for (r, m), keys in parameters.items()},
        "requests": prober.requests,
        "requests_discovering": discovered,
        "requests_sweeping": swept,
        "requests_searching": prober.requests - discovered - swept,
        "statuses": dict(sorted(prober.statuses.items())),
        "server_errors": len(prober.failures),
        "database": django_settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1],
        "seconds": round(time.monotonic() - started, 1),
    }
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text(json.dumps(figures, indent=2))
    print(json.dumps({k: v for k, v in figures.items() if k != "parameters_by_url"}))
    assert prober.failures == [], "\n".join(prober.failures[:30])
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], "\n".join(f"{r.name}: {r.getMessage()}" for r in errors[:10])
