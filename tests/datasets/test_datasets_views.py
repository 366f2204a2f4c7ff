"""The model page without JavaScript, who may use it, and the pre-flight check at launch."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from tests.datasets_files import TEXT_FILE, near_twin, picture
from tests.html import read_form
from tests.launch_form import estimate, post
from training import datasets
from training.models import DatasetImage, ScenarioModel, TrainingRun


@pytest.fixture
def knight(scenario, alice):
    return datasets.create_model(
        user=alice, name="Knight", model_type="flux.1-lora", team=alice.membership.team
    )


def _page(remote_id: str) -> str:
    return reverse("dataset", kwargs={"remote_id": remote_id})


def _upload(client, model, files):
    uploads = [SimpleUploadedFile(name, content) for name, content in files]
    url = reverse("dataset_upload", kwargs={"remote_id": model.remote_id})
    return client.post(url, {"files": uploads})


def test_an_artist_makes_a_model_for_her_team_and_it_is_in_the_picker(scenario, client, alice):
    client.force_login(alice)
    response = client.post(
        reverse("dataset_new"),
        {"name": "Castle style", "model_type": "flux.1-lora", "team": alice.membership.team_id},
    )
    model = ScenarioModel.objects.get(name="Castle style")
    assert response.status_code == 302 and response.url == _page(model.remote_id)
    assert model.team == alice.membership.team
    picker = client.get(reverse("launch")).content.decode()
    assert "Castle style" in picker
    # It has no images yet: its card in the picker leads to the page that takes them.
    assert f'href="{_page(model.remote_id)}">Add training images' in picker


def test_she_cannot_make_one_for_another_team(scenario, client, alice, team_b):
    client.force_login(alice)
    data = {"name": "Not mine", "model_type": "flux.1-lora", "team": team_b.pk}
    response = client.post(reverse("dataset_new"), data)
    assert response.status_code == 400
    assert not ScenarioModel.objects.filter(name="Not mine").exists()


def test_the_upload_works_without_javascript(knight, client, alice):
    client.force_login(alice)
    response = _upload(client, knight, [("a.png", picture(1, (64, 64))), ("notes.txt", TEXT_FILE)])
    assert response.status_code == 302 and "batch=" in response.url
    page = client.get(response.url).content.decode()
    assert "1 added" in page and "1 refused" in page
    assert "notes.txt: Not an image" in page
    # Without JavaScript the page reloads itself while the worker still has files to send.
    assert 'http-equiv="refresh"' in page
    assert [i.name for i in DatasetImage.objects.all()] == ["a.png"]


def test_the_upload_answers_json_for_the_progress_bars(knight, client, alice):
    client.force_login(alice)
    uploads = [SimpleUploadedFile("a.png", picture(1, (64, 64)))]
    url = reverse("dataset_upload", kwargs={"remote_id": knight.remote_id})
    answer = client.post(url, {"files": uploads}, headers={"Accept": "application/json"}).json()
    assert [a["name"] for a in answer["accepted"]] == ["a.png"]
    status = client.get(answer["status_url"]).json()
    assert [i["state"] for i in status["images"]] == ["queued"]


def test_an_upload_of_nothing_says_so(knight, client, alice):
    client.force_login(alice)
    url = reverse("dataset_upload", kwargs={"remote_id": knight.remote_id})
    response = client.post(url, {}, follow=True)
    assert "Choose at least one file" in response.content.decode()


def test_another_teams_artist_cannot_see_or_change_it(knight, client, charlie):
    client.force_login(charlie)
    assert client.get(_page(knight.remote_id)).status_code == 404
    assert _upload(client, knight, [("a.png", picture(1, (64, 64)))]).status_code == 404
    assert not DatasetImage.objects.exists()


def test_a_caption_is_saved_and_one_too_long_is_refused(knight, client, alice):
    client.force_login(alice)
    _upload(client, knight, [("a.png", picture(1, (64, 64)))])
    image = DatasetImage.objects.get()
    url = reverse("dataset_caption", kwargs={"remote_id": knight.remote_id, "pk": image.pk})
    client.post(url, {"caption": "daiton\x00 in armour"}, headers={"HX-Request": "true"})
    image.refresh_from_db()
    assert image.caption == "daiton in armour" and image.caption_dirty
    response = client.post(url, {"caption": "x" * 2001}, headers={"HX-Request": "true"})
    assert response.status_code == 400 and "at most 2000" in response.content.decode()


def _estimate_and_launch(client, model, extra=None):
    """Estimate, then launch what the page holds, as a browser posts the form."""
    form = read_form(estimate(client, model, {"maxTrainSteps": "60", "nbEpochs": "2"}))
    return post(client, model, extra, action="launch", base=form.post_data())


def _warned_dataset(knight, alice):
    original = picture(3)
    files = [(f"k{n}.png", picture(n)) for n in range(5)] + [("twin.jpg", near_twin(original))]
    datasets.add_files(knight.dataset, alice, files)
    ScenarioModel.objects.filter(pk=knight.pk).update(training_images_number=6)
    # The simulator needs images to quote: give it as many, by asset id.
    client = datasets.scenario_client.get()
    client.add_training_images(knight.remote_id, [f"asset_k{n}" for n in range(6)])


def test_warnings_stop_an_artists_launch(knight, client, alice):
    _warned_dataset(knight, alice)
    client.force_login(alice)
    response = _estimate_and_launch(client, knight, {"preflight_override": "true"})
    assert "The pre-flight check has warnings" in response.content.decode()
    assert not TrainingRun.objects.exists()


def test_her_lead_may_launch_past_warnings(knight, client, alice, bob):
    _warned_dataset(knight, alice)
    client.force_login(bob)
    unticked = _estimate_and_launch(client, knight)
    assert "Launch past the warnings" in unticked.content.decode()
    assert not TrainingRun.objects.exists()
    response = _estimate_and_launch(client, knight, {"preflight_override": "true"})
    assert response.status_code == 302
    assert TrainingRun.objects.get().created_by == bob


def test_a_blocker_stops_even_a_lead(knight, client, bob):
    ScenarioModel.objects.filter(pk=knight.pk).update(training_images_number=3)
    datasets.scenario_client.get().add_training_images(knight.remote_id, ["asset_x"])
    client.force_login(bob)
    response = _estimate_and_launch(client, knight, {"preflight_override": "true"})
    assert "found a blocker: There are no training images yet." in response.content.decode()
    assert not TrainingRun.objects.exists()


def test_a_failure_to_send_is_shown_in_words_until_it_goes_through(knight, client, alice):
    from simulator import faults
    from training.scenario import TryAgain

    client.force_login(alice)
    _upload(client, knight, [("a.png", picture(1, (64, 64)))])
    faults.inject(503, times=1, method="POST", path_contains="/training-images")
    with pytest.raises(TryAgain):
        datasets.sync(knight.dataset.pk)
    page = client.get(_page(knight.remote_id)).content.decode()
    assert "Scenario did not take everything yet" in page and "503" in page
    datasets.sync(knight.dataset.pk)
    page = client.get(_page(knight.remote_id)).content.decode()
    assert "Scenario did not take everything yet" not in page
