"""Safe by default: private pages, http(s)-only image links, HEAD, a throttled Refresh and
models deleted on Scenario leaving the picker."""

from __future__ import annotations

import pytest
from django.urls import reverse

from simulator.models import RequestLog, SimModel
from tests.factories import add_samples, make_model, make_sent_run
from tests.helpers import HTMX_HEADERS
from training import services
from training.display import web_url
from training.models import EpochSample, ScenarioModel

# --- Cache-Control --------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["home", "launch", "history", "history_csv", "compare"])
def test_signed_in_pages_and_the_csv_are_private_and_not_stored(client, alice, name):
    runs = f"{make_sent_run(alice, state='succeeded').pk},{make_sent_run(alice, state='failed').pk}"
    client.force_login(alice)
    response = client.get(reverse(name), {"runs": runs} if name == "compare" else {})
    assert response.status_code == 200
    directives = {part.strip() for part in response["Cache-Control"].split(",")}
    assert {"private", "no-store"} <= directives


@pytest.mark.django_db
def test_live_fragments_are_private_and_not_stored_too(client, alice):
    run = make_sent_run(alice)
    client.force_login(alice)
    response = client.get(reverse("run_live", args=[run.pk]), headers=HTMX_HEADERS)
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"] and "private" in response["Cache-Control"]


# --- Only http(s) links to Scenario's images --------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://cdn.cloud.scenario.com/a.png", "https://cdn.cloud.scenario.com/a.png"),
        ("http://localhost:8001/sim/v1/assets/a", "http://localhost:8001/sim/v1/assets/a"),
        ("HTTPS://CDN.EXAMPLE/A.PNG", "HTTPS://CDN.EXAMPLE/A.PNG"),
        ("javascript:alert(1)", ""),
        (" JavaScript:alert(1)", ""),
        ("data:image/svg+xml,<svg onload=alert(1)>", ""),
        ("//evil.example/a.png", ""),
        ("", ""),
        (None, ""),
    ],
)
def test_only_http_and_https_urls_are_rendered(url, shown):
    assert web_url(url) == shown


@pytest.mark.django_db
def test_a_sample_with_a_javascript_url_is_not_linked_anywhere(client, alice):
    run = make_sent_run(alice, state="succeeded")
    other = make_sent_run(alice, state="succeeded")
    add_samples(run, epochs=1, prompts=2)
    EpochSample.objects.filter(run=run, prompt_index=0).update(url="javascript:alert(1)")
    client.force_login(alice)
    for page in (
        client.get(reverse("run_detail", args=[run.pk])),
        client.get(reverse("home")),
        client.get(reverse("compare"), {"runs": f"{run.pk},{other.pk}"}),
    ):
        assert page.status_code == 200
        assert "javascript:" not in page.content.decode()
    assert "https://" in client.get(reverse("run_detail", args=[run.pk])).content.decode()


@pytest.mark.django_db
def test_a_model_thumbnail_with_a_data_url_is_not_shown_in_the_picker(client, alice):
    make_model("flux.1-lora", thumbnail_url="data:text/html,<script>alert(1)</script>")
    client.force_login(alice)
    page = client.get(reverse("launch")).content.decode()
    assert "Knight flux.1-lora" in page and "data:text/html" not in page


# --- HEAD -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_every_page_answers_head_as_it_answers_get(client, alice):
    run, other = make_sent_run(alice), make_sent_run(alice)
    client.force_login(alice)
    pages = [
        reverse("home"),
        reverse("launch"),
        reverse("history"),
        reverse("history_csv"),
        f"{reverse('compare')}?runs={run.pk},{other.pk}",
        reverse("run_detail", args=[run.pk]),
    ]
    for url in pages:
        assert client.head(url).status_code == client.get(url).status_code == 200, url
    fragment = reverse("run_live", args=[run.pk])
    assert client.head(fragment, headers=HTMX_HEADERS).status_code == 200


# --- Refresh throttled per team -------------------------------------------------------------


def model_list_reads() -> int:
    return RequestLog.objects.filter(method="GET", path__endswith="/models").count()


def test_refresh_reads_scenario_at_most_once_per_interval_per_team(
    scenario, client, alice, bob, charlie
):
    scenario.create_model("Fresh voice", "elevenlabs-voice", images=3)
    client.force_login(alice)
    page = client.post(reverse("launch_refresh"), follow=True).content.decode()
    assert "Models refreshed from Scenario (1)." in page
    reads = model_list_reads()
    assert reads >= 1

    client.force_login(bob)  # Alice's team lead, a moment later
    page = client.post(reverse("launch_refresh"), follow=True).content.decode()
    assert "The models were refreshed less than 30 s ago. Try again in a moment." in page
    assert model_list_reads() == reads, "a throttled refresh must not call Scenario"

    client.force_login(charlie)  # another team has its own allowance
    page = client.post(reverse("launch_refresh"), follow=True).content.decode()
    assert "Models refreshed from Scenario (1)." in page
    assert model_list_reads() > reads


# --- Models deleted on Scenario -------------------------------------------------------------


def test_a_model_deleted_on_scenario_leaves_the_picker_and_keeps_its_runs(scenario, client, alice):
    kept = scenario.create_model("Kept knight", images=3)
    doomed = scenario.create_model("Doomed dragon", images=3)
    assert services.sync_models(scenario.client()) == 2
    dragon = ScenarioModel.objects.get(remote_id=doomed.id)
    run = make_sent_run(alice, state="succeeded")
    type(run).objects.filter(pk=run.pk).update(model=dragon)

    SimModel.objects.filter(id=doomed.id).delete()
    assert services.sync_models(scenario.client()) == 1
    dragon.refresh_from_db()
    assert dragon.gone_at is not None
    assert ScenarioModel.objects.get(remote_id=kept.id).gone_at is None

    client.force_login(alice)
    picker = client.get(reverse("launch")).content.decode()
    assert "Kept knight" in picker and "Doomed dragon" not in picker
    page = client.get(reverse("launch"), {"model": doomed.id}).content.decode()
    assert "not one your team can train" in page
    history = client.get(reverse("history")).content.decode()
    assert "Doomed dragon" in history, "its runs stay in the history"
    assert client.get(reverse("run_detail", args=[run.pk])).status_code == 200


def test_a_failed_listing_marks_nothing_gone(scenario):
    from simulator import faults

    scenario.create_model("Knight", images=3)
    services.sync_models(scenario.client())
    faults.inject(401, path_contains="/models")
    with pytest.raises(services.scenario.ScenarioError):
        services.sync_models(scenario.client())
    assert ScenarioModel.objects.get().gone_at is None


# --- HTTPS behind a TLS proxy ---------------------------------------------------------------


@pytest.mark.django_db
def test_behind_the_tls_proxy_plain_http_is_redirected_and_https_gets_hsts(client, settings):
    # What the production defaults are with debug off (see test_compose for the environment).
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_HSTS_SECONDS = 31_536_000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = settings.SECURE_HSTS_PRELOAD = True
    plain = client.get("/login/")
    assert plain.status_code == 301 and plain["Location"] == "https://testserver/login/"
    secure = client.get("/login/", headers={"X-Forwarded-Proto": "https"})
    assert secure.status_code == 200
    assert secure["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
