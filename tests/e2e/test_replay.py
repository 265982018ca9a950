"""The Replay page in a real browser at 1440x900 and 1024x768: the DeepSeek-V3 sample trace opens on
its own deployment, no metric label is cut, and the trade-off curve draws. Screens go to
test-output/e2e/replay/."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import OUTPUT, PLOT, assert_no_exception, link, metric_values, wait_rendered

pytestmark = pytest.mark.e2e

SCREENS = [(1440, 900), (1024, 768)]
SHOTS = OUTPUT / "replay"

CUT_LABELS_JS = """() => [...document.querySelectorAll('[data-testid="stMetricLabel"]')]
    .filter(label => [label, ...label.querySelectorAll('*')].some(e => e.scrollWidth > e.clientWidth + 1))
    .map(label => label.innerText.trim())"""
"""Metric labels whose text does not fit their box (drawn with an ellipsis)."""


@pytest.mark.parametrize(("width", "height"), SCREENS, ids=[f"{w}x{h}" for w, h in SCREENS])
def test_replay_opens_on_the_traces_deployment_with_labels_whole(browser, server, run, width, height):
    async def scenario():
        context = await browser.new_context(viewport={"width": width, "height": height})
        context.set_default_timeout(120_000)
        try:
            page = await context.new_page()
            await page.goto(link(server))  # the root first: it sets up app.py's navigation for the session
            await page.locator("h1").first.wait_for()
            await page.goto(link(server, "replay"))
            await wait_rendered(page)
            await assert_no_exception(page)
            assert await page.get_by_text("deployment this sample trace comes with: 4 nodes x 8 GPUs").count()
            cards = await metric_values(page)
            assert {"Static map", "Rebalanced", "Rebalances", "Copies sent", "Bytes moved"} <= set(cards)
            assert await page.evaluate(CUT_LABELS_JS) == []
            plots = await page.locator(PLOT).count()
            await page.get_by_text("Draw the trade-off curve").click()
            await page.locator(PLOT).nth(plots).wait_for()
            await wait_rendered(page)
            await assert_no_exception(page)
            curve = page.locator(PLOT).nth(plots)
            assert await curve.locator(".scatterlayer path").count()
            SHOTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(SHOTS / f"{width}x{height}.png"), full_page=True)
            await curve.screenshot(path=str(SHOTS / f"{width}x{height}-tradeoff.png"))
        finally:
            await context.close()

    run(scenario())
