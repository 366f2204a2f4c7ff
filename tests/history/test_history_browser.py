"""History and comparison in a real Chromium: htmx paging and sorting, charts, screenshots.

Screenshots land in test-artifacts/ for a person to look at. The browser is Debian's chromium;
without it these tests skip, unless REQUIRE_BROWSER_TESTS=1 says they must run.
"""

from __future__ import annotations

import pytest
from django.conf import settings

from tests.fixtures.browser import save_screenshot
from tests.fixtures.history import compared_runs

pytestmark = pytest.mark.browser


def signed_in_page(browser, live_server, client, user):
    client.force_login(user)
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, device_scale_factor=1)
    context.add_cookies(
        [
            {
                "name": settings.SESSION_COOKIE_NAME,
                "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                "url": live_server.url,
            }
        ]
    )
    page = context.new_page()
    page.set_default_timeout(10_000)
    return page


def test_the_history_page_with_charts_pages_and_sorts_in_place(
    chromium, live_server, client, staff, a_quarter_of_runs
):
    page = signed_in_page(chromium, live_server, client, staff)
    page.goto(f"{live_server.url}/history/")
    assert page.locator("svg.chart").count() == 3
    assert page.locator("#history-table tbody tr").count() == 50
    save_screenshot(page, "history")
    save_screenshot(page, "history-top", full_page=False)

    # A marker on window survives only if htmx swaps the table instead of loading a page.
    page.evaluate("window.stillHere = true")
    page.click("#history-table a[data-sort=billed]")
    page.wait_for_url("**/history/?sort=-billed")
    page.locator("th.sorted a[data-sort=billed]").wait_for()
    assert page.evaluate("window.stillHere") is True
    page.click("#history-table a[rel=next]")
    page.wait_for_url("**after=*")
    assert page.evaluate("window.stillHere") is True
    assert page.locator("#history-table tbody tr").count() == 50

    # Filtering afterwards reloads the page, keeping the sort picked in the table.
    page.select_option("select[name=state]", "failed")
    page.click("#history-filters button[type=submit]")
    page.wait_for_url("**state=failed*")
    assert "sort=-billed" in page.url
    states = page.locator("#history-table tbody .state").all_inner_texts()
    assert states and set(states) == {"Failed"}


def test_a_comparison_of_three_runs(chromium, live_server, client, alice, dave):
    runs = compared_runs(live_server.url, alice, dave)
    page = signed_in_page(chromium, live_server, client, alice)
    page.goto(f"{live_server.url}/history/")
    for run in runs:
        page.check(f"input[name=runs][value='{run.pk}']")
    page.click("#compare-form button")
    page.wait_for_url("**/compare/?runs=*")
    assert page.locator(".compare-table .run-head").count() == 3
    assert page.locator("tr.diff[data-param=learningRate]").count() == 1
    assert page.locator(".sample-strip img").count() == (4 + 3 + 4) * 2
    page.wait_for_load_state("networkidle")
    save_screenshot(page, "compare")
