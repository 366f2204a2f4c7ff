"""Comparing 2–4 runs: parameters side by side, stats and cost, samples aligned by prompt."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.factories import at, make_past_run

COMPARE = reverse("compare")


@pytest.fixture
def trio(alice, dave):
    """Three runs of one style at different learning rates and epochs."""
    first = make_past_run(
        alice,
        "Castle",
        launched=at("2025-02-01"),
        queue=60,
        train=600,
        quote=10,
        cost=9,
        epochs=2,
        prompts=("a castle at dawn", "a castle at night"),
        parameters={"learningRate": 1e-4, "nbEpochs": 2, "rank": 16},
    )
    second = make_past_run(
        dave,
        "Castle",
        launched=at("2025-02-02"),
        queue=30,
        train=900,
        quote=14,
        cost=14,
        epochs=3,
        prompts=("a castle at night", "a castle at dawn"),
        parameters={"learningRate": 2e-4, "nbEpochs": 3, "rank": 16},
    )
    third = make_past_run(
        alice,
        "Castle",
        state="failed",
        launched=at("2025-02-03"),
        queue=45,
        train=100,
        quote=10,
        cost=2,
        epochs=1,
        prompts=("a castle at dawn",),
        parameters={"learningRate": 1e-4, "nbEpochs": 2, "rank": 16, "captionPrefix": "cstl"},
    )
    return [first, second, third]  # fmt: skip


def compare(client, user, runs):
    client.force_login(user)
    return client.get(COMPARE, {"runs": ",".join(str(r) for r in runs)})


def test_it_lays_three_runs_side_by_side(client, alice, trio):
    response = compare(client, alice, [r.pk for r in trio])
    assert response.status_code == 200
    assert [run.pk for run in response.context["runs"]] == [r.pk for r in trio]


def test_it_marks_the_parameters_that_differ(client, alice, trio):
    response = compare(client, alice, [r.pk for r in trio])
    rows = {row["name"]: row for row in response.context["parameters"]}
    assert rows["learningRate"]["differs"] and rows["nbEpochs"]["differs"]
    assert not rows["rank"]["differs"]
    assert rows["rank"]["values"] == ["16", "16", "16"]
    # Set on one run only: the others show a dash, and the row differs.
    assert rows["captionPrefix"]["values"] == ["—", "—", "cstl"]
    assert rows["captionPrefix"]["differs"]
    assert 'class="diff" data-param="learningRate"' in response.text
    assert 'data-param="rank"' in response.text and 'class="diff" data-param="rank"' not in (
        response.text
    )


def test_it_shows_training_stats_and_cost(client, alice, trio):
    response = compare(client, alice, [r.pk for r in trio])
    stats = {row["name"]: row["values"] for row in response.context["stats"]}
    assert stats["Queue duration"] == ["1 min", "30 s", "45 s"]
    assert stats["Train duration"] == ["10 min", "15 min", "1 min 40 s"]
    assert stats["CU billed"] == ["9", "14", "2"]
    assert stats["CU quoted"] == ["10", "14", "10"]
    assert stats["Epochs"] == ["2", "3", "1"]
    assert stats["State"] == ["Succeeded", "Succeeded", "Failed"]


def test_it_aligns_samples_by_prompt_text_not_position(client, alice, trio):
    response = compare(client, alice, [r.pk for r in trio])
    rows = {row["prompt"]: row["cells"] for row in response.context["prompts"]}
    assert list(rows) == ["a castle at dawn", "a castle at night"]
    dawn = rows["a castle at dawn"]
    assert [len(cell) for cell in dawn] == [2, 3, 1]
    assert {s.prompt_index for s in dawn[1]} == {1}  # second run listed it second
    assert [s.epoch_index for s in dawn[1]] == [0, 1, 2]
    assert [len(cell) for cell in rows["a castle at night"]] == [2, 3, 0]
    assert "No sample for this prompt." in response.text


def test_parameters_are_named_in_the_forms_words_and_lists_read_one_item_a_line(
    client, alice, trio
):
    for run in trio[:2]:
        run.parameters = {**run.parameters, "samplePrompts": ["a castle at dawn", "a moat"]}
        run.save(update_fields=["parameters"])
    response = compare(client, alice, [r.pk for r in trio])
    rows = {row["name"]: row for row in response.context["parameters"]}
    assert rows["learningRate"]["label"] == "Learning rate"
    assert rows["samplePrompts"]["label"] == "Sample prompts"
    assert rows["samplePrompts"]["values"][0] == "a castle at dawn\na moat"
    text = response.content.decode()
    row = text[text.index('data-param="samplePrompts"') :]
    row = row[: row.index("</tr>")]
    assert "Sample prompts" in row and "a castle at dawn<br>a moat" in row
    assert "[" not in row and "&quot;" not in row


def test_two_runs_are_enough_and_repeated_parameters_work_too(client, alice, trio):
    client.force_login(alice)
    response = client.get(COMPARE, {"runs": [trio[0].pk, trio[2].pk]})
    assert response.status_code == 200
    assert len(response.context["runs"]) == 2


@pytest.mark.parametrize(
    ("runs", "message"),
    [
        ("", "Pick at least two runs"),
        ("1", "Pick at least two runs"),
        ("1,1", "Pick at least two runs"),
        ("1,2,3,4,5", "Compare at most 4 runs at a time; 5 were picked."),
        ("1,two", "runs must be a number from 1 to 9223372036854775807, not “two”."),
    ],
)
def test_a_bad_selection_gets_a_clear_message_not_a_500(client, alice, runs, message):
    client.force_login(alice)
    response = client.get(COMPARE, {"runs": runs})
    assert response.status_code == 400
    assert message in response.text
    assert 'role="alert"' in response.text


def test_runs_of_another_team_are_refused_without_telling_them_apart(client, alice, charlie, trio):
    other = make_past_run(charlie, "Desert")
    response = compare(client, alice, [trio[0].pk, other.pk, 999_999])
    assert response.status_code == 404
    assert (
        f"Runs {other.pk}, 999999 cannot be found, or belong to a team you cannot see."
        in response.text
    )
    assert "Desert" not in response.text


def test_staff_compare_across_teams(client, staff, charlie, trio):
    other = make_past_run(charlie, "Desert")
    response = compare(client, staff, [trio[0].pk, other.pk])
    assert response.status_code == 200


def test_the_page_uses_a_fixed_number_of_queries(client, alice, trio):
    client.force_login(alice)
    with CaptureQueriesContext(connection) as two:
        client.get(COMPARE, {"runs": f"{trio[0].pk},{trio[1].pk}"})
    with CaptureQueriesContext(connection) as three:
        client.get(COMPARE, {"runs": ",".join(str(r.pk) for r in trio)})
    assert len(two) == len(three)


def test_history_rows_carry_a_compare_checkbox(client, alice, trio):
    client.force_login(alice)
    text = client.get(reverse("history")).text
    assert f'name="runs" value="{trio[0].pk}" form="compare-form"' in text
    assert f'id="compare-form" method="get" action="{COMPARE}"' in text


def test_a_secret_parameter_is_never_shown(client, alice, trio):
    first, second, _ = trio
    for run, key in ((first, "wandb-first-secret"), (second, "wandb-second-secret")):
        run.parameters = {**run.parameters, "wandbKey": key}
        run.save(update_fields=["parameters"])
    client.force_login(alice)
    page = client.get(COMPARE, {"runs": f"{first.pk},{second.pk}"}).content.decode()
    assert "wandbKey" in page and "(set, hidden)" in page
    assert "wandb-first-secret" not in page and "wandb-second-secret" not in page
