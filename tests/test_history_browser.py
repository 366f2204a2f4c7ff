"""History and comparison in a real Chromium: htmx paging and sorting, charts, screenshots.

Screenshots land in test-artifacts/ for a person to look at. The browser is Debian's chromium;
without it these tests skip, unless REQUIRE_BROWSER_TESTS=1 says they must run.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random

import pytest
from django.conf import settings
from django.utils import timezone

from simulator import seed
from simulator.models import SimModel, SimTrainingImage
from tests.fixtures.browser import save_screenshot
from tests.test_history_factories import make_model, make_run
from training.models import Membership, Role, RunState

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


def sample_image(base_url: str, hue: int, label: str) -> str:
    """A small generated picture served by the embedded simulator, so screenshots need no
    network (the pages link only http(s) images, never data: URLs)."""
    svg = (
        "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 84 84'>"
        "<defs><linearGradient id='g' x2='1' y2='1'>"
        f"<stop offset='0' stop-color='hsl({hue},70%,62%)'/>"
        f"<stop offset='1' stop-color='hsl({(hue + 50) % 360},60%,32%)'/></linearGradient></defs>"
        "<rect width='84' height='84' fill='url(#g)'/>"
        f"<circle cx='58' cy='26' r='11' fill='hsl({(hue + 180) % 360},80%,85%)' opacity='.8'/>"
        "<path d='M0 70 L24 44 L40 58 L58 36 L84 64 L84 84 L0 84Z' fill='rgba(0,0,0,.28)'/>"
        f"<text x='6' y='16' font-family='sans-serif' font-size='10' fill='white'>{label}</text>"
        "</svg>"
    )
    asset_id = f"asset_sample_{next(_pictures)}"
    SimTrainingImage.objects.create(
        model=_picture_holder(),
        asset_id=asset_id,
        name=label,
        content_type="image/svg+xml",
        data=svg.encode(),
        created_at=timezone.now(),
    )
    return f"{base_url}/sim/v1/assets/{asset_id}"


_pictures = itertools.count(1)


def _picture_holder() -> SimModel:
    """The simulated model whose "training images" are the generated sample pictures."""
    holder = SimModel.objects.filter(name="Sample pictures").first()
    return holder or seed.create_model("Sample pictures", images=0)


MODELS = [
    ("Castle Keep", "flux.1-lora"),
    ("Forest Spirits", "sd-xl-lora"),
    ("Neon Alley", "flux.1-lora"),
    ("Ceramic Mugs", "qwen-image-lora"),
    ("Narrator Voice", "elevenlabs-voice"),
    ("Paper Cutouts", "zimage-turbo-lora"),
    ("Desert Ruins", "flux.1-kontext-lora"),
]


@pytest.fixture
def a_quarter_of_runs(alice, dave, bob, charlie, team_a, team_b, django_user_model):
    """About 140 runs over twelve weeks, as two teams of artists would leave them."""
    erin = django_user_model.objects.create_user("erin", first_name="Erin", last_name="Moss")
    Membership.objects.create(user=erin, team=team_b, role=Role.ARTIST)
    team_a.monthly_cu_budget, team_b.monthly_cu_budget = 2500, 1200
    team_a.save(), team_b.save()
    people = [alice, alice, dave, dave, bob, charlie, erin, erin]
    models = {name: make_model(name, kind) for name, kind in MODELS}
    rng = random.Random(6)
    start = timezone.now() - dt.timedelta(weeks=12)
    runs = []
    for i in range(140):
        person = rng.choice(people)
        name, kind = rng.choice(MODELS)
        launched = start + dt.timedelta(hours=i * 14 + rng.randint(0, 10))
        roll = rng.random()
        state = (
            RunState.SUCCEEDED
            if roll < 0.74
            else RunState.FAILED
            if roll < 0.86
            else RunState.CANCELED
            if roll < 0.95
            else RunState.RUNNING
        )
        queue = rng.lognormvariate(5.0, 0.8)
        train = rng.lognormvariate(7.0, 0.4) if state != RunState.CANCELED else None
        quote = round(train / 12 if train else rng.uniform(20, 80), 1)
        cost = None
        if state in (RunState.SUCCEEDED, RunState.FAILED):
            cost = quote if state == RunState.SUCCEEDED else round(quote * rng.uniform(0.2, 0.8))
        if state == RunState.RUNNING:
            train = None
        runs.append(
            make_run(
                person,
                name,
                model_type=kind,
                model=models[name],
                state=state,
                launched=launched,
                queue=queue,
                train=train,
                quote=quote,
                cost=cost,
                discount=round(quote * 0.1, 1) if cost else None,
                parameters={"learningRate": 1e-4, "nbEpochs": 4, "rank": 16},
                epochs=rng.choice((4, 6, 8)) if state == RunState.SUCCEEDED else 0,
            )
        )
    return runs


def compared_runs(base_url, alice, dave):
    """Three runs of one model with different settings, with sample images per epoch."""
    model = make_model("Castle Keep v4", "flux.1-lora")
    prompts = ("a castle keep at dawn, watercolor", "the keep's gate in heavy rain")
    specs = [
        (alice, {"learningRate": 1e-4, "nbEpochs": 4, "rank": 16, "batchSize": 1}, 4, 200),
        (dave, {"learningRate": 2e-4, "nbEpochs": 3, "rank": 32, "batchSize": 1}, 3, 20),
        (
            alice,
            {"learningRate": 1e-4, "nbEpochs": 4, "rank": 16, "batchSize": 2, "seed": 7},
            4,
            280,
        ),
    ]
    runs = []
    for n, (person, parameters, epochs, hue) in enumerate(specs):
        run = make_run(
            person,
            model=model,
            state=RunState.SUCCEEDED,
            launched=timezone.now() - dt.timedelta(days=3 - n),
            queue=[95, 340, 60][n],
            train=[1500, 1130, 1720][n],
            quote=[125, 94, 143][n],
            cost=[125, 94, 139.5][n],
            discount=[12.5, 9.4, 14][n],
            parameters=parameters,
        )
        run.samples.all().delete()
        for e in range(epochs):
            for p, prompt in enumerate(prompts):
                run.samples.create(
                    epoch=f"ep{e}",
                    epoch_index=e,
                    prompt_index=p,
                    prompt=prompt,
                    asset_id=f"asset_{run.pk}_{e}_{p}",
                    url=sample_image(base_url, hue + e * 12 + p * 90, f"E{e + 1}"),
                )
        runs.append(run)
    return runs


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
