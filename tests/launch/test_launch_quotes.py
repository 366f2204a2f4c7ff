"""Quotes stay on the server: the form names one, and nothing it carries can lower the price."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import signing
from django.urls import reverse
from django.utils import timezone
from django.utils.datastructures import MultiValueDict

from simulator.models import RequestLog
from tests.factories import make_model, make_past_run
from tests.helpers import launched
from tests.html import read_form
from tests.launch_form import estimate, post, quote_cost, sim_requests
from training import quotes
from training.forms import LaunchForm
from training.models import Quote, TrainingRun

BUDGET = 2000


def quote_panel(response) -> str:
    page = response.content.decode()
    assert 'id="quote-panel"' in page, "no quote panel"
    return page[page.index('id="quote-panel"') :]


def nothing_launched(model) -> bool:
    """No run stored, and no real (not dry-run) train request reached the simulator."""
    real = sim_requests(dry_run=False, model_id=model.remote_id)
    return not TrainingRun.objects.filter(model=model).exists() and not real.exists()


def fresh_form(client, model, data):
    """The same values in a new form (a new idempotency key), as another tab would post."""
    page = read_form(client.get(reverse("launch"), {"model": model.remote_id}))
    return {**data, "idempotency_key": [page.hidden("idempotency_key")]}


# --- What the form carries ------------------------------------------------------------------


def test_the_form_carries_only_a_random_key_of_the_quote(scenario, client, alice, knight):
    client.force_login(alice)
    response = estimate(client, knight)
    row = Quote.objects.get()
    assert read_form(response).hidden("quote_id") == row.key
    assert len(row.key) >= 40 and str(row.cost) not in row.key
    assert (row.user, row.model, row.used_at) == (alice, knight, None)
    assert row.cost == quote_cost(response)
    assert row.expires_at > timezone.now() + timedelta(minutes=25)


# --- Refused, with a message on the quote panel ---------------------------------------------


TAMPERINGS = {
    "one character changed": lambda key: key[:-1] + ("A" if key[-1] != "A" else "B"),
    "cut short": lambda key: key[:20],
    "a NUL byte added": lambda key: key + "\x00",
    "not ASCII": lambda key: "é" * len(key),
    "far too long": lambda key: key * 40,
}


@pytest.mark.parametrize("action", ["confirm", "launch"])
@pytest.mark.parametrize("tamper", TAMPERINGS.values(), ids=TAMPERINGS.keys())
def test_it_refuses_a_tampered_quote_id(scenario, client, alice, knight, action, tamper):
    client.force_login(alice)
    data = read_form(estimate(client, knight)).post_data()
    data["quote_id"] = [tamper(data["quote_id"][0])]
    response = post(client, knight, action=action, base=data)
    assert response.status_code == 200
    assert quotes.UNKNOWN in quote_panel(response).replace("&#x27;", "'")
    assert "Confirm the launch" not in response.content.decode()
    assert nothing_launched(knight)


@pytest.mark.parametrize("action", ["confirm", "launch"])
def test_it_refuses_another_persons_quote(scenario, client, alice, dave, knight, action):
    client.force_login(alice)
    data = read_form(estimate(client, knight)).post_data()
    client.force_login(dave)  # in alice's team, with her form and her quote's key
    response = post(client, knight, action=action, base=fresh_form(client, knight, data))
    assert quotes.UNKNOWN in quote_panel(response).replace("&#x27;", "'")
    assert nothing_launched(knight)


@pytest.mark.parametrize("action", ["confirm", "launch"])
def test_it_refuses_an_expired_quote(scenario, client, alice, knight, action):
    client.force_login(alice)
    data = read_form(estimate(client, knight)).post_data()
    Quote.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = post(client, knight, action=action, base=data)
    assert quotes.EXPIRED in quote_panel(response)
    assert nothing_launched(knight)


def test_it_refuses_a_quote_of_another_model(scenario, client, alice, knight):
    castle = make_model("flux.1-lora", remote_id="model_castle")
    client.force_login(alice)
    data = read_form(estimate(client, knight)).post_data()
    other = read_form(client.get(reverse("launch"), {"model": castle.remote_id})).post_data()
    other["quote_id"] = data["quote_id"]
    response = post(client, castle, action="launch", base=other)
    assert quotes.UNKNOWN in quote_panel(response).replace("&#x27;", "'")
    assert not TrainingRun.objects.exists()


def test_it_refuses_a_replayed_quote(scenario, client, alice, knight):
    client.force_login(alice)
    data = read_form(estimate(client, knight)).post_data()
    assert post(client, knight, action="launch", base=data).status_code == 302
    run = TrainingRun.objects.get()
    assert Quote.objects.get().used_at is not None
    # The same form again is the same launch: it finds its run.
    assert post(client, knight, action="launch", base=data)["Location"].endswith(f"/runs/{run.pk}/")
    # The same quote in another form is refused, before and after a confirmation.
    for action in ("confirm", "launch"):
        response = post(client, knight, action=action, base=fresh_form(client, knight, data))
        assert quotes.USED in quote_panel(response)
        assert "Confirm the launch" not in response.content.decode()
    assert TrainingRun.objects.get() == run


@pytest.mark.worker
def test_it_refuses_a_correctly_signed_forged_quote_of_the_old_format(
    scenario, fast_lifecycle, celery_worker_thread, drive, client, alice, knight
):
    """A value signed with the site's own key, as the old form carried, is only a string now."""
    client.force_login(alice)
    data = read_form(estimate(client, knight)).post_data()
    cost = Quote.objects.get().cost
    alice.membership.team.monthly_cu_budget = BUDGET
    alice.membership.team.save()
    make_past_run(
        alice, launched=timezone.now(), cost=BUDGET - cost / 2
    )  # the real quote won't fit
    # What an artist could sign with a known secret key: the right digest, a price of 0.
    sent = LaunchForm(knight, data=MultiValueDict(data)).parameters
    forged = signing.dumps(
        {"d": quotes.digest(knight, sent), "c": 0, "x": 0}, salt="training.launch.quote"
    )
    # In the quote's field it is an unknown key; under the old field's name, an unknown field.
    said = {"quote_id": quotes.UNKNOWN, "quote_token": "Fix the fields marked above"}
    for name, message in said.items():
        forgery = {**{k: v for k, v in data.items() if k != "quote_id"}, name: [forged]}
        for action in ("confirm", "launch"):
            response = post(client, knight, action=action, base=forgery)
            assert message in quote_panel(response).replace("&#x27;", "'")
            assert "quote-panel ready" not in response.content.decode()
            assert "Confirm the launch" not in response.content.decode()
    assert not TrainingRun.objects.filter(model=knight).exists()
    # The real quote is checked against the budget at its real price.
    response = post(client, knight, action="launch", base=data)
    assert f"This run&#x27;s quote of {cost:,.0f} CU would take Team A over" in quote_panel(
        response
    )
    assert not TrainingRun.objects.filter(model=knight).exists()
    # With the worker running all along, one launch that fits is the only trigger sent.
    alice.membership.team.monthly_cu_budget = None
    alice.membership.team.save()
    assert post(client, knight, action="launch", base=data).status_code == 302
    run = TrainingRun.objects.get(model=knight)
    drive(lambda: launched(run), describe=lambda: run.state)
    real = RequestLog.objects.filter(path__endswith="/train", dry_run=False)
    assert real.count() == 1 and run.quote_cu_cost == cost and not run.budget_override


# --- The server's number is the one that counts ---------------------------------------------


def test_the_budget_check_and_the_run_use_the_servers_number(scenario, client, alice, knight):
    client.force_login(alice)
    data = read_form(estimate(client, knight)).post_data()
    row = Quote.objects.get()
    alice.membership.team.monthly_cu_budget = BUDGET
    alice.membership.team.save()
    # Whatever the page showed, the stored figure is the price: over the budget, refused.
    Quote.objects.filter(pk=row.pk).update(cost=2500)
    response = post(client, knight, action="launch", base=data)
    assert "This run&#x27;s quote of 2,500 CU would take Team A over" in quote_panel(response)
    assert not TrainingRun.objects.exists() and Quote.objects.get().used_at is None
    # Within it, the confirmation shows it and the run stores it.
    Quote.objects.filter(pk=row.pk).update(cost=1234.5, discount=12.5)
    page = post(client, knight, action="confirm", base=data).content.decode()
    assert "Confirm the launch" in page and "1,234.5 CU" in page
    assert post(client, knight, action="launch", base=data).status_code == 302
    run = TrainingRun.objects.get()
    assert (run.quote_cu_cost, run.quote_cu_discount) == (1234.5, 12.5)
    assert Quote.objects.get().used_at is not None
