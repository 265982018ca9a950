"""The app in a real browser: first open, an upload through the file chooser, a topology change,
a placement download, an invalid topology, and every page in app.PAGES (one screenshot each)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

import eplb
from eplb.formats import PLACEMENT_FORMATS, read_load, read_placement
from tests.e2e.conftest import (
    ERROR_ALERT, EXCEPTION, INFO_ALERT, NAV_LINK, PLOT, SIDEBAR, app_pages, assert_no_exception, metric_values,
    new_session, open_app, screenshot, set_sidebar_slider, summary_line, wait_rendered,
)
from tests.test_app_explore import DEFAULT_WEIGHT, expected_cards

pytestmark = pytest.mark.e2e

DEFAULT_TOPOLOGY = eplb.Topology(288, 8, 4, 32)  # first open: 256 experts + 32 redundant, 8 groups, 4 nodes x 8 GPUs
SMALL_LINK = {"data": "generate", "preset": "Mixtral 8x7B", "family": "zipf", "seed": "0",
              "nodes": "1", "gpus_per_node": "4", "redundant": "8", "groups": "1"}
"""A shared link to a small case (32 layers x 8 experts on 4 GPUs): every page renders it quickly."""

UPLOAD = "\n".join(",".join(str((5 * layer + 3 * e) % 13 + (60 if e % 7 == layer else 0)) for e in range(32))
                   for layer in range(3)).encode()
"""A 3 layers x 32 experts CSV with one hot expert per layer."""


def shown_cards(cards: dict[str, str]) -> dict[str, str]:
    """The cards that depend only on data and topology (not the runtime card)."""
    return {label: value for label, value in cards.items() if label != "Rebalance runtime"}


async def heatmap_rows(page) -> int:
    """Rows (layers) of the first chart on the page, the per-GPU load heatmap, as Plotly drew them."""
    return await page.eval_on_selector(PLOT, "plot => plot._fullData[0].z.length")


class _RunsCode:
    """Unpickling this calls exec: a file that would run code if loaded unsafely."""

    def __reduce__(self):
        return exec, ("import pathlib; pathlib.Path('/tmp/eplb-e2e-pwned').write_text('ran')",)


def test_first_open_shows_the_default_sample_with_its_charts(browser, server, run):
    async def scenario():
        async with new_session(browser) as page:
            await open_app(page, server)
            await assert_no_exception(page)
            summary = await summary_line(page).inner_text()
            assert "58 layers x 256 experts" in summary and "4 nodes x 8 GPUs, 288 slots (32 redundant)" in summary
            plots = page.locator(PLOT)
            assert await plots.count() >= 4
            for i in range(await plots.count()):  # every chart drew marks from its data
                assert await plots.nth(i).locator("svg.main-svg").count() >= 1
                assert await plots.nth(i).locator(".heatmaplayer image, .scatterlayer path, .barlayer path").count()
            assert await heatmap_rows(page) == 58
            cards = await metric_values(page)
            assert shown_cards(cards) == expected_cards(DEFAULT_WEIGHT, DEFAULT_TOPOLOGY)
            assert float(cards["Balancedness after (vLLM)"]) > float(cards["Balancedness before (vLLM)"])
            assert "nodes=4" in page.url and "redundant=32" in page.url  # the link carries the what-if
            await screenshot(page, "first-open")

    run(scenario())


def test_upload_csv_then_change_topology_download_and_survive_a_bad_file(browser, server, run, tmp_path):
    weight = read_load(UPLOAD, "loads.csv").matrix
    uploaded_topology = eplb.Topology(64, 8, 4, 32)  # 32 experts + the default 32 redundant slots
    changed_topology = eplb.Topology(128, 8, 4, 32)  # 96 redundant slots: 4 per GPU

    async def scenario():
        async with new_session(browser) as page:
            await open_app(page, server)
            sample_cards = await metric_values(page)
            await page.locator(SIDEBAR).get_by_role("radio", name="Upload").click()
            chooser = page.locator(SIDEBAR).locator('[data-testid="stFileUploader"] input[type="file"]')
            await chooser.set_input_files({"name": "loads.csv", "mimeType": "text/csv", "buffer": UPLOAD})
            await summary_line(page).filter(has_text="upload: loads.csv").wait_for()
            await wait_rendered(page)
            await assert_no_exception(page)
            assert await heatmap_rows(page) == 3  # the charts now show the file's 3 layers
            cards = await metric_values(page)
            assert shown_cards(cards) == expected_cards(weight, uploaded_topology)
            assert cards != sample_cards
            await screenshot(page, "upload-csv")

            await set_sidebar_slider(page, "Redundant slots", 96)
            await summary_line(page).filter(has_text="(96 redundant)").wait_for()
            await wait_rendered(page)
            changed = await metric_values(page)
            assert shown_cards(changed) == expected_cards(weight, changed_topology)
            assert shown_cards(changed) != shown_cards(cards)

            label = PLACEMENT_FORMATS["vllm-json"][0]
            button = page.locator('[data-testid="stDownloadButton"]').filter(has_text=label).locator("button")
            async with page.expect_download() as download_info:
                await button.click()
            download = await download_info.value
            target = tmp_path / download.suggested_filename
            await download.save_as(target)

            await chooser.set_input_files({"name": "evil.pt", "mimeType": "application/octet-stream",
                                           "buffer": pickle.dumps(_RunsCode())})
            await page.locator(SIDEBAR).locator(ERROR_ALERT).filter(has_text="Could not use evil.pt").wait_for()
            await wait_rendered(page)
            await assert_no_exception(page)
            assert "upload: loads.csv" in await summary_line(page).inner_text()  # the good data stayed
            assert shown_cards(await metric_values(page)) == shown_cards(changed)
            return target

    placement_file = run(scenario())
    assert not Path("/tmp/eplb-e2e-pwned").exists()
    document = json.loads(placement_file.read_text())
    phy2log = torch.tensor(document["phy2log"])
    assert phy2log.shape == (3, changed_topology.num_replicas)
    assert document["topology"] == {"num_replicas": 128, "num_groups": 8, "num_nodes": 4, "num_gpus": 32}
    assert torch.equal(read_placement(placement_file.read_bytes(), placement_file.name), phy2log)
    expected, _, _ = eplb.rebalance_experts(weight, 128, 8, 4, 32)
    assert torch.equal(phy2log, expected)  # the placement of the topology on screen, not a stale one


def test_changing_the_topology_changes_the_cards(browser, server, run):
    async def scenario():
        async with new_session(browser) as page:
            await open_app(page, server)
            first = await metric_values(page)
            await set_sidebar_slider(page, "Nodes", 2)
            await summary_line(page).filter(has_text="2 nodes x 8 GPUs").wait_for()
            await wait_rendered(page)
            await assert_no_exception(page)
            cards = await metric_values(page)
            assert shown_cards(cards) == expected_cards(DEFAULT_WEIGHT, eplb.Topology(288, 8, 2, 16))
            assert cards["Bound's balancedness"] != first["Bound's balancedness"]
            assert "nodes=2" in page.url

    run(scenario())


def test_an_invalid_topology_shows_its_message_beside_the_last_result(browser, server, run):
    async def scenario():
        async with new_session(browser) as page:
            await open_app(page, server, params={"mode": "hierarchical"})
            await set_sidebar_slider(page, "Nodes", 8)  # the arrow keys pass 8 nodes (valid) on the way to 16
            await summary_line(page).filter(has_text="8 nodes x 8 GPUs").wait_for()
            await wait_rendered(page)
            valid = await metric_values(page)
            await set_sidebar_slider(page, "Nodes", 16)  # 8 groups cannot sit whole on 16 nodes
            message = page.locator(ERROR_ALERT).filter(has_text="does not fit the data").first
            await message.wait_for()
            await wait_rendered(page)
            assert "set Mode to auto or global, or Nodes to 4 or 8" in await message.inner_text()
            assert "Showing the last valid setting" in " ".join(await page.locator(INFO_ALERT).all_inner_texts())
            await assert_no_exception(page)
            assert shown_cards(await metric_values(page)) == shown_cards(valid)
            await screenshot(page, "invalid-topology")

    run(scenario())


@pytest.mark.parametrize("app_page", app_pages(), ids=lambda p: p.slug)
def test_every_page_renders_a_shared_link(browser, server, run, app_page):
    pages = app_pages()

    async def scenario():
        async with new_session(browser) as page:
            await open_app(page, server, app_page.url_path, SMALL_LINK)
            assert await page.locator(EXCEPTION).count() == 0, await page.locator(EXCEPTION).all_inner_texts()
            heading = (await page.locator("h1").first.inner_text()).strip()
            assert heading
            if len(pages) > 1:  # the navigation marks this page as the one shown (no fallback to the default)
                current = page.locator(f'{NAV_LINK}[aria-current="page"] span[label]')
                assert await current.get_attribute("label") == app_page.title
            if await summary_line(page).count():
                summary = await summary_line(page).inner_text()
                assert "32 layers x 8 experts" in summary and "1 nodes x 4 GPUs" in summary, summary
            await screenshot(page, f"page-{app_page.slug}")
            return heading

    assert run(scenario())
