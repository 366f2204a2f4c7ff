"""Two launches of one model, through a real worker against the simulator over HTTP.

Alice trains a model; while her training waits in Scenario's queue, Bob launches the same
model. Scenario refuses his trigger ("Model is already training"): his run did not fail, it
never started, costs nothing and leaves the team's success rate as it was.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.fixtures.workers import assert_valid_trail, launches, mirror, reload
from training import budgets, services
from training.models import RunState

S = RunState
HISTORY = reverse("history")

pytestmark = [pytest.mark.worker]


def launch(scenario, user, model):
    """Launch as the form does: with the quote Scenario gave for it."""
    quote = scenario.client().quote(model.remote_id, {})
    return services.launch_run(
        user=user,
        model=model,
        parameters={},
        quote_cost=quote.cost,
        quote_discount=quote.discount,
    )


def success_rate(client) -> str:
    text = client.get(HISTORY).text
    return text.split('data-total="success-rate">')[1].split("<")[0]


def test_a_second_launch_of_a_model_in_training_does_not_start_and_costs_nothing(
    scenario, celery_worker_thread, fast_lifecycle, drive, client, alice, bob
):
    creatures = mirror(scenario.create_model("Creature concepts", images=1))
    client.force_login(bob)

    # The model was trained once already: the team's success rate is 100%.
    scenario.set_speed(300)
    first = launch(scenario, alice, creatures)
    drive(lambda: reload(first).state == S.SUCCEEDED, describe=lambda: reload(first).state)
    assert success_rate(client) == "100%"

    # Alice trains it again, slowly enough that it sits in the queue for a while.
    scenario.set_speed(2)
    alices = launch(scenario, alice, creatures)
    drive(lambda: reload(alices).state == S.QUEUED, describe=lambda: reload(alices).state)

    # Bob's quote goes through (a dry run starts nothing); his launch is refused by Scenario.
    bobs = launch(scenario, bob, creatures)
    assert bobs.quote_cu_cost
    drive(lambda: reload(bobs).is_final, describe=lambda: reload(bobs).state)
    bobs = reload(bobs)
    assert bobs.state == S.NOT_STARTED
    assert bobs.outcome == "Not started: Model is already training"
    assert assert_valid_trail(bobs) == ["draft", "submitting", "not_started"]
    assert launches(creatures, status=400) == 1
    assert reload(alices).state in {S.QUEUED, S.RUNNING}  # hers goes on

    # His run page ticks no stage and shows no cost.
    page = client.get(reverse("run_detail", args=[bobs.pk])).content.decode()
    assert "<strong>Not started: Model is already training</strong>" in page
    timeline = page[page.index('<ol class="timeline">') : page.index("</ol>")]
    assert "step-done" not in timeline and "step-current" not in timeline
    assert 'class="billed">None: the training never started<' in page

    # His quote is not counted against the budget: only Alice's runs are.
    spend = budgets.status_for(bob.membership.team)
    assert spend.billed == pytest.approx(reload(first).cu_cost)
    assert spend.committed == pytest.approx(reload(alices).quote_cu_cost)

    # The success rate is unchanged, and the history still finds his run.
    assert success_rate(client) == "100%"
    found = client.get(HISTORY, {"state": S.NOT_STARTED}).context["page"].rows
    assert [run.pk for run in found] == [bobs.pk]

    # Alice's training is canceled to end the test quickly; it still was not disturbed.
    assert services.request_cancel(reload(alices), alice)
    drive(lambda: reload(alices).is_final, describe=lambda: reload(alices).state)
    assert launches(creatures, status=200) == 2
