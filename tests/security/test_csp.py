"""A Content Security Policy of self only: no inline script, style or event handler anywhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

TEMPLATES = sorted(Path(settings.BASE_DIR, "templates").rglob("*.html"))
INLINE = {
    "a style attribute": re.compile(r"\sstyle\s*="),
    "an inline <style> block": re.compile(r"<style[\s>]"),
    "an inline <script> block": re.compile(r"<script(?![^>]*\ssrc=)[^>]*>"),
    "an on… event attribute": re.compile(r"\son[a-z]+\s*=", re.IGNORECASE),
    "an hx-on attribute": re.compile(r"\shx-on"),
}


@pytest.mark.django_db
def test_every_page_sends_a_policy_of_self_only(client, alice):
    client.force_login(alice)
    policy = client.get(reverse("home"))["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"
    assert client.get(reverse("login"))["Content-Security-Policy"] == policy


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda path: path.name)
def test_no_template_needs_inline_script_or_style(template):
    text = template.read_text()
    found = [what for what, pattern in INLINE.items() if pattern.search(text)]
    assert not found, f"{template.name} has {', '.join(found)}"


def test_htmx_is_told_not_to_inject_its_indicator_style():
    base = Path(settings.BASE_DIR, "templates", "base.html").read_text()
    assert '"includeIndicatorStyles": false' in base
    css = Path(settings.BASE_DIR, "static", "css", "app.css").read_text()
    assert ".htmx-indicator" in css


@pytest.mark.browser
def test_the_browser_fixture_catches_a_blocked_inline_style(logged_in_page, alice, csp_violations):
    page = logged_in_page(alice)
    page.evaluate(
        "document.head.insertAdjacentHTML('beforeend', '<style>body { color: red }</style>')"
    )
    page.wait_for_timeout(300)
    assert any("style" in violation for violation in csp_violations), csp_violations
    csp_violations.clear()  # seen: this test's one deliberate violation must not fail it
