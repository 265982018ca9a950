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


def test_a_server_rerun_collects_only_what_came_after_the_first_run():
    """app.py freezes what the first run loaded (``ui.app_frame.freeze_startup_objects``), so the full collection a
    server runs after every rerun walks a few objects, not every module's; garbage from before is still collected.
    In a fresh interpreter: the freeze count must be 0 before."""
    import os
    import subprocess
    import sys

    script = """
import gc, weakref
from streamlit.testing.v1 import AppTest

class Node:
    pass

cycle = Node(); cycle.self = cycle; alive = weakref.ref(cycle); del cycle  # garbage from before the first run
assert gc.get_freeze_count() == 0 and alive() is not None
at = AppTest.from_file("app.py", default_timeout=120)
at.run()
assert not at.exception, at.exception
frozen = gc.get_freeze_count()
assert frozen > 50_000, frozen  # torch, plotly, streamlit and the app's modules
assert alive() is None  # collected before the freeze, not kept for good
at.run()
assert gc.get_freeze_count() <= frozen  # once per process (frozen objects freed since leave it)
assert len(gc.get_objects()) < frozen / 10  # what the server's gc.collect(2) walks after each rerun
"""
    root = PAGES[0].parent.parent
    done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stderr[-3000:]
