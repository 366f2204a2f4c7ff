"""Back shows a whole page, never a fragment: answers that depend on HX-Request say so.

One URL answers the page or, for htmx, a fragment of it. Without `Vary: HX-Request` and
`Cache-Control: no-store`, a browser going back to a URL htmx pushed shows the fragment it
cached, unstyled and without its menu.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories import add_samples, make_bare_model, make_sent_run
from tests.fixtures.browser import save_screenshot
from tests.helpers import HTMX
from training import services
from training.models import RunState


def varies_and_is_not_stored(response) -> bool:
    vary = {part.strip().lower() for part in response.get("Vary", "").split(",")}
    cache = {part.strip() for part in response.get("Cache-Control", "").split(",")}
    return "hx-request" in vary and "no-store" in cache


# --- the headers ------------------------------------------------------------------------


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "fragment"])
def test_history_varies_on_htmx_and_is_not_stored(client, alice, htmx):
    make_sent_run(alice, RunState.SUCCEEDED)
    client.force_login(alice)
    headers = {**HTMX, "HTTP_HX_TARGET": "history-table"} if htmx else {}
    response = client.get(reverse("history"), {"sort": "-billed"}, **headers)
    assert response.status_code == 200
    assert varies_and_is_not_stored(response)


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "fragment"])
def test_the_launch_page_varies_on_htmx_and_is_not_stored(client, alice, htmx):
    model = make_bare_model("Back", images=4, remote_id="m-back")
    client.force_login(alice)
    response = client.get(reverse("launch"), {"model": model.remote_id}, **(HTMX if htmx else {}))
    assert response.status_code == 200
    assert varies_and_is_not_stored(response)


@pytest.mark.parametrize("name", ["run_live", "run_samples", "run_trail"])
@pytest.mark.parametrize("htmx", [False, True], ids=["page", "fragment"])
def test_live_fragments_vary_on_htmx_and_are_not_stored(client, alice, name, htmx):
    run = make_sent_run(alice, RunState.RUNNING)
    add_samples(run)
    client.force_login(alice)
    response = client.get(reverse(name, args=[run.pk]), **(HTMX if htmx else {}))
    assert response.status_code == (200 if htmx else 302)
    assert varies_and_is_not_stored(response)


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "fragment"])
def test_a_cancel_varies_on_htmx(client, alice, htmx):
    run = make_sent_run(alice, RunState.RUNNING)
    client.force_login(alice)
    response = client.post(reverse("run_cancel", args=[run.pk]), **(HTMX if htmx else {}))
    assert varies_and_is_not_stored(response)


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "fragment"])
def test_a_bad_parameter_page_varies_on_htmx(client, alice, htmx):
    client.force_login(alice)
    response = client.get(reverse("history"), {"after": "junk"}, **(HTMX if htmx else {}))
    assert response.status_code == 400
    assert varies_and_is_not_stored(response)
    assert ("<nav" in response.text) is not htmx


# --- in a browser -----------------------------------------------------------------------


def has_its_menu_and_styles(page) -> bool:
    """The whole page: the top bar's menu is there and the stylesheet styles it."""
    menu = page.locator("header.topbar nav.nav")
    if menu.count() != 1 or not menu.get_by_role("link", name="History").is_visible():
        return False
    display = page.evaluate("getComputedStyle(document.querySelector('header.topbar')).display")
    return display == "flex" and page.evaluate("document.styleSheets.length") > 0


@pytest.mark.browser
def test_back_after_a_launch_shows_the_whole_launch_page(scenario, logged_in_page, alice):
    scenario.create_model("Back-button knight", "flux.1-lora", images=4)
    services.sync_models(scenario.client())
    page = logged_in_page(alice)
    page.goto("/launch/")
    page.get_by_role("link", name="Back-button knight").click()
    page.wait_for_url("**/launch/?model=*")
    page.click("button[value='estimate']:not(.sr-only)")
    page.wait_for_selector(".quote-panel.ready")
    page.click("button[value='confirm']")
    page.wait_for_selector(".launch-confirm")
    page.click(".launch-confirm button[value='launch']")
    page.wait_for_url("**/runs/*/")

    page.go_back()
    page.wait_for_url("**/launch/?model=*")
    page.wait_for_load_state()
    save_screenshot(page, "back-after-launch")
    assert has_its_menu_and_styles(page), page.content()[:500]


@pytest.mark.browser
def test_back_to_a_sorted_history_shows_the_whole_page(logged_in_page, alice):
    for _ in range(3):
        make_sent_run(alice, RunState.SUCCEEDED, cu_cost=12.5)
    page = logged_in_page(alice)
    page.goto("/history/")
    page.click("#history-table a[data-sort=billed]")
    page.wait_for_url("**/history/?sort=-billed")
    page.locator("th.sorted a[data-sort=billed]").wait_for()

    page.get_by_role("link", name="Dashboard", exact=True).click()
    page.wait_for_url(lambda url: "/history/" not in url)
    page.go_back()
    page.wait_for_url("**/history/?sort=-billed")
    page.wait_for_load_state()
    save_screenshot(page, "back-to-sorted-history")
    assert has_its_menu_and_styles(page), page.content()[:500]
    assert page.locator("th.sorted a[data-sort=billed]").count() == 1
