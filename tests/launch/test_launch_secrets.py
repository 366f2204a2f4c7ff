"""A secret parameter (the Weights & Biases key) is typed once, never shown back, sent to
Scenario on the launch and then forgotten by the run."""

from __future__ import annotations

import pytest
from django.urls import reverse

from simulator.models import SimJob
from tests.factories import make_model, make_run
from tests.helpers import HTMX_HEADERS, launched, page_of
from tests.html import read_form
from tests.launch_form import URL, estimate, post, sim_requests
from training import params, services
from training.models import RunState, TrainingRun

KEY = "wandb-5f0c1e2d3b4a69788796a5b4c3d2e1f0"  # 38 characters, within the 40 allowed


# --- Never rendered back --------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("action", ["preset:medium", "add_prompt", "remove_prompt:0", ""])
@pytest.mark.parametrize("headers", [{}, HTMX_HEADERS], ids=["plain", "htmx"])
def test_the_key_is_not_sent_back_after_a_preset_or_a_prompt(client, alice, action, headers):
    model = make_model("flux.1-lora")
    client.force_login(alice)
    response = post(client, model, {"wandbKey": KEY}, action, headers=headers)
    assert response.status_code == 200
    assert KEY not in page_of(response)
    form = read_form(response)
    assert form.value("wandbKey") == ""
    assert "A key is set" in page_of(response)
    # The next post, with the input left empty as shown, keeps it: still set, still unseen.
    response = post(client, model, action="add_prompt", base=form.post_data())
    assert KEY not in page_of(response) and "A key is set" in page_of(response)


def test_the_key_is_not_sent_back_after_an_estimate_nor_by_a_field_check(
    scenario, client, alice, knight
):
    client.force_login(alice)
    response = estimate(client, knight, {"wandbKey": KEY})
    assert "quote-panel ready" in page_of(response)
    assert KEY not in page_of(response) and "A key is set" in page_of(response)
    data = read_form(response).post_data()
    checked = client.post(
        reverse("launch_validate"), {**data, "model": knight.remote_id}, headers=HTMX_HEADERS
    )
    # The kept key is part of what was quoted: the quote is still good without retyping it.
    assert KEY not in page_of(checked) and 'name="quote_id"' in page_of(checked)
    confirmation = post(client, knight, action="confirm", base=data)
    assert "Confirm the launch" in page_of(confirmation)
    assert KEY not in page_of(confirmation) and params.HIDDEN in page_of(confirmation)


def test_a_key_typed_after_the_estimate_needs_a_new_estimate(scenario, client, alice, knight):
    client.force_login(alice)
    data = read_form(estimate(client, knight)).post_data()
    response = post(client, knight, {"wandbKey": KEY}, "confirm", base=data)
    assert "changed since the estimate" in page_of(response)
    assert KEY not in page_of(response)


@pytest.mark.django_db
def test_a_key_is_replaced_by_typing_another_and_removed_by_its_button(client, alice):
    model = make_model("flux.1-lora")
    client.force_login(alice)
    data = read_form(post(client, model, {"wandbKey": KEY})).post_data()
    replaced = post(client, model, {"wandbKey": "wandb-second"}, base=data)
    assert "wandb-second" not in page_of(replaced) and "A key is set" in page_of(replaced)
    removed = post(client, model, action="forget_secret:wandbKey", base=data)
    assert "A key is set" not in page_of(removed)
    assert 'value="forget_secret:wandbKey"' not in page_of(removed)


@pytest.mark.django_db
def test_a_key_that_is_not_accepted_is_not_kept(client, alice):
    model = make_model("flux.1-lora")
    client.force_login(alice)
    response = post(client, model, {"wandbKey": "k" * 41})
    assert "k" * 41 not in page_of(response)
    assert read_form(response).error("wandbKey") == "At most 40 characters (41 given)."
    assert "A key is set" not in page_of(response)


@pytest.mark.django_db
def test_a_kept_key_belongs_to_its_form_only(client, alice):
    model = make_model("flux.1-lora")
    client.force_login(alice)
    post(client, model, {"wandbKey": KEY})
    fresh = read_form(client.get(URL, {"model": model.remote_id}))
    assert "A key is set" not in page_of(post(client, model, base=fresh.post_data()))


# --- Sent on the launch, then forgotten -----------------------------------------------------


@pytest.mark.worker
def test_the_key_reaches_scenario_on_the_launch_and_the_run_then_forgets_it(
    scenario, fast_lifecycle, celery_worker_thread, drive, client, alice, knight
):
    client.force_login(alice)
    data = read_form(estimate(client, knight, {"wandbKey": KEY})).post_data()
    assert data["wandbKey"] == [""]  # what the browser posts back: nothing
    confirmation = read_form(post(client, knight, action="confirm", base=data))
    assert post(client, knight, action="launch", base=confirmation.post_data()).status_code == 302
    run = TrainingRun.objects.get()
    drive(lambda: launched(run), describe=lambda: run.state)
    # The real trigger carried the key to the simulator, exactly once.
    assert sim_requests(dry_run=False, model_id=knight.remote_id).count() == 1
    assert SimJob.objects.get().parameters["wandbKey"] == KEY
    # Once Scenario has it, the run keeps only the fact that one was sent.
    run.refresh_from_db()
    assert run.parameters["wandbKey"] == params.REDACTED
    assert KEY not in str(run.parameters)


@pytest.mark.django_db
def test_a_run_keeps_the_key_while_sending_and_forgets_it_after(alice):
    model = make_model("flux.1-lora")
    run = make_run(alice, model, parameters={"rank": 16, "wandbKey": KEY})
    sending = services.transition(
        run, RunState.SUBMITTING, expected=[RunState.DRAFT], source="worker"
    )
    run.refresh_from_db()
    assert sending and run.parameters["wandbKey"] == KEY  # a retry may still need it
    services.transition(run, RunState.QUEUED, expected=[RunState.SUBMITTING], source="worker")
    run.refresh_from_db()
    assert run.parameters == {"rank": 16, "wandbKey": params.REDACTED}


@pytest.mark.django_db
def test_a_run_canceled_before_it_was_sent_forgets_the_key(alice):
    model = make_model("flux.1-lora")
    run = make_run(alice, model, parameters={"wandbKey": KEY})
    assert services.request_cancel(run, alice)
    run.refresh_from_db()
    assert run.state == RunState.CANCELED and run.parameters == {"wandbKey": params.REDACTED}


# --- The simulator's admin ------------------------------------------------------------------


def test_the_simulators_admin_does_not_show_the_key(scenario, admin_client, knight):
    scenario.client().trigger(knight.remote_id, {"maxTrainSteps": 1200, "wandbKey": KEY})
    job = SimJob.objects.get()
    assert job.parameters["wandbKey"] == KEY
    page = admin_client.get(reverse("admin:simulator_simjob_change", args=[job.pk]))
    assert page.status_code == 200
    text = page.content.decode()
    assert KEY not in text and "(set, hidden)" in text and "maxTrainSteps" in text
    listing = admin_client.get(reverse("admin:simulator_simjob_changelist"))
    assert listing.status_code == 200 and KEY not in listing.content.decode()
