"""The what-if answers in a real browser: no request leaves the server, the topology sliders, the mode display
and the A/B view, with screenshots at 1440x900 and 1024x768.

With EPLB_WHATIF_DOCS=1 the screenshots are copied to docs/whatif/ (the committed ones) and the
first screen of Explore at 1440x900 to docs/screenshot.png (the README's).
"""

from __future__ import annotations

import os
import shutil
import urllib.parse

import pytest

from tests.e2e.conftest import (
    INFO_ALERT, NAV_LINK, OUTPUT, ROOT, SIDEBAR, app_pages, assert_no_exception, link, new_session, open_app,
    set_sidebar_slider,
    sidebar_slider, summary_line, wait_rendered,
)

pytestmark = pytest.mark.e2e

DOCS = ROOT / "docs" / "whatif"
SIZES = [(1440, 900), (1024, 768)]


async def _shot(page, name: str, *, locator=None, full_page: bool = False) -> None:
    """A screenshot into test-output/e2e/whatif (and docs/whatif when EPLB_WHATIF_DOCS=1)."""
    path = OUTPUT / "whatif" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    if locator is not None:  # the screen a reader sees with that section at the top
        await locator.evaluate("e => e.scrollIntoView({block: 'start'})")
        await wait_rendered(page)  # charts below the fold draw once scrolled to
        await page.wait_for_timeout(500)
    await page.screenshot(path=str(path), full_page=full_page)
    if os.environ.get("EPLB_WHATIF_DOCS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS / path.name)


def _section(page, key: str):
    """A keyed container of the Explore page (``st.container(key=...)``)."""
    return page.locator(f".st-key-{key}")


def test_no_request_leaves_the_server_on_any_page(browser, server, run):
    own = urllib.parse.urlsplit(server.url).netloc
    outside: list[str] = []

    def record(request) -> None:
        parts = urllib.parse.urlsplit(request.url)
        if parts.scheme in ("http", "https", "ws", "wss") and parts.netloc != own:
            outside.append(request.url)

    async def scenario():
        async with new_session(browser, {"width": 1440, "height": 900}) as page:
            page.on("request", record)
            for app_page in app_pages():
                await page.goto(link(server, app_page.url_path))
                await wait_rendered(page)
                await assert_no_exception(page)
            favicon = await page.eval_on_selector('link[rel="shortcut icon"], link[rel="icon"]', "l => l.href")
            assert favicon.startswith("data:") or urllib.parse.urlsplit(favicon).netloc == own, favicon
            await page.locator(NAV_LINK).first.click()  # the navigation's icons too
            await wait_rendered(page)

    run(scenario())
    assert not outside, f"requests to other hosts: {sorted(set(outside))}"


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_sliders_mode_display_and_topology_b(browser, server, run, size):
    width, height = size

    async def scenario():
        async with new_session(browser, {"width": width, "height": height}) as page:
            await open_app(page, server)
            await assert_no_exception(page)
            if width == 1440 and os.environ.get("EPLB_WHATIF_DOCS") == "1":
                await page.screenshot(path=str(ROOT / "docs" / "screenshot.png"))

            # the mode display: the chosen mode labelled, the other mode beside it, the traffic that prices them
            modes = _section(page, "explore_modes")
            text = await modes.inner_text()
            assert "hierarchical (shown)" in text and "global" in text and "Why pay for hierarchical" in text
            assert "Result in hierarchical mode" in await page.locator('[data-testid="stMain"]').inner_text()
            await _shot(page, f"{width}x{height}-modes", locator=modes)

            # the sliders: 8 nodes = 64 GPUs; Redundant slots follow to the next count that spreads evenly
            await set_sidebar_slider(page, "Nodes", 8)
            await summary_line(page).filter(has_text="8 nodes x 8 GPUs, 320 slots (64 redundant)").wait_for()
            await wait_rendered(page)
            notes = " ".join(await page.locator(SIDEBAR).locator(INFO_ALERT).all_inner_texts())
            assert "Redundant slots moved from 32 to 64" in notes
            assert await sidebar_slider(page, "Redundant slots").get_attribute("aria-valuetext") == "64"
            await assert_no_exception(page)
            await _shot(page, f"{width}x{height}-sliders")
            await set_sidebar_slider(page, "Nodes", 4)
            await summary_line(page).filter(has_text="4 nodes x 8 GPUs, 320 slots (64 redundant)").wait_for()
            await wait_rendered(page)

            # A/B: the sidebar's topology (A) beside B, 8 nodes by default
            ab = _section(page, "explore_topology_b")
            await ab.scroll_into_view_if_needed()
            await wait_rendered(page)
            text = await ab.inner_text()
            assert "B: 8 nodes x 8 GPUs" in text and "balancedness (mean / max GPU load)" in text
            assert "dispatch bytes between nodes per step" in text
            assert await ab.locator(".js-plotly-plot").count() == 1
            await assert_no_exception(page)
            await _shot(page, f"{width}x{height}-topology-b", locator=ab)

            # the charts: load / layer mean, node boundaries
            await _shot(page, f"{width}x{height}-gpu-loads", locator=_section(page, "explore_gpu_loads"))

    run(scenario())


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_the_sweep_over_nodes_draws_each_mode_apart(browser, server, run, size):
    width, height = size

    async def scenario():
        async with new_session(browser, {"width": width, "height": height}) as page:
            await open_app(page, server)
            await page.locator(NAV_LINK).filter(has_text="What-if sweep").click()  # as a reader gets there
            await page.locator("h1").filter(has_text="What-if sweep").wait_for()
            await wait_rendered(page)
            await page.locator('[data-testid="stMain"]').get_by_role("radio", name="nodes", exact=True).click()
            await page.get_by_text("never joined across a change").wait_for()
            await wait_rendered(page)
            await assert_no_exception(page)
            await page.wait_for_function(  # the chart of the new axis, not the one it replaces
                "() => document.querySelector('.js-plotly-plot')?.data?.some(t => t.name === 'joint (global)')")
            names = await page.eval_on_selector(".js-plotly-plot", "p => p.data.map(t => t.name)")
            assert "joint (hierarchical)" in names and "joint (global)" in names
            assert "bound (best possible), global" in names
            chart = page.locator(".js-plotly-plot").first
            await chart.evaluate("e => e.scrollIntoView({block: 'center'})")
            await wait_rendered(page)
            await _shot(page, f"{width}x{height}-sweep-nodes")

    run(scenario())


def test_the_per_gpu_maps_hover_lists_the_experts_on_the_gpu(browser, server, run):
    """The maps' hover is a fixed template over numbers (ui.figures.gpu_hover): plotly.js fills it in the browser."""

    async def scenario():
        async with new_session(browser, {"width": 1440, "height": 900}) as page:
            await open_app(page, server)
            maps = _section(page, "explore_gpu_loads")
            await maps.scroll_into_view_if_needed()
            await wait_rendered(page)
            plot = maps.locator(".js-plotly-plot").first
            for panel in (0, 1):  # before, after
                box = await plot.locator(".nsewdrag").nth(panel).bounding_box()
                await page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.3)
                label = plot.locator(".hoverlayer .hovertext")
                await label.first.wait_for(timeout=10_000)
                lines = await label.first.evaluate(  # an SVG label: one tspan per line
                    "g => [...g.querySelectorAll('text.nums tspan.line')].map(t => t.textContent)")
                text = "\n".join(lines)
                assert text.startswith("layer ") and ", GPU " in text and " x the layer's mean" in text, text
                lines = [line for line in lines if line.startswith("expert ")]
                assert 1 <= len(lines) <= 6 and all(line.endswith(" tokens") for line in lines), text
                assert "%{" not in text and "NaN" not in text, text
                await page.mouse.move(1, 1)
            await assert_no_exception(page)

    run(scenario())
