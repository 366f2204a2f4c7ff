"""The notification pages in Chromium on a phone: they fit, their plain forms save, and the
lead's secret shows once."""

from __future__ import annotations

import pytest

from tests.factories import make_bare_model, make_run
from tests.phone import assert_fits_the_phone, phone_page
from training.models import Channel, Delivery, DeliveryStatus, RunState

pytestmark = pytest.mark.browser


def test_the_notification_pages_fit_a_phone_and_their_forms_save(
    chromium, live_server, client, bob, alice
):
    model = make_bare_model("Knight portraits", remote_id="m_1")
    run = make_run(alice, model, RunState.FAILED)
    Delivery.objects.create(
        run=run, channel=Channel.WEBHOOK, recipient="team", status=DeliveryStatus.FAILED,
        attempts=5, last_error="The webhook answered 503",
    )  # fmt: skip
    Delivery.objects.create(
        run=run, channel=Channel.EMAIL, recipient="alice@example.com",
        status=DeliveryStatus.SENT, attempts=1,
    )  # fmt: skip
    page = phone_page(chromium, live_server, client, bob)
    page.goto("/notifications/")
    page.get_by_label("Email me when a run of mine ends").check()
    page.get_by_label("Email address").fill("bob@example.com")
    page.get_by_role("button", name="Save").click()
    assert page.get_by_text("Your notification settings are saved.").is_visible()
    assert_fits_the_phone(page, "notifications")

    page.goto("/team/hooks/")
    page.get_by_label("Chat webhook (Slack or Discord)").fill(
        "https://hooks.slack.com/services/T/B/X"
    )
    page.get_by_label("Signed webhook").fill("https://ci.example.com/dashboard-events")
    page.get_by_role("button", name="Save").click()
    secret = page.locator(".secret-value").inner_text()
    assert secret.startswith("whsec_")
    assert_fits_the_phone(page, "team-hooks-secret")
    page.goto("/team/hooks/")
    assert page.locator(".secret-value").count() == 0
    assert secret not in page.content()

    page.goto("/team/deliveries/")
    assert page.get_by_text("The webhook answered 503").is_visible()
    assert_fits_the_phone(page, "delivery-log")
