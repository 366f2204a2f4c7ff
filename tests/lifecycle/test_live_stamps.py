"""Every write a live page shows moves its token: a real training through the simulator.

A run is launched, sent and polled to its end over real HTTP (polls one by one and in listed
batches, alternately), as the worker would do it. After every step the dashboard's board and
the run page's live panel are rendered in full and compared with their previous render: each
time what a viewer sees changed, the token the page polls with must have changed too, or the
page would keep showing the old state (an unchanged refresh answers 204 and swaps nothing).
Another team's board must not move at all.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

import pytest
from django.test import Client
from django.urls import reverse

from tests.helpers import HTMX, launch, quick_knight
from training import services
from training.models import RunState

pytestmark = pytest.mark.usefixtures("broker")

PROMPTS = ["a knight in silver armour", "a castle at dusk"]


def _timeless(html: str) -> str:
    """Drop what only the clock changes ("2 minutes ago", the time left counted from now) and
    what every render masks anew (the CSRF token)."""
    html = re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", html)
    html = re.sub(r'(<span title="[^"]*">)[^<]*(</span>)', r"\1\2", html)
    html = re.sub(r'(<td data-label="Finished">)[^<]*(</td>)', r"\1\2", html)
    html = re.sub(r'data-remaining-ms="\d+">[^<]*<', 'data-remaining-ms="">', html)
    return re.sub(r'hx-get="[^"]*"', 'hx-get=""', html)  # the token itself


class Watcher:
    """A signed-in browser tab on a live page: its last render and the URL it polls."""

    def __init__(self, user, name: str, *args, params=None):
        self.client = Client()
        self.client.force_login(user)
        self.url = reverse(name, args=args)
        self.params = params or {}
        self.shown, self.poll = None, {}

    def look(self) -> tuple[bool, bool]:
        """Render in full; return (what it shows changed, its token changed).

        What it shows includes the row counts the poll carries (the run page reloads its
        grid and its trail when they change), not the token.
        """
        response = self.client.get(self.url, self.params, **HTMX)
        assert response.status_code == 200
        html = response.content.decode()
        found = re.search(r'hx-get="([^"]*)"', html)  # none once the run is final
        url = found.group(1).replace("&amp;", "&") if found else ""
        poll = dict(parse_qsl(urlsplit(url).query))
        counts = {name: value for name, value in poll.items() if name != "token"}
        shown = (_timeless(html), counts)
        changed = (shown != self.shown, poll.get("token") != self.poll.get("token"))
        self.shown, self.poll = shown, poll
        return changed

    def unchanged(self) -> bool:
        """Poll as the page does; True when the server said nothing changed (204)."""
        return self.client.get(self.url, {**self.params, **self.poll}, **HTMX).status_code == 204


def _token_of(poll_url: str) -> str:
    return re.search(r"token=([^&]*)", poll_url).group(1)


@pytest.mark.django_db(transaction=True)
def test_every_visible_change_of_a_training_moves_the_tokens(scenario, alice, charlie, staff):
    knight = quick_knight(scenario)
    run = launch(alice, knight, nbEpochs=2, samplePrompts=PROMPTS)
    ids = {"ids": str(run.pk)}
    watchers = [Watcher(alice, "home_board", params=ids), Watcher(staff, "home_board", params=ids)]
    watchers.append(Watcher(alice, "run_live", run.pk))
    stranger = Watcher(charlie, "home_board")
    for watcher in (*watchers, stranger):
        watcher.look()

    states, missed, unmoved = [], [], 0
    for step in range(400):
        if step == 0:
            services.submit_run(run.pk)  # draft → submitting → queued
        elif step % 2:
            services.poll_run(run.pk)
        else:
            services.poll_listed([run.pk])  # the batch path: its bumps are coalesced
        run.refresh_from_db()
        states.append(run.state)
        for watcher in watchers:
            shown, moved = watcher.look()
            if shown and not moved:
                missed.append((step, run.state, watcher.url))
            if not moved and not run.is_final:
                unmoved += 1
                assert watcher.unchanged(), "a token that did not move must answer 204"
        assert stranger.unchanged(), "another team's board moved"
        if run.is_final:
            break
    assert run.state == RunState.SUCCEEDED, states
    assert {RunState.QUEUED, RunState.RUNNING} <= set(states)
    assert run.samples.count() == 4
    assert not missed, f"the render changed but the token did not: {missed}"


@pytest.mark.django_db(transaction=True)
def test_a_board_refresh_with_the_old_token_renders_after_each_change(scenario, alice):
    knight = quick_knight(scenario)
    client = Client()
    client.force_login(alice)
    board = reverse("home_board")
    old = _token_of(_poll_url(client.get(board, **HTMX)))
    launch(alice, knight, nbEpochs=1)
    response = client.get(board, {"token": old}, **HTMX)
    assert response.status_code == 200
    assert "Knight" in response.content.decode()
    again = client.get(board, {"token": _token_of(_poll_url(response))}, **HTMX)
    assert again.status_code == 204


def _poll_url(response) -> str:
    return re.search(r'hx-get="([^"]*)"', response.content.decode()).group(1).replace("&amp;", "&")
