"""Every page imports ``ui`` before it draws anything.

Importing ``ui`` is what keeps a page inside app.py's navigation when a direct link is the first
request a fresh server sees (``ui.app_frame``); a page that called Streamlit first would draw
outside it. The browser test ``tests/e2e/test_direct_links.py`` shows the effect on two pages.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PAGES = sorted((Path(__file__).resolve().parent.parent / "pages").glob("*.py"))


def _imports_ui(node: ast.stmt) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.module == "ui" or (node.module or "").startswith("ui.")
    return isinstance(node, ast.Import) and any(a.name == "ui" or a.name.startswith("ui.") for a in node.names)


def _calls_streamlit(node: ast.stmt) -> bool:
    return any(isinstance(n, ast.Name) and n.id == "st" for n in ast.walk(node))


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.stem)
def test_a_page_imports_ui_before_it_draws(path):
    body = ast.parse(path.read_text()).body
    first_ui = next((i for i, node in enumerate(body) if _imports_ui(node)), None)
    first_draw = next((i for i, node in enumerate(body) if not isinstance(node, (ast.Import, ast.ImportFrom))
                       and _calls_streamlit(node)), len(body))
    assert first_ui is not None, f"{path.name} never imports ui"
    assert first_ui < first_draw, f"{path.name} calls streamlit (statement {first_draw}) before importing ui"


def test_every_page_is_in_the_navigation():
    app = (PAGES[0].parent.parent / "app.py").read_text()
    assert all(f'"pages/{p.name}"' in app for p in PAGES), [p.name for p in PAGES if f'"pages/{p.name}"' not in app]
