"""Random and hostile posts to the training form, for every model type: never a server error."""

from __future__ import annotations

import pytest
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from training import params, services
from training.models import ScenarioModel

HOSTILE = [
    "",
    " ",
    "nan",
    "NaN",
    "inf",
    "-Infinity",
    "1e999999",
    "1e-400",
    "9" * 400,
    "0x1F",
    "١٢",
    "１２",
    "12abc",
    "\x00",
    "\u202etxet",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "é" * 5000,
    "true",
    "[]",
    "{}",
    "-0",
    "0.99",
    "40001",
    "likeness",
    "asset_img0",
]
ACTIONS = [
    "",
    "estimate",
    "launch",
    "add_prompt",
    "remove_prompt:0",
    "remove_prompt:99999",
    "remove_prompt:-1",
    "preset:small",
    "preset:medium",
    "preset:nope",
]
NAMES = sorted(params.SPEC) + ["quote_id", "idempotency_key", "from_run", "model", "action"]

values = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(max_size=40),
    st.integers().map(str),
    st.floats().map(repr),
)
posted = st.dictionaries(
    st.sampled_from(NAMES) | st.text(min_size=1, max_size=15),
    st.lists(values, min_size=1, max_size=4) | st.lists(values, min_size=25, max_size=40),
    max_size=10,
)


@pytest.fixture
def every_type(scenario):
    """One remote model per trainable type, 12 images each, mirrored locally."""
    for model_type in params.TRAINABLE_TYPES:
        scenario.create_model(f"Model {model_type}", model_type, images=12)
    services.sync_models(scenario.client())
    return [m.remote_id for m in ScenarioModel.objects.order_by("type")]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    model_index=st.integers(min_value=0, max_value=40),
    data=posted,
    action=st.sampled_from(ACTIONS) | st.text(max_size=20),
    htmx=st.booleans(),
    endpoint=st.sampled_from(["launch", "launch_validate"]),
)
def test_random_and_hostile_posts_never_fail(
    client, alice, every_type, model_index, data, action, htmx, endpoint
):
    client.force_login(alice)
    body = dict(data)
    # Mostly a real model; sometimes whatever the strategy put there, or nothing.
    if model_index < len(every_type):
        body["model"] = [every_type[model_index]]
    body["action"] = [action]
    headers = {"HX-Request": "true"} if htmx else {}
    response = client.post(reverse(endpoint), body, headers=headers)
    assert response.status_code < 500


def test_every_type_gets_a_form_and_a_quote(client, alice, every_type):
    client.force_login(alice)
    for remote_id in every_type:
        response = client.post(reverse("launch"), {"model": remote_id, "action": "estimate"})
        assert response.status_code == 200
        assert "quote-panel ready" in response.content.decode(), remote_id
