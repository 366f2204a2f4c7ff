"""Two launches of one model, through a real worker against the simulator over HTTP.

Alice trained a model; now someone trains it on Scenario outside the dashboard, and while
that training waits in Scenario's queue, Bob launches the same model. Scenario refuses his
trigger ("Model is already training"): his run did not fail, it never started, costs nothing
and leaves the team's success rate as it was. (A second launch while one of the team's own
runs trains the model waits in the team queue instead: tests/lifecycle/test_workers_team_queue.py.)
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories import mirror
from tests.fixtures.workers import assert_valid_trail, launches, reload
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

    # Someone trains it again outside the dashboard, slowly enough that it sits in the queue.
    scenario.set_speed(2)
    scenario.client().trigger(creatures.remote_id, {})

    # Bob's quote goes through (a dry run starts nothing); his launch is refused by Scenario.
    bobs = launch(scenario, bob, creatures)
    assert bobs.quote_cu_cost
    drive(lambda: reload(bobs).is_final, describe=lambda: reload(bobs).state)
    bobs = reload(bobs)
    assert bobs.state == S.NOT_STARTED
    assert bobs.outcome == "Not started: Model is already training"
    assert assert_valid_trail(bobs) == ["draft", "submitting", "not_started"]
    assert launches(creatures, status=400) == 1
    assert scenario.client().get_model(creatures.remote_id).status == "training"  # it goes on

    # His run page ticks no stage and shows no cost.
    page = client.get(reverse("run_detail", args=[bobs.pk])).content.decode()
    assert "<strong>Not started: Model is already training</strong>" in page
    timeline = page[page.index('<ol class="timeline">') : page.index("</ol>")]
    assert "step-done" not in timeline and "step-current" not in timeline
    assert 'class="billed">None: the training never started<' in page

    # His quote is not counted against the budget: it was reserved, then released.
    spend = budgets.status_for(bob.membership.team)
    assert spend.billed == pytest.approx(reload(first).cu_cost)
    assert spend.committed == 0
    assert spend.released == pytest.approx(bobs.quote_cu_cost)

    # The success rate is unchanged, and the history still finds his run.
    assert success_rate(client) == "100%"
    found = client.get(HISTORY, {"state": S.NOT_STARTED}).context["page"].rows
    assert [run.pk for run in found] == [bobs.pk]

    # The other training is canceled to end the test quickly; it still was not disturbed.
    scenario.client().cancel_training(creatures.remote_id)
    assert launches(creatures, status=200) == 2
