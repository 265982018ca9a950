"""A direct link opened first on a freshly started server still gets app.py's frame.

Streamlit runs a ``pages/`` folder beside the entry script as a legacy multipage app until some
session calls ``st.navigation``; ``ui.app_frame`` reruns such a first run through app.py. Every
page imports ``ui`` before it draws anything (``tests/test_pages.py`` checks that for every page), so
two pages stand for all here, each opened by its own link as the first session of its own server
(a fresh server costs a cold start, about 40 s on the 2-core machine).
"""

from __future__ import annotations

import ast

import pytest

from tests.e2e.conftest import NAV_LINK, ROOT, AppPage, app_pages, assert_no_exception, link, new_session, serve, \
    wait_rendered
from tests.e2e.test_browser import SMALL_LINK

pytestmark = pytest.mark.e2e


def own_heading(page: AppPage) -> str:
    """The page's title, the first ``<something>.title("...")`` call in its script."""
    for node in ast.walk(ast.parse((ROOT / page.path).read_text())):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "title"
                and node.args and isinstance(node.args[0], ast.Constant)):
            return node.args[0].value
    raise AssertionError(f"{page.path} has no st.title(...)")


@pytest.mark.parametrize("page_entry", [p for p in app_pages() if p.slug in ("replay", "learn")], ids=lambda p: p.slug)
def test_a_direct_link_opened_first_on_a_fresh_server_shows_the_app_navigation(browser, run, page_entry):
    titles = [p.title for p in app_pages()]

    async def scenario():
        async with new_session(browser) as page:
            await page.goto(link(server, page_entry.slug, SMALL_LINK))
            await wait_rendered(page)
            await assert_no_exception(page)
            nav = [text.split("\n")[-1].strip() for text in await page.locator(NAV_LINK).all_inner_texts()]
            assert nav == titles  # app.py's st.navigation, not Streamlit's file names ("app", "compare", ...)
            assert "EPLB Explorer" in await page.title()  # app.py's set_page_config ran
            assert own_heading(page_entry) in await page.locator("h1").all_inner_texts()
            assert "nodes=1" in page.url  # the link's choices survived the rerun through app.py

    with serve(f"server-direct-{page_entry.slug}.log") as server:
        run(scenario())
