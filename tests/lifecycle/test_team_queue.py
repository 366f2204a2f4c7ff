"""The team queue without Scenario: claims under concurrency, reservations, moves, removals."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connections
from django.urls import reverse
from django.utils import timezone

from tests.factories import make_bare_model, make_run
from tests.fixtures.workers import reload
from training import budgets, services, team_queue
from training.models import RunEvent, RunState, ScenarioModel, Team, TrainingRun
from training.scenario import TryAgain

S = RunState


def models(count: int) -> list[ScenarioModel]:
    return [make_bare_model(f"Model {n}", remote_id=f"model-{n}") for n in range(count)]


def waiting_runs(user, count: int, **fields) -> list[TrainingRun]:
    return [
        make_run(user, model, state=S.WAITING, queue_order=n, **fields)
        for n, model in enumerate(models(count))
    ]


def at_once(count: int, work) -> list:
    """Run `work(index)` in `count` threads released together; their results (or errors)."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def thread(index):
        try:
            barrier.wait()
            results[index] = work(index)
        except Exception as error:  # noqa: BLE001 - the test reads what each thread met
            results[index] = error
        finally:
            connections.close_all()

    threads = [threading.Thread(target=thread, args=(n,)) for n in range(count)]
    for each in threads:
        each.start()
    for each in threads:
        each.join(timeout=60)
    return results


@pytest.mark.django_db(transaction=True)
def test_two_sweeps_at_once_never_dispatch_one_run_twice(alice, broker):
    Team.objects.filter(pk=alice.membership.team_id).update(parallel_trainings=3)
    runs = waiting_runs(alice, 8)
    for _ in range(5):
        at_once(2, lambda _: services.sweep())
    sent = [run for run in map(reload, runs) if run.state == S.SUBMITTING]
    assert len(sent) == 3  # as many as there are slots, never more
    assert [run.pk for run in sent] == [run.pk for run in runs[:3]]  # first come, first sent
    for run in runs:
        assert RunEvent.objects.filter(run=run, to_state=S.SUBMITTING).count() <= 1


@pytest.mark.parametrize(
    ("limit", "newest_first"),
    [(None, S.SUBMITTING), (5, S.WAITING)],
    ids=["no-limit-sends-at-once", "a-limit-keeps-first-come-first"],
)
def test_a_draft_waits_for_older_drafts_only_where_slots_are_counted(
    alice, broker, limit, newest_first
):
    Team.objects.filter(pk=alice.membership.team_id).update(parallel_trainings=limit)
    older, newer = (make_run(alice, model) for model in models(2))
    team_queue.queue_draft(newer)  # a worker took the newer launch first
    assert reload(newer).state == newest_first


@pytest.mark.django_db(transaction=True)
def test_five_launches_at_once_against_a_budget_for_three_queue_three_and_refuse_two(alice, broker):
    Team.objects.filter(pk=alice.membership.team_id).update(
        monthly_cu_budget=300, parallel_trainings=0
    )
    targets = models(5)

    def launch(index):
        return services.launch_run(
            user=alice, model=targets[index], parameters={}, quote_cost=100.0
        )

    results = at_once(5, launch)
    launched = [result for result in results if isinstance(result, TrainingRun)]
    refused = [result for result in results if isinstance(result, services.LaunchRefused)]
    assert (len(launched), len(refused)) == (3, 2), results
    assert all("over its monthly budget" in refusal.message for refusal in refused)
    for run in launched:
        services.submit_run(run.pk)  # no slot (a limit of 0): each waits in the team queue
    assert sorted(reload(run).state for run in launched) == [S.WAITING] * 3
    status = budgets.status_for(Team.objects.get(pk=alice.membership.team_id))
    assert (status.committed, status.billed, status.released) == (300.0, 0.0, 0.0)

    services.request_cancel(reload(launched[0]), alice)  # removed: nothing spent
    status = budgets.status_for(status.team)
    assert (status.committed, status.released) == (200.0, 100.0)


def test_a_lead_moves_a_run_to_the_top_up_down_and_sets_its_priority(alice, bob, client):
    runs = waiting_runs(alice, 4)
    client.force_login(bob)
    url = reverse("run_queue", args=[runs[3].pk])
    assert client.post(url, {"action": "top"}).status_code == 302
    assert [team_queue.ahead_of(reload(run)) for run in runs] == [1, 2, 3, 0]
    client.post(reverse("run_queue", args=[runs[1].pk]), {"action": "down"})
    assert [team_queue.ahead_of(reload(run)) for run in runs] == [1, 3, 2, 0]
    client.post(reverse("run_queue", args=[runs[2].pk]), {"action": "priority", "priority": "5"})
    assert team_queue.ahead_of(reload(runs[2])) == 0
    messages = list(RunEvent.objects.filter(actor=bob).values_list("message", flat=True))
    assert any("top" in m for m in messages) and any("Priority set to 5" in m for m in messages)


def test_an_artist_may_not_reorder_the_queue(alice, client):
    runs = waiting_runs(alice, 2)
    client.force_login(alice)
    response = client.post(reverse("run_queue", args=[runs[1].pk]), {"action": "top"})
    assert response.status_code == 403
    assert team_queue.ahead_of(reload(runs[1])) == 1


def test_a_priority_that_is_not_a_number_is_a_400(bob, alice, client):
    run = waiting_runs(alice, 1)[0]
    client.force_login(bob)
    response = client.post(
        reverse("run_queue", args=[run.pk]), {"action": "priority", "priority": "soon"}
    )
    assert response.status_code == 400


def test_an_artist_removes_her_own_waiting_run_and_the_trail_says_so(alice, client):
    run = waiting_runs(alice, 1)[0]
    client.force_login(alice)
    page = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert "Waiting for a free slot: 0 ahead" in page and "Remove from the queue" in page
    client.post(reverse("run_cancel", args=[run.pk]))
    run = reload(run)
    assert run.state == S.CANCELED
    assert "Removed from the team queue by" in run.events.last().message


def test_a_run_whose_refreshed_quote_breaks_the_budget_keeps_waiting(scenario, alice, settings):
    from tests.factories import mirror

    settings.QUEUE_QUOTE_MAX_AGE_SECONDS = 60
    Team.objects.filter(pk=alice.membership.team_id).update(monthly_cu_budget=10)
    model = mirror(scenario.create_model("Pricey", images=5))
    old = timezone.now() - timedelta(hours=2)
    run = make_run(alice, model, state=S.WAITING, quote_cu_cost=1.0, quoted_at=old)
    assert team_queue.dispatch(run.team_id) == 1
    services.submit_run(run.pk)
    run = reload(run)
    assert run.state == S.WAITING
    assert run.quote_cu_cost > 10 and "The quote rose from 1" in run.waiting_reason
    assert run.triggers_sent == 0  # nothing was sent
    assert team_queue.dispatch(run.team_id) == 0  # over budget: it waits for a lead


def test_hours_in_the_team_queue_do_not_count_towards_giving_up_a_launch(scenario, settings, alice):
    from simulator import faults
    from tests.factories import mirror

    settings.LAUNCH_GIVE_UP_SECONDS = 60
    model = mirror(scenario.create_model("Patient", images=1))
    run = make_run(alice, model, state=S.WAITING)
    TrainingRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(hours=2))
    assert team_queue.dispatch(run.team_id) == 1
    faults.inject(429, times=5, method="PUT", path_contains="/train")  # a plain rate limit
    with pytest.raises(TryAgain):
        services.submit_run(run.pk)
    assert reload(run).state == S.SUBMITTING  # not given up: it was sent a moment ago
    faults.clear()
    services.submit_run(run.pk)
    assert reload(run).state == S.QUEUED


def test_scenarios_already_training_answer_puts_a_launch_back_in_the_queue_when_the_run_is_ours(
    scenario, alice
):
    from tests.factories import mirror
    from tests.fixtures.workers import launches

    model = mirror(scenario.create_model("Shared", images=1))
    scenario.set_speed(2)
    scenario.client().trigger(model.remote_id, {})  # our other run's training, on Scenario
    make_run(alice, model, state=S.QUEUED, job_id="job-ours")
    # A run that got past the queue's own check (say, sent just before the other was stored).
    run = make_run(alice, model, state=S.SUBMITTING)
    services.submit_run(run.pk)
    run = reload(run)
    assert run.state == S.WAITING and not run.error_message
    assert "Shared to finish its current training" in run.waiting_reason
    assert launches(model, status=400) == 1
    assert team_queue.dispatch(run.team_id) == 0  # the model is still busy: nothing is sent
    assert launches(model, status=400) == 1
