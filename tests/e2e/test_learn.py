"""The Learn page in a real browser, as a class sees it projected at 1280x720 and 1024x768.

At every step of DeepSeek's README example (and at 1280x720 on the step where the policies
of the "One hot expert" lesson differ) the lesson's controls (Back, "Step k of n", Next)
and the top of the picture are inside the first screen; at 1280x720 the whole picture is
(and on the opening, every sentence), and its Replay button moves the copies. Explore's
"Teach this layer" lands on Learn with that layer, reduced and saying so. Each screen is
saved under test-output/e2e/learn/; with EPLB_LEARN_DOCS=1 the screenshots are written to
docs/learn/ as well (the committed ones were made so).
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.e2e.conftest import (
    NAV_LINK, OUTPUT, PLOT, ROOT, assert_no_exception, link, new_session, open_app, wait_rendered,
)

pytestmark = pytest.mark.e2e

PROJECTORS = [(1280, 720), (1024, 768)]
SHOTS = OUTPUT / "learn"
DOCS = ROOT / "docs" / "learn"
NUM_STEPS = 8  # the opening, the case, three steps, the result, two other policies


async def open_learn(page, server) -> None:
    """Open Learn by its link (a first session on a fresh server too: tests/e2e/test_direct_links.py)."""
    await page.goto(link(server, "learn"))
    await wait_rendered(page)


def step_heading(page):
    return page.locator("h4").filter(has_text="Step ")


def step_words(page):
    """The step's sentences, the bullet list beside (or under) the picture."""
    return page.locator('[data-testid="stMain"] [data-testid="stMarkdownContainer"] ul').first


async def first_screen_problems(page, width: int, height: int, *, whole_picture: bool,
                                whole_words: bool = False) -> list[str]:
    """What of the lesson's controls and picture (and, with whole_words, the step's sentences) is not inside
    the first screen (empty when all is)."""
    problems = []
    controls = {"Back": page.get_by_role("button", name="Back"), "Next": page.get_by_role("button", name="Next"),
                "step heading": step_heading(page)}
    if whole_words:
        controls["the step's sentences"] = step_words(page)
    for name, locator in controls.items():
        box = await locator.bounding_box()
        if box is None or box["x"] < 0 or box["y"] < 0 or box["x"] + box["width"] > width \
                or box["y"] + box["height"] > height:
            problems.append(f"{name} at {box}")
    picture = await page.locator(PLOT).first.bounding_box()
    if picture is None or picture["y"] > height - 200 or picture["x"] + picture["width"] > width:
        problems.append(f"picture at {picture}")
    elif whole_picture and picture["y"] + picture["height"] > height:
        problems.append(f"picture cut at the bottom: {picture}")
    return problems


async def keep(page, name: str) -> None:
    """Screenshot the first screen (what the projector shows) into test-output, and docs/learn when asked."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    await page.screenshot(path=str(path))
    if os.environ.get("EPLB_LEARN_DOCS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS / path.name)


REST_JS = ("() => [...document.querySelector('.js-plotly-plot').querySelectorAll('.scatterlayer .trace .point')]"
           ".map(p => p.getAttribute('transform').match(/[-\\d.]+/g).map(Number))")
"""Where every copy of the picture is drawn, in pixels."""


async def assert_replay_moves_the_copies(page) -> None:
    """The picture's Replay button moves the copies away from their places and back, to the half pixel."""
    at_rest = await page.evaluate(REST_JS)
    await page.locator(".updatemenu-button").first.click()
    await page.wait_for_timeout(300)
    assert await page.evaluate(REST_JS) != at_rest
    await page.wait_for_function(
        f"rest => {{ const now = ({REST_JS})(); return now.length === rest.length && now.every((p, i) => "
        "Math.abs(p[0] - rest[i][0]) < 0.5 && Math.abs(p[1] - rest[i][1]) < 0.5); }", arg=at_rest, timeout=10_000)


async def next_step(page, number: int) -> None:
    await page.get_by_role("button", name="Next").click()
    await step_heading(page).filter(has_text=f"Step {number} of ").wait_for()
    await wait_rendered(page)


@pytest.mark.parametrize(("width", "height"), PROJECTORS, ids=[f"{w}x{h}" for w, h in PROJECTORS])
def test_every_step_keeps_the_lesson_on_the_first_screen(browser, server, run, width, height):
    size = f"{width}x{height}"

    async def scenario():
        context = await browser.new_context(viewport={"width": width, "height": height})
        context.set_default_timeout(60_000)
        try:
            page = await context.new_page()
            await open_learn(page, server)
            problems = []
            for number in range(1, NUM_STEPS + 1):
                if number > 1:
                    await next_step(page, number)
                assert (await step_heading(page).inner_text()).startswith(f"Step {number} of {NUM_STEPS} · ")
                await assert_no_exception(page)
                problems += [f"step {number}: {p}" for p in await first_screen_problems(
                    page, width, height, whole_picture=width >= 1280, whole_words=number == 1 and width >= 1280)]
                await keep(page, f"{size}-readme-step{number}")
                if number == 5 and width >= 1280:  # "Copies onto GPUs": the copies move from waiting to their slots
                    await assert_replay_moves_the_copies(page)
            assert await page.get_by_role("button", name="Next").is_disabled()

            # The case's controls, unfolded: the loads table is not cut at the side
            await page.get_by_text("Change the case").click()
            table = page.locator('[data-testid="stDataFrame"]').first
            await table.wait_for()
            await page.wait_for_timeout(800)  # the expander's opening animation: scrolled before it ends, the
            await table.evaluate("e => e.scrollIntoView({block: 'end'})")  # table's end is still below the screen
            await page.mouse.move(1, height - 1)  # no hover toolbar over the table
            await page.wait_for_timeout(300)
            box = await table.bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= width, box
            await keep(page, f"{size}-controls")

            if width < 1280:
                assert not problems, problems
                return
            # The hot-expert lesson, on the step where joint differs from DeepSeek's greedy
            await page.get_by_role("button", name="One hot expert").click()
            await step_heading(page).filter(has_text="Step 1 of ").wait_for()
            await wait_rendered(page)
            await page.get_by_text("Change the case").click()  # folded again
            await page.evaluate("window.scrollTo(0, 0)")
            for number in range(2, NUM_STEPS + 1):
                await next_step(page, number)
            assert "How joint differs" in await step_heading(page).inner_text()
            problems += [f"hot, last step: {p}" for p in
                         await first_screen_problems(page, width, height, whole_picture=width >= 1280)]
            await keep(page, f"{size}-hot-step{NUM_STEPS}")
            await assert_no_exception(page)
            assert not problems, problems
        finally:
            await context.close()

    run(scenario())


def test_teach_this_layer_opens_learn_on_the_explored_layer_reduced(browser, server, run):
    async def scenario():
        async with new_session(browser) as page:
            await open_app(page, server)  # Explore on the default sample: 256 experts on 4 nodes x 8 GPUs
            layer_slider = page.locator('[data-testid="stSlider"]').filter(has_text="Layer")
            layer = int(await layer_slider.locator('[data-testid="stSliderThumbValue"]').inner_text())
            await page.get_by_role("button", name="Teach this layer").click()
            await page.locator("h1").filter(has_text="Learn EPLB").wait_for()
            await wait_rendered(page)
            await assert_no_exception(page)
            assert page.url.split("?")[0].endswith("/learn")
            assert "Learn" in (await page.locator(NAV_LINK).all_inner_texts())[-1]  # still inside app.py's frame
            heading = page.locator('[data-testid="stMain"] h3').first
            assert await heading.inner_text() == f"layer {layer} of sample: DeepSeek-V3 · Zipf"
            note = page.locator('[data-testid="stCaptionContainer"]').filter(has_text="too many to follow by hand")
            assert "256 experts on 32 GPUs" in await note.inner_text()  # it says it was reduced, and from what
            assert (await step_heading(page).inner_text()).startswith(f"Step 1 of {NUM_STEPS} · ")
            await next_step(page, 2)  # the lesson of the reduced layer walks on
            await assert_no_exception(page)

    run(scenario())
