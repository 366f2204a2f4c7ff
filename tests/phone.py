"""Pages at a phone's size, and the check that a page fits the screen without scrolling sideways."""

from __future__ import annotations

from django.conf import settings

from tests.fixtures.browser import save_screenshot

PHONE = {"width": 390, "height": 844}

# Elements wider than the screen, unless a box of theirs scrolls sideways (a wide table may).
STICKING_OUT = """() => {
  const scrolls = (el) => ["auto", "scroll"].includes(getComputedStyle(el).overflowX);
  const inScroller = (el) => {
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      if (scrolls(p)) return true;
    }
    return false;
  };
  return [...document.body.querySelectorAll("*")]
    .filter((el) => {
      const box = el.getBoundingClientRect();
      const out = box.right > innerWidth + 1 || box.left < -1;
      return el.checkVisibility() && box.width > 0 && out && !inScroller(el);
    })
    .slice(0, 5)
    .map((el) => `${el.tagName.toLowerCase()}.${el.className} (${Math.round(
      el.getBoundingClientRect().left)}..${Math.round(el.getBoundingClientRect().right)})`);
}"""


def phone_page(chromium, live_server, client, user=None):
    """Open a page at a phone's size, signed in as user (or as nobody)."""
    context = chromium.new_context(base_url=live_server.url, viewport=PHONE)
    if user is not None:
        client.force_login(user)
        cookie = client.cookies[settings.SESSION_COOKIE_NAME]
        context.add_cookies(
            [{"name": settings.SESSION_COOKIE_NAME, "value": cookie.value, "url": live_server.url}]
        )
    page = context.new_page()
    page.set_default_timeout(15_000)
    return page


def assert_fits_the_phone(page, name: str) -> None:
    """Save a screenshot of the page and check that nothing on it is wider than the phone."""
    page.wait_for_load_state("networkidle")
    save_screenshot(page, f"phone-{name}")
    widths = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.body.scrollWidth, innerWidth]"
    )
    assert widths[0] <= widths[2] and widths[1] <= widths[2], f"{name} scrolls sideways: {widths}"
    assert page.evaluate(STICKING_OUT) == [], f"{name} has elements sticking out"
