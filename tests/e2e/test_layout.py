"""Every page's option buttons and metric values whole at 1024x768: nothing cut by its column.

A segmented control does not wrap; in a column too narrow for its options the last ones run
past the column's edge and are cut (the Sweep page's "expert groups" and "redundant slots per
GPU" were). The test opens each page of app.PAGES at 1024x768, and the Sweep page on each axis,
and asks the browser which option buttons reach outside their element's box.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import NAV_LINK, app_pages, assert_no_exception, new_session, open_app, wait_rendered

pytestmark = pytest.mark.e2e

SCREEN = {"width": 1024, "height": 768}

CUT_OPTIONS_JS = """() => [...document.querySelectorAll('[data-testid="stButtonGroup"]')].flatMap(group => {
    const box = group.closest('[data-testid="stElementContainer"]').getBoundingClientRect();
    return [...group.querySelectorAll('button')].filter(button => {
        const edge = button.getBoundingClientRect();
        return edge.right > box.right + 1 || edge.left < box.left - 1;
    }).map(button => button.innerText.trim());
})"""
"""The labels of option buttons (segmented controls, pills) drawn past the edge of their element's box."""

CUT_METRICS_JS = """() => [...document.querySelectorAll('[data-testid="stMetricValue"]')]
    .filter(value => [value, ...value.querySelectorAll('*')].some(part => part.scrollWidth > part.clientWidth + 1))
    .map(value => value.innerText.trim())"""
"""The metric values drawn shortened (a metric card cuts a value too wide for its column with an ellipsis:
the Replay page's "Bytes moved" was "789.…" at 1024 px)."""

SWEEP_AXES = ["redundant slots", "GPUs", "nodes", "expert groups"]


def test_option_buttons_fit_on_every_page(browser, server, run):
    async def scenario():
        async with new_session(browser, SCREEN) as page:
            await open_app(page, server)
            for app_page in app_pages():
                await page.locator(NAV_LINK).filter(has_text=app_page.title).click()
                await page.locator("h1").first.wait_for()
                await wait_rendered(page)
                await assert_no_exception(page)
                assert await page.evaluate(CUT_OPTIONS_JS) == [], app_page.title
                assert await page.evaluate(CUT_METRICS_JS) == [], app_page.title
            sweep = next(p for p in app_pages() if p.slug == "sweep")
            await page.locator(NAV_LINK).filter(has_text=sweep.title).click()
            await wait_rendered(page)
            for axis in SWEEP_AXES:  # each axis draws its own controls ("Keep fixed" for GPUs)
                await page.locator('[data-testid="stMain"]').get_by_role("radio", name=axis, exact=True).click()
                await page.locator("h3").filter(has_text=f"Balancedness against {axis}").wait_for()
                await wait_rendered(page)
                await assert_no_exception(page)
                assert await page.evaluate(CUT_OPTIONS_JS) == [], f"Sweep over {axis}"

    run(scenario())
